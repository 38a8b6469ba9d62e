"""The ZeroMQ layer, kept tiny: a ROUTER for the coordinator, a DEALER per worker.

The ROUTER's identity frame names the worker; every payload is one typed
message (:mod:`sipload.cluster.messages`).  Beyond loopback the coordinator
requires CurveZMQ: it authenticates workers by their public keys (a folder of
authorized ``*.key`` certificates, as ``sipload keys`` writes), and a worker
without an authorized key never gets through the handshake.  ZeroMQ errors are
wrapped in :class:`ChannelError`.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import zmq
import zmq.asyncio
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils.monitor import parse_monitor_message

from sipload.cluster.messages import Message, ProtocolError, decode, encode


class ChannelError(Exception):
    """The control channel cannot be set up or used."""


@dataclass(frozen=True, slots=True)
class Keys:
    """CurveZMQ key files (see :func:`make_keys`)."""

    folder: Path

    @property
    def server_secret(self) -> Path:
        return self.folder / "server.key_secret"

    @property
    def server_public(self) -> Path:
        return self.folder / "server.key"

    @property
    def worker_secret(self) -> Path:
        return self.folder / "worker.key_secret"

    @property
    def authorized(self) -> Path:
        return self.folder / "authorized"


def make_keys(folder: Path) -> Keys:
    """Create a server key pair and a worker key pair, and authorize the worker."""
    folder.mkdir(parents=True, exist_ok=True)
    zmq.auth.create_certificates(str(folder), "server")
    zmq.auth.create_certificates(str(folder), "worker")
    auth = folder / "authorized"
    auth.mkdir(exist_ok=True)
    (auth / "worker.key").write_bytes((folder / "worker.key").read_bytes())
    for f in folder.glob("*.key_secret"):
        f.chmod(0o600)
    return Keys(folder)


def is_loopback_url(url: str) -> bool:
    """True for ``tcp://127.x.x.x:port``, ``tcp://[::1]:port``, ``tcp://localhost:port``
    and ``ipc://`` / ``inproc://`` endpoints."""
    parsed = urlparse(url)
    if parsed.scheme in ("ipc", "inproc"):
        return True
    host = parsed.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


def _why(event: int) -> str:
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return "CurveZMQ handshake failed: the peer has another server key or no CurveZMQ"
    return "CurveZMQ handshake failed"


class _Gate(AsyncioAuthenticator):
    """The ZAP handler: authorized keys from a folder; remembers each refusal
    (the peer's address and public key) for the coordinator to log."""

    def __init__(self, ctx: zmq.asyncio.Context, location: Path) -> None:
        super().__init__(ctx)
        self.keys = set(zmq.auth.load_certificates(str(location)))
        self.refused: list[dict[str, str]] = []
        self._address = ""

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self._address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else ""
        await super().handle_zap_message(msg)

    def callback(self, domain: str, key: bytes) -> bool:  # the credentials provider
        if key in self.keys:
            return True
        self.refused.append({"host": self._address, "key": key.decode("ascii", "replace"),
                             "reason": "CurveZMQ key not authorized"})
        return False


class Router:
    """The coordinator's socket."""

    def __init__(self, url: str, keys: Keys | None = None) -> None:
        if not is_loopback_url(url) and keys is None:
            raise ChannelError(
                f"{url} is beyond loopback: CurveZMQ keys are required (sipload keys DIR)")
        self.ctx = zmq.asyncio.Context()
        self.auth: _Gate | None = None
        self.monitor: zmq.asyncio.Socket | None = None
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        try:
            if keys is not None:
                self.auth = _Gate(self.ctx, keys.authorized)
                self.auth.start()
                self.auth.configure_curve_callback(domain="*", credentials_provider=self.auth)
                public, secret = zmq.auth.load_certificate(str(keys.server_secret))
                self.sock.curve_secretkey = secret
                self.sock.curve_publickey = public
                self.sock.curve_server = True
                self.monitor = self.sock.get_monitor_socket(_HANDSHAKE_FAILED)
            if url.endswith(":0"):
                port = self.sock.bind_to_random_port(url[: url.rindex(":")])
                self.url = f"{url[: url.rindex(':')]}:{port}"
            else:
                self.sock.bind(url)
                self.url = url
        except (zmq.ZMQError, OSError, ValueError) as e:
            self.close()
            raise ChannelError(f"cannot bind {url}: {e}") from e

    async def recv(self) -> tuple[bytes, Message]:
        """The next well-formed message; malformed ones are skipped."""
        while True:
            frames = await self.sock.recv_multipart()
            if len(frames) != 2:
                continue
            try:
                return frames[0], decode(frames[1])
            except ProtocolError:
                continue

    async def poll(self, timeout_ms: int) -> bool:
        return bool(await self.sock.poll(timeout_ms))

    async def send(self, identity: bytes, msg: Message) -> None:
        try:
            await self.sock.send_multipart([identity, encode(msg)])
        except zmq.ZMQError as e:
            raise ChannelError(str(e)) from e

    async def refusals(self) -> list[dict[str, str]]:
        """Peers refused since the last call: ZAP denials (with the peer's address
        and key), and failed handshakes ZAP never saw (a wrong server key)."""
        out: list[dict[str, str]] = []
        if self.auth is not None:
            out.extend(self.auth.refused)
            self.auth.refused.clear()
        while self.monitor is not None and await self.monitor.poll(0):
            ev = parse_monitor_message(await self.monitor.recv_multipart())
            if ev["event"] != zmq.EVENT_HANDSHAKE_FAILED_AUTH:  # ZAP denials are above
                out.append({"host": "", "key": "",
                            "reason": _why(int(ev["event"]))})
        return out

    def close(self) -> None:
        if self.auth is not None:
            self.auth.stop()
        if self.monitor is not None:
            self.sock.disable_monitor()
            self.monitor.close(0)
        self.sock.close(0)
        self.ctx.term()


