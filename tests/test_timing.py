"""Timing is taken at the socket, and call starts leave on time, as a capture sees them.

The unit tests check the stamps themselves (kernel receive stamps on UDP, send stamps
that travel into the records).  The capture tests run ``sipload run`` against SIPp's
UAS on loopback under tcpdump (:mod:`tests.capture`) and compare call by call, by
Call-ID, with the kernel's timestamps on the wire.  They need root and tcpdump (and
SIPp): under ``CI=true`` a missing one fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import uvloop

from sipload.scenario.interpreter import RunContext, Runner
from sipload.stats.records import CallRecord
from sipload.stats.rundir import read_calls, records_from_table
from sipload.transport import Peer, TransportSet
from tests.capture import Capture, SipPacket, first_invites, sip_calls, wire_answer
from tests.kernel_timers import LateTimers
from tests.peers import REPO_ROOT, free_port, require, sipp_uas
from tests.scenario_pair import program
from tests.uapair import Pair

NOPAUSE = REPO_ROOT / "bench" / "basic_call_nopause.yaml"


# --------------------------------------------------------------------------- stamps


def test_udp_receive_stamp_is_the_kernels_and_send_stamp_comes_first() -> None:
    """A datagram read late still carries when it reached the socket; send ≤ receive."""
    got: list[tuple[bytes, Peer, float]] = []

    async def main() -> None:
        a = TransportSet(lambda d, p, s: got.append((d, p, s)), lambda p, r: None)
        b = TransportSet(lambda d, p, s: None, lambda p, r: None)
        _, port = await a.listen("udp", "127.0.0.1", 0)
        await b.listen("udp", "127.0.0.1", 0)
        # The kernel turns receive stamping on for the system a moment after the first
        # socket asks (a deferred static key): until then a datagram is stamped when read.
        await asyncio.sleep(0.05)
        sent = b.send(b"hello", ("udp", "127.0.0.1", port))
        time.sleep(0.05)  # the loop is blocked: the datagram waits in the receive buffer
        read_after = time.monotonic()
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.005)
        await a.close()
        await b.close()
        assert got, "nothing received"
        stamp = got[0][2]
        assert sent <= stamp, "a send stamp is taken before the bytes leave"
        assert stamp < read_after - 0.04, "the stamp is the kernel's, not the read's"

    uvloop.run(main())


def test_send_stamps_reach_the_record_and_its_marks() -> None:
    """The INVITE's log time, actual start and timers move to the stamp of its write."""
    pair = Pair()
    prog = program("""
name: t
role: uac
steps:
  - send: INVITE
    body: {sdp: offer}
    start_timer: setup
  - recv: 200
    stop_timer: setup
  - send: ACK
  - send: BYE
  - recv: 200
""")
    runner = Runner(prog, pair.alice, RunContext("127.0.0.1", 5071, "127.0.0.1", 5072),
                    random.Random(1))
    runner.stamp_sends = True
    inst = runner.start_call(0, 1.0, 1.0)
    out = pair.alice.outgoing()
    assert len(out) == 1 and out[0][0].startswith(b"INVITE ")
    runner.stamp_sent([1.0004])
    rec = inst.record
    assert rec.messages[0] == (1.0004, "out", "INVITE")
    assert rec.actual_start == 1.0004 and rec.intended_start == 1.0
    assert inst.timers["setup"] == 1.0004
    runner.stamp_sent([9.0])  # nothing pending: nothing moves
    assert rec.messages[0][0] == 1.0004


def test_marks_are_never_negative() -> None:
    from sipload.scenario.messages import automatic_marks
    rec = CallRecord(0, 0.0, 1.0, 1.0)
    rec.messages = [(1.0, "out", "INVITE"), (0.9999999, "in", "200 INVITE")]
    automatic_marks(rec)
    assert rec.marks["answer"] == 0.0


# --------------------------------------------------------------------------- release


