"""SIP over WebSocket (RFC 7118): the transport on real sockets, hostile peers, whole runs.

Transport tests pair two TransportSets on 127.0.0.1, or one TransportSet and a raw
peer written here with the ``websockets`` sans-I/O protocol over a plain socket (so
it can misbehave: no ``sip`` subprotocol, non-SIP text, huge frames, no pongs).
Whole runs use the CLI: ``sipload run --target ws://...`` against ``sipload uas
--listen ws://...`` (and wss), and against Kamailio's websocket module relaying to a
UDP UAS (``ci/kamailio/websocket.cfg``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from sipload.stats.rundir import read_calls
from sipload.transport import Peer, StreamLimits
from sipload.transport.tls import client_context, server_context
from sipload.transport.websocket import WsTransport, looks_like_sip
from tests.bgproc import Background, run, sipload
from tests.certs import make_pki
from tests.peers import free_port, kamailio_websocket
from tests.test_transport import Sink as StreamSink

WAIT = 3.0
REPO = Path(__file__).resolve().parent.parent
BASIC = REPO / "scenarios" / "basic_call.yaml"


def sip(n: int = 1, body: bytes = b"") -> bytes:
    return (f"OPTIONS sip:test@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/WS 127.0.0.1:5060;branch=z9hG4bK{n}\r\n"
            f"Call-ID: {n}@test\r\nCSeq: {n} OPTIONS\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def go(coro: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(10):
            await coro

    asyncio.run(bounded())


class Sink(StreamSink):
    """tests/test_transport.py's TransportSet (``.t``) and what it reports, and its
    WebSocket transport (``ws()``)."""

    def ws(self, kind: str = "ws") -> WsTransport:
        st = self.t._streams[kind]
        assert isinstance(st, WsTransport)
        return st


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def closing(handler: Handler) -> Handler:
    """``handler`` for asyncio.start_server, its connection closed when it returns."""
    async def run_it(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except OSError:
            pass
        finally:
            writer.close()

    return run_it


def sip_ws_server(on_frame: Callable[[ServerProtocol, Frame], None], *, mute: bool = False,
                  seen: asyncio.Queue[bytes] | None = None) -> Handler:
    """A peer for ``asyncio.start_server``: accepts the upgrade with the ``sip``
    subprotocol and gives each frame then received to ``on_frame``, which may queue an
    answer on the protocol; ``mute``: after the 101 it sends nothing (no pong either);
    ``seen``: each read is put there too.  Its connection is closed when the peer's
    is."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        proto = ServerProtocol(subprotocols=[Subprotocol("sip")])
        while data := await reader.read(65536):
            if seen is not None:
                await seen.put(data)
            proto.receive_data(data)
            for ev in proto.events_received():
                if not isinstance(ev, Frame):
                    proto.send_response(proto.accept(ev))
                    for chunk in proto.data_to_send():
                        writer.write(chunk)
                else:
                    on_frame(proto, ev)
            out = proto.data_to_send()
            if not mute:
                for chunk in out:
                    writer.write(chunk)

    return closing(handle)


class RawClient:
    """A WebSocket client over a plain socket that sends whatever the test says."""

    def __init__(self, port: int, subprotocols: list[str] | None = None,
                 max_size: int | None = None) -> None:
        offered = [Subprotocol(s) for s in subprotocols] if subprotocols else None
        self.proto = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/"),
                                    subprotocols=offered, max_size=max_size)
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.response: Response | None = None

    async def connect(self) -> Response:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.proto.send_request(self.proto.connect())
        await self.flush()
        while self.response is None:
            events = await self.read()
            for ev in events:
                if isinstance(ev, Response):
                    self.response = ev
            if self.proto.handshake_exc is not None and self.response is None:
                raise AssertionError(f"handshake: {self.proto.handshake_exc}")
        return self.response

    async def flush(self) -> None:
        assert self.writer is not None
        for chunk in self.proto.data_to_send():
            if chunk:
                self.writer.write(chunk)
        await self.writer.drain()

    async def read(self) -> list[Any]:
        assert self.reader is not None
        async with asyncio.timeout(WAIT):
            data = await self.reader.read(65536)
        if data:
            self.proto.receive_data(data)
        else:
            self.proto.receive_eof()
        return list(self.proto.events_received())

    async def frames_until_close(self) -> list[Frame]:
        out: list[Frame] = []
        while True:
            events = await self.read()
            out.extend(e for e in events if isinstance(e, Frame))
            if any(f.opcode is Opcode.CLOSE for f in out) or self.proto.close_expected():
                return out

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass


