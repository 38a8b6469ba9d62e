"""The coordinator's CPU per call record, trees side by side.

Run from the repository root::

    python3 bench/coordinator_bench.py --before /work/ab/base --repeat 7

Every call of a run reaches the coordinator as one record in a ``Records`` message,
and the coordinator decodes it, checks it (:meth:`Coordinator.admit`: a worker's bytes
are not trusted) and appends it to ``calls.arrows`` (:meth:`RunWriter.append_records`).
That is CPU taken from the workers on the same machine, once per call.  This times the
three on basic-call records as a worker sends them (a second's batch of 800, packed as
:func:`pack_record` packs them), each tree in its own process (``PYTHONPATH``), trees
interleaved, and prints the median µs per record of each part; exits 0.

``run_bench.py`` sees the same cost inside a whole command's marginal CPU per call, but
there it is a few per cent, under the spread of a command's start-up and report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
from sipload.cluster.coordinator import Coordinator
from sipload.cluster.messages import Hello, Ready, Records, Welcome, decode, encode, pack_record
from sipload.stats.records import CallRecord, Result
from sipload.stats.rundir import RunWriter, warm

BATCH, BATCHES = 800, int(sys.argv[1])


def record(n):
    r = CallRecord(n, n / 800, n / 800 + 9e-5, n / 800 + 0.1006, worker=0,
                   call_id=f"w0-50cc-5e6c5ca0x{n}@sipload")
    r.codes.extend([180, 200, 200])
    t = r.actual_start
    for dt, d, s in ((0, "out", "INVITE"), (5.9e-5, "in", "180 INVITE"),
                     (3.4e-4, "in", "200 INVITE"), (4.7e-4, "out", "ACK"),
                     (0.1003, "out", "BYE"), (0.10035, "in", "200 BYE")):
        r.messages.append((t + dt, d, s))
    r.marks.update(first_provisional=5.87e-05, pdd=5.87e-05, answer=3.4e-4, bye=4.9e-5,
                   call=0.1003)
    r.result = Result.SUCCESS
    return r.to_dict()


warm()
c = Coordinator({"scenario_text": "x"}, 1, 800.0, BATCH * BATCHES + 1)
(_, w), = c.on_message(b"w0", Hello("1", 1, "h"), 0.0)
assert isinstance(w, Welcome)
c.on_message(b"w0", Ready(w.worker, "127.0.0.1", 5060), 0.0)
wires = []
for b in range(BATCHES):
    packed = b"".join(pack_record(record(b * BATCH + i)) for i in range(BATCH))
    wires.append(encode(Records(w.worker, b, [], (b + 1) * BATCH, packed=packed)))
with tempfile.TemporaryDirectory() as tmp:
    writer = RunWriter(Path(tmp))
    t_decode = t_admit = t_write = 0.0
    clock = time.process_time
    for b, wire in enumerate(wires):
        t0 = clock()
        msg = decode(wire)
        t1 = clock()
        ok = c.admit(b"w0", msg, 1.0 + b)
        t2 = clock()
        assert isinstance(ok, Records) and len(ok.records) == BATCH, c.rejected
        writer.append_records(ok.records)
        t3 = clock()
        c.on_message(b"w0", ok, 1.0 + b)
        t_decode += t1 - t0
        t_admit += t2 - t1
        t_write += t3 - t2
    writer.close()
n = BATCH * BATCHES
print(json.dumps({"decode": 1e6 * t_decode / n, "admit": 1e6 * t_admit / n,
                  "write": 1e6 * t_write / n}))
"""


def one(tree: Path, batches: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(batches)], cwd=tree,
                         env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"{tree}: {out.stderr.strip()[-500:]}")
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    figures["total"] = sum(figures.values())
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", action="append", default=[], metavar="TREE",
                    help="another checkout to run beside this one (repeatable)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batches", type=int, default=15, help="batches of 800 records")
    a = ap.parse_args()
    trees = [Path(t).resolve() for t in a.before] + [REPO]
    runs: dict[Path, list[dict[str, float]]] = {t: [] for t in trees}
    for i in range(a.repeat):
        for t in trees:
            f = one(t, a.batches)
            runs[t].append(f)
            print(f"run {i + 1} {t}: " + "  ".join(f"{k} {v:.1f}" for k, v in f.items()),
                  flush=True)
    print("\nmedian µs of the coordinator's CPU per record:")
    for t in trees:
        cols = {k: statistics.median(r[k] for r in runs[t]) for k in runs[t][0]}
        print(f"  {t}: " + "  ".join(f"{k} {v:.1f}" for k, v in cols.items()))


if __name__ == "__main__":
    main()
