"""Latency histograms that merge without loss by addition (HdrHistogram).

Why HdrHistogram: buckets are logarithmic with a fixed relative precision (3
significant digits), so a histogram from each worker and each second can be
added into one and give the same percentiles as if every value had been seen
in one place.  Values are recorded in microseconds, from 1 µs to 1 hour.

A histogram is reused from one interval to the next (:func:`reset_histogram`),
never made anew: each HdrHistogram references its encoder and back, a reference
cycle that only the cyclic garbage collector frees, which workers run without.
For the same reason :func:`encode_histogram` keeps the ctypes array type hdrh's
encoder makes for each buffer length (see there).
"""

from __future__ import annotations

import base64
import ctypes
import sys
from collections.abc import Iterable, Sequence

from hdrh.codec import payload_header_size
from hdrh.histogram import HdrHistogram

from sipload.stats.msround import ms

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
DIGITS = 3
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


_BUFFER_TYPES: dict[int, object] = {}
"""Strong references to the ``c_byte * n`` array types hdrh's encoder makes per length."""


def encode_histogram(h: HdrHistogram) -> str:
    """``h``'s compact text form: base64 of HdrHistogram's compressed encoding.

    hdrh's encoder allocates a ``c_byte * n`` buffer, ``n`` following the highest
    value recorded; ctypes caches such array types only weakly, so each encode of a
    new length makes a class and leaves it as a reference cycle (a type and its
    descriptors) once freed.  Holding each length's type here makes the encoder
    find it in ctypes' cache: a few dozen lengths in a run, no garbage per snapshot.
    """
    if h.total_count:
        limit = h.get_counts_array_index(h.max_value) + 1
        n = payload_header_size + limit * (h.word_size + 1)
        if n not in _BUFFER_TYPES:
            _BUFFER_TYPES[n] = ctypes.c_byte * n
    return base64.b64encode(h.encode()).decode("ascii")


def decode_histogram(text: str) -> HdrHistogram:
    """The histogram :func:`encode_histogram` wrote as ``text`` (its base64 undone
    first: hdrh's own ``decode_and_add`` expects hdrh's text, not this one)."""
    return HdrHistogram.decode(base64.b64decode(text))


def reset_histogram(h: HdrHistogram) -> None:
    """Empty ``h`` in place, as ``HdrHistogram.reset`` does, without its Python loop
    over every bucket (tens of thousands)."""
    counts = h.counts
    ctypes.memset(counts, 0, ctypes.sizeof(counts))
    h.total_count = 0
    h.min_value = sys.maxsize
    h.max_value = 0
    h.start_time_stamp_msec = sys.maxsize
    h.end_time_stamp_msec = 0


_LAYOUT = new_histogram()  # one, made once: the layout every new_histogram() shares
_SUB_MASK: int = _LAYOUT.sub_bucket_mask
_UNIT_MAG: int = _LAYOUT.unit_magnitude
_HALF_MAG: int = _LAYOUT.sub_bucket_half_count_magnitude
_HALF: int = _LAYOUT.sub_bucket_half_count
_COUNTS_LEN: int = _LAYOUT.counts_len


def counts_index(value: int) -> int:
    """The bucket index hdrh files ``value`` (µs) under in a :func:`new_histogram`.

    The same bucket arithmetic as hdrh's ``_counts_index_for`` with the layout's
    constants read once: its ``64 - _clz(v | mask)`` is the bit length;
    tests/test_interval.py checks the two agree.
    """
    bucket = (value | _SUB_MASK).bit_length() - _UNIT_MAG - _HALF_MAG - 1
    return ((bucket + 1) << _HALF_MAG) + (value >> (bucket + _UNIT_MAG)) - _HALF


def record_us(h: HdrHistogram, value: int) -> None:
    """``h.record_value(value)`` for a value in range of a :func:`new_histogram`, in one
    function instead of hdrh's four."""
    index = counts_index(value)
    if value < 0 or not 0 <= index < _COUNTS_LEN:
        return
    h.counts[index] += 1
    h.total_count += 1
    if value < h.min_value:
        h.min_value = value
    if value > h.max_value:
        h.max_value = value


