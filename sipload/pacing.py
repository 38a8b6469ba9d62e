"""When calls should start, and which: intended start times, admission, call numbers.

A :class:`Pacer` yields intended start times (seconds since the run began)
for a rate that may ramp up (``--rate-increase D --rate-interval T
--rate-max M``) and may be changed while running (the coordinator moves a lost
worker's share to the others).  Arrivals are evenly spaced or Poisson.  The
engine starts each call at its intended time and measures lateness from it; it
never shifts the schedule to hide a slow generator.

An :class:`Admission` stands between the pacer and the engine (pure: fed ``now``):

1. A call is released :attr:`Admission.lead` seconds before its intended time, to cover
   waking up and building its first message.  The lead follows the wire: after each
   start the engine reports when its first message was ready to leave (the engine
   then holds it until its intended instant), and the lead moves by a fifth of how
   late (or early) that was, that error counted at most :data:`LEAD_ERROR_MAX` either
   way and the lead kept within ``[0, LEAD_MAX]``, so starts are ready at their
   intended time on average, and a stall (its lateness is the stall's, not the time to
   build an INVITE) cannot make the next ones wait long for their instants.
2. In the closed model (``users``) a call needs a free user; the user returns when its
   call ends (not once the run is stopping).
3. Calls are numbered from the worker's ``first_call``; calls taken over from a lost
   worker (:meth:`Admission.add_calls`) are numbered from their own block, so numbers
   stay unique across the run.  Calls given away (:meth:`Admission.release_calls`) are
   never started here.
4. Once stopping, nothing more is released.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

LEAD_MAX = 0.0005
"""The most a call is released before its intended time (rule 1): a few builds."""

LEAD_GAIN = 0.2
"""How much of a start's error (ready minus intended) moves the lead (rule 1)."""

LEAD_ERROR_MAX = 0.0001
"""The most one start's error counts for, either way (rule 1): with the whole error,
a start 30 ms late behind a stall set the lead to its most, and the next ~50 starts
left up to 2 ms early; with a 0.5 ms bound, the starts late behind a 10 ms stall (at
1,000/s) raised it by 1 ms, and the next ones spent that much CPU each waiting for
their instants."""


class _Rng(Protocol):
    def expovariate(self, lambd: float) -> float: ...


