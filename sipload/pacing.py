"""When calls should start: the open model's intended start times.

A :class:`Pacer` yields intended start times (seconds since the run began)
for a rate that may ramp up (``--rate-increase D --rate-interval T
--rate-max M``) and may be changed while running (the coordinator moves a lost
worker's share to the others).  Arrivals are evenly spaced or Poisson.  The
engine starts each call at its intended time and measures lateness from it; it
never shifts the schedule to hide a slow generator.
"""

from __future__ import annotations

from typing import Protocol


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

    def begin(self, at: float) -> None:
        """Move the whole schedule to start at ``at`` (before the first :meth:`take`)."""
        if self.scheduled:
            raise ValueError("the schedule has started")
        self.start = at
        self._next = at

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

    def peek(self) -> float | None:
        """The next intended start, or None when the run has scheduled everything."""
        if self.calls is not None and self.scheduled >= self.calls:
            return None
        if self.duration is not None and self._next >= self.start + self.duration:
            return None
        return self._next

    def take(self) -> float:
        """Consume the next intended start (call :meth:`peek` first)."""
        t = self._next
        self.scheduled += 1
        rate = self.rate_at(t)
        if self.arrival == "poisson" and self.rng is not None:
            self._next = t + self.rng.expovariate(rate)
        else:
            self._next = t + 1.0 / rate
        return t
