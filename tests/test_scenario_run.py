"""Scenarios run against each other on in-memory user agents (fake clock)."""

from __future__ import annotations

from sipload.stats.records import Result
from tests.scenario_pair import ScenarioPair, program


def test_basic_call_scenario_against_its_uas() -> None:
    sp = ScenarioPair(program("basic_call.yaml"), program("basic_call_uas.yaml"))
    sp.run(calls=3)
    assert [r.result for r in sp.records] == [Result.SUCCESS] * 3, [
        (r.failure, r.detail) for r in sp.records]
    assert [r.result for r in sp.uas_records] == [Result.SUCCESS] * 3, [
        (r.failure, r.detail) for r in sp.uas_records]
    rec = sp.records[0]
    assert rec.codes[:3] == [100, 180, 200]
    assert {"first_provisional", "pdd", "answer", "bye", "call"} <= set(rec.marks)
    assert rec.marks["call"] >= 0.1
    labels = [m[2] for m in rec.messages]
    assert labels[0] == "INVITE" and "ACK" in labels and "200 BYE" in labels


def test_records_count_the_calls_retransmissions() -> None:
    sp = ScenarioPair(program("basic_call.yaml"), program("basic_call_uas.yaml"))
    dropped: list[bytes] = []

    def drop_first_invite(data: bytes) -> bool:
        if data.startswith(b"INVITE") and not dropped:
            dropped.append(data)
            return True
        return False

    sp.pair.drop_to_bob = drop_first_invite
    sp.run(calls=1)
    assert [r.result for r in sp.records] == [Result.SUCCESS]
    assert sp.records[0].retransmissions == 1  # the INVITE, once, after T1
