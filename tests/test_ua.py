"""The user agent, two of them wired in memory with a fake clock."""

from __future__ import annotations

import itertools

import pytest

from sipload.sip.build import make_response
from sipload.sip.digest import DigestServer, parse_credentials
from sipload.sip.errors import LocalProtocolError, ParseError
from sipload.sip.message import Request
from sipload.sip.parser import parse_message
from sipload.ua.events import Event, EventType
from tests.uapair import Pair, taking

SDP = (
    b"v=0\r\no=jack 0 0 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-11\r\n"
)
E = EventType


def _one(events: list[Event], etype: EventType) -> Event:
    found = [e for e in events if e.type == etype]
    assert len(found) == 1, (etype, [e.type for e in events])
    return found[0]


def start_call(p: Pair, supported: str | None = None) -> tuple[int, Event]:
    invite = p.alice.call_build_initial_invite("<sip:bob@127.0.0.1:5072>",
                                               "<sip:alice@127.0.0.1:5071>", subject="test")
    if supported:
        invite.set_header("Supported", supported)
    invite.set_body(SDP, "application/sdp")
    cid = p.alice.call_send_initial_invite(invite, now=p.now)
    p.alice.call_set_reference(cid, "ref-1")
    p.transfer()
    incoming = _one(p.events(p.bob), E.CALL_INVITE)
    return cid, incoming


def answer_call(p: Pair, incoming: Event) -> Event:
    p.bob.call_send_answer(incoming.tid, 180, now=p.now)
    p.transfer()
    answer = p.bob.call_build_answer(incoming.tid, 200)
    answer.set_body(SDP, "application/sdp")
    p.bob.call_send_answer(incoming.tid, 200, answer, now=p.now)
    p.transfer()
    evs = p.events(p.alice)
    assert p.types(evs)[-2:] == [E.CALL_RINGING, E.CALL_ANSWERED] or \
        E.CALL_ANSWERED in p.types(evs)
    return _one(evs, E.CALL_ANSWERED)


def established_call(p: Pair) -> tuple[int, Event, Event]:
    """:func:`start_call`, :func:`answer_call` and Alice's ACK, delivered: the call id,
    Bob's incoming INVITE event and Alice's answered one (Bob's ACK event read)."""
    cid, incoming = start_call(p)
    answered = answer_call(p, incoming)
    p.alice.call_send_ack(answered.did, now=p.now)
    p.transfer()
    p.events(p.bob)
    return cid, incoming, answered


def test_default_ack_is_the_built_ack_byte_for_byte() -> None:
    """call_send_ack(did) writes the ACK from the dialog's cached text: the same bytes
    as the ACK built (call_build_ack) and sent, branch included; call_send_default_ack
    says which branch and CSeq it carried."""
    sent: list[bytes] = []
    for how in ("built", "default", "returned"):
        p = Pair()
        _, incoming = start_call(p)
        answered = answer_call(p, incoming)
        if how == "built":
            p.alice.call_send_ack(answered.did, p.alice.call_build_ack(answered.did), now=p.now)
        elif how == "default":
            p.alice.call_send_ack(answered.did, now=p.now)
        else:
            branch, seq = p.alice.call_send_default_ack(answered.did, now=p.now)
            assert f";branch={branch};".encode() in sent[0]
            assert f"CSeq: {seq} ACK".encode() in sent[0]
        out = p.alice.outgoing()
        assert len(out) == 1 and out[0][1] == ("udp", "127.0.0.1", 5072)
        sent.append(out[0][0])
    assert sent[0].startswith(b"ACK ") and sent[1] == sent[0] and sent[2] == sent[0]


