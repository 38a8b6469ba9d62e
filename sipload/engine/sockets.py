"""The worker's SIP sockets: TLS contexts, the first address, the other source addresses.

A UAC over TLS or WSS still listens (its Contact names that address): without a
server context of its own it gets a throwaway loopback certificate.  With several
source addresses (``--source-addresses``) the first is the engine's own
:class:`TransportSet`; each further one gets a set of its own
(:class:`~sipload.transport.sources.SourceSockets`), numbered from 1 as the UA numbers
its local addresses.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from sipload.engine.config import EngineConfig
from sipload.stats.connintervals import connection_snapshot
from sipload.transport import OnMessage, Peer, TransportSet
from sipload.transport.selfsigned import loopback_certificate, server_context_from_pem
from sipload.transport.sources import OnMessageAt, SourceSockets
from sipload.transport.tlsclient import load_context

OnError = Callable[[Peer, str], None]
OnCallError = Callable[[Peer, str, str], None]


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

    async def listen(self, on_message: OnMessage, on_error: OnError,
                     on_call_error: OnCallError) -> tuple[TransportSet, tuple[str, int]]:
        """The first address's transports, listening; returns them and the bound address."""
        cfg = self.cfg
        tp = TransportSet(on_message, on_error, tls_client_context=self.tls,
                          stream_limits=cfg.stream_limits, ws_path=cfg.ws_path,
                          connections=cfg.connections, on_call_error=on_call_error,
                          source_host=cfg.local_host if cfg.sources else "")
        host, port = await tp.listen(cfg.transport, cfg.local_host, cfg.local_port,
                                     ssl_context=self.server_tls, reuse_port=cfg.reuse_port)
        return tp, (host, port)

    async def bind_sources(self, first: TransportSet, on_message: OnMessageAt,
                           on_error: OnError, on_call_error: OnCallError
                           ) -> list[tuple[str, int]]:
        """Sockets on each source address beyond the first; their bound addresses."""
        cfg = self.cfg
        sources = self.sources = SourceSockets(first)
        for host in cfg.sources[1:]:
            await sources.add(host, cfg.local_port, cfg.transport, on_message, on_error,
                              tls_client_context=self.tls, ssl_context=self.server_tls,
                              stream_limits=cfg.stream_limits, ws_path=cfg.ws_path,
                              reuse_port=cfg.reuse_port, connections=cfg.connections,
                              on_call_error=on_call_error)
        return sources.addresses

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
