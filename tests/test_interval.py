"""The run counters (stats/interval.py) and admission (pacing.Admission), on a fake clock.

Both are pure: the accountant is fed starts, ends, CPU seconds and monotonic stamps;
admission is fed ``now``.  Nothing here sleeps or opens a socket.
"""

from __future__ import annotations

import random

import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given
from hypothesis import strategies as st

from sipload.pacing import LEAD_ERROR_MAX, LEAD_GAIN, LEAD_MAX, Admission, Pacer
from sipload.stats.histograms import (
    HIGHEST_US,
    LOWEST_US,
    PERCENTILES,
    MarkHistograms,
    encode_histogram,
    figures,
    new_histogram,
    record_us,
)
from sipload.stats.interval import LATE_AFTER, IntervalAccountant, Snapshot
from sipload.stats.records import CallRecord, Failure, Result


def record(number: int, result: Result, failure: str = "", **marks: float) -> CallRecord:
    rec = CallRecord(number, 0.0, 0.0, 0.0)
    rec.result = result
    rec.failure = failure
    rec.marks.update(marks)
    return rec


# ================================================================ the histograms


@given(st.lists(st.integers(1, 40_000_000), min_size=1, max_size=300), st.integers(0, 3))
def test_one_pass_figures_are_hdrhs_own(values: list[int], parts: int) -> None:
    """figures() gives hdrh's mean and percentiles (merged histograms too)."""
    h = new_histogram()
    for i in range(parts + 1):
        part = new_histogram()
        for v in values[i::parts + 1]:
            part.record_value(v)
        h.add(part)
    mean, at = figures(h, PERCENTILES)
    assert mean == h.get_mean_value()
    assert at == [h.get_value_at_percentile(p) for p in PERCENTILES]


def test_summary_of_some_marks_only() -> None:
    hist = MarkHistograms()
    hist.record("answer", 0.010)
    hist.record("bye", 0.020)
    assert set(hist.summary(("answer", "call"))) == {"answer"}
    assert set(hist.summary()) == {"answer", "bye"}


# ================================================================ the accountant


def test_interval_counts_reset_and_totals_do_not() -> None:
    acc = IntervalAccountant(3, cpu=10.0, wall=100.0)
    acc.call_started(1.0, 1.0)
    acc.call_started(2.0, 2.0 + LATE_AFTER + 0.001)  # late
    acc.call_started(3.0, 3.0 + LATE_AFTER)  # exactly LATE_AFTER: on time
    acc.call_ended(record(0, Result.SUCCESS, answer=0.010))
    acc.call_ended(record(1, Result.FAILED, "timeout", answer=0.020))
    snap = acc.snapshot(4.0, active=1, retransmissions=7, cpu=10.5, wall=101.0,
                        loop_lag=0.002, target_rate=3.0, codes={"200": 1})
    assert (snap.started, snap.succeeded, snap.failed, snap.late) == (3, 1, 1, 1)
    assert snap.worker == 3 and snap.active == 1 and snap.retransmissions == 7
    assert snap.failures == {"timeout": 1} and snap.codes == {"200": 1}
    assert snap.cpu == 0.5 and snap.loop_lag_ms == 2.0 and snap.target_rate == 3.0
    hist = MarkHistograms.decode(snap.histograms)
    assert set(hist.by_mark) == {"answer"} and hist.by_mark["answer"].get_total_count() == 2
    assert [r["call_number"] for r in acc.take_batch()] == [0, 1]
    assert acc.take_batch() == []
    # the next interval starts from zero; the totals keep counting
    acc.call_ended(record(2, Result.IN_FLIGHT))
    snap2 = acc.snapshot(5.0, active=0, retransmissions=9, cpu=11.5, wall=103.0,
                         loop_lag=0.0, target_rate=0.0, codes={})
    assert (snap2.started, snap2.succeeded, snap2.failed, snap2.late) == (0, 0, 0, 0)
    assert snap2.retransmissions == 2 and snap2.cpu == 0.5 and snap2.histograms == {}
    assert snap2.failures == {}
    assert (acc.started, acc.succeeded, acc.failed, acc.in_flight_at_stop, acc.late) == (
        3, 1, 1, 1, 1)


def test_a_snapshot_in_pieces_is_the_snapshot_in_one_go() -> None:
    """close() then encode_piece() one histogram a call: the same snapshot as snapshot();
    the next interval records into the other set meanwhile, and no histogram is made
    anew once both sets hold every mark (rule 7)."""
    whole, pieces = IntervalAccountant(0), IntervalAccountant(0)

    def close(acc: IntervalAccountant, t: float) -> Snapshot:
        return acc.close(t, active=0, retransmissions=0, cpu=0.0, wall=t, loop_lag=0.0,
                         target_rate=1.0, codes={})

    made: set[int] = set()
    for second in range(4):
        for acc in (whole, pieces):
            for i in range(5):
                acc.call_ended(record(i, Result.SUCCESS, answer=0.001 * (i + second),
                                      bye=0.002 * i, call=0.003 + i / 100))
        one = whole.snapshot(float(second), active=0, retransmissions=0, cpu=0.0,
                             wall=float(second), loop_lag=0.0, target_rate=1.0, codes={})
        snap = close(pieces, float(second))
        assert snap.histograms == {} and pieces.encoding
        with pytest.raises(RuntimeError):
            close(pieces, 9.0)
        pieces.call_ended(record(9, Result.SUCCESS, answer=5.0))  # the next interval's
        steps = 1
        while not pieces.encode_piece(snap):
            steps += 1
        assert steps == 3 and not pieces.encoding
        late = close(pieces, second + 0.5)
        while not pieces.encode_piece(late):
            pass
        assert list(late.histograms) == ["answer"]
        assert snap.to_dict() == one.to_dict()
        current = {id(h) for m in (pieces._hist, pieces._spare) if m is not None
                   for h in m.by_mark.values()}
        if second >= 2:
            assert current == made, "a histogram was made anew"
        made = current


