"""The wire traces of a UAC run: the pump's tap files each message under its call.

A :class:`~sipload.stats.traces.Tracer` (sans-IO) keeps the messages; this module
gives it the transports' view of each one (local and remote address, the literal
host a name was sent to, from the sockets of the local address it used) and turns its
run-relative stamps into Unix time with the epoch taken when tracing began.  Kept
traces wait in :attr:`WireTrace.kept` until the output hands them over, before the
records of their calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sipload.stats.records import CallRecord
from sipload.stats.traces import TraceKeeper, Tracer
from sipload.transport import Peer, TransportSet, address_literal
from sipload.transport.sources import SourceSockets

#: UDP peers whose addresses :meth:`WireTrace.tap` remembers (more: it starts afresh).
_PEERS_CACHED = 256


class WireTrace:
    """Which calls' messages to keep (``"failed"`` or ``"all"``), at most ``limit`` per
    failure reason; ``lookup`` names the call of a Call-ID; ``epoch`` is Unix time at
    the engine's clock zero."""

    def __init__(self, which: str, limit: int, lookup: Callable[[str], int | None],
                 transports: TransportSet, epoch: float,
                 sources: SourceSockets | None = None) -> None:
        self.tracer = Tracer(TraceKeeper(which, limit), lookup, transports.local_address)
        self.transports = transports
        self.sources = sources  #: the other source addresses' sockets, by local index
        self.epoch = epoch
        self.kept: list[dict[str, Any]] = []
        #: UDP peers (address literals) -> (local address, remote address), by direction
        self._in: dict[Peer, tuple[tuple[str, int], tuple[str, int]]] = {}
        self._out: dict[Peer, tuple[tuple[str, int], tuple[str, int]]] = {}

    def tap(self, now: float, direction: str, peer: Peer, data: bytes, local: int) -> None:
        """One message read (``"in"``) or written (``"out"``) at ``now`` on local address
        ``local`` (the pump's tap)."""
        if not local and peer[0] == "udp":
            # A UDP peer's local address and literal host do not change once known:
            # asked once per peer, not per message (the transports are not compiled).
            cache = self._in if direction == "in" else self._out
            known = cache.get(peer)
            if known is None:
                known = self._addresses(direction, peer, self.transports)
                if address_literal(peer[1]) is not None and known[0][1]:
                    if len(cache) >= _PEERS_CACHED:
                        cache.clear()
                    cache[peer] = known
            self.tracer.message(now, direction, "udp", known[0], known[1], data)
            return
        tp = self.transports
        if local and self.sources is not None:
            tp = self.sources.sets[local]
        local_addr, remote = self._addresses(direction, peer, tp)
        self.tracer.message(now, direction, peer[0], local_addr, remote, data)

    @staticmethod
    def _addresses(direction: str, peer: Peer, tp: TransportSet
                   ) -> tuple[tuple[str, int], tuple[str, int]]:
        """The local address ``peer``'s traffic uses and the remote (host literal, port)."""
        host = peer[1] if direction == "in" else tp.literal(peer[1])
        return tp.local_address(peer), (host, peer[2])

    def finish(self, rec: CallRecord) -> None:
        """A call ended: its trace is kept or dropped."""
        kept = self.tracer.finish(rec, self.epoch)
        if kept is not None:
            self.kept.append(kept)

    def take(self) -> list[dict[str, Any]]:
        """The traces kept since the last take."""
        kept, self.kept = self.kept, []
        return kept
