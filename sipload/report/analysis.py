"""One pass over a run directory: every number the summary and the HTML report show.

Theory of operation
-------------------
1. The calls table (one row per call, possibly millions) is only touched with
   vectorised pyarrow/numpy operations: value counts of ``result``, ``failure``
   and ``step``; arithmetic on the time columns; a regex that strips the times out
   of each call's ``messages`` JSON so that the few distinct message sequences can
   be counted (and only those are parsed); a split of ``codes``.
2. Only the sampled failed calls (at most :data:`LADDER_SAMPLE`, one per failure
   reason first) have their ``messages`` and ``marks`` JSON parsed, for the ladders.
3. Latency percentiles come from the histograms in ``intervals.jsonl``
   (:mod:`sipload.report.hist`), never from the rows; each mark counts every call
   that reached it, whether the call then succeeded or failed.  Retransmissions are
   counted once, by the user agents, in the same snapshots (what the live panel
   shows); the rows' own counts are each call's share, drawn in its ladder.
4. The per-second series add the snapshots of all workers for each whole second
   (the snapshot at t=3.0004 counts for second 3; a last, partial snapshot joins
   its second).
5. The last analysis is cached, keyed by the path and the size and mtime of the
   run files, so ``build_summary`` then ``write_report`` read the run once.
6. No pandas: the per-second series are :class:`Columns` (numpy arrays by name).
   Importing pandas costs a run about 0.3 s of CPU, more than analysing it; pandas
   is for notebooks (:func:`sipload.report.data.load_run`).
"""

from __future__ import annotations

import ipaddress
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sipload.report.columns import Columns, flags, numbers, texts
from sipload.report.data import (
    INTERVAL_SCALARS,
    RunFiles,
    column_counts,
    read_run_files,
    scenario_marks,
)
from sipload.report.hist import LatencyAnalysis, analyse_latency
from sipload.report.media import MediaAnalysis, analyse_media
from sipload.report.wire import CallTrace, load_traces, traced_keys
from sipload.stats.msround import ms

LADDER_SAMPLE = 10
"""How many failed calls get a ladder diagram (one per failure reason first)."""

LATE_AFTER_S = 0.010
"""A call starting this much after its intended time is late (the engine's rule; used
only when a run has no interval snapshots to read the count from)."""

RESULTS = ("success", "failed", "in_flight_at_stop", "lost_with_worker")

_TIME_IN_MESSAGE = r"\[[-+0-9.eE]+,"


@dataclass
class CallSample:
    """One call drawn as a ladder diagram (its JSON parsed)."""

    call_number: int
    worker: int
    call_id: str
    result: str
    failure: str
    detail: str
    step: int
    start: float  #: actual start (s since the run started)
    end: float
    codes: str
    retransmissions: int
    marks: dict[str, float]
    messages: list[tuple[float, str, str]]  #: (seconds since the call started, dir, label)
    trace: CallTrace | None = None  #: its wire messages, when the run traced it


@dataclass
class Analysis:
    """Everything measured in one run directory (see the module docstring)."""

    files: RunFiles  #: the files read (``files.calls`` emptied once analysed)
    results: dict[str, int]  #: rows per result
    lost_with_worker: int  #: rows and worker_lost events, per worker the larger
    failures: dict[str, int]  #: failed rows per reason
    failed_steps: dict[str, int]  #: failed rows per scenario step
    codes: dict[str, int]  #: every response code received, all calls
    responses: dict[str, dict[str, dict[str, int]]]
    #: "received"/"sent" -> method -> code -> count
    retransmissions: int  #: every retransmission the UAs made (intervals; rows without them)
    retransmissions_in_records: int  #: the sum of the rows' counts (each in a ladder)
    calls_with_retransmissions: int
    answered: int  #: calls that received at least one response
    starts: int  #: rows with a start time
    rate_achieved: float | None
    rate_intended: float | None
    concurrency_max: int
    concurrency_mean: float
    duration: float
    lateness_ms: dict[str, float]
    late_starts: int
    dropped: int
    per_second: Columns  #: second, started, succeeded, failed, active, ... (by second)
    per_worker: Columns  #: one row per snapshot: worker, second, started, cpu, lag, ...
    codes_per_second: Columns  #: second, then one column per code (by second)
    latency: LatencyAnalysis
    marks: list[str]  #: standard and scenario marks seen or named
    samples: list[CallSample] = field(default_factory=list)
    media: MediaAnalysis = field(default_factory=MediaAnalysis)  #: RTP figures (report.media)
    servers: dict[str, dict[str, int]] = field(default_factory=dict)
    #: located target (RFC 3263): server label -> calls, succeeded, failovers (its calls')
    failovers: int = 0  #: INVITEs sent anew to the next server, all calls
    calls_failed_over: int = 0  #: calls whose INVITE moved on at least once
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    #: --source-addresses: local address -> calls placed from it, succeeded


