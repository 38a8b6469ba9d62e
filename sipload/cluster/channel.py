"""The ZeroMQ layer, kept tiny: a ROUTER for the coordinator, a DEALER per worker.

The ROUTER's identity frame names the worker; every payload is one typed
message (:mod:`sipload.cluster.messages`).  Every worker is authenticated with
CurveZMQ, loopback included: the coordinator's socket is a CURVE server whose
authenticator admits only the public keys it knows, and a worker without one
never gets through the handshake (so it never sees the plan).  Local workers
get a fresh key pair each at spawn (:meth:`Router.local_auth`, handed over the
spawn pipe, never written anywhere); workers on other hosts use the key files
``sipload keys`` writes (a folder of authorized ``*.key`` certificates).
Without ``--keys`` the server key pair is made for the run too.

A worker's socket sends ZeroMQ heartbeats (answered by libzmq's I/O thread on
the coordinator, so a busy coordinator still answers them): a coordinator that
is killed, or unreachable for :data:`HEARTBEAT_TIMEOUT` seconds, is seen as a
lost connection, and :meth:`Dealer.recv` says so (:attr:`Dealer.lost`).
ZeroMQ errors are wrapped in :class:`ChannelError`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import zmq
import zmq.asyncio
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils.monitor import parse_monitor_message

from sipload.cluster.messages import Message, ProtocolError, decode, encode

HEARTBEAT_INTERVAL = 0.25
"""Seconds between a worker's ZeroMQ heartbeats to the coordinator."""

HEARTBEAT_TIMEOUT = 1.5
"""Seconds without an answer after which a worker's connection is lost."""


class ChannelError(Exception):
    """The control channel cannot be set up or used."""


@dataclass(frozen=True, slots=True)
class WorkerAuth:
    """A local worker's CurveZMQ credentials (Z85 text), made by the coordinator."""

    public: bytes
    secret: bytes
    server_public: bytes


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


class KeysExist(ChannelError):
    """``make_keys`` would overwrite a secret key (and was not told to)."""


def make_keys(folder: Path, *, force: bool = False) -> Keys:
    """Create a server key pair and a worker key pair, and authorize the worker.

    ``folder`` and ``folder/authorized`` are made (or set) 0700 and every secret
    key 0600, whatever the umask: files are created under a 077 umask, so no
    secret is readable by others even for a moment.

    Raises:
        KeysExist: a secret key is already there and ``force`` is false.
    """
    keys = Keys(folder)
    existing = [p for p in (keys.server_secret, keys.worker_secret) if p.exists()]
    if existing and not force:
        raise KeysExist(f"{existing[0]} exists: not overwriting a secret key "
                        "(--force replaces the key pairs)")
    previous = os.umask(0o077)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        keys.authorized.mkdir(exist_ok=True)
        for d in (folder, keys.authorized):
            d.chmod(0o700)
        zmq.auth.create_certificates(str(folder), "server")
        zmq.auth.create_certificates(str(folder), "worker")
        (keys.authorized / "worker.key").write_bytes((folder / "worker.key").read_bytes())
    finally:
        os.umask(previous)
    for f in folder.glob("*.key_secret"):
        f.chmod(0o600)
    for f in [*folder.glob("*.key"), *keys.authorized.glob("*.key")]:
        f.chmod(0o644)
    return keys


