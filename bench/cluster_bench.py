"""``sipload run`` (coordinator + workers) against SIPp, in one command.

Run from the repository root (SIPp installed: Debian package ``sip-tester``; Kamailio
for the proxy phase: ``kamailio``)::

    python3 bench/cluster_bench.py            # table (about 12 minutes)
    python3 bench/cluster_bench.py --quick    # smaller steps and budgets (about 5 minutes)
    python3 bench/cluster_bench.py --json     # the same figures as JSON
    python3 bench/cluster_bench.py --only load,search   # some phases only

Everything runs on 127.0.0.1 over UDP.  The calls are basic calls with no pause
(INVITE/100/180/200/ACK/BYE/200: ``bench/basic_call_nopause.yaml``).  Phases:

1. **load** -- same load, one ``sipp -sn uas -buff_size 4194304`` answering every
   UAC in turn: ``--calls`` calls at ``--rate`` from ``sipp -sn uac``,
   ``sipload run --workers 1``, ``sipload run --workers 2`` and, when
   ``bench/ua_uac.py`` is there, a bare UA process (``--mode ua``) and the
   scenario engine in one process without the coordinator (``--mode engine``).
   CPU per completed call three ways: the whole command (user+sys of every
   process, start-up and, for ``sipload run``, the report included:
   ``getrusage(RUSAGE_CHILDREN)`` around it), the calling phase (sipload: the
   workers' in-process CPU from their per-second snapshots, plus the
   coordinator's from ``/proc/PID/stat`` between its ``go`` and ``run_end``
   events), and the coordinator's share.  **Coordinator cost** = the calling
   phase of ``sipload run --workers 1`` minus the engine's alone (same calls,
   same scenario, one process): what the control channel, record streaming and
   run-directory writing add per call.
2. **search** -- highest sustained rate for SIPp's uac, ``sipload run --workers
   1`` and ``--workers 2``: a step is sustained when every call completes, none
   fails, nobody retransmits (the UAC's count plus the UAS's, from its
   ``-trace_stat`` file) and the throughput (completed calls over the time from
   the first start to the last end) is at least 90% of the rate.  The rate
   doubles from ``--search-start`` until a step fails, then bisects to within
   10%, within ``--search-budget`` seconds per UAC.  After a failed step the UAS
   is given time to stop retransmitting.
3. **hold** -- long calls one worker holds: ``sipload run --workers 1`` places
   N calls that pause an hour after the ACK (``bench/hold_call.yaml``), at
   ``--hold-rate``, against a fresh ``sipp -sn uas``; with ``--t1 100ms`` the
   INVITE transactions are gone 64*T1 (6.4 s) after the last answer.  Held when
   all N calls are in progress and none failed.  The worker's RSS
   (``/proc/PID/status``) at ``go`` and once settled gives KiB per held call;
   also its CPU and loop lag while holding.
   N doubles from ``--hold-start`` to ``--hold-max`` (or until a step fails or
   the RSS would pass a quarter of the free memory).  The run is then aborted
   (Ctrl-C twice, to its own process group).
4. **proxy** -- a real proxy's capacity as each tool finds it: Kamailio
   (``ci/kamailio/proxy.cfg``, ``-m 4096``) in front of SIPp's uas; the rate
   search of phase 2 with SIPp's uac, then with ``sipload run --workers
   --proxy-workers`` in its place (PEERS.md: SIPp finds about 2,300 calls/s).
   The uas is SIPp's built-in one with ``[last_Record-Route:]`` added to its
   responses (``sipp -sd uas``, patched): the built-in one drops Record-Route,
   so a UAC that follows the route set, as sipload does, would send its BYE
   straight to the UAS, which answers through the proxy it took the call from,
   and the 200 would be lost.  Kamailio's two UDP workers now and then pass a
   180 after the 200 (PEERS.md); SIPp's uac fails such a call, so this phase
   tolerates ``--proxy-tolerance`` (0.2%) failed calls and judges on
   retransmissions and throughput.  When sipload's first failing step says
   "generator-limited", sipload ran out before the proxy did.  Each search gets
   ``--proxy-budget`` seconds (240).  The verdict on issue 13's target 4
   (sipload within 10% of SIPp) is judged on what the two searches showed: each
   bounds a capacity to [highest held, lowest failed), so the ratio lies in a
   range; "met" when the whole range is at least 0.9, "missed" when it is all
   below, "undecided" when the searches ended too wide to say
   (:func:`common.capacity_verdict`).

Figures depend on the machine and on what else runs on it: compare figures from
the same command only.  The script exits 0 even when a step fails (3 when SIPp is
missing or a process cannot run).  Every process it starts is ended by its PID or
its own process group.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from common import Run, Step, capacity_verdict, children_cpu, rss_kib, run_sipp_uac, uas_for
from common import rate_search as search_rate

from sipload._native import describe as describe_build
from tests.peers import (
    LOOPBACK,
    SIPP_BUFF_SIZE,
    KamailioProcess,
    SippProcess,
    kamailio_proxy,
    which,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
UA_DRIVER = HERE / "ua_uac.py"
BUFF = str(SIPP_BUFF_SIZE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PEERS_PROXY_RATE = 2300.0
"""PEERS.md: SIPp uac -> Kamailio -> SIPp uas peaks near 2,300 calls/s."""

NOPAUSE = HERE / "basic_call_nopause.yaml"
"""The basic call without its pause (also bench/ua_uac.py's and tests/test_gc.py's)."""
HOLD = HERE / "hold_call.yaml"
"""A call answered, then held for an hour (also bench/held_bench.py's)."""


# =============================================================================== helpers


def note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def proc_cpu(pid: int) -> float | None:
    """user+sys CPU seconds of a live process (/proc/PID/stat), None once gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    f = text[text.rindex(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the process group this script started for ``proc`` (its own session)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def kamailio_for(workdir: Path, uas_port: int, *, shm_mb: int, children: int | None,
                 limit: float) -> KamailioProcess:
    """Kamailio with ``ci/kamailio/proxy.cfg`` on 127.0.0.1 in front of a UAS."""
    return kamailio_proxy(uas_port, shm_mb=shm_mb, children=children, limit=limit,
                          workdir=workdir / "kamailio")


# =============================================================================== runs


def run_ua_driver(mode: str, uas: SippProcess, calls: int, rate: float,
                  scenario: Path) -> Run | None:
    """``bench/ua_uac.py`` (another bench's driver) when present: None otherwise."""
    if not UA_DRIVER.exists():
        return None
    who = "bare UA process" if mode == "ua" else "engine, no coordinator"
    argv = [sys.executable, str(UA_DRIVER), "--target", f"{LOOPBACK}:{uas.port}",
            "--calls", str(calls), "--rate", f"{rate:g}", "--mode", mode]
    if mode == "engine":
        argv += ["--scenario", str(scenario)]
    before = uas.retransmissions_after(0)
    cpu0 = children_cpu()
    t0 = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=calls / rate + 60,
                              check=False, cwd=REPO)
        res = json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, IndexError, json.JSONDecodeError, OSError) as e:
        note(f"{UA_DRIVER.name} --mode {mode} failed: {e}")
        return None
    run = Run(who, calls, rate, completed=int(res.get("completed", 0)),
              failed=int(res.get("failed", 0)), retrans_uac=int(res.get("retransmissions", 0)),
              late=res.get("late"), throughput=float(res.get("throughput", 0.0) or 0.0),
              wall_s=time.monotonic() - t0, cpu_total_s=children_cpu() - cpu0,
              cpu_loop_s=float(res.get("cpu_s", 0.0)), ok_exit=done.returncode == 0,
              reasons=dict(res.get("reasons") or {}))
    run.retrans_uas = uas.retransmissions_after(time.time()) - before
    return run


