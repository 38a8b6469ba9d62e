"""The tables of the SIP transactions: RFC 3261 §17's timers, states and inputs, and the
four machines' transitions beside the RFC figures they encode.

:class:`TimerConfig` holds T1, T2 and T4 (Table 4) and derives the other timers;
:class:`TxState`, :class:`Input` and :class:`Action` name what the tables speak of.
Each machine is a dict keyed by ``(state, input)`` giving ``(next state, action)``,
next to the RFC figure it encodes (RFC 6026's Accepted included); a pair left out
means "stay, do nothing", except that a response from the TU left out is refused
(:func:`flatten` fills these in).  :mod:`sipload.sip.transaction` runs the machines
(its docstring is the theory of operation) and re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

__all__ = [
    "INVITE_CLIENT_TRANSITIONS", "INVITE_SERVER_TRANSITIONS", "NON_INVITE_CLIENT_TRANSITIONS",
    "NON_INVITE_SERVER_TRANSITIONS", "Action", "Flat", "Input", "Table", "TimerConfig",
    "TxState", "flatten",
]


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """The base intervals of RFC 3261 §17 (Table 4), in seconds; the rest derive from them.

    Attributes:
        t1: RTT estimate; the first retransmission interval.
        t2: the cap of non-INVITE request and INVITE response retransmission intervals.
        t4: how long a message can stay in the network.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    def __post_init__(self) -> None:
        if not (self.t1 > 0 and self.t2 >= self.t1 and self.t4 >= 0):
            raise ValueError(f"bad timers t1={self.t1} t2={self.t2} t4={self.t4}")

    @property
    def timer_b(self) -> float:
        """INVITE client gives up in Calling: 64·T1."""
        return 64 * self.t1

    @property
    def timer_f(self) -> float:
        """Non-INVITE client gives up: 64·T1."""
        return 64 * self.t1

    @property
    def timer_h(self) -> float:
        """INVITE server waits for the ACK of a 300-699: 64·T1."""
        return 64 * self.t1

    @property
    def timer_l(self) -> float:
        """INVITE server lingers in Accepted: 64·T1 (RFC 6026)."""
        return 64 * self.t1

    @property
    def timer_m(self) -> float:
        """INVITE client lingers in Accepted: 64·T1 (RFC 6026)."""
        return 64 * self.t1

    def timer_d(self, reliable: bool) -> float:
        """INVITE client absorbs final retransmissions: max(32 s, 64·T1); 0 reliable."""
        return 0.0 if reliable else max(32.0, 64 * self.t1)

    def timer_i(self, reliable: bool) -> float:
        """INVITE server absorbs ACK retransmissions: T4; 0 reliable."""
        return 0.0 if reliable else self.t4

    def timer_j(self, reliable: bool) -> float:
        """Non-INVITE server absorbs request retransmissions: 64·T1; 0 reliable."""
        return 0.0 if reliable else 64 * self.t1

    def timer_k(self, reliable: bool) -> float:
        """Non-INVITE client absorbs response retransmissions: T4; 0 reliable."""
        return 0.0 if reliable else self.t4


class TxState(IntEnum):
    """States of the four machines (each uses a subset)."""

    CALLING = 0
    TRYING = 1
    PROCEEDING = 2
    COMPLETED = 3
    CONFIRMED = 4
    ACCEPTED = 5
    TERMINATED = 6


class Input(IntEnum):
    """What can happen to a transaction: the input of the transition tables."""

    RECV_1XX = 0  # client: a provisional response arrived
    RECV_2XX = 1  # client: a 2xx arrived
    RECV_3XX_6XX = 2  # client: a 300-699 arrived
    SEND_1XX = 3  # server: the TU sends a provisional response
    SEND_2XX = 4  # server: the TU sends a 2xx
    SEND_3XX_6XX = 5  # server: the TU sends a 300-699
    REQUEST = 6  # server: the request was retransmitted
    ACK = 7  # server: an ACK matched the (INVITE) transaction
    TIMER_RETX = 8  # Timer A, E or G fired
    TIMER_GUARD = 9  # Timer B, D, M; F, K; H, I, L; J fired
    TRANSPORT_ERROR = 10  # the transport could not deliver what the transaction sent


