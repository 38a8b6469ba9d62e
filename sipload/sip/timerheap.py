"""A deadline heap for many objects that each own at most one pending deadline.

Theory of operation
===================

A load generator keeps tens of thousands of transactions (and dialogs, and
scenario steps) alive at once.  Each exposes ``next_deadline()``; the shell
wants one question answered cheaply: *which objects are due now, and when is
the next one due?*  :class:`TimerHeap` answers it with a binary heap and lazy
deletion.

1. Every scheduled item has exactly one live deadline.  ``push(deadline, item)``
   replaces the item's previous deadline (earlier or later); ``discard(item)``
   removes it.  Neither searches the heap.
2. The heap holds ``(deadline, seq, item)`` entries.  ``seq`` is a counter that
   grows by one per push: it breaks ties (items with equal deadlines come out
   in push order, and items themselves are never compared) and it is the
   entry's *generation*.
3. A side table ``_live`` maps each scheduled item to ``(deadline, seq)`` of
   its one live entry.  An entry in the heap whose ``seq`` is not the item's
   live ``seq`` is stale: it is dropped, unseen, when it reaches the top
   (``pop_due`` and ``peek`` do this).  Staleness is decided by the heap
   itself, from generation numbers, so owners need no ``deadline`` attribute
   and no callback: the heap never calls back into the objects it holds.
4. Pushing the deadline an item already has is a no-op (no new entry): the
   typical caller re-pushes ``next_deadline()`` after every event, and most
   events leave the deadline unchanged.
5. ``pop_due(now)`` returns the items whose deadline is ``<= now``, earliest
   first, and unschedules them: the owner runs ``handle_timer(now)`` on each
   and pushes its new ``next_deadline()`` (if any).
6. Stale entries cost memory until they surface.  When they outnumber live
   ones by more than :data:`COMPACT_RATIO` (and there are at least
   :data:`COMPACT_MIN` entries) the heap is rebuilt from the live table in
   O(n); the amortized cost per push stays O(log n).
7. Items must be hashable; plain objects hash by identity, which is what a
   transaction wants.  Nothing here reads a clock: deadlines are whatever
   monotonic seconds the caller uses.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Final, Generic, TypeVar

__all__ = ["COMPACT_MIN", "COMPACT_RATIO", "TimerHeap"]

T = TypeVar("T", bound=Hashable)

COMPACT_RATIO: Final = 2
"""Rebuild when the heap holds more than this many entries per live item..."""
COMPACT_MIN: Final = 1024
"""... and at least this many entries in all (small heaps are never rebuilt)."""


class TimerHeap(Generic[T]):
    """Items keyed by their single pending deadline; earliest first.

    Example::

        heap: TimerHeap[ClientTransaction] = TimerHeap()
        heap.push(tx.next_deadline(), tx)
        for tx in heap.pop_due(now):
            tx.handle_timer(now)
            d = tx.next_deadline()
            if d is not None:
                heap.push(d, tx)
    """

    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._live: dict[T, tuple[float, int]] = {}
        self._seq: int = 0

    def __len__(self) -> int:
        """The number of scheduled items (stale entries are not counted)."""
        return len(self._live)

    def __contains__(self, item: T) -> bool:
        return item in self._live

    def push(self, deadline: float, item: T) -> None:
        """Schedule ``item`` at ``deadline``, replacing any deadline it had (rule 1, 4)."""
        live = self._live
        current = live.get(item)
        if current is not None and current[0] == deadline:
            return
        seq = self._seq + 1
        self._seq = seq
        live[item] = (deadline, seq)
        heapq.heappush(self._heap, (deadline, seq, item))
        if len(self._heap) > COMPACT_MIN and len(self._heap) > COMPACT_RATIO * len(live):
            self._compact()

    def schedule(self, item: T, deadline: float | None) -> None:
        """``push`` when ``deadline`` is a number, ``discard`` when it is None.

        Fits ``heap.schedule(tx, tx.next_deadline())`` after every event.
        """
        if deadline is None:
            self._live.pop(item, None)
        else:
            self.push(deadline, item)

    def discard(self, item: T) -> None:
        """Unschedule ``item`` (nothing happens when it is not scheduled)."""
        self._live.pop(item, None)

    def deadline_of(self, item: T) -> float | None:
        """The live deadline of ``item``, or None when it is not scheduled."""
        current = self._live.get(item)
        return None if current is None else current[0]

    def peek(self) -> float | None:
        """The earliest live deadline, or None when nothing is scheduled."""
        heap = self._heap
        live = self._live
        while heap:
            deadline, seq, item = heap[0]
            current = live.get(item)
            if current is not None and current[1] == seq:
                return deadline
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[T]:
        """Unschedule and return every item whose deadline is ``<= now``, earliest first."""
        heap = self._heap
        live = self._live
        due: list[T] = []
        while heap and heap[0][0] <= now:
            _, seq, item = heapq.heappop(heap)
            current = live.get(item)
            if current is not None and current[1] == seq:
                del live[item]
                due.append(item)
        return due

    def clear(self) -> None:
        self._heap.clear()
        self._live.clear()

    def _compact(self) -> None:
        """Rebuild the heap from the live table, dropping every stale entry (rule 6)."""
        heap = [(deadline, seq, item) for item, (deadline, seq) in self._live.items()]
        heapq.heapify(heap)
        self._heap = heap