class SiploadRun:
    """One ``sipload run`` in its own session, watched from outside (see phase 1)."""

    def __init__(self, scenario: Path, target: str, calls: int, rate: float, workers: int,
                 out: Path, extra: list[str] | None = None) -> None:
        self.out = out
        self.calls = calls
        self.argv = [sys.executable, "-m", "sipload", "run", str(scenario), "--target", target,
                     "--calls", str(calls), "--rate", f"{rate:g}", "--workers", str(workers),
                     "--concurrent", str(max(10_000, 2 * calls)), "--out", str(out), "--quiet",
                     *(extra or [])]
        self.proc: subprocess.Popen[bytes] | None = None
        self.coord_go: float | None = None
        self.coord_end: float | None = None
        self.worker_pids: dict[int, int] = {}
        self.stopped_early = False
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> SiploadRun:
        self.proc = subprocess.Popen(self.argv, cwd=REPO, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()
        return self

    def events(self) -> list[dict[str, Any]]:
        return read_jsonl(self.out / "events.jsonl")

    def intervals(self) -> list[dict[str, Any]]:
        return read_jsonl(self.out / "intervals.jsonl")

    def _watch(self) -> None:
        """The coordinator's CPU at ``go`` and at ``run_end`` (every 20 ms)."""
        proc = self.proc
        assert proc is not None
        while not self._stop.is_set() and proc.poll() is None:
            cpu = proc_cpu(proc.pid)
            evs = {e.get("event") for e in self.events()}
            if self.coord_go is None and "go" in evs:
                self.coord_go = cpu
                for e in self.events():
                    if e.get("event") == "worker_joined":
                        self.worker_pids[int(e["worker"])] = int(e["pid"])
            if "run_end" in evs:
                self.coord_end = cpu
                return
            time.sleep(0.02)

    def wait(self, timeout: float, *, stop_on_trouble: bool = False) -> int:
        """The exit code; with ``stop_on_trouble``, a failed or retransmitted call in a
        snapshot aborts the run at once (a rate-search step is lost by then, and its
        failing calls would otherwise take their full timeouts)."""
        assert self.proc is not None
        end = time.monotonic() + timeout
        while stop_on_trouble and self.proc.poll() is None and time.monotonic() < end:
            if any(int(x.get("failed", 0)) or int(x.get("retransmissions", 0))
                   for x in self.intervals()):
                self.stopped_early = True
                self.abort()
                break
            time.sleep(0.25)
        try:
            _, err = self.proc.communicate(timeout=max(1.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            kill_group(self.proc)
            self._stop.set()
            return -1
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(2)
        if self.proc.returncode not in (0, 1):
            tail = err.decode(errors="replace")[-500:]
            note(f"sipload run exited {self.proc.returncode}: {tail}")
        return self.proc.returncode

    def abort(self, timeout: float = 30.0) -> None:
        """Ctrl-C twice, to this run's own process group; SIGKILL if it lingers."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
            end = time.monotonic() + 3
            while time.monotonic() < end and "stop" not in {
                    e.get("event") for e in self.events()}:
                time.sleep(0.05)
            if proc.poll() is None and "run_end" not in {e.get("event") for e in self.events()}:
                os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
        self._stop.set()


def worker_loop_cpu(intervals: list[dict[str, Any]]) -> float:
    """CPU seconds of the workers' calling phase: sum of cpu x interval span."""
    last: dict[int, float] = {}
    total = 0.0
    for s in sorted(intervals, key=lambda s: (int(s.get("worker", 0)), float(s.get("t", 0)))):
        w, t = int(s.get("worker", 0)), float(s.get("t", 0.0))
        total += float(s.get("cpu", 0.0)) * max(0.0, t - last.get(w, 0.0))
        last[w] = t
    return total


def throughput(out: Path) -> float:
    """Completed calls per second, per worker (its own clock) summed."""
    try:
        import pyarrow.compute as pc

        from sipload.stats.rundir import read_calls
    except ImportError:
        return 0.0
    table = read_calls(out)
    total = 0.0
    for w in set(table.column("worker").to_pylist()):
        t = table.filter(pc.equal(table.column("worker"), w))
        ok = t.filter(pc.equal(t.column("result"), "success"))
        if ok.num_rows < 2:
            continue
        span = pc.max(ok.column("end")).as_py() - pc.min(t.column("actual_start")).as_py()
        if span > 0:
            total += ok.num_rows / span
    return total


def run_sipload(workers: int, target: str, uas: SippProcess, workdir: Path, calls: int,
                rate: float, scenario: Path, *, search: bool = False) -> Run:
    out = workdir / f"run_{workers}w_{time.monotonic_ns()}"
    who = f"sipload run -w {workers}"
    before = uas.retransmissions_after(0)
    cpu0 = children_cpu()
    t0 = time.monotonic()
    sr = SiploadRun(scenario, target, calls, rate, workers, out).start()
    code = sr.wait(calls / rate + 90, stop_on_trouble=search)
    wall = time.monotonic() - t0
    cpu = children_cpu() - cpu0
    run = Run(who, calls, rate, wall_s=wall, cpu_total_s=cpu, ok_exit=code == 0)
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        run.failed = calls
        run.reasons = {f"sipload run exit {code}": 1}
        return run
    c = summary["calls"]
    run.completed = int(c["succeeded"])
    run.failed = calls - run.completed
    run.retrans_uac = int(summary["retransmissions"]["count"])
    gen = summary.get("generator", {})
    run.late = int(gen.get("late_starts", 0))
    run.generator_limited = bool(gen.get("limited"))
    run.loop_lag_max_ms = gen.get("loop_lag_max_ms")
    run.reasons = dict(summary.get("failed", {}).get("by_reason", {}))
    if sr.stopped_early:
        run.reasons["stopped at the first failure or retransmission"] = 1
        run.ok_exit = False
    run.throughput = throughput(out)
    loop = worker_loop_cpu(sr.intervals())
    if sr.coord_go is not None and sr.coord_end is not None:
        run.cpu_coord_s = sr.coord_end - sr.coord_go
        run.cpu_loop_s = loop + run.cpu_coord_s
    else:
        run.cpu_loop_s = loop
    run.retrans_uas = uas.retransmissions_after(time.time()) - before
    shutil.rmtree(out, ignore_errors=True)
    return run


# =============================================================================== phases


def phase_load(args: argparse.Namespace, uas: SippProcess, wd: Path, scenario: Path) -> list[Run]:
    runs: list[Run] = []
    target = f"{LOOPBACK}:{uas.port}"
    plan: list[tuple[str, Callable[[], Run | None]]] = [
        ("sipp", lambda: run_sipp_uac(target, uas, wd, args.calls, args.rate)),
        ("ua", lambda: run_ua_driver("ua", uas, args.calls, args.rate, scenario)),
        ("engine", lambda: run_ua_driver("engine", uas, args.calls, args.rate, scenario)),
        ("w1", lambda: run_sipload(1, target, uas, wd, args.calls, args.rate, scenario)),
        ("w2", lambda: run_sipload(2, target, uas, wd, args.calls, args.rate, scenario)),
    ]
    for i, (name, fn) in enumerate(plan):
        if i:
            time.sleep(args.gap)
        note(f"load: {name}, {args.calls} calls at {args.rate:g}/s")
        r = fn()
        if r is not None:
            runs.append(r)
    return runs


def rate_search(args: argparse.Namespace, label: str, uas: SippProcess,
                step: Callable[[float, int], Run], tolerance: float = 0.0,
                budget: float | None = None) -> dict[str, Any]:
    """The one rate search (bench/common.py) against one UAS, left to stop retransmitting
    after a failed step."""

    def one(rate: float, calls: int) -> Step:
        run = step(rate, calls)
        return Step(run.sustained(tolerance), {
            "failed": run.failed, "retransmissions": run.retransmissions,
            "throughput": round(run.throughput, 1), "generator_limited": run.generator_limited,
            "loop_lag_max_ms": run.loop_lag_max_ms, "late": run.late}, run)

    summary, good_run, bad_run = search_rate(
        one, label=label, start=args.search_start, maximum=args.search_max,
        calls=args.search_calls, step_seconds=args.step_seconds,
        budget=args.search_budget if budget is None else budget,
        after_failure=lambda left: uas.quiesce(min(40.0, max(5.0, left))),
        pause=min(args.gap, 1.0), note=note)
    return {
        **summary, "failed_tolerated": tolerance,
        "us_per_call_total_at_max": good_run.per_call(good_run.cpu_total_s) if good_run else None,
        "us_per_call_loop_at_max": good_run.per_call(good_run.cpu_loop_s) if good_run else None,
        "failing_generator_limited": bad_run.generator_limited if bad_run else None,
        "failing_reasons": bad_run.reasons if bad_run else None,
    }


def phase_search(args: argparse.Namespace, uas: SippProcess, wd: Path,
                 scenario: Path) -> dict[str, Any]:
    target = f"{LOOPBACK}:{uas.port}"
    out: dict[str, Any] = {}
    steppers: dict[str, Callable[[float, int], Run]] = {
        "SIPp uac": lambda r, n: run_sipp_uac(target, uas, wd, n, r),
        "sipload run -w 1": lambda r, n: run_sipload(1, target, uas, wd, n, r, scenario,
                                                     search=True),
        "sipload run -w 2": lambda r, n: run_sipload(2, target, uas, wd, n, r, scenario,
                                                     search=True),
    }
    for label, step in steppers.items():
        time.sleep(args.gap)
        out[label] = rate_search(args, label, uas, step)
    return out


def hold_step(args: argparse.Namespace, wd: Path, scenario: Path, n: int) -> dict[str, Any]:
    t1 = 0.1
    fill = n / args.hold_rate
    with uas_for(wd, f"hold{n}", fill + 300) as uas:
        out = wd / f"hold_{n}"
        sr = SiploadRun(scenario, f"{LOOPBACK}:{uas.port}", n, args.hold_rate, 1, out,
                        ["--t1", f"{t1 * 1000:g}ms", "--grace", "0s"]).start()
        res: dict[str, Any] = {"calls": n, "rate": args.hold_rate, "t1": t1}
        try:
            deadline = time.monotonic() + fill + 60
            while not sr.worker_pids and time.monotonic() < deadline:
                time.sleep(0.05)
            if not sr.worker_pids:
                return {**res, "held": 0, "error": "the worker did not start"}
            pid = sr.worker_pids[0]
            res["rss_go_kib"] = rss_kib(pid)
            started = failed = 0
            while time.monotonic() < deadline and sr.proc is not None and sr.proc.poll() is None:
                snaps = sr.intervals()
                started = sum(int(s.get("started", 0)) for s in snaps)
                failed = sum(int(s.get("failed", 0)) for s in snaps)
                if started >= n or failed:
                    break
                time.sleep(0.25)
            res["rss_filled_kib"] = rss_kib(pid)
            cpu_filled = proc_cpu(pid)
            settle = 64 * t1 + 2.0
            time.sleep(settle)
            snaps = sr.intervals()
            res["rss_settled_kib"] = rss_kib(pid)
            cpu_settled = proc_cpu(pid)
            last = max(snaps, key=lambda s: float(s.get("t", 0))) if snaps else {}
            res["held"] = int(last.get("active", 0))
            res["failed"] = sum(int(s.get("failed", 0)) for s in snaps)
            res["started"] = sum(int(s.get("started", 0)) for s in snaps)
            res["retransmissions_uac"] = sum(int(s.get("retransmissions", 0)) for s in snaps)
            tail = [s for s in snaps if float(s.get("t", 0)) > float(last.get("t", 0)) - settle]
            res["loop_lag_max_ms_holding"] = max(
                (float(s.get("loop_lag_ms", 0)) for s in tail), default=None)
            res["cpu_holding"] = (cpu_settled - cpu_filled) / settle if (
                cpu_settled is not None and cpu_filled is not None) else None
            held = max(res["held"], 1)
            res["kib_per_call_filled"] = (res["rss_filled_kib"] - res["rss_go_kib"]) / held
            res["kib_per_call"] = (res["rss_settled_kib"] - res["rss_go_kib"]) / held
            res["ok"] = res["held"] == n and res["failed"] == 0
        finally:
            sr.abort()
            shutil.rmtree(out, ignore_errors=True)
    return res


def phase_hold(args: argparse.Namespace, wd: Path, scenario: Path) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    n = args.hold_start
    end = time.monotonic() + args.hold_budget
    best: dict[str, Any] | None = None
    while n <= args.hold_max and time.monotonic() < end:
        note(f"hold: one worker, {n} long calls at {args.hold_rate:g}/s")
        r = hold_step(args, wd, scenario, n)
        steps.append(r)
        note(f"hold: {r.get('held')} held of {n}, {r.get('failed')} failed, "
             f"{r.get('kib_per_call', 0):.2f} KiB/call")
        if not r.get("ok"):
            break
        best = r
        per_call = float(r.get("kib_per_call") or 0)
        if per_call * 2 * n > mem_available_kib() / 4:
            note("hold: the next step would pass a quarter of the free memory; stopping")
            break
        n *= 2
        time.sleep(args.gap)
    return {"max_held": best["held"] if best else 0,
            "kib_per_call": best.get("kib_per_call") if best else None,
            "capped": bool(best and best["calls"] * 2 > args.hold_max), "steps": steps}


def uas_with_record_route(wd: Path) -> Path:
    """SIPp's built-in uas, but echoing Record-Route in its responses (RFC 3261
    §12.1.1): the built-in one does not, so a UAC that follows the dialog's route
    set (sipload) sends its BYE straight to the UAS, which answers the proxy it
    took the call from, and the 200 is lost.  SIPp's own uac ignores the route set
    (proxy.cfg routes its in-dialog requests itself), so both UACs work with this."""
    done = subprocess.run(["sipp", "-sd", "uas"], capture_output=True, text=True,
                          timeout=10, check=False)
    text = done.stdout.replace("[last_CSeq:]\n", "[last_CSeq:]\n      [last_Record-Route:]\n")
    if "[last_Record-Route:]" not in text:
        raise RuntimeError("sipp -sd uas: could not add [last_Record-Route:] to its responses")
    path = wd / "uas_record_route.xml"
    path.write_text(text)
    return path


def phase_proxy(args: argparse.Namespace, wd: Path, scenario: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"peers_md_sipp_rate": PEERS_PROXY_RATE,
                           "proxy_workers": args.proxy_workers,
                           "uas": "sipp -sf (sipp -sd uas + [last_Record-Route:])",
                           "tolerance": args.proxy_tolerance}
    uas_xml = uas_with_record_route(wd)
    with uas_for(wd, "proxy", 3600, uas_xml) as uas, kamailio_for(
            wd, uas.port, shm_mb=4096, children=args.kamailio_children, limit=3600) as kam:
        target = f"{LOOPBACK}:{kam.port}"
        w = args.proxy_workers
        steppers: dict[str, Callable[[float, int], Run]] = {
            "SIPp uac": lambda r, n: run_sipp_uac(target, uas, wd, n, r),
            f"sipload run -w {w}": lambda r, n: run_sipload(w, target, uas, wd, n, r, scenario,
                                                            search=True),
        }
        for label, step in steppers.items():
            time.sleep(args.gap)
            out[label] = rate_search(args, f"{label} -> kamailio", uas, step,
                                     args.proxy_tolerance, budget=args.proxy_budget)
    out["verdict"] = capacity_verdict(out[f"sipload run -w {w}"], out["SIPp uac"])
    return out


# =============================================================================== output


def fmt(v: float | None, spec: str = ".0f") -> str:
    return "n/a" if v is None else format(v, spec)


def print_report(result: dict[str, Any]) -> None:
    load = result.get("load") or []
    if load:
        print(f"1. Same load: {result['calls']} basic calls (no pause) at {result['rate']:g}/s "
              f"over UDP, one sipp -sn uas (-buff_size {BUFF})\n")
        head = (f"{'UAC':<24}{'done':>7}{'failed':>7}{'retr':>6}{'late':>6}{'wall s':>8}"
                f"{'us/call all':>12}{'us/call run':>12}{'coord us':>9}{'lag ms':>8}")
        print(head)
        print("-" * len(head))
        for r in load:
            print(f"{r['who']:<24}{r['completed']:>7}{r['failed']:>7}{r['retransmissions']:>6}"
                  f"{'-' if r['late'] is None else r['late']:>6}{r['wall_s']:>8.1f}"
                  f"{fmt(r['us_per_call_total']):>12}{fmt(r['us_per_call_loop']):>12}"
                  f"{fmt(r['us_per_call_coordinator']):>9}{fmt(r['loop_lag_max_ms']):>8}")
        print("\nus/call all: user+sys CPU of every process of the command (start-up, and for "
              "sipload run the report,\nincluded) per completed call; us/call run: the calling "
              "phase (in-process: workers + coordinator);\ncoord us: the coordinator's share. "
              "retr: UAC's + UAS's retransmissions.")
        cost = result.get("coordinator_cost")
        if cost:
            print(f"\nCoordinator cost (sipload run -w 1 vs the engine alone, calling phase): "
                  f"+{fmt(cost['added_us_per_call'])} us/call "
                  f"({fmt(cost['coordinator_us_per_call'])} in the coordinator, "
                  f"{fmt(cost['worker_extra_us_per_call'])} more in the worker); "
                  f"x{fmt(cost['ratio'], '.2f')} the engine's "
                  f"{fmt(cost['engine_us_per_call'])} us/call.")
    search = result.get("search") or {}
    if search:
        print("\n2. Highest sustained rate vs sipp -sn uas (no failed call, no retransmission, "
              "throughput >= 90%):")
        _print_search(search)
    hold = result.get("hold") or {}
    if hold:
        print(f"\n3. Long calls one worker holds (sipload run -w 1, "
              f"{result.get('hold_rate', 0):g} calls/s, T1 100 ms):")
        for s in hold.get("steps", []):
            print(f"  {s['calls']:>7} calls: held {s.get('held')}, failed {s.get('failed')}, "
                  f"RSS {s.get('rss_go_kib')} -> {s.get('rss_filled_kib')} -> "
                  f"{s.get('rss_settled_kib')} KiB, {fmt(s.get('kib_per_call'), '.2f')} KiB/call "
                  f"({fmt(s.get('kib_per_call_filled'), '.2f')} with the INVITE transactions), "
                  f"CPU holding {fmt(s.get('cpu_holding'), '.2f')}, "
                  f"lag {fmt(s.get('loop_lag_max_ms_holding'))} ms")
        print(f"  most held: {hold.get('max_held')}"
              + (" (the --hold-max cap, not a limit found)" if hold.get("capped") else "")
              + f", {fmt(hold.get('kib_per_call'), '.2f')} KiB per held call")
    proxy = result.get("proxy") or {}
    if proxy:
        print(f"\n4. Proxy capacity: UAC -> Kamailio (proxy.cfg, -m 4096) -> SIPp's uas "
              f"echoing Record-Route\n   (PEERS.md: SIPp finds ~{PEERS_PROXY_RATE:,.0f} "
              "calls/s):")
        _print_search({k: v for k, v in proxy.items() if isinstance(v, dict) and "steps" in v})
        v = proxy.get("verdict")
        if v is not None:
            high = "unbounded" if v["ratio_high"] is None else f"{v['ratio_high']:.2f}"
            print(f"  sipload / SIPp: {fmt(v['ratio'], '.2f')} (what the searches showed: "
                  f"{v['ratio_low']:.2f} to {high}); within 10%: {v['verdict']}")
        print(f"  (no retransmission, throughput >= 90%, failed calls <= "
              f"{proxy.get('tolerance', 0):.1%}: SIPp fails a call whose 180 comes "
              "after its 200)")


def _print_search(search: dict[str, Any]) -> None:
    for label, s in search.items():
        steps = ", ".join(f"{st['rate']:.0f}{'+' if st['ok'] else '-'}" for st in s["steps"])
        lim = ""
        if s.get("failing_generator_limited"):
            lim = "  [first failing step generator-limited]"
        bad = s.get("first_failing")
        if s.get("budget_spent") and bad and bad - s["max_rate"] > 0.1 * s["max_rate"]:
            lim += f"  [search budget spent: the limit is below {bad:.0f}]"
        print(f"  {label:<18} {s['max_rate']:>7.0f} calls/s  us/call "
              f"{fmt(s.get('us_per_call_total_at_max')):>5} all, "
              f"{fmt(s.get('us_per_call_loop_at_max')):>5} run  (steps: {steps}){lim}")


# =============================================================================== main


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cluster_bench-") as d:
        yield Path(d)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="load,search,hold,proxy",
                   help="phases, comma-separated (default all: load,search,hold,proxy)")
    p.add_argument("--quick", action="store_true", help="smaller steps and budgets")
    p.add_argument("--calls", type=int, default=None, help="phase 1 calls (default 6000)")
    p.add_argument("--rate", type=float, default=600.0, help="phase 1 rate (default 600/s)")
    p.add_argument("--gap", type=float, default=5.0,
                   help="seconds between runs (the built-in uas keeps a call 4 s after BYE)")
    p.add_argument("--search-calls", type=int, default=None)
    p.add_argument("--step-seconds", type=float, default=None)
    p.add_argument("--search-start", type=float, default=250.0)
    p.add_argument("--search-max", type=float, default=32_000.0)
    p.add_argument("--search-budget", type=float, default=None,
                   help="seconds of rate search per UAC (default 100; --quick 50)")
    p.add_argument("--hold-start", type=int, default=None)
    p.add_argument("--hold-max", type=int, default=None)
    p.add_argument("--hold-rate", type=float, default=1000.0)
    p.add_argument("--hold-budget", type=float, default=240.0)
    p.add_argument("--proxy-budget", type=float, default=None,
                   help="seconds of rate search per UAC in the proxy phase (default 240, "
                        "--quick 100: a failed step waits up to 40 s for the UAS to stop "
                        "retransmitting, and 100 s left SIPp's search unresolved, "
                        "2,000 to 3,000 calls/s)")
    p.add_argument("--proxy-workers", type=int, default=1,
                   help="sipload workers in the proxy phase (default 1: on a 2-core machine "
                        "that also runs Kamailio and the UAS, a second worker only adds "
                        "contention; measured 1,750/s with 2 against 2,000/s with 1)")
    p.add_argument("--kamailio-children", type=int, default=None)
    p.add_argument("--proxy-tolerance", type=float, default=0.002,
                   help="proxy phase: failed calls tolerated, as a fraction (default 0.002: "
                        "Kamailio's UDP workers reorder a 180 after the 200 now and then, "
                        "and SIPp's uac fails such a call)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    q = args.quick
    args.calls = args.calls or (3000 if q else 6000)
    args.search_calls = args.search_calls or (1000 if q else 2000)
    args.step_seconds = args.step_seconds or (2.0 if q else 4.0)
    args.search_budget = args.search_budget or (50.0 if q else 100.0)
    args.proxy_budget = args.proxy_budget or (100.0 if q else 240.0)
    args.hold_start = args.hold_start or (5000 if q else 10_000)
    args.hold_max = args.hold_max or (5000 if q else 40_000)
    phases = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = phases - {"load", "search", "hold", "proxy"}
    if unknown:
        p.error(f"--only: unknown phase(s) {sorted(unknown)}")
    if which("sipp") is None:
        print("cluster_bench: sipp not found: install the Debian package sip-tester",
              file=sys.stderr)
        return 3
    result: dict[str, Any] = {"calls": args.calls, "rate": args.rate,
                              "hold_rate": args.hold_rate, "machine_cpus": os.cpu_count(),
                              "ua_driver": UA_DRIVER.exists()}
    t0 = time.monotonic()
    try:
        with workdir() as wd:
            scenario, hold_scenario = NOPAUSE, HOLD
            if phases & {"load", "search"}:
                with uas_for(wd, "shared", 7200) as uas:
                    if "load" in phases:
                        runs = phase_load(args, uas, wd, scenario)
                        result["load"] = [r.to_dict() for r in runs]
                        result["coordinator_cost"] = coordinator_cost(runs)
                    if "search" in phases:
                        result["search"] = phase_search(args, uas, wd, scenario)
            if "hold" in phases:
                result["hold"] = phase_hold(args, wd, hold_scenario)
            if "proxy" in phases:
                result["proxy"] = phase_proxy(args, wd, scenario)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        print(f"cluster_bench: could not run: {e}", file=sys.stderr)
        return 3
    result["bench_seconds"] = round(time.monotonic() - t0, 1)
    result["sipload_build"] = describe_build()  # compiled (mypyc) or pure Python
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
        print(f"\n(bench took {result['bench_seconds']:.0f} s on {os.cpu_count()} CPUs; "
              f"sipload {result['sipload_build']})")
    return 0


def coordinator_cost(runs: list[Run]) -> dict[str, Any] | None:
    by = {r.who: r for r in runs}
    engine, w1 = by.get("engine, no coordinator"), by.get("sipload run -w 1")
    if engine is None or w1 is None or w1.cpu_loop_s is None or engine.cpu_loop_s is None:
        return None
    e = engine.per_call(engine.cpu_loop_s) or 0.0
    total = w1.per_call(w1.cpu_loop_s) or 0.0
    coord = w1.per_call(w1.cpu_coord_s) or 0.0
    return {"engine_us_per_call": e, "run_us_per_call": total,
            "coordinator_us_per_call": coord, "worker_extra_us_per_call": total - coord - e,
            "added_us_per_call": total - e, "ratio": total / e if e else None}


if __name__ == "__main__":
    sys.exit(main())
