"""The sipload UAC process that ``bench/ua_bench.py`` measures: N basic calls at rate R.

Two modes, one process each:

``--mode ua`` (default)
    A tight UA loop: its own asyncio loop (uvloop where installed) with a
    :class:`~sipload.transport.TransportSet` and a :class:`~sipload.ua.agent.UserAgent`
    (``auto_ack`` on), pumped directly, no scenario layer.  Each call: INVITE with an
    audio offer, 100/180/200, ACK (by the UA), BYE at once on the 200 (no pause), 200.
    One ``loop.call_at`` timer for the UA's next deadline and the next call start.
``--mode engine``
    The same calls through the YAML scenario interpreter: :class:`sipload.engine.Engine`
    running ``bench/basic_call_nopause.yaml`` (``--scenario``), as a load-run worker
    does, so the interpreter's overhead shows beside the bare UA's.  It keeps wire
    traces as ``sipload run`` does unless told otherwise (``--trace failed``: every
    call's messages until it ends); ``--trace none`` leaves them out.

``--hold`` (ua mode) sends no BYE: the calls stay established.  Memory is measured
in two halves: N/2 calls, wait for every answer and ``--settle`` seconds (long
enough for the INVITE transactions' Timer M, 64·T1, to end them; pass ``--t1`` to
shorten it), RSS; the other N/2 the same way, RSS again.  The second half's growth
divided by N/2 is the memory of a held call once transaction memory is being
reused (what a long run sees); growth from before the first call is reported too.
With ``--tracemalloc`` the Python heap the calls hold is traced as well (traced
bytes after the second half less before the first call, per held call: what the
UA keeps, without the allocator's free lists and arenas that RSS also counts).

``--mode engine --hold`` runs ``bench/hold_call.yaml`` (``--scenario``): every call
pauses an hour after its ACK.  Once all calls are started and ``--settle`` seconds
have passed, RSS and (``--tracemalloc``) traced bytes are read: per held call =
growth since before the first call / calls held.  That is the UA's call plus the
interpreter's call instance and its record as it waits, what a worker holds.

Calls start on an open model at ``start + i / rate``.  At the end one JSON object
goes to stdout: calls, completed, failed (with reasons), retransmissions, late
starts, the achieved start rate, wall and in-process CPU seconds of the calling
phase, and the RSS figures.  ``--profile-out FILE`` runs the calling phase under
cProfile and dumps the stats to FILE.

    python3 bench/ua_uac.py --target 127.0.0.1:5080 --calls 12000 --rate 800
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import resource
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: this checkout's sipload, not an installed one
    sys.path.insert(0, str(ROOT))

from sipload.sip.transaction import TimerConfig  # noqa: E402
from sipload.stats.interval import LATE_AFTER  # noqa: E402
from sipload.transport import Peer, TransportSet  # noqa: E402
from sipload.transport.loop import loop_name, new_event_loop, tune_gc  # noqa: E402
from sipload.ua.agent import UAConfig, UserAgent  # noqa: E402
from sipload.ua.events import Event, EventType  # noqa: E402
from sipload.ua.ids import IdGenerator  # noqa: E402

if TYPE_CHECKING:
    from sipload.engine import Engine

E = EventType
HERE = Path(__file__).resolve().parent
NOPAUSE = HERE / "basic_call_nopause.yaml"
HOLD = HERE / "hold_call.yaml"

OFFER = (b"v=0\r\no=sipload 1 1 IN IP4 127.0.0.1\r\ns=sipload\r\nc=IN IP4 127.0.0.1\r\n"
         b"t=0 0\r\nm=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
         b"a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n")
"""The audio offer of scenarios/basic_call.yaml's ``sdp: offer`` (same size and codecs)."""


