"""Real-socket tests of the transports, on 127.0.0.1 and ::1 only, on asyncio and uvloop.

Every wait is bounded (``WAIT`` seconds); certificates are made per test with
``cryptography`` (a throwaway CA, a server certificate it signs, and a
self-signed one).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Self

import pytest
import uvloop

from sipload.transport import Peer, TransportSet, address_literal, batch
from sipload.transport.loop import loop_name, new_event_loop
from sipload.transport.stream import MAX_PENDING, StreamConnection, StreamTransport
from sipload.transport.tls import client_context, server_context
from tests.certs import make_pki

WAIT = 3.0

Runner = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    factory = asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop

    def runner(coro: Coroutine[Any, Any, None]) -> None:
        async def bounded() -> None:
            async with asyncio.timeout(10):
                await coro

        with asyncio.Runner(loop_factory=factory) as r:
            r.run(bounded())

    return runner


def have_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not have_ipv6(), reason="no IPv6 loopback")


def sip(n: int = 1, body: bytes = b"") -> bytes:
    """A small request with a correct Content-Length."""
    return (
        f"OPTIONS sip:test@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK{n}\r\n"
        f"Call-ID: {n}@test\r\nCSeq: {n} OPTIONS\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Sink:
    """A TransportSet (``.t``) and what it reports; closes it on leaving ``async with``."""

    def __init__(self, **kw: Any) -> None:
        self.messages: asyncio.Queue[tuple[bytes, Peer]] = asyncio.Queue()
        self.errors: asyncio.Queue[tuple[Peer, str]] = asyncio.Queue()
        self.t = TransportSet(lambda d, p, _s: self.messages.put_nowait((d, p)), self.on_error,
                              **kw)

    def on_error(self, peer: Peer, reason: str) -> None:
        self.errors.put_nowait((peer, reason))

    async def message(self) -> tuple[bytes, Peer]:
        async with asyncio.timeout(WAIT):
            return await self.messages.get()

    async def error(self) -> tuple[Peer, str]:
        async with asyncio.timeout(WAIT):
            return await self.errors.get()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.t.close()


def closed_port(family: int = socket.AF_INET, kind: int = socket.SOCK_DGRAM) -> int:
    """A port nobody listens on (bound, read, released)."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
    return port


# ================================================================ helpers and the loop


def test_address_literal() -> None:
    assert address_literal("127.0.0.1") == "127.0.0.1"
    assert address_literal("[::1]") == "::1"
    assert address_literal("::1") == "::1"
    assert address_literal("example.com") is None


def test_new_event_loop_is_uvloop() -> None:
    loop = new_event_loop()
    try:
        assert loop_name(loop) == "uvloop"
    finally:
        loop.close()


HOSTS = ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)]

# ================================================================ UDP


@pytest.mark.parametrize("host", HOSTS)
def test_udp_both_ways(run: Runner, host: str) -> None:
    async def main() -> None:
        async with Sink() as a, Sink() as b:
            await a.t.listen("udp", "127.0.0.1" if ":" in host else "::1", 0)  # not this one
            pa = await a.t.listen("udp", host, 0)
            pb = await b.t.listen("udp", f"[{host}]" if ":" in host else host, 0)
            assert pa[1] != 0 and ("udp", *pb) in b.t.addresses
            a.t.send(sip(1), ("udp", host, pb[1]))
            data, peer = await b.message()
            assert data == sip(1) and peer == ("udp", host, pa[1])
            b.t.send(sip(2), peer)
            assert await a.message() == (sip(2), ("udp", host, pb[1]))

    if ":" not in host and not have_ipv6():
        pytest.skip("the test binds ::1 too")
    run(main())


def test_udp_port_unreachable_is_reported(run: Runner) -> None:
    async def main() -> None:
        async with Sink() as a:
            await a.t.listen("udp", "127.0.0.1", 0)
            dead: Peer = ("udp", "127.0.0.1", closed_port())
            a.t.send(sip(1), dead)
            peer, reason = await a.error()
            assert peer == dead and "refused" in reason.lower()

    run(main())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_RECVERR is Linux's")