def test_responses_match_whether_or_not_the_uas_stamps_our_via() -> None:
    """A UAS that echoes our Via as written (SIPp) and one that stamps it or writes it
    anew get the same answers matched to the same transaction (the first without
    parsing that Via); a response with our branch but another From tag is still
    refused."""
    alice_peer = ("udp", "127.0.0.1", 5072)
    for how in ("echoed", "stamped", "reordered"):
        p = Pair()
        taken: list[bytes] = []
        p.drop_to_bob = taking(b"INVITE", taken)
        invite = p.alice.call_build_initial_invite("<sip:bob@127.0.0.1:5072>",
                                                   "<sip:alice@127.0.0.1:5071>")
        cid = p.alice.call_send_initial_invite(invite, now=p.now)
        p.transfer()
        sent = parse_message(taken[0])
        ours = sent.get("via")
        assert ours is not None and ours.endswith(";rport")
        via = {"echoed": ours, "stamped": f"{ours}=5071;received=127.0.0.1",
               "reordered": f"{ours[:ours.index(';')]};rport;{ours[ours.index(';') + 1:-6]}"}[how]

        def answer(status: int, from_tag: str = "", *, sent: Request = sent,
                   via: str = via) -> bytes:
            r = make_response(sent, status, to_tag="b1",
                              extra=[("Contact", "<sip:bob@127.0.0.1:5072>")])
            r.replace_first("via", via)
            if from_tag:
                r.replace_first("from", f"<sip:alice@127.0.0.1:5071>;tag={from_tag}")
            return r.to_bytes()

        p.alice.receive(answer(180, "not-ours"), alice_peer, p.now)
        assert p.types(p.events(p.alice)) == [E.BAD_MESSAGE]
        p.alice.receive(answer(180), alice_peer, p.now)
        p.alice.receive(answer(200), alice_peer, p.now)
        evs = p.events(p.alice)
        assert p.types(evs) == [E.CALL_RINGING, E.CALL_ANSWERED], how
        assert all(e.cid == cid for e in evs)


def test_basic_call_invite_180_200_ack_bye() -> None:
    p = Pair()
    cid, incoming = start_call(p)
    assert incoming.did > 0 and incoming.request is not None
    assert incoming.request.body == SDP
    answered = answer_call(p, incoming)
    assert answered.cid == cid and answered.reference == "ref-1"
    assert answered.response is not None and answered.response.body == SDP
    p.alice.call_send_ack(answered.did, now=p.now)
    p.transfer()
    ack = _one(p.events(p.bob), E.CALL_ACK)
    assert ack.did == incoming.did
    p.alice.call_terminate(cid, answered.did, now=p.now)
    p.transfer()
    bob_events = p.events(p.bob)
    assert p.types(bob_events) == [E.CALL_CLOSED, E.CALL_RELEASED]
    alice_events = p.events(p.alice)
    assert p.types(alice_events) == [E.CALL_MESSAGE_ANSWERED, E.CALL_RELEASED]
    assert p.sent_by("alice") == [
        "INVITE sip:bob@127.0.0.1:5072 SIP/2.0", "ACK sip:bob@127.0.0.1:5072 SIP/2.0",
        "BYE sip:bob@127.0.0.1:5072 SIP/2.0",
    ]
    assert p.sent_by("bob") == ["SIP/2.0 100 Trying", "SIP/2.0 180 Ringing", "SIP/2.0 200 OK",
                                "SIP/2.0 200 OK"]
    assert p.alice.call_count() == 0 and p.bob.call_count() == 0
    p.advance(40)  # every transaction ends by itself
    assert p.alice.transaction_count() == 0 and p.bob.transaction_count() == 0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_basic_call_over_each_transport(transport: str) -> None:
    p = Pair(transport)
    cid, incoming = start_call(p)
    answered = answer_call(p, incoming)
    p.alice.call_send_ack(answered.did, now=p.now)
    p.transfer()
    p.alice.call_terminate(cid, answered.did, now=p.now)
    p.transfer()
    assert E.CALL_RELEASED in p.types(p.events(p.alice))
    invite = p.wire[0][1].decode()
    assert f"Via: SIP/2.0/{transport.upper()} 127.0.0.1:5071;branch=z9hG4bK" in invite


def test_callee_hangs_up_with_bye() -> None:
    p = Pair()
    _cid, incoming, _answered = established_call(p)
    p.bob.call_terminate(incoming.cid, incoming.did, now=p.now)
    p.transfer()
    assert p.types(p.events(p.alice)) == [E.CALL_CLOSED, E.CALL_RELEASED]
    assert p.types(p.events(p.bob)) == [E.CALL_MESSAGE_ANSWERED, E.CALL_RELEASED]


