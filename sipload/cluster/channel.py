"""The ZeroMQ layer, kept tiny: a ROUTER for the coordinator, a DEALER per worker.

The ROUTER's identity frame names the worker; every payload is one typed
message (:mod:`sipload.cluster.messages`).  Beyond loopback the coordinator
requires CurveZMQ: it authenticates workers by their public keys (a folder of
authorized ``*.key`` certificates, as ``sipload keys`` writes), and a worker
without an authorized key never gets through the handshake.  ZeroMQ errors are
wrapped in :class:`ChannelError`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import zmq
import zmq.asyncio
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator

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


class Router:
    """The coordinator's socket."""

    def __init__(self, url: str, keys: Keys | None = None) -> None:
        if not is_loopback_url(url) and keys is None:
            raise ChannelError(
                f"{url} is beyond loopback: CurveZMQ keys are required (sipload keys DIR)")
        self.ctx = zmq.asyncio.Context()
        self.auth: AsyncioAuthenticator | None = None
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        try:
            if keys is not None:
                self.auth = AsyncioAuthenticator(self.ctx)
                self.auth.start()
                self.auth.configure_curve(domain="*", location=str(keys.authorized))
                public, secret = zmq.auth.load_certificate(str(keys.server_secret))
                self.sock.curve_secretkey = secret
                self.sock.curve_publickey = public
                self.sock.curve_server = True
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

    def close(self) -> None:
        if self.auth is not None:
            self.auth.stop()
        self.sock.close(0)
        self.ctx.term()


class Dealer:
    """A worker's socket."""

    def __init__(self, url: str, keys_folder: Path | None = None) -> None:
        self.ctx = zmq.asyncio.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 2000)
        try:
            if keys_folder is not None:
                keys = Keys(keys_folder)
                public, secret = zmq.auth.load_certificate(str(keys.worker_secret))
                server_public, _ = zmq.auth.load_certificate(str(keys.server_public))
                self.sock.curve_secretkey = secret
                self.sock.curve_publickey = public
                self.sock.curve_serverkey = server_public
            self.sock.connect(url)
        except (zmq.ZMQError, OSError, ValueError) as e:
            self.close()
            raise ChannelError(f"cannot connect to {url}: {e}") from e

    async def recv(self, timeout: float | None = None) -> Message | None:
        while True:
            if timeout is not None and not await self.sock.poll(int(timeout * 1000)):
                return None
            data = await self.sock.recv()
            try:
                return decode(data)
            except ProtocolError:
                continue

    async def send(self, msg: Message) -> None:
        try:
            await self.sock.send(encode(msg))
        except zmq.ZMQError as e:
            raise ChannelError(str(e)) from e

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()
