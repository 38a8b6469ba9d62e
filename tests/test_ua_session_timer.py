"""Session timers (RFC 4028) between two in-memory user agents with a fake clock."""

from __future__ import annotations

from sipload.ua.events import EventType
from sipload.ua.responder import DefaultUAS
from tests.uapair import Pair

E = EventType


def _advance(p: Pair, seconds: float, bob: DefaultUAS) -> None:
    """Advance the clock second by second; bob's program answers what reaches it."""
    end = p.now + seconds
    while p.now < end:
        p.advance(min(1.0, end - p.now))
        while (ev := p.bob.next_event()) is not None:
            bob.on_event(ev, p.now)
        p.transfer()


def _call(p: Pair) -> tuple[int, int]:
    invite = p.alice.call_build_initial_invite("<sip:bob@127.0.0.1:5072>",
                                               "<sip:alice@127.0.0.1:5071>")
    cid = p.alice.call_send_initial_invite(invite, now=p.now)
    p.transfer()
    incoming = next(e for e in p.events(p.bob) if e.type == E.CALL_INVITE)
    p.bob.call_send_answer(incoming.tid, 200, now=p.now)
    p.transfer()
    answered = next(e for e in p.events(p.alice) if e.type == E.CALL_ANSWERED)
    p.alice.call_send_ack(answered.did, now=p.now)
    p.transfer()
    p.events(p.bob)
    return cid, answered.did


def test_uac_asks_uas_grants_and_uac_refreshes() -> None:
    p = Pair()
    bob = DefaultUAS(p.bob)
    p.alice.config.session_expires = 120
    _call(p)
    ok = next(d for s, d in p.wire if s == "bob" and d.startswith(b"SIP/2.0 200"))
    assert b"Session-Expires: 120;refresher=uac" in ok
    assert b"Require: timer" in ok
    invite = p.wire[0][1]
    assert b"Session-Expires: 120" in invite and b"Supported: timer" in invite
    _advance(p, 59.0, bob)
    assert not any(d.startswith(b"UPDATE") for s, d in p.wire)
    _advance(p, 2.0, bob)  # alice refreshes at half the interval, with UPDATE (bob allows it)
    updates = [d for s, d in p.wire if s == "alice" and d.startswith(b"UPDATE")]
    assert len(updates) == 1 and b"Session-Expires: 120;refresher=uac" in updates[0]
    _advance(p, 240.0, bob)  # refreshes keep the call up
    assert p.alice.call_count() == 1 and p.bob.call_count() == 1
    assert not any(d.startswith(b"BYE") for _, d in p.wire)
    assert len([d for s, d in p.wire if s == "alice" and d.startswith(b"UPDATE")]) >= 4


def test_no_refresh_means_bye_from_the_other_side() -> None:
    p = Pair()
    p.alice.config.session_expires = 120
    _call(p)
    p.drop_to_bob = lambda data: data.startswith(b"UPDATE")
    p.advance(87.0)
    assert not any(d.startswith(b"BYE") for s, d in p.wire if s == "bob")
    p.advance(2.0)  # 120 - min(32, 120/3) = 88 s without a refresh
    assert any(d.startswith(b"BYE") for s, d in p.wire if s == "bob")
    assert E.CALL_CLOSED in p.types(p.events(p.alice))


def test_refresh_with_reinvite_when_update_is_not_allowed() -> None:
    p = Pair(allow=("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"))
    bob = DefaultUAS(p.bob)
    p.alice.config.session_expires = 100
    _call(p)
    _advance(p, 51.0, bob)
    reinvites = [d for s, d in p.wire if s == "alice" and d.startswith(b"INVITE")]
    assert len(reinvites) == 2  # the call, and the refresh
    acks = [d for s, d in p.wire if s == "alice" and d.startswith(b"ACK")]
    assert len(acks) == 2  # the UA acknowledges its own refresh
    assert p.events(p.alice) == []  # refreshes are silent


def test_422_then_retry_with_min_se() -> None:
    p = Pair(min_se=300)
    p.alice.config.session_expires = 120
    _call(p)
    invites = [d for s, d in p.wire if s == "alice" and d.startswith(b"INVITE")]
    assert len(invites) == 2
    assert b"Session-Expires: 300" in invites[1] and b"CSeq: 2 INVITE" in invites[1]
    assert any(d.startswith(b"SIP/2.0 422") for s, d in p.wire if s == "bob")
    ok = next(d for s, d in p.wire if s == "bob" and d.startswith(b"SIP/2.0 200"))
    assert b"Session-Expires: 300;refresher=uac" in ok


def test_refer_and_its_implicit_subscription_notify() -> None:
    p = Pair()
    _cid, did = _call(p)
    refer = p.alice.call_build_refer(did, "<sip:carol@127.0.0.1:5073>")
    p.alice.call_send_request(did, refer, now=p.now)
    p.transfer()
    new = next(e for e in p.events(p.bob) if e.type == E.CALL_MESSAGE_NEW)
    assert new.request is not None and new.request.refer_to is not None
    p.bob.call_send_answer(new.tid, 202, now=p.now)
    for line, last in (("SIP/2.0 100 Trying", False), ("SIP/2.0 200 OK", True)):
        notify = p.bob.call_build_refer_notify(new.did, line, terminated=last)
        p.bob.call_send_request(new.did, notify, now=p.now)
    p.transfer()
    notifies = [e for e in p.events(p.alice) if e.type == E.CALL_MESSAGE_NEW]
    assert [n.request.body for n in notifies if n.request] == [
        b"SIP/2.0 100 Trying\r\n", b"SIP/2.0 200 OK\r\n"]
    last_req = notifies[1].request
    assert last_req is not None
    assert last_req.get("subscription-state") == "terminated;reason=noresource"
    assert last_req.get("event") == "refer"
    assert (last_req.content_type is not None
            and last_req.content_type.mime == "message/sipfrag")
