"""The session timer pack (RFC 4028), judged on the target's 2xx responses as a UAS.

Each case asks for a session timer (``Session-Expires``, with or without
``Supported: timer``, ``Min-SE`` and a ``refresher``) in an INVITE, a refresh
re-INVITE or an UPDATE, and reads the ``Session-Expires`` and ``Require`` of
the 2xx (RFC 4028 §9, the UAS's rules).  Every call is ACKed and hung up.
Rejecting a brief interval with 422 is a MAY (``UAS-TIMER-001`` judges the
422's Min-SE); the intervals asked for here (1800 s) are above any minimum.
"""

from __future__ import annotations

from collections.abc import Callable

from sipload.conformance.cases_uas import ANSWER_INVITE
from sipload.conformance.model import Case, CaseFunc, Outcome, broke, inconclusive, must, passed
from sipload.conformance.probe import Exchange, Probe
from sipload.conformance.profile import Profile
from sipload.conformance.steps import status_text, uas_uri
from sipload.sip import sdp
from sipload.sip.dialog import Dialog
from sipload.sip.errors import ParseError
from sipload.sip.message import Response

ASKED = 1800
"""The session interval the tester asks for, seconds."""

REFRESHER = must("RFC 4028 §9", "The UAS MUST set the value of the refresher parameter in "
                 "the Session-Expires header field in the 2xx response.  This value specifies "
                 "who will perform refreshes for the dialog.")
REFRESHER_TABLE = must("RFC 4028 §9", "The UAS MUST set the value of the refresher parameter "
                       "in the Session-Expires header field in the 2xx response.  This value "
                       "specifies who will perform refreshes for the dialog.  The value is "
                       "based on the value of this parameter in the request, and on whether "
                       "the UAC supports the session timer extension")
"""Table 2 of §9, which the sentence goes on to: a UAC that supports the extension and names
the refresher gets that refresher back; a UAC that does not support it gets refresher=uas."""
NO_INCREASE = must("RFC 4028 §9", "The UAS MUST NOT increase the value of the Session-Expires "
                   "header field.")
ABOVE_MIN_SE = must("RFC 4028 §9", "The UAS response MAY reduce its value but MUST NOT set it "
                    "to a duration lower than the value in the Min-SE header field in the "
                    "request, if it is present; otherwise the UAS MAY reduce its value but MUST "
                    "NOT set it to a duration lower than 90 seconds.")
REQUIRE_TIMER = must("RFC 4028 §9", "If the refresher parameter in the Session-Expires header "
                     "field in the 2xx response has a value of 'uac', the UAS MUST place a "
                     "Require header field into the response with the value 'timer'.")


def _expires(resp: Response) -> tuple[int | None, str | None, str]:
    """(interval, refresher, the header as text) of ``resp``'s Session-Expires."""
    text = resp.get("session-expires") or ""
    try:
        se = resp.session_expires
    except ParseError:
        return None, None, text
    if se is None or not se.value.isdigit():
        return None, None, text
    who = se.params.get("refresher")
    return int(se.value), (who.lower() if who else None), text


async def _invite(probe: Probe, profile: Profile, headers: list[tuple[str, str]]
                  ) -> tuple[Exchange, Dialog | None] | Outcome:
    ex = await probe.invite(uas_uri(profile), headers=headers,
                            timeout=profile.response_timeout + 4)
    if ex.final is None:
        await probe.finish(ex.request, ex)
        return broke(ANSWER_INVITE, f"no final response to the INVITE ({status_text(ex)})")
    if not 200 <= ex.status < 300:
        await probe.finish(ex.request, ex)
        return inconclusive(f"no 2xx to judge: the INVITE got {status_text(ex)}")
    return ex, probe.ack(ex.request, ex.final)


async def _initial(probe: Probe, profile: Profile, headers: list[tuple[str, str]]
                   ) -> Response | Outcome:
    """The 2xx to an INVITE with ``headers`` (the call hung up)."""
    got = await _invite(probe, profile, headers)
    if isinstance(got, Outcome):
        return got
    ex, dialog = got
    if dialog is not None:
        await probe.hang_up(dialog)
    assert ex.final is not None
    return ex.final


_TIMER = [("Supported", "timer"), ("Session-Expires", str(ASKED))]


def _on_2xx(headers: list[tuple[str, str]], judge: Callable[[Response], Outcome]) -> CaseFunc:
    """A case: an INVITE with ``headers``; its 2xx (the call hung up) goes to ``judge``."""
    async def case(probe: Probe, profile: Profile) -> Outcome:
        ok = await _initial(probe, profile, headers)
        return ok if isinstance(ok, Outcome) else judge(ok)
    return case


def _names_refresher(ok: Response) -> Outcome:
    _, who, text = _expires(ok)
    if who not in ("uac", "uas"):
        return broke(REFRESHER, f"the 2xx has Session-Expires: {text or '(none)'}, no "
                     "refresher=uac|uas")
    return passed(f"Session-Expires: {text}")


def _interval(ok: Response) -> int | Outcome:
    """The 2xx's Session-Expires interval, or inconclusive without a usable one."""
    interval, _, text = _expires(ok)
    if interval is None:
        return inconclusive(f"the 2xx has no usable Session-Expires ({text or 'none'})")
    return interval


def _not_above_asked(ok: Response) -> Outcome:
    interval = _interval(ok)
    if isinstance(interval, Outcome):
        return interval
    if interval > ASKED:
        return broke(NO_INCREASE, f"asked for {ASKED} s, the 2xx says {interval} s")
    return passed(f"asked for {ASKED} s, the 2xx says {interval} s")


FLOOR = 1200
"""The Min-SE of TIMER-003's INVITE."""


