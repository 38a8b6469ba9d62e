"""Tests for sipload.sip.timerheap: one live deadline per item, lazy deletion, compaction."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from sipload.sip.message import Request
from sipload.sip.parser import parse_message
from sipload.sip.timerheap import COMPACT_MIN, COMPACT_RATIO, LANES, TimerHeap
from sipload.sip.transaction import ClientTransaction, TimerConfig


def invite(branch: str) -> Request:
    msg = parse_message(
        b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=" + branch.encode() + b"\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        b"CSeq: 314159 INVITE\r\n"
        b"Content-Length: 0\r\n"
        b"\r\n"
    )
    assert isinstance(msg, Request)
    return msg


class Owner:
    """A plain object: hashable by identity, like a transaction."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def test_empty() -> None:
    h: TimerHeap[str] = TimerHeap()
    assert len(h) == 0 and h.peek() is None and h.pop_due(1e9) == []


def test_pops_due_items_earliest_first() -> None:
    h: TimerHeap[str] = TimerHeap()
    h.push(3.0, "c")
    h.push(1.0, "a")
    h.push(2.0, "b")
    h.push(9.0, "z")
    assert len(h) == 4 and h.peek() == 1.0
    assert h.pop_due(0.5) == []
    assert h.pop_due(3.0) == ["a", "b", "c"]  # deadline <= now is due
    assert len(h) == 1 and h.peek() == 9.0 and "z" in h and "a" not in h


def test_equal_deadlines_come_out_in_push_order() -> None:
    h: TimerHeap[Owner] = TimerHeap()
    owners = [Owner(f"o{i}") for i in range(5)]
    for o in owners:
        h.push(1.0, o)  # Owner defines no ordering: the heap must never compare items
    assert h.pop_due(1.0) == owners


def test_push_again_replaces_the_deadline() -> None:
    h: TimerHeap[str] = TimerHeap()
    h.push(5.0, "a")
    h.push(1.0, "b")
    h.push(0.5, "a")  # earlier
    h.push(7.0, "b")  # later
    assert len(h) == 2 and h.deadline_of("a") == 0.5 and h.deadline_of("b") == 7.0
    assert h.pop_due(5.0) == ["a"]  # the stale 5.0 entry of "a" does not come out again
    assert h.peek() == 7.0  # the stale 1.0 entry of "b" was skipped
    assert h.pop_due(6.9) == []
    assert h.pop_due(7.0) == ["b"]
    assert len(h) == 0 and h.peek() is None


def test_push_same_deadline_adds_no_entry() -> None:
    h: TimerHeap[str] = TimerHeap()
    for _ in range(100):
        h.push(2.0, "a")
    assert h.entries() == 1


def test_discard_and_schedule() -> None:
    h: TimerHeap[str] = TimerHeap()
    h.push(1.0, "a")
    h.push(2.0, "b")
    h.discard("a")
    h.discard("never-pushed")
    assert len(h) == 1 and h.peek() == 2.0 and h.deadline_of("a") is None
    h.schedule("b", None)
    h.schedule("c", 3.0)
    assert len(h) == 1 and h.pop_due(10.0) == ["c"]
    h.push(1.0, "d")
    h.clear()
    assert len(h) == 0 and h.peek() is None


def test_popped_item_can_be_pushed_again() -> None:
    h: TimerHeap[str] = TimerHeap()
    h.push(1.0, "a")
    assert h.pop_due(1.0) == ["a"]
    h.push(1.0, "a")  # same deadline as before, but it was unscheduled: a new entry
    assert h.pop_due(1.0) == ["a"]


def test_stale_entries_are_compacted() -> None:
    h: TimerHeap[int] = TimerHeap()
    for i in range(10):
        h.push(1000.0, i)
    # one item re-armed later and later: each push leaves a stale entry behind
    for k in range(20 * COMPACT_MIN):
        h.push(float(k), 99)
    assert len(h) == 11
    assert h.entries() <= max(COMPACT_MIN + 1, COMPACT_RATIO * len(h) + 1)
    assert h.pop_due(1e9) == [*range(10), 99]
    assert len(h) == 0


def test_compaction_keeps_order() -> None:
    h: TimerHeap[int] = TimerHeap()
    n = COMPACT_MIN * 3
    for i in range(n):
        h.push(float(n - i), i)
    for i in range(0, n, 2):
        h.push(float(n - i) + 0.5, i)  # move half of them: stale entries pile up
    for i in range(1, n, 4):
        h.discard(i)
    expected = sorted(
        (h.deadline_of(i), i) for i in range(n) if h.deadline_of(i) is not None
    )
    assert h.pop_due(float(n + 1)) == [i for _, i in expected]


