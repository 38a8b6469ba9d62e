"""Two user agents wired in memory, with a fake clock (no sockets, no sleeps).

``Pair.transfer()`` moves what each UA queued to the other; ``drop`` filters
let a test lose chosen messages; ``advance(dt)`` moves the clock and fires
due timers on both.
"""

from __future__ import annotations

from collections.abc import Callable

from sipload.sip.transaction import TimerConfig
from sipload.ua.agent import UAConfig, UserAgent
from sipload.ua.events import Event, EventType
from sipload.ua.ids import IdGenerator

Drop = Callable[[bytes], bool]


def taking(prefix: bytes, taken: list[bytes]) -> Drop:
    """A drop filter that takes every message starting with ``prefix`` off the wire
    and keeps it in ``taken``."""
    def drop(data: bytes) -> bool:
        if data.startswith(prefix):
            taken.append(data)
            return True
        return False

    return drop


class Pair:
    def __init__(self, transport: str = "udp", **bob_config: object) -> None:
        timers = TimerConfig()
        self.alice = UserAgent(
            UAConfig(host="127.0.0.1", port=5071, transport=transport, user="alice",
                     timers=timers),
            IdGenerator("a"),
        )
        cfg = UAConfig(host="127.0.0.1", port=5072, transport=transport, user="bob",
                       timers=timers)
        for k, v in bob_config.items():
            setattr(cfg, k, v)
        self.bob = UserAgent(cfg, IdGenerator("b"))
        self.now = 0.0
        self.wire: list[tuple[str, bytes]] = []  # (sender, data) of everything delivered
        self.drop_to_bob: Drop | None = None
        self.drop_to_alice: Drop | None = None
        self.transport = transport
        self.elsewhere: list[tuple[tuple[str, str, int], bytes]] = []  # sent to other peers

    def _peer_of(self, ua: UserAgent) -> tuple[str, str, int]:
        return (self.transport, ua.config.host, ua.config.port)

    def transfer(self, rounds: int = 10) -> int:
        """Deliver queued bytes both ways until quiet; returns messages moved."""
        moved = 0
        for _ in range(rounds):
            a_out = self.alice.outgoing()
            b_out = self.bob.outgoing()
            if not a_out and not b_out:
                break
            for data, peer in a_out:
                if peer[2] != self.bob.config.port:
                    self.elsewhere.append((peer, data))
                    continue
                if self.drop_to_bob is None or not self.drop_to_bob(data):
                    self.wire.append(("alice", data))
                    self.bob.receive(data, self._peer_of(self.alice), self.now)
                    moved += 1
            for data, peer in b_out:
                if peer[2] != self.alice.config.port:
                    self.elsewhere.append((peer, data))
                    continue
                if self.drop_to_alice is None or not self.drop_to_alice(data):
                    self.wire.append(("bob", data))
                    self.alice.receive(data, self._peer_of(self.bob), self.now)
                    moved += 1
        return moved

    def advance(self, dt: float) -> None:
        """Move the clock by ``dt`` in small steps, firing timers and delivering."""
        end = self.now + dt
        while True:
            deadlines = [d for d in (self.alice.next_deadline(), self.bob.next_deadline())
                         if d is not None and d <= end]
            if not deadlines:
                break
            self.now = max(self.now, min(deadlines))
            self.alice.handle_timers(self.now)
            self.bob.handle_timers(self.now)
            self.transfer()
        self.now = end
        self.alice.handle_timers(self.now)
        self.bob.handle_timers(self.now)
        self.transfer()

    def invite_bob(self, headers: dict[str, str], sdp: bytes = b"") -> tuple[int, Event]:
        """Alice's INVITE to Bob with ``headers`` set (and ``sdp`` as its body), sent and
        delivered: Alice's cid and Bob's CALL_INVITE event."""
        invite = self.alice.call_build_initial_invite("<sip:bob@127.0.0.1:5072>",
                                                      "<sip:alice@127.0.0.1:5071>")
        for name, value in headers.items():
            invite.set_header(name, value)
        if sdp:
            invite.set_body(sdp, "application/sdp")
        cid = self.alice.call_send_initial_invite(invite, now=self.now)
        self.transfer()
        incoming = [e for e in self.events(self.bob) if e.type is EventType.CALL_INVITE]
        assert len(incoming) == 1, incoming
        return cid, incoming[0]

    @staticmethod
    def events(ua: UserAgent) -> list[Event]:
        out: list[Event] = []
        while (e := ua.next_event()) is not None:
            out.append(e)
        return out

    @staticmethod
    def types(events: list[Event]) -> list[EventType]:
        return [e.type for e in events]

    def sent_by(self, who: str) -> list[str]:
        """First lines of what ``who`` sent, in order."""
        return [d.split(b"\r\n", 1)[0].decode() for s, d in self.wire if s == who]
