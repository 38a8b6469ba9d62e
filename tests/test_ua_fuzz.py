"""Hostile bytes at a user agent in the middle of calls: receive() never raises,
and the agent keeps working (a worker never dies of a bad packet)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sipload.ua.events import EventType
from sipload.ua.responder import DefaultUAS
from tests.uapair import Pair

E = EventType


def _live_pair() -> tuple[Pair, DefaultUAS, list[bytes]]:
    """A pair with one call up; returns the messages that made it, to mutate."""
    p = Pair()
    p.alice.config.auto_ack = True
    bob = DefaultUAS(p.bob)
    invite = p.alice.call_build_initial_invite("<sip:bob@127.0.0.1:5072>",
                                               "<sip:alice@127.0.0.1:5071>")
    invite.set_header("Supported", "100rel, timer")
    p.alice.call_send_initial_invite(invite, now=p.now)
    for _ in range(4):
        p.transfer()
        while (ev := p.bob.next_event()) is not None:
            bob.on_event(ev, p.now)
    return p, bob, [d for _, d in p.wire]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_messages_never_break_a_user_agent(data: st.DataObject) -> None:
    p, bob, seen = _live_pair()
    for _ in range(data.draw(st.integers(1, 6))):
        base = bytearray(data.draw(st.sampled_from(seen)))
        for _ in range(data.draw(st.integers(0, 6))):
            if not base:
                break
            pos = data.draw(st.integers(0, len(base) - 1))
            op = data.draw(st.integers(0, 3))
            byte = data.draw(st.integers(0, 255))
            if op == 0:
                base[pos] = byte
            elif op == 1:
                del base[pos]
            elif op == 2:
                base.insert(pos, byte)
            else:
                base[pos:pos] = data.draw(st.sampled_from(
                    [b"\r\n", b";tag=", b",", b"<", b">", b'"', b"\r\n\r\n", b"%00", b"SIP/2.0 "]))
        target = data.draw(st.sampled_from([p.alice, p.bob]))
        target.receive(bytes(base), ("udp", "127.0.0.1", 5099), p.now)
        p.advance(data.draw(st.sampled_from([0.0, 0.5, 4.0])))
        while (ev := p.bob.next_event()) is not None:
            bob.on_event(ev, p.now)
        p.alice.outgoing()
        p.bob.outgoing()
    # both still place and answer a call afterwards
    p.events(p.alice)
    invite = p.alice.call_build_initial_invite("<sip:bob@127.0.0.1:5072>",
                                               "<sip:alice@127.0.0.1:5071>")
    cid = p.alice.call_send_initial_invite(invite, now=p.now)
    for _ in range(4):
        p.transfer()
        while (ev := p.bob.next_event()) is not None:
            bob.on_event(ev, p.now)
    answered = [e for e in p.events(p.alice) if e.type == E.CALL_ANSWERED and e.cid == cid]
    assert answered, "the user agents stopped working after hostile input"
