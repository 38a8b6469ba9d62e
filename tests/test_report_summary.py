"""summary.json from run directories written with RunWriter: accounting, ratios, rates,
concurrency, percentiles from merged HdrHistograms, generator health, the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sipload.report import (
    RunDirError,
    build_summary,
    load_run,
    validate_summary,
    write_report,
)
from sipload.report.analysis import analyse_path
from sipload.report.synthetic import Truth, make_run
from sipload.stats.histograms import MarkHistograms
from sipload.stats.rundir import RunWriter

STATS = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99_9": 99.9}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Truth]:
    path = tmp_path_factory.mktemp("run") / "r"
    truth = make_run(path, calls=3000, rate=300.0, workers=3, in_flight=4, lost={2: 6},
                     failures={"timeout": 0.02, "call_rejected": 0.01, "check_failed": 0.005},
                     thresholds=["answer.p95<500ms"])
    return path, truth


@pytest.fixture(scope="module")
def summary(run: tuple[Path, Truth]) -> dict[str, Any]:
    return build_summary(run[0], thresholds=["asr>=0.5"], command="sipload run x.yaml")


def test_accounting_identity_and_counts(summary: dict[str, Any], run: tuple[Path, Truth]
                                        ) -> None:
    truth = run[1]
    c = summary["calls"]
    assert c["attempted"] == (c["succeeded"] + c["failed"] + c["in_flight_at_stop"]
                              + c["lost_with_worker"])
    assert c == {"attempted": truth.calls + 6, "succeeded": truth.succeeded,
                 "failed": truth.failed, "in_flight_at_stop": 4, "lost_with_worker": 6}
    assert all(isinstance(v, int) for v in c.values())
    assert summary["failed"]["by_reason"] == {k: v for k, v in truth.failures.items() if v}
    assert summary["failed"]["count"] == truth.failed
    assert summary["failed"]["rate"] == pytest.approx(truth.failed / c["attempted"])
    assert summary["asr"] == pytest.approx(truth.succeeded / c["attempted"])
    assert summary["retransmissions"]["count"] == truth.retransmissions
    assert summary["retransmissions"]["rate"] == pytest.approx(truth.retransmissions / 3000)


def test_schema_valid_and_written(summary: dict[str, Any], run: tuple[Path, Truth]) -> None:
    validate_summary(summary)
    on_disk = json.loads((run[0] / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert summary["command"] == "sipload run x.yaml"
    assert summary["scenario"]["digest"] == "0" * 64
    assert summary["versions"]["sipload"] == "0.1.0"


def test_percentiles_match_the_known_distribution(summary: dict[str, Any],
                                                  run: tuple[Path, Truth]) -> None:
    truth = run[1]
    for mark in ("first_provisional", "pdd", "answer", "bye", "call", "setup"):
        row = summary["latency"][mark]
        us = np.sort((truth.marks[mark] * 1_000_000).astype(np.int64))
        assert row["count"] == len(us)
        for stat, p in STATS.items():
            rank = max(int(p * len(us) / 100 + 0.5), 1)
            exact_ms = us[rank - 1] / 1000.0
            # HdrHistogram with 3 significant digits: within 0.1% (+ 1 µs of rounding)
            assert row[stat] == pytest.approx(exact_ms, rel=2e-3, abs=0.002), (mark, stat)
        assert row["max"] == pytest.approx(us[-1] / 1000.0, rel=2e-3)
        assert row["p50"] <= row["p90"] <= row["p95"] <= row["p99"] <= row["p99_9"]


def test_percentiles_equal_one_histogram_of_every_value(summary: dict[str, Any],
                                                        run: tuple[Path, Truth]) -> None:
    """Merging per-worker, per-second histograms loses nothing."""
    one = MarkHistograms()
    for v in run[1].marks["answer"]:
        one.record("answer", float(v))
    assert summary["latency"]["answer"] == pytest.approx(
        {k: v for k, v in one.summary()["answer"].items()})


def test_rates_codes_responses(summary: dict[str, Any]) -> None:
    assert summary["rate"]["target"] == 300.0
    assert summary["rate"]["achieved"] == pytest.approx(300.0, rel=0.01)
    assert summary["codes"]["100"] == 3000
    inv = summary["responses"]["received"]["INVITE"]
    assert inv["180"] == 3000 and inv["486"] == summary["failed"]["by_reason"]["call_rejected"]
    assert summary["responses"]["received"]["BYE"]["200"] == summary["calls"]["succeeded"]
    assert summary["failed"]["by_step"] == {"3": summary["failed"]["count"]}
    assert "setup" in summary["marks"] and "answer" in summary["marks"]


def test_thresholds_from_options_and_plan(summary: dict[str, Any]) -> None:
    verdicts = {v["threshold"]: v for v in summary["thresholds"]}
    assert set(verdicts) == {"asr>=0.5", "answer.p95<500ms"}
    assert all(v["passed"] for v in verdicts.values())
    assert verdicts["answer.p95<500ms"]["measured"] == summary["latency"]["answer"]["p95"]
    # every threshold met, but 3.5% of the calls failed and none may by default
    gate = summary["gate"]
    assert gate["verdict"] == "failures" and gate["allow_failures"] == 0.0
    assert gate["failed"] == summary["calls"]["failed"]
    assert (summary["exit_code"], summary["passed"]) == (1, False)


def test_the_run_gate_allows_what_the_plan_allows(run: tuple[Path, Truth],
                                                  tmp_path: Path) -> None:
    import shutil

    path = tmp_path / "allowed"
    shutil.copytree(run[0], path)
    plan = json.loads((path / "plan.json").read_text())
    failed_rate = build_summary(path, write=False)["failed"]["rate"]
    for allow, code in ((failed_rate + 0.001, 0), (failed_rate - 0.001, 1)):
        plan["allow_failures"] = allow
        (path / "plan.json").write_text(json.dumps(plan))
        summary = build_summary(path, write=False)
        validate_summary(summary)
        assert summary["exit_code"] == code
        assert summary["passed"] is (code == 0)
        assert summary["gate"]["verdict"] == ("passed" if code == 0 else "failures")


def test_generator_health(summary: dict[str, Any], tmp_path: Path) -> None:
    g = summary["generator"]
    assert g["limited"] is False and g["limited_reasons"] == []
    assert len(g["workers"]) == 3 and g["loop_lag_max_ms"] == 2.0
    busy = build_summary(make_run_small(tmp_path / "cpu", cpu=0.97))
    assert busy["generator"]["limited"] is True
    assert any("worker 0 CPU" in r for r in busy["generator"]["limited_reasons"])
    lag = build_summary(make_run_small(tmp_path / "lag", loop_lag_ms=150.0))
    assert lag["generator"]["limited"] is True
    assert any("loop lag up to 150.0 ms" in r for r in lag["generator"]["limited_reasons"])


def test_each_workers_largest_memory(tmp_path: Path) -> None:
    """A worker's snapshots carry its RSS (``rss_mib``); the summary keeps each worker's
    largest, and None for a run whose snapshots have none (older, or not Linux)."""
    path = make_run_small(tmp_path / "run")
    g = build_summary(path)["generator"]
    assert [w["rss_max_mib"] for w in g["workers"]] == [None, None]
    intervals = path / "intervals.jsonl"
    snaps = [json.loads(x) for x in intervals.read_text().splitlines()]
    for i, s in enumerate(snaps):
        s["rss_mib"] = 40.0 + i + 100.0 * s["worker"]
    intervals.write_text("".join(json.dumps(s) + "\n" for s in snaps))
    g = build_summary(path)["generator"]
    mine = [[s["rss_mib"] for s in snaps if s["worker"] == w] for w in (0, 1)]
    assert [w["rss_max_mib"] for w in g["workers"]] == [max(mine[0]), max(mine[1])]


def make_run_small(path: Path, **kw: Any) -> Path:
    make_run(path, calls=200, rate=100.0, workers=2, **kw)
    return path


def _row(n: int, start: float, end: float, result: str = "success", worker: int = 0,
         **kw: Any) -> dict[str, Any]:
    return {"call_number": n, "intended_start": start, "actual_start": start, "end": end,
            "result": result, "failure": kw.get("failure", ""), "detail": "", "step": -1,
            "codes": [], "messages": [], "retransmissions": 0, "marks": {},
            "worker": worker, "call_id": f"{n}@x"}


def test_concurrency_rate_and_lost_rules(tmp_path: Path) -> None:
    w = RunWriter(tmp_path)
    w.write_json("plan.json", {"command": ["sipload", "run", "x.yaml"]})
    w.append_records([_row(0, 0.0, 10.0), _row(1, 5.0, 15.0), _row(2, 10.0, 20.0),
                      _row(3, 12.0, 12.0, "lost_with_worker", worker=1),
                      _row(4, 12.0, 12.0, "lost_with_worker", worker=1),
                      _row(5, 12.0, 12.0, "lost_with_worker", worker=2)])
    w.append_event({"event": "worker_joined", "worker": 1})
    w.append_event({"event": "worker_lost", "worker": 1, "calls_lost": 5})
    w.close()
    s = build_summary(tmp_path)
    validate_summary(s)
    # worker 1: max(2 rows, 5 from events); worker 2: 1 row, no event
    assert s["calls"]["lost_with_worker"] == 6
    assert s["calls"]["attempted"] == 3 + 6
    assert s["concurrency"] == {"max": 2, "mean": pytest.approx(30.0 / 20.0)}
    assert s["rate"]["achieved"] == pytest.approx(2 / 10.0)
    assert s["command"] == "sipload run x.yaml"
    assert s["latency"] == {} and s["workers"] is None


def test_empty_and_missing_runs(tmp_path: Path) -> None:
    (tmp_path / "plan.json").write_text("{}")
    s = build_summary(tmp_path)
    validate_summary(s)
    assert s["calls"]["attempted"] == 0 and s["asr"] is None
    page = write_report(tmp_path).read_text()
    assert "No interval snapshots" in page and "No failed calls" in page
    with pytest.raises(RunDirError):
        build_summary(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError):
        build_summary(tmp_path / "empty")


def test_load_run_frames(run: tuple[Path, Truth]) -> None:
    data = load_run(run[0])
    assert len(data.calls) == 3000
    calls = data.calls
    assert {"call_number", "result", "codes", "mark_ms.answer"} <= set(calls.columns)
    assert not {"marks", "messages"} & set(calls.columns)  # no JSON text in a cell
    assert calls["mark_ms.answer"].dtype == "float64"
    assert all(isinstance(c, int) for c in calls["codes"].iloc[0])
    # marks in ms like the summary: the median of the rows is the summary's p50
    summary = build_summary(run[0], write=False)
    assert calls["mark_ms.answer"].median() == pytest.approx(
        summary["latency"]["answer"]["p50"], rel=0.01)
    msgs = data.messages
    assert list(msgs.columns) == ["call_number", "t", "direction", "label"]
    first = msgs[msgs["call_number"] == 0]
    assert first.iloc[0]["label"] == "INVITE" and first.iloc[0]["direction"] == "out"
    assert len(data.intervals) == len({(r, w) for r, w in zip(
        data.intervals["t"], data.intervals["worker"], strict=True)})
    assert data.intervals["started"].sum() == 3000
    assert data.plan["rate"] == 300.0 and data.events[0]["event"] == "worker_lost"
    assert "answer" in data.marks.columns
    assert data.marks["answer"].equals(calls.set_index("call_number")["mark_ms.answer"]
                                       .rename("answer"))


def test_analysis_is_cached_until_files_change(run: tuple[Path, Truth], tmp_path: Path
                                               ) -> None:
    path = tmp_path / "c"
    make_run_small(path)
    a = analyse_path(path)
    assert analyse_path(path) is a
    with (path / "events.jsonl").open("a") as f:
        f.write(json.dumps({"event": "worker_lost", "worker": 0, "calls_lost": 1}) + "\n")
    b = analyse_path(path)
    assert b is not a and b.lost_with_worker == 1


def test_plan_as_the_coordinator_writes_it(tmp_path: Path) -> None:
    w = RunWriter(tmp_path)
    w.write_json("plan.json", {
        "version": "0.1.0", "command": "sipload run basic_call.yaml --rate 50",
        "scenario_path": "/s/basic_call.yaml", "scenario_name": "basic-call",
        "scenario_digest": "ab" * 32, "marks": ["ringback"], "target": ["127.0.0.1", 5080],
        "rate": 50.0, "thresholds": ["ringback.p95<1s"]})
    w.append_records([_row(0, 0.0, 1.0), _row(1, 0.02, 1.0)])
    w.append_event({"t": 2.0, "event": "run_end", "lost_with_worker": 3})
    w.close()
    s = build_summary(tmp_path)
    validate_summary(s)
    assert s["target"] == "127.0.0.1:5080" and s["versions"] == {"sipload": "0.1.0"}
    assert s["scenario"] == {"name": "basic-call", "path": "/s/basic_call.yaml",
                             "digest": "ab" * 32}
    assert "ringback" in s["marks"]
    assert s["calls"]["lost_with_worker"] == 3 and s["calls"]["attempted"] == 5
    (v,) = s["thresholds"]
    assert v["metric"] == "ringback.p95" and not v["passed"] and v["measured"] is None


def test_totals_equal_markhistograms_decode_and_merge(run: tuple[Path, Truth]) -> None:
    merged = MarkHistograms()
    for snap in json.loads("[" + ",".join(
            (run[0] / "intervals.jsonl").read_text().splitlines()) + "]"):
        merged.merge(MarkHistograms.decode(snap["histograms"]))
    a = analyse_path(run[0])
    assert a.latency.summary() == merged.summary()
    for mark, h in merged.by_mark.items():
        mine = a.latency.total.by_mark[mark]
        assert mine.get_total_count() == h.get_total_count()
        assert (mine.get_min_value(), mine.get_max_value()) == (h.get_min_value(),
                                                                h.get_max_value())