def test_a_start_due_during_a_burst_of_reads_leaves_before_the_rest_of_it() -> None:
    """(issue 19) A call start that comes due while the loop has a burst of messages to
    read is released before the next message is handled, not after the whole burst.

    The loop is held (a blocking sleep) while 50 stray responses queue on the engine's
    socket and, after them, the first start's timer expires: the loop wakes with both
    ready, the socket first.  Before the fix the 50 messages were handled, then the
    INVITE went out (up to 256 messages, ~100 µs each at load: 5-25 ms late).
    """
    from sipload.engine import Engine, EngineConfig
    from sipload.scenario.loader import load_file
    from sipload.transport.loop import new_event_loop

    order: list[str] = []
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))

    def tap(now: float, way: str, p: Peer, data: bytes, local: int) -> None:
        order.append(way)

    async def main() -> None:
        eng = Engine(EngineConfig(program=load_file(NOPAUSE), target=peer.getsockname(),
                                  rate=10.0, calls=1, seed=1, phase=0.3))
        host, port = await eng.start()
        assert eng.pump is not None and eng.starter is not None
        eng.pump.tap = tap
        run = asyncio.ensure_future(eng.run())
        await asyncio.sleep(0.02)  # the schedule has begun: the first start is 0.3 s away
        release = eng.starter.admission.next_release()
        assert release is not None and not order
        due = eng.t0 + release
        for i in range(50):
            peer.sendto(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP %s:%d;branch=z9hG4bKstray%d\r\n"
                        b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\n"
                        b"Call-ID: stray%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                        % (host.encode(), port, i, i), (host, port))
        time.sleep(max(0.0, due + 0.02 - time.monotonic()))  # hold the loop past it
        for _ in range(200):
            if "out" in order:
                break
            await asyncio.sleep(0.005)
        eng.abort()
        await asyncio.wait_for(run, 10)

    loop = new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
        peer.close()
    assert "out" in order and order.count("in") == 50, order
    assert order.index("out") <= 1, (
        f"the INVITE left after {order.index('out')} of the 50 messages read before it")


# --------------------------------------------------------------------------- on the wire


def _run_captured(tmp_path: Path, rate: float, calls: int, arrival: str, *,
                  snaplen: int | None = None, env: dict[str, str] | None = None,
                  seed: int = 7, timers: LateTimers | None = None
                  ) -> tuple[list[CallRecord], dict[str, list[SipPacket]]]:
    """The records and the capture of one ``sipload run`` against SIPp's UAS (with the
    kernel's late timers traced meanwhile into ``timers``, when given)."""
    require("sipp")
    port = free_port()
    out = tmp_path / "run"
    if out.exists():
        shutil.rmtree(out)
    with (sipp_uas(port), Capture([port], snaplen=snaplen) as cap,
          timers or contextlib.nullcontext()):
        argv = [*_realtime(), sys.executable, "-m", "sipload", "run", str(NOPAUSE),
                "--target", f"127.0.0.1:{port}", "--rate", str(rate),
                "--calls", str(calls), "--workers", "1", "--arrival", arrival,
                "--seed", str(seed), "--out", str(out), "--quiet"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                              cwd=REPO_ROOT, env=env, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    wire = sip_calls(cap.packets())
    cap.close()
    return records_from_table(read_calls(out)), wire


def _realtime() -> list[str]:
    """Run the generator at a real-time priority where allowed (``chrt -r 1``).

    The checks are of the generator's own precision: on a shared CI host, other jobs'
    processes would otherwise preempt it for milliseconds at a time (README: "Timing").
    """
    chrt = shutil.which("chrt")
    if chrt is None or subprocess.run([chrt, "-r", "1", "true"], check=False).returncode:
        return []
    return [chrt, "-r", "1"]


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, math.ceil(q * len(s)) - 1)]


def test_answer_marks_agree_with_the_capture(tmp_path: Path) -> None:
    """(issue 11) 100 calls/s: each call's answer mark within 0.2 ms of the wire's."""
    records, wire = _run_captured(tmp_path, rate=100, calls=300, arrival="uniform")
    assert len(records) == 300
    diffs = []
    for rec in records:
        w = wire_answer(wire.get(rec.call_id, []))
        assert w is not None, f"call {rec.call_id} not on the wire"
        assert "answer" in rec.marks, rec
        assert all(v >= 0 for v in rec.marks.values()), rec.marks
        diffs.append(abs(rec.marks["answer"] - w))
    within = sum(d <= 0.0002 for d in diffs) / len(diffs)
    assert within >= 0.95, (
        f"{within:.1%} of answer marks within 0.2 ms of the capture; "
        f"p50 {_quantile(diffs, .5) * 1e3:.3f} ms, p95 {_quantile(diffs, .95) * 1e3:.3f} ms")


