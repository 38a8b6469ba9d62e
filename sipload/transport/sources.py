"""A worker's several source addresses: one :class:`TransportSet` bound to each.

``sipload run --source-addresses`` spreads calls over local addresses (PBXs rate-limit
per source).  Each address gets sockets of its own: for UDP the socket bound to it is
what the datagrams leave from; for TCP, TLS and WebSocket a listener on it (our
Contact) and the connections we open are bound to it.  The user agent numbers the
addresses (``UserAgent.add_local``; 0 is the engine's first), writes each call's own
into Via and Contact, and tags every message with the address it leaves from
(``UserAgent.outgoing_from``); :meth:`SourceSockets.send` writes it on that
address's sockets.  What comes in on address ``k`` goes up with ``k``, so a request
is answered from where it arrived.

Nothing here parses SIP or decides which call uses which address.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from sipload.transport import Peer, StreamLimits, TransportSet
from sipload.transport.tlsclient import TlsFigures

#: ``(data, peer, stamp, local)``: a message that came in on local address ``local``.
OnMessageAt = Callable[[bytes, Peer, float, int], None]


class SourceSockets:
    """The sockets of every source address, index 0 being the engine's own set.

    Args:
        first: the engine's :class:`TransportSet` (local address 0).
    """

    def __init__(self, first: TransportSet) -> None:
        self.sets: list[TransportSet] = [first]
        self.addresses: list[tuple[str, int]] = []

    async def add(self, host: str, port: int, transport: str, on_message: OnMessageAt,
                  on_error: Callable[[Peer, str], None], *,
                  tls_client_context: ssl.SSLContext | None = None,
                  ssl_context: ssl.SSLContext | None = None,
                  stream_limits: StreamLimits | None = None, ws_path: str = "/",
                  reuse_port: bool = False, connections: str = "shared",
                  on_call_error: Callable[[Peer, str, str], None] | None = None
                  ) -> tuple[str, int]:
        """Bind local address ``host`` (port 0: ephemeral) as the next index; returns
        the bound (host, port).

        Raises:
            OSError: the address cannot be bound (not one of this host's).
        """
        index = len(self.sets)

        def arrived(data: bytes, peer: Peer, stamp: float) -> None:
            on_message(data, peer, stamp, index)

        ts = TransportSet(arrived, on_error, tls_client_context=tls_client_context,
                          stream_limits=stream_limits, ws_path=ws_path, source_host=host,
                          connections=connections, on_call_error=on_call_error)
        try:
            bound = await ts.listen(transport, host, port, ssl_context=ssl_context,
                                    reuse_port=reuse_port)
        except BaseException:
            await ts.close()
            raise
        self.sets.append(ts)
        self.addresses.append(bound)
        return bound

    def take_connection_figures(self) -> TlsFigures | None:
        """Every address's connection figures since the last call, added up (None: no
        stream transport in use)."""
        out: TlsFigures | None = None
        for ts in self.sets:
            figures = ts.take_connection_figures()
            if figures is None:
                continue
            if out is None:
                out = figures
            else:
                out.add(figures)
        return out

    def send(self, data: bytes, peer: Peer, local: int) -> float:
        """Write ``data`` to ``peer`` from local address ``local``; the send stamp."""
        return self.sets[local].send(data, peer)

    async def close(self) -> None:
        """Close the sets this added (the engine closes its own, index 0)."""
        for ts in self.sets[1:]:
            await ts.close()
