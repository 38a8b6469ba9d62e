"""The UDP side of a :class:`~sipload.transport.TransportSet`'s sending, compiled.

Owns a set's UDP endpoints (one per bound address), which endpoint last wrote to a
peer given as an address literal, and the names peers were given as (so an error
from the socket, which knows only the literal, goes to the peer as it was sent to).
:meth:`UdpRoutes.send_many` is what the pump calls once per flush: plain typed code
that mypyc compiles (``sipload/_native.py``), so the per-message path from the
pump's flush to the socket runs no interpreted frame.  Anything that is not UDP to an
address literal goes back to the set's own ``send`` (names to resolve, streams).

1. A flush of one message to a peer an endpoint already wrote to goes straight to
   that endpoint while it is open (the endpoint ``send`` would pick again).
2. Consecutive UDP messages to address literals leave from their socket in one
   batch (``sendmmsg``, one stamp, read before it); anything else goes through the
   set's ``send``, in order.
3. :meth:`UdpRoutes.send_udp` writes to an address literal from the open endpoint of
   its address family, remembering the endpoint for that peer (at most
   :data:`ROUTES_CACHED` peers: more, and it starts afresh); with no endpoint of
   that family the failure goes to ``error`` (which reports it from the loop).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import time
from collections.abc import Callable

from sipload.transport.udp import Peer, UdpEndpoint

#: UDP peers whose endpoint :meth:`UdpRoutes.send_many` remembers (more: it starts afresh).
ROUTES_CACHED = 256


@functools.lru_cache(maxsize=4096)
def address_literal(host: str) -> str | None:
    """``host`` as a plain address literal if it is one (brackets removed), else None.

    Cached: it runs for every datagram sent, and a run talks to few hosts.
    """
    plain = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(plain.split("%", 1)[0])
    except ValueError:
        return None
    return plain


def family_of(addr: str) -> int:
    """The address family of an address literal."""
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


class UdpRoutes:
    """A transport set's UDP endpoints and where each literal peer is written from.

    Args:
        send: the set's own ``send``, for every message that is not UDP to a literal.
        error: reports a failure towards a peer (from the loop, never from here).

    Attributes:
        endpoints: the bound UDP endpoints, in the order they were bound.
        names: (address literal, port) -> the peer as it was given (a name).
        routes: peers written to an address literal as given -> the endpoint that did.
        closed: the set is closed: everything goes to ``send`` (which drops it).
    """

    def __init__(self, send: Callable[[bytes, Peer], float],
                 error: Callable[[Peer, str], None]) -> None:
        self.endpoints: list[UdpEndpoint] = []
        self.names: dict[tuple[str, int], Peer] = {}
        self.routes: dict[Peer, UdpEndpoint] = {}
        self.closed = False
        self._send = send
        self._error = error

    def endpoint_for(self, family: int) -> UdpEndpoint | None:
        """The first open endpoint of ``family``, or None."""
        for ep in self.endpoints:
            if ep.family == family and not ep.closing:
                return ep
        return None

    def send_many(self, out: list[tuple[bytes, Peer]]) -> list[float]:
        """Send each ``(data, peer)`` of ``out`` in order (rules 1, 2): the send stamp
        of each."""
        if self.closed:
            return [self._send(data, peer) for data, peer in out]
        if len(out) == 1:
            data, peer = out[0]
            route = self.routes.get(peer)
            if route is not None and not route.closing:
                return [route.sendto(data, peer[1], peer[2])]
            return [self._send(data, peer)]
        stamps: list[float] = []
        packets: list[bytes] = []
        dests: list[tuple[str, int]] = []
        batch_ep: UdpEndpoint | None = None
        for data, peer in out:
            ep: UdpEndpoint | None = None
            addr: str | None = None
            if peer[0] == "udp":
                addr = address_literal(peer[1])
                if addr is not None:
                    ep = self.endpoint_for(family_of(addr))
            if ep is not batch_ep and batch_ep is not None:
                stamp = batch_ep.sendto_many(packets, dests)
                stamps.extend([stamp] * len(packets))
                packets, dests = [], []
            batch_ep = ep
            if ep is None or addr is None:
                stamps.append(self._send(data, peer))
                continue
            if addr != peer[1]:
                self.names[(addr, peer[2])] = peer
            packets.append(data)
            dests.append((addr, peer[2]))
        if batch_ep is not None and packets:
            stamp = batch_ep.sendto_many(packets, dests)
            stamps.extend([stamp] * len(packets))
        return stamps

    def send_udp(self, data: bytes, addr: str, peer: Peer) -> float:
        """Write ``data`` to ``addr`` (the literal of ``peer``'s host), rule 3."""
        family = family_of(addr)
        ep = self.endpoint_for(family)
        if ep is None:
            version = "IPv6" if family == socket.AF_INET6 else "IPv4"
            self._error(peer, f"udp: no {version} socket to send from")
            return time.monotonic()
        if addr == peer[1] and peer[0] == "udp":
            routes = self.routes
            if len(routes) >= ROUTES_CACHED:
                routes.clear()
            routes[peer] = ep
        return ep.sendto(data, addr, peer[2])
