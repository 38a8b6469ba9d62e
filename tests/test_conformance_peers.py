"""Conformance runs against real peers: SIPp (uas, uac, misbehaving XML targets) and
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
from sipload.conformance.model import CaseResult
from sipload.conformance.profile import load_profile, load_profile_text
from sipload.conformance.runner import RunSetup, all_cases, run, select
from tests.peers import (
    REPO_ROOT,
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


SIPP_UAS = """
roles: [uas]
timers: {t1: 500ms, t2: 4s}
response_timeout: 1s
uas: {uri: "sip:service@{target}", rings: true}
"""

EXPECTED_SIPP_UAS = {
    "UAS-CALL-001": "pass",
    "UAS-CALL-002": "not_applicable",
    "UAS-OPT-001": "inconclusive",  # it drops OPTIONS: nothing comes back at all
    "UAS-INV-001": "pass",  # no 100, but its 180 comes at once (§17.2.1 allows it)
    "UAS-INV-002": "pass",
    "UAS-INV-003": "not_applicable",
    "UAS-INV-004": "pass",  # retrans="500": 500, 1000, 2000, 4000 ms, stopped by the ACK
    "UAS-INV-006": "inconclusive",  # it answers 200 whatever the Require: no non-2xx final
    "UAS-INV-007": "pass",
    "UAS-REQ-001": "fail",  # an unknown method is dropped, not 405/501
    "UAS-REQ-002": "pass",  # Max-Forwards 0 processed like any INVITE
    "UAS-REQ-003": "fail",  # an unknown Require is answered 200, not 420
    "UAS-REQ-004": "fail",  # an unknown URI scheme is answered 200, not 416
    "UAS-REQ-005": "fail",  # an INVITE without To is dropped, not 400
    "UAS-BYE-001": "fail",  # a BYE in the ended call (in its 4 s timewait) gets 200, not 481
    "UAS-DLG-001": "fail",  # a BYE of no dialog is answered 200, not 481
    "UAS-DLG-002": "fail",  # a BYE with a lower CSeq is accepted, not 500
    "UAS-DLG-003": "fail",  # re-INVITEs are dropped: no final response at all
    "UAS-100REL-001": "not_applicable",
    "UAS-100REL-002": "not_applicable",
    "UAS-TIMER-001": "not_applicable",
    "UAS-AUTH-001": "not_applicable",
    "UAS-AUTH-002": "not_applicable",
}


def test_sipp_builtin_uas() -> None:
    require("sipp")
    port = free_port("udp")
    with sipp_uas(port, limit=200):
        results = _run(SIPP_UAS, port, packs=["uas"])
        robust = _run(SIPP_UAS, port, ids=["ROB-badinv01", "ROB-insuf", "ROB-bigcode"])
    assert _verdicts(results) == EXPECTED_SIPP_UAS, _why(results)
    # it answers 200 to an INVITE whose Via and separators are broken (RFC 4475: 400),
    # drops an INVITE without Call-ID/From/To and a response with code > 699; lives on
    assert _verdicts(robust) == {"ROB-badinv01": "fail", "ROB-insuf": "pass",
                                 "ROB-bigcode": "pass"}, _why(robust)


def test_kamailio_registrar() -> None:
    with kamailio_registrar() as k:
        profile = (PROFILES / "kamailio-registrar.yaml").read_text()
        results = _run(profile, k.port, packs=["registrar"])
    assert _verdicts(results) == {
        "REG-001": "pass", "REG-002": "pass", "REG-003": "pass", "REG-004": "pass",
        "REG-005": "pass", "REG-006": "pass", "REG-AUTH-001": "pass",
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
                   "PRX-005": "pass"}, doc["cases"]
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
