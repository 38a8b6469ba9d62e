"""``sipload run`` against SIPp's uac, whole commands: CPU per call, fixed CPU, first call.

Run from the repository root (SIPp installed: Debian package ``sip-tester``; the time
to the first call needs tcpdump and root, and shows ``n/a`` without them)::

    python3 bench/run_bench.py                          # 3,000 and 15,000 calls at 1,000/s
    python3 bench/run_bench.py --small 2400 --large 24000 --rate 1200 --repeat 3

One ``sipp -sn uas`` on loopback answers every run.  Each UAC runs the whole command
a user would type, at two call counts, at the same rate:

* ``sipload run scenarios/basic_call.yaml --target 127.0.0.1:PORT --workers 1
  --calls N --rate R --out DIR`` (start-up, worker, summary, report, junit);
* ``sipp -sn uac 127.0.0.1:PORT -m N -r R`` (its built-in basic call).

CPU is the command's own user + system time with everything it waited for (its
workers), read by ``wait4`` on that one process.  From the two counts:

* **marginal CPU per call** = (CPU(large) - CPU(small)) / (large - small): what one
  more call costs, start-up and report excluded;
* **fixed CPU** = CPU(small) - small x marginal: what a run costs besides its calls
  (imports, starting the worker, shutting down, summary, report);
* **time to the first call**: wall seconds from starting the command to the first
  datagram reaching the UAS's port, on the kernel's timestamp (``tcpdump -c 1``).

Before the runs each checkout's ``sipload/`` is byte-compiled (``compileall``), as
``pip install`` does: where ``PYTHONDONTWRITEBYTECODE`` is set (as on the development
VM) an editable checkout would otherwise compile every pure module from source on every
start, a few tenths of a second that no installed sipload pays.

With ``--repeat N`` the runs are interleaved (sipload small, sipload large, SIPp
small, SIPp large, again) and each figure is the median.  The machine's other load
moves every figure: compare ratios taken in one command.  Exits 0 unless a peer
could not run (3).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import REPO

from sipload._native import describe as describe_build
from tests.peers import LOOPBACK, SippProcess, free_udp_port, sipp_uac, sipp_uas, which

SCENARIO = REPO / "scenarios" / "basic_call.yaml"


@dataclass
class Run:
    """One whole command: how many calls it completed and what it cost."""

    who: str
    calls: int
    cpu_s: float
    wall_s: float
    first_call_s: float | None
    ok: bool
    note: str = ""


class FirstPacket:
    """``tcpdump -c 1`` on loopback: the kernel's time of the first datagram to a port."""

    def __init__(self, port: int) -> None:
        self.proc: subprocess.Popen[str] | None = None
        if which("tcpdump") is None or os.geteuid() != 0:
            return
        self.proc = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-n", "-tt", "-l", "-c", "1", f"udp dst port {port}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 10
        for line in self.proc.stderr:  # "listening on lo, ...": the filter is attached
            if "listening on" in line or time.monotonic() > deadline:
                break

    def seconds_after(self, started: float, timeout: float = 5.0) -> float | None:
        """Seconds from Unix time ``started`` to the packet (None: none seen, no tcpdump)."""
        if self.proc is None:
            return None
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return None
        m = re.match(r"(\d+\.\d+)", out.strip())
        return float(m.group(1)) - started if m else None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def wait_cpu(proc: subprocess.Popen[Any], timeout: float) -> tuple[int, float]:
    """Wait for ``proc`` (killing it after ``timeout`` s); its exit status and CPU seconds
    (its own and its waited-for children's: a run's workers)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, ru.ru_utime + ru.ru_stime
        if time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.02)


def run_sipload(port: int, calls: int, rate: float, work: Path, tree: Path | None = None,
                who: str = "sipload") -> Run:
    """One ``sipload run``, of this checkout or of ``tree`` (another checkout)."""
    out = work / f"run-{calls}-{time.monotonic_ns()}"
    env = dict(os.environ)
    # absolute: the command runs in the work directory, where a relative PYTHONPATH
    # (``PYTHONPATH=.``) would miss this checkout and run the editable install's
    env["PYTHONPATH"] = str((tree or REPO).resolve())
    argv = [sys.executable, "-m", "sipload", "run", str(SCENARIO),
            "--target", f"{LOOPBACK}:{port}", "--workers", "1",
            "--calls", str(calls), "--rate", f"{rate:g}", "--out", str(out)]
    first = FirstPacket(port)
    log = open(work / f"sipload-{calls}.log", "w")  # noqa: SIM115 - closed below
    try:
        started, t0 = time.time(), time.monotonic()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=work, env=env)
        code, cpu = wait_cpu(proc, calls / rate + 120)
        wall = time.monotonic() - t0
        first_s = first.seconds_after(started)
    finally:
        first.close()
        log.close()
    summary: dict[str, Any] = {}
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        pass
    succeeded = int(summary.get("calls", {}).get("succeeded", 0))
    reasons = summary.get("failed", {}).get("by_reason") or {}
    tail = (work / f"sipload-{calls}.log").read_text().strip().splitlines()[-1:]
    note = "" if code == 0 else f"exit {code}: {reasons or tail}"
    shutil.rmtree(out, ignore_errors=True)
    return Run(who, calls, cpu, wall, first_s, code == 0 and succeeded == calls, note)


def run_sipp(port: int, calls: int, rate: float, work: Path) -> Run:
    limit = calls / rate + 60
    uac = sipp_uac(f"{LOOPBACK}:{port}", calls=calls, rate=rate, limit=limit, stat=True,
                   workdir=work / f"uac-{calls}-{time.monotonic_ns()}")
    first = FirstPacket(port)
    try:
        before = os.times()
        started, t0 = time.time(), time.monotonic()
        with uac:
            code = uac.wait(limit + 15)
        wall = time.monotonic() - t0
        after = os.times()  # tcpdump is reaped after this: not counted
        first_s = first.seconds_after(started)
    finally:
        first.close()
    cpu = (after.children_user - before.children_user
           + after.children_system - before.children_system)
    return Run("SIPp", calls, cpu, wall, first_s, code == 0, "" if code == 0 else f"exit {code}")


def byte_compile(tree: Path) -> None:
    """``.pyc`` files for a checkout's ``sipload/``, as an install has them."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "sipload")],
                   check=False, capture_output=True)


