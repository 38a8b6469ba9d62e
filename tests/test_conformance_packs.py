"""The prack, timer, transport and rtp packs, each case against a target that breaks it
and one that keeps it.

Breaking targets are SIPp XML scenarios under ``tests/sipp/`` (``conf_*.xml``; each
file's comment says which rules it breaks) or SIPp's built-in uas; keeping targets
are sipload's own UAS (in-process, T1 = 100 ms so timer windows are short, given a
scenario from ``tests/data/conformance/`` where a case needs a UAS that waits) and
SIPp's built-in uas where it keeps a rule.  Each expected verdict names the rule it
rests on: the quoted RFC sentence in the case module.  In CI a missing peer fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sipload.conformance import cases_prack as prack
from sipload.conformance import cases_proxy as proxy
from sipload.conformance import cases_registrar as registrar
from sipload.conformance import cases_robust as robust
from sipload.conformance import cases_rtp as rtp
from sipload.conformance import cases_timer as timer
from sipload.conformance import cases_transport as transport
from sipload.conformance import cases_uas as uas
from sipload.conformance.model import CaseResult, Rule
from sipload.conformance.profile import load_profile_text
from sipload.conformance.runner import RunSetup, all_cases, run, select
from sipload.engine import Engine, EngineConfig
from sipload.scenario.loader import load_file
from sipload.sip.transaction import TimerConfig
from tests.mediahelpers import ulaw_wav
from tests.peers import (
    REPO_ROOT,
    BaresipProcess,
    NaiveTcpUas,
    NaiveUdpUas,
    free_port,
    require,
    sipp_uas,
)

DATA = REPO_ROOT / "tests" / "data" / "conformance"

Expected = dict[str, tuple[str, Rule | None]]


def _profile(extensions: str, t1: str = "500ms", transport: str = "udp") -> str:
    return f"""
