"""The pure Coordinator and the control-message codec: no sockets, a fake clock."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipload.cluster.coordinator import Coordinator
from sipload.cluster.messages import (
    Ack,
    Done,
    Go,
    Heartbeat,
    Hello,
    ProtocolError,
    Ready,
    Records,
    Release,
    Released,
    SetShare,
    Stop,
    Welcome,
    decode,
    encode,
)
from sipload.cluster.run import exit_reason


def _join(c: Coordinator, n: int, now: float = 0.0) -> list[bytes]:
    ids = [f"w{i}".encode() for i in range(n)]
    for ident in ids:
        out = c.on_message(ident, Hello("0.1.0", 100, "host"), now)
        assert isinstance(out[0][1], Welcome)
    return ids


def test_shares_split_rate_and_call_numbers_without_overlap() -> None:
    c = Coordinator({}, workers_expected=3, rate=300.0, calls=1000)
    ids = _join(c, 3)
    ws = [c.workers[i] for i in ids]
    assert [w.rate for w in ws] == [100.0, 100.0, 100.0]
    assert sum(w.calls or 0 for w in ws) == 1000
    ranges = [(w.first_call, w.first_call + (w.calls or 0)) for w in ws]
    assert ranges == [(0, 334), (334, 667), (667, 1000)]


def test_go_only_when_all_ready() -> None:
    c = Coordinator({}, workers_expected=2, rate=10.0, calls=10)
    a, b = _join(c, 2)
    assert c.on_message(a, Ready(0, "127.0.0.1", 5000), 0.1) == []
    out = c.on_message(b, Ready(1, "127.0.0.1", 5001), 0.2)
    assert sorted(ident for ident, m in out if isinstance(m, Go)) == [a, b]


def test_go_after_start_timeout_with_the_ready_ones() -> None:
    c = Coordinator({}, workers_expected=2, rate=10.0, calls=10, start_timeout=5.0)
    a, _b = _join(c, 2)
    c.on_message(a, Ready(0, "127.0.0.1", 5000), 0.1)
    assert c.tick(1.0) == []
    out = c.tick(6.0)
    assert [m for _, m in out if isinstance(m, Go)]


def test_records_are_acknowledged_and_counted() -> None:
    c = Coordinator({}, workers_expected=1, rate=10.0, calls=2)
    (a,) = _join(c, 1)
    out = c.on_message(a, Records(0, 7, [{"x": 1}, {"x": 2}]), 1.0)
    assert out == [(a, Ack(7))]
    assert c.workers[a].records == 2


def test_lost_worker_hands_its_share_to_the_others() -> None:
    c = Coordinator({}, workers_expected=2, rate=100.0, calls=100, lost_after=3.0)
    a, b = _join(c, 2)
    for ident, w in ((a, 0), (b, 1)):
        c.on_message(ident, Ready(w, "127.0.0.1", 5000 + w), 0.0)
    c.on_message(a, Heartbeat(0, 1.0, 5, 20, 0.5, 1.0), 1.0)
    c.on_message(a, Records(0, 1, [{}] * 15), 1.0)
    c.on_message(b, Heartbeat(1, 1.0, 5, 20, 0.5, 1.0), 3.5)
    out = c.tick(4.5)  # a silent since 1.0
    assert c.workers[a].lost and not c.workers[b].lost
    shares = [m for ident, m in out if ident == b and isinstance(m, SetShare)]
    assert shares == [SetShare(100.0, 30)]  # a's rate, and its 30 unstarted calls
    assert c.lost_calls == 5  # started 20, reported 15
    assert c.totals()["lost_with_worker"] == 5
    lost = [e for e in c.events if e["event"] == "worker_lost"]
    assert lost[0]["calls_lost"] == 5
    c.on_message(b, Done(1, 80, 80, 0, 0, 80, 0), 9.0)
    assert c.finished and not c.ended


def test_a_local_worker_that_ended_is_lost_after_the_grace_by_how_it_ended() -> None:
    c = Coordinator({}, workers_expected=2, rate=100.0, calls=100, lost_after=3.0)
    a, b = _join(c, 2)  # both say pid 100 on "host"
    c.workers[b].pid = 101
    for ident, w in ((a, 0), (b, 1)):
        c.on_message(ident, Ready(w, "127.0.0.1", 5000 + w), 0.0)
    c.on_message(a, Heartbeat(0, 1.0, 5, 20, 0.5, 1.0), 1.0)
    c.on_message(b, Heartbeat(1, 1.0, 5, 20, 0.5, 1.0), 1.0)
    c.on_exit("other-host", 100, "killed by SIGKILL", 1.1)  # not ours: a remote worker's pid
    c.on_exit("host", 100, "killed by SIGKILL", 1.2)
    assert c.tick(1.6) == [] and not c.workers[a].lost  # its last messages may be coming
    out = c.tick(1.7)  # long before the 3 s of silence
    assert c.workers[a].lost and not c.workers[b].lost
    lost = [e for e in c.events if e["event"] == "worker_lost"]
    assert [(e["worker"], e["reason"]) for e in lost] == [(0, "killed by SIGKILL")]
    assert [m for ident, m in out if ident == b] == [SetShare(100.0, 30)]
    # a worker whose Done comes within the grace ended well: not lost
    c.on_exit("host", 101, "exited with status 0", 2.0)
    c.on_message(b, Done(1, 80, 80, 0, 0, 0, 0), 2.1)
    c.tick(5.0)
    assert not c.workers[b].lost and c.finished and not c.ended


def test_exit_reasons() -> None:
    assert exit_reason(0) == "exited with status 0"
    assert exit_reason(3) == "exited with status 3"
    assert exit_reason(-9) == "killed by SIGKILL"
    assert exit_reason(-11) == "killed by SIGSEGV"
    assert exit_reason(-200) == "killed by signal 200"


def test_no_worker_left_ends_the_run() -> None:
    c = Coordinator({}, workers_expected=1, rate=10.0, calls=100, lost_after=3.0)
    (a,) = _join(c, 1)
    c.on_message(a, Ready(0, "127.0.0.1", 5000), 0.0)
    c.tick(10.0)
    assert c.finished and "no worker left" in c.ended


def test_stop_reaches_live_workers_only() -> None:
    c = Coordinator({}, workers_expected=2, rate=10.0, calls=10)
    a, b = _join(c, 2)
    c.on_message(a, Done(0, 5, 5, 0, 0, 5, 0), 1.0)
    out = c.stop(1.0, 5.0)
    assert out == [(b, Stop(5.0, False))]


def test_hello_while_stopping_is_refused() -> None:
    c = Coordinator({}, workers_expected=1, rate=10.0, calls=10)
    (a,) = _join(c, 1)
    c.on_message(a, Ready(0, "127.0.0.1", 5000), 0.0)
    c.stop(1.0, 5.0)
    out = c.on_message(b"late", Hello("0.1.0", 1, "elsewhere"), 1.5)
    assert out == [(b"late", Stop(0.0, abort=True))]
    refused = [e for e in c.events if e["event"] == "worker_refused"]
    assert refused and refused[0]["reason"] == "the run is stopping"


def test_hello_of_another_protocol_is_refused() -> None:
    c = Coordinator({}, workers_expected=1, rate=10.0, calls=10)
    out = c.on_message(b"old", Hello("0.0.9", 1, "h", protocol=1), 0.0)
    assert out == [(b"old", Stop(0.0, abort=True))] and not c.workers


# --------------------------------------------------------------------------- joining


def _running(c: Coordinator, n: int, started: list[int], now: float = 1.0) -> list[bytes]:
    """``n`` workers, all gone, each having started ``started[i]`` calls by ``now``."""
    ids = _join(c, n)
    for i, ident in enumerate(ids):
        c.on_message(ident, Ready(i, "127.0.0.1", 5000 + i), 0.0)
    assert c.went
    for i, ident in enumerate(ids):
        c.on_message(ident, Heartbeat(i, now, 1, started[i], 0.1, 0.1), now)
    return ids


def _assigned(c: Coordinator) -> int:
    """Every call of the run is someone's: held by a live worker, or started by a lost
    one (its unstarted calls went to the others)."""
    return sum((w.calls or 0) if not w.lost else w.started for w in c.workers.values())


def test_a_worker_joining_mid_run_gets_released_calls_and_a_rate_share() -> None:
    c = Coordinator({"calls": 100}, workers_expected=2, rate=100.0, calls=100)
    a, b = _running(c, 2, [20, 10])
    out = c.on_message(b"c", Hello("0.1.0", 7, "newhost"), 2.0)
    # 70 unstarted: an even share is 23 each, so a gives 30 - 23, b 40 - 23
    assert out == [(a, Release(7)), (b, Release(17))]
    assert not c.workers[b"c"].welcomed and not c.finished
    assert c.on_message(a, Released(0, 7), 2.01) == []  # b has not answered yet
    out = c.on_message(b, Released(1, 15), 2.02)  # b started 2 more meanwhile
    assert out == [(b"c", Welcome(2, {"calls": 100}, 100.0 / 3, 22, 300, None))]
    assert (c.workers[a].calls, c.workers[b].calls, c.workers[b"c"].calls) == (43, 35, 22)
    assert _assigned(c) == 100
    joined = [e for e in c.events if e["event"] == "worker_joined" and e.get("mid_run")]
    assert joined and joined[0]["worker"] == 2 and joined[0]["calls"] == 22
    out = c.on_message(b"c", Ready(2, "127.0.0.1", 5002), 2.1)
    # it starts at once, and the run's rate is now shared by three
    assert out[0] == (b"c", Go())
    assert sorted(out[1:]) == sorted([(a, SetShare(100.0 / 3, 0)), (b, SetShare(100.0 / 3, 0))])
    assert sum(w.rate for w in c.workers.values()) == pytest.approx(100.0)
    for ident, w in ((a, 0), (b, 1), (b"c", 2)):
        calls = c.workers[ident].calls or 0
        c.on_message(ident, Done(w, calls, calls, 0, 0, calls, 0), 9.0)
    assert c.finished and not c.ended


def test_a_worker_joining_a_duration_run_gets_the_time_left() -> None:
    c = Coordinator({"duration": 60.0}, workers_expected=2, rate=100.0, calls=None)
    _running(c, 2, [0, 0], now=0.0)
    out = c.on_message(b"c", Hello("0.1.0", 7, "newhost"), 20.0)
    assert len(out) == 1 and isinstance(out[0][1], Welcome)
    welcome = out[0][1]
    assert welcome.plan["duration"] == pytest.approx(40.0) and welcome.calls is None
    assert welcome.rate == pytest.approx(100.0 / 3)
    assert c.plan["duration"] == 60.0  # the run's plan is unchanged
    out = c.on_message(b"c", Ready(2, "127.0.0.1", 5002), 20.1)
    assert out[0] == (b"c", Go()) and len(out) == 3
    assert c.on_message(b"d", Hello("0.1.0", 8, "h"), 61.0) == [(b"d", Stop(0.0, True))]


def test_a_worker_joining_when_nothing_is_left_is_refused() -> None:
    c = Coordinator({}, workers_expected=2, rate=100.0, calls=100)
    _running(c, 2, [50, 50])
    assert c.on_message(b"c", Hello("0.1.0", 7, "h"), 2.0) == [(b"c", Stop(0.0, True))]
    assert b"c" not in c.workers
    assert any(e["event"] == "worker_refused" and e["reason"] == "no calls left to share"
               for e in c.events)


def test_every_donor_giving_nothing_refuses_the_joiner() -> None:
    c = Coordinator({}, workers_expected=1, rate=10.0, calls=10)
    (a,) = _running(c, 1, [2])
    assert c.on_message(b"c", Hello("0.1.0", 7, "h"), 2.0) == [(a, Release(4))]
    # a started them all meanwhile
    assert c.on_message(a, Released(0, 0), 2.5) == [(b"c", Stop(0.0, True))]
    assert b"c" not in c.workers and _assigned(c) == 10


def test_a_donor_lost_before_answering_no_longer_holds_up_the_joiner() -> None:
    c = Coordinator({}, workers_expected=2, rate=100.0, calls=100, lost_after=3.0)
    a, b = _running(c, 2, [20, 20])
    c.on_message(b"c", Hello("0.1.0", 7, "h"), 2.0)  # asks a and b for 10 each
    c.on_message(a, Released(0, 10), 2.1)
    for t in (3.0, 4.0, 4.5):
        c.on_message(a, Heartbeat(0, t, 1, 20, 0.1, 0.1), t)
    out = c.tick(4.6)  # b silent since 1.0: lost, and c is welcomed with a's 10
    assert c.workers[b].lost
    welcomes = [m for ident, m in out if ident == b"c" and isinstance(m, Welcome)]
    assert [w.calls for w in welcomes] == [10]
    # b's 30 unstarted calls went to the workers holding a share: a and c
    assert _assigned(c) == 100


def test_a_joiner_lost_before_its_welcome_gives_its_calls_back() -> None:
    c = Coordinator({}, workers_expected=2, rate=100.0, calls=100, lost_after=3.0)
    a, b = _running(c, 2, [20, 20])
    c.on_message(b"c", Hello("0.1.0", 7, "h"), 2.0)
    c.on_message(a, Released(0, 10), 2.1)
    c.on_message(a, Heartbeat(0, 5.0, 1, 20, 0.1, 0.1), 5.0)
    c.on_message(b, Heartbeat(1, 5.0, 1, 20, 0.1, 0.1), 5.0)
    c.tick(5.1)  # c silent since its Hello (b never answered): lost
    assert c.workers[b"c"].lost and c.workers[b"c"].started == 0
    assert _assigned(c) == 100
    out = c.on_message(b, Released(1, 10), 5.2)  # b's answer comes after all
    assert sum(m.extra_calls for _, m in out if isinstance(m, SetShare)) == 10
    assert _assigned(c) == 100 and c.lost_calls == 0


def test_stop_refuses_a_joiner_waiting_for_its_calls() -> None:
    c = Coordinator({}, workers_expected=1, rate=10.0, calls=10)
    (a,) = _running(c, 1, [2])
    c.on_message(b"c", Hello("0.1.0", 7, "h"), 2.0)
    out = c.stop(2.1, 5.0)
    assert out == [(b"c", Stop(0.0, True)), (a, Stop(5.0, False))]
    assert b"c" not in c.workers
    assert c.on_message(a, Released(0, 4), 2.2) == [(a, SetShare(10.0, 4))]
    assert _assigned(c) == 10


def test_a_worker_beyond_those_expected_joins_before_go() -> None:
    c = Coordinator({}, workers_expected=1, rate=10.0, calls=10)
    (a,) = _join(c, 1)
    out = c.on_message(b"c", Hello("0.1.0", 7, "h"), 0.1)
    assert out == [(a, Release(5))]
    out = c.on_message(a, Released(0, 5), 0.2)
    assert [type(m) for _, m in out] == [Welcome]
    out = c.on_message(a, Ready(0, "127.0.0.1", 5000), 0.3)
    assert (a, Go()) in out
    out = c.on_message(b"c", Ready(1, "127.0.0.1", 5001), 0.4)
    assert out == [(b"c", Go()), (a, SetShare(5.0, 0))]
    assert [c.workers[i].calls for i in (a, b"c")] == [5, 5]


def test_go_after_start_timeout_deals_out_the_missing_workers_shares() -> None:
    c = Coordinator({}, workers_expected=3, rate=90.0, calls=90, start_timeout=5.0,
                    lost_after=3.0)
    a, b = _join(c, 2)
    c.on_message(a, Ready(0, "127.0.0.1", 5000), 0.1)
    c.on_message(b, Ready(1, "127.0.0.1", 5001), 0.2)
    out = c.tick(6.0)
    assert [i for i, m in out if isinstance(m, Go)] == [a, b]
    shares = sorted((i, m) for i, m in out if isinstance(m, SetShare))
    assert shares == [(a, SetShare(45.0, 15)), (b, SetShare(45.0, 15))]
    assert _assigned(c) == 90
    missing = [e for e in c.events if e["event"] == "workers_missing"]
    assert missing == [{"t": 6.0, "event": "workers_missing", "workers": 1, "calls": 30}]
    # waiting for Go was not silence: liveness counts from Go
    assert c.tick(6.5) == [] and not any(w.lost for w in c.workers.values())
    # the missing worker, late: a joiner now, not the third slot
    out = c.on_message(b"late", Hello("0.1.0", 9, "h"), 7.0)
    assert [type(m) for _, m in out] == [Release, Release]


def test_codec_round_trip() -> None:
    msgs = [Hello("0.1.0", 1, "h"), Welcome(2, {"rate": 1.0, "target": ["127.0.0.1", 5060]},
                                            5.0, 10, 20), Ready(0, "::1", 5060), Go(),
            Records(1, 2, [{"call_number": 1, "codes": [100, 200]}]), SetShare(3.0, 4),
            Stop(2.5, True), Ack(9), Done(1, 2, 3, 4, 5, 6, 7), Release(5), Released(1, 4)]
    for m in msgs:
        assert decode(encode(m)) == m


def test_packed_records_decode_into_records_in_order() -> None:
    """Records packed one by one by a worker (Records.packed) come out of decode as the
    message's records, after any sent as a list; a broken tail is a ProtocolError."""
    from sipload.cluster.messages import pack_record
    recs = [{"call_number": i, "codes": [100, 200], "marks": {"answer": i / 1000}}
            for i in range(250)]
    packed = b"".join(pack_record(r) for r in recs[1:])
    got = decode(encode(Records(1, 2, recs[:1], 250, [], packed)))
    assert isinstance(got, Records)
    assert got.records == recs and got.packed == b"" and got.started == 250
    with pytest.raises(ProtocolError):
        decode(encode(Records(1, 3, [], 250, [], packed[:-3])))
    with pytest.raises(ProtocolError):
        decode(encode(Records(1, 4, [], 1, [], pack_record({"x": 1}) + msgpack.packb(7))))


