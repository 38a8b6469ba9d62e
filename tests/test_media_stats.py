"""Receive statistics (RFC 3550 A.1/A.3/A.8) and the G.107 E-model, on made-up arrivals."""

from __future__ import annotations

import random

import pytest

from sipload.media import emodel
from sipload.media.receive import ReceiveStats

PT = 0


def feed(stats: ReceiveStats, seqs: list[int], delays: list[float] | None = None,
         ssrc: int = 1, seq0: int = 0, ts0: int = 0) -> None:
    """Packet i (sent at i·20 ms, timestamp ts0 + 160·i) arrives after delays[i]."""
    for n, i in enumerate(seqs):
        delay = delays[n] if delays else 0.01
        stats.on_packet((seq0 + i) & 0xFFFF, (ts0 + 160 * i) & 0xFFFFFFFF, ssrc, PT, 160,
                        i * 0.02 + delay)


def test_in_order_stream() -> None:
    s = ReceiveStats()
    feed(s, list(range(100)))
    assert (s.expected, s.received, s.lost, s.duplicates, s.out_of_order) == (100, 100, 0, 0, 0)
    assert s.jitter == pytest.approx(0, abs=1e-6) and s.max_jitter < 1e-6
    assert s.longest_gap == pytest.approx(0.02)
    assert s.payload_bytes == 16000


def test_loss_and_loss_runs() -> None:
    s = ReceiveStats()
    feed(s, [i for i in range(100) if i not in (10, 11, 50)])
    assert (s.expected, s.lost, s.loss_runs) == (100, 3, 2)
    assert s.loss_rate == pytest.approx(0.03)
    assert s.longest_gap == pytest.approx(0.06)


def test_duplicates_do_not_hide_loss() -> None:
    s = ReceiveStats()
    feed(s, [0, 1, 2, 2, 4, 5, 1])
    assert s.received == 7
    assert s.duplicates == 2
    assert s.out_of_order == 0
    assert s.expected == 6 and s.lost == 1


def test_reordering_is_not_loss() -> None:
    s = ReceiveStats()
    feed(s, [0, 1, 3, 2, 4, 6, 5])
    assert (s.expected, s.lost, s.out_of_order, s.duplicates) == (7, 0, 2, 0)


def test_first_packet_late() -> None:
    s = ReceiveStats()
    feed(s, [1, 0, 2])
    assert (s.expected, s.lost, s.out_of_order) == (3, 0, 1)


def test_sequence_wrap_extends() -> None:
    s = ReceiveStats()
    feed(s, list(range(20)), seq0=65530)
    assert s.expected == 20 and s.lost == 0
    assert s.extended_max == 65536 + 13


def test_one_wild_jump_is_dropped_two_resync() -> None:
    s = ReceiveStats()
    feed(s, list(range(10)))
    s.on_packet(30000, 1600, 1, PT, 160, 0.3)
    assert s.bad_jumps == 1 and s.received == 10
    s.on_packet(30000, 1600, 1, PT, 160, 0.3)  # not the next one: still a jump
    s.on_packet(30001, 1760, 1, PT, 160, 0.32)  # follows the last jump: restart
    assert s.received == 11
    s.on_packet(30002, 1920, 1, PT, 160, 0.34)
    assert s.expected == 10 + 2 and s.lost == 0


def test_ssrc_change_banks_the_first_source() -> None:
    s = ReceiveStats()
    feed(s, list(range(50)), ssrc=7, seq0=100)
    feed(s, [i for i in range(31) if i != 5], ssrc=8, seq0=9000)
    assert s.ssrc_changes == 1
    assert s.expected == 81 and s.lost == 1


def reference_jitter(sends: list[float], arrivals: list[float], rate: int = 8000) -> float:
    """RFC 3550 A.8, written out directly from the RFC's formula."""
    j = 0.0
    for i in range(1, len(sends)):
        d = (arrivals[i] - arrivals[i - 1]) - (sends[i] - sends[i - 1])
        j += (abs(d) * rate - j) / 16
    return j