def rss_kib() -> int:
    """This process's resident set size, KiB (/proc/self/status VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


class UacDriver:
    """N calls at rate R on one UA, pumped by hand (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, target: tuple[str, int], calls: int,
                 rate: float, *, hold: bool, t1: float) -> None:
        self.loop = loop
        self.target = target
        self.calls = calls
        self.limit = calls  #: calls that may start in the current phase
        self.rate = rate
        self.hold = hold
        self.t1 = t1
        self.ua: UserAgent | None = None
        self.tp: TransportSet | None = None
        self.peer: Peer = ("udp", target[0], target[1])
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.answered = 0
        self.late = 0
        self.reasons: Counter[str] = Counter()
        self.t_start = 0.0
        self.first_start = 0.0
        self.last_start = 0.0
        self.last_end = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._done: asyncio.Future[None] | None = None
        self._to = ""
        self._from = ""

    async def open(self) -> None:
        self.tp = TransportSet(self._on_message, self._on_error, loop=self.loop,
                               on_batch=self._on_batch)
        host, port = await self.tp.listen("udp", "127.0.0.1", 0)
        timers = TimerConfig(t1=self.t1) if self.t1 != TimerConfig().t1 else TimerConfig()
        cfg = UAConfig(host=host, port=port, transport="udp", auto_ack=True, timers=timers,
                       user_agent="sipload-bench")
        self.ua = UserAgent(cfg, IdGenerator(f"b{os.getpid():x}x"))
        self._to = f"<sip:service@{self.target[0]}:{self.target[1]}>"
        self._from = f"<sip:sipload@{host}:{port}>"

    async def run(self, limit: int | None = None) -> None:
        """Start calls (up to ``limit`` in all) until they are done (or, held, answered)."""
        self.limit = self.calls if limit is None else limit
        self._done = self.loop.create_future()
        self.t_start = self.loop.time() + 0.01 - self.started / self.rate
        self._arm(self.t_start + self.started / self.rate)
        self._check_done()
        await self._done

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.tp is not None:
            await self.tp.close()

    # ---------------------------------------------------------------- the pump

    def _on_message(self, data: bytes, peer: Peer, stamp: float) -> None:
        ua = self.ua
        assert ua is not None
        ua.receive(data, peer, stamp)
        self._pump()

    def _on_batch(self, batch: list[tuple[bytes, Peer, float]]) -> None:
        """One read of the UDP socket: every datagram into the UA, then one pump."""
        ua = self.ua
        assert ua is not None
        for data, peer, stamp in batch:
            ua.receive(data, peer, stamp)
        self._pump()

    def _on_error(self, peer: Peer, reason: str) -> None:
        ua = self.ua
        assert ua is not None
        ua.transport_error(peer, self.loop.time(), reason)
        self._pump()

    def _pump(self) -> None:
        ua = self.ua
        tp = self.tp
        assert ua is not None and tp is not None
        send_many = tp.send_many
        while True:
            out = ua.outgoing()
            if out:
                send_many(out)
            ev = ua.next_event()
            if ev is None and not out:
                break
            while ev is not None:
                self._on_event(ev)
                ev = ua.next_event()
        self._rearm()

    def _on_event(self, ev: Event) -> None:
        t = ev.type
        if t is E.CALL_ANSWERED:
            self.answered += 1
            if self.hold:
                self._check_done()
            else:
                assert self.ua is not None
                self.ua.call_terminate(ev.cid, ev.did, self.loop.time())
        elif t is E.CALL_RELEASED:
            self.last_end = ev.time
            if ev.reason == "BYE answered":
                self.completed += 1
            else:
                self.failed += 1
                self.reasons[ev.reason] += 1
            self._check_done()

    def _check_done(self) -> None:
        finished = self.answered + self.failed if self.hold else self.completed + self.failed
        if finished >= self.limit and self._done is not None and not self._done.done():
            self._done.set_result(None)

    # ---------------------------------------------------------------- the one timer

    def _next_start(self) -> float:
        if self.started >= self.limit:
            return float("inf")
        return self.t_start + self.started / self.rate

    def _rearm(self) -> None:
        ua = self.ua
        assert ua is not None
        d = ua.next_deadline()
        when = self._next_start()
        if d is not None and d < when:
            when = d
        self._arm(when)

    def _arm(self, when: float) -> None:
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when != float("inf"):
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        armed = self._timer_at
        self._timer_at = float("inf")
        ua = self.ua
        assert ua is not None
        now = max(self.loop.time(), armed)  # the loop's clock is coarse: armed is due
        ua.handle_timers(now)
        while self.started < self.limit:
            intended = self.t_start + self.started / self.rate
            if intended > now:
                break
            self._start_call(ua, intended, now)
        self._pump()

    def _start_call(self, ua: UserAgent, intended: float, now: float) -> None:
        if self.started == 0:
            self.first_start = now
        self.started += 1
        self.last_start = now
        if now - intended > LATE_AFTER:
            self.late += 1
        invite = ua.call_build_initial_invite(self._to, self._from)
        invite.set_body(OFFER, "application/sdp")
        ua.call_send_initial_invite(invite, now)

    def in_flight(self) -> int:
        return self.ua.call_count() if self.ua is not None else 0


