"""The one retransmitter for what the UA itself re-sends until the peer acknowledges it.

Theory of operation
===================

Transactions retransmit requests and final responses on their own (sip/transaction.py).
Two messages are the TU's job instead, and both follow the same schedule:

* our 2xx to an INVITE, until its ACK (RFC 3261 §13.3.1.4): T1, doubling up to T2;
* a reliable provisional response, until its PRACK (RFC 3262 §3): T1, doubling
  without a cap.

1. A :class:`Resend` holds the bytes, where they go, the next send time, the
   interval, its cap and the give-up time (64·T1 after the first send).
2. Over a reliable transport nothing is re-sent (``next`` is ``inf``): only the
   give-up time runs.
3. :func:`fire` is called with ``now`` when the owner's timer is due.  It answers
   :data:`EXPIRED` (give up: the owner decides what that means, a BYE or a 504),
   :data:`SENT` (the bytes went to ``out`` again and the interval doubled), or
   :data:`IDLE` (nothing due yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

Peer = tuple[str, str, int]
"""Where bytes go or came from: (transport "udp"/"tcp"/"tls", host, port)."""

IDLE: Final = 0
SENT: Final = 1
EXPIRED: Final = 2

_INF: Final = float("inf")


@dataclass(slots=True, init=False)
class Resend:
    """Bytes re-sent on a doubling interval until acknowledged or given up."""

    data: bytes  #: the message as first sent
    peer: Peer  #: where it goes
    next: float  #: when it goes out again (inf over a reliable transport)
    interval: float  #: the current interval
    cap: float  #: the interval never grows beyond this (inf: no cap)
    give_up: float  #: when the owner stops waiting for the acknowledgement

    def __init__(self, data: bytes, peer: Peer, now: float, t1: float, cap: float,
                 reliable: bool) -> None:
        self.data = data
        self.peer = peer
        self.interval = t1
        self.cap = cap
        self.next = _INF if reliable else now + t1
        self.give_up = now + 64 * t1

    def deadline(self) -> float:
        """When :func:`fire` has something to do."""
        return self.next if self.next < self.give_up else self.give_up


def fire(r: Resend, now: float, out: list[tuple[bytes, Peer]]) -> int:
    """Re-send ``r`` if it is due (rule 3); returns IDLE, SENT or EXPIRED."""
    if now >= r.give_up:
        return EXPIRED
    if now >= r.next:
        out.append((r.data, r.peer))
        interval = r.interval * 2
        r.interval = interval if interval < r.cap else r.cap
        r.next = now + r.interval
        return SENT
    return IDLE
