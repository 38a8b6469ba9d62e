"""``timerfd_create`` and ``timerfd_settime`` from the C library through ``ctypes``.

The fallback of :mod:`sipload.transport.hrtimer` before Python 3.13 (which has
``os.timerfd_create``) where the C helper is not built.  Kept apart from it because
mypyc cannot compile ``ctypes.Structure`` subclasses, and that module is compiled.
"""

from __future__ import annotations

import ctypes
import sys


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class Libc:
    """``timerfd_create``/``timerfd_settime`` from the C library."""

    def __init__(self) -> None:
        # the process's own symbols (the C library's): find_library runs ldconfig
        lib = ctypes.CDLL(None, use_errno=True)
        self.create = lib.timerfd_create
        self.create.argtypes = [ctypes.c_int, ctypes.c_int]
        self.create.restype = ctypes.c_int
        self.settime = lib.timerfd_settime
        self.settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec),
                                 ctypes.c_void_p]
        self.settime.restype = ctypes.c_int
        self.spec = _Itimerspec()


_LIBC: Libc | None = None


def load_libc() -> Libc | None:
    """The C library's timerfd functions, loaded once; None where there are none."""
    global _LIBC
    if _LIBC is None and sys.platform.startswith("linux"):
        try:
            _LIBC = Libc()
        except (OSError, AttributeError):  # pragma: no cover - no libc timerfd
            return None
    return _LIBC
