"""When a worker's run ends: the stop request, its grace, an abort (sans-IO, fed ``now``).

Theory of operation
===================

1. A UAC run ends by itself once its pacer has scheduled every call and none is in
   flight (:meth:`Drain.drained`).  A UAS runs until it is stopped or, given a
   duration, until that has passed (:meth:`Drain.limit`).
2. :meth:`Drain.request` (the coordinator's stop, a threshold, Ctrl-C): nothing more is
   started (the shell stops the admission) and calls in flight get ``grace`` seconds;
   the run ends when none is left or at :attr:`Drain.stop_at`, whichever comes first.
3. A second request, or :meth:`Drain.abort`, ends the run at once.
4. At :attr:`Drain.stop_at` (:meth:`Drain.cut`), calls still in flight end as records:
   ``in-flight`` after a grace, ``aborted`` after an abort, so every call started ends
   as a record.
"""

from __future__ import annotations

from sipload.stats.records import Failure


class Drain:
    """A worker run's stop state (module docstring).

    Attributes:
        stopping: a stop was requested (rule 2).
        aborted: the run was aborted (rule 3).
        stop_at: the run-relative instant the run ends at the latest, or None.
    """

    def __init__(self) -> None:
        self.stopping = False
        self.aborted = False
        self.stop_at: float | None = None

    def limit(self, duration: float) -> None:
        """A UAS runs for ``duration`` seconds at most (rule 1)."""
        self.stop_at = duration

    def request(self, now: float, grace: float) -> bool:
        """Stop with ``grace`` seconds for calls in flight; False when a stop was already
        requested (the caller aborts: rule 3)."""
        if self.stopping:
            return False
        self.stopping = True
        self.stop_at = now + grace
        return True

    def abort(self, now: float) -> None:
        """End at ``now`` (rule 3)."""
        self.aborted = True
        self.stop_at = now

    def cut(self, now: float) -> bool:
        """Whether the run ends at ``now`` with its calls in flight cut (rule 4)."""
        return self.stop_at is not None and now >= self.stop_at

    def failure(self) -> Failure:
        """How calls cut at :attr:`stop_at` failed (rule 4)."""
        return Failure.ABORTED if self.aborted else Failure.IN_FLIGHT

    def drained(self, scheduled_all: bool, active: int) -> bool:
        """Whether a UAC run is over: no call in flight, and none to start (rules 1, 2)."""
        return active == 0 and (self.stopping or scheduled_all)