class Action(IntEnum):
    """What a transition does besides changing state (timers follow the state entered)."""

    NONE = 0  # absorb the input
    TO_TU = 1  # pass the response to the TU / let the TU see the ACK
    ACK_TO_TU = 2  # build and send the ACK for a 300-699, pass the response to the TU
    RESEND_ACK = 3  # re-send the cached ACK
    RETX_DOUBLE = 4  # retransmit; the interval doubles without cap (Timer A)
    RETX_CAPPED = 5  # retransmit; the interval doubles up to T2 (E in Trying, G)
    RETX_T2 = 6  # retransmit; the interval becomes T2 (E in Proceeding)
    TIMEOUT = 7  # a timer ended the transaction in failure: tell the TU (B, F, H)
    END = 8  # a guard timer ended the transaction normally (D, K, I, J, L, M)
    FAIL = 9  # a transport error: record it (the TU is told)
    SEND = 10  # send the TU's response
    RESEND = 11  # re-send the last response, if there is one
    ERROR = 12  # the TU may not do this here: LocalProtocolError


S = TxState
In = Input
A = Action
Table = dict[tuple[TxState, Input], tuple[TxState, Action]]


# ------------------------------------------------------------------ INVITE client (§17.1.1)
#
# RFC 3261 Figure 5 as replaced by RFC 6026 Figure 5, in brief.  Exits leave a
# box to the right ("-->", "(loop)" = back into the same state).
#
#   INVITE from TU / send INVITE, Timer A (unreliable), Timer B
#       |
#       v
#   +------------+ --Timer A / resend, A = 2A----------------------> (loop)
#   |  Calling   | --Timer B / inform TU (timeout)-----------------> Terminated
#   |            | --transport err. / inform TU--------------------> Terminated
#   |            | --2xx / to TU-----------------------------------> Accepted
#   |            | --300-699 / send ACK, to TU---------------------> Completed
#   +------------+
#       | 1xx / to TU
#       v
#   +------------+ --1xx / to TU-----------------------------------> (loop)
#   | Proceeding | --2xx / to TU-----------------------------------> Accepted
#   |            | --300-699 / send ACK, to TU---------------------> Completed
#   +------------+ --transport err. / inform TU (sipload)----------> Terminated
#   +------------+ --300-699 / resend ACK--------------------------> (loop)
#   | Completed  | --Timer D / -; transport err. / inform TU-------> Terminated
#   +------------+
#   +------------+ --2xx / to TU (the TU ACKs each)----------------> (loop)
#   |  Accepted  | --Timer M / -; transport err. (sipload)---------> Terminated
#   +------------+
#
INVITE_CLIENT_TRANSITIONS: Final[Table] = {
    (S.CALLING, In.RECV_1XX): (S.PROCEEDING, A.TO_TU),
    (S.CALLING, In.RECV_2XX): (S.ACCEPTED, A.TO_TU),
    (S.CALLING, In.RECV_3XX_6XX): (S.COMPLETED, A.ACK_TO_TU),
    (S.CALLING, In.TIMER_RETX): (S.CALLING, A.RETX_DOUBLE),
    (S.CALLING, In.TIMER_GUARD): (S.TERMINATED, A.TIMEOUT),
    (S.CALLING, In.TRANSPORT_ERROR): (S.TERMINATED, A.FAIL),
    (S.PROCEEDING, In.RECV_1XX): (S.PROCEEDING, A.TO_TU),
    (S.PROCEEDING, In.RECV_2XX): (S.ACCEPTED, A.TO_TU),
    (S.PROCEEDING, In.RECV_3XX_6XX): (S.COMPLETED, A.ACK_TO_TU),
    (S.PROCEEDING, In.TRANSPORT_ERROR): (S.TERMINATED, A.FAIL),
    (S.COMPLETED, In.RECV_3XX_6XX): (S.COMPLETED, A.RESEND_ACK),
    (S.COMPLETED, In.TIMER_GUARD): (S.TERMINATED, A.END),
    (S.COMPLETED, In.TRANSPORT_ERROR): (S.TERMINATED, A.FAIL),
    (S.ACCEPTED, In.RECV_2XX): (S.ACCEPTED, A.TO_TU),
    (S.ACCEPTED, In.TIMER_GUARD): (S.TERMINATED, A.END),
    (S.ACCEPTED, In.TRANSPORT_ERROR): (S.TERMINATED, A.FAIL),
}

