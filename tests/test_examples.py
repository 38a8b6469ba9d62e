"""The programs in docs/examples run, on loopback, against sipload's default UAS or
against ``answer_call.py``, and print what the how-to says happens.  Each program is
a subprocess bounded by its own ``--timeout`` and by ``subprocess`` timeouts."""

from __future__ import annotations

import pytest

from tests.bgproc import Background, example, run, sipload
from tests.peers import free_port, sip_request

LIMIT = 20.0  # seconds any one program may take
READY = "listening on"


def answerer(port: int, *args: object) -> Background:
    return Background(example("answer_call.py", "--listen", f"127.0.0.1:{port}",
                              "--timeout", 15, *args), ready=READY)


def default_uas(port: int) -> Background:
    return Background(sipload("uas", "--listen", f"127.0.0.1:{port}"), ready=READY)


def client(name: str, port: int, *args: object) -> tuple[int, str]:
    done = run(example(name, "--target", f"127.0.0.1:{port}", "--timeout", 10, *args), LIMIT)
    return done.returncode, done.stdout + done.stderr


def test_initiate_call_100rel_against_answer_call() -> None:
    port = free_port("udp")
    with answerer(port) as callee:
        code, out = client("initiate_call.py", port)
        assert code == 0, out
        assert callee.wait(LIMIT) == 0, callee.output
    assert "Supported: 100rel" in out
    assert "reliable provisional 180 RSeq=1: PRACK sent by the UA" in out
    assert "answered: 200 reference={'example': 'initiate_call'}" in out
    assert "call ended" in out
    assert "180 sent reliably (Require: 100rel)" in callee.output
    assert "PRACK received" in callee.output
    # the 200 goes only after the PRACK
    assert callee.output.index("PRACK received") < callee.output.index("answered 200 with SDP")
    assert "the caller hung up" in callee.output


def test_initiate_call_against_default_uas() -> None:
    port = free_port("udp")
    with default_uas(port) as uas:
        code, out = client("initiate_call.py", port, "--hold", 0)
        assert code == 0, out
        assert uas.stop() == 0
    assert "event call-answered" in out and "call ended" in out
    assert "1 calls answered, 1 ended by BYE" in uas.output


def test_answer_call_486_and_the_caller_sees_it() -> None:
    port = free_port("udp")
    with answerer(port, "--status", 486) as callee:
        code, out = client("initiate_call.py", port)
        assert callee.wait(LIMIT) == 0, callee.output
    assert code == 1, out
    assert "call failed: 486" in out
    assert "answered 486" in callee.output


def test_answer_call_415_when_no_sdp_answer_can_be_made() -> None:
    port = free_port("udp")
    with answerer(port) as callee:
        # an INVITE without an offer: sdp_complete_200ok fails, the how-to sends 415
        reply = sip_request(port, "INVITE", timeout=5.0)
        assert callee.wait(LIMIT) == 0, callee.output
    assert reply is not None and reply.status == 415, callee.output
    assert "answered 415" in callee.output


def test_answer_call_hangs_up_itself() -> None:
    port = free_port("udp")
    with answerer(port, "--hangup-after", 0.1) as callee:
        code, out = client("initiate_call.py", port, "--hold", 5)
        assert callee.wait(LIMIT) == 0, callee.output
    assert code == 0, out
    assert "the callee hung up" in out
    assert "terminate (callee hangs up)" in callee.output


@pytest.mark.parametrize("at", ["calling", "ringing"])
def test_terminate_before_the_answer_is_a_cancel(at: str) -> None:
    port = free_port("udp")
    with answerer(port, "--answer-after", 5) as callee:
        code, out = client("terminate_call.py", port, "--at", at)
        assert callee.wait(LIMIT) == 0, callee.output
    assert code == 0, out
    assert "terminate sends CANCEL" in out
    assert "status=487" in out
    assert "the caller cancelled" in callee.output


def test_terminate_after_the_answer_is_a_bye() -> None:
    port = free_port("udp")
    with default_uas(port) as uas:
        code, out = client("terminate_call.py", port, "--at", "answered")
        assert uas.stop() == 0
    assert code == 0, out
    assert "call state CONFIRMED: terminate sends BYE" in out
    assert "call ended: BYE answered" in out
    assert "1 ended by BYE" in uas.output


def test_info_dtmf() -> None:
    port = free_port("udp")
    with answerer(port) as callee:
        code, out = client("info_dtmf.py", port, "--digits", "5#")
        assert callee.wait(LIMIT) == 0, callee.output
    assert code == 0, out
    assert "INFO Signal=5 answered 200" in out and "INFO Signal=# answered 200" in out
    assert "INFO received Content-Type: application/dtmf-relay" in callee.output
    assert r"body: b'Signal=5\r\nDuration=250\r\n'" in callee.output
    assert r"body: b'Signal=#\r\nDuration=250\r\n'" in callee.output


def test_private_command_to_answer_call() -> None:
    port = free_port("udp")
    with answerer(port) as callee:
        code, out = client("private_command.py", port)
        assert callee.wait(LIMIT) == 0, callee.output
    assert code == 0, out
    assert "PRIVATECOMMAND answered 200" in out
    assert ("PRIVATECOMMAND received P-MyCommand: option=value "
            "Content-Type: application/antisip-domotic") in callee.output
    assert r"body: b'room=1;light=on\r\nroom=2;light=off\r\n'" in callee.output


def test_private_command_refused_by_the_default_uas() -> None:
    port = free_port("udp")
    with default_uas(port) as uas:
        code, out = client("private_command.py", port)
        assert uas.stop() == 0
    assert code == 1, out
    assert "PRIVATECOMMAND answered 501" in out and "(Allow: INVITE" in out


def test_initiate_call_times_out_without_a_peer() -> None:
    port = free_port("udp")  # nothing listens: ICMP refused or silence
    code, out = client("initiate_call.py", port, "--timeout", 1)
    assert code in (1, 3), out
