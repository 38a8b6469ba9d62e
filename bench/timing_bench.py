"""Timing against a packet capture: answer marks vs the wire, and start lateness.

One worker's engine (:class:`sipload.engine.Engine`, as a ``sipload run`` worker runs
it, in this process) places ``--calls`` basic calls (``bench/basic_call_nopause.yaml``)
at ``--rate`` on an evenly spaced (``--arrival poisson``: Poisson) open model against
``sipp -sn uas`` on loopback, while tcpdump captures the traffic (``tests/capture.py``,
the capture test's helper).
Then, call by call by Call-ID:

* **answer agreement**: the record's ``answer`` mark (INVITE written -> 200 read,
  from socket stamps) against the same interval between the capture's kernel
  timestamps; the share of calls within 0.2 ms, p50/p99 of the absolute difference;
* **start lateness**: each call's INVITE send stamp minus its intended start time
  (the records' ``actual_start - intended_start``): p50, p90, p99 (signed: the
  release leads a little to cover building the INVITE, so a start may be early),
  and the share within 0.1 ms of the intended time;
* **wire gaps**: the capture's gaps between consecutive first INVITEs against 1/rate:
  p50/p99 of the absolute deviation; with ``--arrival poisson``, the Kolmogorov-Smirnov
  statistic and p-value of those gaps against the exponential of mean 1/rate instead
  (the capture test's check, ``tests/test_timing.py``), and in brackets the p-value of
  the intended schedule's own gaps: a seed's schedule is one sample, its own p anywhere
  in (0, 1) (``--seed 7``, the default, draws one at p 0.048 for 3,000 calls; seeds 1-4
  at 0.30-0.87), so judge the wire's p beside it, over several seeds.

``--release timerfd`` is today's path (starts released by a ``timerfd``, GC in the
gaps); ``--release loop`` replaces the precise timer by nothing, as before it
existed, so starts go on the event loop's 1 ms tick (``loop.call_at``) and the
collector runs when the interpreter decides; ``both`` (default) measures one then
the other with the same calls.  The generator runs at real-time priority
(``SCHED_RR`` 1) where allowed, as the capture tests do; ``--no-realtime`` leaves it.

Needs root (tcpdump on ``lo``), tcpdump and SIPp.  Prints a table, or JSON with
``--json``; always exits 0 unless a peer is missing (a benchmark, not a test).

    python3 bench/timing_bench.py --rate 750 --calls 3000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from sipload._native import describe  # noqa: E402
from sipload.engine import Engine, EngineConfig  # noqa: E402
from sipload.scenario.loader import load_file  # noqa: E402
from sipload.stats.rundir import read_calls, records_from_table  # noqa: E402
from sipload.transport.loop import new_event_loop, tune_gc  # noqa: E402
from tests.capture import Capture, SipPacket, first_invites, sip_calls, wire_answer  # noqa: E402
from tests.peers import free_port, sipp_uas  # noqa: E402

SCENARIO = ROOT / "bench" / "basic_call_nopause.yaml"
AGREE_S = 0.0002  #: the issue's bound for answer marks against the capture
ON_TIME_S = 0.0001  #: the issue's bound for a start's release
CAPTURE_BUFFER_KIB = 262144
"""tcpdump's ring (-B): at 2,000 calls/s loopback carries ~14,000 SIP packets/s, and a
tcpdump starved of CPU on a 2-core host drops packets with the tests' 32 MiB"""


def _q(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(math.ceil(q * len(s)) - 1, 0))] if s else float("nan")


def _realtime() -> bool:
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
    except (AttributeError, OSError):
        return False
    return True