UNIFORM_RATE = 700.0
"""Calls/s of the uniform capture test: a 1 ms tick (a release on the event loop's
timers) is off by up to 1 ms at any rate; this one is about half of what a pure build's
worker sustains through ``sipload run`` (the issue's bound holds up to half a worker's
capacity; its ``cpu`` at 1,000/s is 0.63-0.70 pure, 0.42-0.46 compiled), and a run
crosses a 1 s snapshot with ~700 records to hand over (which once held starts 3-10 ms)."""

UNIFORM_CALLS = 1400
"""2 s of calls (a run takes ~5 s in all): a snapshot inside, and 1,389 gaps after the
warm-up, so p99 is the 14th worst (a late start makes two: one long, one short)."""

UNIFORM_WARMUP = 10
"""Gaps left out at the start of each run: a run's first starts leave up to ~1 ms off
(the first calls build slower and the release lead is still adapting: 2-4 of the first
10 gaps were off by 0.2-0.9 ms in most runs), a fixed cost of starting, not of the
release; the p99 is of the steady state after it."""

UNIFORM_BOUND = 0.0002
"""The issue's bound on the p99 of |gap - 1/rate|."""

UNIFORM_ATTEMPTS = 8
"""Runs before a capture test of the release fails: one run meeting the bound shows the
release can; a defect in the release (a coarse tick, a hold at each snapshot) misses it
in every run.  A shared host has busy spells of a minute or so in which it leaves an
idle virtual CPU halted 0.2-2.5 ms past its timer (README: "Timing"; an ftrace of such
late starts shows both CPUs idle and the worker woken late): the uniform test missed
its bound in three runs of three in one CI run (stop 24; p99 1.6 ms, p50 0.02 ms), so
the runs are spread over a minute or so (:func:`_attempts`)."""

ATTEMPT_PAUSE = 5.0
"""Seconds between two runs of a capture test of the release (:data:`UNIFORM_ATTEMPTS`)."""


def _attempts() -> Iterator[int]:
    """The runs of a capture test of the release, :data:`ATTEMPT_PAUSE` apart."""
    for i in range(UNIFORM_ATTEMPTS):
        if i:
            time.sleep(ATTEMPT_PAUSE)
        yield i

TICK_RELEASE = {"SIPLOAD_TIMER": "loop"}
"""The environment that takes the precise timer away in every process of a run: starts
are then released on the event loop's timers (1 ms tick), as before issue 19.  (A
``sitecustomize`` patching ``starts.precise_timer`` did this until the timer's module
was compiled: compiled modules call each other directly, past a patched name.)"""


UNIFORM_HELD_MAX = 0.3
"""The most gaps a run may leave out as held up by the machine (:mod:`tests.kernel_timers`)
and still be judged: a run held up more often says little of the generator.  Quiet,
4-19% of gaps were left out here (a late expiry on either CPU excuses a start)."""


@dataclasses.dataclass(frozen=True)
class UniformGaps:
    """How far one captured uniform run's gaps between INVITEs are from 1/rate."""

    devs: list[float]  #: |gap - 1/rate| of the gaps judged
    held: int  #: gaps left out: the machine held a timer late around them
    traced: bool  #: the kernel's timers were traced (root, tracefs)

    def p99(self) -> float:
        return _quantile(self.devs, .99)

    def judged(self) -> bool:
        """Whether few enough gaps were left out for the run to say something."""
        return self.held <= UNIFORM_HELD_MAX * (self.held + len(self.devs))

    def figures(self) -> str:
        devs = self.devs
        left = (f"; {self.held} of {self.held + len(devs)} gaps left out, the machine held "
                f"a timer late" if self.traced else "; timers not traced")
        return (f"p50 {_quantile(devs, .5) * 1e3:.3f} ms, p99 {self.p99() * 1e3:.3f} ms, "
                f"max {max(devs) * 1e3:.2f} ms{left}")


def _uniform_gaps(tmp_path: Path, calls: int = UNIFORM_CALLS,
                  env: dict[str, str] | None = None) -> UniformGaps:
    """The gaps between the first INVITEs one captured uniform run puts on the wire (after
    :data:`UNIFORM_WARMUP`), but for both gaps around each start the machine held up: a
    kernel timer due between the start before it leaving and it leaving expired late
    (:mod:`tests.kernel_timers`)."""
    timers = LateTimers()
    records, wire = _run_captured(tmp_path, rate=UNIFORM_RATE, calls=calls,
                                  arrival="uniform", snaplen=4096, env=env, timers=timers)
    starts = first_invites(wire)
    assert len(records) == calls and len(starts) == calls
    starts = [t - timers.offset for t in starts[UNIFORM_WARMUP:]]
    held = [False] + [timers.held(a, b) for a, b in itertools.pairwise(starts)]
    devs, left = [], 0
    for i, (a, b) in enumerate(itertools.pairwise(starts)):
        if held[i] or held[i + 1]:
            left += 1
        else:
            devs.append(abs(b - a - 1 / UNIFORM_RATE))
    return UniformGaps(devs, left, timers.ok)