def test_jitter_is_rfc3550_a8() -> None:
    rng = random.Random(4)
    delays = [0.005 + rng.random() * 0.03 for _ in range(500)]
    s = ReceiveStats()
    feed(s, list(range(500)), delays)
    sends = [i * 0.02 for i in range(500)]
    arrivals = [i * 0.02 + d for i, d in enumerate(delays)]
    assert s.jitter == pytest.approx(reference_jitter(sends, arrivals), rel=1e-9)
    assert s.max_jitter >= s.jitter > 0
    assert s.jitter_seconds == pytest.approx(s.jitter / 8000)


def test_jitter_across_timestamp_wrap() -> None:
    s = ReceiveStats()
    feed(s, list(range(20)), ts0=0xFFFFFFFF - 400)
    assert s.max_jitter < 1e-6


def test_events_count_and_do_not_disturb_jitter_or_pt() -> None:
    s = ReceiveStats(event_pt=101)
    feed(s, list(range(10)))
    for k in range(4):  # one event: timestamp stays at the start
        s.on_packet(10 + k, 1600, 1, 101, 4, 0.21 + 0.02 * k, event_end=k >= 1, event_code=5)
    feed(s, list(range(14, 20)))
    assert s.events == 4 and s.digits == "5"
    assert s.pt_changes == 0 and s.jitter < 1e-6 and s.lost == 0


def test_payload_type_change_is_counted() -> None:
    s = ReceiveStats()
    s.on_packet(0, 0, 1, 0, 160, 0.0)
    s.on_packet(1, 160, 1, 8, 160, 0.02)
    assert s.pt_changes == 1


def test_malformed_and_foreign_counters() -> None:
    s = ReceiveStats()
    s.count_malformed()
    s.count_foreign()
    s.count_foreign()
    assert (s.malformed, s.foreign, s.received) == (1, 2, 0)


def test_report_block_fraction_is_per_interval() -> None:
    s = ReceiveStats()
    feed(s, [i for i in range(100) if i % 4 != 0 or i == 0])  # 24 of 100 lost
    fraction, cumulative, highest, _jitter = s.report_block()
    assert cumulative == 24 and highest == 99
    assert fraction == (24 << 8) // 100
    feed(s, list(range(100, 200)))
    fraction, cumulative, highest, _ = s.report_block()
    assert (fraction, cumulative, highest) == (0, 24, 199)


def test_burst_ratio_random_vs_bursty() -> None:
    rng = random.Random(1)
    random_loss = ReceiveStats()
    feed(random_loss, [i for i in range(20000) if rng.random() > 0.05])
    assert random_loss.burst_ratio() == pytest.approx(1.0, abs=0.1)
    bursty = ReceiveStats()
    feed(bursty, [i for i in range(20000) if (i // 10) % 20 != 0])  # runs of 10 lost
    assert bursty.burst_ratio() > 5


def test_emodel_defaults() -> None:
    r0 = emodel.r_factor("PCMU", 0.0, 1.0, 0.0)
    assert r0 == pytest.approx(93.2, abs=0.02)
    assert emodel.mos_from_r(r0) == pytest.approx(4.41, abs=0.01)
    assert emodel.mos_from_r(-5) == 1.0 and emodel.mos_from_r(120) == 4.5
    assert min(emodel.mos_from_r(r / 10) for r in range(0, 1000)) == 1.0


def test_emodel_delay_impairment() -> None:
    assert emodel.delay_impairment(0) == pytest.approx(0.15, abs=0.01)
    # Idd starts above 100 ms; the whole Id grows with delay.
    values = [emodel.delay_impairment(d) for d in (0, 50, 100, 150, 200, 300, 400)]
    assert values == sorted(values)
    assert emodel.delay_impairment(400) > 25


def test_emodel_loss() -> None:
    # G.107 §7.5 with G.711 + PLC (Ie 0, Bpl 25.1): 1 % random loss -> 95·1/(1 + 25.1).
    assert emodel.effective_equipment_impairment("PCMU", 1.0, 1.0) == pytest.approx(3.6398, 1e-3)
    assert emodel.effective_equipment_impairment("PCMA", 5.0, 2.0) > \
        emodel.effective_equipment_impairment("PCMA", 5.0, 1.0)
    _r, mos = emodel.call_mos("PCMU", 0.0, 1.0, 0.02, 0.001, None)
    assert mos > 4.35
    _, worse = emodel.call_mos("PCMU", 0.05, 1.0, 0.02, 0.001, None)
    assert 3.5 < worse < 4.0