class _Pending:
    """One mark's values recorded since its histogram last took them: count per bucket
    index, total, lowest and highest value (µs)."""

    __slots__ = ("counts", "high", "low", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0
        self.low = sys.maxsize
        self.high = 0

    def clear(self) -> None:
        self.counts.clear()
        self.total = 0
        self.low = sys.maxsize
        self.high = 0


class MarkHistograms:
    """One histogram per timing mark name.

    :meth:`record` is on a worker's path once per mark of every call, and an
    HdrHistogram's counts are a ctypes array behind a plain Python object's
    attributes: a value goes into a count per bucket index kept here (a dict, in
    compiled code) and the histograms take those counts only when they are read
    (:attr:`by_mark`, :meth:`encode` ...), about once a second.
    """

    __slots__ = ("_by_mark", "_pending")

    def __init__(self) -> None:
        self._by_mark: dict[str, HdrHistogram] = {}
        self._pending: dict[str, _Pending] = {}

    @property
    def by_mark(self) -> dict[str, HdrHistogram]:
        """The histogram of each mark, with every value recorded so far."""
        self._fold()
        return self._by_mark

    def record(self, mark: str, seconds: float) -> None:
        us = round(seconds * 1_000_000)  # int() would make 283.99999 µs 283
        if us < LOWEST_US:
            us = LOWEST_US
        elif us > HIGHEST_US:
            us = HIGHEST_US
        p = self._pending.get(mark)
        if p is None:
            p = _Pending()
            self._pending[mark] = p
        counts = p.counts
        index = counts_index(us)
        counts[index] = counts.get(index, 0) + 1
        p.total += 1
        if us < p.low:
            p.low = us
        if us > p.high:
            p.high = us

    def _fold(self) -> None:
        """Add the pending counts into the histograms (made when a mark has none)."""
        for mark, p in self._pending.items():
            if not p.total:
                continue
            h = self._by_mark.get(mark)
            if h is None:
                h = new_histogram()
                self._by_mark[mark] = h
            counts = h.counts
            for index, n in p.counts.items():
                counts[index] += n
            h.total_count += p.total
            if p.low < h.min_value:
                h.min_value = p.low
            if p.high > h.max_value:
                h.max_value = p.high
            p.clear()

    def reset(self) -> None:
        """Empty every histogram, keeping them for the next interval (no new cycles)."""
        for p in self._pending.values():
            p.clear()
        for h in self._by_mark.values():
            if h.get_total_count():
                reset_histogram(h)

    def merge(self, other: MarkHistograms) -> None:
        by_mark = self.by_mark
        for mark, h in other.by_mark.items():
            mine = by_mark.get(mark)
            if mine is None:
                mine = new_histogram()
                by_mark[mark] = mine
            mine.add(h)

    def encode(self) -> dict[str, str]:
        """Compact text form (base64 of HdrHistogram's compressed encoding)."""
        return {m: encode_histogram(h) for m, h in self.by_mark.items() if h.get_total_count()}

    def recorded(self) -> list[str]:
        """The marks with a value, in :meth:`encode`'s order."""
        return [m for m, h in self.by_mark.items() if h.get_total_count()]

    def encode_one(self, mark: str) -> str:
        """:meth:`encode`'s text of one mark (~0.1 ms for a second's values)."""
        return encode_histogram(self.by_mark[mark])

    @staticmethod
    def decode(data: dict[str, str]) -> MarkHistograms:
        out = MarkHistograms()
        for mark, text in data.items():
            h = decode_histogram(text)
            mine = new_histogram()
            mine.add(h)
            out.by_mark[mark] = mine
        return out

    def summary(self, marks: Iterable[str] | None = None) -> dict[str, dict[str, float]]:
        """Per mark (every mark, or those of ``marks``): count, min, mean, p50 ... p99.9,
        max, in milliseconds (µs resolution)."""
        out: dict[str, dict[str, float]] = {}
        wanted = None if marks is None else set(marks)
        for mark, h in sorted(self.by_mark.items()):
            n = h.get_total_count()
            if not n or (wanted is not None and mark not in wanted):
                continue
            mean, at = figures(h, PERCENTILES)
            row: dict[str, float] = {"count": float(n), "min": ms(h.get_min_value() / 1000.0),
                                     "mean": ms(mean / 1000.0)}
            for p, value in zip(PERCENTILES, at, strict=True):
                row[f"p{p:g}".replace(".", "_")] = ms(value / 1000.0)
            row["max"] = ms(h.get_max_value() / 1000.0)
            out[mark] = row
        return out


def figures(h: HdrHistogram, percentiles: Sequence[float]) -> tuple[float, list[int]]:
    """The mean and the values at ``percentiles`` (ascending) of ``h``, in one pass.

    The same figures as hdrh's ``get_mean_value()`` (each bucket counted at its median
    equivalent value) and ``get_value_at_percentile(p)`` (the highest equivalent value
    of the bucket where the running count reaches p% of the total), which walk every
    bucket in Python once per figure: about 20,000 buckets here, six walks per mark.
    """
    total = h.get_total_count()
    if not total:
        return 0.0, [0 for _ in percentiles]
    targets = [h.get_target_count_at_percentile(p) for p in percentiles]
    values = [0 for _ in percentiles]
    weighted = 0
    running = 0
    k = 0
    for index, count in enumerate(h.counts[:h.counts_len]):  # one C copy of the counts
        if not count:
            continue
        value = h.get_value_from_index(index)
        low = h.get_lowest_equivalent_value(value)
        high = h.get_highest_equivalent_value(value)
        weighted += count * (low + ((high - low + 1) >> 1))
        running += count
        while k < len(targets) and running >= targets[k]:
            values[k] = high
            k += 1
    return weighted / total, values