def test_terminate_before_any_provisional_waits_then_cancels() -> None:
    p = Pair(send_100=False)
    cid, incoming = start_call(p)
    p.alice.call_terminate(cid, now=p.now)
    assert p.alice.outgoing() == []  # RFC 3261 §9.1: no CANCEL before a provisional
    p.bob.call_send_answer(incoming.tid, 180, now=p.now)
    p.transfer()
    assert "CANCEL sip:bob@127.0.0.1:5072 SIP/2.0" in p.sent_by("alice")
    bob_events = p.events(p.bob)
    assert p.types(bob_events) == [E.CALL_CANCELLED, E.CALL_RELEASED]
    alice_events = p.events(p.alice)
    failure = _one(alice_events, E.CALL_REQUESTFAILURE)
    assert failure.status == 487
    assert p.types(alice_events)[-1] == E.CALL_RELEASED
    assert "ACK sip:bob@127.0.0.1:5072 SIP/2.0" in p.sent_by("alice")  # ACK for the 487


def test_terminate_before_provisional_gives_up_on_timer_b() -> None:
    p = Pair()
    p.drop_to_bob = lambda data: True
    cid, = [p.alice.call_send_initial_invite(p.alice.call_build_initial_invite(
        "<sip:bob@127.0.0.1:5072>", "<sip:alice@127.0.0.1:5071>"), now=0.0)]
    p.alice.call_terminate(cid, now=0.0)
    p.advance(31.9)
    assert p.events(p.alice) == []
    p.advance(0.2)
    assert p.types(p.events(p.alice)) == [E.CALL_NOANSWER, E.CALL_RELEASED]
    sent = p.alice.retransmissions
    assert sent == 6  # 0.5, 1.5, 3.5, 7.5, 15.5, 31.5


def test_busy_486() -> None:
    p = Pair()
    _cid, incoming = start_call(p)
    p.bob.call_send_answer(incoming.tid, 486, now=p.now)
    p.transfer()
    evs = p.events(p.alice)
    assert _one(evs, E.CALL_REQUESTFAILURE).status == 486
    assert p.types(evs)[-1] == E.CALL_RELEASED
    assert p.sent_by("alice")[-1].startswith("ACK ")


def test_uas_declines_with_terminate() -> None:
    p = Pair()
    _cid, incoming = start_call(p)
    p.bob.call_terminate(incoming.cid, now=p.now)
    p.transfer()
    assert _one(p.events(p.alice), E.CALL_GLOBALFAILURE).status == 603


def test_info_dtmf_and_private_command_inside_the_call() -> None:
    p = Pair()
    _cid, _incoming, answered = established_call(p)
    info = p.alice.call_build_info(answered.did)
    info.set_body(b"Signal=5\r\nDuration=250\r\n", "application/dtmf-relay")
    p.alice.call_send_request(answered.did, info, now=p.now)
    msg = p.alice.call_build_request(answered.did, "PRIVATECOMMAND")
    msg.set_body(b"room=1;light=on\r\nroom=2;light=off\r\n", "application/antisip-domotic")
    msg.set_header("P-MyCommand", "option=value")
    p.alice.call_send_request(answered.did, msg, now=p.now)
    p.transfer()
    new = [e for e in p.events(p.bob) if e.type == E.CALL_MESSAGE_NEW]
    assert [e.method for e in new] == ["INFO"]  # PRIVATECOMMAND is not in bob's Allow
    assert new[0].request is not None and new[0].request.body.startswith(b"Signal=5")
    p.bob.call_send_answer(new[0].tid, 200, now=p.now)
    p.transfer()
    evs = p.events(p.alice)
    answers = [e for e in evs if e.type == E.CALL_MESSAGE_ANSWERED]
    assert [e.method for e in answers] == ["INFO"]
    failed = _one(evs, E.CALL_MESSAGE_SERVERFAILURE)  # unknown method: 501 with Allow
    assert failed.status == 501 and failed.response is not None
    assert "INFO" in (failed.response.get("allow") or "")


