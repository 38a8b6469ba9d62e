"""Starting a UAC's calls on time: the admission, the precise start timer, paced GC.

Theory of operation
===================

1. The :class:`~sipload.pacing.Admission` says which call is due when (its release
   leads its intended time by about what building the call costs).
   :meth:`CallStarter.start_due` starts every call due at ``now`` through the runner
   and writes its first message right after, not before its intended instant (a short
   busy wait when the call was built early, :meth:`Pump.write_at
   <sipload.pump.Pump.write_at>`); the admission then learns when that message was
   ready to leave (``follow_wire``), so the lead follows what a build costs and a
   start is never early.
2. A call over the concurrency cap is not started: it ends at once as an overload
   record (every call started ends as a record).
3. Starts are released by a :class:`~sipload.transport.hrtimer.PreciseTimer`
   (``timerfd``) at their intended time, not on the loop's 1 ms tick
   (:meth:`CallStarter.deadline` arms it).  Where there is none, the release instant
   joins the pump's deadline instead.
4. While the precise timer paces starts, the garbage collector runs only in the gaps
   between them: automatic collection is off, and
   :func:`~sipload.transport.loop.collect_owed` runs after a start with at least
   :data:`GC_SLACK` before the next.
5. A start due while the loop is busy reading (a burst of responses) does not wait for
   the whole burst: the pump asks before each message read goes into the UA and before
   each event is delivered (:attr:`Pump.urgent`, :meth:`CallStarter.due_check`), and a
   due start is released there, as if its timer had fired.
6. Work that may wait (a snapshot) yields to a start due within :data:`SNAPSHOT_SLACK`
   of it (:meth:`CallStarter.holds`), and runs right after that start instead; work in
   pieces (a snapshot's histograms) asks whether a piece fits before the next start
   (:meth:`CallStarter.room`).
7. Starts due closer together than a start costs the loop (:attr:`CallStarter.cost`:
   building the call, writing its first message and what that flush runs; followed
   per start, from :data:`CLUSTER_GAP` to begin with; twice as much in the pure build
   as compiled) would leave that far apart: when the start after the next is that
   close, the timer fires earlier by that cost (:attr:`CallStarter.early`), the calls
   of the cluster are built back to back, and each first message is written at its
   intended instant after a short busy wait (:meth:`CallStarter.start_cluster`,
   :meth:`Pump.write_at <sipload.pump.Pump.write_at>`).
8. Waking takes longer the longer the loop slept: on this project's virtual machines a
   start after 1 ms asleep was a few µs late, after 8 ms 0.15 ms (its host deschedules
   an idle virtual CPU).  So when the timer is armed :data:`WAKE_IDLE` or more before
   a release, it fires :attr:`CallStarter.wake` earlier; the call is built, and its
   first message written at its instant as in rule 7.  The wake-ahead follows the
   wire: it grows by how late such a start was ready (at most :data:`WAKE_STEP` a
   time) and shrinks by :data:`WAKE_GAIN` of how long one waited, so a few such
   starts in a hundred are ready late and the rest wait a short while (CPU spent
   waiting, not sleeping).  Whether a start is woken ahead is decided once, when its
   timer is first armed: a datagram read meanwhile shortens the sleep left but does
   not move the timer (one ``timerfd_settime`` per start, not two or three).
9. While starts are being released (:meth:`_on_timer`), a flush's re-arm leaves the
   start timer alone: the lead moves with each start written (``follow_wire``), and
   the timer is armed once for the next start when all are out.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable

from sipload.engine.config import EngineConfig
from sipload.pacing import Admission, Pacer
from sipload.pump import Pump
from sipload.scenario.interpreter import Runner
from sipload.stats.interval import IntervalAccountant
from sipload.stats.records import CallRecord
from sipload.transport.hrtimer import precise_timer
from sipload.transport.loop import collect_owed

GC_SLACK = 0.004
"""While calls are being started, the garbage collector runs only right after a start
with at least this long before the next (rule 4)."""

SNAPSHOT_SLACK = 0.005
"""A snapshot (histogram encoding, a record batch) due less than this before a call start
waits and runs right after that start, so it never delays one (rule 6)."""

INF = float("inf")

CLUSTER_GAP = 0.00015
"""What a start costs the loop, to begin with (rule 7: :attr:`CallStarter.cost`); about
a compiled build's.  Two starts due closer than the cost are built ahead, together,
and each written at its instant."""

COST_GAIN = 0.1
"""How much of one start's cost moves :attr:`CallStarter.cost` (rule 7)."""

COST_MAX = 0.002
"""The most one start's cost counts for (rule 7): a start held up by the host is not
what a start costs."""

CLUSTER_MAX = 8
"""The most calls built ahead in one cluster."""

WAKE_IDLE = 0.002
"""A start the loop will have slept at least this long before (its release this far from
the last time the timer is first armed for it) is woken :attr:`CallStarter.wake` early
(rule 8).  Half a millisecond was tried (bench/README.md): it took a start's p50 on the
wire from ~10 to ~3 µs at 700/s, but every start then spun for its wake-ahead, which
grows in the host's busy spells, and the stalls of those spells (0.2-2.5 ms) are longer
than any wake-ahead."""

