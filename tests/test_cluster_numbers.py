"""Call numbers stay unique when lost workers' calls are handed to the others.

Pure: the Coordinator is driven by messages and a fake clock; each worker's
numbers are those its engine's Admission would give (its own range, then the calls it took
over, numbered from ``extra_numbers``), without sockets.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sipload.cluster.coordinator import Coordinator, extra_numbers
from sipload.cluster.messages import Heartbeat, Hello, Ready, SetShare, Welcome
from sipload.engine.roles import id_prefix
from sipload.pacing import Admission, Pacer
from sipload.ua.ids import IdGenerator


def test_engine_numbers_taken_over_calls_from_their_own_block() -> None:
    e = Admission(Pacer(10.0, calls=50), first_call=100)
    e.add_calls(20, extra_numbers(200, 1))
    e.add_calls(5, extra_numbers(200, 1) + 20)
    assert e.pacer.calls == 75
    numbers = [e.call_number(i) for i in range(75)]
    assert numbers == [*range(100, 150), *range(400, 425)]


@given(st.integers(1, 500), st.integers(2, 6), st.data())
def test_numbers_never_collide_when_workers_are_lost(calls: int, n: int,
                                                     data: st.DataObject) -> None:
    c = Coordinator({}, workers_expected=n, rate=10.0, calls=calls, lost_after=3.0)
    welcome: dict[bytes, Welcome] = {}
    for i in range(n):
        ident = f"w{i}".encode()
        (_, msg), = c.on_message(ident, Hello("t", i, "h"), 0.0)
        assert isinstance(msg, Welcome)
        welcome[ident] = msg
    for ident, w in welcome.items():
        c.on_message(ident, Ready(w.worker, "127.0.0.1", 5000), 0.0)
    # each worker's engine: own range, then blocks of taken-over calls
    engines: dict[bytes, Admission] = {}
    extra_next: dict[bytes, int] = {}
    for ident, w in welcome.items():
        e = Admission(Pacer(10.0, calls=w.calls), first_call=w.first_call)
        engines[ident] = e
        extra_next[ident] = extra_numbers(calls, w.worker)
    started = {ident: 0 for ident in welcome}
    now = 0.0
    order = data.draw(st.permutations(list(welcome)))
    for victim in order[: n - 1]:  # lose all but one, one at a time
        now += 1.0
        for ident in welcome:
            e = engines[ident]
            pacer = e.pacer
            assert pacer is not None and pacer.calls is not None
            if not c.workers[ident].lost:
                started[ident] = data.draw(st.integers(started[ident], pacer.calls))
                c.on_message(ident, Heartbeat(0, now, 0, started[ident], 0.0, 0.0), now)
        now += 4.0
        for ident in welcome:
            if ident != victim and not c.workers[ident].lost:
                c.on_message(ident, Heartbeat(0, now, 0, started[ident], 0.0, 0.0), now)
        for ident, msg in c.tick(now):
            if isinstance(msg, SetShare) and msg.extra_calls:
                engines[ident].add_calls(msg.extra_calls, extra_next[ident])
                extra_next[ident] += msg.extra_calls
        assert c.workers[victim].lost
    seen: set[int] = set()
    for e in engines.values():
        assert e.pacer.calls is not None
        # every number this worker could ever use (a lost one may have started more
        # calls than its last heartbeat said)
        count = e.pacer.calls
        mine = {e.call_number(i) for i in range(count)}
        assert len(mine) == count and not mine & seen
        seen |= mine


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 2**32 - 1)),
                min_size=2, max_size=6, unique=True),
       st.integers(1, 2000))
def test_workers_ids_never_collide(workers: list[tuple[int, int]], n: int) -> None:
    """Ids of workers that differ in number or salt never meet (w1 and w11 must not
    share a prefix, as they once could by their PIDs)."""
    seen: dict[str, int] = {}
    for i, (worker, salt) in enumerate(workers):
        ids = IdGenerator(id_prefix(worker, salt))
        for _ in range(n if i == 0 else 3):
            tag = ids.tag()
            assert seen.setdefault(tag, i) == i


def test_worker_prefixes_are_delimited() -> None:
    assert id_prefix(1, 0x1A) != id_prefix(11, 0xA)
    assert IdGenerator(id_prefix(1, 0x1A5)).tag() != IdGenerator(id_prefix(11, 0xA5)).tag()
    assert id_prefix(0, 0x5E6C5CA0) == "w0-5e6c5ca0x"