def test_udp_icmp_error_names_its_peer_and_drops_no_datagram(run: Runner) -> None:
    async def main() -> None:
        async with Sink() as a, Sink() as b:
            await a.t.listen("udp", "127.0.0.1", 0)
            _, port = await b.t.listen("udp", "127.0.0.1", 0)
            live: Peer = ("udp", "127.0.0.1", port)
            dead: Peer = ("udp", "127.0.0.1", closed_port())
            # On loopback the ICMP error is pending before the next sendto, which
            # then fails: the endpoint must resend it and blame the right peer.
            a.t.send(sip(1), dead)
            a.t.send(sip(2), live)
            a.t.send(sip(3), live)
            assert (await b.message())[0] == sip(2)
            assert (await b.message())[0] == sip(3)
            assert (await a.error())[0] == dead
            await asyncio.sleep(0.05)
            assert a.errors.empty()

    run(main())


@pytest.fixture(params=["sendmmsg", "python"])
def batch_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The batched socket calls under the UDP transport: the C helper, or the loop of
    ``sendto``/``recvmsg`` (tests/test_batch_io.py builds and checks both)."""
    if request.param == "python":
        monkeypatch.setattr(batch, "_native", None)
    elif not batch.native_available():
        pytest.skip("the sendmmsg helper is not built here (tests/test_batch_io.py builds it)")
    return str(request.param)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_RECVERR is Linux's")
def test_udp_send_many_icmp_error_names_its_peer_and_drops_no_datagram(
        run: Runner, batch_impl: str) -> None:
    """The batched send keeps the single send's rules: the datagram after a dead peer's
    is not lost to the pending ICMP error (sendmmsg drops its reason), the dead peer
    alone is blamed, a datagram too large is blamed on its peer and skipped, and
    all of them carry one send stamp."""
    async def main() -> None:
        async with Sink() as a, Sink() as b:
            await a.t.listen("udp", "127.0.0.1", 0)
            _, port = await b.t.listen("udp", "127.0.0.1", 0)
            live: Peer = ("udp", "127.0.0.1", port)
            dead: Peer = ("udp", "127.0.0.1", closed_port())
            big = sip(9, b"x" * 70_000)
            out = [(sip(1), dead), (sip(2), live), (sip(3), live), (big, live), (sip(4), live)]
            stamps = a.t.send_many(out)
            assert len(stamps) == 5 and len(set(stamps)) == 1
            for n in (2, 3, 4):
                assert (await b.message())[0] == sip(n)
            errors = {await a.error(), await a.error()}
            assert {peer for peer, _ in errors} == {dead, live}
            assert any(peer == live and "too long" in reason.lower()
                       for peer, reason in errors)
            await asyncio.sleep(0.05)
            assert a.errors.empty() and b.messages.empty()
            a.t.send(sip(5), live)  # the socket is still read and written
            assert (await b.message())[0] == sip(5)

    run(main())


def test_udp_a_read_comes_up_whole_to_on_batch(run: Runner, batch_impl: str) -> None:
    async def main() -> None:
        reads: list[list[tuple[bytes, Peer, float]]] = []
        got = asyncio.Event()

        def on_batch(batch_: list[tuple[bytes, Peer, float]]) -> None:
            reads.append(batch_)
            if sum(len(r) for r in reads) >= 5:
                got.set()

        async with Sink() as a, Sink(on_batch=on_batch) as b:
            pa = await a.t.listen("udp", "127.0.0.1", 0)
            pb = await b.t.listen("udp", "127.0.0.1", 0)
            before = time.monotonic()
            a.t.send_many([(sip(n), ("udp", "127.0.0.1", pb[1])) for n in range(5)])
            async with asyncio.timeout(WAIT):
                await got.wait()
            assert len(reads) == 1  # sent before b's loop ran: one wake-up, one batch
            assert [d for d, _, _ in reads[0]] == [sip(n) for n in range(5)]
            assert {p for _, p, _ in reads[0]} == {("udp", "127.0.0.1", pa[1])}
            stamps = [s for _, _, s in reads[0]]
            assert stamps == sorted(stamps) and before <= stamps[0] <= time.monotonic()
            assert b.messages.empty()  # on_batch instead of on_message

    run(main())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_RECVERR is Linux's")
def test_udp_error_without_address_is_not_blamed_on_a_live_peer(run: Runner) -> None:
    """An error read from the socket with no queued entry names no peer: the last peer
    sent to is alive, and failing its calls would turn one dead worker into many."""
    from sipload.transport.udp import open_udp

    async def main() -> None:
        errors: list[tuple[Peer, str]] = []
        got: list[bytes] = []
        ep = await open_udp("127.0.0.1", 0, lambda d, p, s: None,
                            lambda p, r: errors.append((p, r)))
        live = await open_udp("127.0.0.1", 0, lambda d, p, s: got.append(d),
                              lambda p, r: None)
        try:
            ep.sendto(sip(1), *live.address)
            for _ in range(100):
                if got:
                    break
                await asyncio.sleep(0.01)
            assert got
            ep.error_received(ConnectionRefusedError(111, "Connection refused"))
            await asyncio.sleep(0.05)
            assert errors == []
        finally:
            await ep.close()
            await live.close()

    run(main())


def test_udp_no_socket_for_family_and_bad_transport(run: Runner) -> None:
    async def main() -> None:
        async with Sink() as a:
            await a.t.listen("udp", "127.0.0.1", 0)
            a.t.send(sip(1), ("udp", "::1", 5060))
            assert a.errors.empty()  # reported from the loop, not inside send()
            peer, reason = await a.error()
            assert peer == ("udp", "::1", 5060) and "IPv6" in reason
            a.t.send(sip(1), ("sctp", "127.0.0.1", 5060))
            peer, reason = await a.error()
            assert peer[0] == "sctp" and "unsupported" in reason

    run(main())


LOCALHOST = socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)[0][4][0]
needs_localhost = pytest.mark.skipif(
    ":" in LOCALHOST and not have_ipv6(), reason="localhost is ::1 but IPv6 is off"
)


@needs_localhost
@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_by_name_resolved_once_errors_keep_the_name(run: Runner, kind: str) -> None:
    async def main() -> None:
        async with Sink() as a, Sink() as b:
            await a.t.listen(kind, LOCALHOST, 0)
            _, port = await b.t.listen(kind, LOCALHOST, 0)
            a.t.send(sip(1), (kind, "localhost", port))
            a.t.send(sip(2), (kind, "localhost", port))  # queued behind the same lookup
            m1, p1 = await b.message()
            m2, p2 = await b.message()
            assert (m1, m2) == (sip(1), sip(2)) and p1 == p2
            assert a.t._dns == {"localhost": LOCALHOST}
            family = socket.AF_INET6 if ":" in LOCALHOST else socket.AF_INET
            stype = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
            dead: Peer = (kind, "localhost", closed_port(family, stype))
            a.t.send(sip(3), dead)
            # UDP blames the name; a failed connection, its name and its address.
            expected = {dead} if kind == "udp" else {dead, (kind, LOCALHOST, dead[2])}
            assert {(await a.error())[0] for _ in expected} == expected

    run(main())


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_reuse_port(run: Runner, kind: str) -> None:
    async def main() -> None:
        async with Sink() as a, Sink() as b, Sink() as c:
            host, port = await a.t.listen(kind, "127.0.0.1", 0, reuse_port=True)
            assert await b.t.listen(kind, host, port, reuse_port=True) == (host, port)
            with pytest.raises(OSError):
                await c.t.listen(kind, host, port)

    run(main())


# ================================================================ TCP


async def raw_client(port: int, host: str = "127.0.0.1") -> tuple[
    asyncio.StreamReader, asyncio.StreamWriter
]:
    async with asyncio.timeout(WAIT):
        return await asyncio.open_connection(host, port)


async def close_writer(w: asyncio.StreamWriter) -> None:
    w.close()
    try:
        async with asyncio.timeout(WAIT):
            await w.wait_closed()
    except (ConnectionError, ssl.SSLError):
        pass


def test_tcp_two_messages_in_one_write(run: Runner) -> None:
    async def main() -> None:
        async with Sink() as b:
            _, port = await b.t.listen("tcp", "127.0.0.1", 0)
            _, w = await raw_client(port)
            w.write(sip(1, b"hello") + sip(2))
            m1, p1 = await b.message()
            m2, p2 = await b.message()
            assert (m1, m2) == (sip(1, b"hello"), sip(2))
            assert p1 == p2 == ("tcp", *w.get_extra_info("sockname"))
            await close_writer(w)

    run(main())


def test_tcp_one_message_in_many_writes(run: Runner) -> None:
    async def main() -> None:
        async with Sink() as b:
            _, port = await b.t.listen("tcp", "127.0.0.1", 0)
            _, w = await raw_client(port)
            msg = sip(7, b"v=0\r\n")
            for i in range(0, len(msg), 9):
                w.write(msg[i : i + 9])
                await w.drain()
                await asyncio.sleep(0)
            assert (await b.message())[0] == msg
            assert b.messages.empty()
            await close_writer(w)

    run(main())


def test_tcp_ping_is_answered_with_crlf(run: Runner) -> None:
    async def main() -> None:
        async with Sink() as b:
            _, port = await b.t.listen("tcp", "127.0.0.1", 0)
            r, w = await raw_client(port)
            w.write(b"\r\n\r\n")
            async with asyncio.timeout(WAIT):
                assert await r.readexactly(2) == b"\r\n"
            w.write(b"\r\n")
            w.write(b"\r\n" + sip(1))  # a ping split over writes, then a message
            async with asyncio.timeout(WAIT):
                assert await r.readexactly(2) == b"\r\n"
            assert (await b.message())[0] == sip(1)
            await close_writer(w)

    run(main())


def test_tcp_unframeable_stream_is_closed(run: Runner) -> None:
    async def main() -> None:
        async with Sink() as b:
            _, port = await b.t.listen("tcp", "127.0.0.1", 0)
            r, w = await raw_client(port)
            w.write(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: 1\r\n\r\n")  # no Content-Length
            async with asyncio.timeout(WAIT):
                try:
                    assert await r.read() == b""
                except ConnectionResetError:
                    pass
            peer, reason = await b.error()
            assert peer == ("tcp", *w.get_extra_info("sockname")) and "frame" in reason
            await close_writer(w)

    run(main())


@pytest.mark.parametrize("host", HOSTS)
def test_tcp_connection_is_reused_both_ways(run: Runner, host: str) -> None:
    async def main() -> None:
        async with Sink() as a, Sink() as b:
            _, port = await b.t.listen("tcp", host, 0)
            server: Peer = ("tcp", host, port)
            a.t.send(sip(1), ("tcp", f"[{host}]" if ":" in host else host, port))
            a.t.send(sip(2), server)  # queued while connecting, same connection
            m1, client = await b.message()
            m2, client2 = await b.message()
            assert (m1, m2) == (sip(1), sip(2)) and client == client2
            assert client[1] == host and client[2] != port  # the client's ephemeral port
            b.t.send(sip(3), client)  # the response goes back on that connection
            assert await a.message() == (sip(3), server)
            a.t.send(sip(4), server)
            assert await b.message() == (sip(4), client)
            assert len(b.t._streams["tcp"]._live) == 1
            assert len(a.t._streams["tcp"]._live) == 1

    run(main())


def test_tcp_refused_is_an_error_not_an_exception(run: Runner) -> None:
    async def main() -> None:
        async with Sink() as a:
            dead: Peer = ("tcp", "127.0.0.1", closed_port(kind=socket.SOCK_STREAM))
            a.t.send(sip(1), dead)
            peer, reason = await a.error()
            assert peer == dead and "refused" in reason.lower()
            assert a.errors.empty()
            assert a.t._streams["tcp"].connection_to("127.0.0.1", dead[2]) is None

    run(main())


def test_tcp_reset_by_peer_is_reported(run: Runner) -> None:
    async def main() -> None:
        async with Sink() as b:
            _, port = await b.t.listen("tcp", "127.0.0.1", 0)
            _, w = await raw_client(port)
            w.write(sip(1))
            _, client = await b.message()
            sock = w.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()  # RST
            peer, reason = await b.error()
            assert peer == client and "lost" in reason

    run(main())


# ================================================================ bounded writes (fake transport)


class FakeTransport(asyncio.Transport):
    """Records writes; the test drives pause/resume by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5999) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted


