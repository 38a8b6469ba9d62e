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


GC_THRESHOLD = 1_000_000
"""Young-generation threshold of :func:`tune_gc`: net new GC-tracked objects before the
collector runs.  A safety valve: a worker at 1,875 calls/s holds ~300,000 (mostly
its lingering transactions, 64·T1 = 32 s of them), which freeing balances."""


def tune_gc() -> None:
    """Tune the garbage collector for a process that runs a SIP loop.

    A call leaves no reference cycle behind (tests/test_gc.py: answered, rejected,
    cancelled, timed out, through the UA and the interpreter), so reference
    counting frees everything a call allocated and the cyclic collector has
    nothing to find.  Yet it would run every few hundred allocations and, in its
    full collections, traverse every live object: ~60 ms every ~0.8 s at 1,875
    calls/s, the pauses that made call starts late.  So what exists at start-up
    (modules, compiled scenario) is frozen out of collection, and the young
    generation is collected only after :data:`GC_THRESHOLD` net new tracked
    objects (older ones after 10 of those): a valve should a cycle leak after all,
    which a leak-free worker never reaches.  The engine, while it releases call
    starts on the precise timer, runs those collections itself between starts
    (:func:`collect_owed`).
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 10, 10)


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