# ================================================================ both ways


def test_ws_both_ways_one_message_per_frame() -> None:
    async def main() -> None:
        async with Sink() as a, Sink() as b:
            _, port = await b.t.listen("ws", "127.0.0.1", 0)
            server: Peer = ("ws", "127.0.0.1", port)
            a.t.send(sip(1, b"x" * 100), server)
            a.t.send(sip(2), server)
            data, client = await b.message()
            assert data == sip(1, b"x" * 100) and client[0] == "ws"
            assert (await b.message())[0] == sip(2)
            b.t.send(sip(3), client)  # back on the connection the request came on
            assert await a.message() == (sip(3), server)
            assert len(b.ws()._conns) == 1 and len(a.ws()._conns) == 1

    go(main())


def test_wss_both_ways(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)

    async def main() -> None:
        async with Sink(tls_client_context=client_context(cafile=pki / "ca.crt")) as a, \
                Sink() as b:
            ctx = server_context(pki / "server.crt", pki / "server.key")
            _, port = await b.t.listen("wss", "127.0.0.1", 0, ssl_context=ctx)
            server: Peer = ("wss", "127.0.0.1", port)
            a.t.send(sip(1), server)
            data, client = await b.message()
            assert data == sip(1) and client[0] == "wss"
            b.t.send(sip(2), client)
            assert await a.message() == (sip(2), server)

    go(main())


def test_wss_self_signed_refused_by_default(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)

    async def main() -> None:
        async with Sink() as a, Sink() as b:
            ctx = server_context(pki / "selfsigned.crt", pki / "selfsigned.key")
            _, port = await b.t.listen("wss", "127.0.0.1", 0, ssl_context=ctx)
            a.t.send(sip(1), ("wss", "127.0.0.1", port))
            peer, reason = await a.error()
            assert peer == ("wss", "127.0.0.1", port) and "certificate" in reason.lower()

    go(main())