def calling_phase(loop: asyncio.AbstractEventLoop, run: Coroutine[Any, Any, Any],
                  args: argparse.Namespace) -> tuple[bool, float, float]:
    """Run the calls (under cProfile with ``--profile-out``): (timed out, CPU s, wall s)."""
    profiler = cProfile.Profile() if args.profile_out else None
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    if profiler is not None:
        profiler.enable()
    timed_out = False
    try:
        loop.run_until_complete(asyncio.wait_for(run, args.max_seconds))
    except TimeoutError:
        timed_out = True
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile_out)
    return timed_out, cpu_seconds() - cpu0, time.monotonic() - wall0


def run_ua(args: argparse.Namespace) -> dict[str, Any]:
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    drv = UacDriver(loop, hostport(args.target), args.calls, args.rate, hold=args.hold,
                    t1=args.t1)
    loop.run_until_complete(drv.open())
    tune_gc()  # as a worker process does
    rss_before = rss_kib()
    if args.hold:
        return hold_ua(args, loop, drv, rss_before)
    if not args.gc:
        gc.disable()
    timed_out, cpu_s, wall_s = calling_phase(loop, drv.run(), args)
    gc.enable()
    assert drv.ua is not None
    result = {
        "mode": "ua", "loop": loop_name(loop), "gc": args.gc, "calls": args.calls,
        "rate": args.rate, "started": drv.started, "completed": drv.completed,
        "failed": args.calls - drv.completed, "reasons": dict(drv.reasons),
        "timed_out": timed_out, "retransmissions": drv.ua.retransmissions, "late": drv.late,
        "achieved_rate": _rate(drv.started, drv.first_start, drv.last_start),
        "throughput": _rate(drv.completed + 1, drv.first_start, drv.last_end),
        "wall_s": wall_s, "cpu_s": cpu_s,
        "rss_before_kib": rss_before, "rss_after_kib": rss_kib(),
        "transactions_left": drv.ua.transaction_count(),
    }
    loop.run_until_complete(drv.close())
    loop.close()
    return result


