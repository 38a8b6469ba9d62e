"""Thresholds: parsing (units, operators, marks), errors that name the bad part, and
verdicts against a summary."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sipload.report.thresholds import (
    Threshold,
    ThresholdError,
    evaluate,
    parse_threshold,
    parse_thresholds,
)


@pytest.mark.parametrize(("text", "metric", "op", "limit"), [
    ("answer.p95<200ms", "answer.p95", "<", 200.0),
    ("answer.p95 < 0.2s", "answer.p95", "<", 200.0),
    ("answer.p95<200", "answer.p95", "<", 200.0),
    ("pdd.p99.9<=1s", "pdd.p99_9", "<=", 1000.0),
    ("call.p99_9<=1.5s", "call.p99_9", "<=", 1500.0),
    ("bye.max!=0", "bye.max", "!=", 0.0),
    ("first_provisional.mean>1ms", "first_provisional.mean", ">", 1.0),
    ("asr>=0.99", "asr", ">=", 0.99),
    ("asr>=99%", "asr", ">=", 0.99),
    ("failed.rate<0.5%", "failed.rate", "<", 0.005),
    ("retransmissions.rate<1%", "retransmissions.rate", "<", 0.01),
    ("failed.count==0", "failed.count", "==", 0.0),
    ("rate.achieved>=95", "rate.achieved", ">=", 95.0),
    ("calls.succeeded>1000", "calls.succeeded", ">", 1000.0),
    ("calls.lost_with_worker==0", "calls.lost_with_worker", "==", 0.0),
    ("concurrency.max<5000", "concurrency.max", "<", 5000.0),
    ("late.rate<1%", "late.rate", "<", 0.01),
])
def test_parse(text: str, metric: str, op: str, limit: float) -> None:
    t = parse_threshold(text)
    assert (t.metric, t.op) == (metric, op)
    assert t.limit == pytest.approx(limit)
    assert t.text == text.strip()


def test_scenario_marks_are_known_only_when_given() -> None:
    with pytest.raises(ThresholdError, match=re.escape("unknown metric 'setup.p95'")):
        parse_threshold("setup.p95<100ms")
    t = parse_threshold("setup.p95<100ms", marks=["setup"])
    assert t.path == ("latency", "setup", "p95") and t.kind == "latency"
    assert parse_threshold("setup.count>10", marks=["setup"]).kind == "count"
    assert len(parse_thresholds(["setup.p50<1s", "asr>0.5"], marks=("setup",))) == 2


@pytest.mark.parametrize(("text", "names"), [
    ("answr.p95<200ms", "unknown metric 'answr.p95'"),
    ("asr_ratio>=0.9", "unknown metric 'asr_ratio'"),
    ("answer.p42<200ms", "unknown statistic 'p42'"),
    ("answer.p95<200xs", "unit 'xs'"),
    ("answer.p95<20%", "unit '%'"),
    ("asr>=0.99ms", "unit 'ms'"),
    ("asr>=99", "not a fraction"),
    ("failed.count<1%", "unit '%'"),
    ("rate.achieved>100cps", "unit 'cps'"),
    ("asr=0.9", "operator '='"),
    ("asr>=", "missing the number"),
    ("asr>=abc", "missing the number"),
    ("asr", "expected METRIC OP VALUE"),
    ("", "expected METRIC OP VALUE"),
    ("answer.p95=>200", "operator '='"),
])
def test_errors_name_the_bad_part(text: str, names: str) -> None:
    with pytest.raises(ThresholdError, match=re.escape(names)) as e:
        parse_threshold(text)
    assert isinstance(e.value, ValueError)


SUMMARY: dict[str, Any] = {
    "calls": {"attempted": 1000, "succeeded": 990, "failed": 10, "in_flight_at_stop": 0,
              "lost_with_worker": 0},
    "asr": 0.99, "failed": {"count": 10, "rate": 0.01},
    "retransmissions": {"count": 5, "rate": 0.005},
    "rate": {"target": 100.0, "achieved": 99.5, "peak": 101.0},
    "concurrency": {"max": 40, "mean": 20.0},
    "generator": {"late_starts": 0, "late_rate": 0.0},
    "marks": ["first_provisional", "pdd", "answer", "bye", "call", "setup"],
    "latency": {"answer": {"count": 990, "p95": 180.5, "p99": 250.0, "max": 400.0}},
}


def test_evaluate_verdicts_carry_the_measured_value() -> None:
    v = evaluate(["answer.p95<200ms", "answer.p99<200ms", "asr>=0.99", "failed.rate<0.5%",
                  "retransmissions.rate<1%", "rate.achieved>=99"], SUMMARY)
    assert [x.passed for x in v] == [True, False, True, False, True, True]
    assert v[1].measured == 250.0 and "250.000 ms" in v[1].message and "FAILED" in v[1].message
    assert v[3].measured == 0.01 and v[3].limit == 0.005 and "1%" in v[3].message
    assert v[0].unit == "ms" and v[2].unit == "ratio"


def test_missing_data_fails_rather_than_passes() -> None:
    (v,) = evaluate([parse_threshold("setup.p95<100ms", marks=["setup"])], SUMMARY)
    assert not v.passed and v.measured is None and "no data" in v.message
    (v,) = evaluate(["asr>=0.5"], {**SUMMARY, "asr": None})
    assert not v.passed


def test_evaluate_parses_with_the_summary_marks() -> None:
    (v,) = evaluate(["setup.p95<100ms"], SUMMARY)  # setup is in summary["marks"]
    assert v.metric == "setup.p95"
    with pytest.raises(ThresholdError):
        evaluate(["nomark.p95<1ms"], SUMMARY)


def test_equality_is_tolerant_of_float_noise() -> None:
    t = Threshold("x", "asr", "==", 0.1 + 0.2, "ratio", ("asr",))
    (v,) = evaluate([t], {**SUMMARY, "asr": 0.3})
    assert v.passed
