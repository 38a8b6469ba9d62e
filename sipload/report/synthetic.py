"""Synthetic run directories, for the report's tests, its benchmark and demos.

:func:`make_run` writes what a UAC basic-call run would leave (plan.json,
scenario.yaml, calls.arrows in batches through :class:`RunWriter`, one snapshot
per worker per second with real encoded HdrHistograms, events.jsonl) from a
seeded random model, and returns the truth it was made from so tests can check
the report's numbers against it.

The model: call *i* is meant to start at ``i / rate`` on worker ``i % workers``;
it starts a little late; 100 and 180 arrive, then 200 after the ``answer``
latency (log-normal), an ACK, a 100 ms hold, BYE and its 200.  A share of calls
fail instead (per reason in ``failures``): ``call_rejected`` gets a 486,
``timeout`` never gets its 200, others fail after the 180.  The last
``in_flight`` calls are still in progress at the stop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sipload.stats.histograms import MarkHistograms, new_histogram
from sipload.stats.rundir import RunWriter

SCENARIO_TEXT = """\
# synthetic basic call
name: synthetic-call
role: uac
thresholds: []
steps:
  - send: INVITE
    start_timer: setup
  - recv: 100
    optional: true
  - recv: [180, 183]
    optional: true
  - recv: 200
    stop_timer: setup
  - send: ACK
  - pause: 100ms
  - send: BYE
  - recv: 200