def _text(value: str) -> Any:
    """A string scalar for a compute function, typed: pyarrow imports pandas (0.3 s)
    when it infers a Python value's type (see sipload.stats.rundir.pyarrow_without_pandas)."""
    return pa.scalar(value, pa.string())


def _np(column: pa.ChunkedArray) -> np.ndarray[Any, Any]:
    return numbers(column)


def _signature_counts(messages: pa.ChunkedArray) -> dict[str, int]:
    """Distinct message sequences (times removed) and how many calls had each."""
    if len(messages) == 0:
        return {}
    stripped = pc.replace_substring_regex(messages, pattern=_TIME_IN_MESSAGE,
                                          replacement="[")
    return column_counts(stripped)


def responses_by_method(signatures: dict[str, int]) -> dict[str, dict[str, dict[str, int]]]:
    """received/sent -> method -> status code -> count, from message-sequence counts.

    A label such as ``"180 INVITE"`` is a response with its CSeq method; a bare
    method (``"INVITE"``) is a request and is not counted here.
    """
    out: dict[str, dict[str, dict[str, int]]] = {"received": {}, "sent": {}}
    for sig, n in signatures.items():
        try:
            msgs = json.loads(sig)
        except json.JSONDecodeError:
            continue
        if not isinstance(msgs, list):
            continue
        for m in msgs:
            if not isinstance(m, list) or len(m) < 2:
                continue
            direction, label = str(m[-2]), str(m[-1])
            if direction == "re":  # a retransmission, not another response
                continue
            code, _, method = label.partition(" ")
            if not (len(code) == 3 and code.isdigit() and method):
                continue
            side = out["received" if direction == "in" else "sent"]
            per = side.setdefault(method, {})
            per[code] = per.get(code, 0) + n
    for side in out.values():
        for method, per in list(side.items()):
            side[method] = dict(sorted(per.items()))
    return out


def _code_counts(codes: pa.ChunkedArray) -> dict[str, int]:
    if len(codes) == 0:
        return {}
    flat = pc.list_flatten(pc.split_pattern(codes, pattern=","))
    counts = column_counts(flat)
    counts.pop("", None)
    return dict(sorted(counts.items()))


def _concurrency(starts: np.ndarray[Any, Any], ends: np.ndarray[Any, Any]
                 ) -> tuple[int, float]:
    """Most calls in progress at once, and the time-weighted mean (Little's law)."""
    if len(starts) == 0:
        return 0, 0.0
    ends = np.maximum(ends, starts)
    times = np.concatenate([starts, ends])
    deltas = np.concatenate([np.ones(len(starts), np.int8), -np.ones(len(ends), np.int8)])
    order = np.lexsort((deltas, times))  # at equal times, ends (-1) before starts
    level = np.cumsum(deltas[order], dtype=np.int64)
    span = float(ends.max() - starts.min())
    mean = float((ends - starts).sum() / span) if span > 0 else float(len(starts))
    return int(level.max()), mean


def _rate(times: np.ndarray[Any, Any]) -> float | None:
    """Calls per second between the first and last start: (n - 1) / span."""
    if len(times) < 2:
        return None
    span = float(times.max() - times.min())
    return (len(times) - 1) / span if span > 0 else None


