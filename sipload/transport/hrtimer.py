"""A one-shot timer with microsecond precision on the event loop (Linux ``timerfd``).

The loop's own timers are too coarse to release call starts on time: uvloop's
``call_at`` has 1 ms resolution and its clock is cached per iteration, so
starts leave on the loop's millisecond tick (a Poisson schedule's short gaps
collapse to 0 or 1 ms on the wire).  A ``timerfd`` armed with an absolute
``CLOCK_MONOTONIC`` deadline (the clock of ``time.monotonic()``) is an
``hrtimer`` in the kernel, free of timer slack, and wakes the loop's poll
through an ordinary readable file descriptor.

It costs two system calls per expiry (``timerfd_settime`` to arm, ``read`` to
acknowledge) and no CPU while waiting; a busy wait before each due start would
burn up to the loop's 1 ms tick of CPU per start (see bench/README.md).

Arming and acknowledging go through the C helper built with the compiled hot
path (``sipload/transport/_mmsg.c``: ``timer_set``, ``timer_ack``) when it is
there: one plain C call each.  Without it (a pure build, or ``SIPLOAD_TIMER=python``)
Python 3.13's ``os.timerfd_settime_ns`` is used, or before 3.13 the libc function
through ``ctypes`` (whose argument conversion cost about 9% of a worker's CPU at
load).  The descriptor comes from ``os.timerfd_create`` (3.13) or libc.  Where there
is no timerfd at all (not Linux), or ``SIPLOAD_TIMER=loop``, :func:`precise_timer`
returns None and the caller keeps the loop's timer.  This module is compiled with the
hot path (the timer's expiry and arming run once or twice per call); the ``ctypes``
declarations, which mypyc cannot compile, are in :mod:`sipload.transport.timerfd_libc`.
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import os
from collections.abc import Callable
from typing import Protocol

from sipload.transport.timerfd_libc import Libc, load_libc

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)
_TFD_TIMER_ABSTIME = 1


class _NativeTimer(Protocol):
    API: int

    def timer_set(self, fd: int, when: float, /) -> None: ...
    def timer_ack(self, fd: int, /) -> int: ...


#: The C helper's API version (the one sipload.transport.batch speaks too).
NATIVE_API = 3


def _load_native() -> _NativeTimer | None:
    if os.environ.get("SIPLOAD_TIMER", "").strip().lower() == "python":
        return None
    try:
        from sipload.transport import _mmsg  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    module: _NativeTimer = _mmsg
    return module if getattr(module, "API", None) == NATIVE_API else None


_native = _load_native()
#: "native" when the C helper arms the timers, "python" otherwise.
IMPLEMENTATION = "native" if _native is not None else "python"


class PreciseTimer:
    """One re-armable deadline on ``time.monotonic()``'s clock; calls ``callback`` at it.

    Use :func:`precise_timer` to make one.  :meth:`arm` replaces the deadline
    (the callback runs once per expiry, never before the deadline);
    :meth:`disarm` cancels it; :meth:`close` releases the descriptor.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, libc: Libc | None,
                 callback: Callable[[], None]) -> None:
        self._loop = loop
        self._fd = fd
        self._libc = libc
        self._native = _native
        self._callback = callback
        self._closed = False
        self.armed: float | None = None  #: the deadline armed, or None
        loop.add_reader(fd, self._fired)

    def arm(self, when: float) -> None:
        """Run the callback at ``when`` (``time.monotonic()`` seconds; past: at once)."""
        if self._closed:
            return
        self.armed = when
        native = self._native
        if native is not None:  # once per call start: no second Python frame
            native.timer_set(self._fd, when if when > 1e-9 else 1e-9)
            return
        self._set(max(when, 1e-9))

    def disarm(self) -> None:
        if self.armed is not None and not self._closed:
            self.armed = None
            self._set(0.0)

    def _set(self, when: float) -> None:
        native = self._native
        if native is not None:
            native.timer_set(self._fd, when)
            return
        frac, whole = math.modf(when)
        sec, nsec = int(whole), int(frac * 1e9)
        libc = self._libc
        if libc is None:
            os.timerfd_settime_ns(  # type: ignore[attr-defined,unused-ignore]
                self._fd, flags=_TFD_TIMER_ABSTIME, initial=sec * 1_000_000_000 + nsec)
            return
        spec = libc.spec
        spec.it_value.tv_sec = sec
        spec.it_value.tv_nsec = nsec
        if libc.settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            err = ctypes.get_errno()  # pragma: no cover - only with a bad descriptor
            raise OSError(err, os.strerror(err))

    def _fired(self) -> None:
        native = self._native
        if native is not None:
            if not native.timer_ack(self._fd):
                return  # re-armed after it expired: nothing to acknowledge
        else:
            try:
                os.read(self._fd, 8)
            except (BlockingIOError, InterruptedError):
                return
        if self.armed is None:
            return
        self.armed = None
        self._callback()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        os.close(self._fd)


def precise_timer(loop: asyncio.AbstractEventLoop,
                  callback: Callable[[], None]) -> PreciseTimer | None:
    """A :class:`PreciseTimer` on ``loop``, or None where the platform has no timerfd
    or ``SIPLOAD_TIMER=loop`` asks for the loop's own timers (call starts released on
    its 1 ms tick, as before issue 19: the timing tests' control)."""
    if os.environ.get("SIPLOAD_TIMER", "").strip().lower() == "loop":
        return None
    flags = _TFD_NONBLOCK | _TFD_CLOEXEC
    create = getattr(os, "timerfd_create", None)
    if create is not None:
        return PreciseTimer(loop, create(_CLOCK_MONOTONIC, flags=flags), None, callback)
    libc = load_libc()
    if libc is None:
        return None
    fd = libc.create(_CLOCK_MONOTONIC, flags)
    if fd < 0:  # pragma: no cover - out of descriptors
        return None
    return PreciseTimer(loop, fd, libc, callback)