"""

HOSTILE = "<script>document.title='pwned'</script>"
"""What a hostile peer might put in a header: it must show as text in the report."""

Floats = npt.NDArray[np.float64]


@dataclass
class Truth:
    """What a synthetic run was made from."""

    calls: int
    succeeded: int
    failed: int
    in_flight: int
    lost: int
    failures: dict[str, int]
    retransmissions: int
    marks: dict[str, Floats] = field(default_factory=dict)  #: seconds, successful calls


def _hist_of(values_s: Floats) -> str:
    """Base64 HdrHistogram of values in seconds (recorded like MarkHistograms.record)."""
    h = new_histogram()
    us = np.clip((values_s * 1_000_000).astype(np.int64), 1, 3_600_000_000)
    vals, counts = np.unique(us, return_counts=True)
    for v, c in zip(vals.tolist(), counts.tolist(), strict=True):
        h.record_value(v, c)
    m = MarkHistograms()
    m.by_mark["x"] = h
    return m.encode()["x"]


def make_run(path: Path, *, calls: int = 1000, rate: float = 100.0, workers: int = 2,
             failures: Mapping[str, float] | None = None, in_flight: int = 0,
             lost: Mapping[int, int] | None = None, seed: int = 1, hostile: bool = False,
             batch: int = 50_000, retransmit_share: float = 0.01,
             thresholds: list[str] | None = None, cpu: float = 0.3,
             loop_lag_ms: float = 2.0, allow_failures: float = 0.0) -> Truth:
    """Write a synthetic run directory at ``path`` (see the module docstring).

    Args:
        calls: rows written (lost calls come on top, as worker_lost events).
        failures: reason -> share of calls, default 1% timeout and 0.5% call_rejected.
        lost: worker -> calls lost with it (worker_lost events).
        allow_failures: the plan's ``--allow-failures`` share (the run's gate).
        hostile: put ``<script>`` in failed calls' detail, call-id and a label.
        batch: rows per RunWriter.append_records call.
    """
    rng = np.random.default_rng(seed)
    mix = dict(failures if failures is not None else {"timeout": 0.01, "call_rejected": 0.005})
    n = calls
    intended = np.arange(n, dtype=np.float64) / rate
    late = rng.exponential(0.002, n)
    start = intended + late
    worker = np.arange(n) % workers
    first = rng.lognormal(math.log(0.004), 0.3, n)
    pdd = first + rng.lognormal(math.log(0.010), 0.4, n)
    answer = pdd + rng.lognormal(math.log(0.020), 0.5, n)
    bye = rng.lognormal(math.log(0.005), 0.3, n)
    setup = answer.copy()
    end = start + answer + 0.1 + bye
    outcome = np.zeros(n, dtype=np.int64)  # 0 success, k: k-th failure reason
    reasons = list(mix)
    u = rng.random(n)
    edge = 0.0
    for k, reason in enumerate(reasons, 1):
        outcome[(u >= edge) & (u < edge + mix[reason])] = k
        edge += mix[reason]
    result = np.where(outcome == 0, 0, 1)
    if in_flight:
        result[n - in_flight:] = 2
        outcome[n - in_flight:] = 0
    retrans = (rng.random(n) < retransmit_share).astype(np.int64)
    stop_at = float(end[result == 0].max()) if (result == 0).any() else float(end.max())
    for k, reason in enumerate(reasons, 1):
        sel = (outcome == k) & (result == 1)
        end[sel] = start[sel] + (32.0 if reason == "timeout" else pdd[sel] + 0.001)
    end[result == 2] = stop_at
    truth = Truth(calls=n, succeeded=int((result == 0).sum()), failed=int((result == 1).sum()),
                  in_flight=int((result == 2).sum()), lost=sum((lost or {}).values()),
                  failures={r: int(((outcome == k) & (result == 1)).sum())
                            for k, r in enumerate(reasons, 1)},
                  retransmissions=int(retrans.sum()))
    ok = result == 0
    for name, arr in (("first_provisional", first), ("pdd", pdd), ("answer", answer),
                      ("bye", bye), ("call", end - start), ("setup", setup)):
        truth.marks[name] = arr[ok]

    w = RunWriter(path)
    w.write_json("plan.json", {
        "command": f"sipload run synthetic.yaml --rate {rate:g} --calls {n}",
        "scenario": {"name": "synthetic-call", "path": "synthetic.yaml", "digest": "0" * 64},
        "target": "127.0.0.1:5060", "rate": rate, "calls": n, "workers": workers,
        "versions": {"sipload": "0.1.0", "python": "3.11"},
        "started_at": "2024-01-01T00:00:00Z", "thresholds": list(thresholds or []),
        "allow_failures": allow_failures,
    })
    w.write_text("scenario.yaml", SCENARIO_TEXT)
    lists = [a.tolist() for a in (intended, start, end, first, pdd, answer, bye)]
    res_l, out_l, wk_l, rt_l = (result.tolist(), outcome.tolist(), worker.tolist(),
                                retrans.tolist())
    names = ("success", "failed", "in_flight_at_stop")
    rows: list[dict[str, Any]] = []
    for i in range(n):
        it, st, en, fp, pd_, an, by = (lst[i] for lst in lists)
        res = res_l[i]
        msgs: list[list[Any]] = [[st, "out", "INVITE"], [st + fp, "in", "100 INVITE"],
                                 [st + pd_, "in", "180 INVITE"]]
        codes = [100, 180]
        marks: dict[str, float] = {"first_provisional": fp, "pdd": pd_}
        failure = detail = ""
        step = -1
        if res == 0:
            msgs += [[st + an, "in", "200 INVITE"], [st + an, "out", "ACK"],
                     [st + an + 0.1, "out", "BYE"], [st + an + 0.1 + by, "in", "200 BYE"]]
            codes += [200, 200]
            marks.update(answer=an, bye=by, call=en - st, setup=an)
        elif res == 1:
            failure = reasons[out_l[i] - 1]
            step = 3
            if failure == "call_rejected":
                msgs += [[en, "in", "486 INVITE"], [en, "out", "ACK"]]
                codes.append(486)
                detail = "486"
            elif failure == "timeout":
                detail = "recv 200: no message in 32s"
            else:
                detail = failure
            if hostile:
                detail = HOSTILE
                msgs.append([en, "in", HOSTILE])
        else:
            failure = "in_flight_at_stop"
        if rt_l[i]:
            msgs.insert(1, [st + 0.5, "out", "INVITE"])
        rows.append({
            "worker": wk_l[i], "call_number": i, "intended_start": it, "actual_start": st,
            "end": en, "result": names[res], "failure": failure, "detail": detail,
            "step": step, "codes": codes, "retransmissions": rt_l[i],
            "call_id": (HOSTILE if hostile and res == 1 else "") + f"{i}@synthetic",
            "marks": marks, "messages": msgs,
        })
        if len(rows) >= batch:
            w.append_records(rows)
            rows = []
    w.append_records(rows)
    _write_intervals(w, rate, workers, worker, start, end, result, outcome, reasons, retrans,
                     truth, late, cpu, loop_lag_ms)
    for wid, k in (lost or {}).items():
        w.append_event({"t": stop_at / 2, "event": "worker_lost", "worker": wid,
                        "calls_lost": k})
    w.close()
    return truth


def _write_intervals(w: RunWriter, rate: float, workers: int, worker: npt.NDArray[Any],
                     start: Floats, end: Floats, result: npt.NDArray[Any],
                     outcome: npt.NDArray[Any], reasons: list[str],
                     retrans: npt.NDArray[Any], truth: Truth, late: Floats, cpu: float,
                     lag: float) -> None:
    """One snapshot per worker per second, counted with bincount (no per-call loop)."""
    horizon = math.ceil(float(end.max())) if len(end) else 0
    size = (horizon + 1) * workers
    skey = np.ceil(start).astype(np.int64) * workers + worker
    ekey = np.ceil(end).astype(np.int64) * workers + worker

    def count(keys: npt.NDArray[Any], weights: npt.NDArray[Any] | None = None
              ) -> npt.NDArray[Any]:
        return np.bincount(keys, weights=weights, minlength=size).reshape(horizon + 1,
                                                                          workers)

    started = count(skey)
    late_n = count(skey[late > 0.010])
    retr = count(skey, retrans.astype(np.float64)).astype(np.int64)
    ok = result == 0
    failed = count(ekey[result == 1])
    ended = count(ekey)
    active = np.cumsum(started, axis=0) - np.cumsum(ended, axis=0)
    per_reason = {r: count(ekey[(outcome == k) & (result == 1)])
                  for k, r in enumerate(reasons, 1)}
    ok_idx = np.flatnonzero(ok)
    order = np.argsort(ekey[ok_idx], kind="stable")
    sorted_key = ekey[ok_idx][order]
    for sec in range(1, horizon + 1):
        for wid in range(workers):
            key = sec * workers + wid
            lo, hi = np.searchsorted(sorted_key, [key, key + 1])
            pos = order[lo:hi]  # positions in the successful-only arrays
            hists = ({m: _hist_of(vals[pos]) for m, vals in truth.marks.items()}
                     if len(pos) else {})
            fails = {r: int(c[sec, wid]) for r, c in per_reason.items() if c[sec, wid]}
            n_end = int(ended[sec, wid])
            codes = {"100": n_end, "180": n_end}
            if len(pos):
                codes["200"] = 2 * len(pos)
            if fails.get("call_rejected"):
                codes["486"] = fails["call_rejected"]
            w.append_interval({
                "t": float(sec), "worker": wid, "started": int(started[sec, wid]),
                "succeeded": len(pos), "failed": int(failed[sec, wid]),
                "active": int(active[sec, wid]), "late": int(late_n[sec, wid]),
                "dropped": 0, "retransmissions": int(retr[sec, wid]),
                "loop_lag_ms": lag, "cpu": cpu, "target_rate": rate / workers,
                "histograms": hists, "failures": fails, "codes": codes,
            })