def test_private_method_allowed_reaches_the_program() -> None:
    p = Pair(allow=("INVITE", "ACK", "BYE", "CANCEL", "PRIVATECOMMAND"))
    _cid, incoming = start_call(p)
    answered = answer_call(p, incoming)
    p.alice.call_send_ack(answered.did, now=p.now)
    msg = p.alice.call_build_request(answered.did, "PRIVATECOMMAND")
    msg.set_header("P-MyCommand", "option=value")
    p.alice.call_send_request(answered.did, msg, now=p.now)
    p.transfer()
    new = _one(p.events(p.bob), E.CALL_MESSAGE_NEW)
    assert new.request is not None and new.request.get("p-mycommand") == "option=value"


def test_100rel_prack() -> None:
    p = Pair()
    _cid, incoming = start_call(p, supported="100rel")
    p.bob.call_send_answer(incoming.tid, 180, now=p.now)
    p.transfer()
    ringing = _one(p.events(p.alice), E.CALL_RINGING)
    assert ringing.response is not None
    assert ringing.response.get("require") == "100rel" and ringing.response.rseq == 1
    assert any(line.startswith("PRACK ") for line in p.sent_by("alice"))
    prack = next(d for s, d in p.wire if d.startswith(b"PRACK"))
    assert b"RAck: 1 1 INVITE" in prack
    retrans_before = p.bob.retransmissions
    p.advance(5)
    assert p.bob.retransmissions == retrans_before  # PRACK stopped the retransmission
    answer_200 = p.bob.call_build_answer(incoming.tid, 200)
    p.bob.call_send_answer(incoming.tid, 200, answer_200, now=p.now)
    p.transfer()
    assert E.CALL_ANSWERED in p.types(p.events(p.alice))


def test_reliable_provisional_retransmitted_until_prack() -> None:
    p = Pair()
    p.drop_to_bob = lambda data: data.startswith(b"PRACK")
    _cid, incoming = start_call(p, supported="100rel")
    p.bob.call_send_answer(incoming.tid, 180, now=p.now)
    p.transfer()
    p.advance(4.0)
    times = p.bob.retransmissions
    assert times == 3  # at 0.5, 1.5, 3.5 (T1 doubling)
    p.events(p.alice)
    p.advance(40)
    assert _one(p.events(p.alice), E.CALL_SERVERFAILURE).status == 504


def test_uas_retransmits_2xx_until_ack_then_gives_up_with_bye() -> None:
    p = Pair()
    acks: list[bytes] = []  # every ACK alice sends, dropped before bob sees it

    p.drop_to_bob = taking(b"ACK", acks)
    cid, incoming = start_call(p)
    answer_call(p, incoming)
    p.alice.call_send_ack(p.alice.call_dialogs(cid)[0], now=p.now)
    p.transfer()
    oks: list[float] = []
    start = p.now
    for _ in range(400):
        p.advance(0.25)
        count = sum(1 for s, d in p.wire if s == "bob" and d.startswith(b"SIP/2.0 200"))
        if count > len(oks) + 1:
            oks.append(round(p.now - start, 2))
        if any(d.startswith(b"BYE") for s, d in p.wire if s == "bob"):
            break
    assert oks[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]  # T1, doubling, capped at T2=4
    assert any(d.startswith(b"BYE") for s, d in p.wire if s == "bob")
    # every 2xx retransmission was answered with the same ACK (§13.2.2.4): the first
    # ACK, then one per retransmitted 2xx that reached alice before bob gave up
    oks_seen = [d for s, d in p.wire if s == "bob" and d.startswith(b"SIP/2.0 200")]
    assert len(oks_seen) >= 6
    assert len(acks) == len(oks_seen)
    assert len(set(acks)) == 1  # the same ACK each time