class Pacer:
    """Intended start times for up to ``calls`` calls or until ``duration``."""

    def __init__(
        self, rate: float, *, calls: int | None = None, duration: float | None = None,
        arrival: str = "uniform", rng: _Rng | None = None, increase: float = 0.0,
        interval: float = 0.0, rate_max: float | None = None, start: float = 0.0,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if arrival not in ("uniform", "poisson"):
            raise ValueError("arrival is uniform or poisson")
        if arrival == "poisson" and rng is None:
            raise ValueError("poisson arrivals need an rng")
        self.base_rate = rate
        self.calls = calls
        self.duration = duration
        self.arrival = arrival
        self.rng = rng
        self.increase = increase
        self.interval = interval
        self.rate_max = rate_max
        self.start = start
        self.scheduled = 0
        self._next = start
        self._after: float | None = None  #: the start after the next, once drawn

    def begin(self, at: float) -> None:
        """Move the whole schedule to start at ``at`` (before the first :meth:`take`)."""
        if self.scheduled:
            raise ValueError("the schedule has started")
        self.start = at
        self._next = at
        self._after = None

    def rate_at(self, t: float) -> float:
        rate = self.base_rate
        if self.increase and self.interval > 0:
            steps = int(max(0.0, t - self.start) // self.interval)
            rate += self.increase * steps
            if self.rate_max is not None:
                rate = min(rate, self.rate_max)
        return max(rate, 1e-9)

    def set_rate(self, rate: float, now: float) -> None:
        """Change the base rate from ``now`` on (the ramp keeps its steps)."""
        old = self.rate_at(now)
        self.base_rate = max(rate, 1e-9)
        new = self.rate_at(now)
        if self._next > now and old > 0:
            self._next = now + (self._next - now) * old / new
        if self._after is not None and self._after > now and old > 0:
            self._after = now + (self._after - now) * old / new

    def peek(self) -> float | None:
        """The next intended start, or None when the run has scheduled everything."""
        if self.calls is not None and self.scheduled >= self.calls:
            return None
        if self.duration is not None and self._next >= self.start + self.duration:
            return None
        return self._next

    def peek_after(self) -> float | None:
        """The intended start after the next, or None (drawn now, in the order
        :meth:`take` would draw it, and kept for it: the schedule is the same)."""
        if self.peek() is None or (self.calls is not None
                                   and self.scheduled + 1 >= self.calls):
            return None
        after = self._after
        if after is None:
            after = self._after = self._following(self._next)
        if self.duration is not None and after >= self.start + self.duration:
            return None
        return after

    def take(self) -> float:
        """Consume the next intended start (call :meth:`peek` first)."""
        t = self._next
        self.scheduled += 1
        after = self._after
        self._after = None
        self._next = self._following(t) if after is None else after
        return t

    def _following(self, t: float) -> float:
        rate = self.rate_at(t)
        if self.arrival == "poisson" and self.rng is not None:
            return t + self.rng.expovariate(rate)
        return t + 1.0 / rate


class CallStart:
    """One call to start now: its intended time, its number, its user (closed model)."""

    __slots__ = ("intended", "number", "user")

    def __init__(self, intended: float, number: int, user: int | None) -> None:
        self.intended = intended
        self.number = number
        self.user = user


class Admission:
    """Which call starts when, numbered how, placed by which user (module docstring)."""

    def __init__(self, pacer: Pacer, *, first_call: int = 0, users: int | None = None,
                 first_user: int = 0) -> None:
        self.pacer = pacer
        self.first_call = first_call
        self.closed_model = bool(users)
        self.lead = 0.0
        self.stopping = False
        self._free_users: deque[int] = deque()  #: closed model: users between calls
        if users:
            self._free_users.extend(range(first_user, first_user + users))
        self._user_of: dict[int, int] = {}  #: call number -> the user placing it
        self._blocks: list[tuple[int, int]] = []  #: (first call index, its number)

    def next_release(self) -> float | None:
        """When the next call is to be released (its intended time less the lead)."""
        if self.stopping:
            return None
        nxt = self.pacer.peek()
        if nxt is None or (self.closed_model and not self._free_users):
            return None
        return nxt - self.lead

    def take(self, now: float) -> CallStart | None:
        """The next call, when its release is due at ``now`` (else None)."""
        if self.stopping:
            return None
        pacer = self.pacer
        nxt = pacer.peek()
        if nxt is None or nxt - self.lead > now:
            return None
        user: int | None = None
        if self.closed_model:
            if not self._free_users:
                return None
            user = self._free_users.popleft()
        intended = pacer.take()
        number = self.call_number(pacer.scheduled - 1)
        if user is not None:
            self._user_of[number] = user
        return CallStart(intended, number, user)

    def follow_wire(self, intended: float, ready: float) -> None:
        """A call's first message was ready to leave at ``ready`` for ``intended`` (rule 1)."""
        error = min(max(ready - intended, -LEAD_ERROR_MAX), LEAD_ERROR_MAX)
        self.lead = min(max(self.lead + LEAD_GAIN * error, 0.0), LEAD_MAX)

    def ended(self, number: int) -> None:
        """Call ``number`` ended: its user is free again (rule 2)."""
        user = self._user_of.pop(number, None)
        if user is not None and not self.stopping:
            self._free_users.append(user)

    def scheduling(self) -> bool:
        """Whether calls are still to be started."""
        return not self.stopping and self.pacer.peek() is not None

    def add_calls(self, n: int, first_number: int) -> None:
        """``n`` more calls to start (a lost worker's), numbered from ``first_number``."""
        pacer = self.pacer
        if pacer.calls is None or n <= 0:
            return
        self._blocks.append((pacer.calls, first_number))
        pacer.calls += n

    def release_calls(self, n: int) -> int:
        """Give up to ``n`` calls not yet started to another worker; returns how many."""
        pacer = self.pacer
        if pacer.calls is None or n <= 0:
            return 0
        given = min(n, max(0, pacer.calls - pacer.scheduled))
        pacer.calls -= given
        return given

    def call_number(self, index: int) -> int:
        """The number of the ``index``-th call started here (from 0) (rule 3)."""
        number, at = self.first_call, 0
        for start, first in self._blocks:
            if index >= start:
                number, at = first, start
        return number + index - at