def test_uniform_starts_are_evenly_spaced_on_the_wire(tmp_path: Path) -> None:
    """(issue 19) Uniform arrival through ``sipload run`` at 700 calls/s: the p99 of
    how far the wire's gaps between INVITEs are from 1/rate (after the first
    :data:`UNIFORM_WARMUP`, and but for the starts the machine held up: a kernel timer
    expired late) is at most 0.2 ms, in one of up to eight runs."""
    tried = []
    for _ in _attempts():
        gaps = _uniform_gaps(tmp_path)
        if gaps.judged() and gaps.p99() <= UNIFORM_BOUND:
            return
        tried.append(gaps.figures())
    raise AssertionError(f"|gap - 1/rate| p99 above {UNIFORM_BOUND * 1e3:.1f} ms (or over "
                         f"{UNIFORM_HELD_MAX:.0%} of gaps held up) in all "
                         f"{UNIFORM_ATTEMPTS} runs: " + "; ".join(tried))


def test_uniform_test_fails_on_the_loops_tick(tmp_path: Path) -> None:
    """The uniform test's check, run with starts released on the event loop's timers
    (:data:`TICK_RELEASE`, the release before issue 19): it misses the bound (p99 1.5 ms
    measured; a short run, since a tick misses it at once)."""
    env = {**os.environ, **TICK_RELEASE}
    gaps = _uniform_gaps(tmp_path, 500, env)
    assert gaps.p99() > UNIFORM_BOUND, gaps.figures()


POISSON_RATE = UNIFORM_RATE
"""Calls/s of the Poisson capture test: half of what a pure build's worker sustains (see
:data:`UNIFORM_RATE`)."""

POISSON_CALLS = 3000
"""Enough gaps for the test to see the generator's own distortion: with 2,999 gaps the KS
test at 1% fails from D ≈ 0.030 on (with 500 it took 0.073)."""

POISSON_SEED = 3
"""The schedule's seed.  A seed's intended gaps are one sample of the exponential, and
their own KS p-value is anywhere in (0, 1): seed 7's first 3,000 gaps sit at p 0.048,
so any distortion on the wire failed the test at 1%.  Seed 3's are at p 0.47, a
typical sample (the test checks it, in case the pacer's draws change)."""

ON_TIME = 0.0001
"""The issue's bound on a start's release: within 0.1 ms of its intended time."""


def _lateness(records: list[CallRecord]) -> list[float]:
    """Each call's first send stamp less its intended start, in order of intention."""
    return [r.actual_start - r.intended_start
            for r in sorted(records, key=lambda r: r.intended_start)]


def _on_time(late: list[float]) -> float:
    return sum(abs(x) <= ON_TIME for x in late) / len(late)


def test_poisson_starts_are_exponential_on_the_wire(tmp_path: Path) -> None:
    """(issue 19) Poisson arrival through ``sipload run`` at 700 calls/s: the wire's gaps
    between INVITEs pass Kolmogorov-Smirnov against Exp(rate) at 1%, and 95% of starts
    leave within 0.1 ms of their intended time, in one of up to eight runs (as the
    uniform test: a shared host holds the generator off the CPU now and then)."""
    from scipy import stats
    rate, tried = POISSON_RATE, []
    for _ in _attempts():
        records, wire = _run_captured(tmp_path, rate=rate, calls=POISSON_CALLS,
                                      arrival="poisson", snaplen=4096, seed=POISSON_SEED)
        starts = first_invites(wire)
        assert len(records) == POISSON_CALLS and len(starts) == POISSON_CALLS
        intended = sorted(r.intended_start for r in records)
        own = stats.kstest([b - a for a, b in itertools.pairwise(intended)], "expon",
                           args=(0, 1 / rate))
        assert own.pvalue > 0.1, f"the seed's own schedule: KS p {own.pvalue:.3f}"
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        result = stats.kstest(gaps, "expon", args=(0, 1 / rate))
        on_time = _on_time(_lateness(records))
        if result.pvalue > 0.01 and on_time >= 0.95:
            return
        short = sum(g < 0.0005 for g in gaps) / len(gaps)
        tried.append(f"KS D={result.statistic:.3f} p={result.pvalue:.4f}, gaps under 0.5 ms "
                     f"{short:.1%} (exponential: {1 - math.exp(-rate * 0.0005):.1%}), "
                     f"on time {on_time:.1%}")
    raise AssertionError("; ".join(tried))


