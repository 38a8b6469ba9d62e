"""A `sipload run -w 1` worker's CPU per call in its steady state, trees interleaved.

Run from the repository root (SIPp installed)::

    python3 bench/worker_cpu.py --before /tmp/base --calls 6000 --rate 800 --repeat 5

``run_bench.py``'s marginal CPU is the difference of two whole commands, and on a
shared VM the commands' own spread (start-up, the report) is as large as a few per
cent of the calls' cost.  This reads instead what the worker itself reports: each
second's ``cpu`` in ``intervals.jsonl`` (the worker process's user + system time in
that interval) over the calls it started, the first and last intervals left out
(start-up, draining).  Each repeat runs every tree once (``--before`` trees first,
then this checkout), then ``sipp -sn uac`` for the same calls (its whole command's CPU
per call, for the ratio), all against one ``sipp -sn uas``.  Prints each run and the
medians; exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO
from run_bench import run_sipp

from tests.peers import LOOPBACK, free_udp_port, sipp_uas, which


def worker_run(tree: Path, port: int, calls: int, rate: float, work: Path) -> tuple[float, str]:
    """One ``sipload run`` of ``tree``: the worker's µs of CPU per call started in its full
    intervals, and a note (empty when every call succeeded)."""
    out = work / f"run-{time.monotonic_ns()}"
    env = dict(os.environ, PYTHONPATH=str(tree.resolve()))
    proc = subprocess.run(
        [sys.executable, "-m", "sipload", "run", str(tree / "scenarios" / "basic_call.yaml"),
         "--target", f"{LOOPBACK}:{port}", "--workers", "1", "--calls", str(calls),
         "--rate", f"{rate:g}", "--out", str(out)],
        env=env, cwd=work, capture_output=True, text=True, timeout=calls / rate + 120)
    rows = []
    try:
        rows = [json.loads(line) for line in (out / "intervals.jsonl").read_text().splitlines()]
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return float("nan"), f"exit {proc.returncode}: {proc.stderr.strip()[-200:]}"
    full = [r for r in rows if r.get("started")][1:-1]
    started = sum(r["started"] for r in full)
    cpu = sum(r["cpu"] for r in full)
    ok = int(summary.get("calls", {}).get("succeeded", 0))
    shutil.rmtree(out, ignore_errors=True)
    note = "" if proc.returncode == 0 and ok == calls else f"exit {proc.returncode}, {ok} ok"
    return (1e6 * cpu / started if started else float("nan")), note


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, action="append", default=[],
                    help="another checkout to measure too (repeatable)")
    ap.add_argument("--calls", type=int, default=6000)
    ap.add_argument("--rate", type=float, default=800.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if which("sipp") is None:
        print("SIPp is not installed")
        return 0
    trees = [*args.before, REPO]
    runs: dict[str, list[float]] = {str(t): [] for t in trees}
    sipp: list[float] = []
    port = free_udp_port()
    with tempfile.TemporaryDirectory(prefix="sipload-workercpu-") as tmp, \
            sipp_uas(port, limit=3600.0):
        work = Path(tmp)
        for _ in range(args.repeat):
            for tree in trees:
                us, note = worker_run(tree, port, args.calls, args.rate, work)
                runs[str(tree)].append(us)
                print(f"# {tree}: {us:.1f} µs/call {note}".rstrip(), flush=True)
            s = run_sipp(port, args.calls, args.rate, work)
            sipp.append(1e6 * s.cpu_s / args.calls)
            print(f"# SIPp uac: {sipp[-1]:.1f} µs/call (whole command)", flush=True)
    base = statistics.median(sipp)
    print(f"{args.calls:,} calls at {args.rate:g}/s, median of {args.repeat}: worker CPU "
          "per call in its full intervals")
    for tree in trees:
        med = statistics.median(runs[str(tree)])
        print(f"  {tree!s:40s} {med:7.1f} µs  {med / base:5.2f}× SIPp  "
              f"runs {', '.join(f'{v:.0f}' for v in runs[str(tree)])}")
    print(f"  {'SIPp uac (whole command)':40s} {base:7.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
