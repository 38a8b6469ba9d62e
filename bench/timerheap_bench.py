"""The timer queue (``sipload.sip.timerheap``) under a worker's pattern of deadlines.

Run from a checkout's root (``PYTHONPATH=.`` picks that checkout and its own build)::

    PYTHONPATH=. python3 bench/timerheap_bench.py [--rate 800] [--seconds 60]
    PYTHONPATH=. python3 bench/timerheap_bench.py --before /work/ab/base

The operations are those a recorded `sipload run -w 1` basic call made on the UA's
queue and the scenario interpreter's (a `/work`-local recording of 8,000 calls; the
shapes below are its most common ones): per call, the INVITE's transaction at now +
T1, then + 64·T1 once answered (RFC 6026's Timer M), the ACK's dialog deadline,
the BYE's transaction at + T1, then + T4 (Timer K), discards; the interpreter's call
at + 10 s (its timeout), + 0.1 s, + 32 s; a peek after every event and a ``pop_due``
every 1.25 ms of simulated time.  Calls start at ``--rate`` for ``--seconds`` of
simulated time, so the queues hold what a worker's hold at that rate (~30,000 entries
at 800/s).  Prints ns per operation, best of five; each ``--before`` tree runs the same
in a child process with its own build.  Exits 0.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

T1, T4, TIMER_M = 0.5, 5.0, 32.0


def operations(rate: float, seconds: float) -> list[tuple[int, int, float, int]]:
    """(queue, op, deadline or now, item): op 0 schedule, 1 discard, 2 peek, 3 pop_due."""
    ops: list[tuple[int, int, float, int]] = []
    step = 0.00125
    per_step = rate * step
    owed = 0.0
    item = 0
    now = 0.0
    while now < seconds:
        now += step
        owed += per_step
        while owed >= 1.0:
            owed -= 1.0
            item += 4
            inv, dlg, bye, iid = item, item + 1, item + 2, item + 3
            t = now
            ops += [(0, 0, t + T1, inv), (0, 2, 0.0, 0), (1, 0, t + 10.0, iid), (1, 2, 0.0, 0)]
            t += 0.0005  # 180, 200
            ops += [(0, 0, t + TIMER_M, inv), (0, 0, t + T1, dlg), (0, 2, 0.0, 0),
                    (1, 0, t + 0.1, iid), (1, 2, 0.0, 0), (0, 1, 0.0, dlg)]
            ops += [(0, 0, t + T1, bye), (0, 2, 0.0, 0)]
            t += 0.0003  # 200 to the BYE
            ops += [(0, 0, t + T4, bye), (0, 2, 0.0, 0), (1, 0, t + TIMER_M, iid),
                    (1, 2, 0.0, 0), (1, 1, 0.0, iid), (1, 2, 0.0, 0)]
        ops += [(0, 3, now, 0), (1, 3, now, 0), (0, 2, 0.0, 0), (1, 2, 0.0, 0)]
    return ops


def measure(rate: float, seconds: float) -> str:
    from sipload._native import describe
    from sipload.sip.timerheap import TimerHeap

    ops = operations(rate, seconds)
    best = float("inf")
    popped = 0
    for _ in range(5):
        queues: list[TimerHeap[int]] = [TimerHeap(), TimerHeap()]
        popped = 0
        t0 = time.perf_counter()
        for q, op, value, item in ops:
            queue = queues[q]
            if op == 0:
                queue.schedule(item, value)
            elif op == 1:
                queue.discard(item)
            elif op == 2:
                queue.peek()
            else:
                popped += len(queue.pop_due(value))
        best = min(best, time.perf_counter() - t0)
    return (f"{best * 1e9 / len(ops):6.0f} ns/op  {len(ops):,} ops, {popped:,} popped "
            f"({describe()})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=800.0, help="calls/s (800)")
    ap.add_argument("--seconds", type=float, default=60.0, help="simulated seconds (60)")
    ap.add_argument("--before", action="append", default=[], metavar="TREE",
                    help="another checkout with its own build, measured the same way")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(measure(args.rate, args.seconds))
        return
    here = Path(__file__).resolve()
    trees = [*map(Path, args.before), here.parent.parent]
    for tree in trees:
        env = dict(os.environ, PYTHONPATH=str(tree.resolve()))
        out = subprocess.run(
            [sys.executable, str(here), "--child", "--rate", str(args.rate),
             "--seconds", str(args.seconds)], env=env, capture_output=True, text=True,
            check=False)
        print(f"{tree!s:40s} {(out.stdout or out.stderr).strip()}")


if __name__ == "__main__":
    main()
