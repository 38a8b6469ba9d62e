"""bench/common.capacity_verdict: issue 13's target 4 judged on what the rate searches
showed (each search bounds a capacity to [highest held, lowest failed))."""

from __future__ import annotations

import math

import pytest

from bench.common import capacity_verdict


def search(held: float, failed: float | None) -> dict[str, object]:
    return {"max_rate": held, "first_failing": failed, "steps": []}


def test_resolved_searches_within_ten_percent_meet_the_target() -> None:
    v = capacity_verdict(search(2000, 2125), search(2000, 2125))
    assert v["verdict"] == "met"
    assert v["ratio"] == 1.0
    assert v["ratio_low"] == pytest.approx(2000 / 2125)
    assert v["ratio_high"] == pytest.approx(2125 / 2000)


def test_a_point_ratio_of_one_from_unresolved_searches_is_undecided() -> None:
    # This VM, 2026-12-07, run 3: both held 2,000 calls/s and failed 3,000; either
    # capacity may lie anywhere in between
    v = capacity_verdict(search(2000, 3000), search(2000, 3000))
    assert v["ratio"] == 1.0
    assert v["verdict"] == "undecided"
    assert v["ratio_low"] == pytest.approx(2 / 3)
    assert v["ratio_high"] == pytest.approx(1.5)


def test_sipload_failing_below_what_sipp_held_misses() -> None:
    # run 2: sipload held 1,188 and failed 1,250; SIPp held 2,000
    v = capacity_verdict(search(1188, 1250), search(2000, 3000))
    assert v["verdict"] == "missed"
    assert v["ratio_high"] == pytest.approx(1250 / 2000)


def test_a_search_that_never_failed_is_bounded_below_only() -> None:
    v = capacity_verdict(search(4000, None), search(2000, 2100))
    assert v["ratio_high"] is None
    assert v["verdict"] == "met"
    v = capacity_verdict(search(1000, 1100), search(2000, None))
    assert v["ratio_low"] == 0.0
    assert v["verdict"] == "missed"


def test_nothing_held_is_no_ratio() -> None:
    v = capacity_verdict(search(0, 250), search(0, 250))
    assert v["ratio"] is None
    assert v["verdict"] == "undecided"
    assert not math.isnan(v["ratio_low"])
