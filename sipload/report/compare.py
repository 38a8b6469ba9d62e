"""Comparing two runs: how rate, ASR, the failure mix and each percentile moved.

Run A is the baseline, run B the candidate.  For each judged metric the change
is ``(B - A) / A``; it is a *regression* when it moves the bad way by more than
the tolerance (relative to A) *and* by more than an absolute floor, so that noise
never counts:

* the floors (:data:`FLOORS`, each overridable with ``--min-delta``): 1 ms for
  latencies (HdrHistogram keeps 3 significant digits and one late packet moves a
  tail percentile by a millisecond), 0.1 percentage point for ratios, 1 call/s
  for rates, 1 for counts;
* a percentile is judged only when both runs have enough samples to put
  :data:`TAIL_SAMPLES` of them beyond it (p50: 20 calls, p90: 100, p95: 200,
  p99: 1,000, p99.9: 10,000 with the default 10); below that it is shown as
  ``too_few_samples``, never a regression;
* higher is worse: every mark's p50, p90, p95, p99, p99.9; ``failed.rate``;
  ``retransmissions.rate``; lower is worse: ``asr``, ``rate.achieved``;
* when either run carried RTP (its summary has a ``media`` object): higher is worse
  for ``media.loss_rate`` and ``media.jitter_ms.p50``/``p95`` (judged with the
  streams that received, like a percentile), lower is worse for ``media.mos.p5`` and
  ``media.mos.p50`` (a MOS score: floor 0.05; p5 is a tail like p95).

``metrics`` (``--metric``) limits what is judged; the other metrics are shown as
``info``.  Maxima, counts and the failure mix are shown but not judged.  A metric
that only one run has is shown as missing, not judged.  Every value carries its
unit (ms, %, calls/s, calls).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from sipload.report.html import environment
from sipload.report.summary import build_summary, read_summary
from sipload.report.thresholds import lookup
from sipload.stats.msround import fmt_ms

Direction = Literal["higher_is_worse", "lower_is_worse", "info"]

FLOORS = {"latency": 1.0, "ratio": 0.001, "rate": 1.0, "count": 1.0, "score": 0.05}
"""Default absolute floors by kind: ms, a fraction (0.001 = 0.1 point), calls/s, count,
MOS."""
PERCENTILE_STATS = ("p50", "p90", "p95", "p99", "p99_9")
PERCENTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99, "p99_9": 0.999,
               "p5": 0.95}
"""How far into its tail each percentile lies (p5, a low tail, as far as p95)."""
TAIL_SAMPLES = 10
"""A percentile p is judged when both runs have at least TAIL_SAMPLES / (1 - p) samples."""
UNITS = {"latency": "ms", "ratio": "%", "rate": "calls/s", "count": "calls", "score": "MOS"}


class CompareError(ValueError):
    """A bad ``--min-delta`` or ``--metric``; the message says what was expected."""


def parse_min_delta(text: str) -> tuple[str, float]:
    """``2ms``/``0.5s`` (latency), ``0.5%`` (ratio, in points), ``5/s`` (rate) or
    ``3`` (count) as (kind, floor in the kind's unit: ms, fraction, calls/s, count).

    Raises:
        CompareError: none of those.
    """
    t = text.strip()
    units = (("ms", "latency", 1.0), ("s", "latency", 1000.0), ("%", "ratio", 0.01),
             ("/s", "rate", 1.0), ("mos", "score", 1.0), ("", "count", 1.0))
    for suffix, kind, scale in sorted(units, key=lambda u: -len(u[0])):
        if t.endswith(suffix):
            number = t[:len(t) - len(suffix)] if suffix else t
            try:
                value = float(number) * scale
            except ValueError:
                break
            if not value >= 0 or value == float("inf"):
                break
            return kind, value
    raise CompareError(f"--min-delta {text!r}: expected 2ms or 0.5s (latencies), 0.5% "
                       "(ratios, in points), 5/s (rates), 0.1mos (MOS) or 3 (counts)")


def min_samples(stat: str, tail: int = TAIL_SAMPLES) -> int:
    """Samples a run needs for percentile ``stat`` to be judged (0: not a percentile)."""
    p = PERCENTILES.get(stat)
    return 0 if p is None else math.ceil(tail / (1.0 - p) - 1e-9)

COMPARE_JSON = "compare.json"
COMPARE_HTML = "compare.html"


def parse_tolerance(text: str) -> float:
    """``10%`` or ``0.1`` as a fraction.

    Raises:
        ValueError: not a number, or negative.
    """
    t = text.strip()
    value = float(t[:-1]) / 100.0 if t.endswith("%") else float(t)
    if not 0 <= value < float("inf"):  # nan and inf too
        raise ValueError(f"tolerance {text!r} must be a finite number >= 0")
    return value


def _summary_of(run: Path | str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(run, Mapping):
        return dict(run)
    existing = read_summary(run)
    return existing if existing is not None else build_summary(run, write=False)


def _metrics(a: Mapping[str, Any], b: Mapping[str, Any]
             ) -> list[tuple[str, str, tuple[str, ...], Direction]]:
    """(name, kind, path, direction) of every metric compared."""
    out: list[tuple[str, str, tuple[str, ...], Direction]] = [
        ("rate.achieved", "rate", ("rate", "achieved"), "lower_is_worse"),
        ("asr", "ratio", ("asr",), "lower_is_worse"),
        ("failed.rate", "ratio", ("failed", "rate"), "higher_is_worse"),
        ("retransmissions.rate", "ratio", ("retransmissions", "rate"), "higher_is_worse"),
        ("rate.target", "rate", ("rate", "target"), "info"),
        ("calls.attempted", "count", ("calls", "attempted"), "info"),
        ("concurrency.max", "count", ("concurrency", "max"), "info"),
    ]
    marks = list(dict.fromkeys([*(a.get("latency") or {}), *(b.get("latency") or {})]))
    for mark in marks:
        for stat in PERCENTILE_STATS:
            out.append((f"{mark}.{stat}", "latency", ("latency", mark, stat),
                        "higher_is_worse"))
        out.append((f"{mark}.max", "latency", ("latency", mark, "max"), "info"))
    if isinstance(a.get("media"), Mapping) or isinstance(b.get("media"), Mapping):
        out += [
            ("media.loss_rate", "ratio", ("media", "loss_rate"), "higher_is_worse"),
            ("media.jitter_ms.p50", "latency", ("media", "jitter_ms", "p50"),
             "higher_is_worse"),
            ("media.jitter_ms.p95", "latency", ("media", "jitter_ms", "p95"),
             "higher_is_worse"),
            ("media.mos.p5", "score", ("media", "mos", "p5"), "lower_is_worse"),
            ("media.mos.p50", "score", ("media", "mos", "p50"), "lower_is_worse"),
            ("media.streams", "count", ("media", "streams"), "info"),
        ]
    return out


def _judge(va: float | None, vb: float | None, direction: Direction, tolerance: float,
           floor: float) -> tuple[float | None, str]:
    if va is None or vb is None:
        return None, "missing"
    change = (vb - va) / abs(va) if va else None
    if direction == "info":
        return change, "info"
    worse = vb - va if direction == "higher_is_worse" else va - vb
    beyond = abs(vb - va) > tolerance * abs(va) and abs(vb - va) > floor
    if not beyond:
        return change, "same"
    return change, "regression" if worse > 0 else "improvement"


def _count(s: Mapping[str, Any], path: tuple[str, ...]) -> int:
    """The samples behind a percentile: calls that reached the mark, streams that
    received, calls with a MOS."""
    if len(path) == 3 and path[0] == "latency":
        return int(lookup(s, ("latency", path[1], "count")) or 0)
    if path[:2] == ("media", "jitter_ms"):
        return int(lookup(s, ("media", "receiving")) or 0)
    if path[:2] == ("media", "mos"):
        return int(lookup(s, ("media", "mos", "count")) or 0)
    return 0


def compare_runs(a: Path | str | Mapping[str, Any], b: Path | str | Mapping[str, Any],
                 tolerance: float = 0.10, *, floors: Mapping[str, float] | None = None,
                 metrics: Sequence[str] = (), tail_samples: int = TAIL_SAMPLES
                 ) -> dict[str, Any]:
    """Compare run B against baseline run A.

    Args:
        a: the baseline: a run directory (its summary.json, built if missing, without
            writing) or a summary dict.
        b: the candidate, likewise.
        tolerance: the relative change allowed before a move the bad way is a
            regression (0.10 = 10%).
        floors: absolute floors by kind (latency ms, ratio fraction, rate calls/s,
            count), over :data:`FLOORS`.
        metrics: judge only these (e.g. ``answer.p95``, ``asr``); all by default.
        tail_samples: samples needed beyond a percentile for it to be judged.

    Returns:
        ``{"a": ..., "b": ..., "tolerance", "metrics": [{metric, kind, direction, a, b,
        unit, change, status, floor, samples}], "failure_mix": [{reason, a, b, a_rate,
        b_rate}], "regressions": [metric names], "regressed": bool}``; status is one of
        regression, improvement, same, info, missing, too_few_samples.

    Raises:
        CompareError: a metric in ``metrics`` that neither run has.
    """
    sa, sb = _summary_of(a), _summary_of(b)
    floor_of = {**FLOORS, **(floors or {})}
    table = _metrics(sa, sb)
    known = {name for name, *_ in table}
    wanted = {m.replace("p99.9", "p99_9") for m in metrics}
    unknown = sorted(wanted - known)
    if unknown:
        raise CompareError(f"--metric {unknown[0]!r}: neither run has it (known: "
                           f"{', '.join(sorted(known))})")
    rows: list[dict[str, Any]] = []
    for name, kind, path, direction in table:
        va, vb = lookup(sa, path), lookup(sb, path)
        if wanted and name not in wanted and direction != "info":
            direction = "info"
        need = min_samples(path[-1], tail_samples) if kind in ("latency", "score") else 0
        samples = min(_count(sa, path), _count(sb, path)) if need else None
        change, status = _judge(va, vb, direction, tolerance, floor_of[kind])
        if need and status in ("regression", "improvement", "same") and \
                samples is not None and samples < need:
            status = "too_few_samples"
        rows.append({"metric": name, "kind": kind, "unit": UNITS[kind],
                     "direction": direction, "a": va, "b": vb, "change": change,
                     "status": status, "floor": floor_of[kind], "samples": samples,
                     "samples_needed": need or None})
    metrics_out = rows
    mix: list[dict[str, Any]] = []
    ra = (sa.get("failed") or {}).get("by_reason") or {}
    rb = (sb.get("failed") or {}).get("by_reason") or {}
    att_a = lookup(sa, ("calls", "attempted")) or 0.0
    att_b = lookup(sb, ("calls", "attempted")) or 0.0
    for reason in sorted(set(ra) | set(rb)):
        na, nb = int(ra.get(reason, 0)), int(rb.get(reason, 0))
        mix.append({"reason": reason, "a": na, "b": nb,
                    "a_rate": na / att_a if att_a else None,
                    "b_rate": nb / att_b if att_b else None})
    regressions = [m["metric"] for m in metrics_out if m["status"] == "regression"]

    def ident(s: Mapping[str, Any], run: object) -> dict[str, Any]:
        return {"run_dir": str(s.get("run_dir") or ("" if isinstance(run, Mapping) else run)),
                "scenario": s.get("scenario") or {}, "command": s.get("command", ""),
                "started_at": s.get("started_at", "")}

    return {"a": ident(sa, a), "b": ident(sb, b), "tolerance": tolerance,
            "floors": floor_of, "tail_samples": tail_samples, "judged": sorted(wanted),
            "metrics": metrics_out, "failure_mix": mix, "regressions": regressions,
            "regressed": bool(regressions)}


def with_unit(v: Any, kind: str) -> str:
    """A metric's value with its unit: ``12.345 ms``, ``99.500 %``, ``200.0 calls/s``."""
    if v is None:
        return "-"
    if kind == "ratio":
        return f"{float(v) * 100:.3f} %"
    if kind == "count":
        return f"{float(v):,.0f} calls"
    if kind == "rate":
        return f"{float(v):,.2f} calls/s"
    if kind == "score":
        return f"{float(v):.2f} MOS"
    return f"{fmt_ms(float(v), grouped=True)} ms"


def format_comparison(result: Mapping[str, Any]) -> str:
    """A plain-text table of a comparison, for the terminal."""
    floors = result.get("floors") or FLOORS
    lines = [f"A (baseline): {result['a']['run_dir']}",
             f"B (candidate): {result['b']['run_dir']}",
             f"tolerance: {result['tolerance'] * 100:g}%; floors: "
             + ", ".join(f"{k} {with_unit(v, k)}" for k, v in floors.items())
             + f"; a percentile needs {result.get('tail_samples', TAIL_SAMPLES)} samples "
               "beyond it", "",
             f"{'metric':<28} {'A':>18} {'B':>18} {'change':>9}  status"]
    for m in result["metrics"]:
        change = "-" if m["change"] is None else f"{m['change'] * 100:+.1f}%"
        status = m["status"]
        if status == "too_few_samples":
            status += f" ({m['samples']} < {m['samples_needed']})"
        lines.append(f"{m['metric']:<28} {with_unit(m['a'], m['kind']):>18} "
                     f"{with_unit(m['b'], m['kind']):>18} {change:>9}  {status}")
    if result["failure_mix"]:
        lines += ["", f"{'failure reason':<28} {'A':>14} {'B':>14}"]
        for f in result["failure_mix"]:
            lines.append(f"{f['reason']:<28} {f['a']:>14,} {f['b']:>14,}")
    lines += ["", ("REGRESSION: " + ", ".join(result["regressions"])) if result["regressed"]
              else "no regression beyond tolerance"]
    return "\n".join(lines) + "\n"


def write_comparison(result: Mapping[str, Any], out_dir: Path | str) -> tuple[Path, Path]:
    """Write ``compare.json`` and ``compare.html`` (self-contained) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j = out / COMPARE_JSON
    j.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    h = out / COMPARE_HTML
    env = environment()
    env.filters["unit"] = with_unit
    h.write_text(env.get_template("compare.html.j2").render(r=result),
                 encoding="utf-8")
    return j, h
