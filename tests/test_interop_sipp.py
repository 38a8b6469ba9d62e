"""sipload against SIPp (a peer no one here wrote), on 127.0.0.1 only.

* a sipload UAC (``sipload run`` and the UARuntime example) against ``sipp -sn uas``;
* ``sipp -sn uac`` against ``sipload uas`` (the default UAS), 50 calls, exit code 0;
* SIPp XML scenarios in ``tests/sipp/interop_*.xml`` where SIPp is the caller (INFO,
  re-INVITE, CANCEL after 180, 486, BYE from the callee) against sipload's default
  UAS or ``docs/examples/answer_call.py``, and where SIPp is the callee (reliable 180
  that sipload must PRACK, INFO DTMF, 486, BYE from the callee, digest challenge
  checked with ``verifyauth``) against the ``docs/examples`` programs.

SIPp judges each call (its exit code is 0 only when every call followed its
scenario); the sipload side is judged by its exit code and output.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bgproc import Background, example, run, sipload
from tests.peers import LOOPBACK, free_port, require, sipp_uac, sipp_uas

pytestmark = pytest.mark.peer

LIMIT = 30.0
READY = "listening on"


def default_uas(port: int) -> Background:
    return Background(sipload("uas", "--listen", f"{LOOPBACK}:{port}"), ready=READY)


def answerer(port: int, *args: object) -> Background:
    return Background(example("answer_call.py", "--listen", f"{LOOPBACK}:{port}",
                              "--timeout", 20, *args), ready=READY)


# ================================================================ basic calls, both ways


def test_sipload_run_against_sipp_uas(tmp_path: Path) -> None:
    require("sipp")
    port = free_port("udp")
    with sipp_uas(port) as uas:
        done = run(sipload("run", "scenarios/basic_call.yaml", "--target", f"{LOOPBACK}:{port}",
                           "--calls", 50, "--rate", 50, "--workers", 1, "--quiet",
                           "--out", tmp_path / "run"), 90)
        assert done.returncode == 0, done.stdout + done.stderr + uas.describe()
    calls = json.loads((tmp_path / "run" / "summary.json").read_text())["calls"]
    assert calls["succeeded"] == 50 and calls["failed"] == 0, calls


def test_runtime_program_against_sipp_uas() -> None:
    require("sipp")
    port = free_port("udp")
    with sipp_uas(port) as uas:
        done = run(example("initiate_call.py", "--target", f"{LOOPBACK}:{port}"), LIMIT)
        assert done.returncode == 0, done.stdout + done.stderr + uas.describe()
    assert "answered: 200" in done.stdout and "call ended" in done.stdout


def test_sipp_uac_against_sipload_uas() -> None:
    require("sipp")
    port = free_port("udp")
    with default_uas(port) as uas:
        with sipp_uac(f"{LOOPBACK}:{port}", calls=50, rate=50) as uac:
            assert uac.wait(LIMIT) == 0, uac.describe() + uac.errors
        assert uas.stop() == 0
    assert "50 calls answered, 50 ended by BYE" in uas.output, uas.output


# ================================================================ SIPp calls sipload


@pytest.mark.parametrize(("scenario", "calls", "callee_args"), [
    ("interop_uac_info.xml", 5, None),  # INFO inside a call, default UAS
    ("interop_uac_reinvite.xml", 5, None),  # re-INVITE (hold), default UAS
    ("interop_uac_cancel.xml", 1, ("--answer-after", 10)),  # CANCEL after 180 -> 200/487
    ("interop_uac_486.xml", 1, ("--status", 486)),  # 486 Busy Here, ACKed
    ("interop_uac_callee_bye.xml", 1, ("--hangup-after", 0.2)),  # BYE from the callee
], ids=["info", "reinvite", "cancel", "486", "callee-bye"])
def test_sipp_scenario_calls_sipload(scenario: str, calls: int,
                                     callee_args: tuple[object, ...] | None) -> None:
    require("sipp")
    port = free_port("udp")
    callee = default_uas(port) if callee_args is None else answerer(port, *callee_args)
    with callee:
        with sipp_uac(f"{LOOPBACK}:{port}", scenario, calls=calls, rate=20, service="bob",
                      trace_msg=True) as uac:
            code = uac.wait(LIMIT)
            assert code == 0, uac.describe() + uac.errors + uac.messages + callee.output
        if callee_args is None:
            assert callee.stop() == 0
        else:
            assert callee.wait(LIMIT) == 0, callee.output
    if scenario == "interop_uac_cancel.xml":
        assert "the caller cancelled: 487 sent by the UA" in callee.output
        assert "answered 200" not in callee.output
    if callee_args is None:
        assert f"{calls} calls answered, {calls} ended by BYE" in callee.output, callee.output
    if scenario == "interop_uac_info.xml":
        assert f"{calls} other requests" in callee.output, callee.output


# ================================================================ sipload calls SIPp


@pytest.mark.parametrize(("scenario", "sipp_args", "program", "expect_code", "expect"), [
    ("interop_uas_100rel.xml", (), ("initiate_call.py",), 0,
     "reliable provisional 180 RSeq=1: PRACK sent by the UA"),
    ("interop_uas_info.xml", (), ("info_dtmf.py", "--digits", "7"), 0,
     "INFO Signal=7 answered 200"),
    ("interop_uas_486.xml", (), ("initiate_call.py",), 1, "call failed: 486"),
    ("interop_uas_bye.xml", (), ("initiate_call.py", "--hold", 10), 0,
     "the callee hung up (BYE received, 200 sent by the UA)"),
    ("interop_uas_auth.xml", ("-set", "user", "alice", "-set", "password", "s3cret"),
     ("initiate_call.py", "--username", "alice", "--password", "s3cret"), 0, "call ended"),
], ids=["100rel-prack", "info-dtmf", "486", "callee-bye", "digest"])
def test_sipload_calls_sipp_scenario(scenario: str, sipp_args: tuple[str, ...],
                                     program: tuple[object, ...], expect_code: int,
                                     expect: str) -> None:
    require("sipp")
    port = free_port("udp")
    with sipp_uas(port, scenario, extra_args=["-m", "1", *sipp_args], trace_msg=True) as uas:
        done = run(example(str(program[0]), "--target", f"{LOOPBACK}:{port}", *program[1:]),
                   LIMIT)
        out = done.stdout + done.stderr
        sipp_code = uas.wait(LIMIT)
        why = out + uas.describe() + uas.errors + uas.messages
    assert sipp_code == 0, why
    assert done.returncode == expect_code, why
    assert expect in out, why


def test_digest_with_a_wrong_password_fails_once() -> None:
    """SIPp's verifyauth refuses the credentials (403): sipload does not retry."""
    require("sipp")
    port = free_port("udp")
    with sipp_uas(port, "interop_uas_auth.xml", trace_msg=True,
                  extra_args=["-m", "1", "-set", "user", "alice", "-set", "password", "s3cret"]
                  ) as uas:
        done = run(example("initiate_call.py", "--target", f"{LOOPBACK}:{port}",
                           "--username", "alice", "--password", "wrong"), LIMIT)
        out = done.stdout + done.stderr
        uas.stop()
        why = out + uas.describe() + uas.messages
    assert done.returncode == 1 and "call failed: 403" in out, why
    sent = [block for block in uas.messages.split("-----") if "message received" in block]
    invites = [b for b in sent if "\nINVITE sip:" in b]
    assert len(invites) == 2, why  # the first, then one with credentials: no loop
    assert "Authorization: Digest" in invites[1] and 'username="alice"' in invites[1], why


