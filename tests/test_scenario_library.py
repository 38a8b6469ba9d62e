"""Every scenario of the library runs against its UAS counterpart in memory.

Each UAC scenario names its counterpart (``counterpart:``); both sides must
record success for every call, and the wire must show what the scenario's
header comment promises.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sipload.scenario.loader import load_file
from sipload.stats.records import Result
from tests.scenario_pair import SCENARIOS, ScenarioPair, program

UAC_SCENARIOS = sorted(
    p.name for p in SCENARIOS.glob("*.yaml") if load_file(p).role == "uac"
    and not load_file(p).media)  # RTP needs sockets: tests/test_media_run.py runs those


def _ok(sp: ScenarioPair, calls: int) -> None:
    assert len(sp.records) == calls, sp.records
    assert [r.result for r in sp.records] == [Result.SUCCESS] * calls, [
        (r.failure, r.detail, r.step) for r in sp.records]
    assert [r.result for r in sp.uas_records] == [Result.SUCCESS] * len(sp.uas_records), [
        (r.failure, r.detail, r.step) for r in sp.uas_records]
    assert sp.uas_records, "the UAS side recorded no call"


def _run(uac: str, calls: int = 2) -> ScenarioPair:
    prog = program(uac)
    assert prog.counterpart, f"{uac} names no counterpart"
    sp = ScenarioPair(prog, program(prog.counterpart))
    sp.run(calls=calls)
    _ok(sp, calls)
    return sp


def _sent(sp: ScenarioPair, who: str, start: bytes) -> list[bytes]:
    return [d for s, d in sp.pair.wire if s == who and d.startswith(start)]


def test_the_library_has_every_scenario_of_the_issue() -> None:
    names = {p.name for p in SCENARIOS.glob("*.yaml")}
    for wanted in ("basic_call", "info_dtmf", "cancel_ringing", "busy", "no_answer",
                   "reinvite_hold", "update", "blind_transfer", "prack_100rel",
                   "register_call", "options_ping", "message", "private_command"):
        assert f"{wanted}.yaml" in names and f"{wanted}_uas.yaml" in names, wanted
    assert "digest_uas.yaml" in names


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.name)
def test_each_scenario_opens_with_a_comment_saying_what_it_does(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and len(first) > 20, first


@pytest.mark.parametrize("uac", UAC_SCENARIOS)
def test_uac_scenario_against_its_counterpart(uac: str) -> None:
    _run(uac, calls=3)


def test_dtmf_info_bodies_are_the_seeds() -> None:
    sp = _run("info_dtmf.yaml", calls=1)
    infos = _sent(sp, "alice", b"INFO ")
    assert len(infos) == 3
    assert infos[0].endswith(b"\r\n\r\nSignal=5\r\nDuration=250\r\n")
    assert b"Content-Type: application/dtmf-relay\r\n" in infos[0]
    assert infos[2].endswith(b"Signal=#\r\nDuration=250\r\n")


def test_private_command_carries_the_seeds_header_and_body() -> None:
    sp = _run("private_command.yaml", calls=1)
    (cmd,) = _sent(sp, "alice", b"PRIVATECOMMAND ")
    assert b"P-MyCommand: option=value\r\n" in cmd
    assert b"Content-Type: application/antisip-domotic\r\n" in cmd
    assert cmd.endswith(b"\r\n\r\nroom=1;light=on\r\nroom=2;light=off\r\n")


def test_cancel_after_ringing_sends_cancel_and_gets_487() -> None:
    sp = _run("cancel_ringing.yaml", calls=1)
    assert _sent(sp, "alice", b"CANCEL ")
    assert _sent(sp, "bob", b"SIP/2.0 487")
    assert 487 in sp.records[0].codes or sp.records[0].result == Result.SUCCESS


def test_no_answer_gives_up_after_its_timeout_with_cancel() -> None:
    sp = _run("no_answer.yaml", calls=1)
    assert _sent(sp, "alice", b"CANCEL ")
    rec = sp.records[0]
    invite_at = next(t for t, d, label in rec.messages if d == "out" and label == "INVITE")
    cancel_at = next(t for t, d, label in rec.messages if label == "terminate")
    assert cancel_at - invite_at == pytest.approx(3.0, abs=0.01)
    assert "cancel" in rec.marks


def test_busy_branches_to_its_label_and_succeeds() -> None:
    sp = _run("busy.yaml", calls=1)
    rec = sp.records[0]
    assert 486 in rec.codes
    assert not _sent(sp, "alice", b"BYE ")


def test_hold_and_resume_offer_sendonly_then_sendrecv() -> None:
    sp = _run("reinvite_hold.yaml", calls=1)
    invites = _sent(sp, "alice", b"INVITE ")
    assert len(invites) == 3
    assert b"a=sendonly" in invites[1] and b"a=sendrecv" in invites[2]
    acks = _sent(sp, "alice", b"ACK ")
    assert [a.split(b"CSeq: ")[1].split(b"\r\n")[0] for a in acks] == [
        b"1 ACK", b"2 ACK", b"3 ACK"]
    assert "hold" in sp.records[0].marks


def test_prack_is_answered_200_not_481() -> None:
    sp = _run("prack_100rel.yaml", calls=1)
    assert _sent(sp, "alice", b"PRACK ")
    assert not _sent(sp, "bob", b"SIP/2.0 481")


def test_blind_transfer_places_the_second_call_on_another_leg() -> None:
    sp = _run("blind_transfer.yaml", calls=1)
    invites = _sent(sp, "alice", b"INVITE ")
    assert invites[0].startswith(b"INVITE sip:bob@") and \
        invites[1].startswith(b"INVITE sip:transfer-target@")
    notifies = _sent(sp, "alice", b"NOTIFY ")
    assert notifies[0].endswith(b"SIP/2.0 100 Trying\r\n")
    assert notifies[1].endswith(b"SIP/2.0 200 OK\r\n")
    assert b"Content-Type: message/sipfrag;version=2.0" in notifies[0]
    assert b"Referred-By: <sip:transferor@" in invites[1]
    assert "transfer" in sp.records[0].marks
    assert len(sp.uas_records) == 1  # the second call went to the transferor's leg


def test_register_with_digest_then_call() -> None:
    sp = _run("register_call.yaml", calls=1)
    regs = _sent(sp, "alice", b"REGISTER ")
    assert len(regs) == 3
    assert b"Authorization: Digest " not in regs[0]
    assert b'Authorization: Digest username="alice"' in regs[1]
    assert _sent(sp, "bob", b"SIP/2.0 401")
    assert "register" in sp.records[0].marks


def test_uas_challenge_with_sha256() -> None:
    sp = _run("auth_call.yaml", calls=2)
    (challenge, *_) = _sent(sp, "bob", b"SIP/2.0 401")
    assert b"algorithm=SHA-256" in challenge and b'realm="sipload.test"' in challenge
    invites = _sent(sp, "alice", b"INVITE ")
    assert sum(b"Authorization: Digest" in i for i in invites) == 2


def test_uas_challenge_refuses_wrong_password() -> None:
    wrong = (SCENARIOS / "auth_call.yaml").read_text().replace("password: secret",
                                                                 "password: wrong")
    sp = ScenarioPair(program(wrong), program("digest_uas.yaml"))
    sp.run(calls=1)
    (uas,) = sp.uas_records
    assert uas.result == Result.FAILED and uas.failure == "check_failed"
    assert uas.detail.startswith("authenticate: wrong-password")
    assert sp.records[0].result == Result.FAILED


def test_options_and_message_are_answered_by_the_scenario() -> None:
    sp = _run("options_ping.yaml", calls=2)
    assert len(_sent(sp, "bob", b"SIP/2.0 200")) == 2  # one answer each, the scenario's
    assert "ping" in sp.records[0].marks
    sp = _run("message.yaml", calls=1)
    (msg,) = _sent(sp, "alice", b"MESSAGE ")
    assert msg.endswith(b"Hello from sipload, message 0")
