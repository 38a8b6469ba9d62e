"""The event loop a worker runs on: uvloop where it is installed, asyncio's otherwise.

uvloop is an optional extra (``pip install sipload[fast]``); everything in
:mod:`sipload.transport` works on both loops, and the tests run on both.
"""

from __future__ import annotations

import asyncio


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when importable, else the asyncio default.

    Returns:
        A fresh loop, not set as the current loop; the caller owns and closes it.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is installed in CI
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``"uvloop"`` or ``"asyncio"``, for logs and run metadata."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
