"""How long the report of a large run takes to build, and how much memory.

Run ``python3 bench/report_bench.py`` from the repository root (or
``python3 -m bench.report_bench``).  It writes a synthetic run directory of
``--calls`` calls (default 1,000,000; :func:`sipload.report.synthetic.make_run`,
through ``RunWriter`` in batches of 50,000, with one snapshot per worker per
second carrying real encoded HdrHistograms), then, in a fresh Python process so
that the figures are the report's alone, times ``build_summary`` +
``write_report`` (+ ``write_junit``) and reads the peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) of that process.

The issue's target: under 60 s and under 4 GB for one million calls.  Options:
``--rate`` (calls/s, default 1000), ``--workers`` (default 4), ``--dir`` (keep
the run directory there instead of a temporary one), ``--json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_SECONDS = 60.0
TARGET_RSS_BYTES = 4 * 1024**3


def report_only(run_dir: Path) -> dict[str, Any]:
    """Build the summary and the report of ``run_dir``; times and peak RSS."""
    t0 = time.perf_counter()
    from sipload.report import build_summary, write_junit, write_report

    t_import = time.perf_counter() - t0
    t1 = time.perf_counter()
    summary = build_summary(run_dir, thresholds=["answer.p95<200ms", "asr>=0.95"])
    t_summary = time.perf_counter() - t1
    t2 = time.perf_counter()
    report = write_report(run_dir, summary)
    t_report = time.perf_counter() - t2
    write_junit(run_dir, summary)
    total = time.perf_counter() - t1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"calls": summary["calls"]["attempted"], "import_s": t_import,
            "summary_s": t_summary, "report_s": t_report, "total_s": total,
            "peak_rss_bytes": rss, "report_bytes": report.stat().st_size,
            "answer_p95_ms": summary["latency"].get("answer", {}).get("p95")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--dir", type=Path, help="keep the run directory here")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--report-only", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.report_only:
        print(json.dumps(report_only(args.report_only)))
        return 0

    from sipload.report.synthetic import make_run

    with tempfile.TemporaryDirectory(prefix="sipload-report-bench-") as tmp:
        run_dir = args.dir or Path(tmp) / "run"
        t0 = time.perf_counter()
        make_run(run_dir, calls=args.calls, rate=args.rate, workers=args.workers,
                 in_flight=min(100, args.calls // 100), seed=7)
        gen_s = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in run_dir.iterdir())
        child = subprocess.run([sys.executable, str(Path(__file__).resolve()),
                                "--report-only", str(run_dir)],
                               capture_output=True, text=True, check=False)
        if child.returncode != 0:
            print(child.stderr, file=sys.stderr)
            print("report_bench: the report process failed", file=sys.stderr)
            return 0
        result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    result.update(generate_s=gen_s, run_dir_bytes=size, target_s=TARGET_SECONDS,
                  target_rss_bytes=TARGET_RSS_BYTES,
                  pass_time=result["total_s"] < TARGET_SECONDS,
                  pass_memory=result["peak_rss_bytes"] < TARGET_RSS_BYTES)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    gib = 1024**3
    print(f"synthetic run: {result['calls']:,} calls, {size / 1e6:,.0f} MB on disk, "
          f"generated in {gen_s:.1f} s")
    print(f"build_summary:  {result['summary_s']:6.1f} s")
    print(f"write_report:   {result['report_s']:6.1f} s   (report.html "
          f"{result['report_bytes'] / 1e6:.1f} MB)")
    print(f"total:          {result['total_s']:6.1f} s   (+ {result['import_s']:.1f} s "
          f"imports)   target < {TARGET_SECONDS:.0f} s: "
          f"{'PASS' if result['pass_time'] else 'FAIL'}")
    print(f"peak RSS:       {result['peak_rss_bytes'] / gib:6.2f} GiB   target < 4 GiB: "
          f"{'PASS' if result['pass_memory'] else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