def is_loopback_url(url: str) -> bool:
    """True for ``tcp://127.x.x.x:port``, ``tcp://[::1]:port``, ``tcp://localhost:port``
    and ``ipc://`` / ``inproc://`` endpoints."""
    parsed = urlparse(url)
    if parsed.scheme in ("ipc", "inproc"):
        return True
    return is_loopback_host(parsed.hostname or "")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and any loopback address (127.0.0.0/8, ``::1``)."""
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


class _Gate(AsyncioAuthenticator):  # type: ignore[misc,unused-ignore]  # Any without zmq
    """The ZAP handler: authorized keys from a folder; remembers each refusal
    (the peer's address and public key) for the coordinator to log."""

    def __init__(self, ctx: zmq.asyncio.Context, location: Path | None) -> None:
        super().__init__(ctx)
        self.keys = set(zmq.auth.load_certificates(str(location))) if location else set()
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
    """The coordinator's socket: a CurveZMQ server, always (see the module docstring).

    Args:
        url: where to bind (``tcp://HOST:0`` picks a port).
        keys: the key folder of ``sipload keys`` (server key pair, authorized
            workers); needed beyond loopback.  Without it the server key pair is
            made for this run and only local workers (:meth:`local_auth`) get in.
    """

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
            self.auth = _Gate(self.ctx, keys.authorized if keys is not None else None)
            self.auth.start()
            self.auth.configure_curve_callback(domain="*", credentials_provider=self.auth)
            if keys is not None:
                public, secret = zmq.auth.load_certificate(str(keys.server_secret))
                assert secret is not None, "a server key file without its secret"
            else:
                public, secret = zmq.curve_keypair()
            self.server_public = public
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

    def local_auth(self) -> WorkerAuth:
        """A fresh key pair for one local worker, authorized from now on."""
        assert self.auth is not None
        public, secret = zmq.curve_keypair()
        self.auth.keys.add(public)
        return WorkerAuth(public, secret, self.server_public)

    async def recv(self) -> tuple[bytes, Message]:
        """The next well-formed message; malformed ones are skipped and counted."""
        while True:
            frames = await self.sock.recv_multipart()
            if len(frames) != 2:
                self.malformed += 1
                continue
            try:
                return frames[0], decode(frames[1])
            except ProtocolError:
                self.malformed += 1
                continue

    malformed = 0  #: messages that did not decode (counted, dropped)

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

    :meth:`recv` also watches the connection: a refusal by the coordinator's
    authenticator, or ``HANDSHAKE_TRIES`` failed handshakes (the coordinator does
    not have this server key), end the wait at once with :attr:`refused` saying
    why, instead of waiting out the timeout; a connection lost after the
    handshake (the coordinator was killed, or stopped answering heartbeats) ends
    it with :attr:`lost` saying so.

    Args:
        url: the coordinator's control address.
        keys_folder: key files from ``sipload keys`` (a worker on another host).
        auth: the key pair a coordinator gave its local worker at spawn.
    """

    HANDSHAKE_TRIES = 3

    def __init__(self, url: str, keys_folder: Path | None = None,
                 auth: WorkerAuth | None = None) -> None:
        self.ctx = zmq.asyncio.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 2000)
        self.sock.setsockopt(zmq.HEARTBEAT_IVL, int(HEARTBEAT_INTERVAL * 1000))
        self.sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(HEARTBEAT_TIMEOUT * 1000))
        self.monitor: zmq.asyncio.Socket | None = None
        self.refused = ""
        self.lost = ""
        self._connected = False
        self._failures = 0
        try:
            if keys_folder is not None:
                keys = Keys(keys_folder)
                public, secret = zmq.auth.load_certificate(str(keys.worker_secret))
                server_public, _ = zmq.auth.load_certificate(str(keys.server_public))
                assert secret is not None
            elif auth is not None:
                public, secret, server_public = auth.public, auth.secret, auth.server_public
            if keys_folder is not None or auth is not None:
                self.sock.curve_secretkey = secret
                self.sock.curve_publickey = public
                self.sock.curve_serverkey = server_public
            self.monitor = self.sock.get_monitor_socket(
                _HANDSHAKE_FAILED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
            self.sock.connect(url)
        except (zmq.ZMQError, OSError, ValueError) as e:
            self.close()
            raise ChannelError(f"cannot connect to {url}: {e}") from e

    async def _watch(self) -> bool:
        """Read the monitor; True once refused or lost."""
        while self.monitor is not None and await self.monitor.poll(0):
            ev = parse_monitor_message(await self.monitor.recv_multipart())
            event = int(ev["event"])
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connected = True
                self._failures = 0
            elif event == zmq.EVENT_DISCONNECTED:
                if self._connected:
                    self.lost = "the connection to the coordinator was lost"
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self._failures += 1
                self.refused = (f"the coordinator refused this worker's CurveZMQ key (ZAP "
                                f"{ev['value']}): its authorized/ folder lacks worker.key")
            else:
                self._failures += 1
                if self._failures >= self.HANDSHAKE_TRIES:
                    self.refused = (f"the CurveZMQ handshake failed {self._failures} times: "
                                    "is server.key the coordinator's, and does this worker "
                                    "use --keys?")
        return bool(self.refused or self.lost)

    async def recv(self, timeout: float | None = None) -> Message | None:
        """The next message; None after ``timeout`` s, or once refused or lost."""
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        while True:
            left = 0.1 if end is None else min(0.1, max(0.0, end - loop.time()))
            if await self._watch():
                return None
            if not await self.sock.poll(int(left * 1000)):
                if end is not None and loop.time() >= end:
                    return None
                continue
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
        if self.monitor is not None:
            self.sock.disable_monitor()
            self.monitor.close(0)
            self.monitor = None
        if self.refused or self.lost:
            self.sock.setsockopt(zmq.LINGER, 0)  # nothing will ever be delivered
        self.sock.close()
        self.ctx.term()
