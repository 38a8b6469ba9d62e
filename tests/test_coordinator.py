"""The pure Coordinator and the control-message codec: no sockets, a fake clock."""

from __future__ import annotations

import msgpack
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
    SetShare,
    Stop,
    Welcome,
    decode,
    encode,
)


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


def test_late_hello_after_go_is_refused() -> None:
    c = Coordinator({}, workers_expected=1, rate=10.0, calls=10)
    (a,) = _join(c, 1)
    c.on_message(a, Ready(0, "127.0.0.1", 5000), 0.0)
    out = c.on_message(b"late", Hello("0.1.0", 1, "elsewhere"), 1.0)
    assert out and isinstance(out[0][1], Stop)
    assert any(e["event"] == "worker_refused" for e in c.events)


def test_codec_round_trip() -> None:
    msgs = [Hello("0.1.0", 1, "h"), Welcome(2, {"rate": 1.0, "target": ["127.0.0.1", 5060]},
                                            5.0, 10, 20), Ready(0, "::1", 5060), Go(),
            Records(1, 2, [{"call_number": 1, "codes": [100, 200]}]), SetShare(3.0, 4),
            Stop(2.5, True), Ack(9), Done(1, 2, 3, 4, 5, 6, 7)]
    for m in msgs:
        assert decode(encode(m)) == m


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
