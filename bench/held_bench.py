"""Memory per held call: the bare UA and a worker's engine, against ``sipp -sn uas``.

Issue 13's target 5: at most 3 KiB per held call in the bare UA (SIPp's uac holds a
call in 2.9 KiB, ``bench/ua_bench.py``'s memory figure) and at most 6 KiB per held
call for a worker (the UA's call plus the interpreter's call instance and record).

Runs of ``bench/ua_uac.py`` against a fresh ``sipp -sn uas`` each, ``--calls``
calls at ``--rate``, T1 = ``--t1`` (so Timer M, 64·T1, ends the INVITE transactions
before the reading; a held call then holds its dialog, not its transactions), read
once the last call has been quiet long enough for a worker to pack its wire trace
(``IDLE_PACK``, ``sipload/stats/traces.py`` rule 5):

* **ua**: ``--mode ua --hold``: the bare UA, no BYE; RSS after each half
  (per call: the second half's growth / (N/2)) and the traced Python heap
  (``tracemalloc``: growth since before the first call / calls held);
* **engine**: ``--mode engine --hold``: ``bench/hold_call.yaml`` (the basic call,
  pausing an hour after its ACK) through the engine as a worker runs it; RSS and
  traced heap growth since before the first call / calls held.  Twice: with
  ``--trace failed`` (what ``sipload run`` keeps unless told otherwise: every call's
  messages until it ends, in case it fails) and with ``--trace none``.

tracemalloc counts the bytes Python objects take; RSS adds the allocator's arenas
and free lists (and is noisier).  tracemalloc's own bookkeeping is resident too, so
the RSS column is only filled in by a run with ``--rss``, which traces nothing.
On a loaded host run it at real-time priority (``chrt -r 1``: SIPp and the drivers
inherit it), or calls time out and the figures mean nothing (the table shows the
calls held).  Needs SIPp; prints a table, or JSON (``--json``).

    chrt -r 1 python3 bench/held_bench.py --calls 4000 --rate 500
    chrt -r 1 python3 bench/held_bench.py --calls 4000 --rate 500 --rss
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from sipload._native import describe  # noqa: E402
from sipload.stats.traces import IDLE_PACK  # noqa: E402
from tests.peers import free_port, sipp_uas  # noqa: E402

UAC = Path(__file__).resolve().parent / "ua_uac.py"


def held(mode: str, args: argparse.Namespace, trace: str = "failed") -> dict[str, Any]:
    port = free_port()
    # Timer M ends the INVITE transactions; a worker packs the wire traces of calls quiet
    # for IDLE_PACK (sipload.stats.traces, rule 5): both are over before the reading
    settle = max(64 * args.t1 + 1.0, IDLE_PACK + 3.0)
    with sipp_uas(port, limit=4 * args.calls / args.rate + 120):
        cmd = [sys.executable, str(UAC), "--target", f"127.0.0.1:{port}", "--mode", mode,
               "--hold", *([] if args.rss else ["--tracemalloc"]),
               "--calls", str(args.calls), "--rate", f"{args.rate:g}",
               "--t1", f"{args.t1:g}", "--settle", f"{settle:g}",
               "--max-seconds", f"{args.calls / args.rate + 60:g}",
               *(["--trace", trace] if mode == "engine" else [])]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                             env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    label = mode if mode == "ua" else f"engine, --trace {trace}"
    if out.returncode != 0:
        return {"mode": label, "error": out.stderr.strip().splitlines()[-1:] or ["failed"]}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["mode"] = label
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--t1", type=float, default=0.05, help="T1 (s); Timer M = 64·T1")
    p.add_argument("--rss", action="store_true",
                   help="trace nothing: RSS per held call (tracemalloc's bookkeeping is resident)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    results = [held("ua", args), held("engine", args), held("engine", args, trace="none")]
    if args.json:
        print(json.dumps({"build": describe(), "results": results}, indent=2))
        return 0
    print(f"{'run':24} {'held':>6} {'traced KiB/call':>16} {'RSS KiB/call':>13}")
    for r in results:
        if "error" in r:
            print(f"{r['mode']:24} error: {r['error']}")
            continue
        rss = r.get("kib_per_call", r.get("kib_per_call_from_start")) if args.rss else None
        print(f"{r['mode']:24} {r['held']:>6} {r.get('traced_kib_per_call', float('nan')):>16.2f} "
              f"{rss if rss is not None else float('nan'):>13.2f}")
    print(f"\nbuild: {describe()}; {args.calls} calls at {args.rate:g}/s held against "
          f"sipp -sn uas, T1 {args.t1:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
