"""Latency histograms across workers and seconds: totals, series over time, distributions.

Every snapshot in ``intervals.jsonl`` carries one HdrHistogram per timing mark for
that worker and second.  HdrHistograms merge by adding their counts, so

* the run's percentiles come from one :class:`MarkHistograms` per run whose
  counts are the sum of every snapshot's (``MarkHistograms.summary`` reads them):
  exactly what one histogram that saw every call would say, at 3 significant
  digits, and the same as ``MarkHistograms.decode`` + ``merge`` of each snapshot
  (the tests check it); the counts are added as numpy arrays because hdrh's own
  ``add`` allocates and copies twice per snapshot and mark;
* the percentiles over time add the counts of one mark over the workers of each
  second (numpy on the histograms' count arrays) and read the percentiles from
  the cumulative sum, with the same rule as HdrHistogram's
  ``get_value_at_percentile`` (the highest value equivalent to the bucket where
  the cumulative count reaches ``round(p * total / 100)``).

Histograms are never rebuilt from the per-call rows: the cost is one decode per
snapshot and mark, whatever the number of calls.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from hdrh.histogram import HdrHistogram

from sipload.stats.histograms import MarkHistograms, new_histogram

SERIES_PERCENTILES = (50.0, 90.0, 99.0)
"""The percentiles drawn over time."""

Counts = npt.NDArray[np.uint64]
Floats = npt.NDArray[np.float64]


@lru_cache(maxsize=4)
def _bucket_values(counts_len: int) -> Floats:
    """The value (µs) each bucket index of a default histogram stands for: hdrh's
    ``get_highest_equivalent_value(get_value_from_index(i))``, computed for every
    index at once (hdrh's two Python calls per index cost ~40 ms per report)."""
    h = new_histogram()
    assert h.counts_len == counts_len
    half, magnitude = int(h.sub_bucket_half_count), int(h.sub_bucket_half_count_magnitude)
    unit = int(h.unit_magnitude)
    index = np.arange(counts_len, dtype=np.int64)
    bucket = (index >> magnitude) - 1
    sub = (index & (half - 1)) + half
    low = bucket < 0
    sub[low] -= half
    bucket[low] = 0
    lowest = sub << (bucket + unit)  # the bucket's lowest value; sub < sub_bucket_count
    highest = lowest + (np.int64(1) << (bucket + unit)) - 1
    return highest.astype(np.float64)


def _bucket_values_by_hdrh(counts_len: int) -> Floats:
    """:func:`_bucket_values` through hdrh's own calls, index by index (for the tests)."""
    h = new_histogram()
    assert h.counts_len == counts_len
    return np.array([h.get_highest_equivalent_value(h.get_value_from_index(i))
                     for i in range(counts_len)], dtype=np.float64)


def counts_of(h: HdrHistogram) -> Counts:
    """A histogram's bucket counts as a numpy array (a view, not a copy)."""
    return np.ctypeslib.as_array(h.counts)


def percentiles_ms(counts: Counts, percentiles: Sequence[float]) -> list[float | None]:
    """Values (milliseconds) at ``percentiles`` of summed bucket counts; None when empty."""
    total = int(counts.sum())
    if total == 0:
        return [None] * len(percentiles)
    values = _bucket_values(len(counts))
    cum = np.cumsum(counts, dtype=np.uint64)
    out: list[float | None] = []
    for p in percentiles:
        target = max(int(min(p, 100.0) * total / 100 + 0.5), 1)
        idx = int(np.searchsorted(cum, np.uint64(target), side="left"))
        out.append(float(values[min(idx, len(values) - 1)]) / 1000.0)
    return out


def distribution_ms(counts: Counts, points: int = 120) -> tuple[Floats, Floats]:
    """The percentile plot of one histogram: (percentiles, values in ms).

    Percentiles are spaced evenly on the ``1 / (1 - p)`` scale from 0 up to the last
    one the count can resolve, like HdrHistogram's percentile distribution output.
    """
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0), np.zeros(0)
    top = min(np.log10(max(total, 10)), 6.0)
    nines = np.linspace(0.0, top, points)
    ps = 100.0 * (1.0 - 10.0 ** -nines)
    values = np.array(percentiles_ms(counts, list(ps)), dtype=np.float64)
    return ps, values


