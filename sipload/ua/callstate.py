"""The call state machine of the user agent, as a transition table.

Theory of operation
===================

A call (cid) is one INVITE and what follows it.  Transactions (sip/transaction.py)
and dialogs (sip/dialog.py) keep their own states; this machine only decides what
the *call* does next when the program asks to end it or the peer answers.

1. States (:class:`~sipload.ua.state.CallState`).  A UAC call starts in CALLING, a
   UAS call in INCOMING.  CANCEL_PENDING and BYE_PENDING remember a request to end
   the call that must wait: no CANCEL before a provisional response (RFC 3261 §9.1),
   no BYE from a UAS before the ACK of its 2xx (§15).  TERMINATED is final.
2. Inputs (:class:`CallInput`): the program's ``call_terminate`` (split by whether
   the UAS's 2xx still awaits its ACK), a provisional or a 2xx to our INVITE, our
   2xx sent, the ACK for it, our CANCEL or BYE sent, our INVITE timed out, a PRACK or refresh found
   the dialog gone, the call released.
3. :data:`CALL_TRANSITIONS` maps ``(state, input)`` to ``(next state, action)``.
   A pair left out means "stay, do nothing".  The table is flattened at import
   into a list indexed by ``state * len(CallInput) + input``.
4. The action (:class:`CallAction`) is carried out by the caller (the UAS or UAC
   module), which owns the messages; :func:`step` only moves the state.

::

      UAC                                          UAS
      CALLING --terminate--> CANCEL_PENDING        INCOMING --terminate--> (603)
        |1xx                   |1xx: CANCEL          |2xx sent
        v                      v                     v
      PROCEEDING --terminate: CANCEL--> TERMINATING  CONFIRMED --terminate, 2xx unACKed-->
        |2xx                         |2xx: ACK+BYE     |               BYE_PENDING
        v                            v                 |terminate: BYE    |ACK: BYE
      CONFIRMED --terminate: BYE--> TERMINATING <------+------------------+
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

from sipload.ua.state import Call, CallState

__all__ = ["CALL_TRANSITIONS", "CallAction", "CallInput", "public_state", "step"]


class CallInput(IntEnum):
    """What can happen to a call."""

    TERMINATE = 0  #: the program asked to end the call
    TERMINATE_BEFORE_ACK = 1  #: the same, while our 2xx (UAS) still awaits its ACK
    PROVISIONAL = 2  #: UAC: a 1xx to our INVITE
    ANSWERED = 3  #: UAC: a 2xx to our INVITE arrived
    ANSWER_SENT = 4  #: UAS: we sent a 2xx to the INVITE
    ACKED = 5  #: UAS: the ACK for our 2xx arrived
    CANCEL_SENT = 6
    BYE_SENT = 7
    NO_ANSWER = 8  #: UAC: our INVITE got no final answer (Timer B, transport error)
    RELEASED = 9  #: the call is over (BYE done, rejected, cancelled, timed out)
    DIALOG_GONE = 10  #: a PRACK or refresh answered 481/408 (RFC 5057 §5.1): the call ends


class CallAction(IntEnum):
    """What the caller of :func:`step` does after the state moved."""

    NONE = 0
    SEND_CANCEL = 1  #: send a CANCEL for the INVITE
    SEND_BYE = 2  #: send a BYE in the dialog at hand
    ACK_AND_BYE = 3  #: a 2xx after we asked to end the call: ACK it, then BYE
    REPORT_ANSWER = 4  #: an ordinary 2xx: ACK it when auto_ack, report CALL_ANSWERED
    DECLINE = 5  #: answer the pending INVITE with 603
    REPORT_NO_ANSWER = 6  #: report CALL_NOANSWER and release the call


S = CallState
I = CallInput  # noqa: E741
A = CallAction

_LIVE: Final = (S.CALLING, S.CANCEL_PENDING, S.PROCEEDING, S.INCOMING, S.CONFIRMED,
                S.BYE_PENDING, S.TERMINATING)

Table = dict[tuple[CallState, CallInput], tuple[CallState, CallAction]]

CALL_TRANSITIONS: Final[Table] = {
    # UAC, before a final answer (§9.1: no CANCEL until a provisional arrived)
    (S.CALLING, I.TERMINATE): (S.CANCEL_PENDING, A.NONE),
    (S.CALLING, I.PROVISIONAL): (S.PROCEEDING, A.NONE),
    (S.CANCEL_PENDING, I.PROVISIONAL): (S.PROCEEDING, A.SEND_CANCEL),
    (S.PROCEEDING, I.TERMINATE): (S.PROCEEDING, A.SEND_CANCEL),
    (S.CALLING, I.ANSWERED): (S.CONFIRMED, A.REPORT_ANSWER),
    (S.PROCEEDING, I.ANSWERED): (S.CONFIRMED, A.REPORT_ANSWER),
    (S.CONFIRMED, I.ANSWERED): (S.CONFIRMED, A.REPORT_ANSWER),  # another fork's 2xx
    (S.CANCEL_PENDING, I.ANSWERED): (S.CONFIRMED, A.ACK_AND_BYE),
    (S.TERMINATING, I.ANSWERED): (S.CONFIRMED, A.ACK_AND_BYE),
    (S.CALLING, I.NO_ANSWER): (S.CALLING, A.REPORT_NO_ANSWER),
    (S.CANCEL_PENDING, I.NO_ANSWER): (S.CANCEL_PENDING, A.REPORT_NO_ANSWER),
    (S.PROCEEDING, I.NO_ANSWER): (S.PROCEEDING, A.REPORT_NO_ANSWER),
    (S.TERMINATING, I.NO_ANSWER): (S.TERMINATING, A.REPORT_NO_ANSWER),
    (S.PROCEEDING, I.DIALOG_GONE): (S.PROCEEDING, A.SEND_CANCEL),  # stop it ringing
    # UAS
    (S.INCOMING, I.TERMINATE): (S.INCOMING, A.DECLINE),
    (S.INCOMING, I.TERMINATE_BEFORE_ACK): (S.INCOMING, A.DECLINE),
    (S.INCOMING, I.ANSWER_SENT): (S.CONFIRMED, A.NONE),
    (S.CONFIRMED, I.TERMINATE_BEFORE_ACK): (S.BYE_PENDING, A.NONE),  # §15: BYE after the ACK
    (S.BYE_PENDING, I.ACKED): (S.BYE_PENDING, A.SEND_BYE),
    # both: an established call ends with a BYE
    (S.CONFIRMED, I.TERMINATE): (S.CONFIRMED, A.SEND_BYE),
    **{(s, I.CANCEL_SENT): (S.TERMINATING, A.NONE) for s in _LIVE},
    **{(s, I.BYE_SENT): (S.TERMINATING, A.NONE) for s in _LIVE},
    **{(s, I.RELEASED): (S.TERMINATED, A.NONE) for s in _LIVE},
}

_N_INPUTS: Final = len(CallInput)


def _flatten(table: Table) -> list[tuple[CallState, CallAction]]:
    flat = [(s, A.NONE) for s in CallState for _ in CallInput]
    for (state, inp), outcome in table.items():
        flat[int(state) * _N_INPUTS + int(inp)] = outcome
    return flat


_FLAT: Final = _flatten(CALL_TRANSITIONS)

#: What :meth:`UserAgent.call_state` reports: the pending states look like the
#: states they wait in, as they always have to the program.
_PUBLIC: Final = {S.CANCEL_PENDING: S.CALLING, S.BYE_PENDING: S.CONFIRMED}


def step(call: Call, inp: CallInput) -> CallAction:
    """Move ``call`` on ``inp`` (rule 3) and return the action to carry out."""
    state, action = _FLAT[int(call.state) * _N_INPUTS + int(inp)]
    call.state = state
    return action


def public_state(state: CallState) -> CallState:
    """``state`` as the program sees it (rule 1's pending states fold into their base)."""
    return _PUBLIC.get(state, state)