def test_poisson_test_fails_on_the_loops_tick(tmp_path: Path) -> None:
    """The Poisson test's check with starts released on the event loop's timers
    (:data:`TICK_RELEASE`): the wire's gaps fail KS at 1%."""
    from scipy import stats
    env = {**os.environ, **TICK_RELEASE}
    _, wire = _run_captured(tmp_path, rate=POISSON_RATE, calls=1000, arrival="poisson",
                            snaplen=4096, env=env, seed=POISSON_SEED)
    gaps = [b - a for a, b in itertools.pairwise(first_invites(wire))]
    result = stats.kstest(gaps, "expon", args=(0, 1 / POISSON_RATE))
    assert result.pvalue < 0.01, f"KS D={result.statistic:.3f} p={result.pvalue:.4f}"


SLEEPY_RATE = 100.0
"""Calls/s of the long-sleep test: 10 ms between starts, the loop asleep for most of it."""


def test_starts_after_a_long_sleep_leave_on_time(tmp_path: Path) -> None:
    """(issue 19) Uniform at 100 calls/s: the loop sleeps ~9 ms before each start, and
    waking from that took 0.05-0.25 ms on this project's virtual machines, more than
    the release's lead covers.  The timer fires a wake-ahead earlier and each INVITE
    waits for its instant: none leaves more than 20 µs early (before, a tenth left 60
    µs early or more), and 95% within 0.1 ms, in one of up to eight runs."""
    tried = []
    for _ in _attempts():
        records, _ = _run_captured(tmp_path, rate=SLEEPY_RATE, calls=300,
                                   arrival="uniform", snaplen=4096)
        late = _lateness(records)
        assert len(late) == 300
        assert min(late) >= -20e-6, f"a start left {-min(late) * 1e6:.0f} µs early"
        if _on_time(late) >= 0.95:
            return
        tried.append(f"on time {_on_time(late):.1%}, lateness p50 "
                     f"{_quantile(late, .5) * 1e6:.0f} µs, p90 {_quantile(late, .9) * 1e6:.0f}"
                     f" µs, p99 {_quantile(late, .99) * 1e6:.0f} µs")
    raise AssertionError("; ".join(tried))


def test_starts_due_closer_than_a_build_leave_at_their_instants(tmp_path: Path) -> None:
    """(issue 19) Poisson through ``sipload run`` at 1,000 calls/s: 14% of the gaps are
    shorter than building a call (~0.1 ms); such starts are built ahead together and
    each INVITE is written at its intended instant, so the later start of a close pair
    leaves on time (median lateness of its send stamp under 30 µs), not about a build
    late as before."""
    from sipload.engine.starts import CLUSTER_GAP
    records, _ = _run_captured(tmp_path, rate=1000, calls=1500, arrival="poisson",
                               snaplen=4096)
    starts = sorted((r.intended_start, r.actual_start) for r in records)
    assert len(starts) == 1500
    late = [actual - intended for (before, _), (intended, actual)
            in itertools.pairwise(starts) if intended - before < CLUSTER_GAP]
    assert len(late) > 100, len(late)
    assert _quantile(late, .5) < 30e-6, (
        f"{len(late)} starts due under {CLUSTER_GAP * 1e3:.2f} ms after the one before: "
        f"lateness p50 {_quantile(late, .5) * 1e6:.0f} µs, "
        f"p90 {_quantile(late, .9) * 1e6:.0f} µs")


def test_capture_helper_sees_its_ports_only() -> None:
    """The helper itself: ready before it returns, filters by port, reads its pcap."""
    port, other = free_port(), free_port()
    with Capture([port]) as cap, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        sent = time.time()
        s.sendto(b"to the port", ("127.0.0.1", port))
        s.sendto(b"elsewhere", ("127.0.0.1", other))
    packets = cap.packets()
    cap.close()
    assert [p.payload for p in packets] == [b"to the port"]
    assert abs(packets[0].time - sent) < 0.5
    assert packets[0].dst == ("127.0.0.1", port) and packets[0].proto == "udp"