# ------------------------------------------------------------------ non-INVITE client (§17.1.2)
#
# RFC 3261 Figure 6, in brief.
#
#   request from TU / send request, Timer E (unreliable), Timer F
#       |
#       v
#   +------------+ --Timer E / resend, E = min(2E, T2)-------------> (loop)
#   |   Trying   | --Timer F / inform TU (timeout)-----------------> Terminated
#   |            | --transport err. / inform TU--------------------> Terminated
#   |            | --200-699 / to TU-------------------------------> Completed
#   +------------+
#       | 1xx / to TU
#       v
#   +------------+ --1xx / to TU; Timer E / resend, E = T2---------> (loop)
#   | Proceeding | --Timer F / inform TU (timeout)-----------------> Terminated
#   |            | --transport err. / inform TU--------------------> Terminated
#   +------------+ --200-699 / to TU-------------------------------> Completed
#   +------------+ --200-699 / - ----------------------------------> (loop)
#   | Completed  | --Timer K / -; transport err. / inform TU-------> Terminated
#   +------------+
#
NON_INVITE_CLIENT_TRANSITIONS: Final[Table] = {
    (S.TRYING, In.RECV_1XX): (S.PROCEEDING, A.TO_TU),
    (S.TRYING, In.RECV_2XX): (S.COMPLETED, A.TO_TU),
    (S.TRYING, In.RECV_3XX_6XX): (S.COMPLETED, A.TO_TU),
    (S.TRYING, In.TIMER_RETX): (S.TRYING, A.RETX_CAPPED),
    (S.TRYING, In.TIMER_GUARD): (S.TERMINATED, A.TIMEOUT),
    (S.TRYING, In.TRANSPORT_ERROR): (S.TERMINATED, A.FAIL),
    (S.PROCEEDING, In.RECV_1XX): (S.PROCEEDING, A.TO_TU),
    (S.PROCEEDING, In.RECV_2XX): (S.COMPLETED, A.TO_TU),
    (S.PROCEEDING, In.RECV_3XX_6XX): (S.COMPLETED, A.TO_TU),
    (S.PROCEEDING, In.TIMER_RETX): (S.PROCEEDING, A.RETX_T2),
    (S.PROCEEDING, In.TIMER_GUARD): (S.TERMINATED, A.TIMEOUT),
    (S.PROCEEDING, In.TRANSPORT_ERROR): (S.TERMINATED, A.FAIL),
    (S.COMPLETED, In.TIMER_GUARD): (S.TERMINATED, A.END),
    (S.COMPLETED, In.TRANSPORT_ERROR): (S.TERMINATED, A.FAIL),
}

