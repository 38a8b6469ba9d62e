"""Reading a run directory into pandas frames (for notebooks) and arrow tables (for reports).

The report layer reads the files a run leaves and nothing else (see
:mod:`sipload.stats.rundir` for the format).  Two views of the same files:

* :func:`load_run` gives :class:`RunData`, pandas DataFrames for a notebook:
  ``calls`` (one row per call, typed columns: marks in ms), ``messages`` (one row
  per message of each call, built on first use because it is the largest),
  ``intervals`` (one row per worker per second, histograms left encoded; media
  packets and histograms in ``media_*`` columns), ``media`` (RTP per second), plus
  ``plan`` and ``events``.
* :func:`read_run_files` gives :class:`RunFiles`, the raw arrow table and the JSON
  lines, which the summary and the HTML report work on with vectorised
  pyarrow/numpy operations (no per-row Python work over a million calls).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from sipload.stats.msround import seconds_to_ms
from sipload.stats.rundir import (
    EVENTS,
    INTERVALS,
    PLAN,
    pyarrow_with_pandas,
    read_calls,
    read_jsonl,
)

if TYPE_CHECKING:  # pandas is imported by the frames' functions, for notebooks only
    import pandas as pd


def _pandas() -> Any:
    """pandas, imported now (the summary and report.html never need it), with
    pyarrow told it is there (:func:`sipload.stats.rundir.pyarrow_with_pandas`)."""
    import pandas

    pyarrow_with_pandas()
    return pandas

"""Timing marks every UAC call gets from its message log (seconds after the INVITE,
the BYE, or the call's start)."""

SCENARIO = "scenario.yaml"

INTERVAL_SCALARS = ("t", "worker", "started", "succeeded", "failed", "active", "late",
                    "dropped", "retransmissions", "loop_lag_ms", "cpu", "target_rate",
                    "rss_mib")
"""The snapshots' scalar columns (0 where a snapshot has none: ``rss_mib`` off Linux, and
in run directories from before it was recorded)."""


INTERVAL_MEDIA = ("media_streams", "media_calls", "media_sent", "media_received",
                  "media_expected", "media_lost")
"""The interval frame's media columns (0 in a snapshot without media; see
:mod:`sipload.stats.mediaintervals`); ``media_histograms`` holds the snapshot's
encoded jitter and MOS histograms."""


class RunDirError(ValueError):
    """The path is not a readable run directory."""


@dataclass(slots=True)
class RunFiles:
    """The files of one run directory, read but not yet analysed."""

    path: Path
    calls: pa.Table  #: calls.arrows (CALL_SCHEMA)
    intervals: list[dict[str, Any]]  #: intervals.jsonl, one dict per worker per second
    events: list[dict[str, Any]]  #: events.jsonl
    plan: dict[str, Any]  #: plan.json ({} when missing)
    scenario_text: str  #: scenario.yaml ("" when missing)


def read_plan(path: Path) -> dict[str, Any]:
    """``plan.json`` as a dict, ``{}`` when the file is missing or unreadable."""
    f = path / PLAN
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def read_run_files(path: Path | str) -> RunFiles:
    """Read every file of a run directory.

    Raises:
        RunDirError: ``path`` is not a directory, or holds none of the run files.
    """
    p = Path(path)
    if not p.is_dir():
        raise RunDirError(f"{p}: not a directory")
    if not any((p / name).exists() for name in ("calls.arrows", INTERVALS, PLAN)):
        raise RunDirError(f"{p}: not a run directory (no calls.arrows, intervals.jsonl "
                          "or plan.json)")
    scen = p / SCENARIO
    try:
        scenario_text = scen.read_text(encoding="utf-8") if scen.exists() else ""
    except (OSError, UnicodeDecodeError):
        scenario_text = ""
    return RunFiles(path=p, calls=read_calls(p), intervals=read_jsonl(p, INTERVALS),
                    events=read_jsonl(p, EVENTS), plan=read_plan(p),
                    scenario_text=scenario_text)


def scenario_marks(scenario_text: str) -> list[str]:
    """The named timing marks (``start_timer``/``stop_timer``) of a scenario's YAML text.

    Read with a plain YAML load (the report never imports the scenario package); an
    unreadable text gives no marks.
    """
    try:
        data = yaml.safe_load(scenario_text) if scenario_text else None
    except yaml.YAMLError:
        return []
    names: list[str] = []
    steps = data.get("steps") if isinstance(data, dict) else None
    for step in steps if isinstance(steps, list) else []:
        if not isinstance(step, dict):
            continue
        for key in ("start_timer", "stop_timer"):
            name = step.get(key)
            if isinstance(name, str) and name and name not in names:
                names.append(name)
    return names


def scenario_thresholds(plan: dict[str, Any], scenario_text: str) -> list[str]:
    """The scenario's ``thresholds:`` list, from the plan or else from scenario.yaml."""
    raw = plan.get("thresholds")
    if raw is None and scenario_text:
        try:
            data = yaml.safe_load(scenario_text)
        except yaml.YAMLError:
            data = None
        raw = data.get("thresholds") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        return []
    return [str(x) for x in raw]


def intervals_frame(intervals: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per snapshot: the scalar columns, then ``failures``, ``codes`` and
    ``histograms`` (dicts, histograms still base64-encoded), then the media columns
    (:data:`INTERVAL_MEDIA`: packets and streams of the interval) and
    ``media_histograms`` (jitter_ms and mos, encoded; ``MediaHistograms.decode``)."""
    pd = _pandas()
    cols: dict[str, list[Any]] = {c: [] for c in INTERVAL_SCALARS}
    extra: dict[str, list[Any]] = {"failures": [], "codes": [], "histograms": []}
    media: dict[str, list[Any]] = {c: [] for c in INTERVAL_MEDIA}
    media_hist: list[dict[str, Any]] = []
    for snap in intervals:
        for c in INTERVAL_SCALARS:
            cols[c].append(snap.get(c, 0))
        for c, values in extra.items():
            v = snap.get(c)
            values.append(v if isinstance(v, dict) else {})
        m = snap.get("media")
        m = m if isinstance(m, dict) else {}
        for c, values in media.items():
            v = m.get(c[len("media_"):], 0)
            values.append(v if isinstance(v, int) and not isinstance(v, bool) else 0)
        h = m.get("histograms")
        media_hist.append(h if isinstance(h, dict) else {})
    frame = pd.DataFrame({**cols, **extra,
                          **{c: pd.Series(v, dtype="int64") for c, v in media.items()},
                          "media_histograms": media_hist})
    if len(frame):
        for c in INTERVAL_SCALARS:
            frame[c] = pd.to_numeric(frame[c], errors="coerce").fillna(0)
        for c in ("worker", "started", "succeeded", "failed", "active", "late", "dropped",
                  "retransmissions"):
            frame[c] = frame[c].astype("int64")
    return frame


def messages_frame(calls: pa.Table) -> pd.DataFrame:
    """One row per message of each call: call_number, t, direction, label.

    This parses every call's ``messages`` JSON, so it is for notebooks (and is what
    :attr:`RunData.messages` builds lazily); the reports never need all of it.
    """
    pd = _pandas()
    numbers = calls.column("call_number").to_pylist()
    texts = calls.column("messages").to_pylist()
    out_n: list[int] = []
    out_t: list[float] = []
    out_d: list[str] = []
    out_l: list[str] = []
    for number, text in zip(numbers, texts, strict=True):
        try:
            msgs = json.loads(text) if text else []
        except json.JSONDecodeError:
            continue
        for m in msgs:
            if isinstance(m, list) and len(m) >= 3:
                out_n.append(number)
                out_t.append(float(m[0]))
                out_d.append(str(m[1]))
                out_l.append(str(m[2]))
    return pd.DataFrame({"call_number": pd.Series(out_n, dtype="int64"),
                         "t": pd.Series(out_t, dtype="float64"),
                         "direction": pd.Series(out_d, dtype="object"),
                         "label": pd.Series(out_l, dtype="object")})


@dataclass
class RunData:
    """A run directory as pandas DataFrames (see :func:`load_run`)."""

    path: Path
    calls: pd.DataFrame  #: one row per call, typed (see :func:`typed_calls`)
    intervals: pd.DataFrame  #: one row per worker per second (see :func:`intervals_frame`)
    plan: dict[str, Any]  #: plan.json
    events: list[dict[str, Any]]  #: events.jsonl, in order
    scenario_text: str = ""  #: scenario.yaml as it ran
    _table: pa.Table | None = field(default=None, repr=False)

    @cached_property
    def messages(self) -> pd.DataFrame:
        """One row per message of each call: call_number, t (seconds since the run
        started), direction (out, in, or re: a retransmission), label."""
        if self._table is None:
            return messages_frame(pa.table({"call_number": pa.array([], pa.int64()),
                                            "messages": pa.array([], pa.string())}))
        return messages_frame(self._table)

    @cached_property
    def media(self) -> pd.DataFrame:
        """Media per second over all workers (empty when no call carried RTP): second,
        streams, sent, received, expected, lost, loss_rate (packets, from the workers'
        running totals), jitter_p50, jitter_p95 (ms), mos_p50, mos_p5 (of the calls
        that ended that second, from the merged interval histograms).  The per-call
        figures are the ``media_*`` columns of :attr:`calls`."""
        from sipload.report.media import media_per_second
        pd = _pandas()
        frame = self.intervals
        if not len(frame):
            return pd.DataFrame()
        seconds = [int(s) for s in np.rint(frame["t"].to_numpy(dtype=np.float64))]
        columns = media_per_second(_snapshots(frame), seconds)
        return pd.DataFrame(columns.as_dict()) if len(columns) else pd.DataFrame()

    @property
    def marks(self) -> pd.DataFrame:
        """One row per call (indexed by call_number), one column per timing mark, in
        milliseconds like summary.json (NaN where the call did not reach it)."""
        cols = [c for c in self.calls.columns if c.startswith(MARK_PREFIX)]
        frame = self.calls[cols].set_axis([c[len(MARK_PREFIX):] for c in cols], axis=1)
        return frame.set_axis(self.calls["call_number"], axis=0)


def _snapshots(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The worker and media map of each row of an intervals frame, as snapshots."""
    out: list[dict[str, Any]] = []
    for row in frame[["worker", *INTERVAL_MEDIA, "media_histograms"]].itertuples(index=False):
        counts = row[1:-1]
        m: dict[str, Any] = {c[len("media_"):]: int(v)
                             for c, v in zip(INTERVAL_MEDIA, counts, strict=True)}
        m["histograms"] = row[-1]
        out.append({"worker": int(row[0]), "media": m} if any(counts) or row[-1] else {})
    return out


MARK_PREFIX = "mark_ms."
"""``calls`` has one column per timing mark: ``mark_ms.answer`` ... (milliseconds)."""


def typed_calls(table: pa.Table) -> pd.DataFrame:
    """The calls table as typed pandas columns: no JSON text left in a cell.

    ``codes`` becomes a list of ints per call; ``marks`` becomes one float64 column
    per timing mark, ``mark_ms.<name>``, in milliseconds as in summary.json (NaN
    where the call did not reach it); ``messages`` is left out (one row per message
    is :attr:`RunData.messages`).  Start and end times stay in seconds since the run
    started, as their names in the run files say.
    """
    pd = _pandas()
    frame = table.drop_columns([c for c in ("marks", "messages", "codes")
                                if c in table.column_names]).to_pandas()
    frame["codes"] = pd.Series(
        [[int(c) for c in str(text).split(",") if c] for text in table.column("codes").to_pylist()]
        if "codes" in table.column_names else [[] for _ in range(len(frame))],
        dtype="object", index=frame.index)
    parsed: list[dict[str, float]] = []
    for text in table.column("marks").to_pylist() if "marks" in table.column_names else []:
        try:
            raw = json.loads(text) if text else {}
        except json.JSONDecodeError:
            raw = {}
        parsed.append({str(k): seconds_to_ms(float(v)) for k, v in raw.items()
                       if isinstance(v, int | float)} if isinstance(raw, dict) else {})
    names = sorted({k for row in parsed for k in row})
    for name in names:
        frame[MARK_PREFIX + name] = pd.Series([row.get(name, float("nan")) for row in parsed],
                                              dtype="float64", index=frame.index)
    return frame


def load_run(path: Path | str) -> RunData:
    """Load a run directory as pandas DataFrames, for notebooks.

    Args:
        path: the run directory.

    Returns:
        :class:`RunData` with ``calls`` (typed columns, see :func:`typed_calls`:
        marks as ``mark_ms.<name>`` in ms, ``codes`` as lists of ints, the RTP
        figures as ``media_<name>`` float columns, NaN for a call without media),
        ``intervals``, ``plan``, ``events``; its ``messages`` frame (one row per
        message, ``t`` in seconds since the run started) is built on first access,
        and ``marks`` is the mark columns alone, by call number.

    Raises:
        RunDirError: ``path`` is not a run directory.
    """
    files = read_run_files(path)
    calls = typed_calls(files.calls)
    return RunData(path=files.path, calls=calls, intervals=intervals_frame(files.intervals),
                   plan=files.plan, events=files.events, scenario_text=files.scenario_text,
                   _table=files.calls.select(["call_number", "messages"]))


def column_counts(column: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    """How many times each value occurs in a string column (vectorised)."""
    out: dict[str, int] = {}
    for item in pc.value_counts(column).to_pylist():
        value = item["values"]
        out["" if value is None else str(value)] = int(item["counts"])
    return out
