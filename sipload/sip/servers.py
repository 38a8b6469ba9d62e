"""Which server a request tries first, and which next (RFC 3263 §4.3, RFC 2782).

The DNS lookups themselves (NAPTR, SRV, A/AAAA) are I/O and live in
:mod:`sipload.transport.dns`; what they found comes here as a list of
:class:`Server` rows, and this module only orders them.

Theory of operation
===================

1. A :class:`ServerSet` holds every server found for one name: each SRV target's
   addresses with the SRV record's priority and weight and the transport its NAPTR
   (or SRV name) said.  Rows of one SRV target share priority and weight.
2. :meth:`ServerSet.pick` orders them afresh for each new request: the NAPTR
   record's rank first (RFC 3263 §4.1: order, then preference), then RFC 2782: lower
   priority first; within a priority, a weighted random draw without replacement
   (weight 0 entries are placed first and drawn only when the running sum allows);
   the addresses of one SRV target stay together, in the order DNS gave them.
3. The caller sends to the first and, when it times out, gets an ICMP/transport
   error or a 503, sends the request anew to the next (§4.3); a request that ran out
   of servers fails as it would have with one.
4. A server that answered 503 with Retry-After is avoided for that long
   (:meth:`ServerSet.avoid`, RFC 3261 §21.5.4): until then :meth:`ServerSet.pick`
   puts it after every server that is not avoided (it is still tried when all
   others fail, never dropped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Peer = tuple[str, str, int]
"""(transport, address literal, port): where bytes go."""


@dataclass(frozen=True, slots=True)
class Server:
    """One address of one SRV target (or of a name with no SRV)."""

    transport: str  #: udp, tcp, tls, ws or wss
    address: str  #: an address literal (A or AAAA answer)
    port: int
    priority: int = 0  #: SRV priority: lower is tried first
    weight: int = 0  #: SRV weight: share of the draws within one priority
    name: str = ""  #: the SRV target (host name) this address belongs to
    rank: int = 0  #: the place of its NAPTR record (order, preference): lower first

    @property
    def peer(self) -> Peer:
        return (self.transport, self.address, self.port)

    def label(self) -> str:
        """``transport:address:port``, as reports show a target."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.transport}:{host}:{self.port}"


class ServerSet:
    """Every server found for one name, ordered anew per request (see the module doc).

    Args:
        name: the name that was looked up (the Request-URI host).
        servers: what DNS gave, in any order.
        random: a function returning a float in [0, 1) (``random.Random.random``).
    """

    def __init__(self, name: str, servers: list[Server], random: Callable[[], float]) -> None:
        if not servers:
            raise ValueError(f"no server for {name!r}")
        self.name = name.lower()
        self.servers = tuple(servers)
        self._random = random
        groups: dict[tuple[str, int, int, str, int, int], list[Server]] = {}
        for s in servers:  # one SRV target (name, port, transport) -> its addresses
            key = (s.name, s.port, s.priority, s.transport, s.weight, s.rank)
            groups.setdefault(key, []).append(s)
        self._targets = [tuple(g) for g in groups.values()]
        self._avoided: dict[Peer, float] = {}  #: peer -> until when (rule 4)

    def avoid(self, peer: Peer, until: float) -> bool:
        """Avoid ``peer`` until ``until`` (rule 4); False when it is none of this set's."""
        if not any(s.peer == peer for s in self.servers):
            return False
        self._avoided[peer] = max(until, self._avoided.get(peer, 0.0))
        return True

    def avoided(self, now: float) -> list[Peer]:
        """The servers avoided at ``now`` (expired ones are forgotten)."""
        for peer in [p for p, until in self._avoided.items() if until <= now]:
            del self._avoided[peer]
        return list(self._avoided)

    def pick(self, now: float = 0.0) -> list[Peer]:
        """Every server's peer, in the order this request should try them at ``now``
        (rules 2 and 4)."""
        order = self._draw()
        if not self._avoided:
            return order
        avoided = set(self.avoided(now))
        return [p for p in order if p not in avoided] + [p for p in order if p in avoided]

    def _draw(self) -> list[Peer]:
        out: list[Peer] = []
        for rank, prio in sorted({(t[0].rank, t[0].priority) for t in self._targets}):
            left = sorted((t for t in self._targets
                           if t[0].priority == prio and t[0].rank == rank),
                          key=lambda t: t[0].weight != 0)  # weight 0 first (RFC 2782)
            while left:
                total = sum(t[0].weight for t in left)
                draw = self._random() * total
                running = 0
                chosen = left[-1]
                for t in left:
                    running += t[0].weight
                    if running >= draw:
                        chosen = t
                        break
                left.remove(chosen)
                out.extend(s.peer for s in chosen)
        return out

    def labels(self) -> dict[Peer, str]:
        """Each server's peer and its label."""
        return {s.peer: s.label() for s in self.servers}
