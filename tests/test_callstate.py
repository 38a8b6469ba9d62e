"""The call state table (ua/callstate.py) and the UA's one retransmitter (ua/retransmit.py)."""

from __future__ import annotations

import itertools

import pytest

from sipload.ua import retransmit
from sipload.ua.callstate import CALL_TRANSITIONS, CallAction, CallInput, public_state, step
from sipload.ua.state import Call, CallState


def _call(state: CallState) -> Call:
    call = Call(1, True, CallState.CALLING, None, 0, ("udp", "127.0.0.1", 5060))
    call.state = state
    return call


@pytest.mark.parametrize(("state", "inp"), list(itertools.product(CallState, CallInput)))
def test_every_pair_follows_the_table(state: CallState, inp: CallInput) -> None:
    call = _call(state)
    action = step(call, inp)
    expected = CALL_TRANSITIONS.get((state, inp), (state, CallAction.NONE))
    assert (call.state, action) == expected
    if state == CallState.TERMINATED:
        assert (call.state, action) == (CallState.TERMINATED, CallAction.NONE)


def test_a_cancel_waits_for_the_first_provisional() -> None:
    call = _call(CallState.CALLING)
    assert step(call, CallInput.TERMINATE) == CallAction.NONE
    assert public_state(call.state) == CallState.CALLING
    assert step(call, CallInput.PROVISIONAL) == CallAction.SEND_CANCEL
    assert step(call, CallInput.CANCEL_SENT) == CallAction.NONE
    assert call.state == CallState.TERMINATING
    assert step(call, CallInput.ANSWERED) == CallAction.ACK_AND_BYE


def test_a_uas_bye_waits_for_the_ack() -> None:
    call = _call(CallState.INCOMING)
    step(call, CallInput.ANSWER_SENT)
    assert step(call, CallInput.TERMINATE_BEFORE_ACK) == CallAction.NONE
    assert public_state(call.state) == CallState.CONFIRMED
    assert step(call, CallInput.ACKED) == CallAction.SEND_BYE


def test_the_retransmitter_doubles_up_to_its_cap_and_gives_up() -> None:
    out: list[tuple[bytes, tuple[str, str, int]]] = []
    r = retransmit.Resend(b"x", ("udp", "h", 1), 0.0, 0.5, 4.0, reliable=False)
    sent_at = []
    now = 0.0
    while (fired := retransmit.fire(r, now, out)) != retransmit.EXPIRED:
        if fired == retransmit.SENT:
            sent_at.append(now)
        now = r.deadline()
    assert sent_at == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert now == 32.0 and len(out) == len(sent_at)
    tcp = retransmit.Resend(b"x", ("tcp", "h", 1), 0.0, 0.5, 4.0, reliable=True)
    assert tcp.deadline() == 32.0
    assert retransmit.fire(tcp, 31.0, out) == retransmit.IDLE
