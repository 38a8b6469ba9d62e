"""The coordinator's decisions, as a pure class driven by messages and ``now``.

Theory of operation
===================

1. Workers say :class:`Hello`; each gets a :class:`Welcome` with its id, the
   plan and its share: the rate divided evenly among the workers expected, and
   a contiguous range of call numbers (so numbers never collide).
2. When every expected worker is :class:`Ready` (or ``start_timeout`` passed
   with at least one), all get :class:`Go` at once.
3. A worker silent for ``lost_after`` seconds (no heartbeat, records or
   snapshot) is lost: the calls it started and did not report become
   "lost with worker", its unstarted calls and its rate go to the live
   workers (:class:`SetShare`), and the run goes on.  With no worker left the
   run ends, and :attr:`Coordinator.ended` says why.
   A worker numbers the calls it takes over from ``extra_numbers(calls, its id)``
   on (so they never collide with anyone's own range, nor with the rows of the
   lost worker, whose last calls the coordinator may not have heard of).
   A local worker whose process ended before its :class:`Done` (killed, crashed)
   need not be waited for: told of the exit (:meth:`Coordinator.on_exit`), the
   coordinator loses it :data:`EXIT_GRACE` later (time for the last messages it sent
   to come in), the reason naming how it ended ("killed by SIGKILL").
4. Records are acknowledged (:class:`Ack`) after the caller has written them;
   a record acknowledged is never lost.
5. The run is over when every live worker is :class:`Done`.
6. Nothing a worker sends is taken on trust (:meth:`Coordinator.admit`, called
   before anything is written): a message must name the worker's own id, a
   started count may not pass what the worker was given (its share, plus calls
   taken over; in a --duration run, twice what its peak rate allows), a record
   must be whole and well typed (:mod:`sipload.cluster.checks`) and carry a
   call number from the worker's ranges, and a snapshot must be well typed.
   What does not fit is dropped, logged (the first few per worker, as
   ``message_rejected`` events) and counted in :attr:`Coordinator.rejected`;
   the run goes on.  Calls a worker says it started but never reported (its
   Done says more than its records) count as lost with it, so
   ``attempted = succeeded + failed + in flight + lost`` holds whatever it sends.
7. A worker that says Hello once the expected workers' slots are handed out
   (after Go, or beyond ``workers_expected``) joins the run: it gets a share of
   what remains.  In a run bounded by ``--calls`` the workers sharing the run
   are asked to :class:`Release` their unstarted calls down to an even share;
   each answers :class:`Released` with how many it gave back, and once all have
   answered (or are lost or done) the joiner is welcomed with those calls,
   numbered from ``extra_numbers(calls, its id)`` on.  In a run bounded by
   ``--duration`` it is welcomed at once, for the time that is left.  When it is
   :class:`Ready` it gets Go and every running worker's rate becomes an even
   share of the run's rate.  Nothing left to share (or a run stopping) refuses it.
8. At Go, the shares of expected workers that never connected (start_timeout)
   go to the workers that did, as a lost worker's do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from sipload.cluster.checks import check_snapshot
from sipload.cluster.messages import (
    PROTOCOL,
    Ack,
    Done,
    Failed,
    Go,
    Heartbeat,
    Hello,
    Message,
    Ready,
    Records,
    Release,
    Released,
    SetShare,
    Snapshot,
    Stop,
    Welcome,
    extra_numbers,
)
from sipload.stats.recordrows import check_record

Outgoing = list[tuple[bytes, Message]]

REJECT_EVENTS = 10
"""``message_rejected`` events written per worker; later rejections are only counted."""


EXIT_GRACE = 0.5
"""Seconds between a local worker's process ending without Done and its loss: what it
sent before it ended is in by then (loopback), and a Done among it wins."""



@dataclass(slots=True)
class WorkerState:
    """What the coordinator knows of one worker."""

    worker: int
    identity: bytes
    host: str
    pid: int
    version: str
    calls: int | None
    first_call: int
    rate: float
    last_seen: float
    ready: bool = False
    done: bool = False
    lost: bool = False
    started: int = 0  #: calls started, from heartbeats (and Done)
    records: int = 0  #: records received
    cpu: float = 0.0
    loop_lag_ms: float = 0.0
    active: int = 0
    address: str = ""
    final: Done | None = None
    own_calls: int | None = None  #: the share it was given at Welcome (its own numbers)
    rejected: int = 0  #: its messages (and records) dropped by :meth:`Coordinator.admit`
    joined: bool = False  #: came after the expected workers' slots were handed out
    welcomed: bool = True  #: False while a joiner waits for calls released by the others
    waiting_on: set[bytes] = field(default_factory=set)  #: a joiner's donors yet to answer
    releases: list[bytes] = field(default_factory=list)  #: joiners our Release calls are for
    exited: tuple[float, str] | None = None  #: when its local process ended, and how


@dataclass(slots=True)
class Coordinator:
    """Workers, liveness and rate shares (see the module docstring)."""

    plan: dict[str, Any]
    workers_expected: int
    rate: float
    calls: int | None
    users: int | None = None
    lost_after: float = 3.0
    start_timeout: float = 30.0
    version: str = ""
    created: float = 0.0
    workers: dict[bytes, WorkerState] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    went: bool = False
    stopping: bool = False
    ended: str = ""  #: why the run ended early ("" while running or ended normally)
    lost_calls: int = 0
    _next_worker: int = 0
    _calls_assigned: int = 0
    _refusals: dict[tuple[str, str, str], int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)  #: dropped, by message type
    went_at: float = 0.0
    rate_max: float | None = None  #: the run's --rate-max (bounds a --duration worker)
    rate_increase: float = 0.0
    rate_interval: float = 0.0
    _hello_of: dict[bytes, Hello] = field(default_factory=dict)  #: joiners not yet welcomed
    _strangers: int = 0  #: messages from peers that never said Hello

    # ------------------------------------------------------------------ shares

    def _share(self, index: int) -> tuple[float, int | None, int]:
        """Rate, calls and first call number of worker ``index`` of those expected."""
        n = max(self.workers_expected, 1)
        rate = self.rate / n
        if self.calls is None:
            return rate, None, index * 1_000_000_000
        base, extra = divmod(self.calls, n)
        count = base + (1 if index < extra else 0)
        first = index * base + min(index, extra)
        return rate, count, first

    # ------------------------------------------------------------------ checks

    def started_limit(self, w: WorkerState, now: float) -> float:
        """The most calls worker ``w`` can honestly have started by ``now``."""
        if w.calls is not None:
            return float(w.calls)
        if self.users:
            return math.inf  # closed model: as fast as calls end
        elapsed = max(0.0, now - self.went_at) if self.went else 0.0
        peak = self.rate
        if self.rate_increase and self.rate_interval > 0:
            peak += self.rate_increase * (elapsed / self.rate_interval + 1)
        if self.rate_max is not None:
            peak = min(peak, self.rate_max)
        return 2 * peak * (elapsed + 5.0) + 100

    def _number_ok(self, w: WorkerState, n: int) -> bool:
        if w.own_calls is None:  # a --duration run: a block of a billion numbers each
            return w.first_call <= n < w.first_call + 1_000_000_000
        if w.first_call <= n < w.first_call + w.own_calls:
            return True
        extra = extra_numbers(self.calls or 0, w.worker)
        return extra <= n < extra + (self.calls or 0)

    def _reject(self, w: WorkerState | None, kind: str, reason: str, now: float,
                n: int = 1) -> None:
        self.rejected[kind] = self.rejected.get(kind, 0) + n
        if w is not None:
            w.rejected += n
            if w.rejected - n >= REJECT_EVENTS:
                return
        else:
            self._strangers += n
            if self._strangers - n >= REJECT_EVENTS:
                return
        self.events.append({"t": now, "event": "message_rejected", "type": kind,
                            "worker": w.worker if w is not None else None,
                            "count": n, "reason": reason[:200]})

    def admit(self, identity: bytes, msg: Message, now: float) -> Message | None:
        """Check ``msg`` against what its worker was given; returns what may be acted
        on (a record batch without its bad records), or None to drop it (see rule 6)."""
        kind = type(msg).__name__
        if isinstance(msg, Hello):
            return msg
        w = self.workers.get(identity)
        if w is None:
            self._reject(None, kind, "from a peer that did not say Hello", now)
            return None
        if w.lost:
            return msg  # late words of a lost worker: ignored by on_message
        claimed = getattr(msg, "worker", w.worker)
        if claimed != w.worker:
            self._reject(w, kind, f"claims to be worker {claimed}, is {w.worker}", now)
            return None
        limit = self.started_limit(w, now)
        if isinstance(msg, Heartbeat | Records | Done) and not 0 <= msg.started <= limit:
            self._reject(w, kind, f"started {msg.started} is beyond the worker's share "
                         f"({limit:g})", now)
            if not isinstance(msg, Records):
                return None
            msg = replace(msg, started=0)  # its records are judged one by one below
        if isinstance(msg, Heartbeat | Done) and any(v < 0 for v in (
                msg.active if isinstance(msg, Heartbeat) else msg.in_flight,
                msg.cpu if isinstance(msg, Heartbeat) else msg.succeeded,
                msg.loop_lag_ms if isinstance(msg, Heartbeat) else msg.failed)):
            self._reject(w, kind, "a negative count", now)
            return None
        if isinstance(msg, Snapshot):
            why = check_snapshot(msg.snapshot)
            if why is None and msg.snapshot.get("worker") != w.worker:
                why = "snapshot of another worker"
            if why is not None:
                self._reject(w, kind, why, now)
                return None
        if isinstance(msg, Records):
            good: list[dict[str, Any]] = []
            first_why = ""
            for r in msg.records:
                why = check_record(r)
                if why is None and not self._number_ok(w, int(r["call_number"])):
                    why = f"call number {r['call_number']} is not in the worker's ranges"
                if why is None and int(r.get("worker", w.worker)) != w.worker:
                    why = "record of another worker"
                if why is None and w.records + len(good) + 1 > limit:
                    why = f"more records than the worker's share ({limit:g})"
                if why is None:
                    good.append(r)
                elif not first_why:
                    first_why = why
            bad = len(msg.records) - len(good)
            if bad:
                self._reject(w, "record", first_why, now, bad)
                return replace(msg, records=good)
        return msg

    def live(self) -> list[WorkerState]:
        return [w for w in self.workers.values() if not w.lost]

    def _holding(self) -> list[WorkerState]:
        """Workers that hold a share of the run: welcomed, live, not done."""
        return [w for w in self.workers.values() if w.welcomed and not w.lost and not w.done]

    def _running(self) -> list[WorkerState]:
        """Workers that share the run's rate: holding a share and started (Go)."""
        return [w for w in self._holding() if w.ready and self.went]

    # ------------------------------------------------------------------ input

    def on_message(self, identity: bytes, msg: Message, now: float) -> Outgoing:
        """React to one message from a worker; returns what to send."""
        w = self.workers.get(identity)
        if isinstance(msg, Hello):
            return self._hello(identity, msg, now)
        if w is None or w.lost:
            return []
        w.last_seen = now
        if isinstance(msg, Ready):
            w.ready = True
            w.address = f"{msg.address}:{msg.port}"
            if self.went and not self.stopping:  # a late or joining worker starts at once
                self.events.append({"t": now, "event": "worker_go", "worker": w.worker})
                return [(identity, Go()), *self._reshare(0)]
            return self._maybe_go(now)
        if isinstance(msg, Released):
            return self._released(w, msg.calls, now)
        if isinstance(msg, Heartbeat):
            w.started = max(w.started, msg.started)
            w.cpu, w.loop_lag_ms, w.active = msg.cpu, msg.loop_lag_ms, msg.active
            return []
        if isinstance(msg, Records):
            w.records += len(msg.records)
            # a record is a started call: a heartbeat's count may lag behind the batch
            w.started = max(w.started, msg.started, w.records)
            return [(identity, Ack(msg.seq))]
        if isinstance(msg, Snapshot):
            return []
        if isinstance(msg, Done):
            w.done = True
            w.final = msg
            w.started = max(msg.started, w.records)
            out_done = self._unblock(w, now)
            self.events.append({"t": now, "event": "worker_done", "worker": w.worker,
                                "started": msg.started, "records": msg.records_sent})
            if w.started > w.records:  # started, never reported: lost with the worker
                missing = w.started - w.records
                self.lost_calls += missing
                self.events.append({"t": now, "event": "calls_unreported",
                                    "worker": w.worker, "calls_lost": missing})
            return out_done
        if isinstance(msg, Failed):
            self.events.append({"t": now, "event": "worker_failed", "worker": w.worker,
                                "reason": msg.reason})
            return self._lose(w, now, f"failed: {msg.reason}")
        return []

    def _refuse(self, identity: bytes, host: str, reason: str, now: float) -> Outgoing:
        self.events.append({"t": now, "event": "worker_refused", "host": host,
                            "reason": reason})
        return [(identity, Stop(0.0, abort=True))]

    def _users(self) -> int | None:
        return max(1, self.users // max(self.workers_expected, 1)) if self.users else None

    def _hello(self, identity: bytes, msg: Hello, now: float) -> Outgoing:
        if identity in self.workers:
            return []
        if msg.protocol != PROTOCOL:
            return self._refuse(identity, msg.host, f"protocol {msg.protocol} (this "
                                f"coordinator speaks {PROTOCOL}: run the same sipload)", now)
        if self.stopping or self.ended:
            return self._refuse(identity, msg.host, "the run is stopping", now)
        if self.went or self._next_worker >= self.workers_expected:
            return self._join(identity, msg, now)
        index = self._next_worker
        self._next_worker += 1
        rate, calls, first = self._share(index)
        w = WorkerState(index, identity, msg.host, msg.pid, msg.version, calls, first, rate, now,
                        own_calls=calls)
        self.workers[identity] = w
        self.events.append({"t": now, "event": "worker_joined", "worker": index,
                            "host": msg.host, "pid": msg.pid, "version": msg.version,
                            "build": msg.build, "rate": rate, "calls": calls, "first_call": first})
        return [(identity, Welcome(index, self.plan, rate, calls, first, self._users()))]

    # ------------------------------------------------------------------ joining

    def _join(self, identity: bytes, msg: Hello, now: float) -> Outgoing:
        """A worker beyond the expected slots: see rule 6 of the module docstring."""
        holding = self._holding()
        if not holding:
            return self._refuse(identity, msg.host, "no worker left to share with", now)
        index = self._next_worker
        if self.calls is None:
            plan = self.plan
            duration = self.plan.get("duration")
            if self.went and duration is not None:
                left = float(duration) - (now - self.went_at)
                if left <= 0:
                    return self._refuse(identity, msg.host, "the run has stopped starting "
                                        "calls", now)
                plan = dict(self.plan, duration=left)
            self._next_worker += 1
            rate = self.rate / (len(holding) + 1)
            w = WorkerState(index, identity, msg.host, msg.pid, msg.version, None,
                            index * 1_000_000_000, rate, now, joined=True)
            self.workers[identity] = w
            self._joined_event(w, msg, now)
            return [(identity, Welcome(index, plan, rate, None, w.first_call, self._users()))]
        unstarted = {x.identity: max(0, (x.calls or 0) - x.started) for x in holding}
        keep = sum(unstarted.values()) // (len(holding) + 1)
        asks = {ident: n - keep for ident, n in unstarted.items() if n > keep}
        if not asks:
            return self._refuse(identity, msg.host, "no calls left to share", now)
        self._next_worker += 1
        w = WorkerState(index, identity, msg.host, msg.pid, msg.version, 0,
                        extra_numbers(self.calls, index), 0.0, now, joined=True,
                        welcomed=False, waiting_on=set(asks))
        self.workers[identity] = w
        self.events.append({"t": now, "event": "worker_joining", "worker": index,
                            "host": msg.host, "pid": msg.pid, "asked": sum(asks.values())})
        self._hello_of[identity] = msg
        out: Outgoing = []
        for ident, n in asks.items():
            self.workers[ident].releases.append(identity)
            out.append((ident, Release(n)))
        return out

    def _joined_event(self, w: WorkerState, msg: Hello, now: float) -> None:
        self.events.append({"t": now, "event": "worker_joined", "worker": w.worker,
                            "host": msg.host, "pid": msg.pid, "version": msg.version,
                            "build": msg.build, "rate": w.rate, "calls": w.calls,
                            "first_call": w.first_call, "mid_run": True})

    def _released(self, donor: WorkerState, calls: int, now: float) -> Outgoing:
        """A donor gave back ``calls`` unstarted calls for the joiner first in its queue."""
        if not donor.releases:
            return []  # not asked: nothing to account (a confused peer)
        joiner = self.workers.get(donor.releases.pop(0))
        given = max(0, min(calls, (donor.calls or 0) - donor.started))
        if donor.calls is not None:
            donor.calls -= given
        self.events.append({"t": now, "event": "calls_released", "worker": donor.worker,
                            "calls": given, "to": joiner.worker if joiner else None})
        if joiner is None or joiner.lost or joiner.welcomed:
            return self._reshare(given)  # the joiner went away meanwhile
        joiner.calls = (joiner.calls or 0) + given
        joiner.waiting_on.discard(donor.identity)
        return self._maybe_welcome(joiner, now)

    def _unblock(self, donor: WorkerState, now: float) -> Outgoing:
        """A donor lost or done before answering: its joiners wait for it no more."""
        out: Outgoing = []
        for ident in donor.releases:
            joiner = self.workers.get(ident)
            if joiner is not None and not joiner.welcomed and not joiner.lost:
                joiner.waiting_on.discard(donor.identity)
                out.extend(self._maybe_welcome(joiner, now))
        donor.releases.clear()
        return out

    def _maybe_welcome(self, w: WorkerState, now: float) -> Outgoing:
        if w.waiting_on or w.welcomed:
            return []
        msg = self._hello_of.pop(w.identity, None)
        if not w.calls or self.stopping:
            del self.workers[w.identity]
            return self._refuse(w.identity, w.host, "the run is stopping" if self.stopping
                                else "no calls left to share", now)
        w.welcomed = True
        w.own_calls = w.calls  # its own numbers: the start of its block (rule 7)
        w.rate = self.rate / max(len(self._holding()), 1)
        if msg is not None:
            self._joined_event(w, msg, now)
        return [(w.identity, Welcome(w.worker, self.plan, w.rate, w.calls, w.first_call,
                                     self._users()))]

    def on_refused(self, now: float, host: str, reason: str, key: str = "") -> None:
        """A peer the channel refused (CurveZMQ): one event per host, key and reason
        (a refused peer may retry many times), with how often in :attr:`refusals`."""
        k = (host, key, reason)
        self._refusals[k] = self._refusals.get(k, 0) + 1
        if self._refusals[k] == 1:
            self.events.append({"t": now, "event": "worker_refused", "host": host or "unknown",
                                "key": key, "reason": reason})

    @property
    def refusals(self) -> int:
        return sum(self._refusals.values())

    def _maybe_go(self, now: float) -> Outgoing:
        if self.went:
            return []
        ready = [w for w in self._holding() if w.ready]
        if len(ready) >= self.workers_expected or (
                ready and now - self.created >= self.start_timeout):
            self.went = True
            self.went_at = now
            self.events.append({"t": now, "event": "go", "workers": len(ready)})
            out: Outgoing = []
            for w in ready:
                w.last_seen = now  # silent while waiting for Go: liveness counts from here
                out.append((w.identity, Go()))
            # the shares of expected workers that never said Hello (rule 7)
            missing = range(self._next_worker, self.workers_expected)
            unassigned = sum(self._share(i)[1] or 0 for i in missing)
            if missing:
                self.events.append({"t": now, "event": "workers_missing",
                                    "workers": len(missing), "calls": unassigned})
            self._next_worker = max(self._next_worker, self.workers_expected)
            return out + self._reshare(unassigned)
        return []

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> Outgoing:
        """Liveness and start checks; call a few times a second."""
        out: Outgoing = []
        for w in list(self.workers.values()):
            if not self.went:
                break  # workers heartbeat once running; before Go, start_timeout rules
            if w.lost or w.done:
                continue
            if w.exited is not None and now - w.exited[0] >= EXIT_GRACE:
                out.extend(self._lose(w, now, w.exited[1]))
            elif now - w.last_seen > self.lost_after:
                out.extend(self._lose(w, now, f"silent for {now - w.last_seen:.1f} s"))
        if not self.went:
            out.extend(self._maybe_go(now))
            if not self.workers and now - self.created > self.start_timeout:
                self.ended = "no worker connected"
        return out

    def on_exit(self, host: str, pid: int, how: str, now: float) -> None:
        """A local worker's process (``pid`` on ``host``, this coordinator's) ended,
        ``how`` saying so ("killed by SIGKILL"): lost :data:`EXIT_GRACE` later unless its
        Done comes (rule 3)."""
        for w in self.workers.values():
            if w.pid == pid and w.host == host and w.exited is None:
                w.exited = (now, how)

    def _lose(self, w: WorkerState, now: float, why: str) -> Outgoing:
        w.lost = True
        lost_calls = max(0, w.started - w.records)
        self.lost_calls += lost_calls
        self.events.append({"t": now, "event": "worker_lost", "worker": w.worker,
                            "reason": why, "calls_lost": lost_calls, "started": w.started,
                            "records": w.records})
        self._hello_of.pop(w.identity, None)
        out = self._unblock(w, now)
        if not self._holding():
            if not any(x.done for x in self.workers.values()):
                self.ended = f"no worker left (worker {w.worker} {why})"
            return out
        unstarted = 0 if w.calls is None else max(0, w.calls - w.started)
        w.rate = 0.0
        return out + self._reshare(unstarted)

    def _reshare(self, calls: int) -> Outgoing:
        """Deal ``calls`` unstarted calls evenly to the workers holding a share, and make
        every running worker's rate an even share of the run's (before Go: every
        worker holding a share); one :class:`SetShare` to each worker that changed."""
        holding = self._holding()
        adds: dict[bytes, int] = {}
        if calls > 0 and self.calls is not None and holding:
            base, rest = divmod(calls, len(holding))
            for i, x in enumerate(holding):
                add = base + (1 if i < rest else 0)
                if add:
                    x.calls = (x.calls or 0) + add
                    adds[x.identity] = add
        sharing = {x.identity for x in (self._running() if self.went else holding)}
        rate = self.rate / len(sharing) if sharing else 0.0
        out: Outgoing = []
        for x in holding:
            changed = x.identity in sharing and abs(x.rate - rate) > 1e-9 * max(rate, 1.0)
            if changed:
                x.rate = rate
            if changed or x.identity in adds:
                out.append((x.identity, SetShare(x.rate, adds.get(x.identity, 0))))
        return out

    def stop(self, now: float, grace: float, abort: bool = False) -> Outgoing:
        self.stopping = True
        self.events.append({"t": now, "event": "stop", "grace": grace, "abort": abort})
        out: Outgoing = []
        for w in list(self.workers.values()):
            if not w.welcomed and not w.lost:  # a joiner still waiting for its calls
                del self.workers[w.identity]
                self._hello_of.pop(w.identity, None)
                out.extend(self._refuse(w.identity, w.host, "the run is stopping", now))
        return out + [(w.identity, Stop(grace, abort)) for w in self.live() if not w.done]

    # ------------------------------------------------------------------ results

    @property
    def finished(self) -> bool:
        if self.ended:
            return True
        live = self.live()
        return (self.went and bool(live) and all(w.done for w in live)) or (
            self.went and not live)

    def totals(self) -> dict[str, int]:
        started = sum(w.started for w in self.workers.values())
        return {"workers": len(self.workers), "lost_workers": sum(w.lost for w in
                                                                  self.workers.values()),
                "started": started, "records": sum(w.records for w in self.workers.values()),
                "lost_with_worker": self.lost_calls,
                "rejected_messages": sum(self.rejected.values())}
