"""A local child of the coordinator (worker, embedded UAS) ends when the coordinator does.

A load generator whose controller is gone must stop generating load at once.
On Linux the child asks the kernel for a parent-death signal
(``prctl(PR_SET_PDEATHSIG, SIGKILL)``, through ctypes): when the coordinator
dies, by ``kill -9`` or anything else, the kernel kills the child at once.  The
request is made from inside the child, so a coordinator that died before it was
made is caught by comparing ``getppid()`` with the coordinator's pid.  Elsewhere
(and for workers on other hosts) the control channel's heartbeat is what notices:
see :class:`sipload.cluster.channel.Dealer`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

from sipload.exitcodes import EXIT_CANNOT_RUN

PR_SET_PDEATHSIG = 1
"""From <linux/prctl.h>."""


def die_with_parent(parent_pid: int) -> bool:
    """Have the kernel kill this process when ``parent_pid`` (our parent) dies.

    Returns:
        True when the kernel will do it (Linux); False where it cannot (other
        systems, or no libc found): the caller relies on its control channel.
        If the parent is already gone, the process ends here with status 3.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            # the interpreter's own symbols, the C library's among them: find_library
            # would run ldconfig in a subprocess, in every worker
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # died before we asked: nothing will signal us
        os._exit(EXIT_CANNOT_RUN)
    return armed
