"""When the coordinator's process runs Python's cyclic garbage collector.

A ``sipload run`` does two kinds of work in its own process: bounded work at its
start and end (importing its modules, forking its children; importing the report's
libraries, drawing its charts) and the rest: the run itself, as long as the user
asks, and the analysis of its files.  The bounded work allocates hundreds of
thousands of objects, nearly all of them kept (modules, classes, functions) or freed
by reference counting, and the collector, run every 700 net allocations, traverses
them again and again to find next to nothing: 0.1 s of CPU in a short run (250
collections), about a tenth of its fixed cost.  The run keeps the interpreter's own
collection (messages from the workers, for hours), and so does the analysis: it
decodes every snapshot's HdrHistograms, each a reference cycle of hdrh's holding
~190 KB, freed only by a collection (a 300,000-call report reached 1.8 GB of memory
instead of 0.5 GB without).

Theory of operation:

1. :func:`paused` turns automatic collection off for a stretch of bounded work and
   back to what it was after; nested, only the outermost one restores.
2. :func:`collecting` turns it on again, as it was before the outermost
   :func:`paused`, for the run or the analysis inside a paused stretch (and off
   again after); it collects nothing itself.  It first freezes what exists
   (``gc.freeze``): the objects the paused stretch made, the modules it imported
   among them, would otherwise all be young, and the first collection would
   traverse every one of them (30 ms after the report's imports); the outermost
   :func:`paused` unfreezes them as it ends.  What cyclic garbage the paused stretch
   left (a handful, from the imports) stays frozen with them until then.
3. :func:`fork_frozen` forks with every object of this process frozen (``gc.freeze``)
   for the child only: a forked child's first full collection (a worker's
   ``tune_gc``) then does not traverse, and so does not copy, the coordinator's
   pages.  The child starts with automatic collection on, as a new interpreter
   would, whatever the parent's pause.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0  # paused() stretches open
_outer = True  # automatic collection's state before the outermost one
_froze = False  # collecting() froze this process's objects (rule 2)


@contextmanager
def paused() -> Iterator[None]:
    """No automatic collection inside (rule 1)."""
    global _depth, _outer, _froze
    if _depth == 0:
        _outer = gc.isenabled()
    _depth += 1
    gc.disable()
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            if _froze:
                gc.unfreeze()
                _froze = False
            if _outer:
                gc.enable()


@contextmanager
def collecting() -> Iterator[None]:
    """Automatic collection as before the pause, inside a paused stretch (rule 2)."""
    global _froze
    if _depth > 0 and _outer:
        gc.freeze()
        _froze = True
        gc.enable()
    try:
        yield
    finally:
        if _depth > 0:
            gc.disable()


def fork_frozen() -> int:
    """``os.fork()`` with this process's objects frozen for the child (rule 3)."""
    gc.freeze()
    try:
        pid = os.fork()
    except BaseException:
        gc.unfreeze()
        raise
    if pid == 0:
        gc.enable()
    else:
        gc.unfreeze()
    return pid