def test_overload_is_started_dropped_and_failed() -> None:
    acc = IntervalAccountant(0)
    acc.call_started(0.5, 0.5)
    rec = acc.overload(42, 0.5, 0.5, 10)
    assert rec.result == Result.FAILED and rec.failure == Failure.OVERLOAD
    assert "10 calls" in rec.detail
    acc.call_ended(rec)
    snap = acc.snapshot(1.0, active=0, retransmissions=0, cpu=0.0, wall=1.0, loop_lag=0.0,
                        target_rate=1.0, codes={})
    assert (snap.started, snap.dropped, snap.failed) == (1, 1, 1)
    assert snap.failures == {Failure.OVERLOAD: 1}
    assert acc.dropped == 1 and acc.failed == 1


def test_owes_a_last_snapshot() -> None:
    acc = IntervalAccountant(0)
    assert not acc.owes(0)
    assert acc.owes(1)  # a retransmission since the last snapshot
    acc.snapshot(1.0, active=0, retransmissions=1, cpu=0.0, wall=1.0, loop_lag=0.0,
                 target_rate=0.0, codes={})
    assert not acc.owes(1)
    acc.call_started(1.0, 1.0)
    assert acc.owes(1)


@given(st.lists(st.sampled_from([Result.SUCCESS, Result.FAILED, Result.IN_FLIGHT]),
                max_size=60), st.integers(1, 7))
def test_counts_add_up_over_any_intervals(results: list[Result], every: int) -> None:
    acc = IntervalAccountant(0)
    started = succeeded = failed = 0
    for i, res in enumerate(results):
        acc.call_started(float(i), float(i))
        acc.call_ended(record(i, res, "x" if res == Result.FAILED else ""))
        if i % every == 0:
            snap = acc.snapshot(float(i), active=0, retransmissions=0, cpu=0.0,
                                wall=float(i), loop_lag=0.0, target_rate=1.0, codes={})
            started += snap.started
            succeeded += snap.succeeded
            failed += snap.failed
    last = acc.snapshot(99.0, active=0, retransmissions=0, cpu=0.0, wall=99.0,
                        loop_lag=0.0, target_rate=0.0, codes={})
    started += last.started
    succeeded += last.succeeded
    failed += last.failed
    assert started == acc.started == len(results)
    assert succeeded == acc.succeeded and failed == acc.failed
    assert acc.started == acc.succeeded + acc.failed + acc.in_flight_at_stop


# ================================================================ admission


def test_admission_releases_at_intended_less_the_lead() -> None:
    adm = Admission(Pacer(10.0, calls=3), first_call=100)
    assert adm.next_release() == 0.0
    start = adm.take(0.0)
    assert start is not None and (start.intended, start.number, start.user) == (0.0, 100, None)
    assert adm.take(0.05) is None  # the next is due at 0.1
    adm.follow_wire(0.0, 0.00005)  # ready 0.05 ms late: release a fifth of that earlier
    assert adm.lead == pytest.approx(0.00001)
    assert adm.next_release() == 0.1 - adm.lead
    assert adm.take(0.1 - adm.lead) is not None
    lead = adm.lead
    adm.follow_wire(0.1, 0.13)  # 30 ms late (a stall): counts as LEAD_ERROR_MAX only
    assert adm.lead == pytest.approx(lead + LEAD_GAIN * LEAD_ERROR_MAX)
    for _ in range(100):  # late again and again: the lead is capped
        adm.follow_wire(0.1, 0.2)
    assert adm.lead == LEAD_MAX
    for _ in range(100):  # early: never a negative lead
        adm.follow_wire(0.1, 0.0)
    assert adm.lead == 0.0
    assert adm.take(1.0) is not None and adm.take(2.0) is None and adm.next_release() is None


def test_admission_closed_model_waits_for_a_free_user() -> None:
    adm = Admission(Pacer(100.0, calls=5), users=2, first_user=7)
    a, b = adm.take(1.0), adm.take(1.0)
    assert a is not None and b is not None and (a.user, b.user) == (7, 8)
    assert adm.take(1.0) is None and adm.next_release() is None
    adm.ended(a.number)
    c = adm.take(1.0)
    assert c is not None and c.user == 7
    adm.stopping = True
    adm.ended(b.number)  # stopping: the user is not handed out again
    assert adm.take(9.0) is None and adm.next_release() is None and not adm.scheduling()


