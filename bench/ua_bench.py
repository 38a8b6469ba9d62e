"""sipload's UAC against SIPp's, in one command, against the same ``sipp -sn uas``.

Run from the repository root (SIPp installed: Debian package ``sip-tester``)::

    python3 bench/ua_bench.py                 # table; --json for JSON
    python3 bench/ua_bench.py --profile       # only: cProfile of the UA driver, top 25

Everything runs on 127.0.0.1.  One ``sipp -sn uas -buff_size 4194304`` answers; the
UACs place basic calls over UDP (INVITE/100/180/200/ACK/BYE/200, no pause):

(a) ``sipload UA``: ``bench/ua_uac.py --mode ua``, a process running a tight loop
    on one :class:`UserAgent` (auto ACK, BYE on the 200);
(b) ``SIPp``: ``sipp -sn uac -buff_size 4194304``;
(c) ``sipload engine``: ``bench/ua_uac.py --mode engine``, the same calls through
    the YAML scenario interpreter (``bench/basic_call_nopause.yaml``);
(d) ``floor`` and ``floor + parser``: ``bench/floor_uac.py``, the same calls from
    byte templates with no SIP stack on the same loop and socket (what the platform
    costs: CPython, uvloop, the system calls), then with sipload's parser on every
    datagram read (``--no-floor`` leaves them out).

Phases:

1. **Same load**: each UAC places ``--calls`` (12,000) calls at ``--rate`` (800/s), one
   after the other, ``--gap`` seconds apart (the built-in uas keeps a call 4 s after
   its BYE).  Per UAC: completed, failed, retransmissions (the UAC's own, plus the
   UAS's during that run, from its ``-trace_stat`` file), late starts (sipload only:
   > 10 ms after the intended time), and CPU per call: user+sys of the whole UAC
   process (``getrusage(RUSAGE_CHILDREN)`` deltas around it, start-up included),
   and for sipload also the calling phase alone (measured inside the process).
2. **Rate search** (``--search-calls`` per step, at least ``--step-seconds`` of
   calls): the highest rate with no failed call, no retransmission (UAC or UAS) and a
   throughput (completed calls / time from the first start to the last end) of at
   least 90% of the rate.  The rate doubles from ``--search-start`` until a step
   fails, then bisects to within 10%, within ``--search-budget`` seconds per UAC.
   Every step has a fresh UAS, so a failed step's leftovers (2xx retransmitted for
   up to 32 s) cannot spoil the next.
3. **Memory per concurrent call**: a fresh ``sipp -sn uas`` per UAC; ``--mem-calls``
   (10,000) calls held open (no BYE) at ``--mem-rate`` (1,000/s).  sipload:
   ``ua_uac.py --hold`` places them in two halves and reads its RSS after each half
   is answered and its INVITE transactions have ended (Timer M, 64·T1; the memory
   run uses ``--mem-t1`` 0.05 s so that is 3.2 s); per call = the second half's
   growth / (N/2), i.e. once freed transaction memory is being reused (growth from
   before the first call is shown too).  SIPp: ``sipp -sn uac -d 600000`` (each call
   pauses 600 s after its ACK) with ``-m 1`` and with ``-m N``; per call =
   (RSS(N) − RSS(1)) / (N − 1), RSS read from ``/proc/PID/status`` once SIPp's stat
   file shows every call created and still open.
4. **Ratios** and the issue's **targets** (PASS/FAIL): sipload UA CPU per call ≤ 6×
   SIPp's, ≥ 2,000 calls/s sustained, ≤ 8 KiB per concurrent call.

``--profile`` runs only ``ua_uac.py`` for ``--profile-calls`` (5,000) calls at
``--profile-rate`` (400/s: cProfile makes it slower) under cProfile and prints the
25 functions with the largest tottime (``--profile-mode engine`` for the interpreter).

Figures depend on the machine and what else runs on it: compare figures from the
same command only.  The script exits 0 even when a target is missed (3 when SIPp
is missing or a process could not run).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import Run, Step, children_cpu, rss_kib, run_sipp_uac, uas_for
from common import rate_search as search_rate

from sipload._native import describe as describe_build
from tests.peers import (
    LOOPBACK,
    SIPP_BUFF_SIZE,
    SippProcess,
    sipp_uac,
    stat_int,
    which,
)

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "ua_uac.py"
FLOOR = HERE / "floor_uac.py"
BUFF = str(SIPP_BUFF_SIZE)

SIPP_US_PER_CALL_NOTE = 80.0
"""PEERS.md: SIPp's uac spends about 80 µs of CPU per basic call at 800 calls/s."""