@given(st.binary(max_size=200))
def test_decode_garbage_raises_only_protocol_error(data: bytes) -> None:
    try:
        decode(data)
    except ProtocolError:
        pass


@given(st.dictionaries(st.text(max_size=8), st.one_of(st.integers(-(2**63), 2**63 - 1),
                                                       st.text(max_size=8),
                                                       st.none()), max_size=5),
       st.sampled_from(["Hello", "Records", "Stop", "Nope", "Done"]))
def test_decode_wrong_shapes_raise_only_protocol_error(fields: dict[str, object],
                                                       name: str) -> None:
    data = msgpack.packb({**fields, "type": name})
    try:
        decode(data)
    except ProtocolError:
        pass


def test_records_newer_than_the_last_heartbeat_count_as_started() -> None:
    """A worker killed between a heartbeat and a later record batch: the records'
    calls were started, so they are neither lost nor handed to another worker."""
    c = Coordinator({}, workers_expected=2, rate=100.0, calls=100, lost_after=3.0)
    a, b = _join(c, 2)
    for ident, w in ((a, 0), (b, 1)):
        c.on_message(ident, Ready(w, "127.0.0.1", 5000 + w), 0.0)
    c.on_message(a, Heartbeat(0, 1.0, 5, 20, 0.5, 1.0), 1.0)  # started 20
    c.on_message(a, Records(0, 1, [{}] * 30, 33), 1.5)  # 30 records, 33 started by then
    c.on_message(a, Records(0, 2, [{}] * 6), 1.6)  # an older worker: no count
    c.on_message(b, Heartbeat(1, 1.0, 5, 20, 0.5, 1.0), 3.5)
    out = c.tick(4.7)
    lost = [e for e in c.events if e["event"] == "worker_lost"]
    assert lost[0]["started"] == 36 and lost[0]["records"] == 36
    assert lost[0]["calls_lost"] == 0
    shares = [m for ident, m in out if ident == b and isinstance(m, SetShare)]
    assert shares == [SetShare(100.0, 14)]  # 50 - 36 unstarted