def hold_ua(args: argparse.Namespace, loop: asyncio.AbstractEventLoop, drv: UacDriver,
            rss_before: int) -> dict[str, Any]:
    """Two halves of held calls, RSS after each has settled (see the module docstring)."""
    half = args.calls // 2
    rss: list[int] = []
    traced: list[int] = []
    timed_out = False
    if args.tracemalloc:
        gc.collect()
        tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0] if args.tracemalloc else 0
    for limit in (half, args.calls):
        try:
            loop.run_until_complete(asyncio.wait_for(drv.run(limit), args.max_seconds))
        except TimeoutError:
            timed_out = True
            break
        loop.run_until_complete(asyncio.sleep(args.settle))  # timers keep running meanwhile
        gc.collect()
        rss.append(rss_kib())
        if args.tracemalloc:
            traced.append(tracemalloc.get_traced_memory()[0])
    assert drv.ua is not None
    held = drv.in_flight()
    result = {
        "mode": "ua-hold", "loop": loop_name(loop), "calls": args.calls, "rate": args.rate,
        "started": drv.started, "answered": drv.answered, "held": held,
        "failed": args.calls - drv.answered, "reasons": dict(drv.reasons),
        "timed_out": timed_out, "retransmissions": drv.ua.retransmissions, "late": drv.late,
        "settle_s": args.settle, "t1": args.t1, "rss_before_kib": rss_before,
        "rss_half_kib": rss[0] if rss else 0, "rss_all_kib": rss[-1] if len(rss) == 2 else 0,
        "transactions_left": drv.ua.transaction_count(),
    }
    if len(rss) == 2 and held:
        result["kib_per_call"] = (rss[1] - rss[0]) / max(args.calls - half, 1)
        result["kib_per_call_from_start"] = (rss[1] - rss_before) / held
    if len(traced) == 2 and held:
        result["traced_kib_per_call"] = (traced[1] - traced0) / 1024 / held
        result["traced_kib_per_call_second_half"] = (traced[1] - traced[0]) / 1024 / max(
            args.calls - half, 1)
    loop.run_until_complete(drv.close())
    loop.close()
    return result


def _rate(n: int, first: float, last: float) -> float:
    if n < 2 or last <= first:
        return 0.0
    return (n - 1) / (last - first)


class Tally:
    """What the driver reads from the engine's records, taken as each batch arrives
    and the records then dropped, as a worker streams them out: kept whole, 12,000
    records made the cyclic collector's full collections traverse them all (15% of
    the engine run's samples, none in a worker)."""

    def __init__(self) -> None:
        self.started = 0
        self.ok = 0
        self.failed_before_hold = 0
        self.late = 0
        self.last_end = 0.0
        self.reasons: Counter[str] = Counter()
        self.starts: list[float] = []

    def add(self, batch: list[dict[str, Any]]) -> None:
        for r in batch:
            self.started += 1
            start = float(r["actual_start"])
            self.starts.append(start)
            self.last_end = max(self.last_end, float(r["end"]))
            if start - float(r["intended_start"]) > LATE_AFTER:
                self.late += 1
            if r["result"] == "success":
                self.ok += 1
                continue
            self.reasons[f"{r['failure']} {r['detail']}".strip()] += 1
            if r["result"] == "failed" and r["failure"] != "in_flight":
                self.failed_before_hold += 1


def start_engine(args: argparse.Namespace, *, stop_grace: float
                 ) -> tuple[Engine, asyncio.AbstractEventLoop, Tally]:
    """``--mode engine``'s engine running ``--scenario`` on a loop of its own, its socket
    bound and the collector tuned as a worker process's; the tally its records go to."""
    from sipload.engine import Engine, EngineConfig
    from sipload.scenario.loader import load_file

    tally = Tally()
    timers = TimerConfig(t1=args.t1) if args.t1 != TimerConfig().t1 else TimerConfig()
    engine = Engine(EngineConfig(program=load_file(args.scenario), target=hostport(args.target),
                                 rate=args.rate, calls=args.calls, timers=timers, seed=1,
                                 stop_grace=stop_grace, trace=args.trace),
                    on_records=tally.add)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(engine.start())
    tune_gc()  # as a worker process does
    return engine, loop, tally