WAKE_AHEAD = 0.0003
"""The wake-ahead a run begins with (rule 8): about what waking after a few ms asleep
took at worst on this project's virtual machines."""

WAKE_MIN = 0.00002
"""The least the wake-ahead shrinks to (rule 8)."""

WAKE_MAX = 0.001
"""The most the wake-ahead grows to (rule 8)."""

WAKE_STEP = 0.0001
"""The most the wake-ahead grows after one late start (rule 8): a start held up by the
host for milliseconds moves it by this much only."""

WAKE_GAIN = 0.05
"""How much of a woken start's wait the wake-ahead shrinks by (rule 8)."""

BURST = 10_000
"""The most calls started in one go (a loop that fell far behind catches up in steps)."""


def admission_for(cfg: EngineConfig, rng: random.Random) -> Admission:
    """The pacer and admission of ``cfg``'s calls (rate, ramp, arrivals, numbering, users)."""
    pacer = Pacer(cfg.rate, calls=cfg.calls, duration=cfg.duration, arrival=cfg.arrival,
                  rng=rng, increase=cfg.rate_increase, interval=cfg.rate_interval,
                  rate_max=cfg.rate_max)
    return Admission(pacer, first_call=cfg.first_call, users=cfg.users,
                     first_user=cfg.first_user)