def _lost(files: RunFiles, rows_lost: dict[int, int]) -> int:
    """Calls lost with their worker: per worker, the larger of the rows recorded as
    lost and the ``calls_lost`` of its ``worker_lost`` events (so neither source is
    counted twice); at least the ``lost_with_worker`` of a ``run_end`` event."""
    from_events: dict[int, int] = {}
    for ev in files.events:
        if ev.get("event") != "worker_lost":
            continue
        try:
            worker, n = int(ev.get("worker", -1)), int(ev.get("calls_lost", 0) or 0)
        except (TypeError, ValueError):
            continue
        from_events[worker] = from_events.get(worker, 0) + max(n, 0)
    workers = set(from_events) | set(rows_lost)
    total = sum(max(from_events.get(w, 0), rows_lost.get(w, 0)) for w in workers)
    for ev in files.events:  # the coordinator's own total, when it wrote one
        if ev.get("event") == "run_end" and isinstance(ev.get("lost_with_worker"), int):
            total = max(total, int(ev["lost_with_worker"]))
    return total


def _sample(files: RunFiles, failed_idx: np.ndarray[Any, Any],
            failures: np.ndarray[Any, Any]) -> list[CallSample]:
    """Up to LADDER_SAMPLE failed calls: the first of each reason, then the next ones;
    calls with a wire trace first."""
    if len(failed_idx) == 0:
        return []
    traced = traced_keys(files.path)
    if traced:
        workers = _np(files.calls.column("worker"))[failed_idx]
        numbers = _np(files.calls.column("call_number"))[failed_idx]
        has = np.fromiter(((int(w), int(n)) in traced for w, n in zip(workers, numbers,
                                                                        strict=True)),
                          dtype=bool, count=len(failed_idx))
        failed_idx = np.concatenate([failed_idx[has], failed_idx[~has]])
        failures = np.concatenate([failures[has], failures[~has]])
    chosen = [int(failed_idx[i]) for i in _first_of_each(failures)[:LADDER_SAMPLE]]
    for i in failed_idx[:LADDER_SAMPLE * 2]:
        if len(chosen) >= LADDER_SAMPLE:
            break
        if int(i) not in chosen:
            chosen.append(int(i))
    rows = files.calls.take(pa.array(chosen, pa.int64())).to_pylist()
    out: list[CallSample] = []
    for r in rows:
        try:
            msgs = json.loads(r["messages"] or "[]")
            marks = json.loads(r["marks"] or "{}")
        except json.JSONDecodeError:
            msgs, marks = [], {}
        start = float(r["actual_start"])
        parsed = [(float(m[0]) - start, str(m[1]), str(m[2])) for m in msgs
                  if isinstance(m, list) and len(m) >= 3]
        out.append(CallSample(
            call_number=int(r["call_number"]), worker=int(r["worker"]),
            call_id=str(r["call_id"]), result=str(r["result"]), failure=str(r["failure"]),
            detail=str(r["detail"]), step=int(r["step"]), start=start, end=float(r["end"]),
            codes=str(r["codes"]), retransmissions=int(r["retransmissions"]),
            marks={str(k): float(v) for k, v in marks.items()
                   if isinstance(v, int | float)} if isinstance(marks, dict) else {},
            messages=parsed))
    if traced:
        wires = load_traces(files.path, [(c.worker, c.call_number) for c in out])
        for c in out:
            c.trace = wires.get((c.worker, c.call_number))
    return out


def _first_of_each(values: np.ndarray[Any, Any]) -> list[int]:
    """Where each distinct value (None too) first occurs, in order."""
    if len(values) == 0:
        return []
    codes = pa.array(values, pa.string()).dictionary_encode(null_encoding="encode").indices
    _, first = np.unique(numbers(codes), return_index=True)
    return sorted(int(i) for i in first)


INTEGER_SCALARS = ("worker", "started", "succeeded", "failed", "active", "late", "dropped",
                   "retransmissions")
"""The interval snapshots' counts (the other scalars are float: t, lag, cpu, rate)."""


def _number(value: Any) -> float:
    """A snapshot's scalar as a number: 0 for a missing, non-numeric or NaN value."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return 0.0
    return out if math.isfinite(out) else 0.0


def _scalars(intervals: list[dict[str, Any]]) -> dict[str, np.ndarray[Any, Any]]:
    """The snapshots' scalar columns (:data:`~sipload.report.data.INTERVAL_SCALARS`)."""
    out: dict[str, np.ndarray[Any, Any]] = {}
    for c in INTERVAL_SCALARS:
        values = np.array([_number(snap.get(c, 0)) for snap in intervals], dtype=np.float64)
        out[c] = values.astype(np.int64) if c in INTEGER_SCALARS else values
    return out