def _median(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def figures(runs: list[Run], small: int, large: int) -> dict[str, Any]:
    """Medians of the small and large runs, then marginal and fixed CPU."""
    s = [r for r in runs if r.calls == small]
    big = [r for r in runs if r.calls == large]
    cpu_s, cpu_l = _median([r.cpu_s for r in s]), _median([r.cpu_s for r in big])
    assert cpu_s is not None and cpu_l is not None
    marginal = (cpu_l - cpu_s) / (large - small)
    return {
        "cpu_small_s": round(cpu_s, 3), "cpu_large_s": round(cpu_l, 3),
        "marginal_us": round(1e6 * marginal, 1),
        "fixed_s": round(cpu_s - small * marginal, 3),
        "first_call_s": _round(_median([r.first_call_s for r in runs])),
        "wall_small_s": round(statistics.median(r.wall_s for r in s), 2),
        "all_ok": all(r.ok for r in runs),
        "notes": sorted({r.note for r in runs if r.note}),
    }


def _round(v: float | None, n: int = 3) -> float | None:
    return None if v is None else round(v, n)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else round(a / b, 2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", type=int, default=3000, help="calls of the small run")
    p.add_argument("--large", type=int, default=15000, help="calls of the large run")
    p.add_argument("--rate", type=float, default=1000.0, help="calls per second")
    p.add_argument("--repeat", type=int, default=1, help="runs of each (medians)")
    p.add_argument("--only", choices=("sipload", "sipp"), help="one UAC only")
    p.add_argument("--before", type=Path, metavar="CHECKOUT",
                   help="also run another checkout's sipload (e.g. the last commit's, "
                        "with its own compiled build) in the same command: a 'before' row")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if which("sipp") is None:
        print("run_bench: sipp not found: install the Debian package sip-tester",
              file=sys.stderr)
        return 3
    who = [args.only] if args.only else ["sipload", "sipp"]
    if args.before is not None:
        who.insert(0, "before")
    runs: dict[str, list[Run]] = {w: [] for w in who}
    for tree in [REPO] + ([args.before] if args.before is not None else []):
        byte_compile(tree)
    with tempfile.TemporaryDirectory(prefix="run_bench-") as d:
        work = Path(d)
        port = free_udp_port()
        total = args.repeat * len(who) * (args.small + args.large) / args.rate
        uas: SippProcess = sipp_uas(port, limit=total * 3 + 600, workdir=work / "uas")
        try:
            with uas:
                for _ in range(args.repeat):
                    for w in who:
                        for n in (args.small, args.large):
                            if w == "sipp":
                                run = run_sipp(port, n, args.rate, work)
                            else:
                                run = run_sipload(port, n, args.rate, work, who=w,
                                                  tree=args.before if w == "before" else None)
                            runs[w].append(run)
                            first = ("n/a" if run.first_call_s is None
                                     else f"{run.first_call_s:.3f} s")
                            print(f"# {w} {n} calls: CPU {run.cpu_s:.2f} s, wall "
                                  f"{run.wall_s:.1f} s, first call {first}"
                                  f"{'' if run.ok else ' (NOT all calls succeeded)'}",
                                  file=sys.stderr)
                            time.sleep(1.0)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            print(f"run_bench: could not run: {e}", file=sys.stderr)
            return 3
    result: dict[str, Any] = {"small": args.small, "large": args.large, "rate": args.rate,
                              "repeat": args.repeat, "build": describe_build()}
    for w in who:
        result[w] = figures(runs[w], args.small, args.large)
    sipp = result.get("sipp")
    for w in who:
        if w != "sipp" and sipp is not None:
            f = result[w]
            f["ratios"] = {"marginal": _ratio(f["marginal_us"], sipp["marginal_us"]),
                           "first_call": _ratio(f["first_call_s"], sipp["first_call_s"])}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.small:,} and {args.large:,} calls at {args.rate:g}/s, "
          f"median of {args.repeat}; sipload {result['build']}")
    print(f"{'':8} {'marginal CPU/call':>18} {'× SIPp':>7} {'fixed CPU':>10} "
          f"{'first call':>11} {'CPU small/large':>16}")
    for w in who:
        f = result[w]
        fc = "n/a" if f["first_call_s"] is None else f"{f['first_call_s']:.3f} s"
        ratio = (f.get("ratios") or {}).get("marginal")
        print(f"{w:8} {f['marginal_us']:>15.1f} µs {'' if ratio is None else ratio:>7} "
              f"{f['fixed_s']:>8.2f} s {fc:>11} "
              f"{f['cpu_small_s']:>7.2f}/{f['cpu_large_s']:.2f} s"
              f"{'' if f['all_ok'] else '  (some calls failed: ' + '; '.join(f['notes']) + ')'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