class CallStarter:
    """Starts the calls ``admission`` releases on ``runner`` (module docstring).

    Args:
        t0: the engine's clock zero on ``time.monotonic()``.
        cap: the most calls in flight (``--concurrent``); more end as overloads.
        counts: counts each start and builds overload records.
        ended: gets each overload record (the engine's end of a call).
        after_timer: runs after the precise timer's starts with ``now`` (a due snapshot).
    """

    def __init__(self, admission: Admission, runner: Runner, pump: Pump, *, t0: float,
                 cap: int, counts: IntervalAccountant, ended: Callable[[CallRecord], None],
                 after_timer: Callable[[float], None]) -> None:
        self.admission = admission
        self.runner = runner
        self.pump = pump
        self.t0 = t0
        self.cap = cap
        self.counts = counts
        self.ended = ended
        self.after_timer = after_timer
        self.closed = False
        self.begun = False  #: :meth:`begin` called: calls may be released
        self.timer = precise_timer(pump.loop, self._on_timer)
        self.due = INF  #: ``time.monotonic()`` of the next release armed (rule 5), or INF
        self.releasing = False  #: in :meth:`_on_timer` (the pump may ask again from there)
        pump.urgent = self.due_check
        self.early = 0.0  #: the timer is armed this much before the release (rules 7, 8)
        self._cluster = 0.0  #: :attr:`early` for the cluster of the next start (rule 7)
        self.cost = CLUSTER_GAP  #: what a start costs the loop, followed (rule 7)
        self.wake = WAKE_AHEAD  #: how early the timer fires after a long sleep (rule 8)
        self._woken = False  #: :attr:`early` is the wake-ahead (rule 8)
        self._planned = -1  #: the pacer's ``scheduled`` when :attr:`early` was decided
        self._sleepy = False  #: the next start is woken ahead (rule 8), decided once
        self.gc_paced = False  #: automatic collection is off while starts are paced
        runner.stamp_sends = True
        if self.timer is not None and gc.isenabled():
            gc.disable()  # collections move to the gaps between starts (rule 4)
            self.gc_paced = True

    def now(self) -> float:
        return time.monotonic() - self.t0

    def begin(self, now: float) -> None:
        """The schedule starts when calling does (a worker's Go), not when the socket was
        bound: until then nothing is released, though the pump runs (a worker answers
        its coordinator and the network between Ready and Go)."""
        self.begun = True
        if self.admission.pacer.scheduled == 0:
            self.admission.pacer.begin(now)

    def start_due(self, now: float) -> None:
        """Start every call due at ``now`` (rules 1, 2)."""
        if not self.begun:
            return
        admission, runner, pump, counts, cap = (self.admission, self.runner, self.pump,
                                                self.counts, self.cap)
        for _ in range(BURST):
            start = admission.take(now)
            if start is None:
                return
            counts.call_started(start.intended, now)
            if runner.active >= cap:
                self.ended(counts.overload(start.number, start.intended, now, runner.active))
                continue
            began = time.monotonic()
            rec = runner.start_call(start.number, start.intended, began - self.t0,
                                    start.user).record
            waited = pump.write_at([self.t0 + start.intended])
            spent = time.monotonic() - began - max(waited, 0.0)  # its wait left out
            self.cost += COST_GAIN * (min(spent, COST_MAX) - self.cost)
            if rec.messages and rec.messages[0][1] == "out":
                admission.follow_wire(start.intended,
                                      rec.actual_start - max(waited, 0.0))

    def start_cluster(self, now: float) -> None:
        """Build the cluster of close starts the timer fired early for, then write each
        one's first message at its intended instant (rule 7)."""
        admission, runner, counts, pacer = (self.admission, self.runner, self.counts,
                                            self.admission.pacer)
        whens: list[float] = []
        horizon = now + self.early
        woken = self._woken
        self.early = 0.0
        self._woken = False
        for _ in range(CLUSTER_MAX):
            start = admission.take(horizon)
            if start is None:
                break
            counts.call_started(start.intended, now)
            if runner.active >= self.cap:
                self.ended(counts.overload(start.number, start.intended, now, runner.active))
            else:
                runner.start_call(start.number, start.intended, self.now(), start.user)
                whens.append(self.t0 + start.intended)
            nxt = pacer.peek()
            if nxt is None or nxt - start.intended >= self.cost:
                break
            horizon = nxt
        waited = self.pump.write_at(whens)
        if woken and whens:
            self.follow_wake(waited)

    def follow_wake(self, waited: float) -> None:
        """A start woken early (rule 8) waited ``waited`` seconds for its instant (negative:
        it was ready that late): move the wake-ahead."""
        if waited < 0.0:
            self.wake = min(self.wake + min(-waited, WAKE_STEP), WAKE_MAX)
        else:
            self.wake = max(self.wake - WAKE_GAIN * waited, WAKE_MIN)

    def deadline(self) -> float | None:
        """The next release when there is no precise timer; else arms the timer (rule 3)."""
        release = self.admission.next_release() if self.begun else None
        timer = self.timer
        if timer is None:
            self.due = INF if release is None else self.t0 + release
            return release
        if self.releasing:
            return None  # armed once the starts due are out (:meth:`_on_timer`, rule 9)
        if release is not None:
            pacer = self.admission.pacer
            if self._planned != pacer.scheduled:  # decided once per start (rules 7, 8)
                self._planned = pacer.scheduled
                nxt, after = pacer.peek(), pacer.peek_after()
                self._cluster = (self.cost if nxt is not None and after is not None
                                 and after - nxt < self.cost
                                 and not self.admission.closed_model else 0.0)
                self._sleepy = release - self.now() >= WAKE_IDLE
            wake = self.wake if self._sleepy else 0.0
            self.early = max(self._cluster, wake)
            self._woken = wake > self._cluster
            release -= self.early
        self.due = INF if release is None else self.t0 + release
        if release is None:
            timer.disarm()
        elif timer.armed != self.t0 + release:
            timer.arm(self.t0 + release)
        return None

    def due_check(self) -> None:
        """Release the starts due now (rule 5): the pump calls it before each message read."""
        if time.monotonic() >= self.due and self.begun and not self.releasing:
            self._on_timer()

    def holds(self, when: float) -> bool:
        """Whether work due at ``when`` waits for a call start coming first (rule 6)."""
        if self.timer is None or not self.begun:
            return False
        release = self.admission.next_release()
        return release is not None and release < when + SNAPSHOT_SLACK

    def room(self, need: float) -> bool:
        """Whether work of ``need`` seconds fits before the next call start (rule 6): true
        without a precise timer, before the schedule begins, and when none is left."""
        if self.timer is None or not self.begun:
            return True
        release = self.admission.next_release()
        return release is None or release - self.now() >= need

    def scheduled_all(self) -> bool:
        """Whether every call of the schedule has been taken (started or not)."""
        return self.admission.pacer.peek() is None

    def add_calls(self, n: int, first_number: int) -> None:
        """``n`` more calls to start (a lost worker's), numbered from ``first_number``."""
        self.admission.add_calls(n, first_number)
        self.pump.rearm()

    def release_calls(self, n: int) -> int:
        """Give up to ``n`` calls not yet started away; returns how many were given."""
        given = self.admission.release_calls(n)
        self.pump.rearm()
        return given

    def set_rate(self, rate: float) -> None:
        """Start calls at ``rate`` from now on (the ramp keeps its steps)."""
        self.admission.pacer.set_rate(rate, self.now())
        self.pump.rearm()

    def target_rate(self, now: float) -> float:
        """The rate calls are being started at (0 once nothing is left to start)."""
        admission = self.admission
        return admission.pacer.rate_at(now) if admission.scheduling() else 0.0

    def _on_timer(self) -> None:
        """A call start is due: the precise timer fired (not the loop's tick), or the pump
        found it due between two messages read (rule 5)."""
        if self.closed or self.releasing:
            return
        self.releasing = True
        try:
            if self.early and self.begun:
                self.start_cluster(self.now())
            self.start_due(self.now())
            self.after_timer(self.now())
            if self.gc_paced:
                release = self.admission.next_release()
                collect_owed(release is None or release - self.now() >= GC_SLACK)
        finally:
            self.releasing = False
        self.pump.rearm()

    def close(self) -> None:
        """No more starts: the timer closed, automatic collection back on."""
        self.closed = True
        self.due = INF
        if self.timer is not None:
            self.timer.close()
        if self.gc_paced:
            self.gc_paced = False
            gc.enable()