def _interval_frames(files: RunFiles) -> tuple[Columns, Columns, Columns, list[int]]:
    """Per second (all workers added), per snapshot, response codes per second, and
    each snapshot's second."""
    if not files.intervals:
        empty = Columns({"second": np.zeros(0, np.int64)})
        return empty, empty, Columns(), []
    cols = _scalars(files.intervals)
    seconds = np.rint(cols["t"]).astype(np.int64)
    unique, where = np.unique(seconds, return_inverse=True)
    per_second = Columns({"second": unique})
    for c in ("started", "succeeded", "failed", "active", "late", "dropped",
              "retransmissions", "target_rate"):
        summed = np.zeros(len(unique), cols[c].dtype)
        np.add.at(summed, where, cols[c])
        per_second[c] = summed
    per_worker = Columns({"worker": cols["worker"], "second": seconds,
                          **{c: cols[c] for c in ("started", "cpu", "loop_lag_ms", "late",
                                                  "dropped", "rss_mib")}})
    by_code: dict[str, np.ndarray[Any, Any]] = {}
    for i, snap in enumerate(files.intervals):
        codes = snap.get("codes")
        for code, n in (codes.items() if isinstance(codes, dict) else ()):
            column = by_code.get(str(code))
            if column is None:
                column = by_code[str(code)] = np.zeros(len(unique), np.float64)
            column[where[i]] += _number(n)
    codes_ps = (Columns({"second": unique, **{c: by_code[c] for c in sorted(by_code)}})
                if by_code else Columns())
    return per_second, per_worker, codes_ps, [int(s) for s in seconds]


def _plan_marks(plan: dict[str, Any]) -> list[str]:
    marks = plan.get("marks")
    return [str(m) for m in marks if isinstance(m, str)] if isinstance(marks, list) else []


def analyse(files: RunFiles) -> Analysis:
    """Measure everything in one run directory's files (see the module docstring)."""
    calls = files.calls
    results = column_counts(calls.column("result"))
    result_arr = calls.column("result")
    failed_mask = pc.equal(result_arr, _text("failed"))
    failed = calls.filter(failed_mask).select(["failure", "step"])
    failures = dict(sorted(column_counts(failed.column("failure")).items(),
                           key=lambda kv: (-kv[1], kv[0])))
    steps = {str(k): int(v) for k, v in
             column_counts(pc.cast(failed.column("step"), pa.string())).items()}

    lost_rows = calls.filter(pc.equal(result_arr, _text("lost_with_worker"))).column("worker")
    rows_lost = {int(k): v for k, v in column_counts(pc.cast(lost_rows, pa.string())).items()}

    starts = _np(calls.column("actual_start")).astype(np.float64)
    intended = _np(calls.column("intended_start")).astype(np.float64)
    ends = _np(calls.column("end")).astype(np.float64)
    started = flags(pc.not_equal(result_arr, _text("lost_with_worker"))) \
        if len(calls) else np.zeros(0, bool)
    s, e, i = starts[started], ends[started], intended[started]
    conc_max, conc_mean = _concurrency(s, e)
    lateness = np.maximum(s - i, 0.0) * 1000.0
    lateness_ms = ({"p50": ms(float(np.percentile(lateness, 50))),
                    "p99": ms(float(np.percentile(lateness, 99))),
                    "max": ms(float(lateness.max()))} if len(lateness) else
                   {"p50": 0.0, "p99": 0.0, "max": 0.0})

    retrans = calls.column("retransmissions")
    in_records = int(pc.sum(retrans).as_py() or 0)
    per_second, per_worker, codes_ps, seconds = _interval_frames(files)
    if len(files.intervals):
        late_starts = int(per_second["late"].sum())
        dropped = int(per_second["dropped"].sum())
    else:
        late_starts = int((lateness > LATE_AFTER_S * 1000.0).sum())
        dropped = int(failures.get("generator_overload", 0))

    latency = analyse_latency(files.intervals, seconds)
    marks = list(dict.fromkeys([*("first_provisional", "pdd", "answer", "bye", "call"),
                                *_plan_marks(files.plan),
                                *scenario_marks(files.scenario_text),
                                *sorted(latency.total.by_mark)]))
    duration = max(float(ends.max()) if len(ends) else 0.0,
                   float(max((float(x.get("t", 0) or 0) for x in files.intervals),
                             default=0.0)))

    failed_idx = np.flatnonzero(flags(failed_mask)) \
        if len(calls) else np.zeros(0, np.int64)
    samples = _sample(files, failed_idx,
                      texts(failed.column("failure")))

    media = analyse_media(calls, files.intervals, seconds)
    servers, failovers, failed_over = _servers(calls)
    sources = _sources(calls)
    # the rows are no longer needed (the samples are parsed): free them
    files.calls = files.calls.schema.empty_table()
    return Analysis(
        files=files, results={k: results.get(k, 0) for k in RESULTS},
        lost_with_worker=_lost(files, rows_lost), failures=failures, failed_steps=steps,
        codes=_code_counts(calls.column("codes")),
        responses=responses_by_method(_signature_counts(calls.column("messages"))),
        retransmissions=int(per_second["retransmissions"].sum()) if len(files.intervals)
        else in_records,
        retransmissions_in_records=in_records,
        answered=int(pc.sum(pc.not_equal(calls.column("codes"), _text(""))).as_py() or 0)
        if len(calls) else 0,
        calls_with_retransmissions=int(
            pc.sum(pc.greater(retrans, pa.scalar(0, retrans.type))).as_py() or 0),
        starts=len(s), rate_achieved=_rate(s), rate_intended=_rate(i),
        concurrency_max=conc_max, concurrency_mean=conc_mean, duration=duration,
        lateness_ms=lateness_ms, late_starts=late_starts, dropped=dropped,
        per_second=per_second, per_worker=per_worker, codes_per_second=codes_ps,
        latency=latency, marks=marks, samples=samples, media=media, servers=servers,
        failovers=failovers, calls_failed_over=failed_over, sources=sources)


