"""Regression tests (sans-IO, fake clock) for UA faults found by the interop and
example tests: each reproduces on two in-memory UAs what a real peer made happen."""

from __future__ import annotations

from sipload.ua.events import EventType as E
from tests.uapair import Pair, taking

SDP = (b"v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=audio 4000 RTP/AVP 0\r\n")


def test_prack_after_the_2xx_is_answered_200() -> None:
    """RFC 3262 §3: a UAS that sends its 2xx while a reliable 1xx is unacknowledged
    "MUST be prepared to process PRACK requests for those outstanding responses".
    sipload's default UAS answers 180 (reliable) then 200 at once: the caller's PRACK
    arrives after the 200 and got 481, which ended the caller's dialog (RFC 5057):
    the caller could not send BYE and the callee kept the call forever."""
    p = Pair()
    cid, incoming = p.invite_bob({"Supported": "100rel"}, SDP)
    # 180 (reliable) and 200 back to back, as the default UAS does: the PRACK
    # reaches bob after his 200
    p.bob.call_send_answer(incoming.tid, 180, now=p.now)
    answer = p.bob.call_build_answer(incoming.tid, 200)
    answer.set_body(SDP, "application/sdp")
    p.bob.call_send_answer(incoming.tid, 200, answer, now=p.now)
    p.transfer()
    evs = p.events(p.alice)
    answered = next(e for e in evs if e.type is E.CALL_ANSWERED)
    prack_answers = [d.split(b"\r\n", 1)[0] for s, d in p.wire
                     if s == "bob" and b"CSeq: 2 PRACK" in d]
    assert prack_answers == [b"SIP/2.0 200 OK"], prack_answers
    p.alice.call_send_ack(answered.did, now=p.now)
    p.alice.call_terminate(cid, answered.did, now=p.now)  # raised before the fix
    p.transfer()
    assert E.CALL_CLOSED in p.types(p.events(p.bob))
    assert p.alice.call_count() == 0 and p.bob.call_count() == 0


def test_a_second_prack_for_the_same_rseq_gets_481() -> None:
    p = Pair()
    _, incoming = p.invite_bob({"Supported": "100rel"})
    p.bob.call_send_answer(incoming.tid, 180, now=p.now)
    p.transfer()
    ringing = next(e for e in p.events(p.alice) if e.type is E.CALL_RINGING)
    prack = p.alice.call_build_request(ringing.did, "PRACK")
    prack.add_header("RAck", "1 1 INVITE")
    p.alice.call_send_request(ringing.did, prack, now=p.now)
    p.transfer()
    last = [d.split(b"\r\n", 1)[0] for s, d in p.wire if s == "bob"][-1]
    assert last.startswith(b"SIP/2.0 481"), last


def _prack_answered_481(answer_first: bool) -> tuple[Pair, int, list[E]]:
    """Alice's PRACK never reaches bob; a 481 for it reaches alice instead."""
    from sipload.sip.build import make_response
    from sipload.sip.message import Request
    from sipload.sip.parser import parse_message

    p = Pair()
    pracks: list[bytes] = []

    p.drop_to_bob = taking(b"PRACK ", pracks)
    cid, incoming = p.invite_bob({"Supported": "100rel"})
    p.bob.call_send_answer(incoming.tid, 180, now=p.now)
    if answer_first:
        p.bob.call_send_answer(incoming.tid, 200, now=p.now)
    p.transfer()
    assert len(pracks) == 1
    prack = parse_message(pracks[0])
    assert isinstance(prack, Request)
    p.alice.receive(make_response(prack, 481).to_bytes(), ("udp", "127.0.0.1", 5072), p.now)
    return p, cid, p.types(p.events(p.alice))


def test_a_481_to_prack_after_the_2xx_releases_the_call() -> None:
    """RFC 5057 §5.1: a 481 ends the dialog; the call went with it (it stayed forever)."""
    p, _cid, types = _prack_answered_481(answer_first=True)
    assert E.CALL_RELEASED in types
    assert p.alice.call_count() == 0


def test_a_481_to_prack_of_an_early_dialog_cancels_and_releases() -> None:
    p, _cid, types = _prack_answered_481(answer_first=False)
    assert E.CALL_RELEASED in types
    assert p.alice.call_count() == 0
    p.transfer()
    assert any(line.startswith("CANCEL ") for line in p.sent_by("alice"))
    assert "SIP/2.0 487 Request Terminated" in p.sent_by("bob")