def _run_engine(rate: float, calls: int, release: str, seed: int, arrival: str
                ) -> tuple[list[dict[str, Any]], dict[str, list[SipPacket]]]:
    """The calls placed by an engine in this process; its records and the capture."""
    port = free_port()
    records: list[dict[str, Any]] = []
    saved = os.environ.get("SIPLOAD_TIMER")
    if release == "loop":
        os.environ["SIPLOAD_TIMER"] = "loop"  # the loop's own timers (hrtimer.precise_timer)
    try:
        with sipp_uas(port, limit=60.0 + 2 * calls / rate), \
                Capture([port], buffer_kib=CAPTURE_BUFFER_KIB) as cap:
            eng = Engine(EngineConfig(program=load_file(SCENARIO),
                                      target=("127.0.0.1", port), rate=rate, calls=calls,
                                      seed=seed, stop_grace=5.0, arrival=arrival),
                         on_records=records.extend)
            loop = new_event_loop()
            asyncio.set_event_loop(loop)
            loop.run_until_complete(eng.start())
            tune_gc()  # as a worker process does
            loop.run_until_complete(asyncio.wait_for(eng.run(), 60.0 + 2 * calls / rate))
            loop.close()
        wire = sip_calls(cap.packets())
        cap.close()
    finally:
        if saved is None:
            os.environ.pop("SIPLOAD_TIMER", None)
        else:
            os.environ["SIPLOAD_TIMER"] = saved
    return records, wire


def _run_cli(rate: float, calls: int, seed: int, arrival: str, realtime: bool
             ) -> tuple[list[dict[str, Any]], dict[str, list[SipPacket]]]:
    """The calls placed by ``sipload run -w 1`` (a coordinator and one worker process, as
    the capture tests run it, at ``chrt -r 1`` when ``realtime``); its records and the
    capture."""
    port = free_port()
    limit = 60.0 + 2 * calls / rate
    with tempfile.TemporaryDirectory(prefix="sipload-timing-") as tmp:
        out = Path(tmp) / "run"
        argv = [*(["chrt", "-r", "1"] if realtime else []), sys.executable, "-m", "sipload",
                "run", str(SCENARIO), "--target", f"127.0.0.1:{port}", "--rate", f"{rate:g}",
                "--calls", str(calls), "--workers", "1", "--arrival", arrival,
                "--seed", str(seed), "--out", str(out), "--quiet"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        with sipp_uas(port, limit=limit), \
                Capture([port], buffer_kib=CAPTURE_BUFFER_KIB) as cap:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=limit,
                                  cwd=ROOT, env=env, check=False)
        if done.returncode != 0:
            cap.close()
            raise SystemExit(f"sipload run exited {done.returncode}: {done.stderr[-2000:]}")
        wire = sip_calls(cap.packets())
        cap.close()
        records = [r.to_dict() for r in records_from_table(read_calls(out))]
    return records, wire


def run_once(rate: float, calls: int, release: str, seed: int,
             arrival: str = "uniform", path: str = "engine",
             realtime: bool = True) -> dict[str, Any]:
    """One captured run of one release path; the figures of the module docstring."""
    if path == "run":
        records, wire = _run_cli(rate, calls, seed, arrival, realtime)
    else:
        records, wire = _run_engine(rate, calls, release, seed, arrival)
    diffs: list[float] = []
    missing = 0
    for r in records:
        w = wire_answer(wire.get(str(r.get("call_id", "")), []))
        mark = (r.get("marks") or {}).get("answer")
        if w is None or mark is None:
            missing += 1
            continue
        diffs.append(abs(float(mark) - w))
    late = [float(r["actual_start"]) - float(r["intended_start"]) for r in records]
    starts = first_invites(wire)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    gap_dev = [abs(g - 1.0 / rate) for g in gaps]
    ks: dict[str, float] | None = None
    if arrival == "poisson" and gaps:
        from scipy import stats
        test = stats.kstest(gaps, "expon", args=(0.0, 1.0 / rate))
        intended = sorted(float(r["intended_start"]) for r in records)
        own = stats.kstest([b - a for a, b in itertools.pairwise(intended)], "expon",
                           args=(0.0, 1.0 / rate))
        ks = {"D": float(test.statistic), "p": float(test.pvalue),
              "schedule_p": float(own.pvalue)}
    ms = 1000.0
    return {
        "path": path, "release": release, "arrival": arrival, "rate": rate, "calls": calls,
        "records": len(records),
        "succeeded": sum(r["result"] == "success" for r in records),
        "compared": len(diffs), "not_compared": missing,
        "answer_within_0_2ms": sum(d <= AGREE_S for d in diffs) / len(diffs) if diffs else None,
        "answer_diff_ms": {"p50": _q(diffs, .5) * ms, "p99": _q(diffs, .99) * ms,
                           "max": max(diffs, default=float("nan")) * ms},
        "lateness_ms": {"p50": _q(late, .5) * ms, "p90": _q(late, .9) * ms,
                        "p99": _q(late, .99) * ms},
        "on_time_0_1ms": sum(abs(x) <= ON_TIME_S for x in late) / len(late) if late else None,
        "wire_gap_dev_ms": {"p50": _q(gap_dev, .5) * ms, "p99": _q(gap_dev, .99) * ms},
        "wire_gaps_ks": ks,
    }