def test_an_ack_written_from_the_dialog_is_written_again_not_kept() -> None:
    """A held call keeps no ACK bytes: the ACK written from the dialog's text (the hop
    known from an earlier call) keeps its branch and CSeq, and each 2xx retransmission
    gets the same bytes written again (§13.2.2.4)."""
    p = Pair()
    cid, incoming = start_call(p)
    answer_call(p, incoming)
    p.alice.call_send_ack(p.alice.call_dialogs(cid)[0], now=p.now)  # resolves the hop
    p.transfer()
    acks: list[bytes] = []
    p.drop_to_bob = taking(b"ACK", acks)
    cid, incoming = start_call(p)
    answer_call(p, incoming)
    did = p.alice.call_dialogs(cid)[0]
    p.alice.call_send_ack(did, now=p.now)
    p.transfer()
    cd = p.alice.state.dialog(did)
    assert cd.ack is None and cd.ack_branch and cd.ack_seq == 1
    for _ in range(12):
        p.advance(0.5)
    assert len(acks) >= 4  # the first, then one per 2xx retransmission
    assert len(set(acks)) == 1
    assert f";branch={cd.ack_branch};".encode() in acks[0]


def test_a_quiet_call_forgets_its_texts_and_writes_the_same_bye() -> None:
    """call_quiet drops a dialog's cached request texts (a call held open: the engine
    calls it once its trace is packed); the BYE written later is the same bytes as
    without it."""
    byes: list[list[bytes]] = []
    for quiet in (False, True):
        p = Pair()
        cid, incoming = start_call(p)
        answer_call(p, incoming)
        did = p.alice.call_dialogs(cid)[0]
        p.alice.call_send_ack(did, now=p.now)
        p.transfer()
        dialog = p.alice.state.dialog(did).dialog
        assert dialog._texts is not None
        if quiet:
            p.alice.call_quiet(cid)
            p.alice.call_quiet(cid + 100)  # no such call: ignored
            assert dialog._texts is None
        p.alice.call_terminate(cid, did, now=p.now)
        p.transfer()
        byes.append([d for s, d in p.wire if s == "alice" and d.startswith(b"BYE ")])
    assert len(byes[0]) == 1 and byes[0] == byes[1]


def test_no_answer_timer_b() -> None:
    p = Pair()
    p.drop_to_bob = lambda data: True
    invite = p.alice.call_build_initial_invite("<sip:bob@127.0.0.1:5072>",
                                               "<sip:alice@127.0.0.1:5071>")
    cid = p.alice.call_send_initial_invite(invite, now=0.0)
    p.advance(33)
    evs = p.events(p.alice)
    assert p.types(evs) == [E.CALL_NOANSWER, E.CALL_RELEASED]
    assert evs[0].cid == cid and "B" in evs[0].reason


def _digest_pair(password: str) -> tuple[Pair, DigestServer]:
    counter = itertools.count()
    server = DigestServer("sipload.test", algorithm="SHA-256",
                          nonce_factory=lambda: f"nonce{next(counter)}")
    p = Pair()
    p.alice.add_authentication_info("alice", "alice", password, "sipload.test")
    return p, server


def _challenged_call(password: str) -> tuple[Pair, DigestServer, Event]:
    """Alice calls Bob, who challenges the INVITE (401): the pair, the digest server and
    Bob's CALL_INVITE for the INVITE Alice sent again."""
    p, server = _digest_pair(password)
    _cid, incoming = start_call(p)
    resp = p.bob.call_build_answer(incoming.tid, 401)
    resp.add_header("WWW-Authenticate", server.challenge(now=p.now).to_header())
    p.bob.call_send_answer(incoming.tid, 401, resp, now=p.now)
    p.transfer()
    again = _one(p.events(p.bob), E.CALL_INVITE)
    assert again.request is not None
    return p, server, again


def test_digest_challenge_answered_once() -> None:
    p, server, again = _challenged_call("secret")
    assert again.request is not None
    creds = parse_credentials(again.request.get("authorization") or "")
    result = server.verify(creds, method="INVITE", now=p.now,
                           password_lookup=lambda u: "secret" if u == "alice" else None)
    assert result.ok
    assert again.request.cseq.seq == 2
    # the retry itself is silent: only the two 100 Trying show
    assert p.types(p.events(p.alice)) == [E.CALL_PROCEEDING, E.CALL_PROCEEDING]