def _decode_counts(text: str) -> Counts:
    """The bucket counts of one encoded histogram, in the layout of new_histogram()."""
    h = HdrHistogram.decode(base64.b64decode(text))
    if h.counts_len != _layout_len():
        mine = new_histogram()
        mine.add(h)
        h = mine
    return counts_of(h)


@lru_cache(maxsize=1)
def _layout_len() -> int:
    return int(new_histogram().counts_len)


def histogram_of(counts: Counts) -> HdrHistogram:
    """A histogram (new_histogram's layout) holding the given bucket counts."""
    h = new_histogram()
    counts_of(h)[:] = counts
    nz = np.flatnonzero(counts)
    if len(nz):
        h.set_internal_tacking_values(int(nz[0]), int(nz[-1]), int(counts.sum()))
    return h


@dataclass
class LatencyAnalysis:
    """What the report needs from the histograms of every snapshot."""

    total: MarkHistograms = field(default_factory=MarkHistograms)
    #: run totals, one merged histogram per mark
    series_mark: str = ""  #: the mark drawn over time
    series_t: list[float] = field(default_factory=list)  #: second of each point
    series: dict[float, list[float | None]] = field(default_factory=dict)
    #: percentile -> value (ms) per point of ``series_t``

    def summary(self) -> dict[str, dict[str, float]]:
        """Per mark: count, min, mean, p50, p90, p95, p99, p99_9, max (ms)."""
        return self.total.summary()

    def counts(self, mark: str) -> Counts | None:
        h = self.total.by_mark.get(mark)
        return None if h is None else counts_of(h)


def pick_series_mark(marks: Iterable[str]) -> str:
    """The mark to draw over time: answer, else call, else the first one."""
    names = sorted(set(marks))
    for preferred in ("answer", "call", "pdd"):
        if preferred in names:
            return preferred
    return names[0] if names else ""


def analyse_latency(intervals: list[dict[str, Any]], seconds: list[int]) -> LatencyAnalysis:
    """Merge every snapshot's histograms; percentiles of one mark per second.

    Args:
        intervals: the snapshots, in file order.
        seconds: for each snapshot, the whole second it belongs to (so the
            snapshots of all workers for one second are added together).
    """
    out = LatencyAnalysis()
    marks: set[str] = set()
    for snap in intervals:
        hists = snap.get("histograms")
        if isinstance(hists, dict):
            marks.update(hists)
    mark = pick_series_mark(marks)
    out.series_mark = mark
    for p in SERIES_PERCENTILES:
        out.series[p] = []
    if not marks:
        return out
    # group the snapshots by second, in time order
    order = sorted(range(len(intervals)), key=lambda i: (seconds[i], i))
    current: Counts | None = None
    current_sec: int | None = None

    def flush() -> None:
        if current_sec is None or current is None:
            return
        out.series_t.append(float(current_sec))
        for p, v in zip(SERIES_PERCENTILES, percentiles_ms(current, SERIES_PERCENTILES),
                        strict=True):
            out.series[p].append(v)

    totals: dict[str, Counts] = {}
    for i in order:
        hists = intervals[i].get("histograms")
        if not isinstance(hists, dict) or not hists:
            continue
        try:
            decoded = {k: _decode_counts(v) for k, v in hists.items() if isinstance(v, str)}
        except Exception:  # a corrupt snapshot must not stop the report
            continue
        for k, counts in decoded.items():
            total = totals.get(k)
            if total is None:
                totals[k] = counts.copy()
            else:
                total += counts
        if seconds[i] != current_sec:
            flush()
            current, current_sec = None, seconds[i]
        c = decoded.get(mark)
        if c is not None:
            if current is None:
                current = c.copy()
            else:
                current += c
    flush()
    for k, counts in sorted(totals.items()):
        if counts.any():
            out.total.by_mark[k] = histogram_of(counts)
    return out
