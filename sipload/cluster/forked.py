"""A run's local child forked from the coordinator, without exec (Linux).

The coordinator starts its local workers and its embedded UAS first thing, when it
has imported only its command line (``sipload.cli``: the scenario loader, the
control channel, asyncio, zmq).  A child started as a new interpreter
(:func:`sipload.cluster.run.spawn_child`) then starts Python and imports those
modules again: about 0.25 s of CPU before its first call, of which a child forked
at that point needs only the engine's imports (~0.03 s).  :class:`ForkedChild`
forks, and the child runs :func:`sipload.cluster.child.run_role`, exactly what a
started child runs, reading its orders from a pipe instead of its stdin.

Theory of operation:

1. Only before the coordinator has threads, a loop or a ZeroMQ context
   (``sipload run``'s early start): :func:`can_fork` says whether this platform
   forks; everything else starts children with exec, as before.
2. The child never returns into the coordinator's code: whatever :func:`run_role`
   does, it ends in ``os._exit`` (its exit status; 1 and a traceback on an error),
   so no ``finally`` or ``atexit`` of the coordinator runs twice.
3. Each child closes the write ends of the order pipes of the children forked
   before it (the coordinator holds them open until it gives their orders): a
   worker reads its orders to the end of its pipe, which would never come.
4. Buffered output is flushed before the fork (it would be written twice); SIGINT
   is ignored in the child (as :func:`sipload.cluster.run.spawn_child` has it).
5. A forked child keeps the coordinator's command line (``ps`` shows both as
   ``sipload run ...``); its parent pid tells them apart.
6. :class:`ForkedChild` answers what :class:`sipload.cluster.run.Child` asks of a
   ``subprocess.Popen``: ``pid``, ``stdin``, ``poll``, ``wait`` (raising
   ``subprocess.TimeoutExpired``), ``terminate``, ``kill``.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import traceback
import weakref
from typing import IO

from sipload.cluster.collector import fork_frozen

#: the order pipes' write ends held by this process (rule 3)
_OPEN_ORDERS: weakref.WeakSet[IO[bytes]] = weakref.WeakSet()


def can_fork() -> bool:
    """True where a child may be forked (Linux: the child asks for its parent's death
    signal there too, see :mod:`sipload.cluster.lifeline`)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


class ForkedChild:
    """A forked child running ``role`` (see the module docstring)."""

    def __init__(self, role: str) -> None:
        parent = os.getpid()
        reader, writer = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        pid = fork_frozen()  # the child collects without traversing our objects
        if pid == 0:  # the child (rule 2): never returns
            _child(role, reader, writer, parent)
        os.close(reader)
        self.pid = pid
        self.returncode: int | None = None
        self.stdin: IO[bytes] | None = os.fdopen(writer, "wb")
        _OPEN_ORDERS.add(self.stdin)

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: it is gone
                self.returncode = -1
                return self.returncode
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        pidfd = _pidfd(self.pid)
        try:
            while self.poll() is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
                if pidfd is not None:  # readable once the child has ended
                    select.select([pidfd], [], [], left)
                else:
                    time.sleep(0.01 if left is None else min(0.01, left))
        finally:
            if pidfd is not None:
                os.close(pidfd)
        return self.returncode if self.returncode is not None else -1

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass


def _pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None
    return fd


def _child(role: str, reader: int, writer: int, parent: int) -> None:
    code = 1
    try:
        os.close(writer)
        for f in list(_OPEN_ORDERS):  # rule 3
            f.close()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        from sipload.cluster.child import run_role

        with os.fdopen(reader, "rb") as orders:
            run_role(role, parent, orders)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