def table(results: list[dict[str, Any]]) -> str:
    poisson = any(r["wire_gaps_ks"] is not None for r in results)
    rows = [("release", "calls ok", "answer ≤0.2ms", "|Δanswer| p50/p99 ms",
             "lateness p50/p90/p99 ms", "on time ≤0.1ms",
             "gaps vs Exp: KS D / p (schedule's p)" if poisson
             else "|gap-1/r| p50/p99 ms")]
    for r in results:
        a, lt, g, ks = (r["answer_diff_ms"], r["lateness_ms"], r["wire_gap_dev_ms"],
                        r["wire_gaps_ks"])
        agree = r["answer_within_0_2ms"]
        rows.append((r["release"], f"{r['succeeded']}/{r['calls']}",
                     "-" if agree is None else f"{agree:.1%}",
                     f"{a['p50']:.3f} / {a['p99']:.3f}",
                     f"{lt['p50']:.3f} / {lt['p90']:.3f} / {lt['p99']:.3f}",
                     "-" if r["on_time_0_1ms"] is None else f"{r['on_time_0_1ms']:.1%}",
                     (f"{ks['D']:.3f} / {ks['p']:.3g} ({ks['schedule_p']:.2g})"
                      if ks is not None else "-") if poisson
                     else f"{g['p50']:.3f} / {g['p99']:.3f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                     for row in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=750.0, help="calls/s (default 750)")
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--release", choices=("timerfd", "loop", "both"), default="both")
    p.add_argument("--arrival", choices=("uniform", "poisson"), default="uniform")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--path", choices=("engine", "run"), default="engine",
                   help="engine: one engine in this process (default); run: `sipload run "
                        "-w 1` in its own processes, at chrt -r 1 unless --no-realtime "
                        "(--release is then today's)")
    p.add_argument("--no-realtime", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.path == "run":  # only sipload run at real-time priority, as the tests do
        realtime = not args.no_realtime and subprocess.run(
            ["chrt", "-r", "1", "true"], check=False).returncode == 0
        modes: tuple[str, ...] = ("timerfd",)
    else:
        realtime = False if args.no_realtime else _realtime()
        modes = ("timerfd", "loop") if args.release == "both" else (args.release,)
    results = [run_once(args.rate, args.calls, m, args.seed, args.arrival, args.path,
                        realtime) for m in modes]
    if args.json:
        print(json.dumps({"build": describe(), "realtime": realtime, "results": results},
                         indent=2))
    else:
        print(table(results))
        print(f"\nbuild: {describe()}; real-time priority: {'yes' if realtime else 'no'}; "
              f"{args.calls} calls at {args.rate:g}/s ({args.arrival}), "
              f"{'sipload run -w 1' if args.path == 'run' else 'one engine'} vs "
              f"sipp -sn uas, tcpdump -i lo; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
