"""Conformance runs against real peers: SIPp (uas, uac, misbehaving XML targets), baresip,
Kamailio (registrar, proxy), all on 127.0.0.1.

Each test asserts the verdict of every case it runs, as the peer really
behaves (found by running it; the reasons are in the comments).  A misbehaving
target breaks one rule: the case for that rule must fail, and the other cases
run against it must not fail.  In CI (``CI=true``) a missing peer fails.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from sipload.cli import main as cli_main
from sipload.conformance import cases_dialog as dialog
from sipload.conformance import cases_requests as requests
from sipload.conformance import cases_sdp as sdp_cases
from sipload.conformance import cases_uas as uas
from sipload.conformance.cases_robust import index, rule_for
from sipload.conformance.model import CaseResult, Rule
from sipload.conformance.profile import load_profile, load_profile_text
from sipload.conformance.runner import RunSetup, all_cases, run, select
from tests.capture import Capture
from tests.conformance_wire import messages, wire_problems
from tests.peers import (
    REPO_ROOT,
    BaresipProcess,
    free_port,
    kamailio_proxy,
    kamailio_registrar,
    require,
    sipp_uac,
    sipp_uas,
)

pytestmark = pytest.mark.peer
PROFILES = REPO_ROOT / "scenarios" / "conformance" / "profiles"


def _run(profile_text: str, port: int, *, ids: list[str] | None = None,
         packs: list[str] | None = None) -> dict[str, CaseResult]:
    profile = load_profile_text(profile_text, "test-profile")
    profile.target = ("127.0.0.1", port)
    cases = select(all_cases(), packs=packs or [], only=ids or [])
    results = asyncio.run(asyncio.wait_for(
        run(cases, profile, RunSetup(("udp", "127.0.0.1", port))), 200))
    return {r.case.id: r for r in results}


def _verdicts(results: dict[str, CaseResult]) -> dict[str, str]:
    return {k: r.verdict.value for k, r in results.items()}


def _why(results: dict[str, CaseResult]) -> str:
    return "\n".join(f"{k}: {r.verdict.value} {r.reason}" for k, r in results.items())


def _entry(name: str) -> dict[str, object]:
    return next(e for e in index() if e["name"] == name)


SIPP_UAS = """
roles: [uas]
timers: {t1: 500ms, t2: 4s}
response_timeout: 1s
uas: {uri: "sip:service@{target}", rings: true}
"""

# Each expectation names the rule (the quoted RFC sentence, in the case modules) that the
# verdict rests on: a fail breaks that MUST, a warn skips that SHOULD.
EXPECTED_SIPP_UAS: dict[str, tuple[str, Rule | None]] = {
    "UAS-CALL-001": ("pass", None),
    "UAS-CALL-002": ("not_applicable", None),
    # it drops OPTIONS, yet answers an INVITE to the same URI: §11.2 "The response code
    # chosen MUST be the same that would have been chosen had the request been an INVITE"
    "UAS-OPT-001": ("fail", uas.OPTIONS_CODE),
    "UAS-INV-001": ("pass", None),  # no 100, but its 180 comes at once (§17.2.1 allows it)
    "UAS-INV-002": ("pass", None),
    # no ringing_uri: judged where it rings on its own, but its 200 follows the 180 at
    # once: there is no time to CANCEL (§9.1 lets a UAC CANCEL only a pending INVITE)
    "UAS-INV-003": ("inconclusive", None),
    "UAS-INV-004": ("pass", None),  # retrans="500": 500, 1000, 2000, 4000 ms, then the ACK
    "UAS-INV-006": ("inconclusive", None),  # 200 whatever the Require: no non-2xx final
    "UAS-INV-007": ("pass", None),
    # an unknown method is dropped: §8.2.1 405 (or §21.5.2's 501) never comes
    "UAS-REQ-001": ("fail", uas.METHOD),
    "UAS-REQ-002": ("pass", None),  # Max-Forwards 0 processed like any INVITE
    # §8.2.2.3 "it MUST respond by generating a response with status code 420"; it says 200
    "UAS-REQ-003": ("fail", uas.REQUIRE),
    # §8.2.2.1 "it SHOULD reject the request with a 416"; it says 200
    "UAS-REQ-004": ("warn", uas.SCHEME),
    # an INVITE without To is dropped (allowed, §18.3) and it still answers afterwards
    "UAS-REQ-005": ("pass", None),
    # a BYE in the ended call (its 4 s timewait) gets 200: §15.1.2 "SHOULD generate a 481"
    "UAS-BYE-001": ("warn", dialog.BYE_481),
    "UAS-DLG-001": ("warn", dialog.BYE_481),  # likewise for a BYE of no dialog
    # §12.2.2 "the request is out of order and MUST be rejected with a 500"; it says 200
    "UAS-DLG-002": ("fail", dialog.LOWER_CSEQ),
    # re-INVITEs are dropped: §14.2 "MUST return a 500 ... to the second INVITE"
    "UAS-DLG-003": ("fail", dialog.GLARE),
    "UAS-100REL-001": ("not_applicable", None),
    "UAS-100REL-002": ("not_applicable", None),
    "UAS-TIMER-001": ("not_applicable", None),
    "UAS-AUTH-001": ("not_applicable", None),
    "UAS-AUTH-002": ("not_applicable", None),
    # §12.1.1 "the UAS MUST copy all Record-Route header field values from the request into
    # the response": its 200 has none
    "UAS-INV-008": ("fail", requests.RECORD_ROUTE),
    # §8.2.3 "the UAS MUST reject the request with a 415": 200 to an unknown body type
    "UAS-REQ-006": ("fail", requests.UNKNOWN_BODY),
    # §9.2 "it SHOULD respond to the CANCEL with a 481": it says 200
    "UAS-CAN-001": ("warn", requests.CANCEL_481),
}


def check(results: dict[str, CaseResult], expected: dict[str, tuple[str, Rule | None]]
          ) -> None:
    """Every case has its expected verdict, resting on the expected rule."""
    got = {k: (r.verdict.value, r.rule if r.verdict.value in ("fail", "warn") else None)
           for k, r in results.items()}
    assert got == expected, _why(results)


def test_sipp_builtin_uas() -> None:
    require("sipp")
    port = free_port("udp")
    with sipp_uas(port, limit=200), Capture([port]) as cap:
        results = _run(SIPP_UAS, port, packs=["uas"])
        robust = _run(SIPP_UAS, port, ids=["ROB-badinv01", "ROB-insuf", "ROB-bigcode"])
    check(results, EXPECTED_SIPP_UAS)
    # the tester itself on the wire (issue 16 §4): §17 exactly, every case closed
    try:
        packets = cap.packets()
    finally:
        cap.close()
    problems = wire_problems(packets, port, [*results.values(), *robust.values()])
    assert not problems, "\n".join(problems)
    # the capture saw what the rules are about: its dropped OPTIONS retransmitted, ACKs
    sent = [m for m in messages(packets, port) if m.out]
    assert sum(m.method == "OPTIONS" for m in sent) > len({m.branch for m in sent
                                                           if m.method == "OPTIONS"})
    assert any(m.method == "ACK" for m in sent) and any(m.method == "BYE" for m in sent)
    # it answers 200 to an INVITE whose Via and separators are broken (RFC 4475 advises
    # 400: a SHOULD at most), drops an INVITE without Call-ID/From/To (allowed) and a
    # response with code > 699 (§18.1.2: MUST be discarded); lives on
    check(robust, {"ROB-badinv01": ("warn", rule_for(_entry("badinv01"))),
                   "ROB-insuf": ("pass", None), "ROB-bigcode": ("pass", None)})


def test_kamailio_registrar() -> None:
    with kamailio_registrar() as k:
        profile = (PROFILES / "kamailio-registrar.yaml").read_text()
        results = _run(profile, k.port, packs=["registrar"])
    assert _verdicts(results) == {
        "REG-001": "pass", "REG-002": "pass", "REG-003": "pass", "REG-004": "pass",
        "REG-005": "pass", "REG-006": "pass", "REG-AUTH-001": "pass",
        # a query lists the binding; a lower CSeq in the same Call-ID gets 400 and the
        # binding stays (§10.3 step 7 "the update MUST be aborted and the request fails")
        "REG-007": "pass", "REG-008": "pass",
        "REG-AUTH-002": "pass"}, _why(results)
    assert "realm='sipload.test'" in results["REG-AUTH-001"].reason


def test_kamailio_proxy(tmp_path: Path) -> None:
    callee = free_port("udp")
    with kamailio_proxy(callee) as k:
        profile = load_profile(PROFILES / "kamailio-proxy.yaml")
        out = tmp_path / "run"
        prof = tmp_path / "proxy.yaml"
        prof.write_text((PROFILES / "kamailio-proxy.yaml").read_text().replace(
            "127.0.0.1:5080", f"127.0.0.1:{callee}"))
        code = cli_main(["conformance", "--target", k.address, "--profile", str(prof),
                         "--out", str(out), "--quiet"])
    assert profile.proxy.callee == ("127.0.0.1", 5080)
    doc = json.loads((out / "conformance.json").read_text())
    got = {c["id"]: c["verdict"] for c in doc["cases"]}
    assert got == {"PRX-001": "pass", "PRX-002": "pass", "PRX-003": "pass",
                   "PRX-004": "not_applicable",  # proxy.cfg has no looping route
                   "PRX-005": "pass",
                   # ci/kamailio/proxy.cfg's sanity_check("512"): 420 with Unsupported
                   "PRX-006": "pass"}, doc["cases"]
    assert code == 0


SIPP_UAC = """
roles: [uac]
timers: {t1: 500ms, t2: 4s}
response_timeout: 2s
uac: {listen: "127.0.0.1:PORT", wait: 15s}
"""


def test_sipp_builtin_uac_calls_the_tester() -> None:
    require("sipp")
    port = free_port("udp")
    profile = load_profile_text(SIPP_UAC.replace("PORT", str(port)), "uac-profile")
    cases = select(all_cases(), packs=["uac"])
    box: dict[str, list[CaseResult]] = {}

    def tester() -> None:
        box["r"] = asyncio.run(asyncio.wait_for(
            run(cases, profile, RunSetup(("udp", "127.0.0.1", port), ("127.0.0.1", port))),
            120))

    t = threading.Thread(target=tester)
    t.start()
    # one call at a time (-l 1), four calls: one per applicable case
    with sipp_uac(f"127.0.0.1:{port}", calls=4, rate=2, extra_args=["-l", "1"],
                  limit=90) as uac:
        uac.wait(90)
    t.join(120)
    results = {r.case.id: r for r in box["r"]}
    assert _verdicts(results) == {
        "UAC-INV-001": "pass",
        # its INVITE carries retrans="500": 500, 1000, 2000 ms, the RFC's Timer A
        "UAC-INV-002": "pass",
        "UAC-INV-003": "pass",  # it ACKs the unexpected 486 (and aborts that call)
        # it sends the ACK to sip:service@host:port, not to our Contact (the built-in
        # uac ignores Contact and Record-Route)
        "UAC-INV-004": "fail",
        "UAC-INV-005": "not_applicable",  # it never cancels
    }, _why(results)
    assert "not our Contact" in results["UAC-INV-004"].reason


BAD = """
roles: [uas]
response_timeout: 1s
uas: {uri: "sip:service@{target}", ringing_uri: "sip:ring@{target}", rings: true}
"""


@pytest.mark.parametrize(("xml", "broken", "others"), [
    # 200 without a To tag: the response check fails; the rest still judge it fairly
    ("conf_no_totag.xml", "UAS-INV-007", {"UAS-INV-001": "pass", "UAS-REQ-002": "pass"}),
    # 200 whose CSeq says BYE: it matches no transaction, the response check catches it
    ("conf_wrong_cseq.xml", "UAS-INV-007", {"UAS-INV-001": "pass"}),
    # 200 sent once: the retransmission case fails, a plain call still works
    ("conf_no_retrans.xml", "UAS-INV-004", {"UAS-CALL-001": "pass", "UAS-INV-007": "pass"}),
    # CANCEL neither answered nor acted on
    ("conf_ignore_cancel.xml", "UAS-INV-003", {"UAS-INV-001": "pass", "UAS-INV-007": "pass"}),
])
def test_misbehaving_target(xml: str, broken: str, others: dict[str, str]) -> None:
    require("sipp")
    port = free_port("udp")
    with sipp_uas(port, scenario_file=xml, limit=120):
        results = _run(BAD, port, ids=[broken, *others])
    got = _verdicts(results)
    assert got[broken] == "fail", _why(results)
    assert {k: got[k] for k in others} == others, _why(results)


def test_cli_exit_1_when_a_case_fails(tmp_path: Path) -> None:
    require("sipp")
    port = free_port("udp")
    prof = tmp_path / "bad.yaml"
    prof.write_text(BAD)
    with sipp_uas(port, scenario_file="conf_no_retrans.xml", limit=60):
        code = cli_main(["conformance", "--target", f"127.0.0.1:{port}", "--profile",
                         str(prof), "--only", "UAS-INV-004", "--out", str(tmp_path / "o"),
                         "--quiet"])
    assert code == 1
    assert "<failure" in (tmp_path / "o" / "junit.xml").read_text()


def test_cancel_against_a_well_behaved_ringing_target() -> None:
    # tests/sipp/uas_ring_cancel.xml rings, answers the CANCEL 200 and the INVITE 487:
    # the counterpart of conf_ignore_cancel.xml
    require("sipp")
    port = free_port("udp")
    with sipp_uas(port, scenario_file="uas_ring_cancel.xml", limit=60):
        results = _run(BAD, port, ids=["UAS-INV-003"])
    assert _verdicts(results) == {"UAS-INV-003": "pass"}, _why(results)


BARESIP = """
roles: [uas]
timers: {t1: 500ms, t2: 4s}
response_timeout: 1s
uas: {uri: "sip:uas@{target}", rings: true}
"""


def _rob(name: str) -> Rule:
    return rule_for(_entry(name))


EXPECTED_BARESIP: dict[str, tuple[str, Rule | None]] = {
    "UAS-CALL-001": ("pass", None),
    "UAS-CALL-002": ("not_applicable", None),
    "UAS-OPT-001": ("pass", None),
    "UAS-INV-001": ("pass", None),  # its 180 comes at once (§17.2.1 allows no 100)
    "UAS-INV-002": ("pass", None),
    "UAS-INV-003": ("inconclusive", None),  # auto-answer: the 200 follows the 180 at once
    "UAS-INV-004": ("pass", None),
    "UAS-INV-006": ("pass", None),
    "UAS-INV-007": ("pass", None),
    "UAS-REQ-001": ("pass", None),  # 501 without Allow: Allow is a MUST only in a 405
    "UAS-REQ-002": ("pass", None),
    "UAS-REQ-003": ("pass", None),
    # §8.2.2.1 "If the Request-URI uses a scheme not supported by the UAS, it SHOULD
    # reject the request with a 416"; baresip says 404
    "UAS-REQ-004": ("warn", uas.SCHEME),
    # it answers an INVITE without To (RFC 4475 advises 400; RFC 3261 has no MUST)
    "UAS-REQ-005": ("warn", uas.MISSING_TO),
    "UAS-BYE-001": ("pass", None),
    "UAS-DLG-001": ("pass", None),
    "UAS-DLG-002": ("pass", None),
    "UAS-DLG-003": ("inconclusive", None),  # each re-INVITE answered at once: no overlap
    "UAS-100REL-001": ("not_applicable", None),
    "UAS-100REL-002": ("not_applicable", None),
    "UAS-TIMER-001": ("not_applicable", None),
    "UAS-AUTH-001": ("not_applicable", None),
    "UAS-AUTH-002": ("not_applicable", None),
    "UAS-INV-008": ("pass", None),  # both Record-Route values copied, in order
    # §8.2.3 "the UAS MUST reject the request with a 415": 500 to an unknown body type
    "UAS-REQ-006": ("fail", requests.UNKNOWN_BODY),
    "UAS-CAN-001": ("pass", None),
    # robustness: dropping a malformed request is allowed (§18.3) as long as it still
    # answers afterwards; RFC 4475's "400" is advice (a SHOULD at most: RFC 3261 §18.3
    # for a short body), so another error code or a liberal 200 is a warn
    "ROB-badinv01": ("pass", None),
    "ROB-clerr": ("warn", _rob("clerr")),  # 500, where §18.3 "SHOULD generate a 400"
    "ROB-ncl": ("pass", None),
    "ROB-scalar02": ("warn", _rob("scalar02")),  # 501 to an overlarge CSeq, not 400
    "ROB-scalarlg": ("pass", None),
    "ROB-quotbal": ("pass", None),
    "ROB-ltgtruri": ("pass", None),
    "ROB-lwsruri": ("pass", None),
    "ROB-lwsstart": ("pass", None),
    "ROB-trws": ("pass", None),
    "ROB-escruri": ("pass", None),
    "ROB-baddate": ("pass", None),
    "ROB-regbadct": ("pass", None),
    "ROB-badaspec": ("pass", None),
    "ROB-baddn": ("pass", None),
    "ROB-badvers": ("pass", None),
    "ROB-mismatch01": ("warn", _rob("mismatch01")),  # 200 to OPTIONS/CSeq INVITE
    "ROB-mismatch02": ("pass", None),
    "ROB-bigcode": ("pass", None),  # §18.1.2: a response "MUST be silently discarded"
    "ROB-badbranch": ("pass", None),
    "ROB-insuf": ("warn", _rob("insuf")),  # 500, not 400
    # 404 for the unknown scheme: the same §8.2.2.1 step "SHOULD reject ... with a 416"
    "ROB-unkscm": ("warn", uas.SCHEME),
    "ROB-novelsc": ("pass", None),  # 404 is one of the two answers RFC 4475 names
    # the one MUST baresip breaks: OPTIONS with Require: newfeature, ... answered 200;
    # §8.2.2.3 "it MUST respond by generating a response with status code 420"
    "ROB-bext01": ("fail", uas.REQUIRE),
    "ROB-multi01": ("warn", _rob("multi01")),  # 500, not 400
    "ROB-mcl01": ("warn", _rob("mcl01")),  # 200 despite two Content-Lengths
    "ROB-bcast": ("pass", None),
    "ROB-sdp01": ("warn", _rob("sdp01")),  # 500, not 406/400
    # RFC 4475's valid messages: each must be answered (silence fails the MUST to answer)
    # and not refused as malformed
    "ROB-wsinv": ("pass", None),
    "ROB-intmeth": ("pass", None),  # 501
    "ROB-esc01": ("pass", None),  # 404: it serves no such user (§8.2.2.1, before the body)
    "ROB-escnull": ("pass", None),  # 501 to REGISTER
    "ROB-esc02": ("pass", None),  # 501
    "ROB-lwsdisp": ("pass", None),
    # its long INVITE (top Via without a branch) gets no answer: §17.2.1's MUST to answer
    "ROB-longreq": ("fail", uas.ANSWER_INVITE),
    "ROB-dblreq": ("pass", None),
    "ROB-semiuri": ("pass", None),  # 404
    "ROB-transports": ("pass", None),
    "ROB-mpart01": ("pass", None),  # 415 for multipart/mixed: allowed, not a 400
    "ROB-unreason": ("pass", None),  # responses discarded (§18.1.2)
    "ROB-noreason": ("pass", None),
    # §8.2.3 "the UAS MUST reject the request with a 415 (Unsupported Media Type)": it says
    # 500 to a body of type application/unknownformat
    "ROB-invut": ("fail", _rob("invut")),
}


def test_baresip_auto_answering() -> None:
    # a real user agent nobody here wrote (ci/baresip): every verdict asserted
    require("baresip")
    with BaresipProcess() as b:
        results = _run(BARESIP, b.port, packs=["uas", "robustness"])
    check(results, EXPECTED_BARESIP)


SDP_PROFILE = """
roles: [uas]
response_timeout: 1s
uas: {uri: "sip:service@{target}"}
"""


@pytest.mark.parametrize(("xml", "expected"), [
    # tests/sipp/conf_bad_sdp.xml drops the offered video m-line, answers G.729 alone and
    # changes its o= session id in the re-INVITE answer: each rule caught
    ("conf_bad_sdp.xml", {"SDP-001": ("fail", sdp_cases.SAME_M_LINES),
                          "SDP-002": ("fail", sdp_cases.COMMON_CODEC),
                          "SDP-003": ("fail", sdp_cases.ORIGIN_VERSION)}),
    # SIPp's built-in uas answers one m-line of PCMU whatever the offer (§6 broken, §6.1
    # kept) and drops re-INVITEs (§17.2.1: no answer at all)
    (None, {"SDP-001": ("fail", sdp_cases.SAME_M_LINES), "SDP-002": ("pass", None),
            "SDP-003": ("fail", uas.ANSWER_INVITE)}),
])
def test_sdp_pack_against_sipp(xml: str | None, expected: dict[str, tuple[str, Rule | None]]
                               ) -> None:
    require("sipp")
    port = free_port("udp")
    with sipp_uas(port, scenario_file=xml, limit=60):
        results = _run(SDP_PROFILE, port, packs=["sdp"])
    check(results, expected)


def test_sdp_pack_against_keeping_targets() -> None:
    # baresip keeps all three rules (video rejected with port 0, PCMU/PCMA/101 from the
    # offer, o= version +1 on the re-INVITE); sipload's own UAS is covered in
    # tests/test_conformance_sipload.py
    require("baresip")
    with BaresipProcess() as b:
        results = _run(BARESIP, b.port, packs=["sdp"])
    check(results, {"SDP-001": ("pass", None), "SDP-002": ("pass", None),
                    "SDP-003": ("pass", None)})