class Dealer:
    """A worker's socket.

    With CurveZMQ, :meth:`recv` also watches the handshake: a refusal by the
    coordinator's authenticator, or ``HANDSHAKE_TRIES`` failed handshakes (the
    coordinator does not have this server key), end the wait at once with
    :attr:`refused` saying why, instead of waiting out the timeout."""

    HANDSHAKE_TRIES = 3

    def __init__(self, url: str, keys_folder: Path | None = None) -> None:
        self.ctx = zmq.asyncio.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 2000)
        self.monitor: zmq.asyncio.Socket | None = None
        self.refused = ""
        self._failures = 0
        try:
            if keys_folder is not None:
                keys = Keys(keys_folder)
                public, secret = zmq.auth.load_certificate(str(keys.worker_secret))
                server_public, _ = zmq.auth.load_certificate(str(keys.server_public))
                self.sock.curve_secretkey = secret
                self.sock.curve_publickey = public
                self.sock.curve_serverkey = server_public
                self.monitor = self.sock.get_monitor_socket(_HANDSHAKE_FAILED)
            self.sock.connect(url)
        except (zmq.ZMQError, OSError, ValueError) as e:
            self.close()
            raise ChannelError(f"cannot connect to {url}: {e}") from e

    async def _refused(self) -> bool:
        while self.monitor is not None and await self.monitor.poll(0):
            ev = parse_monitor_message(await self.monitor.recv_multipart())
            self._failures += 1
            if ev["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.refused = (f"the coordinator refused this worker's CurveZMQ key (ZAP "
                                f"{ev['value']}): its authorized/ folder lacks worker.key")
            elif self._failures >= self.HANDSHAKE_TRIES:
                self.refused = (f"the CurveZMQ handshake failed {self._failures} times: is "
                                "server.key the coordinator's, and does it use --keys?")
        return bool(self.refused)

    async def recv(self, timeout: float | None = None) -> Message | None:
        """The next message; None after ``timeout`` s or once refused (see above)."""
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        while True:
            if self.monitor is not None:
                left = 0.1 if end is None else min(0.1, max(0.0, end - loop.time()))
                if await self._refused():
                    return None
                if not await self.sock.poll(int(left * 1000)):
                    if end is not None and loop.time() >= end:
                        return None
                    continue
            elif timeout is not None and not await self.sock.poll(int(timeout * 1000)):
                return None
            data = await self.sock.recv()
            try:
                msg = decode(data)
            except ProtocolError:
                continue
            self._stop_monitor()  # through the handshake: nothing more to watch
            return msg

    def _stop_monitor(self) -> None:
        if self.monitor is not None:
            self.sock.disable_monitor()
            self.monitor.close(0)
            self.monitor = None

    async def send(self, msg: Message) -> None:
        try:
            await self.sock.send(encode(msg))
        except zmq.ZMQError as e:
            raise ChannelError(str(e)) from e

    def close(self) -> None:
        self._stop_monitor()
        if self.refused:
            self.sock.setsockopt(zmq.LINGER, 0)  # nothing will ever be delivered
        self.sock.close()
        self.ctx.term()