def test_sipload_run_acks_a_200_sent_again_with_the_same_ack(tmp_path: Path) -> None:
    """SIPp's 200 OK comes a second time after sipload's ACK (a UAS whose ACK was lost
    retransmits it): the engine's UA ACKs it again, the same bytes (it keeps the ACK's
    branch and CSeq, not its text), and the call goes on to its BYE.  SIPp's message
    log holds what arrived."""
    require("sipp")
    port = free_port("udp")
    out = tmp_path / "run"
    with sipp_uas(port, "interop_uas_200_again.xml", extra_args=["-m", "1"],
                  trace_msg=True) as uas:
        done = run(sipload("run", "scenarios/basic_call.yaml", "--target",
                           f"{LOOPBACK}:{port}", "--calls", 1, "--rate", 1, "--workers", 1,
                           "--quiet", "--out", out), LIMIT)
        sipp_code = uas.wait(LIMIT)
        why = done.stdout + done.stderr + uas.describe() + uas.errors + uas.messages
    assert sipp_code == 0, why
    assert done.returncode == 0, why
    received = [b.split("bytes :", 1)[1].strip() for b in uas.messages.split("-----")
                if "message received" in b]
    methods = [m.split(" ", 1)[0] for m in received]
    acks = [m for m in received if m.startswith("ACK ")]
    # every 200 ACKed, each time with the first ACK's bytes (SIPp took each for a
    # retransmission of the first and sent its 200 again: see the scenario)
    assert len(acks) >= 2 and all(a == acks[0] for a in acks), why
    assert methods[:2] == ["INVITE", "ACK"] and "BYE" in methods, methods[:10]
    assert set(methods[1:methods.index("BYE")]) == {"ACK"}, methods[:10]