def test_ack_for_a_2xx_carries_the_invites_credentials() -> None:
    """RFC 3261 §13.2.2.4: the ACK for the 2xx to an INVITE that answered a challenge
    carries the same credentials (the ACK for the 401 carries none: §17.1.1.3)."""
    p, _server, again = _challenged_call("secret")
    assert again.request is not None
    sent = again.request.get("authorization")
    assert sent
    p.bob.call_send_answer(again.tid, 200, None, now=p.now)
    p.transfer()
    answered = _one(p.events(p.alice), E.CALL_ANSWERED)
    assert p.alice.call_build_ack(answered.did).get_all("authorization") == [sent]
    p.alice.call_send_ack(answered.did, now=p.now)
    p.transfer()
    acks = [parse_message(d) for who, d in p.wire if who == "alice" and d.startswith(b"ACK")]
    assert [a.cseq.seq for a in acks] == [1, 2]
    assert acks[0].get("authorization") is None
    assert acks[1].get_all("authorization") == [sent]
    p.alice.call_terminate(answered.cid, answered.did, now=p.now)
    p.transfer()
    assert not p.alice.state.ack_credentials  # forgotten with the call


def test_digest_wrong_password_does_not_loop() -> None:
    p, server = _digest_pair("wrong")
    _cid, incoming = start_call(p)
    for _ in range(2):
        resp = p.bob.call_build_answer(incoming.tid, 401)
        resp.add_header("WWW-Authenticate", server.challenge(now=p.now).to_header())
        p.bob.call_send_answer(incoming.tid, 401, resp, now=p.now)
        p.transfer()
        evs = p.events(p.bob)
        if E.CALL_INVITE not in p.types(evs):
            break
        incoming = _one(evs, E.CALL_INVITE)
    evs = p.events(p.alice)
    assert _one(evs, E.CALL_REQUESTFAILURE).status == 401
    assert sum(1 for line in p.sent_by("alice") if line.startswith("INVITE")) == 2


def test_reinvite_hold_and_glare_491() -> None:
    p = Pair()
    _cid, incoming, answered = established_call(p)
    # both sides send a re-INVITE at once
    a_re = p.alice.call_build_request(answered.did, "INVITE")
    a_re.set_body(SDP.replace(b"t=0 0", b"t=0 0\r\na=sendonly"), "application/sdp")
    p.alice.call_send_request(answered.did, a_re, now=p.now)
    b_re = p.bob.call_build_request(incoming.did, "INVITE")
    p.bob.call_send_request(incoming.did, b_re, now=p.now)
    p.transfer()
    a_evs = p.events(p.alice)
    b_evs = p.events(p.bob)
    assert _one(a_evs, E.CALL_MESSAGE_REQUESTFAILURE).status == 491
    assert _one(b_evs, E.CALL_MESSAGE_REQUESTFAILURE).status == 491
    # a clean re-INVITE afterwards works
    a_re2 = p.alice.call_build_request(answered.did, "INVITE")
    p.alice.call_send_request(answered.did, a_re2, now=p.now)
    p.transfer()
    reinvite = _one(p.events(p.bob), E.CALL_REINVITE)
    p.bob.call_send_answer(reinvite.tid, 200, now=p.now)
    p.transfer()
    ok = _one(p.events(p.alice), E.CALL_ANSWERED)
    p.alice.call_send_ack(ok.did, p.alice.call_build_ack(ok.did), now=p.now)
    p.transfer()


def test_options_outside_a_call_is_answered() -> None:
    p = Pair()
    req = p.alice.options_build_request("<sip:bob@127.0.0.1:5072>", "<sip:alice@127.0.0.1:5071>")
    tid = p.alice.message_send_request(req, now=p.now)
    p.transfer()
    assert _one(p.events(p.bob), E.MESSAGE_NEW).method == "OPTIONS"
    ans = _one(p.events(p.alice), E.MESSAGE_ANSWERED)
    assert ans.tid == tid and ans.response is not None
    assert "INVITE" in (ans.response.get("allow") or "")