# ------------------------------------------------------------------ INVITE server (§17.2.1)
#
# RFC 3261 Figure 7 as replaced by RFC 6026 Figure 7, in brief.  The TU sends
# 100 Trying itself; a transport error is reported and the state kept.
#
#   INVITE / pass to TU
#       |
#       v
#   +------------+ --1xx from TU / send----------------------------> (loop)
#   | Proceeding | --INVITE / resend the last 1xx, if any----------> (loop)
#   |            | --2xx from TU / send----------------------------> Accepted
#   +------------+ --300-699 from TU / send------------------------> Completed
#   +------------+ --INVITE / resend; Timer G / resend,
#   | Completed  |     G = min(2G, T2)-----------------------------> (loop)
#   |            | --ACK / - --------------------------------------> Confirmed
#   +------------+ --Timer H / inform TU (timeout)-----------------> Terminated
#   +------------+ --ACK / - --------------------------------------> (loop)
#   | Confirmed  | --Timer I / - ----------------------------------> Terminated
#   +------------+
#   +------------+ --2xx from TU / send; INVITE / - ---------------> (loop)
#   |  Accepted  | --ACK / to TU-----------------------------------> (loop)
#   +------------+ --Timer L / - ----------------------------------> Terminated
#
INVITE_SERVER_TRANSITIONS: Final[Table] = {
    (S.PROCEEDING, In.SEND_1XX): (S.PROCEEDING, A.SEND),
    (S.PROCEEDING, In.SEND_2XX): (S.ACCEPTED, A.SEND),
    (S.PROCEEDING, In.SEND_3XX_6XX): (S.COMPLETED, A.SEND),
    (S.PROCEEDING, In.REQUEST): (S.PROCEEDING, A.RESEND),
    (S.PROCEEDING, In.TRANSPORT_ERROR): (S.PROCEEDING, A.FAIL),
    (S.COMPLETED, In.REQUEST): (S.COMPLETED, A.RESEND),
    (S.COMPLETED, In.ACK): (S.CONFIRMED, A.NONE),
    (S.COMPLETED, In.TIMER_RETX): (S.COMPLETED, A.RETX_CAPPED),
    (S.COMPLETED, In.TIMER_GUARD): (S.TERMINATED, A.TIMEOUT),
    (S.COMPLETED, In.TRANSPORT_ERROR): (S.COMPLETED, A.FAIL),
    (S.CONFIRMED, In.TIMER_GUARD): (S.TERMINATED, A.END),
    (S.ACCEPTED, In.SEND_2XX): (S.ACCEPTED, A.SEND),
    (S.ACCEPTED, In.ACK): (S.ACCEPTED, A.TO_TU),
    (S.ACCEPTED, In.TIMER_GUARD): (S.TERMINATED, A.END),
    (S.ACCEPTED, In.TRANSPORT_ERROR): (S.ACCEPTED, A.FAIL),
}

# ------------------------------------------------------------------ non-INVITE server (§17.2.2)
#
# RFC 3261 Figure 8, in brief.
#
#   request / pass to TU
#       |
#       v
#   +------------+ --request / - ----------------------------------> (loop)
#   |   Trying   | --transport err. / inform TU--------------------> Terminated
#   |            | --200-699 from TU / send------------------------> Completed
#   +------------+
#       | 1xx from TU / send
#       v
#   +------------+ --1xx from TU / send; request / resend----------> (loop)
#   | Proceeding | --transport err. / inform TU--------------------> Terminated
#   +------------+ --200-699 from TU / send------------------------> Completed
#   +------------+ --request / resend the final--------------------> (loop)
#   | Completed  | --Timer J / -; transport err. / inform TU-------> Terminated
#   +------------+
#
NON_INVITE_SERVER_TRANSITIONS: Final[Table] = {
    (S.TRYING, In.SEND_1XX): (S.PROCEEDING, A.SEND),
    (S.TRYING, In.SEND_2XX): (S.COMPLETED, A.SEND),
    (S.TRYING, In.SEND_3XX_6XX): (S.COMPLETED, A.SEND),
    (S.TRYING, In.TRANSPORT_ERROR): (S.TERMINATED, A.FAIL),
    (S.PROCEEDING, In.SEND_1XX): (S.PROCEEDING, A.SEND),
    (S.PROCEEDING, In.SEND_2XX): (S.COMPLETED, A.SEND),
    (S.PROCEEDING, In.SEND_3XX_6XX): (S.COMPLETED, A.SEND),
    (S.PROCEEDING, In.REQUEST): (S.PROCEEDING, A.RESEND),
    (S.PROCEEDING, In.TRANSPORT_ERROR): (S.TERMINATED, A.FAIL),
    (S.COMPLETED, In.REQUEST): (S.COMPLETED, A.RESEND),
    (S.COMPLETED, In.TIMER_GUARD): (S.TERMINATED, A.END),
    (S.COMPLETED, In.TRANSPORT_ERROR): (S.TERMINATED, A.FAIL),
}

Flat = list[tuple[TxState, Action]]

_SENDS: Final = (In.SEND_1XX, In.SEND_2XX, In.SEND_3XX_6XX)


def flatten(table: Table) -> Flat:
    """Index ``state * len(Input) + input``; fill in the pairs left out (rule 3 of
    :mod:`sipload.sip.transaction`): a response from the TU is refused (ERROR), any
    other input absorbed (NONE)."""
    return [
        table.get((s, i), (s, A.ERROR if i in _SENDS else A.NONE)) for s in TxState for i in Input
    ]