# =============================================================================== helpers


# =============================================================================== the UACs


def _run_driver(who: str, argv: list[str], uas: SippProcess, calls: int,
                rate: float) -> tuple[Run, dict[str, Any]]:
    """Run one UAC driver process, whose last line on stdout is its JSON result: the Run
    with what the whole process cost (and the UAS's retransmissions meanwhile), and the
    result; a driver that timed out or printed none gives a failed Run and ``{}``."""
    before_uas = uas.retransmissions_after(0)
    cpu0 = children_cpu()
    t0 = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True,
                              timeout=calls / rate + 60, check=False)
    except subprocess.TimeoutExpired:
        return Run(who, calls, rate, failed=calls, ok_exit=False,
                   reasons={"driver timed out": 1}), {}
    wall = time.monotonic() - t0
    cpu = children_cpu() - cpu0
    try:
        res = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        sys.stderr.write(done.stdout + done.stderr)
        return Run(who, calls, rate, failed=calls, ok_exit=False,
                   reasons={"driver failed": 1}), {}
    run = Run(who, calls, rate, wall_s=wall, cpu_total_s=cpu, ok_exit=done.returncode == 0)
    run.retrans_uas = uas.retransmissions_after(time.time()) - before_uas
    return run, res


def run_sipload(mode: str, uas: SippProcess, calls: int, rate: float,
                extra: list[str] | None = None) -> tuple[Run, dict[str, Any]]:
    who = "sipload UA" if mode == "ua" else "sipload engine"
    argv = [sys.executable, str(DRIVER), "--target", f"{LOOPBACK}:{uas.port}",
            "--calls", str(calls), "--rate", f"{rate:g}", "--mode", mode, *(extra or [])]
    run, res = _run_driver(who, argv, uas, calls, rate)
    if res:
        run.completed = res.get("completed", res.get("answered", 0))
        run.failed = res["failed"]
        run.retrans_uac = res["retransmissions"]
        run.late = res["late"]
        run.throughput = res.get("throughput", 0.0)
        run.cpu_loop_s = res.get("cpu_s")
        run.reasons = res["reasons"]
    return run, res


def run_floor(level: str, uas: SippProcess, calls: int, rate: float) -> Run:
    """(d): ``bench/floor_uac.py --level LEVEL``, the same calls with no SIP stack."""
    who = {"bare": "floor", "parse": "floor + parser"}.get(level, f"floor + {level}")
    argv = [sys.executable, str(FLOOR), "--target", f"{LOOPBACK}:{uas.port}",
            "--calls", str(calls), "--rate", f"{rate:g}", "--level", level]
    run, res = _run_driver(who, argv, uas, calls, rate)
    if res:
        run.completed = res["completed"]
        run.failed = res["failed"]
        run.cpu_loop_s = res["cpu_s"]
        run.ok_exit = run.ok_exit and not res["timed_out"]
        if res["unexpected"]:
            run.reasons = {"unexpected answer": res["unexpected"]}
    return run


# =============================================================================== phases


def same_load(args: argparse.Namespace, uas: SippProcess, workdir: Path) -> list[Run]:
    runs: list[Run] = []
    order = ["ua", "sipp"] + ([] if args.no_engine else ["engine"]) + (
        [] if args.no_floor else ["bare", "parse"])
    for i, who in enumerate(order):
        if i:
            time.sleep(args.gap)
        note(f"same load: {who}, {args.calls} calls at {args.rate:g}/s")
        if who == "sipp":
            runs.append(run_sipp_uac(f"{LOOPBACK}:{uas.port}", uas, workdir, args.calls,
                                     args.rate, "SIPp"))
        elif who in ("bare", "parse"):
            runs.append(run_floor(who, uas, args.calls, args.rate))
        else:
            runs.append(run_sipload(who, uas, args.calls, args.rate)[0])
    return runs


def rate_search(args: argparse.Namespace, who: str, workdir: Path) -> dict[str, Any]:
    """The one rate search (bench/common.py); every step against a fresh ``sipp -sn uas``
    (so a failed step's leftovers, 2xx retransmissions for up to 32 s, cannot spoil the
    next)."""

    def step(rate: float, calls: int) -> Step:
        with uas_for(workdir, f"search_{who}_{rate:.0f}_{calls}_{time.monotonic_ns()}",
                     calls / rate + 120) as uas:
            if who == "sipp":
                run = run_sipp_uac(f"{LOOPBACK}:{uas.port}", uas, workdir, calls, rate, "SIPp")
            else:
                run = run_sipload(who, uas, calls, rate)[0]
        return Step(run.sustained(), {"failed": run.failed,
                                      "retransmissions": run.retransmissions,
                                      "throughput": round(run.throughput, 1)}, run)

    summary, _, _ = search_rate(step, label=who, start=args.search_start,
                                maximum=args.search_max, calls=args.search_calls,
                                step_seconds=args.step_seconds, budget=args.search_budget,
                                note=note)
    return summary