def test_message_outside_a_call_program_answers() -> None:
    p = Pair()
    req = p.alice.message_build_request("MESSAGE", "<sip:bob@127.0.0.1:5072>",
                                        "<sip:alice@127.0.0.1:5071>")
    req.set_body(b"hello", "text/plain")
    p.alice.message_send_request(req, now=p.now)
    p.transfer()
    new = _one(p.events(p.bob), E.MESSAGE_NEW)
    p.bob.message_send_answer(new.tid, 202, now=p.now)
    p.transfer()
    assert _one(p.events(p.alice), E.MESSAGE_ANSWERED).status == 202


def test_registration_success_and_refresh() -> None:
    p = Pair(allow=("REGISTER", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"))
    rid, reg = p.alice.register_build_initial_register(
        "<sip:alice@127.0.0.1>", "sip:127.0.0.1:5072", expires=60)
    p.alice.register_send_register(rid, reg, now=p.now)
    p.transfer()
    for round_ in range(2):
        new = _one(p.events(p.bob), E.MESSAGE_NEW)
        assert new.method == "REGISTER"
        answer = p.bob.message_build_answer(new.tid, 200)
        answer.add_header("Contact", f"{p.alice.contact};expires=60")
        p.bob.message_send_answer(new.tid, 200, answer, now=p.now)
        p.transfer()
        ok = _one(p.events(p.alice), E.REGISTRATION_SUCCESS)
        assert ok.rid == rid
        if round_ == 0:
            p.advance(54.5)
    cseqs = [d for s, d in p.wire if s == "alice" and d.startswith(b"REGISTER")]
    assert b"CSeq: 2 REGISTER" in cseqs[1]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"INVITE sip:bob@127.0.0.1 SIP/7.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKx"
         b"\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
         b"Content-Length: 0\r\n\r\n", 505),
        (b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKy"
         b"\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: y\r\nCSeq: 1 INVITE\r\n"
         b"Require: nosuchext\r\nContent-Length: 0\r\n\r\n", 420),
        (b"INVITE nobody:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKz"
         b"\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: z\r\nCSeq: 1 INVITE\r\n"
         b"Content-Length: 0\r\n\r\n", 416),
        (b"BYE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKw"
         b"\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>;tag=nope\r\nCall-ID: w\r\nCSeq: 1 BYE\r\n"
         b"Content-Length: 0\r\n\r\n", 481),
        (b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKv"
         b"\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCSeq: 1 INVITE\r\n"
         b"Content-Length: 0\r\n\r\n", 400),
    ],
)
def test_bad_requests_get_the_rfc_answer(data: bytes, status: int) -> None:
    p = Pair()
    p.bob.receive(data, ("udp", "127.0.0.1", 5071), 0.0)
    out = p.bob.outgoing()
    assert len(out) == 1
    assert out[0][0].startswith(f"SIP/2.0 {status} ".encode()), out[0][0][:80]
    assert out[0][1] == ("udp", "127.0.0.1", 5071)