def test_the_upgrade_asks_for_sip_and_a_path() -> None:
    """What goes on the wire: GET PATH with Sec-WebSocket-Protocol: sip, text frames."""
    async def main() -> None:
        seen: asyncio.Queue[bytes] = asyncio.Queue()

        def echo(proto: ServerProtocol, frame: Frame) -> None:
            if frame.opcode is Opcode.TEXT:
                proto.send_text(bytes(frame.data))

        server = await asyncio.start_server(sip_ws_server(echo, seen=seen), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with Sink(ws_path="/sip/ws") as a:
            a.t.send(sip(7), ("ws", "127.0.0.1", port))
            upgrade = await asyncio.wait_for(seen.get(), WAIT)
            assert upgrade.startswith(b"GET /sip/ws HTTP/1.1\r\n")
            assert b"\r\nSec-WebSocket-Protocol: sip\r\n" in upgrade
            assert await a.message() == (sip(7), ("ws", "127.0.0.1", port))
        server.close()
        await server.wait_closed()

    go(main())


# ================================================================ hostile peers


def test_upgrade_without_sip_subprotocol_is_refused() -> None:
    async def main() -> None:
        async with Sink() as b:
            _, port = await b.t.listen("ws", "127.0.0.1", 0)
            for offered in ([], ["chat"]):
                raw = RawClient(port, offered)
                raw.reader, raw.writer = await asyncio.open_connection("127.0.0.1", port)
                raw.proto.send_request(raw.proto.connect())
                await raw.flush()
                async with asyncio.timeout(WAIT):
                    answer = await raw.reader.read()  # the server closes after answering
                assert answer.startswith(b"HTTP/1.1 400 "), answer
                assert b"'sip' WebSocket subprotocol is required" in answer
                await raw.close()
            ws = b.ws()
            assert ws.refused_upgrade == 2
            assert "refused with 400" in ws.last_refusal and "sip" in ws.last_refusal
            assert b.messages.empty()

    go(main())


def test_a_server_that_does_not_choose_sip_fails_the_connection() -> None:
    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            proto = ServerProtocol()  # no subprotocols: it answers 101 without one
            data = await reader.read(65536)
            proto.receive_data(data)
            for ev in proto.events_received():
                proto.send_response(proto.accept(ev))
            for chunk in proto.data_to_send():
                writer.write(chunk)
            await reader.read()

        server = await asyncio.start_server(closing(handle), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with Sink() as a:
            a.t.send(sip(1), ("ws", "127.0.0.1", port))
            peer, reason = await a.error()
            assert peer == ("ws", "127.0.0.1", port)
            assert "did not agree to the 'sip' subprotocol" in reason
        server.close()
        await server.wait_closed()

    go(main())


@pytest.mark.parametrize("payload", [b"hello, not SIP", b"GET / HTTP/1.1\r\n\r\n"])
def test_a_message_that_is_not_sip_closes_with_1003(payload: bytes) -> None:
    async def main() -> None:
        async with Sink() as b:
            _, port = await b.t.listen("ws", "127.0.0.1", 0)
            raw = RawClient(port, ["sip"])
            await raw.connect()
            raw.proto.send_text(sip(1))
            raw.proto.send_text(b"\r\n\r\n")  # a keep-alive: dropped
            raw.proto.send_text(payload)
            await raw.flush()
            assert (await b.message())[0] == sip(1)
            frames = await raw.frames_until_close()
            close = [f for f in frames if f.opcode is Opcode.CLOSE]
            assert close and close[0].data[:2] == (1003).to_bytes(2, "big")
            peer, reason = await b.error()
            assert peer[0] == "ws" and "not SIP" in reason and "1003" in reason
            assert b.messages.empty()
            await raw.close()

    go(main())


def test_a_message_over_the_size_limit_closes_with_1009() -> None:
    async def main() -> None:
        async with Sink(stream_limits=StreamLimits(max_message=2000)) as b:
            _, port = await b.t.listen("ws", "127.0.0.1", 0)
            raw = RawClient(port, ["sip"])
            await raw.connect()
            raw.proto.send_text(sip(1, b"y" * 1000))
            raw.proto.send_text(sip(2, b"z" * 5000))
            await raw.flush()
            assert (await b.message())[0] == sip(1, b"y" * 1000)
            frames = await raw.frames_until_close()
            close = [f for f in frames if f.opcode is Opcode.CLOSE]
            assert close and close[0].data[:2] == (1009).to_bytes(2, "big")
            _, reason = await b.error()
            assert "over the size limit" in reason and "limit of 2000 bytes" in reason
            assert b.ws().refused_oversize == 1 and b.messages.empty()
            await raw.close()

    go(main())


def test_pings_are_sent_and_a_silent_peer_is_dropped() -> None:
    async def main() -> None:
        got_ping = asyncio.Event()

        def on_ping(proto: ServerProtocol, frame: Frame) -> None:
            if frame.opcode is Opcode.PING:
                got_ping.set()  # ... and never answered (mute)

        server = await asyncio.start_server(sip_ws_server(on_ping, mute=True), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with Sink(ws_ping=0.2) as a:
            a.t.send(sip(1), ("ws", "127.0.0.1", port))
            await asyncio.wait_for(got_ping.wait(), WAIT)
            peer, reason = await a.error()
            assert peer == ("ws", "127.0.0.1", port) and "no pong" in reason
        server.close()
        await server.wait_closed()

    go(main())


def test_pings_answered_keep_the_connection() -> None:
    async def main() -> None:
        async with Sink(ws_ping=0.1) as a, Sink(ws_ping=0) as b:
            _, port = await b.t.listen("ws", "127.0.0.1", 0)
            a.t.send(sip(1), ("ws", "127.0.0.1", port))
            await b.message()
            await asyncio.sleep(0.6)  # several ping intervals of silence
            assert a.errors.empty()
            a.t.send(sip(2), ("ws", "127.0.0.1", port))
            assert (await b.message())[0] == sip(2)
            assert len(b.ws()._live) == 1  # still the first connection

    go(main())


def test_close_codes_clean_and_not() -> None:
    async def main() -> None:
        async with Sink() as b:
            _, port = await b.t.listen("ws", "127.0.0.1", 0)
            for code, reported in ((1000, False), (1011, True)):
                raw = RawClient(port, ["sip"])
                await raw.connect()
                raw.proto.send_text(sip(1))
                await raw.flush()
                await b.message()
                raw.proto.send_close(code, "bye" if code == 1000 else "it broke")
                await raw.flush()
                await raw.frames_until_close()
                await raw.close()
                if reported:
                    _, reason = await b.error()
                    assert "1011" in reason and "it broke" in reason
                else:
                    await asyncio.sleep(0.2)
                    assert b.errors.empty()

    go(main())


def test_looks_like_sip() -> None:
    assert looks_like_sip(b"INVITE sip:a@b SIP/2.0\r\n")
    assert looks_like_sip(b"SIP/2.0 200 OK\r\n")
    assert looks_like_sip(b"\r\nPRIVATECOMMAND sip:a@b SIP/2.0\r\n")
    assert not looks_like_sip(b"hello")
    assert not looks_like_sip(b"GET / HTTP/1.1\r\n")
    assert not looks_like_sip(b"SIP/2.0 OK\r\n")


# ================================================================ whole runs


def _summary(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return data


def _details(out: Path) -> list[str]:
    """Each call's failure detail (calls.arrows): one entry per call recorded."""
    return [str(d) for d in read_calls(out).column("detail").to_pylist()]


def _calls(s: dict[str, Any]) -> tuple[int, int]:
    c = s["calls"]
    return int(c["succeeded"]), int(c["failed"])


def test_run_over_ws_against_sipload_uas(tmp_path: Path) -> None:
    port = free_port("tcp")
    with Background(sipload("uas", "--listen", f"ws://127.0.0.1:{port}/"),
                    ready="listening on", ready_timeout=30) as uas:
        out = tmp_path / "run"
        done = run(sipload("run", BASIC, "--target", f"ws://127.0.0.1:{port}/sip", "--calls",
                           "20", "--rate", "20", "--workers", "1", "--trace", "all",
                           "--out", out, "--quiet"), timeout=90)
        assert done.returncode == 0, done.stderr
        uas.stop()
        assert "20 calls answered, 20 ended by BYE" in uas.output
    assert _calls(_summary(out)) == (20, 0)
    text = run(sipload("trace", out), timeout=60).stdout
    assert "Via: SIP/2.0/WS 127.0.0.1:" in text and ";transport=ws>" in text


def test_scenario_transport_ws(tmp_path: Path) -> None:
    scenario = tmp_path / "ws_call.yaml"
    scenario.write_text(BASIC.read_text().replace("role: uac\n", "role: uac\ntransport: ws\n")
                        .replace("counterpart: basic_call_uas.yaml\n", ""))
    port = free_port("tcp")
    with Background(sipload("uas", "--listen", f"ws://127.0.0.1:{port}/"),
                    ready="listening on", ready_timeout=30):
        out = tmp_path / "run"
        done = run(sipload("run", scenario, "--target", f"127.0.0.1:{port}", "--calls", "5",
                           "--rate", "10", "--workers", "1", "--out", out, "--quiet"),
                   timeout=90)
        assert done.returncode == 0, done.stderr
    assert _calls(_summary(out)) == (5, 0)
    assert json.loads((out / "plan.json").read_text())["transport"] == "ws"


@pytest.mark.parametrize("transport", ["ws", "wss"])
def test_without_target_the_embedded_uas_speaks_websocket(tmp_path: Path,
                                                          transport: str) -> None:
    out = tmp_path / "run"
    done = run(sipload("run", BASIC, "--transport", transport, "--calls", "5", "--rate", "10",
                       "--workers", "1", "--trace", "all", "--out", out, "--quiet"), timeout=90)
    assert done.returncode == 0, done.stderr
    assert _calls(_summary(out)) == (5, 0)
    text = run(sipload("trace", out), timeout=60).stdout
    assert f"Via: SIP/2.0/{transport.upper()} 127.0.0.1:" in text


def test_run_over_wss_against_sipload_uas(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    port = free_port("tcp")
    with Background(sipload("uas", "--listen", f"wss://127.0.0.1:{port}/", "--cert",
                            pki / "selfsigned.crt", "--key", pki / "selfsigned.key"),
                    ready="listening on", ready_timeout=30):
        out = tmp_path / "run"
        done = run(sipload("run", BASIC, "--target", f"wss://127.0.0.1:{port}/", "--calls",
                           "10", "--rate", "20", "--workers", "1", "--tls-insecure",
                           "--trace", "all", "--out", out, "--quiet"), timeout=90)
        assert done.returncode == 0, done.stderr
        text = run(sipload("trace", out), timeout=60).stdout
        assert "Via: SIP/2.0/WSS 127.0.0.1:" in text and ";transport=ws>" in text
        # verification is on by default: the self-signed server is refused, every call
        # recorded with the reason
        out2 = tmp_path / "run2"
        done = run(sipload("run", BASIC, "--target", f"wss://127.0.0.1:{port}/", "--calls",
                           "3", "--rate", "10", "--workers", "1", "--out", out2, "--quiet"),
                   timeout=90)
        assert done.returncode != 0
    assert _calls(_summary(out)) == (10, 0)
    s2 = _summary(out2)
    assert _calls(s2) == (0, 3)
    details = _details(out2)
    assert len(details) == 3 and all("certificate" in d.lower() for d in details), details


def test_run_against_a_peer_that_sends_garbage_records_every_call(tmp_path: Path) -> None:
    """A WS server that answers every SIP message with text that is not SIP."""
    def garbage(proto: ServerProtocol, frame: Frame) -> None:
        if frame.opcode is Opcode.TEXT:
            proto.send_text(b"hello from not-a-SIP-server")

    async def main() -> None:
        server = await asyncio.start_server(sip_ws_server(garbage), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        out = tmp_path / "run"
        proc = await asyncio.create_subprocess_exec(
            *map(str, sipload("run", BASIC, "--target", f"ws://127.0.0.1:{port}/", "--calls",
                              "4", "--rate", "10", "--workers", "1", "--out", out, "--quiet")),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        async with asyncio.timeout(80):
            await proc.wait()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    s = _summary(tmp_path / "run")
    assert _calls(s) == (0, 4)
    details = _details(tmp_path / "run")
    assert len(details) == 4 and all("not SIP" in d for d in details), details


def test_flags_name_themselves(tmp_path: Path) -> None:
    for target, words in (("ws://", "--target"), ("http://x:1/", "unknown scheme"),
                          ("ws://127.0.0.1:99999/", "bad port")):
        done = run(sipload("run", BASIC, "--target", target, "--calls", "1",
                           "--out", tmp_path / "x"), timeout=60)
        assert done.returncode == 2 and words in done.stderr, done.stderr
    done = run(sipload("run", BASIC, "--target", "ws://127.0.0.1:5/", "--transport", "udp",
                       "--calls", "1", "--out", tmp_path / "y"), timeout=60)
    assert done.returncode == 2 and "--transport udp contradicts" in done.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    done = run(sipload("uas", "--listen", "wss://127.0.0.1:5/"), timeout=60)
    assert done.returncode == 2 and "needs --cert" in done.stderr


def test_kamailio_websocket_relays_to_a_udp_uas(tmp_path: Path) -> None:
    """sipload over WS → Kamailio's websocket module → sipload UAS over UDP, and back."""
    uas_port = free_port("udp")
    with Background(sipload("uas", "--listen", f"127.0.0.1:{uas_port}"),
                    ready="listening on", ready_timeout=30) as uas, \
            kamailio_websocket(uas_port) as kam:
        out = tmp_path / "run"
        done = run(sipload("run", BASIC, "--target", f"ws://127.0.0.1:{kam.ws_port}/",
                           "--calls", "20", "--rate", "20", "--workers", "1", "--trace", "all",
                           "--out", out, "--quiet"), timeout=90)
        assert done.returncode == 0, done.stderr + kam.log[-3000:]
        uas.stop()
        assert "20 calls answered, 20 ended by BYE" in uas.output
    assert _calls(_summary(out)) == (20, 0)
    text = run(sipload("trace", out), timeout=60).stdout
    assert f"127.0.0.1:{kam.ws_port};transport=ws;r2=on;lr" in text  # Kamailio's WS side
    assert "received=127.0.0.1" in text


def test_kamailio_websocket_callee_hangs_up(tmp_path: Path) -> None:
    """The UAS's BYE reaches the WS caller down its own connection (Contact alias)."""
    uac = tmp_path / "hangup.yaml"
    uac.write_text("name: callee-hangs-up\nrole: uac\nsteps:\n  - send: INVITE\n"
                   "    body: {sdp: offer}\n  - recv: 100\n    optional: true\n"
                   "  - recv: 180\n    optional: true\n  - recv: 200\n  - send: ACK\n"
                   "  - recv: BYE\n  - reply: 200\n")
    uas_file = tmp_path / "hangup_uas.yaml"
    uas_file.write_text("name: hangs-up\nrole: uas\nsteps:\n  - recv: INVITE\n"
                        "  - reply: 200\n    body: {sdp: answer}\n  - recv: ACK\n"
                        "  - pause: 50ms\n  - send: BYE\n  - recv: 200\n")
    uas_port = free_port("udp")
    with Background(sipload("uas", uas_file, "--listen", f"127.0.0.1:{uas_port}"),
                    ready="listening on", ready_timeout=30), \
            kamailio_websocket(uas_port) as kam:
        out = tmp_path / "run"
        done = run(sipload("run", uac, "--target", f"ws://127.0.0.1:{kam.ws_port}/",
                           "--calls", "5", "--rate", "10", "--workers", "1", "--out", out,
                           "--quiet"), timeout=90)
        assert done.returncode == 0, done.stderr + kam.log[-3000:]
    assert _calls(_summary(out)) == (5, 0)
