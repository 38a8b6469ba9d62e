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
    # Typed here, not by uvloop: an isolated build (the container's) compiles this
    # module with mypyc where uvloop is not installed.
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``"uvloop"`` or ``"asyncio"``, for logs and run metadata."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def tune_gc() -> None:
    """Tune the garbage collector for a process that runs a SIP loop.

    A load generator allocates many short-lived objects per message; with the
    default thresholds the young generation is collected every few hundred
    allocations, which costs ~15% of CPU per call and adds pauses that show
    as late call starts.  What exists at start-up (modules, compiled scenario)
    is frozen out of collection, and the young generation is collected less
    often.  Reference cycles are still collected.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)


GC_FORCE = 4
""":func:`collect_owed` collects even without slack once this many young collections
are owed (starts too dense to leave a gap)."""


def collect_owed(slack: bool) -> None:
    """Run the collections the interpreter would have run by now (its own thresholds).

    For a loop that disabled automatic collection to keep it out of timed work (the
    engine, between call starts): called where there is ``slack`` before the next timed
    event, or anyway once :data:`GC_FORCE` young collections are owed.  A collection of
    the older generations takes milliseconds; run by the interpreter whenever it liked,
    it made every few-hundredth call start late by 2 ms.
    """
    import gc

    threshold0, threshold1, threshold2 = gc.get_threshold()
    count0, count1, count2 = gc.get_count()
    if count0 < threshold0 or (not slack and count0 < GC_FORCE * threshold0):
        return
    if count1 + 1 < threshold1:
        gc.collect(0)
    elif count2 + 1 < threshold2:
        gc.collect(1)
    else:
        gc.collect(2)
