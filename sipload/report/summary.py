"""``summary.json``: a run's figures and verdicts, for people and for CI.

The fields are described in ``summary.schema.json`` beside this module (JSON
Schema 2020-12, shipped in the package); :func:`validate_summary` checks a
summary against it.  The definitions that matter most:

* ``calls.attempted = succeeded + failed + in_flight_at_stop + lost_with_worker``,
  always.  The first three count rows of ``calls.arrows`` by ``result``.
  ``lost_with_worker`` counts the calls a lost worker took with it: for each
  worker, the larger of its rows with result ``lost_with_worker`` and the sum of
  ``calls_lost`` over its ``worker_lost`` events in ``events.jsonl`` (the
  coordinator may write either or both; neither is counted twice).
* ``asr`` (answer-seizure ratio) = ``calls.succeeded / calls.attempted``: the
  calls that ran the scenario to its end (for a UAC call: answered with a 2xx and
  completed), out of all attempted; null when nothing was attempted.
* ``failed.rate`` = failed / attempted; ``retransmissions.rate`` =
  retransmissions / calls with a row (retransmissions per call).
* ``rate.achieved`` = (n - 1) / (last start - first start) over the n calls that
  started; ``rate.target`` is the plan's rate (or, without one, the same formula
  over the intended start times).
* ``complete`` is false (and ``incomplete_reason`` says why) when the run did
  not end as planned: its coordinator started (``coordinator_listening`` in
  ``events.jsonl``) but never wrote ``run_end`` (it was killed or crashed), or
  ``run_end`` says the run could not complete or was aborted.  An incomplete run
  never has ``passed: true``, whatever its thresholds say.
* ``gate`` is the run's own verdict before any threshold, and ``exit_code`` what
  ``sipload run`` and ``sipload report`` exit with: 3 when the run is incomplete
  (it could not complete, or its coordinator died) or no call got any answer (the
  target is unreachable: every call a transport error or a timeout); 1 when it was
  aborted (second Ctrl-C), when failed calls (but those the user aborted) exceed
  the plan's ``allow_failures`` share of attempted calls (0 by default: any failed
  call fails the run, as in SIPp), or when a threshold failed; else 0.  ``passed``
  is ``exit_code == 0``.
* ``retransmissions.count`` counts every retransmission the user agents made (the
  interval snapshots, as the live panel shows); ``retransmissions.in_records`` the
  part that is in the calls' records and ladders.
* ``latency``: each mark counts every call that reached it, whether the call then
  succeeded or failed.
* ``media`` (null when no call carried RTP): streams, packets sent, received,
  expected and lost, ``loss_rate`` (lost / expected packets), per-call jitter and
  MOS percentiles, the far end's view from RTCP; every figure from the calls'
  records (see :mod:`sipload.report.media`).
* ``connections`` (null without TCP/TLS/WS): the mode (``--connections``), client
  connections opened, and for TLS whether certificates were verified (false under
  ``--tls-insecure``: a warning), handshakes, resumed ones, handshake time percentiles
  (stamped at the socket) and TLS failures by reason (see
  :mod:`sipload.report.connections`).
* ``generator.limited`` is true when the generator, not the system under test,
  may have set the pace: late starts > 1% of attempted, or a loop lag above
  100 ms in any snapshot, or a worker with CPU >= 0.95 in >= 20% of its
  snapshots.  ``generator.limited_reasons`` says which.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from sipload.exitcodes import EXIT_CANNOT_RUN, EXIT_FAILED, EXIT_OK
from sipload.report.analysis import Analysis, analyse_path
from sipload.report.connections import connections_summary
from sipload.report.thresholds import Threshold, evaluate, parse_threshold
from sipload.stats.msround import ms

SCHEMA_VERSION = 1
SUMMARY = "summary.json"

LATE_LIMIT = 0.01
"""generator-limited when late starts exceed this fraction of attempted calls"""
LAG_LIMIT_MS = 100.0
"""... or the event loop lagged more than this in any snapshot"""
CPU_BUSY = 0.95
CPU_BUSY_SHARE = 0.20
"""... or a worker's CPU was >= CPU_BUSY in >= CPU_BUSY_SHARE of its snapshots"""