def test_drives_transactions() -> None:
    """The loop a UA runs: pop what is due, handle it, push its next deadline."""
    timers = TimerConfig()
    heap: TimerHeap[ClientTransaction] = TimerHeap()
    txs = []
    for k in range(3):
        tx = ClientTransaction(invite(f"z9hG4bK{k}"), reliable=False,
                               timers=timers, now=float(k))
        tx.start(float(k))
        heap.schedule(tx, tx.next_deadline())
        txs.append(tx)
    fired: list[tuple[float, str]] = []
    while (now := heap.peek()) is not None:
        for tx in heap.pop_due(now):
            result = tx.handle_timer(now)
            if result is not None:
                fired.append((now, result))
            heap.schedule(tx, tx.next_deadline())
    assert fired == [(32.0, "B"), (33.0, "B"), (34.0, "B")]
    assert all(tx.terminated and tx.retransmissions == 6 for tx in txs)


class Model:
    """A brute-force twin of a :class:`TimerHeap`: {item: (deadline, push order)}, with
    each operation applied to both and their answers compared."""

    def __init__(self, h: TimerHeap[int]) -> None:
        self.h = h
        self.live: dict[int, tuple[float, int]] = {}
        self.order = 0

    def push(self, deadline: float, item: int) -> None:
        if self.live.get(item, (None, 0))[0] != deadline:
            self.order += 1
            self.live[item] = (deadline, self.order)
        self.h.push(deadline, item)

    def discard(self, item: int) -> None:
        self.live.pop(item, None)
        self.h.discard(item)

    def pop(self, now: float) -> None:
        due = sorted((v, i) for i, v in self.live.items() if v[0] <= now)
        assert self.h.pop_due(now) == [i for _, i in due]
        for _, i in due:
            del self.live[i]

    def peek(self) -> None:
        live = self.live
        assert self.h.peek() == (min(v[0] for v in live.values()) if live else None)
        assert len(self.h) == len(live)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 9), st.integers(0, 50)),
        st.tuples(st.just("discard"), st.integers(0, 9), st.just(0)),
        st.tuples(st.just("pop"), st.just(0), st.integers(0, 50)),
        st.tuples(st.just("peek"), st.just(0), st.just(0)),
    ),
    max_size=200,
)


@given(ops)
def test_matches_a_dict_model(script: list[tuple[str, int, int]]) -> None:
    """Against a dict {item: (deadline, push order)}: same pops, same peek, same length."""
    h: TimerHeap[int] = TimerHeap()
    m = Model(h)
    for op, item, t in script:
        if op == "push":
            m.push(t / 4, item)
        elif op == "discard":
            m.discard(item)
        elif op == "pop":
            m.pop(t / 4)
        else:
            m.peek()
        assert len(h) == len(m.live)
        assert all(h.deadline_of(i) == v[0] for i, v in m.live.items())


def test_deadlines_of_a_few_constants_stay_in_lanes() -> None:
    """A UA's deadlines are now plus one of a few constants: each constant's arrive in
    order, and no entry goes to the binary heap (rule 5)."""
    h: TimerHeap[int] = TimerHeap()
    delays = (0.5, 32.0, 5.0, 10.0, 0.1)
    now, item, fired = 0.0, 0, []
    for _ in range(5000):
        now += 0.00125
        for d in delays:
            item += 1
            h.push(now + d, item)
        fired += h.pop_due(now)
        if item % 1000 == 0:
            left = [h.deadline_of(i) for i in range(1, item + 1) if i in h]
            assert h.peek() == min(d for d in left if d is not None)
    assert len(h._lanes) == len(delays) and not h._heap
    fired += h.pop_due(1e9)
    assert sorted(fired) == list(range(1, item + 1))
    assert [i % 5 for i in fired[:3]] == [0, 0, 0]  # the 0.1 s ones first


def test_a_random_load_matches_a_sorted_model() -> None:
    """Many items, deadlines in and out of order (lanes full, the heap used), moves,
    discards and compaction, against a brute-force model: every pop and peek agree."""
    rng = random.Random(5)
    h: TimerHeap[int] = TimerHeap()
    m = Model(h)
    now = 0.0
    for _ in range(40_000):
        r = rng.random()
        item = rng.randrange(600)
        if r < 0.55:
            m.push(now + (rng.choice((0.5, 4.0, 32.0)) if rng.random() < 0.7
                          else rng.uniform(0, 40)), item)
        elif r < 0.65:
            m.discard(item)
        elif r < 0.9:
            now += rng.uniform(0, 0.2)
            m.pop(now)
        else:
            m.peek()
        assert h.entries() <= max(COMPACT_MIN + 1, COMPACT_RATIO * len(h) + 1)
        assert h.entries() == sum(len(lane.entries) - lane.head for lane in h._lanes) + len(
            h._heap)
    assert len(h._lanes) == LANES and h._heap  # both kinds of storage were used
    m.pop(1e9)
