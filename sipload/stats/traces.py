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
5. A call in progress that has had no message for :data:`IDLE_PACK` seconds (a
   call held open, a long pause) has its trace so far packed: its messages'
   fields as msgpack, compressed by zlib with a preset dictionary (the first
   packed call's own fields: the messages of one scenario differ from call to
   call in little more than their tags, branches and Call-ID), about 0.1 KiB
   for a basic call's four messages instead of 2.8 KiB of objects and bytes.
   Messages that come later are kept as before, after the packed ones; a call
   that ends is unpacked only when its trace is kept.  The shell asks for the
   packing a call at a time where it fits (:meth:`Tracer.pack_idle`); a trace
   waits for it in :attr:`Tracer.quiet` (one entry per call at most).

Wire data is hostile: it is kept as the bytes that crossed the socket and is
never decoded here; whoever shows it escapes it.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack

from sipload.sip.peek import call_id_of
from sipload.stats.records import CallRecord, Failure, Result

MODES = ("failed", "all", "none")
CALL_BYTES = 65536
"""The most message bytes one call's trace holds (rule 1)."""
DEFAULT_LIMIT = 20
"""Traced calls kept per failure reason per worker when ``--trace failed``."""
IDLE_PACK = 5.0
"""Seconds without a message after which a call's trace so far is packed (rule 5)."""
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


_PACKED: list[WireMessage] = []
"""A packed trace's :attr:`CallTrace.messages` until another comes (never appended to:
a call held open keeps no list of its own)."""


class CallTrace:
    """The messages of one call so far, at most ``cap`` bytes of them (rule 1)."""

    __slots__ = ("call_id", "call_number", "cap", "dropped", "last", "legs", "messages",
                 "packed", "queued", "size")

    def __init__(self, call_number: int, cap: int = CALL_BYTES) -> None:
        self.call_number = call_number
        self.call_id = ""  #: the first Call-ID the call used
        self.legs: list[str] | None = None  #: the other Call-IDs it used (legs), if any
        self.messages: list[WireMessage] = []  #: those not packed (all, until packed)
        self.size = 0  #: bytes held
        self.cap = cap
        self.dropped = 0  #: messages not kept for want of room
        self.last = 0.0  #: when its last message came
        self.packed = b""  #: the messages before :attr:`messages`, packed (rule 5)
        self.queued = False  #: whether :attr:`Tracer.quiet` holds it

    def add(self, t: float, direction: str, transport: str, local: tuple[str, int],
            remote: tuple[str, int], data: bytes) -> None:
        room = self.cap - self.size
        if room <= 0:
            self.dropped += 1
            return
        kept = data if len(data) <= room else data[:room]
        self.size += len(kept)
        if self.messages is _PACKED:
            self.messages = []
        self.messages.append(WireMessage(t, direction, transport, local[0], local[1],
                                         remote[0], remote[1], kept, len(data)))

    @property
    def call_ids(self) -> list[str]:
        """Every Call-ID the call used, the first first."""
        first = [self.call_id] if self.call_id else []
        return first + self.legs if self.legs is not None else first

    def add_call_id(self, call_id: str) -> None:
        if not self.call_id:
            self.call_id = call_id
        elif self.legs is None:
            self.legs = [call_id]
        else:
            self.legs.append(call_id)

    def pack(self, zdict: bytes) -> None:
        """Pack every message so far (rule 5) with ``zdict``, the tracer's dictionary."""
        rows = self.packed_rows(zdict)
        rows.extend(_row(m) for m in self.messages)
        squeeze = zlib.compressobj(1, zdict=zdict)
        self.packed = squeeze.compress(msgpack.packb(rows)) + squeeze.flush()
        self.messages = _PACKED

    def packed_rows(self, zdict: bytes) -> list[list[Any]]:
        """The fields of the packed messages (none when nothing is packed)."""
        if not self.packed:
            return []
        expand = zlib.decompressobj(zdict=zdict)
        rows: list[list[Any]] = msgpack.unpackb(expand.decompress(self.packed)
                                                + expand.flush())
        return rows

    def unpack(self, zdict: bytes) -> None:
        """Every message back in :attr:`messages`, in order."""
        if self.packed:
            self.messages = [WireMessage(*row) for row in self.packed_rows(zdict)] \
                + self.messages
            self.packed = b""


def _row(m: WireMessage) -> list[Any]:
    """A message's fields in :class:`WireMessage`'s argument order (rule 5)."""
    return [m.t, m.direction, m.transport, m.local_host, m.local_port, m.remote_host,
            m.remote_port, m.data, m.length]


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
            "call_id": rec.call_id or trace.call_id,
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

    __slots__ = ("_by_call_id", "_calls", "_cap", "_held", "_local_of", "_lookup", "_zdict",
                 "keeper", "packed_calls", "quiet")

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
        #: (time of a message, its call's number): calls whose trace may go quiet (rule 5)
        self.quiet: deque[tuple[float, int]] = deque()
        self._zdict = b""  #: the packing's preset dictionary, set by the first packed call
        self.packed_calls = 0  #: traces packed so far (a call packed twice counts twice)

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
            trace.add_call_id(call_id)
            self._by_call_id[call_id] = trace
            held = self._held.pop(call_id, None)
            if held is not None:
                for m in held.messages:
                    trace.add(m.t, m.direction, m.transport, (m.local_host, m.local_port),
                              (m.remote_host, m.remote_port), m.data)
                trace.dropped += held.dropped
        trace.add(t, direction, transport, local, remote, data)
        trace.last = t
        if not trace.queued:
            trace.queued = True
            self.quiet.append((t, trace.call_number))

    def next_quiet(self) -> float | None:
        """When the call waiting longest in :attr:`quiet` may be due for packing."""
        quiet = self.quiet
        return quiet[0][0] + IDLE_PACK if quiet else None

    def idle_waiting(self, now: float) -> bool:
        """Whether a call's trace may have been quiet for :data:`IDLE_PACK` at ``now``."""
        quiet = self.quiet
        return bool(quiet) and quiet[0][0] <= now - IDLE_PACK

    def pack_idle(self, now: float) -> CallTrace | None:
        """Pack the trace of the next call quiet for :data:`IDLE_PACK` at ``now`` (rule 5)
        and return it; None when no call is waiting for it."""
        quiet, calls = self.quiet, self._calls
        limit = now - IDLE_PACK
        while quiet and quiet[0][0] <= limit:
            _, number = quiet.popleft()
            trace = calls.get(number)
            if trace is None:
                continue  # ended
            trace.queued = False
            if trace.last > limit:  # a message came since: wait from that one
                trace.queued = True
                quiet.append((trace.last, number))
                continue
            if not trace.messages:
                continue  # nothing came since it was packed
            if not self._zdict:
                self._zdict = msgpack.packb([_row(m) for m in trace.messages])
            trace.pack(self._zdict)
            self.packed_calls += 1
            return trace
        return None

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
        trace.unpack(self._zdict)
        for m in trace.messages:
            if m.local_port == 0:
                m.local_host, m.local_port = self._local_of(
                    (m.transport, m.remote_host, m.remote_port))
        return self.keeper.export(trace, rec, epoch)