def memory_sipload(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    with uas_for(workdir, "mem_sipload", 2 * args.mem_calls / args.mem_rate + 300) as uas:
        _, res = run_sipload("ua", uas, args.mem_calls, args.mem_rate,
                             ["--hold", "--t1", f"{args.mem_t1:g}",
                              "--settle", f"{64 * args.mem_t1 + 1:g}",
                              "--max-seconds", f"{args.mem_calls / args.mem_rate + 60:g}"])
    if not res:
        return {"error": "driver failed"}
    keep = ("held", "failed", "retransmissions", "rss_before_kib", "rss_half_kib",
            "rss_all_kib", "kib_per_call", "kib_per_call_from_start", "t1", "settle_s")
    return {"calls": args.mem_calls, "rate": args.mem_rate,
            **{k: res.get(k) for k in keep}}


def _sipp_hold_rss(uas: SippProcess, workdir: Path, calls: int, rate: float) -> tuple[int, int]:
    """RSS (KiB) of a ``sipp -sn uac -d 600000`` once ``calls`` calls are answered."""
    uac = sipp_uac(f"{LOOPBACK}:{uas.port}", calls=calls, rate=rate, stat=True,
                   extra_args=["-l", str(calls), "-d", "600000"],
                   limit=calls / rate + 120, workdir=workdir / f"hold_{calls}")
    with uac:
        deadline = time.monotonic() + calls / rate + 30
        held = 0
        while time.monotonic() < deadline and uac.running():
            st = uac.stat()
            # every call created, none failed, all in their pause (answered and ACKed)
            if (stat_int(st, "OutgoingCall(C)") >= calls
                    and stat_int(st, "CurrentCall") >= calls):
                held = stat_int(st, "CurrentCall")
                time.sleep(1.5)  # a stat line is one second old at most; let it settle
                break
            time.sleep(0.2)
        pid = uac.program_pid()
        return held, rss_kib(pid) if pid is not None else 0


def memory_sipp(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    with uas_for(workdir, "mem_sipp1", 120) as uas:
        held1, rss1 = _sipp_hold_rss(uas, workdir, 1, args.mem_rate)
    with uas_for(workdir, "mem_sippn", args.mem_calls / args.mem_rate + 120) as uas:
        heldn, rssn = _sipp_hold_rss(uas, workdir, args.mem_calls, args.mem_rate)
    return {
        "calls": args.mem_calls, "held": heldn, "rss_1_call_kib": rss1,
        "rss_n_calls_kib": rssn,
        "kib_per_call": (rssn - rss1) / max(heldn - held1, 1) if heldn > held1 else None,
    }


def profile(args: argparse.Namespace, workdir: Path) -> str:
    out = workdir / "ua_uac.prof"
    with uas_for(workdir, "profile", args.profile_calls / args.profile_rate + 120) as uas:
        run, _ = run_sipload(args.profile_mode, uas, args.profile_calls, args.profile_rate,
                             ["--profile-out", str(out)])
    buf = io.StringIO()
    buf.write(f"cProfile of bench/ua_uac.py --mode {args.profile_mode}: "
              f"{run.completed} calls completed, {run.failed} failed, at "
              f"{args.profile_rate:g}/s (calling phase only; slower than unprofiled)\n")
    if out.exists():
        pstats.Stats(str(out), stream=buf).strip_dirs().sort_stats(
            args.profile_sort).print_stats(25)
    else:
        buf.write("no profile written\n")
    return buf.getvalue()


# =============================================================================== output


def note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(v: float | None, spec: str = ".1f") -> str:
    return "n/a" if v is None else format(v, spec)


def targets(runs: dict[str, Run], search: dict[str, Any],
            mem: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    ua, sipp = runs.get("sipload UA"), runs.get("SIPp")
    if ua is not None and sipp is not None:
        # a run that completed no call has no CPU per call: it fails, it does not pass at 0 us
        measured = ua.completed > 0 and sipp.completed > 0
        r = ratio(ua.us_per_call, sipp.us_per_call) if measured else None
        detail = (f"{ua.us_per_call:.0f} us vs {sipp.us_per_call:.0f} us" if measured else
                  f"no figure: {ua.completed} sipload and {sipp.completed} SIPp calls completed")
        out.append({"target": "sipload UA CPU/call <= 6x SIPp's (about 480 us)",
                    "value": r, "detail": detail, "pass": r is not None and r <= 6.0})
    if "ua" in search:
        v = search["ua"]["max_rate"]
        out.append({"target": ">= 2,000 calls/s sustained (sipload UA)", "value": v,
                    "detail": f"{v:.0f}/s", "pass": v >= 2000})
    if "sipload" in mem and mem["sipload"].get("kib_per_call") is not None:
        v = mem["sipload"]["kib_per_call"]
        out.append({"target": "<= 8 KiB per concurrent call (sipload UA)", "value": v,
                    "detail": f"{v:.2f} KiB", "pass": v <= 8.0})
    return out


def print_report(result: dict[str, Any]) -> None:
    runs = [Run(**{k: v for k, v in r.items() if k in Run.__dataclass_fields__})
            for r in result.get("same_load", [])]
    if runs:
        print(f"Same load: {result['calls']} basic calls at {result['rate']:g}/s over UDP, "
              f"against one sipp -sn uas (-buff_size {BUFF})\n")
        head = (f"{'UAC':<16}{'completed':>10}{'failed':>8}{'retrans':>9}{'late':>7}"
                f"{'wall s':>8}{'CPU s':>8}{'us/call':>9}{'loop us/call':>14}")
        print(head)
        print("-" * len(head))
        for r in runs:
            print(f"{r.who:<16}{r.completed:>10}{r.failed:>8}{r.retransmissions:>9}"
                  f"{'-' if r.late is None else r.late:>7}{r.wall_s:>8.1f}"
                  f"{r.cpu_total_s:>8.2f}{r.us_per_call:>9.0f}"
                  f"{fmt(r.per_call(r.cpu_loop_s), '.0f'):>14}")
        print("\nus/call: user+sys CPU of the whole UAC process (start-up included) per "
              "completed call;\nloop us/call: sipload's calling phase alone (in-process). "
              "retrans: UAC's + UAS's during the run.")
        by = {r.who: r for r in runs}
        print()
        for a, b in (("sipload UA", "SIPp"), ("sipload engine", "SIPp"),
                     ("sipload engine", "sipload UA"), ("floor", "SIPp"),
                     ("floor + parser", "floor"), ("sipload UA", "floor")):
            if a in by and b in by:
                x = ratio(by[a].us_per_call, by[b].us_per_call)
                print(f"CPU per call {a} / {b}: {fmt(x, '.2f')}x")
    search = result.get("search", {})
    if search:
        print("\nRate search (no failed call, no retransmission, throughput >= 90% of rate):")
        names = {"ua": "sipload UA", "sipp": "SIPp", "engine": "sipload engine"}
        for key, s in search.items():
            steps = ", ".join(f"{st['rate']:.0f}{'+' if st['ok'] else '-'}" for st in s["steps"])
            print(f"  {names[key]:<16} max sustained {s['max_rate']:>8.0f} calls/s   "
                  f"(steps: {steps})")
        if "ua" in search and "sipp" in search and search["sipp"]["max_rate"]:
            print(f"  sipload UA / SIPp sustained rate: "
                  f"{search['ua']['max_rate'] / search['sipp']['max_rate']:.2f}")
    mem = result.get("memory", {})
    if mem:
        print(f"\nMemory per concurrent call ({result.get('mem_calls')} calls held open):")
        s, p = mem.get("sipload", {}), mem.get("sipp", {})
        if s.get("kib_per_call") is not None:
            print(f"  sipload UA  {s['kib_per_call']:.2f} KiB/call (second half's growth; "
                  f"{s['kib_per_call_from_start']:.2f} KiB/call from before the first call); "
                  f"RSS {s['rss_before_kib']} -> {s['rss_half_kib']} -> {s['rss_all_kib']} KiB, "
                  f"{s['held']} held, {s['failed']} failed")
        elif s:
            print(f"  sipload UA  n/a: {s}")
        if p:
            print(f"  SIPp        {fmt(p.get('kib_per_call'), '.2f')} KiB/call; RSS 1 call "
                  f"{p['rss_1_call_kib']} KiB, {p['held']} calls {p['rss_n_calls_kib']} KiB")
        if s.get("kib_per_call") and p.get("kib_per_call"):
            print(f"  sipload / SIPp: {s['kib_per_call'] / p['kib_per_call']:.2f}x")
    tg = result.get("targets", [])
    if tg:
        print("\nTargets (issue 3 §5):")
        for t in tg:
            print(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {t['detail']}")
    if result.get("profile"):
        print()
        print(result["profile"])


# =============================================================================== main


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ua_bench-") as d:
        yield Path(d)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=12_000)
    p.add_argument("--rate", type=float, default=800.0)
    p.add_argument("--gap", type=float, default=5.0, help="seconds between runs (default 5)")
    p.add_argument("--no-engine", action="store_true", help="skip (c), the YAML interpreter")
    p.add_argument("--no-floor", action="store_true",
                   help="skip (d), the UAC with no SIP stack (bench/floor_uac.py)")
    p.add_argument("--no-search", action="store_true")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--search-calls", type=int, default=3000)
    p.add_argument("--step-seconds", type=float, default=1.5,
                   help="a search step lasts at least this long (calls = rate x this)")
    p.add_argument("--search-start", type=float, default=500.0)
    p.add_argument("--search-max", type=float, default=64_000.0)
    p.add_argument("--search-budget", type=float, default=60.0,
                   help="seconds of rate search per UAC (default 60)")
    p.add_argument("--mem-calls", type=int, default=10_000)
    p.add_argument("--mem-rate", type=float, default=1000.0)
    p.add_argument("--mem-t1", type=float, default=0.05,
                   help="T1 of the sipload memory run (Timer M = 64 T1)")
    p.add_argument("--profile", action="store_true",
                   help="only profile the sipload UAC driver (cProfile, top 25)")
    p.add_argument("--profile-calls", type=int, default=5000)
    p.add_argument("--profile-rate", type=float, default=400.0)
    p.add_argument("--profile-mode", choices=("ua", "engine"), default="ua")
    p.add_argument("--profile-sort", choices=("tottime", "cumulative"), default="tottime")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    if which("sipp") is None:
        print("ua_bench: sipp not found: install the Debian package sip-tester", file=sys.stderr)
        return 3
    result: dict[str, Any] = {"calls": args.calls, "rate": args.rate,
                              "mem_calls": args.mem_calls, "machine_cpus": os.cpu_count()}
    t0 = time.monotonic()
    try:
        with workdir() as wd:
            if args.profile:
                result["profile"] = profile(args, wd)
            else:
                with uas_for(wd, "shared", 3600) as uas:
                    runs = same_load(args, uas, wd)
                result["same_load"] = [r.to_dict() for r in runs]
                search: dict[str, Any] = {}
                if not args.no_search:
                    for who in ["ua", "sipp"] + ([] if args.no_engine else ["engine"]):
                        search[who] = rate_search(args, who, wd)
                result["search"] = search
                memory: dict[str, Any] = {}
                if not args.no_memory:
                    note(f"memory: sipload UA holding {args.mem_calls} calls")
                    memory["sipload"] = memory_sipload(args, wd)
                    note(f"memory: SIPp holding {args.mem_calls} calls")
                    memory["sipp"] = memory_sipp(args, wd)
                result["memory"] = memory
                by = {r.who: r for r in runs}
                result["ratios"] = {
                    "cpu_ua_over_sipp": ratio(by["sipload UA"].us_per_call,
                                              by["SIPp"].us_per_call),
                    "cpu_engine_over_sipp": ratio(by["sipload engine"].us_per_call,
                                                  by["SIPp"].us_per_call)
                    if "sipload engine" in by else None,
                    "cpu_engine_over_ua": ratio(by["sipload engine"].us_per_call,
                                                by["sipload UA"].us_per_call)
                    if "sipload engine" in by else None,
                    "cpu_floor_over_sipp": ratio(by["floor"].us_per_call, by["SIPp"].us_per_call)
                    if "floor" in by else None,
                    "cpu_ua_over_floor": ratio(by["sipload UA"].us_per_call,
                                               by["floor"].us_per_call)
                    if "floor" in by else None,
                    "rate_ua_over_sipp": ratio(search["ua"]["max_rate"],
                                               search["sipp"]["max_rate"])
                    if search else None,
                    "memory_sipload_over_sipp": ratio(
                        memory.get("sipload", {}).get("kib_per_call"),
                        memory.get("sipp", {}).get("kib_per_call")) if memory else None,
                }
                result["targets"] = targets(by, search, memory)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        print(f"ua_bench: could not run: {e}", file=sys.stderr)
        return 3
    result["bench_seconds"] = round(time.monotonic() - t0, 1)
    result["sipload_build"] = describe_build()  # compiled (mypyc) or pure Python
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
        print(f"\n(bench took {result['bench_seconds']:.0f} s; sipload {result['sipload_build']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
