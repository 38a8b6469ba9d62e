"""Comparing two runs: how rate, ASR, the failure mix and each percentile moved.

Run A is the baseline, run B the candidate.  For each judged metric the change
is ``(B - A) / A``; it is a *regression* when it moves the bad way by more than
the tolerance (relative to A) *and* by more than a small absolute floor
(:data:`FLOORS`: 0.1 ms for latencies, 0.01 percentage points for ratios,
0.01 calls/s for rates), so that noise around zero never counts:

* higher is worse: every mark's p50, p90, p95, p99, p99.9; ``failed.rate``;
  ``retransmissions.rate``;
* lower is worse: ``asr``, ``rate.achieved``.

Maxima, counts and the failure mix are shown but not judged.  A metric that
only one run has is shown as missing, not judged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from sipload.report.html import environment
from sipload.report.summary import build_summary, read_summary
from sipload.report.thresholds import lookup

Direction = Literal["higher_is_worse", "lower_is_worse", "info"]

FLOORS = {"latency": 0.1, "ratio": 0.0001, "rate": 0.01, "count": 0.0}
PERCENTILE_STATS = ("p50", "p90", "p95", "p99", "p99_9")

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
    return out


def _judge(va: float | None, vb: float | None, kind: str, direction: Direction,
           tolerance: float) -> tuple[float | None, str]:
    if va is None or vb is None:
        return None, "missing"
    change = (vb - va) / abs(va) if va else None
    if direction == "info":
        return change, "info"
    worse = vb - va if direction == "higher_is_worse" else va - vb
    beyond = abs(vb - va) > tolerance * abs(va) and abs(vb - va) > FLOORS[kind]
    if not beyond:
        return change, "same"
    return change, "regression" if worse > 0 else "improvement"


def compare_runs(a: Path | str | Mapping[str, Any], b: Path | str | Mapping[str, Any],
                 tolerance: float = 0.10) -> dict[str, Any]:
    """Compare run B against baseline run A.

    Args:
        a: the baseline: a run directory (its summary.json, built if missing, without
            writing) or a summary dict.
        b: the candidate, likewise.
        tolerance: the relative change allowed before a move the bad way is a
            regression (0.10 = 10%).

    Returns:
        ``{"a": ..., "b": ..., "tolerance", "metrics": [{metric, kind, direction, a, b,
        change, status}], "failure_mix": [{reason, a, b, a_rate, b_rate}],
        "regressions": [metric names], "regressed": bool}``; status is one of
        regression, improvement, same, info, missing.
    """
    sa, sb = _summary_of(a), _summary_of(b)
    metrics: list[dict[str, Any]] = []
    for name, kind, path, direction in _metrics(sa, sb):
        va, vb = lookup(sa, path), lookup(sb, path)
        change, status = _judge(va, vb, kind, direction, tolerance)
        metrics.append({"metric": name, "kind": kind, "direction": direction, "a": va,
                        "b": vb, "change": change, "status": status})
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
    regressions = [m["metric"] for m in metrics if m["status"] == "regression"]

    def ident(s: Mapping[str, Any], run: object) -> dict[str, Any]:
        return {"run_dir": str(s.get("run_dir") or ("" if isinstance(run, Mapping) else run)),
                "scenario": s.get("scenario") or {}, "command": s.get("command", ""),
                "started_at": s.get("started_at", "")}

    return {"a": ident(sa, a), "b": ident(sb, b), "tolerance": tolerance,
            "metrics": metrics, "failure_mix": mix, "regressions": regressions,
            "regressed": bool(regressions)}


def format_comparison(result: Mapping[str, Any]) -> str:
    """A plain-text table of a comparison, for the terminal."""
    def num(v: Any, kind: str) -> str:
        if v is None:
            return "-"
        if kind == "ratio":
            return f"{float(v) * 100:.3f}%"
        if kind == "count":
            return f"{float(v):,.0f}"
        return f"{float(v):,.3f}"

    lines = [f"A (baseline): {result['a']['run_dir']}",
             f"B (candidate): {result['b']['run_dir']}",
             f"tolerance: {result['tolerance'] * 100:g}%", "",
             f"{'metric':<28} {'A':>14} {'B':>14} {'change':>9}  status"]
    for m in result["metrics"]:
        change = "-" if m["change"] is None else f"{m['change'] * 100:+.1f}%"
        lines.append(f"{m['metric']:<28} {num(m['a'], m['kind']):>14} "
                     f"{num(m['b'], m['kind']):>14} {change:>9}  {m['status']}")
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
    h.write_text(environment().get_template("compare.html.j2").render(r=result),
                 encoding="utf-8")
    return j, h