GENERATOR_RULE = (f"limited when late starts > {LATE_LIMIT:.0%} of attempted, or max loop "
                  f"lag > {LAG_LIMIT_MS:g} ms, or a worker's CPU >= {CPU_BUSY:g} in >= "
                  f"{CPU_BUSY_SHARE:.0%} of its intervals")


@lru_cache(maxsize=1)
def summary_schema() -> dict[str, Any]:
    """The JSON Schema of ``summary.json`` (shipped as ``summary.schema.json``)."""
    text = resources.files("sipload.report").joinpath("summary.schema.json").read_text(
        encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_summary(summary: Mapping[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``summary`` fits the schema."""
    import jsonschema  # here: a run never validates its own summary (0.1 s to import)

    jsonschema.validate(dict(summary), summary_schema())


def _ratio(n: float, d: float) -> float | None:
    return n / d if d else None


DEFAULT_ALLOW_FAILURES = 0.0
"""The share of attempted calls that may fail before the run fails (exit 1)."""



def _gate(a: Analysis, attempted: int, failed: int) -> dict[str, Any]:
    """The run's own verdict (see the module docstring)."""
    plan = a.files.plan
    raw = plan.get("allow_failures")
    allow = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) \
        else DEFAULT_ALLOW_FAILURES
    counted = failed - int(a.failures.get("aborted", 0))
    rate = _ratio(counted, attempted)
    complete, why = completeness(a.files.events)
    aborted = any(ev.get("event") == "run_end" and ev.get("aborted") and not ev.get("ended")
                  for ev in a.files.events)
    if aborted:
        verdict, message = "aborted", "the run was aborted (second Ctrl-C): no verdict"
    elif not complete:
        verdict, message = "incomplete", why
    elif attempted == 0:
        verdict, message = "no_answer", "no call was attempted"
    elif a.answered == 0:
        reasons = ", ".join(f"{n} {k}" for k, n in a.failures.items()) or "none failed"
        verdict, message = "no_answer", (f"no call got any answer: the target did not "
                                         f"respond ({reasons})")
    elif rate is not None and rate > allow:
        verdict, message = "failures", (f"{counted} of {attempted} calls failed "
                                        f"({rate:.3%}), more than the {allow:.3%} allowed "
                                        "(--allow-failures)")
    else:
        verdict, message = "passed", (f"{counted} of {attempted} calls failed "
                                      f"({(rate or 0.0):.3%}; {allow:.3%} allowed)")
    return {"allow_failures": allow, "failed": counted, "failed_rate": rate,
            "answered": a.answered, "verdict": verdict, "message": message}


def _generator(a: Analysis, attempted: int) -> dict[str, Any]:
    workers: list[dict[str, Any]] = []
    frame = a.per_worker
    max_lag = 0.0
    if len(frame):
        ids = frame["worker"]
        for worker in sorted(set(ids.tolist())):
            mine = ids == worker
            cpu = frame["cpu"][mine].astype(float)
            lag = frame["loop_lag_ms"][mine].astype(float)
            rss = frame["rss_mib"][mine].astype(float)
            workers.append({
                "worker": int(worker), "intervals": int(mine.sum()),
                "started": int(frame["started"][mine].sum()),
                "late": int(frame["late"][mine].sum()),
                "dropped": int(frame["dropped"][mine].sum()),
                "cpu_mean": float(cpu.mean()), "cpu_max": float(cpu.max()),
                "cpu_busy_share": float((cpu >= CPU_BUSY).mean()),
                "loop_lag_max_ms": ms(float(lag.max())),
                "rss_max_mib": round(float(rss.max()), 1) if bool((rss > 0).any()) else None,
            })
        max_lag = ms(float(frame["loop_lag_ms"].max()))
    late_rate = _ratio(a.late_starts, attempted)
    reasons: list[str] = []
    if late_rate is not None and late_rate > LATE_LIMIT:
        reasons.append(f"{a.late_starts} late starts ({late_rate:.2%} of attempted "
                       f"> {LATE_LIMIT:.0%})")
    if max_lag > LAG_LIMIT_MS:
        reasons.append(f"event loop lag up to {max_lag:.1f} ms (> {LAG_LIMIT_MS:g} ms)")
    for w in workers:
        if w["cpu_busy_share"] >= CPU_BUSY_SHARE:
            reasons.append(f"worker {w['worker']} CPU >= {CPU_BUSY:g} in "
                           f"{w['cpu_busy_share']:.0%} of its intervals")
    return {
        "late_starts": a.late_starts, "late_rate": late_rate, "dropped": a.dropped,
        "lateness_ms": a.lateness_ms, "loop_lag_max_ms": max_lag, "workers": workers,
        "limited": bool(reasons), "limited_reasons": reasons, "rule": GENERATOR_RULE,
    }


def completeness(events: Iterable[Mapping[str, Any]]) -> tuple[bool, str]:
    """(complete, why not) from a run's events (see the module docstring)."""
    started = False
    end: Mapping[str, Any] | None = None
    for ev in events:
        kind = ev.get("event")
        if kind == "coordinator_listening":
            started = True
        elif kind == "run_end":
            end = ev
    if end is None:
        if started:
            return False, ("no run_end in events.jsonl: the coordinator ended without "
                           "finishing the run (killed or crashed)")
        return True, ""
    if end.get("ended"):
        return False, f"the run could not complete: {end.get('ended')}"
    if end.get("aborted"):
        return False, "the run was aborted (second Ctrl-C)"
    return True, ""


def _target(plan: Mapping[str, Any]) -> str:
    """host:port from the plan's target_text, or target as a string or [host, port]."""
    text = plan.get("target_text")
    if isinstance(text, str) and text:
        return text
    target = plan.get("target")
    if isinstance(target, list | tuple) and len(target) == 2:
        host, port = target
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(target or "")


def _target_rate(plan: Mapping[str, Any], a: Analysis) -> float | None:
    rate = plan.get("rate")
    if isinstance(rate, int | float) and not isinstance(rate, bool) and rate > 0:
        return float(rate)
    return a.rate_intended


def summary_from_analysis(a: Analysis, *, thresholds: Iterable[str | Threshold] = (),
                          command: str = "") -> dict[str, Any]:
    """The summary dict of an analysed run (see the module docstring and the schema)."""
    plan = a.files.plan
    r = a.results
    calls = {"attempted": 0, "succeeded": r["success"], "failed": r["failed"],
             "in_flight_at_stop": r["in_flight_at_stop"],
             "lost_with_worker": a.lost_with_worker}
    calls["attempted"] = sum(v for k, v in calls.items() if k != "attempted")
    attempted = calls["attempted"]
    rows = r["success"] + r["failed"] + r["in_flight_at_stop"] + r["lost_with_worker"]
    peak = (float(a.per_second["started"].max()) if len(a.per_second) else None)
    scenario = plan.get("scenario")
    scenario = dict(scenario) if isinstance(scenario, dict) else {}
    for key in ("name", "path", "digest"):
        flat = plan.get(f"scenario_{key}")
        if key not in scenario and isinstance(flat, str):
            scenario[key] = flat
    versions = plan.get("versions")
    if not isinstance(versions, dict):
        versions = {"sipload": str(plan["version"])} if plan.get("version") else {}
    cmd = command or plan.get("command") or ""
    if isinstance(cmd, list):
        cmd = " ".join(str(c) for c in cmd)
    summary: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_dir": str(a.files.path),
        "command": str(cmd),
        "versions": dict(versions),
        "scenario": {k: str(v) for k, v in scenario.items() if isinstance(v, str | int)},
        "target": _target(plan),
        "started_at": str(plan.get("started_at") or ""),
        "duration_s": a.duration,
        "workers": len({int(w["worker"]) for w in a.files.intervals
                        if isinstance(w.get("worker"), int)}) or None,
        "calls": calls,
        "asr": _ratio(calls["succeeded"], attempted),
        "failed": {"count": calls["failed"], "rate": _ratio(calls["failed"], attempted),
                   "by_reason": a.failures, "by_step": a.failed_steps},
        "rate": {"target": _target_rate(plan, a), "achieved": a.rate_achieved,
                 "peak": peak},
        "concurrency": {"max": a.concurrency_max, "mean": a.concurrency_mean},
        "retransmissions": {"count": a.retransmissions,
                            "rate": _ratio(a.retransmissions, rows),
                            "calls_with": a.calls_with_retransmissions,
                            "in_records": a.retransmissions_in_records},
        "codes": a.codes,
        "responses": a.responses,
        "marks": a.marks,
        "latency": a.latency.summary(),
        "media": a.media.summary,
        "connections": connections_summary(a.files.intervals, plan),
        **({"servers": a.servers, "failovers": {"count": a.failovers,
                                                 "calls_with": a.calls_failed_over}}
           if a.servers else {}),
        **({"sources": a.sources} if a.sources else {}),
        "generator": _generator(a, attempted),
        "thresholds": [],
        "gate": _gate(a, attempted, calls["failed"]),
        "exit_code": EXIT_OK,
        "passed": True,
        "complete": True,
        "incomplete_reason": "",
    }
    summary["complete"], summary["incomplete_reason"] = completeness(a.files.events)
    summary["latency"] = {m: {k: (int(v) if k == "count" else v) for k, v in row.items()}
                          for m, row in summary["latency"].items()}
    texts: list[str | Threshold] = [*thresholds]
    plan_thresholds = plan.get("thresholds")
    if isinstance(plan_thresholds, list):
        have = {t.text if isinstance(t, Threshold) else t.strip() for t in texts}
        texts += [str(t) for t in plan_thresholds if str(t).strip() not in have]
    parsed = [t if isinstance(t, Threshold) else parse_threshold(t, a.marks) for t in texts]
    verdicts = evaluate(parsed, summary)
    summary["thresholds"] = [v.to_dict() for v in verdicts]
    verdict = summary["gate"]["verdict"]
    if verdict in ("no_answer", "incomplete"):
        summary["exit_code"] = EXIT_CANNOT_RUN
    elif verdict in ("failures", "aborted") or not all(v.passed for v in verdicts):
        summary["exit_code"] = EXIT_FAILED
    summary["passed"] = summary["exit_code"] == EXIT_OK
    result: dict[str, Any] = _finite(summary)
    return result


def _finite(value: Any) -> Any:
    """The same structure with NaN and infinities as null (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def build_summary(path: Path | str, *, thresholds: Sequence[str | Threshold] = (),
                  command: str = "", write: bool = True) -> dict[str, Any]:
    """Measure a run directory and write its ``summary.json``.

    Args:
        path: the run directory.
        thresholds: threshold texts (``answer.p95<200ms``) or parsed thresholds;
            the plan's ``thresholds`` (the scenario's list) are added to them.
        command: the exact command line; defaults to the plan's ``command``.
        write: write ``summary.json`` into the run directory (compare does not).

    Returns:
        The summary dict, valid against ``summary.schema.json``.

    Raises:
        RunDirError: ``path`` is not a run directory.
        ThresholdError: a threshold does not parse.
    """
    summary = summary_from_analysis(analyse_path(path), thresholds=thresholds,
                                    command=command)
    if write:
        out = Path(path) / SUMMARY
        tmp = out.with_name(SUMMARY + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        tmp.replace(out)
    return summary


def read_summary(path: Path | str) -> dict[str, Any] | None:
    """A run directory's ``summary.json``, or None when missing or unreadable."""
    try:
        data = json.loads((Path(path) / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
