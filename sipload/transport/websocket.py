"""SIP over WebSocket (RFC 7118): ``ws`` and ``wss`` connections, client and server.

The WebSocket protocol itself (the HTTP upgrade, framing, masking, ping/pong,
the closing handshake, UTF-8 checks, size limits) is the ``websockets``
library's sans-I/O state machine (:class:`websockets.server.ServerProtocol`,
:class:`websockets.client.ClientProtocol`); this module only feeds it the bytes
of an asyncio connection and moves whole SIP messages in and out, so the
receive stamp is read when the bytes leave the socket, as for TCP.

Theory of operation
===================

1. A :class:`WsTransport` is a :class:`~sipload.transport.stream.StreamTransport`
   of kind ``"ws"`` or ``"wss"`` (over TLS) whose connections are
   :class:`WsConnection`: the same connection table (a response goes back on
   the connection its request came on, requests to one remote share one
   connection), the same limits and idle sweep, the same error reporting.
2. Upgrade.  A connection we open sends ``GET PATH`` with
   ``Sec-WebSocket-Protocol: sip`` (RFC 7118 §4.1); an answer that is not 101,
   or a 101 that does not choose ``sip``, fails the connection with the reason
   (the calls waiting on it fail with it).  An accepted connection answers the
   upgrade 101 with ``sip``; one that does not offer ``sip`` is answered 400 and
   closed, one past ``max_connections`` 503: each is counted (``refused_upgrade``,
   ``refused_busy``) with its last reason kept (``last_refusal``).  Messages
   queue until the upgrade is done.
3. Framing (RFC 7118 §5.1): each SIP message goes out as one WebSocket message,
   a text frame when it is UTF-8 (nearly always), else a binary one.  A received
   message (fragments joined by the library) is one SIP message and goes up
   whole; an empty or whitespace-only one is a keep-alive and is dropped.
4. Bad input ends the connection with a close code and a reason reported for
   every name of the connection: a message that is not a SIP message (its first
   line is not a request or status line) — 1003; one over ``max_message`` bytes
   — 1009 (the library stops reading it at the limit); a text frame that is not
   UTF-8 or any protocol error — 1007/1002.  A close by the peer with 1000 or
   1001 is clean (nothing reported: the next send opens a new connection);
   any other close code is reported with its reason.
5. Pings: every ``ping_interval`` seconds a connection that carried nothing in
   that time is sent a ping; one that has not answered by the next interval is
   failed ("no pong").  The library answers the peer's pings with pongs.
6. Closing: :meth:`WsConnection.close` sends a close frame (1001, going away) and
   closes the TCP connection once the library says it may.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import cast

from websockets.client import ClientProtocol
from websockets.exceptions import PayloadTooBig
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from sipload.transport.stream import (
    CONNECT_TIMEOUT,
    DEFAULT_PATH,
    PING_INTERVAL,
    StreamConnection,
    StreamLimits,
    StreamTransport,
)
from sipload.transport.udp import OnMessage, Peer

SUBPROTOCOL = Subprotocol("sip")
"""The WebSocket subprotocol of SIP (RFC 7118 §4.1)."""

_START_LINE = re.compile(
    rb"(?:\r\n)*(?:SIP/2\.0 [0-9]{3}[ \r]|[A-Za-z0-9.!%*_+`'~-]+ [^ \r\n]+ SIP/2\.0\r?\n)")
"""The start of a SIP message: a status line or a request line (RFC 3261 §7.1, §7.2)."""


def looks_like_sip(message: bytes) -> bool:
    """Whether ``message`` opens with a SIP request line or status line."""
    return _START_LINE.match(message) is not None


def _close_text(code: int | None, reason: str) -> str:
    if code is None:
        return "no close code"
    try:
        name = CloseCode(code).name.lower().replace("_", " ")
    except ValueError:
        name = "close code"
    return f"{code} {name}" + (f": {reason}" if reason else "")


class WsConnection(StreamConnection):
    """One SIP-over-WebSocket connection (see the module docstring)."""

    def __init__(self, owner: WsTransport, *, accepted: bool = False) -> None:
        super().__init__(owner, accepted=accepted)
        self._ws_owner = owner
        self._proto: Protocol | None = None
        self.open = False  #: the upgrade is done: SIP messages flow
        self._parts: list[bytes] = []  #: fragments of the message being received
        self._ping_handle: asyncio.TimerHandle | None = None
        self._ping_due = False  #: a ping is out and its pong has not come
        self.close_reason = ""  #: why it ended, when it ended badly
        self.kind = owner.kind

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        owner = self._ws_owner
        if self.accepted:
            self._proto = ServerProtocol(subprotocols=[SUBPROTOCOL],
                                         max_size=owner.max_message)
        else:
            host, port = self.asked
            authority = f"[{host}]" if ":" in host else host
            scheme = "wss" if owner.kind == "wss" else "ws"
            uri = parse_uri(f"{scheme}://{authority}:{port}{owner.path}")
            client = ClientProtocol(uri, subprotocols=[SUBPROTOCOL], max_size=owner.max_message)
            self._proto = client
        super().connection_made(transport)
        if self.dead:
            return
        if isinstance(self._proto, ClientProtocol):
            request = self._proto.connect()
            request.headers["User-Agent"] = "sipload"
            self._proto.send_request(request)
            self._flush()
        self._arm_ping()

    def data_received(self, data: bytes) -> None:
        stamp = time.monotonic()
        proto = self._proto
        if proto is None or self.dead:
            return
        self.last_active = self._owner.clock()
        self._ping_due = False  # anything from the peer shows it is alive
        proto.receive_data(data)
        for event in proto.events_received():
            if isinstance(event, Request):
                self._upgrade_request(event)
            elif isinstance(event, Response):
                self._upgrade_response(event)
            else:
                self._frame(event, stamp)
            if self.dead:
                break
        self._flush()
        if not self.dead and proto.state in (State.CLOSING, State.CLOSED):
            self._closing()

    def eof_received(self) -> bool | None:
        if self._proto is not None:
            self._proto.receive_eof()
            self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_ping()
        if not self.dead and self._proto is not None:
            code = self._proto.close_code
            clean = code in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY)
            if not clean and exc is None and self.open:
                rcvd = self._proto.close_rcvd
                reason = rcvd.reason if rcvd is not None else ""
                exc = ConnectionError(f"closed with {_close_text(code, reason)}")
        super().connection_lost(exc)

    # ---------------------------------------------------------------- the upgrade

    def _upgrade_request(self, request: Request) -> None:
        proto = cast(ServerProtocol, self._proto)
        owner = self._ws_owner
        offered = {p.strip() for v in request.headers.get_all("Sec-WebSocket-Protocol")
                   for p in v.split(",")}
        if self.busy:
            response = proto.reject(503, "too many connections\n")
            response.headers["Retry-After"] = "5"
        elif SUBPROTOCOL not in offered:
            response = proto.reject(400, "the 'sip' WebSocket subprotocol is required "
                                         "(RFC 7118)\n")
        else:
            response = proto.accept(request)
        proto.send_response(response)
        if response.status_code == 101:
            self.open = True
            self._drain()
            return
        body = bytes(response.body or b"").decode("utf-8", "replace").strip()
        if not self.busy:
            owner.refused_upgrade += 1
        owner.last_refusal = (f"{self.kind}: upgrade from {self.peer[1]}:{self.peer[2]} "
                              f"refused with {response.status_code} ({body})")
        self._flush()
        self._shut(None)

    def _upgrade_response(self, response: Response) -> None:
        proto = cast(ClientProtocol, self._proto)
        exc = proto.handshake_exc
        host, port = self.asked
        if exc is not None:
            self._shut(f"{self.kind}: upgrade refused by {host}:{port} ({exc})")
            return
        if proto.subprotocol != SUBPROTOCOL:
            proto.fail(CloseCode.PROTOCOL_ERROR, "the sip subprotocol is required")
            self._shut(f"{self.kind}: {host}:{port} did not agree to the 'sip' "
                       "subprotocol (RFC 7118 §4.1)")
            return
        self.open = True
        self._drain()

    # ---------------------------------------------------------------- frames

    def _frame(self, frame: Frame, stamp: float) -> None:
        proto = self._proto
        assert proto is not None
        op = frame.opcode
        if op in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            self._parts.append(bytes(frame.data))
            if not frame.fin:
                return
            message = b"".join(self._parts)
            self._parts.clear()
            if not message.strip():
                return  # a keep-alive (CRLF) or an empty message
            if not looks_like_sip(message):
                head = message[:40]
                proto.fail(CloseCode.UNSUPPORTED_DATA, "not a SIP message")
                self._shut(f"{self.kind}: a WebSocket message that is not SIP ({head!r}); "
                           "closed with 1003")
                return
            self._owner.on_message(message, self.peer, stamp)
        elif op is Opcode.CLOSE and proto.parser_exc is None:
            rcvd = proto.close_rcvd
            if rcvd is not None and rcvd.code not in (CloseCode.NORMAL_CLOSURE,
                                                      CloseCode.GOING_AWAY):
                self.close_reason = f"{self.kind}: closed by the peer with " \
                                    f"{_close_text(rcvd.code, rcvd.reason)}"

    def _closing(self) -> None:
        """The library ended the WebSocket (a close, or a failure it detected)."""
        proto = self._proto
        assert proto is not None
        exc = proto.parser_exc
        if exc is not None:
            sent = proto.close_sent
            code = sent.code if sent is not None else None
            if isinstance(exc, PayloadTooBig):
                self._owner.refused_oversize += 1
                reason = f"{self.kind}: a message over the size limit ({exc}); closed with 1009"
            else:
                reason = f"{self.kind}: {exc}; closed with {_close_text(code, '')}"
            self._shut(reason)
        elif self.close_reason:
            self._shut(self.close_reason)
        elif proto.close_expected():
            self._shut(None)

    # ---------------------------------------------------------------- writing

    def write(self, data: bytes) -> None:
        """Send one SIP message as one WebSocket message, or queue it until the upgrade."""
        if self.dead:
            return
        if self.open and self._transport is not None and not self._paused and not self._pending:
            self.last_active = self._owner.clock()
            self._send_message(data)
            return
        super().write(data)  # queued (bounded by MAX_PENDING)

    def _send_message(self, data: bytes) -> None:
        proto = self._proto
        if proto is None or proto.state is not State.OPEN:
            return
        if data.isascii():
            proto.send_text(data)
        else:
            try:
                data.decode("utf-8")
                proto.send_text(data)
            except UnicodeDecodeError:
                proto.send_binary(data)
        self._flush()

    def _drain(self) -> None:
        if not self.open:
            return
        while self._pending and self._transport is not None and not self._paused:
            data = self._pending.popleft()
            self._pending_bytes -= len(data)
            self._send_message(data)

    def _flush(self) -> None:
        """Write what the library has to send; an empty chunk means: close the TCP side."""
        proto = self._proto
        transport = self._transport
        if proto is None:
            return
        for chunk in proto.data_to_send():
            if transport is None:
                continue
            if chunk:
                transport.write(chunk)
            else:
                transport.close()  # after the buffered bytes are written

    # ---------------------------------------------------------------- ending

    def _shut(self, reason: str | None) -> None:
        """End the connection (gracefully: the close frame or HTTP answer goes out first)."""
        if self.dead:
            return
        self._cancel_ping()
        self._flush()
        self.dead = True
        self.take_pending()
        self._owner.detach(self, reason)
        if self._transport is not None:
            self._transport.close()

    def close(self) -> None:
        """Close with 1001 (going away); queued messages are lost; nothing is reported."""
        self._cancel_ping()
        proto = self._proto
        if proto is not None and proto.state is State.OPEN and self._transport is not None:
            proto.send_close(CloseCode.GOING_AWAY)
            self._flush()
        super().close()

    def fail(self, reason: str) -> None:
        self._cancel_ping()
        super().fail(reason)

    # ---------------------------------------------------------------- pings

    def _arm_ping(self) -> None:
        every = self._ws_owner.ping_interval
        if every > 0 and not self.dead:
            self._ping_handle = self._ws_owner.loop.call_later(every, self._ping)

    def _cancel_ping(self) -> None:
        if self._ping_handle is not None:
            self._ping_handle.cancel()
            self._ping_handle = None

    def _ping(self) -> None:
        self._ping_handle = None
        proto = self._proto
        if self.dead or proto is None or self._transport is None:
            return
        if self._ping_due:
            self.fail(f"{self.kind}: no pong within {self._ws_owner.ping_interval:g} s")
            return
        idle = self._owner.clock() - self.last_active
        if self.open and proto.state is State.OPEN and idle >= self._ws_owner.ping_interval * 0.9:
            proto.send_ping(b"sipload")
            self._flush()
            self._ping_due = True
        self._arm_ping()


class WsTransport(StreamTransport):
    """Every ``ws`` (or every ``wss``) listener and connection of one worker.

    Args:
        kind: ``"ws"`` or ``"wss"``.
        path: the request path of the upgrades we send (``/`` by default).
        ping_interval: seconds of silence before a ping (0: never ping).
        The rest as :class:`~sipload.transport.stream.StreamTransport`.
    """

    def __init__(
        self,
        kind: str,
        on_message: OnMessage,
        on_error: Callable[[Peer, str], None],
        resolve: Callable[[str], Awaitable[str]],
        *,
        path: str = DEFAULT_PATH,
        ping_interval: float = PING_INTERVAL,
        client_context: Callable[[], ssl.SSLContext] | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        loop: asyncio.AbstractEventLoop | None = None,
        limits: StreamLimits | None = None,
    ) -> None:
        if kind not in ("ws", "wss"):
            raise ValueError(f"not a WebSocket transport: {kind!r}")
        super().__init__(kind, on_message, on_error, resolve,
                         client_context=client_context,
                         connect_timeout=connect_timeout, loop=loop, limits=limits)
        self.path = path if path.startswith("/") else "/" + path
        self.ping_interval = ping_interval
        self.loop = self._loop
        self.refused_upgrade = 0  #: upgrades answered 400 (no ``sip`` subprotocol, bad request)
        self.last_refusal = ""  #: the reason of the last refused upgrade

    def new_connection(self, *, accepted: bool = False) -> StreamConnection:
        return WsConnection(self, accepted=accepted)


__all__ = ["SUBPROTOCOL", "WsConnection", "WsTransport", "looks_like_sip"]