def test_admission_numbers_and_gives_calls_away() -> None:
    adm = Admission(Pacer(1000.0, calls=4), first_call=10)
    assert adm.release_calls(3) == 3 and adm.pacer.calls == 1
    adm.add_calls(2, 500)
    numbers = []
    while (s := adm.take(100.0)) is not None:
        numbers.append(s.number)
    assert numbers == [10, 500, 501]
    assert adm.release_calls(5) == 0


def test_admission_poisson_takes_the_pacers_times() -> None:
    adm = Admission(Pacer(50.0, calls=20, arrival="poisson", rng=random.Random(1)))
    ref = Pacer(50.0, calls=20, arrival="poisson", rng=random.Random(1))
    got = []
    while (s := adm.take(1e9)) is not None:
        got.append(s.intended)
    want = []
    while ref.peek() is not None:
        want.append(ref.take())
    assert got == want


@given(st.lists(st.sampled_from(["take", "peek_after", "set_rate"]), max_size=40),
       st.sampled_from(["uniform", "poisson"]), st.sampled_from([None, 0.3]))
def test_peeking_the_start_after_next_keeps_the_schedule(
        ops: list[str], arrival: str, duration: float | None) -> None:
    """peek_after() gives the start the next take() after this one returns, and peeking
    changes no start (set_rate included: both drawn starts are rescaled)."""
    def pacer() -> Pacer:
        return Pacer(50.0, calls=None if duration else 12, duration=duration,
                     arrival=arrival, rng=random.Random(3))
    peeked, plain = pacer(), pacer()
    got: list[float] = []
    want: list[float] = []
    now = 0.0
    for op in ops:
        if op == "set_rate":
            now += 0.001
            peeked.set_rate(80.0, now)
            plain.set_rate(80.0, now)
        elif op == "peek_after":
            after = peeked.peek_after()
            if peeked.peek() is not None:
                peeked.take()
                got.append(peeked.peek() if peeked.peek() is not None else -1.0)
                assert after == (peeked.peek() if peeked.peek() is not None else None)
            if plain.peek() is not None:
                plain.take()
                want.append(plain.peek() if plain.peek() is not None else -1.0)
        elif peeked.peek() is not None:
            got.append(peeked.take())
            want.append(plain.take())
    assert got == pytest.approx(want, abs=1e-12)


def test_record_us_files_values_as_hdrh_does() -> None:
    """MarkHistograms records through record_us (one function for hdrh's four): every
    bucket edge and random values land in the same buckets, with the same count,
    min, max and encoding as HdrHistogram.record_value gives."""
    rng = random.Random(7)
    values = [LOWEST_US, HIGHEST_US, 2, 3, 1023, 1024, 2047, 2048, 2049]
    values += [(1 << k) + d for k in range(1, 31) for d in (-1, 0, 1)]
    values += [rng.randint(LOWEST_US, HIGHEST_US) for _ in range(3000)]
    values += [rng.randint(1, 100_000) for _ in range(3000)]
    ours, theirs = new_histogram(), new_histogram()
    for v in values:
        record_us(ours, v)
        theirs.record_value(v)
    assert list(ours.counts) == list(theirs.counts)
    assert (ours.total_count, ours.min_value, ours.max_value) == (
        theirs.total_count, theirs.min_value, theirs.max_value)
    assert encode_histogram(ours) == encode_histogram(theirs)


@given(st.lists(st.lists(st.floats(min_value=-1.0, max_value=5000.0, allow_nan=False),
                         max_size=40), min_size=1, max_size=4))
def test_mark_histograms_hold_what_hdrh_records(rounds: list[list[float]]) -> None:
    """MarkHistograms.record keeps counts per bucket and hands them to the histograms
    when they are read: whatever the reads and resets between records, each mark's
    histogram is the one hdrh's record_value makes of the same values (clamped to
    LOWEST_US..HIGHEST_US, rounded to the µs), counts, min, max and encoding."""
    ours = MarkHistograms()
    for i, values in enumerate(rounds):
        theirs: dict[str, HdrHistogram] = {}
        for j, seconds in enumerate(values):
            mark = "ab"[j % 2]
            ours.record(mark, seconds)
            us = min(max(round(seconds * 1_000_000), LOWEST_US), HIGHEST_US)
            theirs.setdefault(mark, new_histogram()).record_value(us)
            if j == len(values) // 2:
                assert set(ours.recorded()) == {m for m, h in theirs.items()}  # a read midway
        for mark, h in theirs.items():
            mine = ours.by_mark[mark]
            assert list(mine.counts) == list(h.counts)
            assert (mine.total_count, mine.min_value, mine.max_value) == (
                h.total_count, h.min_value, h.max_value)
        assert ours.encode() == {m: encode_histogram(h) for m, h in theirs.items()}
        if i % 2:
            ours.reset()
        else:
            fresh = MarkHistograms()
            fresh.merge(ours)
            assert fresh.encode() == ours.encode()
            ours.reset()
        assert ours.encode() == {}
