"""Steps several cases share: naming what came back, placing a call, taking the
target's call, answering a digest challenge.

Each step either gives what the case needs or the :class:`~sipload.conformance.model.Outcome`
that prevents judging it (inconclusive when the target did something else the
RFC allows), so a case reads ``got = await establish(...); if isinstance(got,
Outcome): return got``.
"""

from __future__ import annotations

from sipload.conformance.model import Outcome, failed, inconclusive
from sipload.conformance.probe import Exchange, Incoming, Probe
from sipload.conformance.profile import Profile
from sipload.sip import sdp
from sipload.sip.build import make_response
from sipload.sip.dialog import Dialog
from sipload.sip.digest import answerable_challenge, build_credentials
from sipload.sip.errors import ParseError
from sipload.sip.message import Request, Response

# --------------------------------------------------------------------------- words


def uas_uri(profile: Profile) -> str:
    """The profile's ``uas.uri`` with ``{target}`` filled in."""
    return profile.uri(profile.uas.uri)


def status_text(ex: Exchange) -> str:
    """``486 Busy Here``, or ``no answer``."""
    return f"{ex.status} {ex.final.reason}" if ex.final is not None else "no answer"


def no_final(ex: Exchange) -> str:
    """What came instead of a final response."""
    if ex.provisionals:
        got = ", ".join(str(r.status) for _, r in ex.provisionals)
        return f"no final response (only {got})"
    return "no response at all"


# --------------------------------------------------------------------------- the tester calls


async def establish(probe: Probe, profile: Profile, cseq: int = 1
                    ) -> tuple[Exchange, Dialog] | Outcome:
    """A confirmed call (INVITE, 2xx, ACK), or the outcome that prevents one."""
    ex = await probe.invite(uas_uri(profile), timeout=profile.response_timeout + 8, cseq=cseq)
    if ex.final is None or not 200 <= ex.status < 300:
        await probe.finish(ex.request, ex)
        return inconclusive(f"no call to test in: the INVITE got {ex.status or 'no answer'}")
    dialog = probe.ack(ex.request, ex.final)
    if dialog is None:
        return failed(f"the {ex.status} cannot make a dialog (To tag or Contact missing)")
    return ex, dialog


def authorize(probe: Probe, req: Request, resp: Response, username: str, password: str,
              cseq: int) -> Request | None:
    """``req`` again (new branch, CSeq ``cseq``) with credentials for ``resp``'s challenge."""
    name = "www-authenticate" if resp.status == 401 else "proxy-authenticate"
    challenge = answerable_challenge(resp.get_all(name))  # as the UA answers (ua/auth.py)
    if challenge is None:
        return None
    new = req.copy()
    new.remove_header("via")
    new.prepend_header("Via", probe.via())
    new.set_header("CSeq", f"{cseq} {req.method}")
    creds = build_credentials(challenge, username=username, password=password,
                              method=req.method, uri=req.uri_text, cnonce=probe.tag(),
                              body=req.body)
    new.set_header("Authorization" if resp.status == 401 else "Proxy-Authorization",
                   creds.to_header())
    return new


# --------------------------------------------------------------------------- the target calls


def uac_contact(profile: Profile) -> str:
    """The tester's Contact when the target calls it (``uac.listen``)."""
    host, port = profile.uac.listen
    return f"<sip:conformance@{host}:{port}>"


def tidy(probe: Probe, got: Incoming) -> None:
    """Answer a request of a call no case is judging (leave nothing hanging)."""
    req = got.msg
    if isinstance(req, Request) and req.method in ("BYE", "CANCEL", "OPTIONS", "INFO"):
        probe.send(make_response(req, 200), got.peer)


async def next_invite(probe: Probe, profile: Profile) -> Incoming | None:
    """The next INVITE of a new call (None after ``uac.wait`` seconds)."""
    probe.divert_all = True
    deadline = probe.now() + profile.uac.wait
    while True:
        left = deadline - probe.now()
        if left <= 0:
            return None
        got = await probe.expect(lambda m: isinstance(m, Request), left)
        if got is None:
            return None
        req = got.msg
        assert isinstance(req, Request)
        try:
            call_id = req.call_id
            new = req.method == "INVITE" and req.to_tag is None
        except ParseError:
            continue
        if new and call_id not in probe.seen_calls:
            probe.seen_calls.add(call_id)
            return got
        tidy(probe, got)


async def incoming_call(probe: Probe, profile: Profile) -> tuple[Incoming, Request] | Outcome:
    """The target's next INVITE, or the verdict when none comes (inconclusive)."""
    got = await next_invite(probe, profile)
    if got is None:
        return inconclusive(f"no call from the target within {profile.uac.wait:g} s")
    invite = got.msg
    assert isinstance(invite, Request)
    return got, invite


def respond(probe: Probe, profile: Profile, got: Incoming, status: int, tag: str) -> Response:
    """Answer the target's request ``status`` (with Contact and an SDP answer on a 2xx)."""
    req = got.msg
    assert isinstance(req, Request)
    resp = make_response(req, status, to_tag=tag)
    if 100 < status < 300:
        resp.copy_headers_from(req, "record-route")
        resp.add_header("Contact", uac_contact(profile))
    if 200 <= status < 300:
        offer = sdp.build_audio_offer(profile.uac.listen[0], 6004, session_id=4)
        if req.body:
            try:
                offer = sdp.build_answer(sdp.parse_sdp(req.body), address=profile.uac.listen[0],
                                         port=6004, session_id=4)
            except sdp.SdpError:
                pass
        resp.set_body(offer.to_bytes(), "application/sdp")
    probe.send(resp, got.peer)
    return resp


async def expect_ack(probe: Probe, profile: Profile, call_id: str) -> Incoming | None:
    """The target's ACK in call ``call_id`` (None after ``response_timeout``)."""
    return await probe.expect(lambda m: isinstance(m, Request) and m.method == "ACK"
                              and m.call_id == call_id, profile.response_timeout)


async def serve(probe: Probe, profile: Profile, got: Incoming, tag: str) -> Incoming | None:
    """Answer 100, 180 then 200, take the ACK and answer the BYE; returns the ACK."""
    invite = got.msg
    assert isinstance(invite, Request)
    probe.send(make_response(invite, 100), got.peer)
    respond(probe, profile, got, 180, tag)
    respond(probe, profile, got, 200, tag)
    ack = await expect_ack(probe, profile, invite.call_id)
    bye = await probe.expect(lambda m: isinstance(m, Request) and m.method == "BYE"
                             and m.call_id == invite.call_id, min(profile.uac.wait, 10.0))
    if bye is not None:
        tidy(probe, bye)
    return ack