def hold_engine(args: argparse.Namespace) -> dict[str, Any]:
    """Calls held by the engine (see the module docstring): memory per held call."""
    engine, loop, tally = start_engine(args, stop_grace=1.0)
    gc.collect()
    rss_before = rss_kib()
    if args.tracemalloc:
        tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0] if args.tracemalloc else 0
    task = loop.create_task(engine.run())
    loop.run_until_complete(asyncio.sleep(args.calls / args.rate + args.settle))
    gc.collect()
    rss_all = rss_kib()
    traced = tracemalloc.get_traced_memory()[0] if args.tracemalloc else 0
    held = engine.runner.active if engine.runner is not None else 0
    engine.abort()
    loop.run_until_complete(task)
    loop.close()
    result: dict[str, Any] = {
        "mode": "engine-hold", "loop": loop_name(loop), "scenario": str(args.scenario),
        "calls": args.calls, "rate": args.rate, "held": held,
        "failed_before_hold": tally.failed_before_hold,
        "settle_s": args.settle, "t1": args.t1, "rss_before_kib": rss_before,
        "rss_all_kib": rss_all,
    }
    if held:
        result["kib_per_call_from_start"] = (rss_all - rss_before) / held
        if args.tracemalloc:
            result["traced_kib_per_call"] = (traced - traced0) / 1024 / held
    return result


def run_engine(args: argparse.Namespace) -> dict[str, Any]:
    engine, loop, tally = start_engine(args, stop_grace=5.0)
    rss_before = rss_kib()
    timed_out, cpu_s, wall_s = calling_phase(loop, engine.run(), args)
    loop.close()
    ok, reasons, late, last_end = tally.ok, tally.reasons, tally.late, tally.last_end
    starts = sorted(tally.starts)
    return {
        "mode": "engine", "loop": loop_name(loop), "scenario": str(args.scenario),
        "calls": args.calls, "rate": args.rate, "started": tally.started, "completed": ok,
        "failed": args.calls - ok, "reasons": dict(reasons), "timed_out": timed_out,
        "retransmissions": engine.ua.retransmissions if engine.ua is not None else 0,
        "late": late, "achieved_rate": _rate(len(starts), starts[0], starts[-1]) if starts else 0,
        "throughput": _rate(ok + 1, starts[0], last_end) if starts else 0.0,
        "wall_s": wall_s, "cpu_s": cpu_s, "held": 0,
        "rss_before_kib": rss_before, "rss_after_kib": rss_kib(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True, help="HOST:PORT of the UAS (loopback)")
    p.add_argument("--calls", type=int, default=12_000)
    p.add_argument("--rate", type=float, default=800.0)
    p.add_argument("--mode", choices=("ua", "engine"), default="ua")
    p.add_argument("--scenario", type=Path, default=NOPAUSE, help="engine mode's scenario")
    p.add_argument("--hold", action="store_true",
                   help="never send BYE (engine mode: bench/hold_call.yaml by default); "
                        "report memory per held call")
    p.add_argument("--tracemalloc", action="store_true",
                   help="with --hold: trace the Python heap too (traced KiB per held call)")
    p.add_argument("--settle", type=float, default=33.0,
                   help="with --hold: wait this long after each half's last answer (Timer M)")
    p.add_argument("--no-gc", dest="gc", action="store_false",
                   help="ua mode: run the calling phase with the cyclic GC disabled (diagnosis)")
    p.add_argument("--trace", choices=("failed", "all", "none"), default="failed",
                   help="engine mode's wire traces (default failed: what `sipload run` keeps)")
    p.add_argument("--t1", type=float, default=TimerConfig().t1, help="SIP timer T1 (s)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="give up after this long (default calls/rate + 30)")
    p.add_argument("--profile-out", help="run the calling phase under cProfile, dump here")
    args = p.parse_args(argv)
    if not args.target.startswith("127."):
        p.error("--target must be on loopback (127.0.0.0/8)")
    if args.max_seconds is None:
        args.max_seconds = args.calls / args.rate + 30.0
    if args.hold and args.mode == "engine":
        if args.scenario == NOPAUSE:
            args.scenario = HOLD
        result = hold_engine(args)
    else:
        result = run_ua(args) if args.mode == "ua" else run_engine(args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    # End as a sipload worker and `sipload run` end (sipload.cluster.child,
    # sipload.cli.program): os._exit once the result is out.  The interpreter's
    # teardown (its collections over every module the engine imported) cost 0.4 s
    # of CPU at the end of an 8,000-call engine run, which the whole-process figure
    # counted against every call.
    sys.stderr.flush()
    os._exit(code)