def test_write_buffer_pauses_and_is_bounded() -> None:
    async def main() -> None:
        errors: list[tuple[Peer, str]] = []

        async def resolve(host: str) -> str:
            return host

        st = StreamTransport("tcp", lambda d, p, s: None, lambda p, r: errors.append((p, r)),
                             resolve)
        conn = StreamConnection(st)
        fake = FakeTransport()
        conn.connection_made(fake)
        conn.write(b"a")
        conn.pause_writing()
        conn.write(b"b")
        conn.write(b"c")
        assert fake.written == [b"a"]
        conn.resume_writing()
        assert fake.written == [b"a", b"b", b"c"]
        conn.pause_writing()
        conn.write(b"x" * (MAX_PENDING - 10))
        conn.write(b"y" * 11)  # over the bound: the peer is not reading
        assert fake.aborted and conn.dead
        await asyncio.sleep(0)
        assert errors and errors[0][0] == ("tcp", "127.0.0.1", 5999)
        assert "buffer full" in errors[0][1]

    asyncio.run(main())


# ================================================================ TLS


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.crt, server.crt/key (signed by ca), selfsigned.crt/key."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.mark.parametrize("trust", ["cafile", "insecure"])
def test_tls_both_ways(run: Runner, pki: Path, trust: str) -> None:
    async def main() -> None:
        if trust == "cafile":
            cert, ctx = "server", client_context(cafile=pki / "ca.crt")
        else:
            cert, ctx = "selfsigned", client_context(insecure=True)
        async with Sink(tls_client_context=ctx) as a, Sink() as b:
            server_ctx = server_context(pki / f"{cert}.crt", pki / f"{cert}.key")
            _, port = await b.t.listen("tls", "127.0.0.1", 0, ssl_context=server_ctx)
            server: Peer = ("tls", "127.0.0.1", port)
            a.t.send(sip(1, b"secret"), server)
            data, client = await b.message()
            assert data == sip(1, b"secret") and client[0] == "tls"
            b.t.send(sip(2), client)
            assert await a.message() == (sip(2), server)

    run(main())


