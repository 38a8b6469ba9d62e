"""Out of file descriptors: a listener refuses politely, logs once per interval, recovers.

When a process has no file descriptor left, ``accept()`` fails with ``EMFILE``
(``ENFILE``, ``ENOBUFS``, ``ENOMEM`` for the system's limits) while the
connection waits in the listen backlog.  The two loops differ:

* uvloop (libuv) keeps one spare descriptor: on ``EMFILE`` it frees it, accepts
  each waiting connection and closes it at once (the peer sees the connection
  closed, not a hang), then takes the spare back.  Nothing is logged.
* asyncio's loop reports each failure to the loop's exception handler with a
  traceback, and retries a second later: under a flood of connections that was
  hundreds of thousands of lines a few seconds, while the waiting peers hang.

:func:`guard_accept` installs an exception handler on the loop that takes those
reports: it does what libuv does (frees a spare descriptor, accepts and closes
what waits), counts the connections so refused, and logs one line per
:data:`LOG_EVERY` seconds with the count.  Every other report goes on to the
handler that was there before.  Once descriptors are free again, the loop's own
retry resumes accepting: nothing stays broken.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import sys
from typing import Any

LOG_EVERY = 10.0
"""Seconds between two log lines about refused connections."""

_OUT_OF = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class AcceptGuard:
    """The exception handler of :func:`guard_accept` (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.previous = loop.get_exception_handler()
        self.refused = 0  #: connections closed at once for want of descriptors
        self.failures = 0  #: accept() failures reported by the loop
        self._unlogged = 0
        self._logged_at = -LOG_EVERY
        self._spare: int | None = None
        self._take_spare()

    def _take_spare(self) -> None:
        if self._spare is None:
            try:
                self._spare = os.open(os.devnull, os.O_RDONLY)
            except OSError:
                self._spare = None

    def _refuse_waiting(self, listener: Any) -> int:
        """Accept and close what waits on ``listener`` with the spare descriptor."""
        sock = getattr(listener, "_sock", listener)
        if not isinstance(sock, socket.socket) or self._spare is None:
            return 0
        os.close(self._spare)
        self._spare = None
        n = 0
        try:
            for _ in range(1024):
                try:
                    conn, _ = sock.accept()
                except OSError:  # BlockingIOError: none left; EMFILE: none to spare
                    break
                conn.close()
                n += 1
        finally:
            self._take_spare()
        return n

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = str(context.get("message", ""))
        if not (isinstance(exc, OSError) and exc.errno in _OUT_OF and "accept" in message):
            if self.previous is not None:
                self.previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self.failures += 1
        refused = self._refuse_waiting(context.get("socket"))
        self.refused += refused
        self._unlogged += max(refused, 1)
        now = loop.time()
        if now - self._logged_at >= LOG_EVERY:
            where = ""
            listener = context.get("socket")
            try:
                host, port = listener.getsockname()[:2] if listener is not None else ("", 0)
                where = f" on {host}:{port}"
            except (OSError, AttributeError, ValueError):
                pass
            print(f"sipload: out of file descriptors ({os.strerror(exc.errno or 0)}): "
                  f"{self._unlogged} connection(s) refused{where} since the last such line "
                  f"(one line per {LOG_EVERY:g} s at most)", file=sys.stderr)
            self._logged_at = now
            self._unlogged = 0


def guard_accept(loop: asyncio.AbstractEventLoop) -> AcceptGuard:
    """Install the guard on ``loop`` (once: later calls return the same guard)."""
    handler = loop.get_exception_handler()
    if isinstance(handler, AcceptGuard):
        return handler
    guard = AcceptGuard(loop)
    loop.set_exception_handler(guard)
    return guard
