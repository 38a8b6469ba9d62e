"""Wire traces of calls: each call's messages in a bounded buffer, kept as asked when it ends.

Theory of operation
===================

1. While a call runs, every message sent or received for it (matched by
   Call-ID in the shell) goes into its :class:`CallTrace` with its stamp,
   direction, transport and both addresses.  A trace holds at most ``cap``
   bytes of message text: a message that does not fit whole is kept cut to
   the room left (its full length is kept beside it), later ones are only
   counted in ``dropped``.  So a worker never holds more than ``cap`` bytes
   per call in progress.
2. When the call's record is final, :class:`TraceKeeper` decides: ``none``
   keeps nothing, ``all`` keeps every call, ``failed`` keeps failed calls, at
   most ``limit`` per failure reason in this worker (a rejection counts per
   status code: "call_rejected 503" and "call_rejected 486" are two reasons).
3. Messages are filed by Call-ID (:class:`Tracer`); a message whose Call-ID no
   call in progress uses yet is held, in a small bounded pool, until a call
   claims that Call-ID (the INVITE that starts a call arrives before the call
   exists).
4. A kept trace becomes one plain dict (:meth:`TraceKeeper.export`: msgpack
   types only, message bytes left as bytes) that travels with the record batch
   to the coordinator, which writes ``traces.arrows`` and ``messages.pcap``.

Wire data is hostile: it is kept as the bytes that crossed the socket and is
never decoded here; whoever shows it escapes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sipload.sip.peek import call_id_of
from sipload.stats.records import CallRecord, Failure, Result

MODES = ("failed", "all", "none")
CALL_BYTES = 65536
"""The most message bytes one call's trace holds (rule 1)."""
DEFAULT_LIMIT = 20
"""Traced calls kept per failure reason per worker when ``--trace failed``."""
HOLD_CALL_IDS = 32
"""Call-IDs no call claims yet whose messages are held (a call that an incoming
request starts is known only once the scenario took it), oldest dropped first."""


class WireMessage:
    """One message as it crossed the socket."""

    __slots__ = (
        "data",
        "direction",
        "length",
        "local_host",
        "local_port",
        "remote_host",
        "remote_port",
        "t",
        "transport",
    )

    def __init__(self, t: float, direction: str, transport: str, local_host: str,
                 local_port: int, remote_host: str, remote_port: int, data: bytes,
                 length: int) -> None:
        self.t = t  #: when it was read or written (seconds, the engine's clock)
        self.direction = direction  #: "out" (sent by sipload) or "in"
        self.transport = transport  #: "udp", "tcp" or "tls"
        self.local_host = local_host
        self.local_port = local_port  #: 0 while a stream is still connecting
        self.remote_host = remote_host
        self.remote_port = remote_port
        self.data = data  #: the bytes kept (all of them, or the first ones: see length)
        self.length = length  #: the message's full length in bytes


class CallTrace:
    """The messages of one call so far, at most ``cap`` bytes of them (rule 1)."""

    __slots__ = ("call_ids", "call_number", "cap", "dropped", "messages", "size")

    def __init__(self, call_number: int, cap: int = CALL_BYTES) -> None:
        self.call_number = call_number
        self.call_ids: list[str] = []  #: every Call-ID the call used (legs)
        self.messages: list[WireMessage] = []
        self.size = 0  #: bytes held
        self.cap = cap
        self.dropped = 0  #: messages not kept for want of room

    def add(self, t: float, direction: str, transport: str, local: tuple[str, int],
            remote: tuple[str, int], data: bytes) -> None:
        room = self.cap - self.size
        if room <= 0:
            self.dropped += 1
            return
        kept = data if len(data) <= room else data[:room]
        self.size += len(kept)
        self.messages.append(WireMessage(t, direction, transport, local[0], local[1],
                                         remote[0], remote[1], kept, len(data)))


def failure_reason(rec: CallRecord) -> str:
    """The reason a failed call counts under for ``--trace-limit`` (rule 2)."""
    if rec.failure == Failure.REJECTED.value:
        code = rec.detail.split(" ", 1)[0]
        if code.isdigit():
            return f"{rec.failure} {code}"
    return rec.failure


