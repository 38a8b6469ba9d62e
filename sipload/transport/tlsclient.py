"""TLS at load: resumed sessions, handshake stamps, and what each handshake came to.

asyncio (and uvloop) run TLS over a memory BIO they make with
``SSLContext.wrap_bio`` when the TCP connection is up and the handshake is about
to start; they take no ``session=``.  :class:`LoadContext` is an
:class:`ssl.SSLContext` whose ``wrap_bio`` does two things for client connections:

1. Resumption: it hands the newest session it kept for the server name to the new
   connection (``session=``: a TLS 1.2 ticket or a TLS 1.3 PSK, whichever the
   server gave).  :meth:`LoadContext.keep_session` keeps it once the connection has
   read something (a TLS 1.3 server sends its tickets after the handshake, so they
   are only known then).  Whether the server took it is the connection's
   ``session_reused``, counted per handshake, never assumed.
2. Stamps: it stamps ``time.monotonic_ns()`` on the SSL object as the handshake
   starts; the stream connection stamps again in ``connection_made``, which both
   loops call right after ``do_handshake`` returns.  The difference is the
   handshake time (TCP connect excluded), at the socket rather than on the loop's
   clock.

:class:`TlsFigures` counts handshakes, resumed ones, their durations (µs) and
failures by reason between two snapshots; :func:`failure_reason` sorts an
exception from a TLS connect into one of :data:`REASONS`.
"""

from __future__ import annotations

import ssl
import time
from os import PathLike
from typing import Any

StrPath = str | PathLike[str]

STARTED = "sipload_started_ns"
"""The attribute of an SSL object that holds its handshake's start stamp."""
OFFERED = "sipload_offered"
"""The attribute of an SSL object that says whether a session was offered for resumption."""

REASONS = ("cert_verify_failed", "handshake_timeout", "connection_reset",
           "connection_refused", "connect_timeout", "connect_error", "handshake_error")
"""Why a TLS connection failed, as counted: the certificate (chain or host name) did not
verify; the handshake started but did not end in time; the peer reset or closed the
connection during the handshake; the TCP connect was refused; the TCP connect did not end
in time; the TCP connect failed otherwise (unreachable, no such name); any other TLS error
(protocol version, cipher, alert)."""


class LoadContext(ssl.SSLContext):
    """A client (or server) context that resumes sessions and stamps handshakes.

    Attributes (set by :func:`load_context`):
        resume: offer the kept session of the server name on new connections.
        sessions: the newest session per server name.
    """

    resume: bool
    sessions: dict[str, ssl.SSLSession]

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        if (not server_side and session is None and server_hostname is not None
                and getattr(self, "resume", False)):
            session = self.sessions.get(str(server_hostname))
        obj = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        setattr(obj, OFFERED, session is not None)
        setattr(obj, STARTED, time.monotonic_ns())
        return obj

    def keep_session(self, obj: ssl.SSLObject) -> None:
        """Keep ``obj``'s session for its server name (when resuming)."""
        if not getattr(self, "resume", False) or obj.server_hostname is None:
            return
        session = obj.session
        if session is not None and (session.has_ticket or session.id):
            self.sessions[str(obj.server_hostname)] = session


def load_context(*, insecure: bool = False, cafile: StrPath | None = None,
                 cadata: str | None = None, certfile: StrPath | None = None,
                 keyfile: StrPath | None = None, resume: bool = True) -> LoadContext:
    """A TLS 1.2+ client context as :func:`sipload.transport.tls.client_context`
    (verification on unless ``insecure``), that resumes sessions when ``resume``."""
    ctx = LoadContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cafile is not None or cadata is not None:
        ctx.load_verify_locations(cafile=cafile, cadata=cadata)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if certfile is not None:
        ctx.load_cert_chain(certfile, keyfile)
    ctx.resume = resume
    ctx.sessions = {}
    return ctx


def handshake_done(transport: Any) -> tuple[int, bool, bool, ssl.SSLObject | None]:
    """The handshake time (ns, -1 if unknown), whether a session was offered and whether
    the server resumed it, read as a TLS transport's protocol gets ``connection_made``."""
    end = time.monotonic_ns()
    obj = transport.get_extra_info("ssl_object")
    if obj is None:
        return -1, False, False, None
    started = getattr(obj, STARTED, None)
    took = end - started if isinstance(started, int) else -1
    return took, bool(getattr(obj, OFFERED, False)), bool(obj.session_reused), obj


def failure_reason(exc: BaseException) -> str:
    """One of :data:`REASONS` for what a TCP or TLS connect raised.

    The handshake has its own timeout (the loop's ``ssl_handshake_timeout``, which
    aborts with "SSL handshake is taking longer than ..."); a plain TimeoutError is the
    whole connect's, which on a TLS connect is given twice as long (resolution and TCP).
    """
    if isinstance(exc, ssl.SSLCertVerificationError | ssl.CertificateError):
        return "cert_verify_failed"
    if isinstance(exc, TimeoutError):
        return "connect_timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection_refused"
    if "handshake is taking longer" in str(exc):  # the loop's ssl_handshake_timeout
        return "handshake_timeout"
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError
                  | ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return "connection_reset"
    if isinstance(exc, ssl.SSLError):
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return "cert_verify_failed"
        return "handshake_error"
    if isinstance(exc, OSError) and "reset" in str(exc).lower():
        return "connection_reset"
    return "connect_error"


class TlsFigures:
    """Handshakes and TLS failures of one transport since the last :meth:`take`.

    Attributes:
        handshakes: client handshakes completed.
        offered: of those, the ones that offered a kept session (the first connections
            to a server have none yet: they start before any session is known).
        resumed: of those, the ones whose session the server resumed.
        durations_us: each completed handshake's time, µs (start of the handshake to
            its end, stamped at the socket).
        failures: failed TLS connections by reason (:data:`REASONS`).
        opened: client connections opened (TCP or TLS; per-call mode opens one a call).
    """

    __slots__ = ("durations_us", "failures", "handshakes", "offered", "opened", "resumed")

    def __init__(self) -> None:
        self.handshakes = 0
        self.resumed = 0
        self.offered = 0
        self.opened = 0
        self.durations_us: list[int] = []
        self.failures: dict[str, int] = {}

    def handshake(self, took_ns: int, offered: bool, resumed: bool) -> None:
        self.handshakes += 1
        if offered:
            self.offered += 1
        if resumed:
            self.resumed += 1
        if took_ns >= 0:
            self.durations_us.append(max(1, round(took_ns / 1000)))

    def failed(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def counts(self) -> dict[str, int]:
        """The counters by name (``opened``, ``handshakes``, ``offered``, ``resumed``)."""
        return {"opened": self.opened, "handshakes": self.handshakes,
                "offered": self.offered, "resumed": self.resumed}

    def add(self, other: TlsFigures) -> None:
        """Add ``other``'s figures to these."""
        self.opened += other.opened
        self.handshakes += other.handshakes
        self.offered += other.offered
        self.resumed += other.resumed
        self.durations_us += other.durations_us
        for reason, n in other.failures.items():
            self.failures[reason] = self.failures.get(reason, 0) + n

    def empty(self) -> bool:
        return not (self.handshakes or self.opened or self.failures)

    def take(self) -> TlsFigures:
        """These figures, and start again from zero."""
        out = TlsFigures()
        out.handshakes, out.resumed, out.opened = self.handshakes, self.resumed, self.opened
        out.offered = self.offered
        out.durations_us, out.failures = self.durations_us, self.failures
        self.handshakes = self.resumed = self.opened = self.offered = 0
        self.durations_us = []
        self.failures = {}
        return out
