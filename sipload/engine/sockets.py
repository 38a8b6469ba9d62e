"""The worker's SIP sockets: TLS contexts, the first address, the other source addresses.

A UAC over TLS or WSS still listens (its Contact names that address): without a
server context of its own it gets a throwaway loopback certificate.  With several
source addresses (``--source-addresses``) the first is the engine's own
:class:`TransportSet`; each further one gets a set of its own
(:class:`~sipload.transport.sources.SourceSockets`), numbered from 1 as the UA numbers
its local addresses.  What the sockets read, and their failures, go to the engine's
:class:`~sipload.pump.Pump` (:attr:`SipSockets.pump`, set once it is built).
"""

from __future__ import annotations

import ssl
from typing import Any

from sipload.engine.config import EngineConfig
from sipload.pump import Pump
from sipload.stats.connintervals import connection_snapshot
from sipload.transport import Peer, TransportSet
from sipload.transport.selfsigned import loopback_certificate, server_context_from_pem
from sipload.transport.sources import SourceSockets
from sipload.transport.tlsclient import load_context


class SipSockets:
    """The TLS contexts of ``cfg`` and, once :meth:`listen` ran, its transports."""

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        secure = cfg.transport in ("tls", "wss")
        self.tls = load_context(insecure=cfg.tls_insecure, cadata=cfg.tls_cadata,
                                resume=cfg.tls_resume) if secure else None
        server_tls = cfg.tls_server
        if secure and server_tls is None:
            server_tls = server_context_from_pem(*loopback_certificate())
        self.server_tls: ssl.SSLContext | None = server_tls
        self.sources: SourceSockets | None = None  #: the addresses beyond the first
        self.pump: Pump | None = None  #: gets what the sockets read and their failures

    async def listen(self) -> tuple[TransportSet, tuple[str, int]]:
        """The first address's transports, listening; returns them and the bound address."""
        cfg = self.cfg
        tp = TransportSet(self._on_message, self._on_error, tls_client_context=self.tls,
                          stream_limits=cfg.stream_limits, ws_path=cfg.ws_path,
                          connections=cfg.connections, on_call_error=self._on_call_error,
                          source_host=cfg.local_host if cfg.sources else "",
                          on_batch=self._on_batch)
        host, port = await tp.listen(cfg.transport, cfg.local_host, cfg.local_port,
                                     ssl_context=self.server_tls, reuse_port=cfg.reuse_port)
        return tp, (host, port)

    async def bind_sources(self, first: TransportSet) -> list[tuple[str, int]]:
        """Sockets on each source address beyond the first; their bound addresses."""
        cfg = self.cfg
        sources = self.sources = SourceSockets(first)
        for host in cfg.sources[1:]:
            await sources.add(host, cfg.local_port, cfg.transport, self._on_message_at,
                              self._on_error, tls_client_context=self.tls,
                              ssl_context=self.server_tls, stream_limits=cfg.stream_limits,
                              ws_path=cfg.ws_path, reuse_port=cfg.reuse_port,
                              connections=cfg.connections, on_call_error=self._on_call_error)
        return sources.addresses

    def _on_message(self, data: bytes, peer: Peer, stamp: float) -> None:
        if self.pump is not None:
            self.pump.receive(data, peer, stamp)

    def _on_batch(self, batch: list[tuple[bytes, Peer, float]]) -> None:
        if self.pump is not None:  # one read of the UDP socket: answered in one flush
            self.pump.receive_batch(batch)

    def _on_message_at(self, data: bytes, peer: Peer, stamp: float, local: int) -> None:
        if self.pump is not None:
            self.pump.receive(data, peer, stamp, local)

    def _on_error(self, peer: Peer, reason: str) -> None:
        if self.pump is not None:
            self.pump.error(peer, reason)

    def _on_call_error(self, peer: Peer, call_id: str, reason: str) -> None:
        if self.pump is not None:
            self.pump.call_error(peer, call_id, reason)

    def connection_figures(self, first: TransportSet) -> dict[str, Any] | None:
        """The interval's stream-connection map (every address's), or None (no streams)."""
        conns = (self.sources.take_connection_figures() if self.sources is not None
                 else first.take_connection_figures())
        if conns is None:
            return None
        return connection_snapshot(conns.counts(), conns.durations_us, conns.failures)

    async def close(self) -> None:
        """Close the further addresses' sockets (the shell closes the first set)."""
        if self.sources is not None:
            await self.sources.close()