def _not_below_floor(ok: Response) -> Outcome:
    interval = _interval(ok)
    if isinstance(interval, Outcome):
        return interval
    if interval < FLOOR:
        return broke(ABOVE_MIN_SE, f"Min-SE: {FLOOR} in the INVITE, Session-Expires: "
                     f"{interval} in the 2xx")
    return passed(f"Min-SE: {FLOOR} asked, {interval} s answered")


def _keeps_uas(ok: Response) -> Outcome:
    _, who, text = _expires(ok)
    if who != "uas":
        return broke(REFRESHER_TABLE, f"the INVITE named refresher=uas; the 2xx says "
                     f"Session-Expires: {text or '(none)'}")
    return passed(f"refresher=uas kept: Session-Expires: {text}")


def _uac_refresh_requires(ok: Response) -> Outcome:
    _, who, text = _expires(ok)
    if who != "uac":
        return inconclusive(f"the 2xx does not make the UAC refresh (Session-Expires: "
                            f"{text or 'none'})")
    if "timer" not in ok.require:
        return broke(REQUIRE_TIMER, f"Session-Expires: {text} without Require: timer")
    return passed(f"Session-Expires: {text} with Require: timer")


def _uas_refreshes(ok: Response) -> Outcome:
    _, who, text = _expires(ok)
    if who != "uas":
        return broke(REFRESHER_TABLE, f"the INVITE had no Supported: timer, yet the 2xx "
                     f"says Session-Expires: {text or '(none)'}")
    return passed(f"the UAS refreshes: Session-Expires: {text}")


refresher_set = _on_2xx(_TIMER, _names_refresher)
no_increase = _on_2xx(_TIMER, _not_above_asked)
above_min_se = _on_2xx([*_TIMER, ("Min-SE", str(FLOOR))], _not_below_floor)
refresher_copied = _on_2xx([("Supported", "timer"), ("Session-Expires", f"{ASKED};refresher=uas")],
                           _keeps_uas)
require_timer = _on_2xx([("Supported", "timer"), ("Session-Expires", f"{ASKED};refresher=uac")],
                        _uac_refresh_requires)
uac_without_timer = _on_2xx([("Session-Expires", str(ASKED))], _uas_refreshes)


async def _refresh(probe: Probe, profile: Profile, method: str) -> Outcome:
    got = await _invite(probe, profile, _TIMER)
    if isinstance(got, Outcome):
        return got
    _, dialog = got
    if dialog is None:
        return inconclusive("the 2xx makes no dialog: nothing to refresh")
    req = probe.in_dialog(dialog, method)
    req.add_header("Supported", "timer")
    req.add_header("Session-Expires", f"{ASKED};refresher=uac")
    if method == "INVITE":
        req.set_body(sdp.build_audio_offer(probe.local[0], 6000, session_id=1,
                                           version=1).to_bytes(), "application/sdp")
    ex = await probe.transact(req, timeout=profile.response_timeout + 4)
    if ex.final is not None:
        probe.ack(req, ex.final)
    await probe.hang_up(dialog)
    if ex.final is None:
        if method == "INVITE":
            return broke(ANSWER_INVITE, "no final response to the refresh re-INVITE")
        return inconclusive("no final response to the refresh UPDATE")
    if not 200 <= ex.status < 300:
        return inconclusive(f"the refresh {method} got {status_text(ex)}")
    _, who, text = _expires(ex.final)
    if who not in ("uac", "uas"):
        return broke(REFRESHER, f"the 2xx to the refresh {method} has Session-Expires: "
                     f"{text or '(none)'}, no refresher")
    return passed(f"the refresh {method}'s 2xx: Session-Expires: {text}")


async def refresh_reinvite(probe: Probe, profile: Profile) -> Outcome:
    return await _refresh(probe, profile, "INVITE")


async def refresh_update(probe: Probe, profile: Profile) -> Outcome:
    return await _refresh(probe, profile, "UPDATE")


_T = ("role:uas", "ext:timer")

CASES = [
    Case("TIMER-001", "4028", "9", "the 2xx to an INVITE asking for a session timer names the "
         "refresher", "timer", _T, refresher_set, rules=(REFRESHER, ANSWER_INVITE)),
    Case("TIMER-002", "4028", "9", "the 2xx's Session-Expires is not above the one asked for",
         "timer", _T, no_increase, rules=(NO_INCREASE, ANSWER_INVITE)),
    Case("TIMER-003", "4028", "9", "the 2xx's Session-Expires is not below the request's "
         "Min-SE", "timer", _T, above_min_se, rules=(ABOVE_MIN_SE, ANSWER_INVITE)),
    Case("TIMER-004", "4028", "9", "a refresher the UAC names (uas) is the one in the 2xx",
         "timer", _T, refresher_copied, rules=(REFRESHER_TABLE, ANSWER_INVITE)),
    Case("TIMER-005", "4028", "9", "a 2xx with refresher=uac carries Require: timer", "timer",
         _T, require_timer, rules=(REQUIRE_TIMER, ANSWER_INVITE)),
    Case("TIMER-006", "4028", "9", "a UAC without Supported: timer is never made the "
         "refresher (refresher=uas)", "timer", _T, uac_without_timer,
         rules=(REFRESHER_TABLE, ANSWER_INVITE)),
    Case("TIMER-007", "4028", "9", "the 2xx to a refresh re-INVITE names the refresher",
         "timer", _T, refresh_reinvite, rules=(REFRESHER, ANSWER_INVITE)),
    Case("TIMER-008", "4028", "9", "the 2xx to a refresh UPDATE (RFC 3311) names the "
         "refresher", "timer", (*_T, "ext:update"), refresh_update, rules=(REFRESHER,)),
]