roles: [uas]
transport: {transport}
extensions: [{extensions}]
timers: {{t1: {t1}, t2: 4s}}
response_timeout: 1s
uas: {{uri: "sip:service@{{target}}"}}
"""


def _run(profile_text: str, port: int, packs: list[str], *, transport: str = "udp",
         slow: bool = False, ids: list[str] | None = None) -> dict[str, CaseResult]:
    profile = load_profile_text(profile_text, "test-profile")
    profile.target = ("127.0.0.1", port)
    cases = select(all_cases(), packs=packs, only=ids or [], slow=slow)
    results = asyncio.run(asyncio.wait_for(
        run(cases, profile, RunSetup((transport, "127.0.0.1", port))), 300))
    return {r.case.id: r for r in results}


async def against_sipload(work: Callable[[int], Awaitable[list[CaseResult]]], *,
                         scenario: str | None = None, transport: str = "udp",
                         port: int = 0) -> list[CaseResult]:
    """``work(port)`` against sipload's UAS (the default one, or ``scenario``) running
    in-process on ``port`` (0: any) with short timers (T1 100 ms)."""
    program = load_file(DATA / scenario) if scenario else None
    engine = Engine(EngineConfig(program=program, local_port=port, transport=transport,
                                 timers=TimerConfig(t1=0.1, t2=0.4)))
    _, port = await engine.start()
    task = asyncio.create_task(engine.run())
    try:
        return await work(port)
    finally:
        engine.abort()
        await asyncio.wait_for(task, 10)


def _run_sipload(profile_text: str, packs: list[str], *, scenario: str | None = None,
                 transport: str = "udp", slow: bool = False, ids: list[str] | None = None
                 ) -> dict[str, CaseResult]:
    profile = load_profile_text(profile_text, "test-profile")
    cases = select(all_cases(), packs=packs, only=ids or [], slow=slow)

    async def work(port: int) -> list[CaseResult]:
        profile.target = ("127.0.0.1", port)
        return await run(cases, profile, RunSetup((transport, "127.0.0.1", port)))

    results = asyncio.run(asyncio.wait_for(
        against_sipload(work, scenario=scenario, transport=transport), 300))
    return {r.case.id: r for r in results}


def check(results: dict[str, CaseResult], expected: Expected) -> None:
    got = {k: (r.verdict.value, r.rule if r.verdict.value in ("fail", "warn") else None)
           for k, r in results.items()}
    why = "\n".join(f"{k}: {r.verdict.value} {r.reason}" for k, r in results.items())
    assert got == expected, why


# --------------------------------------------------------------------------- prack


def test_prack_pack_breaking_sipp_target() -> None:
    # tests/sipp/conf_prack_bad.xml: a "reliable" 183 with SDP and RSeq 0, at once a
    # "reliable" 180 with RSeq 2, then the 200 without waiting for any PRACK; every PRACK
    # answered 200
    require("sipp")
    port = free_port("udp")
    with sipp_uas(port, scenario_file="conf_prack_bad.xml", limit=120):
        results = _run(_profile("100rel"), port, ["prack"])
    check(results, {
        "PRACK-001": ("pass", None),  # it does send its provisionals with Require + RSeq
        # §3 "the UAS MUST NOT send the provisional response reliably" without 100rel
        "PRACK-002": ("fail", prack.NOT_ASKED),
        # §3 "MUST be between 1 and 2**31 - 1": RSeq 0
        "PRACK-003": ("fail", prack.FIRST_RSEQ),
        # §3 "the UAS MUST respond to the PRACK with a 481 response": it says 200
        "PRACK-004": ("fail", prack.NO_MATCH_481),
        "PRACK-005": ("fail", prack.NO_MATCH_481),
        # §3 "it MUST NOT send a final response until those provisional responses are
        # acknowledged": its 200 follows the 183 with SDP at once
        "PRACK-006": ("fail", prack.HOLD_2XX),
        # §3 "MUST be greater by exactly one": RSeq 0 then 2
        "PRACK-007": ("fail", prack.RSEQ_PLUS_ONE),
        # §3 "MUST NOT send a second reliable provisional response until the first is
        # acknowledged": its 180 follows the 183 at once
        "PRACK-008": ("fail", prack.ONE_AT_A_TIME),
    })


def test_prack_pack_sipp_builtin_uas() -> None:
    # SIPp's built-in uas ignores Require: 100rel and rings unreliably: §3 "The UAS MUST
    # send any non-100 provisional response reliably if the initial request contained a
    # Require header field with the option tag 100rel"; it never claims 100rel, and keeps
    # §3's MUST NOT (nothing reliable when not asked)
    require("sipp")
    port = free_port("udp")
    with sipp_uas(port, limit=60):
        results = _run(_profile(""), port, ["prack"])
    check(results, {
        "PRACK-001": ("fail", prack.WILLING_OR_420),
        "PRACK-002": ("pass", None),
        **{f"PRACK-00{i}": ("not_applicable", None) for i in range(3, 9)},
    })


def test_prack_pack_keeping_sipload_uas() -> None:
    # sipload's UAS given tests/data/conformance/prack_uas.yaml: a reliable 183 with the
    # answer (RSeq 1), the 180 (RSeq 2) only after its PRACK, the 200 only after the
    # 180's; its UA core answers an unknown or repeated RAck 481 and, with no PRACK for
    # 64*T1 (6.4 s at T1 = 100 ms), ends the INVITE with 504
    results = _run_sipload(_profile("100rel", t1="100ms"), ["prack"],
                           scenario="prack_uas.yaml", slow=True)
    check(results, {f"PRACK-00{i}": ("pass", None) for i in range(1, 10)})
    assert "504" in results["PRACK-009"].reason


# --------------------------------------------------------------------------- timer


@pytest.mark.parametrize(("xml", "expected"), [
    # "Session-Expires: 3600" with no refresher whatever was asked, refreshes answered
    # without Session-Expires
    ("conf_timer_bad.xml", {
        # §9 "The UAS MUST set the value of the refresher parameter ... in the 2xx"
        "TIMER-001": ("fail", timer.REFRESHER),
        # §9 "The UAS MUST NOT increase the value of the Session-Expires header field":
        # 1800 asked, 3600 answered
        "TIMER-002": ("fail", timer.NO_INCREASE),
        "TIMER-003": ("pass", None),  # 3600 is above the Min-SE of 1200
        # Table 2: the refresher the UAC names comes back; here none does
        "TIMER-004": ("fail", timer.REFRESHER_TABLE),
        "TIMER-005": ("inconclusive", None),  # no refresher=uac to judge Require by
        "TIMER-006": ("fail", timer.REFRESHER_TABLE),  # no refresher=uas either
        "TIMER-007": ("fail", timer.REFRESHER),  # the refresh re-INVITE's 200 has none
        "TIMER-008": ("fail", timer.REFRESHER),  # nor the refresh UPDATE's
    }),
    # "Session-Expires: 100;refresher=uac" without Require: timer
    ("conf_timer_uac.xml", {
        "TIMER-001": ("pass", None),
        "TIMER-002": ("pass", None),  # 100 <= 1800
        # §9 "MUST NOT set it to a duration lower than the value in the Min-SE header
        # field in the request": Min-SE 1200, 100 answered
        "TIMER-003": ("fail", timer.ABOVE_MIN_SE),
        # refresher=uas asked, uac answered (Table 2)
        "TIMER-004": ("fail", timer.REFRESHER_TABLE),
        # §9 "has a value of 'uac', the UAS MUST place a Require header field into the
        # response with the value 'timer'"
        "TIMER-005": ("fail", timer.REQUIRE_TIMER),
        # a UAC without Supported: timer made the refresher (Table 2: uas)
        "TIMER-006": ("fail", timer.REFRESHER_TABLE),
        "TIMER-007": ("fail", timer.REFRESHER),  # its refreshes' 200 have no Session-Expires
        "TIMER-008": ("fail", timer.REFRESHER),
    }),
])
def test_timer_pack_breaking_sipp_targets(xml: str, expected: Expected) -> None:
    require("sipp")
    port = free_port("udp")
    with sipp_uas(port, scenario_file=xml, limit=120):
        results = _run(_profile("timer, update"), port, ["timer"])
    check(results, expected)


def test_timer_pack_keeping_sipload_uas() -> None:
    # sipload's default UAS (sipload/ua/session_timer.py): the interval asked for, never
    # more; the UAC's refresher kept, else uac when it supports timers (with Require:
    # timer), uas when it does not; the same in the 2xx to a refresh re-INVITE or UPDATE
    results = _run_sipload(_profile("timer, update", t1="100ms"), ["timer"])
    check(results, {f"TIMER-00{i}": ("pass", None) for i in range(1, 9)})


# --------------------------------------------------------------------------- transport


def test_transport_pack_breaking_naive_tcp_server() -> None:
    # tests/peers.NaiveTcpUas takes each TCP read for one message: every framing rule
    # broken.  §18.3 "The Content-Length header field MUST be used with stream oriented
    # transports" (its answers have none; it frames by reads, not by Content-Length);
    # §7.5 "MUST ignore any CRLF appearing before the start-line"; §18.2.2 "the response
    # MUST be sent using the existing connection"
    with NaiveTcpUas() as naive:
        results = _run(_profile("", transport="tcp"), naive.port, ["transport"],
                       transport="tcp", ids=[f"TP-00{i}" for i in range(1, 9)])
    check(results, {
        "TP-001": ("fail", transport.CONTENT_LENGTH),
        "TP-002": ("fail", transport.FRAMING),  # the second OPTIONS of a segment ignored
        "TP-003": ("fail", transport.FRAMING),  # a request over 4 segments never whole
        "TP-004": ("fail", transport.FRAMING),  # the request after a split body dropped
        "TP-005": ("fail", transport.FRAMING),  # answered before the body arrived
        "TP-006": ("fail", transport.LEADING_CRLF),
        "TP-007": ("fail", transport.SAME_CONNECTION),  # answered to Via port 9 instead
        # RFC 4475 §3.1.2.3 "the framing error is not recoverable, and the connection should
        # be closed" (advice: warn): it keeps the connection after Content-Length: -999
        "TP-008": ("warn", transport.UNRECOVERABLE),
    })


def test_transport_pack_keeping_sipload_uas() -> None:
    # sipload's UAS over TCP frames by Content-Length (sip/parser.StreamFramer), skips
    # CRLFs before a start line, answers on the request's connection, and answers a
    # negative Content-Length 400 and closes the connection
    results = _run_sipload(_profile("", t1="100ms", transport="tcp"), ["transport"],
                           transport="tcp")
    check(results, {f"TP-00{i}": ("pass", None) for i in range(1, 9)})


def test_transport_pack_keeping_baresip() -> None:
    # baresip (libre's SIP stack, no one here wrote it) keeps every framing rule over TCP;
    # a negative Content-Length gets 200 and the connection stays open (RFC 4475's advice
    # to close it not followed: warn)
    require("baresip")
    with BaresipProcess() as b:
        profile = _profile("", transport="tcp").replace("sip:service@", "sip:uas@")
        results = _run(profile, b.port, ["transport"], transport="tcp")
    check(results, {**{f"TP-00{i}": ("pass", None) for i in range(1, 8)},
                    "TP-008": ("warn", transport.UNRECOVERABLE)})


# --------------------------------------------------------------------------- rtp

RTP_IDS = ["RTP-001", "RTP-002", "RTP-003"]
MEDIA = _profile("").replace('uas: {uri: "sip:service@{target}"}',
                             'uas: {uri: "sip:service@{target}", media: true}')


def test_rtp_pack_breaking_sipp_target(tmp_path: Path) -> None:
    # tests/sipp/conf_rtp_bad.xml answers PCMU (0) and streams payload type 8, and keeps
    # streaming 3 s past its 200 to the BYE
    require("sipp")
    port = free_port("udp")
    ulaw_wav(tmp_path / "tone.ulaw.wav")
    with sipp_uas(port, scenario_file="conf_rtp_bad.xml", workdir=tmp_path, limit=60,
                  extra_args=["-mp", str(free_port("udp"))]):
        results = _run(MEDIA, port, [], ids=RTP_IDS)
    check(results, {
        "RTP-001": ("pass", None),  # its RTP does reach the offer's port
        # §6.1 "The answerer MUST send using a media format in the offer that is also
        # listed in the answer": 8 is offered, but its answer lists 0 only
        "RTP-002": ("fail", rtp.FORMATS),
        # RFC 3261 §15.1.2 "the UAS SHOULD terminate the session (and therefore stop
        # sending and listening for media)": RTP for 3 s after the BYE
        "RTP-003": ("warn", rtp.STOPS),
    })


def test_rtp_pack_sipp_builtin_uas_sends_nothing() -> None:
    # told (wrongly) that SIPp's built-in uas sends media: it answers, and no RTP comes
    # (§6.1 read with §5.1: a target that sends media sends it to the offer's port)
    require("sipp")
    port = free_port("udp")
    with sipp_uas(port, limit=60):
        results = _run(MEDIA, port, [], ids=RTP_IDS)
    check(results, {"RTP-001": ("fail", rtp.SENDS_MEDIA), "RTP-002": ("inconclusive", None),
                    "RTP-003": ("inconclusive", None)})


def test_rtp_pack_echoing_targets() -> None:
    # sipload's default UAS echoes the tester's PCMU (payload type 0, offered and
    # answered) to the offer's port, and stops with the call; SIPp's -rtp_echo likewise.
    # Neither sends RTCP of its own: RFC 3550 §6 "Functions 1-3 SHOULD be used in all
    # environments" (the first is feedback in reports): a warn for both
    results = _run_sipload(MEDIA, ["rtp"])
    check(results, {"RTP-001": ("pass", None), "RTP-002": ("pass", None),
                    "RTP-003": ("pass", None), "RTP-004": ("warn", rtp.RTCP)})
    require("sipp")
    port = free_port("udp")
    with sipp_uas(port, limit=60, extra_args=["-rtp_echo", "-mp", str(free_port("udp"))]):
        echo = _run(MEDIA, port, ["rtp"])
    check(echo, {"RTP-001": ("pass", None), "RTP-002": ("pass", None),
                 "RTP-003": ("pass", None), "RTP-004": ("warn", rtp.RTCP)})


def test_rtp_pack_keeping_baresip() -> None:
    # baresip plays its tone as PCMU to the offer's port, stops at the BYE, and sends
    # RTCP reports to the port above it
    require("baresip")
    with BaresipProcess() as b:
        results = _run(MEDIA.replace("sip:service@", "sip:uas@"), b.port, ["rtp"])
    check(results, {f"RTP-00{i}": ("pass", None) for i in range(1, 5)})


# --------------------------------------------------------------------------- robustness: valid

VALID_IDS = [f"ROB-{n}" for n in ("wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp",
                                  "longreq", "dblreq", "semiuri", "transports", "mpart01",
                                  "unreason", "noreason", "invut")]


def test_valid_torture_messages_against_breaking_targets() -> None:
    require("sipp")
    # SIPp's built-in uas drops everything but INVITE, ACK and BYE, and accepts any INVITE
    port = free_port("udp")
    with sipp_uas(port, limit=120):
        builtin = _run(_profile(""), port, [], ids=VALID_IDS)
    silent = ("wsinv", "intmeth", "escnull", "esc02", "lwsdisp", "dblreq", "semiuri",
              "transports", "mpart01")
    # silence to a valid request fails the MUST to answer it: §17.2.1 for INVITE, §11.2 for
    # OPTIONS, §8.2.1 (405/501) for a method it does not serve
    assert {k for k, r in builtin.items() if r.verdict.value == "fail"} == {
        f"ROB-{n}" for n in (*silent, "invut")}, _why(builtin)
    # §8.2.3 "the UAS MUST reject the request with a 415": it says 200 to application/unknown
    assert builtin["ROB-invut"].rule is robust.CONTENT_415
    assert builtin["ROB-wsinv"].rule is uas.ANSWER_INVITE
    assert builtin["ROB-intmeth"].rule is uas.METHOD
    # tests/sipp/conf_reject_400.xml refuses every new INVITE 400: RFC 4475's "A parser
    # must accept this as a well-formed message" (advice: warn)
    port = free_port("udp")
    with sipp_uas(port, scenario_file="conf_reject_400.xml", limit=120):
        rejecting = _run(_profile(""), port, [], ids=["ROB-esc01", "ROB-longreq"])
    assert {k: r.verdict.value for k, r in rejecting.items()} == {
        "ROB-esc01": "warn", "ROB-longreq": "warn"}, _why(rejecting)
    assert "well-formed" in str(rejecting["ROB-esc01"].rule)
    # tests/peers.NaiveUdpUas answers responses too: §18.1.2 "the response MUST be silently
    # discarded"
    with NaiveUdpUas() as naive:
        answering = _run(_profile(""), naive.port, [], ids=["ROB-unreason", "ROB-noreason"])
    check(answering, {"ROB-unreason": ("fail", robust.DISCARD),
                      "ROB-noreason": ("fail", robust.DISCARD)})


def test_valid_torture_messages_kept_by_sipload() -> None:
    # sipload's default UAS answers each: 481 to wsinv (its To tag names no dialog, §12.2.2),
    # 501 to the unknown methods, 405 to REGISTER, 415 to invut, and drops the responses
    results = _run_sipload(_profile(""), [], ids=VALID_IDS)
    check(results, {i: ("pass", None) for i in VALID_IDS})
    assert "415" in results["ROB-invut"].reason and "501" in results["ROB-intmeth"].reason


def _why(results: dict[str, CaseResult]) -> str:
    return "\n".join(f"{k}: {r.verdict.value} {r.reason}" for k, r in results.items())


# --------------------------------------------------------------------------- registrar

REGISTRAR = "roles: [registrar]\nresponse_timeout: 1s\nregistrar: {aor: 'sip:alice@{target}'}\n"


def test_registrar_cases_against_a_breaking_registrar() -> None:
    # tests/sipp/conf_registrar_bad.xml answers every REGISTER 200 without Contact, whatever
    # its CSeq (Kamailio keeps these rules: tests/test_conformance_peers.py)
    require("sipp")
    port = free_port("udp")
    with sipp_uas(port, scenario_file="conf_registrar_bad.xml", limit=60):
        results = _run(REGISTRAR, port, [], ids=["REG-001", "REG-006", "REG-007", "REG-008"])
    check(results, {
        # §10.3 step 8 "The response MUST contain Contact header field values enumerating
        # all current bindings"
        "REG-001": ("fail", registrar.LISTS_BINDINGS),
        # step 6 "the server MUST return a 400 (Invalid Request)"
        "REG-006": ("fail", registrar.STAR_INVALID),
        "REG-007": ("fail", registrar.LISTS_BINDINGS),  # the query lists nothing
        # step 7 "If not, the update MUST be aborted and the request fails": 200 to a lower
        # CSeq
        "REG-008": ("fail", registrar.STALE),
    })


# --------------------------------------------------------------------------- proxy


def test_proxy_require_against_a_target_that_accepts_anything() -> None:
    # tests/peers.NaiveUdpUas answers 200 to an INVITE whatever its Proxy-Require: §16.3
    # step 5 "the element MUST return a 420 (Bad Extension) response" (Kamailio with
    # sanity_check keeps it: tests/test_conformance_peers.py)
    with NaiveUdpUas() as naive:
        profile = ("roles: [proxy]\nresponse_timeout: 1s\n"
                   f"proxy: {{uri: 'sip:callee@{{target}}', callee: '127.0.0.1:"
                   f"{free_port('udp')}'}}\n")
        results = _run(profile, naive.port, [], ids=["PRX-006"])
    check(results, {"PRX-006": ("fail", proxy.PROXY_REQUIRE)})
