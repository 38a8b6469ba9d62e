"""Pass/fail thresholds on a run's summary: ``answer.p95<200ms``, ``asr>=0.99`` ...

Grammar: ``METRIC OP VALUE[UNIT]`` with optional spaces.

* ``OP`` is one of ``<  <=  >  >=  ==  !=``.
* ``METRIC`` is one of (see :data:`METRICS`):

  - ``<mark>.<stat>``: a timing mark (``first_provisional``, ``pdd``, ``answer``,
    ``bye``, ``call`` or a mark the scenario names) and one of ``p50 p90 p95 p99
    p99_9 (or p99.9) max mean min``; in milliseconds. ``VALUE`` takes ``ms``
    (the default) or ``s``.  ``<mark>.count`` is a count.
  - ratios, from 0 to 1: ``asr`` (succeeded / attempted), ``failed.rate``
    (failed / attempted), ``retransmissions.rate`` (retransmissions per call),
    ``late.rate`` (late starts / attempted). ``VALUE`` is a fraction, or a
    percentage with ``%``.
  - counts: ``calls.attempted``, ``calls.succeeded``, ``calls.failed``,
    ``calls.in_flight_at_stop``, ``calls.lost_with_worker``, ``failed.count``,
    ``retransmissions.count``, ``late.count``; no unit.
  - rates (calls per second): ``rate.achieved``, ``rate.target``, ``rate.peak``; and
    ``concurrency.max``, ``concurrency.mean`` (calls in progress); no unit.
  - media (:data:`MEDIA_METRICS`, the summary's ``media`` object): ``media.loss_rate``
    (a ratio: ``media.loss_rate<1%``), ``media.jitter_ms.p50|p95|max``,
    ``media.max_jitter_ms``, ``media.longest_gap_ms``, ``media.rtt_ms.p95`` and
    ``media.remote.jitter_ms.p95`` (milliseconds, like latencies), scores without a
    unit ``media.mos.min|p5|p50|mean`` and ``media.r_factor.min|p50``
    (``media.mos.p5>=4.0``), ``media.remote.fraction_lost.p95`` (a ratio), counts
    ``media.streams``, ``media.lost``, ``media.sent`` ..., and SRTP's
    ``media.srtp.streams``, ``media.srtp.auth_failures``, ``media.srtp.replay_failures``

An unknown metric, operator or unit is a :class:`ThresholdError` when the
threshold is parsed, which the CLI does before a run starts (given the
scenario's mark names), so a typo never passes silently.  A metric with no data
in the summary (no call reached that mark) fails its threshold.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from sipload.stats.msround import fmt_ms

#: The marks every call record carries (a scenario's ``timer:`` steps add its own).
STANDARD_MARKS = ("first_provisional", "pdd", "answer", "bye", "call")

Kind = Literal["latency", "ratio", "count", "rate", "score"]

LATENCY_STATS = ("p50", "p90", "p95", "p99", "p99_9", "max", "mean", "min")

METRICS: dict[str, tuple[Kind, tuple[str, ...]]] = {
    "asr": ("ratio", ("asr",)),
    "failed.rate": ("ratio", ("failed", "rate")),
    "failed.count": ("count", ("failed", "count")),
    "retransmissions.rate": ("ratio", ("retransmissions", "rate")),
    "retransmissions.count": ("count", ("retransmissions", "count")),
    "late.rate": ("ratio", ("generator", "late_rate")),
    "late.count": ("count", ("generator", "late_starts")),
    "rate.achieved": ("rate", ("rate", "achieved")),
    "rate.target": ("rate", ("rate", "target")),
    "rate.peak": ("rate", ("rate", "peak")),
    "concurrency.max": ("count", ("concurrency", "max")),
    "concurrency.mean": ("rate", ("concurrency", "mean")),
    **{f"calls.{k}": ("count", ("calls", k)) for k in (
        "attempted", "succeeded", "failed", "in_flight_at_stop", "lost_with_worker")},
}
"""Fixed metrics: name -> (kind, path of keys into summary.json)."""

MEDIA_METRICS: dict[str, tuple[Kind, tuple[str, ...]]] = {
    "media.loss_rate": ("ratio", ("media", "loss_rate")),
    **{f"media.{k}": ("count", ("media", k)) for k in (
        "streams", "receiving", "sent", "received", "expected", "lost", "duplicates",
        "out_of_order", "malformed", "foreign", "ssrc_changes", "pt_changes", "events")},
    **{f"media.jitter_ms.{k}": ("latency", ("media", "jitter_ms", k))
       for k in ("p50", "p95", "max")},
    "media.max_jitter_ms": ("latency", ("media", "max_jitter_ms")),
    "media.longest_gap_ms": ("latency", ("media", "longest_gap_ms")),
    **{f"media.mos.{k}": ("score", ("media", "mos", k)) for k in ("min", "p5", "p50", "mean")},
    **{f"media.r_factor.{k}": ("score", ("media", "r_factor", k)) for k in ("min", "p50")},
    "media.remote.streams": ("count", ("media", "remote", "streams")),
    "media.remote.lost": ("count", ("media", "remote", "lost")),
    **{f"media.remote.fraction_lost.{k}": ("ratio", ("media", "remote", "fraction_lost", k))
       for k in ("p50", "p95", "max")},
    **{f"media.remote.jitter_ms.{k}": ("latency", ("media", "remote", "jitter_ms", k))
       for k in ("p50", "p95", "max")},
    **{f"media.rtt_ms.{k}": ("latency", ("media", "rtt_ms", k)) for k in ("p50", "p95", "max")},
    **{f"media.srtp.{k}": ("count", ("media", "srtp", k))
       for k in ("streams", "auth_failures", "replay_failures")},
}
"""Media metrics (summary.json's ``media`` object); all fail with no data when no call
carried media."""
METRICS.update(MEDIA_METRICS)

OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": lambda a, b: math.isclose(a, b, rel_tol=1e-9),
    "!=": lambda a, b: not math.isclose(a, b, rel_tol=1e-9), "<": operator.lt,
    ">": operator.gt,
}

_FORM = re.compile(r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_.\-]*)\s*(?P<op><=|>=|==|!=|<|>|=)"
                   r"\s*(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)?"
                   r"\s*(?P<unit>\S*)\s*$")


class ThresholdError(ValueError):
    """A threshold that cannot be parsed; the message names the bad part."""


@dataclass(frozen=True, slots=True)
class Threshold:
    """One parsed threshold."""

    text: str  #: as written
    metric: str  #: canonical metric name, e.g. answer.p99_9
    op: str  #: < <= > >= == !=
    limit: float  #: in the metric's unit (ms for latencies, a fraction for ratios)
    kind: Kind  #: latency, ratio, count or rate
    path: tuple[str, ...]  #: keys into summary.json


@dataclass(frozen=True, slots=True)
class Verdict:
    """A threshold checked against a summary."""

    threshold: str  #: the threshold as written
    metric: str  #: canonical metric name
    op: str  #: the operator
    limit: float  #: the limit, in the metric's unit
    unit: str  #: ms, ratio, count or calls/s
    measured: float | None  #: the summary's value; None when there was no data
    passed: bool  #: met
    message: str  #: one line saying what was measured against what

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


UNIT_NAMES: dict[Kind, str] = {"latency": "ms", "ratio": "ratio", "count": "count",
                               "rate": "calls/s", "score": "score"}


def _metric(name: str, marks: Sequence[str]) -> tuple[str, Kind, tuple[str, ...]]:
    if name in METRICS:
        kind, path = METRICS[name]
        return name, kind, path
    if "." in name:
        mark, stat = name.rsplit(".", 1)
        if mark.endswith(".p99") and stat == "9":  # answer.p99.9
            mark, stat = mark[:-4], "p99_9"
        if mark in marks:
            if stat in LATENCY_STATS:
                return f"{mark}.{stat}", "latency", ("latency", mark, stat)
            if stat == "count":
                return f"{mark}.count", "count", ("latency", mark, "count")
            raise ThresholdError(
                f"unknown statistic {stat!r} for mark {mark!r} "
                f"(use {', '.join((*LATENCY_STATS, 'count'))})")
    close = difflib.get_close_matches(name, [*METRICS, *(f"{m}.p95" for m in marks)], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    known = ", ".join([*(m for m in METRICS if m not in MEDIA_METRICS),
                       *(f"{m}.p95" for m in marks)])
    raise ThresholdError(f"unknown metric {name!r} ({hint}known: {known}; media.loss_rate, "
                         f"media.jitter_ms.p95, media.mos.p5 and the other media.* figures; "
                         f"any mark takes {', '.join(LATENCY_STATS)})")


def parse_threshold(text: str, marks: Iterable[str] | None = None) -> Threshold:
    """Parse ``METRIC OP VALUE[UNIT]``.

    Args:
        text: e.g. ``answer.p95<200ms``, ``asr>=0.99``, ``failed.rate<0.5%``.
        marks: the timing marks that exist (the standard ones are always known);
            pass the scenario's ``start_timer``/``stop_timer`` names at startup.

    Returns:
        The parsed :class:`Threshold`, its limit in the metric's unit.

    Raises:
        ThresholdError: a malformed threshold, an unknown metric, operator or unit,
            or a value the metric cannot take; the message names the bad part.
    """
    known_marks = list(dict.fromkeys([*STANDARD_MARKS, *(marks or ())]))
    m = _FORM.match(text)
    if m is None:
        raise ThresholdError(f"{text!r}: expected METRIC OP VALUE, e.g. answer.p95<200ms "
                             "(operators < <= > >= == !=)")
    op = m.group("op")
    if op == "=":
        raise ThresholdError(f"{text!r}: operator '=' is not one of < <= > >= == !=")
    if m.group("value") is None:
        raise ThresholdError(f"{text!r}: missing the number after {op!r}")
    try:
        metric, kind, path = _metric(m.group("metric"), known_marks)
    except ThresholdError as e:
        raise ThresholdError(f"{text!r}: {e}") from None
    value = float(m.group("value"))
    unit = m.group("unit")
    if kind == "latency":
        scale = {"": 1.0, "ms": 1.0, "s": 1000.0, "us": 0.001, "µs": 0.001}.get(unit)
        if scale is None:
            raise ThresholdError(f"{text!r}: unit {unit!r} does not fit latency {metric!r} "
                                 "(use ms or s)")
        value *= scale
    elif kind == "ratio":
        if unit == "%":
            value /= 100.0
        elif unit:
            raise ThresholdError(f"{text!r}: unit {unit!r} does not fit ratio {metric!r} "
                                 "(use a fraction such as 0.99, or a percentage such as 99%)")
        elif not 0.0 <= value <= 1.0 and metric != "retransmissions.rate":
            raise ThresholdError(f"{text!r}: value {m.group('value')} is not a fraction "
                                 f"for {metric!r} (write 0.99 or 99%)")
    elif unit:
        raise ThresholdError(f"{text!r}: unit {unit!r} does not fit {metric!r}, "
                             "which takes a plain number")
    return Threshold(text=text.strip(), metric=metric, op=op, limit=value, kind=kind,
                     path=path)


def parse_thresholds(texts: Iterable[str], marks: Iterable[str] | None = None
                     ) -> list[Threshold]:
    """Parse several; the first bad one raises :class:`ThresholdError`."""
    mark_list = list(marks or ())
    return [parse_threshold(t, mark_list) for t in texts]


def lookup(summary: Mapping[str, Any], path: Sequence[str]) -> float | None:
    """The number at ``path`` in a summary dict; None when absent or null."""
    node: Any = summary
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None
    return float(node)


def _fmt(value: float, kind: Kind) -> str:
    if kind == "latency":
        return f"{fmt_ms(value)} ms"
    if kind == "ratio":
        return f"{value:.6g} ({value * 100:.4g}%)"
    if kind == "count":
        return f"{value:.0f}" if value == int(value) else f"{value:.6g}"
    if kind == "score":
        return f"{value:.3f}"
    return f"{value:.6g}/s"


def evaluate(thresholds: Iterable[Threshold | str], summary: Mapping[str, Any]
             ) -> list[Verdict]:
    """Check each threshold against a summary (as :func:`build_summary` makes it).

    Strings are parsed with the marks the summary knows.  A metric with no value in
    the summary (no call reached that mark, no attempted call for a ratio) fails.
    """
    marks = list(summary.get("marks", []) or []) + list(summary.get("latency", {}) or {})
    out: list[Verdict] = []
    for item in thresholds:
        t = item if isinstance(item, Threshold) else parse_threshold(item, marks)
        measured = lookup(summary, t.path)
        unit = UNIT_NAMES[t.kind]
        limit = _fmt(t.limit, t.kind)
        if measured is None:
            out.append(Verdict(t.text, t.metric, t.op, t.limit, unit, None, False,
                               f"{t.metric}: no data (no call measured it); needs {t.op} "
                               f"{limit}"))
            continue
        passed = OPS[t.op](measured, t.limit)
        word = "met" if passed else "FAILED"
        out.append(Verdict(t.text, t.metric, t.op, t.limit, unit, measured, passed,
                           f"{t.metric} = {_fmt(measured, t.kind)}; needs {t.op} {limit}: "
                           f"{word}"))
    return out


def parse_allowance(text: str) -> float:
    """``1%`` or ``0.01`` as a fraction of attempted calls.

    Raises:
        ValueError: not a number, or outside 0..1 (0%..100%).
    """
    t = text.strip()
    value = float(t[:-1]) / 100.0 if t.endswith("%") else float(t)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{text!r} is not a share of calls (write 1% or 0.01)")
    return value