def _servers(calls: pa.Table) -> tuple[dict[str, dict[str, int]], int, int]:
    """Calls per located server (where each call's INVITE last went) and the failovers."""
    if "server" not in calls.column_names or not len(calls):
        return {}, 0, 0
    out: dict[str, dict[str, int]] = {}
    total = moved = 0
    for server, result, failovers in zip(calls.column("server").to_pylist(),
                                         calls.column("result").to_pylist(),
                                         calls.column("failovers").to_pylist(), strict=True):
        if not server:
            continue
        row = out.setdefault(str(server), {"calls": 0, "succeeded": 0, "failovers": 0})
        row["calls"] += 1
        row["succeeded"] += int(result == "success")
        n = int(failovers or 0)
        row["failovers"] += n
        total += n
        moved += int(n > 0)
    return dict(sorted(out.items())), total, moved


def _sources(calls: pa.Table) -> dict[str, dict[str, int]]:
    """Calls per source address (--source-addresses), and how many succeeded."""
    if "source" not in calls.column_names or not len(calls):
        return {}
    out: dict[str, dict[str, int]] = {}
    for source, result in zip(calls.column("source").to_pylist(),
                              calls.column("result").to_pylist(), strict=True):
        if source:
            row = out.setdefault(str(source), {"calls": 0, "succeeded": 0})
            row["calls"] += 1
            row["succeeded"] += int(result == "success")
    return dict(sorted(out.items(), key=lambda kv: _address_key(kv[0])))


def _address_key(text: str) -> tuple[int, int, str]:
    """Addresses in numeric order (127.0.0.9 before 127.0.0.10)."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return (9, 0, text)
    return (addr.version, int(addr), text)


_cache: dict[str, tuple[tuple[Any, ...], Analysis]] = {}


def _stamp(path: Path) -> tuple[Any, ...]:
    out: list[Any] = []
    for name in ("calls.arrows", "intervals.jsonl", "events.jsonl", "plan.json",
                 "scenario.yaml", "traces.arrows"):
        try:
            st = (path / name).stat()
            out.append((name, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((name, None))
    return tuple(out)


def analyse_path(path: Path | str) -> Analysis:
    """:func:`analyse` the run directory at ``path``, reusing the last result when its
    files have not changed since."""
    p = Path(path).resolve()
    stamp = _stamp(p)
    hit = _cache.get(str(p))
    if hit is not None and hit[0] == stamp:
        return hit[1]
    result = analyse(read_run_files(p))
    _cache.clear()
    _cache[str(p)] = (stamp, result)
    return result
