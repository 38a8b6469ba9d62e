"""UARuntime on real loopback sockets: the shell's rules with a fake UA, then two real
UAs exchanging OPTIONS and a whole call (INVITE/180/PRACK/200/ACK/BYE) over UDP and TCP,
through the blocking eXosip-like API and the async one.  Every wait is bounded."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from sipload.runtime import UARuntime
from sipload.transport import Peer
from sipload.ua.agent import UAConfig
from sipload.ua.events import Event, EventType
from sipload.ua.ids import IdGenerator

DEADLINE = 5.0

# ================================================================ the shell, with a fake UA


@dataclass
class FakeUA:
    """Just the sans-IO surface: echoes what it gets, fires timers it is given."""

    config: UAConfig
    ids: IdGenerator
    now: float = 0.0
    deadlines: list[float] = field(default_factory=list)
    fired: list[float] = field(default_factory=list)
    received: list[tuple[bytes, Peer]] = field(default_factory=list)
    errors: list[tuple[Peer, str]] = field(default_factory=list)
    out: list[tuple[bytes, Peer]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def outgoing(self) -> list[tuple[bytes, Peer]]:
        out, self.out = self.out, []
        return out

    def next_event(self) -> Event | None:
        return self.events.pop(0) if self.events else None

    def next_deadline(self) -> float | None:
        return min(self.deadlines) if self.deadlines else None

    def receive(self, data: bytes, peer: Peer, now: float) -> None:
        self.now = now
        self.received.append((data, peer))
        if not data.startswith(b"echo:"):
            self.out.append((b"echo:" + data, peer))
        self.events.append(Event(EventType.MESSAGE_NEW, now, reason=data.decode()))

    def handle_timers(self, now: float) -> None:
        self.now = now
        due = [d for d in self.deadlines if d <= now]
        self.deadlines = [d for d in self.deadlines if d > now]
        for d in due:
            self.fired.append(now)
            self.events.append(Event(EventType.CALL_NOANSWER, now, reason=f"timer {d}"))

    def transport_error(self, peer: Peer, now: float, reason: str) -> None:
        self.errors.append((peer, reason))
        self.events.append(Event(EventType.TRANSPORT_ERROR, now, reason=reason))

    # what a program would call between waits
    def send(self, data: bytes, peer: Peer) -> None:
        self.out.append((data, peer))


def fake_runtime(transport: str = "udp") -> UARuntime:
    return UARuntime.start_sync(
        UAConfig(host="127.0.0.1", port=0, transport=transport),
        ua_factory=FakeUA,  # type: ignore[arg-type]
    )


def test_port_0_is_bound_before_the_ua_is_made() -> None:
    with fake_runtime() as rt:
        ua = rt.ua
        assert isinstance(ua, FakeUA)
        assert ua.config.port != 0 and rt.address == ("udp", "127.0.0.1", ua.config.port)


def test_event_wait_flushes_api_calls_and_times_out() -> None:
    with fake_runtime() as a, fake_runtime() as b:
        t0 = time.monotonic()
        assert a.event_wait(0.05) is None
        assert time.monotonic() - t0 < 1.0
        a.ua.send(b"hello", b.address)  # type: ignore[attr-defined]
        assert b.event_wait(0.05) is None  # not sent yet: a has not waited
        assert a.event_wait(0) is None  # flushes
        ev = b.event_wait(2.0)  # receives, and the UA's echo goes out at once
        assert ev is not None and ev.reason == "hello"
        ev = a.event_wait(2.0)
        assert ev is not None and ev.reason == "echo:hello"
        assert a.ua.now == pytest.approx(a.loop.time(), abs=0.05)


def test_one_timer_rearmed_and_fired_not_early() -> None:
    with fake_runtime() as rt:
        ua = rt.ua
        assert isinstance(ua, FakeUA)
        now = rt.loop.time()
        ua.deadlines = [now + 0.2, now + 0.05]
        rt.flush()
        assert rt.timer_at == pytest.approx(now + 0.05)
        ev = rt.event_wait(2.0)
        assert ev is not None and ev.type is EventType.CALL_NOANSWER
        assert ua.fired[0] >= now + 0.05
        assert rt.timer_at == pytest.approx(now + 0.2)  # re-armed at the next deadline
        ev = rt.event_wait(2.0)
        assert ev is not None and ua.fired[1] >= now + 0.2
        assert rt.timer_at is None
        assert ua.now >= now + 0.2  # fresh after the wait


def test_transport_error_reaches_the_ua() -> None:
    with fake_runtime("tcp") as rt:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        rt.ua.send(b"x", ("tcp", "127.0.0.1", port))  # type: ignore[attr-defined]
        ev = rt.event_wait(2.0)
        assert ev is not None and ev.type is EventType.TRANSPORT_ERROR
        assert rt.ua.errors[0][0] == ("tcp", "127.0.0.1", port)  # type: ignore[attr-defined]


def test_async_runtime_echo_and_events_iterator() -> None:
    async def main() -> None:
        cfg = UAConfig(host="127.0.0.1", port=0, transport="udp")
        async with (
            await UARuntime.start(cfg, ua_factory=FakeUA) as a,  # type: ignore[arg-type]
            await UARuntime.start(cfg, ua_factory=FakeUA) as b,  # type: ignore[arg-type]
        ):
            a.ua.send(b"ping", b.address)  # type: ignore[attr-defined]
            a.flush()
            async with asyncio.timeout(DEADLINE):
                async for ev in b.events():
                    assert ev.reason == "ping"
                    break
                ev2 = await a.next_event(2.0)
            assert ev2 is not None and ev2.reason == "echo:ping"
            assert await a.next_event(0.01) is None
            with pytest.raises(RuntimeError):
                a.event_wait(0.1)

    asyncio.run(main())


# ================================================================ two real user agents


def start(transport: str) -> UARuntime:
    return UARuntime.start_sync(
        UAConfig(host="127.0.0.1", port=0, transport=transport), ids=IdGenerator("t")
    )


class Pair:
    """Two blocking runtimes; waits turn both loops until one side sees an event."""

    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.a = start(transport)
        self.b = start(transport)
        self.seen: dict[int, list[Event]] = {id(self.a): [], id(self.b): []}

    def uri(self, rt: UARuntime, user: str) -> str:
        return f"sip:{user}@{rt.address[1]}:{rt.address[2]}"

    def wait(self, rt: UARuntime, etype: EventType) -> Event:
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            for side in (self.a, self.b):
                ev = side.event_wait(0.005)
                while ev is not None:
                    self.seen[id(side)].append(ev)
                    ev = side.event_wait(0)
            for i, ev in enumerate(self.seen[id(rt)]):
                if ev.type is etype:
                    return self.seen[id(rt)].pop(i)
        raise AssertionError(f"no {etype.name}; saw {[e.type.name for e in self.seen[id(rt)]]}")

    def close(self) -> None:
        self.a.close()
        self.b.close()


@pytest.fixture(params=["udp", "tcp"])
def pair(request: pytest.FixtureRequest) -> Pair:
    p = Pair(request.param)
    request.addfinalizer(p.close)
    return p


def test_options_answered_automatically(pair: Pair) -> None:
    a, b = pair.a, pair.b
    req = a.ua.options_build_request(pair.uri(b, "b"), pair.uri(a, "a"))
    tid = a.ua.message_send_request(req)
    new = pair.wait(b, EventType.MESSAGE_NEW)
    assert new.request is not None and new.request.method == "OPTIONS"
    answered = pair.wait(a, EventType.MESSAGE_ANSWERED)
    assert answered.tid == tid and answered.status == 200


def test_full_call(pair: Pair) -> None:
    a, b = pair.a, pair.b
    invite = a.ua.call_build_initial_invite(pair.uri(b, "b"), pair.uri(a, "a"))
    cid = a.ua.call_send_initial_invite(invite)

    incoming = pair.wait(b, EventType.CALL_INVITE)
    b.ua.call_send_answer(incoming.tid, 180)
    ringing = pair.wait(a, EventType.CALL_RINGING)
    assert ringing.cid == cid and ringing.status == 180

    b.ua.call_send_answer(incoming.tid, 200)
    answered = pair.wait(a, EventType.CALL_ANSWERED)
    assert answered.cid == cid and answered.did != 0 and answered.status == 200

    a.ua.call_send_ack(answered.did)
    acked = pair.wait(b, EventType.CALL_ACK)
    assert acked.cid == incoming.cid

    a.ua.call_terminate(cid, answered.did)
    closed = pair.wait(b, EventType.CALL_CLOSED)
    assert closed.request is not None and closed.request.method == "BYE"
    pair.wait(b, EventType.CALL_RELEASED)
    pair.wait(a, EventType.CALL_RELEASED)
    assert a.ua.call_count() == 0 and b.ua.call_count() == 0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_full_call_async(transport: str) -> None:
    async def main() -> None:
        cfg = UAConfig(host="127.0.0.1", port=0, transport=transport)
        async with (
            await UARuntime.start(cfg, ids=IdGenerator("x")) as a,
            await UARuntime.start(cfg, ids=IdGenerator("y")) as b,
        ):
            async def expect(rt: UARuntime, etype: EventType) -> Event:
                async with asyncio.timeout(DEADLINE):
                    async for ev in rt.events():
                        if ev.type is etype:
                            return ev
                raise AssertionError("closed")  # pragma: no cover

            def uri(rt: UARuntime, user: str) -> str:
                return f"sip:{user}@{rt.address[1]}:{rt.address[2]}"

            cid = a.ua.call_send_initial_invite(
                a.ua.call_build_initial_invite(uri(b, "b"), uri(a, "a")))
            a.flush()
            incoming = await expect(b, EventType.CALL_INVITE)
            b.ua.call_send_answer(incoming.tid, 200)
            b.flush()
            answered = await expect(a, EventType.CALL_ANSWERED)
            a.ua.call_send_ack(answered.did)
            a.flush()
            await expect(b, EventType.CALL_ACK)
            a.ua.call_terminate(cid, answered.did)
            a.flush()
            await expect(b, EventType.CALL_CLOSED)
            await expect(a, EventType.CALL_RELEASED)

    asyncio.run(main())