class TraceKeeper:
    """Which finished calls keep their trace (rule 2), and their exported form (rule 3)."""

    __slots__ = ("kept", "limit", "mode", "skipped")

    def __init__(self, mode: str = "failed", limit: int = DEFAULT_LIMIT) -> None:
        if mode not in MODES:
            raise ValueError(f"trace mode {mode!r}: use one of {', '.join(MODES)}")
        self.mode = mode
        self.limit = limit
        self.kept: dict[str, int] = {}  #: failure reason -> traced calls kept
        self.skipped = 0  #: failed calls past the limit, not kept

    @property
    def tracing(self) -> bool:
        return self.mode != "none"

    def keep(self, rec: CallRecord) -> bool:
        """Whether the trace of ``rec``'s call is kept; counts it if so."""
        if self.mode == "all":
            return True
        if self.mode == "none" or rec.result != Result.FAILED:
            return False
        reason = failure_reason(rec)
        n = self.kept.get(reason, 0)
        if n >= self.limit:
            self.skipped += 1
            return False
        self.kept[reason] = n + 1
        return True

    @staticmethod
    def export(trace: CallTrace, rec: CallRecord, epoch: float) -> dict[str, Any]:
        """The kept trace as plain data; ``epoch`` turns the engine's clock into Unix time."""
        return {
            "worker": rec.worker, "call_number": rec.call_number,
            "call_id": rec.call_id or (trace.call_ids[0] if trace.call_ids else ""),
            "dropped": trace.dropped, "epoch": epoch,
            "messages": [[m.t, m.direction, m.transport, m.local_host, m.local_port,
                          m.remote_host, m.remote_port, m.length, m.data]
                         for m in trace.messages],
        }


Address = tuple[str, int]


class Tracer:
    """Files each message under its call and hands out the kept traces (rules 1-4).

    Args:
        keeper: which finished calls keep their trace.
        lookup: the number of the call in progress that uses a Call-ID, or None.
        local_of: the local address of a (transport, host, port) peer, asked again
            when a call ends for messages sent while a stream was connecting.
        cap: bytes per call (rule 1).
    """

    __slots__ = ("_by_call_id", "_calls", "_cap", "_held", "_local_of", "_lookup", "keeper")

    def __init__(self, keeper: TraceKeeper, lookup: Callable[[str], int | None],
                 local_of: Callable[[tuple[str, str, int]], Address],
                 cap: int = CALL_BYTES) -> None:
        self.keeper = keeper
        self._lookup = lookup
        self._local_of = local_of
        self._cap = cap
        self._calls: dict[int, CallTrace] = {}
        self._by_call_id: dict[str, CallTrace] = {}
        self._held: dict[str, CallTrace] = {}

    @property
    def held_calls(self) -> int:
        """Traces in memory: calls in progress plus held Call-IDs."""
        return len(self._calls) + len(self._held)

    def message(self, t: float, direction: str, transport: str, local: Address,
                remote: Address, data: bytes) -> None:
        """File one message read or written at ``t``."""
        call_id = call_id_of(data)
        if call_id is None:
            return
        trace = self._by_call_id.get(call_id)
        if trace is None:
            number = self._lookup(call_id)
            if number is None:
                trace = self._held.get(call_id)
                if trace is None:
                    if len(self._held) >= HOLD_CALL_IDS:
                        del self._held[next(iter(self._held))]
                    trace = CallTrace(-1, self._cap)
                    self._held[call_id] = trace
                trace.add(t, direction, transport, local, remote, data)
                return
            trace = self._calls.get(number)
            if trace is None:
                trace = CallTrace(number, self._cap)
                self._calls[number] = trace
            trace.call_ids.append(call_id)
            self._by_call_id[call_id] = trace
            held = self._held.pop(call_id, None)
            if held is not None:
                for m in held.messages:
                    trace.add(m.t, m.direction, m.transport, (m.local_host, m.local_port),
                              (m.remote_host, m.remote_port), m.data)
                trace.dropped += held.dropped
        trace.add(t, direction, transport, local, remote, data)

    def finish(self, rec: CallRecord, epoch: float) -> dict[str, Any] | None:
        """The call of ``rec`` ended: its trace, exported, if it is kept; else None."""
        trace = self._calls.pop(rec.call_number, None)
        if trace is None:
            return None
        for call_id in trace.call_ids:
            if self._by_call_id.get(call_id) is trace:
                del self._by_call_id[call_id]
        if not self.keeper.keep(rec):
            return None
        for m in trace.messages:
            if m.local_port == 0:
                m.local_host, m.local_port = self._local_of(
                    (m.transport, m.remote_host, m.remote_port))
        return self.keeper.export(trace, rec, epoch)
