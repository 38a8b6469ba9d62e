"""A deadline queue for many objects that each own at most one pending deadline.

Theory of operation
===================

A load generator keeps tens of thousands of transactions (and dialogs, and
scenario steps) alive at once.  Each exposes ``next_deadline()``; the shell
wants one question answered cheaply: *which objects are due now, and when is
the next one due?*  :class:`TimerHeap` answers it with sorted lanes, a binary
heap behind them, and lazy deletion.

1. Every scheduled item has exactly one live deadline.  ``push(deadline, item)``
   replaces the item's previous deadline (earlier or later); ``discard(item)``
   removes it.  Neither searches the queue.
2. Entries are ``(deadline, seq, item)``.  ``seq`` is a counter that grows by one
   per push: it breaks ties (items with equal deadlines come out in push order,
   and items themselves are never compared) and it is the entry's *generation*.
3. A side table ``_live`` maps each scheduled item to ``(deadline, seq)`` of its
   one live entry.  An entry whose ``seq`` is not the item's live ``seq`` is
   stale: it is dropped, unseen, when it reaches the front (``pop_due`` and
   ``peek`` do this).  Staleness is decided from generation numbers, so owners
   need no ``deadline`` attribute and no callback: the queue never calls back
   into the objects it holds.
4. Pushing the deadline an item already has is a no-op (no new entry): the
   typical caller re-pushes ``next_deadline()`` after every event, and most
   events leave the deadline unchanged.
5. **Lanes.**  Nearly every deadline is "now plus a constant" (SIP's T1, 64*T1,
   T4, a scenario's pause or timeout), so the deadlines of one constant arrive in
   order.  A push appends its entry to the lane whose last deadline is the latest
   one not after it (up to :data:`LANES` lanes, each a list sorted by deadline,
   read from a head index): no comparisons beyond that choice, and no walk through
   tens of thousands of entries spread over memory, which is what a binary heap's
   pop costs at load (a cache miss per level).  An entry no lane can take goes to
   a binary heap (``heapq``).  The front of the queue is the least of the lanes'
   heads and the heap's top.
6. ``pop_due(now)`` returns the items whose deadline is ``<= now``, earliest
   first (ties in push order), and unschedules them: the owner runs
   ``handle_timer(now)`` on each and pushes its new ``next_deadline()`` (if any).
   ``peek()`` remembers the front it found until a push, a discard or a pop can
   have moved it.
7. Stale entries cost memory until they surface.  When they outnumber live
   ones by more than :data:`COMPACT_RATIO` (and there are at least
   :data:`COMPACT_MIN` entries) every lane and the heap drop theirs in O(n);
   the amortized cost per push stays O(log n) at worst.
8. Items must be hashable; plain objects hash by identity, which is what a
   transaction wants.  Nothing here reads a clock: deadlines are whatever
   monotonic seconds the caller uses.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Final, Generic, TypeVar

__all__ = ["COMPACT_MIN", "COMPACT_RATIO", "LANES", "TimerHeap"]

T = TypeVar("T", bound=Hashable)

COMPACT_RATIO: Final = 2
"""Rebuild when the heap holds more than this many entries per live item..."""
COMPACT_MIN: Final = 1024
"""... and at least this many entries in all (small queues are never rebuilt)."""
LANES: Final = 8
"""Sorted lanes at most (rule 5): a UA's or a scenario's handful of timer constants,
with room; deadlines no lane can take in order go to the heap."""
HEAD_TRIM: Final = 1024
"""A lane drops the entries before its head once this many have been read."""
_NONE: Final = -1.0
"""``_front`` when it is not known (deadlines are never negative in use; a negative
one only costs a fresh look)."""
_EMPTY: Final = float("-inf")
"""The last deadline of an empty lane: it takes any deadline."""


class _Lane(Generic[T]):
    """Entries in order of deadline (then push), read from ``head`` on (rule 5)."""

    __slots__ = ("entries", "head", "last")

    def __init__(self) -> None:
        self.entries: list[tuple[float, int, T]] = []
        self.head = 0
        self.last = _EMPTY  #: the deadline of the last entry (-inf: empty)

    def trim(self) -> None:
        """Forget what the head has passed; an emptied lane takes any deadline again."""
        head = self.head
        entries = self.entries
        if head >= len(entries):
            entries.clear()
            self.head = 0
            self.last = _EMPTY
        elif head >= HEAD_TRIM and 2 * head >= len(entries):
            del entries[:head]
            self.head = 0


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

    __slots__ = ("_front", "_heap", "_lanes", "_live", "_seq", "_size")

    def __init__(self) -> None:
        self._lanes: list[_Lane[T]] = []
        self._heap: list[tuple[float, int, T]] = []
        self._live: dict[T, tuple[float, int]] = {}
        self._seq: int = 0
        self._size: int = 0  #: entries held, live and stale, in the lanes and the heap
        self._front: float = _NONE  #: the earliest live deadline, when known (rule 6)

    def __len__(self) -> int:
        """The number of scheduled items (stale entries are not counted)."""
        return len(self._live)

    def __contains__(self, item: T) -> bool:
        return item in self._live

    def entries(self) -> int:
        """Entries held, live and stale (what compaction bounds, rule 7)."""
        return self._size

    def push(self, deadline: float, item: T) -> None:
        """Schedule ``item`` at ``deadline``, replacing any deadline it had (rule 1, 4)."""
        live = self._live
        current = live.get(item)
        if current is not None:
            if current[0] == deadline:
                return
            if current[0] == self._front:
                self._front = _NONE
        seq = self._seq + 1
        self._seq = seq
        live[item] = (deadline, seq)
        front = self._front
        if front != _NONE and deadline < front:
            self._front = deadline
        entry = (deadline, seq, item)
        best: _Lane[T] | None = None  # the lane whose last deadline is the latest <= this
        best_last = _EMPTY
        for lane in self._lanes:
            last = lane.last
            if last <= deadline and (best is None or last > best_last):
                best = lane
                best_last = last
        if best is None and len(self._lanes) < LANES:  # none free and none in order
            best = _Lane()
            self._lanes.append(best)
        if best is not None:
            best.entries.append(entry)
            best.last = deadline
        else:
            heapq.heappush(self._heap, entry)
        self._size += 1
        if self._size > COMPACT_MIN and self._size > COMPACT_RATIO * len(live):
            self._compact()

    def schedule(self, item: T, deadline: float | None) -> None:
        """``push`` when ``deadline`` is a number, ``discard`` when it is None.

        Fits ``heap.schedule(tx, tx.next_deadline())`` after every event.
        """
        if deadline is None:
            self.discard(item)
        else:
            self.push(deadline, item)

    def discard(self, item: T) -> None:
        """Unschedule ``item`` (nothing happens when it is not scheduled)."""
        current = self._live.pop(item, None)
        if current is not None and current[0] == self._front:
            self._front = _NONE

    def deadline_of(self, item: T) -> float | None:
        """The live deadline of ``item``, or None when it is not scheduled."""
        current = self._live.get(item)
        return None if current is None else current[0]

    def peek(self) -> float | None:
        """The earliest live deadline, or None when nothing is scheduled."""
        front = self._front
        if front != _NONE:
            return front
        if not self._live:
            return None
        live = self._live
        best = float("inf")
        for lane in self._lanes:
            entries = lane.entries
            i = lane.head
            n = len(entries)
            while i < n:
                deadline, seq, item = entries[i]
                current = live.get(item)
                if current is not None and current[1] == seq:
                    if deadline < best:
                        best = deadline
                    break
                i += 1
            if i != lane.head:
                self._size -= i - lane.head
                lane.head = i
                lane.trim()
        heap = self._heap
        while heap:
            deadline, seq, item = heap[0]
            current = live.get(item)
            if current is not None and current[1] == seq:
                if deadline < best:
                    best = deadline
                break
            heapq.heappop(heap)
            self._size -= 1
        self._front = best
        return best

    def pop_due(self, now: float) -> list[T]:
        """Unschedule and return every item whose deadline is ``<= now``, earliest first."""
        front = self._front
        if front != _NONE and front > now:
            return []
        live = self._live
        found: list[tuple[float, int, T]] = []
        dropped = 0
        for lane in self._lanes:
            entries = lane.entries
            i = lane.head
            n = len(entries)
            while i < n:
                entry = entries[i]
                if entry[0] > now:
                    break
                current = live.get(entry[2])
                if current is not None and current[1] == entry[1]:
                    found.append(entry)
                i += 1
            if i != lane.head:
                dropped += i - lane.head
                lane.head = i
                lane.trim()
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            dropped += 1
            current = live.get(entry[2])
            if current is not None and current[1] == entry[1]:
                found.append(entry)
        self._size -= dropped
        self._front = _NONE
        if len(found) > 1:
            found.sort()  # by deadline, then push order: seq is unique, items never compared
        due: list[T] = []
        for _, _, item in found:
            del live[item]
            due.append(item)
        return due

    def clear(self) -> None:
        self._lanes.clear()
        self._heap.clear()
        self._live.clear()
        self._size = 0
        self._front = _NONE

    def _compact(self) -> None:
        """Drop every stale entry from the lanes and the heap (rule 7)."""
        live = self._live
        size = 0
        lanes: list[_Lane[T]] = []
        for lane in self._lanes:
            kept = [e for e in lane.entries[lane.head:] if live.get(e[2]) == (e[0], e[1])]
            if kept:
                lane.entries = kept
                lane.head = 0
                lane.last = kept[-1][0]
                lanes.append(lane)
                size += len(kept)
        self._lanes = lanes
        heap = [e for e in self._heap if live.get(e[2]) == (e[0], e[1])]
        heapq.heapify(heap)
        self._heap = heap
        self._size = size + len(heap)