def test_tls_self_signed_is_refused_by_default(run: Runner, pki: Path) -> None:
    async def main() -> None:
        async with Sink() as a, Sink() as b:  # default client context: verification on
            ctx = server_context(pki / "selfsigned.crt", pki / "selfsigned.key")
            _, port = await b.t.listen("tls", "127.0.0.1", 0, ssl_context=ctx)
            server: Peer = ("tls", "127.0.0.1", port)
            a.t.send(sip(1), server)
            peer, reason = await a.error()
            assert peer == server and "certificate" in reason.lower()
            assert b.messages.empty()

    run(main())


def test_tls_listener_needs_a_context(run: Runner) -> None:
    async def main() -> None:
        async with Sink() as a:
            with pytest.raises(ValueError, match="ssl_context"):
                await a.t.listen("tls", "127.0.0.1", 0)

    run(main())


def test_udp_still_reads_after_an_icmp_error(run: Runner) -> None:
    """uvloop (libuv) stops watching a socket whose epoll says EPOLLERR, as a queued ICMP
    error does: the endpoint must watch it again, or no answer is ever read."""
    async def main() -> None:
        async with Sink() as a, Sink() as b:
            _, port = await b.t.listen("udp", "127.0.0.1", 0)
            _, aport = await a.t.listen("udp", "127.0.0.1", 0)
            dead = closed_port()
            for round_ in range(3):
                a.t.send(sip(round_), ("udp", "127.0.0.1", dead))
                peer, reason = await a.error()
                assert peer == ("udp", "127.0.0.1", dead) and "refused" in reason.lower()
                await asyncio.sleep(0.05)
                b.t.send(sip(10 + round_), ("udp", "127.0.0.1", aport))
                assert await a.message() == (sip(10 + round_), ("udp", "127.0.0.1", port))

    run(main())