def test_garbage_never_raises() -> None:
    p = Pair()
    for junk in [b"", b"\x00\xff" * 50, b"SIP/2.0 999 x\r\n\r\n", b"INVITE\r\n\r\n",
                 b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKq\r\n\r\n"]:
        p.bob.receive(junk, ("udp", "127.0.0.1", 5071), 0.0)
    assert p.bob.bad_messages >= 3


def test_api_misuse_is_a_local_error() -> None:
    p = Pair()
    with pytest.raises(LocalProtocolError):
        p.alice.call_terminate(999)
    with pytest.raises(LocalProtocolError):
        p.alice.call_send_answer(999, 200)
    with pytest.raises(LocalProtocolError):
        p.alice.call_build_initial_invite("not an address", "<sip:a@b>")


def _invite_from(via: str, call_id: str) -> bytes:
    return (f"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n"
            f"From: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
            "Contact: <sip:a@127.0.0.1:5071>\r\n"
            "Content-Length: 0\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("via", "peer_host", "expected"),
    [
        # RFC 3581 §4: an empty rport gets the source port, and received is added
        # even when it equals the sent-by host
        ("SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKr1;rport", "127.0.0.1",
         "SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKr1;rport=5099;received=127.0.0.1"),
        # RFC 3261 §18.2.1: received when the sent-by host is not the source
        ("SIP/2.0/UDP 10.1.1.1:5071;branch=z9hG4bKr2", "127.0.0.2",
         "SIP/2.0/UDP 10.1.1.1:5071;branch=z9hG4bKr2;received=127.0.0.2"),
        # nothing to note
        ("SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKr3", "127.0.0.1",
         "SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKr3"),
        # a filled-in rport is left alone; only the top Via of a list is touched
        ("SIP/2.0/UDP h.example;branch=z9hG4bKr4;rport=7, SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKq",
         "127.0.0.1",
         "SIP/2.0/UDP h.example;branch=z9hG4bKr4;rport=7;received=127.0.0.1, "
         "SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKq"),
        ("SIP/2.0/UDP [::1]:5071;branch=z9hG4bKr5;rport", "::1",
         "SIP/2.0/UDP [::1]:5071;branch=z9hG4bKr5;rport=5099;received=::1"),
    ],
)
def test_responses_carry_received_and_rport(via: str, peer_host: str, expected: str) -> None:
    p = Pair()
    p.bob.receive(_invite_from(via, via[-6:]), ("udp", peer_host, 5099), 0.0)
    invite = _one(p.events(p.bob), E.CALL_INVITE)
    p.bob.call_send_answer(invite.tid, 180, now=0.0)
    for data, dest in p.bob.outgoing():
        assert dest == ("udp", peer_host, 5099)
        resp = parse_message(data)
        assert ", ".join(resp.get_all("via")) == expected, data[:200]


@pytest.mark.parametrize(("host", "transport", "prefix"), [
    ("127.0.0.1", "udp", "sl"), ("::1", "tcp", "w0abx"), ("uac.example.com", "tls", "a-b"),
    ("127.0.0.1", "udp", "x y"),  # a branch the parser refuses: refused as before
])
def test_our_via_comes_parsed_as_the_parser_reads_it(host: str, transport: str,
                                                     prefix: str) -> None:
    from sipload.sip.headers import parse_via
    from sipload.sip.message import Request
    from sipload.ua.config import UAConfig
    from sipload.ua.ids import IdGenerator
    from sipload.ua.routing import add_via
    from sipload.ua.state import UAState

    s = UAState(UAConfig(host=host, port=5062, transport=transport), IdGenerator(prefix))
    for _ in range(3):
        req = Request("INVITE", "sip:bob@127.0.0.1")
        branch = add_via(s, req)
        text = req.get("via")
        assert text is not None
        if " " in prefix:
            with pytest.raises(ParseError):
                parse_via(text)
            with pytest.raises(ParseError):
                _ = req.via
            continue
        assert req.via == parse_via(text)
        assert req.via.branch == branch
        assert req.via.params.items == [("branch", branch), ("rport", None)]


def test_a_malformed_allow_does_not_stop_the_answer_or_the_ack() -> None:
    # split_commas refuses an unterminated quote: the INVITE's Allow (read when Bob
    # answers) and the 2xx's (read when Alice takes the answer) count as "no UPDATE"
    p = Pair()
    _, incoming = p.invite_bob({"Allow": 'INVITE, ACK, "BYE'})
    answer = p.bob.call_build_answer(incoming.tid, 200)
    answer.set_header("Allow", '"INVITE, UPDATE')
    p.bob.call_send_answer(incoming.tid, 200, answer, now=p.now)
    p.transfer()
    answered = _one(p.events(p.alice), E.CALL_ANSWERED)
    p.alice.call_send_ack(answered.did, now=p.now)
    p.transfer()
    assert E.CALL_ACK in p.types(p.events(p.bob))
