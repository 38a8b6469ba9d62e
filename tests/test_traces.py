"""Wire traces in the worker (stats/traces.py): bounded per call, filed by Call-ID, kept
for failed calls up to a limit per reason, exported as plain data. Pure: no sockets."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipload.sip import peek
from sipload.sip.peek import call_id_of
from sipload.stats.records import CallRecord, Failure, Result
from sipload.stats.traces import (
    HOLD_CALL_IDS,
    IDLE_PACK,
    CallTrace,
    TraceKeeper,
    Tracer,
    failure_reason,
)

LOCAL, REMOTE = ("127.0.0.1", 5061), ("127.0.0.1", 5060)


def msg(call_id: str, first: str = "INVITE sip:bob@example.com SIP/2.0", body: bytes = b"",
        compact: bool = False) -> bytes:
    name = "i" if compact else "Call-ID"
    return (f"{first}\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1\r\n"
            f"{name}: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def failed(number: int, failure: Failure = Failure.REJECTED, detail: str = "503 x") -> CallRecord:
    rec = CallRecord(number, 0.0, 0.0)
    rec.fail(failure, detail, 1.0)
    rec.call_id = f"c{number}"
    return rec


@pytest.fixture(params=["python", "native"])
def peek_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """call_id_of through the regular expression, then through the C helper."""
    if request.param == "native":
        try:
            from sipload.sip import _peek  # type: ignore[attr-defined,unused-ignore]
        except ImportError:
            pytest.skip("the C helper sipload.sip._peek is not built")
        monkeypatch.setattr(peek, "_native_call_id", _peek.call_id)
    else:
        monkeypatch.setattr(peek, "_native_call_id", None)
    return str(request.param)


def test_call_id_of_runs_the_implementation_selected(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[bytes] = []

    def fake(data: bytes) -> str | None:
        asked.append(data)
        return "from the helper"

    monkeypatch.setattr(peek, "_native_call_id", fake)
    assert call_id_of(msg("abc@host")) == "from the helper" and asked == [msg("abc@host")]
    monkeypatch.setattr(peek, "_native_call_id", None)
    assert call_id_of(msg("abc@host")) == "abc@host" and len(asked) == 1


def test_call_id_of_reads_long_and_compact_forms_and_only_headers(peek_impl: str) -> None:
    assert call_id_of(msg("abc@host")) == "abc@host"
    assert call_id_of(msg("  spaced@host  ", compact=True)) == "spaced@host"
    assert call_id_of(b"OPTIONS sip:x SIP/2.0\r\ncall-id:lower\r\n\r\n") == "lower"
    body = b"Call-ID: in-the-body\r\n"
    assert call_id_of(b"OPTIONS sip:x SIP/2.0\r\nVia: x\r\n\r\n" + body) is None
    assert call_id_of(b"\x00\xff garbage") is None
    assert call_id_of(b"") is None


def _call_id_in_head(data: bytes) -> str | None:
    """The definition: the first Call-ID line of the header section (cut at the blank line)."""
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[: end + 2]
    m = re.search(rb"\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)", head, re.IGNORECASE)
    return (m.group(1).strip().decode("utf-8", "surrogateescape") or None) if m else None


def test_call_id_of_agrees_with_the_header_section_definition(peek_impl: str) -> None:
    # call_id_of searches the whole message and rejects a first match behind a blank
    # line; the edges are blank lines right before or after a Call-ID line.
    assert call_id_of(b"X\r\n\r\nCall-ID: body\r\n") is None
    assert call_id_of(b"X\r\nCall-ID: a\r\n\r\nCall-ID: b\r\n") == "a"
    assert call_id_of(b"X\r\ni:\r\n\r\ni: b") is None  # empty, as the parser reads it
    rng = random.Random(13)
    parts = [b"\r\n", b"\n", b"\r", b"i", b"I", b"call-id", b"Call-ID", b"c", b" ", b"\t",
             b":", b"abc", b"x@y", b"CSeq: 1", b"\r\n\r\n", b"\xff", b"SIP/2.0 200 OK"]
    for _ in range(20000):
        data = b"".join(rng.choice(parts) for _ in range(rng.randint(0, 14)))
        assert call_id_of(data) == _call_id_in_head(data), data


def test_the_c_helper_agrees_with_the_expression() -> None:
    # every spelling, separator and edge the expression knows, close together
    try:
        from sipload.sip import _peek  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        pytest.skip("the C helper sipload.sip._peek is not built")
    rng = random.Random(31)
    parts = [b"\nCall-ID:", b"\r\nCall-ID: ", b"\r\n", b"\n", b"\r", b"i", b"I", b"call-id",
             b"CALL-ID", b"call-i", b"c", b" ", b"\t", b":", b"\x0b", b"\x0c", b"abc", b"x@y",
             b"In-Reply-To: x", b"\r\n\r\n", b"\xff", b"\xc3\xa9", b"\x00", b"CSeq: 1"]
    for _ in range(50000):
        data = b"".join(rng.choice(parts) for _ in range(rng.randint(0, 14)))
        want = peek.python_call_id_of(data)
        assert _peek.call_id(data) == want, data
        assert _peek.call_id(bytearray(data)) == want, data
    with pytest.raises(TypeError):
        _peek.call_id("Call-ID: text")


def test_a_trace_holds_at_most_its_cap_then_counts() -> None:
    t = CallTrace(1, cap=100)
    t.add(0.0, "out", "udp", LOCAL, REMOTE, b"a" * 60)
    t.add(0.1, "in", "udp", LOCAL, REMOTE, b"b" * 60)  # cut to the 40 bytes left
    t.add(0.2, "in", "udp", LOCAL, REMOTE, b"c" * 10)  # no room: counted
    assert t.size == 100 and t.dropped == 1
    assert [len(m.data) for m in t.messages] == [60, 40]
    assert [m.length for m in t.messages] == [60, 60]


def test_keeper_modes_and_the_limit_per_reason() -> None:
    ok = CallRecord(1, 0.0, 0.0)
    ok.result = Result.SUCCESS
    assert TraceKeeper("all").keep(ok) and not TraceKeeper("failed").keep(ok)
    assert not TraceKeeper("none").keep(failed(1))
    k = TraceKeeper("failed", limit=2)
    kept = [k.keep(failed(n, detail=d)) for n, d in enumerate(
        ["503 a", "503 b", "503 c", "486 Busy", "486 Busy", "486 Busy"])]
    assert kept == [True, True, False, True, True, False]
    assert k.keep(failed(9, Failure.TIMEOUT, "waiting for 200"))
    assert k.kept == {"call_rejected 503": 2, "call_rejected 486": 2, "timeout": 1}
    assert k.skipped == 2
    assert failure_reason(failed(1, Failure.REJECTED, "no code")) == "call_rejected"
    with pytest.raises(ValueError, match="trace mode"):
        TraceKeeper("some")


class Calls:
    """The runner's view: which call in progress uses a Call-ID."""

    def __init__(self) -> None:
        self.by_call_id: dict[str, int] = {}

    def lookup(self, call_id: str) -> int | None:
        return self.by_call_id.get(call_id)


def tracer(mode: str = "failed", limit: int = 20) -> tuple[Tracer, Calls]:
    calls = Calls()
    return Tracer(TraceKeeper(mode, limit), calls.lookup,
                  lambda peer: ("127.0.0.1", 40000)), calls


def test_messages_are_filed_by_call_id_and_exported_when_kept() -> None:
    tr, calls = tracer()
    calls.by_call_id.update({"c1": 1, "c2": 2, "c1-leg2": 1})
    tr.message(0.1, "out", "udp", LOCAL, REMOTE, msg("c1"))
    tr.message(0.2, "out", "udp", LOCAL, REMOTE, msg("c2"))
    tr.message(0.3, "in", "udp", LOCAL, REMOTE, msg("c1", "SIP/2.0 503 Service Unavailable"))
    tr.message(0.4, "out", "tcp", ("", 0), ("127.0.0.1", 5062), msg("c1-leg2"))
    tr.message(0.5, "in", "udp", LOCAL, REMOTE, b"no call-id here\r\n\r\n")
    assert tr.held_calls == 2
    out = tr.finish(failed(1), epoch=1000.0)
    assert out is not None
    assert out["call_number"] == 1 and out["epoch"] == 1000.0 and out["dropped"] == 0
    assert [(m[0], m[1], m[2]) for m in out["messages"]] == [
        (0.1, "out", "udp"), (0.3, "in", "udp"), (0.4, "out", "tcp")]
    # the stream was still connecting when it was written: its local address, asked again
    assert out["messages"][2][3:5] == ["127.0.0.1", 40000]
    assert all(isinstance(m[8], bytes) for m in out["messages"])
    ok = CallRecord(2, 0.0, 0.0)
    ok.result = Result.SUCCESS
    assert tr.finish(ok, 1000.0) is None  # not failed: dropped
    assert tr.held_calls == 0  # nothing left in memory once the calls ended
    calls.by_call_id.clear()
    tr.message(0.6, "in", "udp", LOCAL, REMOTE, msg("c1"))  # a late retransmission
    assert tr.finish(failed(1), 1000.0) is None


def test_a_message_that_starts_a_call_is_held_until_the_call_claims_it() -> None:
    tr, calls = tracer("all")
    tr.message(0.1, "in", "udp", LOCAL, REMOTE, msg("new"))  # an INVITE to us
    calls.by_call_id["new"] = 7  # the scenario took the call
    tr.message(0.2, "out", "udp", LOCAL, REMOTE, msg("new", "SIP/2.0 180 Ringing"))
    rec = CallRecord(7, 0.0, 0.0)
    rec.result = Result.SUCCESS
    out = tr.finish(rec, 0.0)
    assert out is not None and [m[1] for m in out["messages"]] == ["in", "out"]


def test_the_held_pool_is_bounded() -> None:
    tr, _calls = tracer("all")
    for i in range(HOLD_CALL_IDS * 3):
        tr.message(float(i), "in", "udp", LOCAL, REMOTE, msg(f"stray{i}"))
    assert tr.held_calls == HOLD_CALL_IDS


def test_memory_is_the_cap_per_call_in_progress() -> None:
    tr, calls = tracer("all")
    calls.by_call_id["big"] = 1
    for i in range(1000):
        tr.message(float(i), "out", "udp", LOCAL, REMOTE, msg("big", body=b"x" * 1000))
    rec = CallRecord(1, 0.0, 0.0)
    rec.result = Result.SUCCESS
    out = tr.finish(rec, 0.0)
    assert out is not None
    assert sum(len(m[8]) for m in out["messages"]) == 65536
    assert out["dropped"] == 1000 - len(out["messages"])


def _ended(number: int, ok: bool) -> CallRecord:
    if not ok:
        return failed(number)
    rec = CallRecord(number, 0.0, 0.0)
    rec.result = Result.SUCCESS
    return rec


def test_a_quiet_call_is_packed_and_unpacked_only_when_kept() -> None:
    """A call without a message for IDLE_PACK has its trace packed (a few bytes for the
    objects and texts it held); one still talking waits from its last message; what
    comes after the packing is kept after the packed messages; a kept call exports
    what it would have unpacked, a dropped one is never unpacked."""
    tr, calls = tracer()
    calls.by_call_id.update({"c1": 1, "c2": 2, "c3": 3})
    for t, cid in ((0.0, "c1"), (0.1, "c2"), (0.2, "c1"), (0.3, "c3"), (0.4, "c2")):
        tr.message(t, "out", "udp", LOCAL, REMOTE, msg(cid, body=b"v=0\r\n" * 20))
    tr.message(IDLE_PACK - 1.0, "in", "tcp", ("", 0), ("127.0.0.1", 5062), msg("c3"))
    assert not tr.pack_idle(IDLE_PACK - 0.5)  # nobody quiet yet
    assert tr.pack_idle(IDLE_PACK + 0.45) and tr.pack_idle(IDLE_PACK + 0.45)
    assert not tr.pack_idle(IDLE_PACK + 0.45)  # c3 spoke at IDLE_PACK - 1: it waits
    assert tr.packed_calls == 2 and tr.idle_waiting(2 * IDLE_PACK)
    assert tr.pack_idle(2 * IDLE_PACK) and tr.packed_calls == 3
    assert not tr.idle_waiting(3 * IDLE_PACK)  # every quiet call packed
    tr.message(30.0, "in", "udp", LOCAL, REMOTE, msg("c1", "SIP/2.0 503 Service Unavailable"))
    out = tr.finish(failed(1), 1000.0)
    assert out is not None
    assert [(m[0], m[1]) for m in out["messages"]] == [(0.0, "out"), (0.2, "out"),
                                                        (30.0, "in")]
    assert out["messages"][0][8].endswith(b"v=0\r\n" * 20)
    assert tr.finish(_ended(2, True), 1000.0) is None
    out3 = tr.finish(failed(3), 1000.0)  # its stream's local address asked when it ends
    assert out3 is not None and out3["messages"][1][2:5] == ["tcp", "127.0.0.1", 40000]
    assert tr.held_calls == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.floats(0.0, 3.0), st.booleans(),
                          st.binary(max_size=300), st.booleans()), max_size=40),
       st.lists(st.booleans(), min_size=5, max_size=5))
def test_packing_never_changes_what_a_trace_exports(
        steps: list[tuple[int, float, bool, bytes, bool]], outcome: list[bool]) -> None:
    """Messages at increasing times for five calls, with quiet spells: a tracer that packs
    whenever it can exports, for every kept call, exactly what one that never packs
    does (times, directions, addresses, bytes, lengths, cut messages, dropped counts)."""
    packing, calls = tracer("all")
    plain, calls2 = tracer("all")
    small, small_plain = (Tracer(TraceKeeper("all", 20), c.lookup,
                                 lambda peer: ("127.0.0.1", 40000), cap=700)
                          for c in (calls, calls2))
    for c in (calls, calls2):
        c.by_call_id.update({f"c{i}": i for i in range(5)})
    t = 0.0
    for number, gap, inbound, body, quiet in steps:
        t += gap + (IDLE_PACK + 1.0 if quiet else 0.0)
        direction = "in" if inbound else "out"
        local = ("", 0) if number == 4 else LOCAL
        for tr in (packing, plain, small, small_plain):
            tr.message(t, direction, "udp", local, REMOTE, msg(f"c{number}", body=body))
        while packing.pack_idle(t):
            pass
        while small.pack_idle(t):
            pass
    while packing.pack_idle(t + 2 * IDLE_PACK):
        pass
    for number in range(5):
        rec = _ended(number, outcome[number])
        assert packing.finish(rec, 5.0) == plain.finish(rec, 5.0)
        assert small.finish(rec, 5.0) == small_plain.finish(rec, 5.0)


def test_a_snapshots_trace_counts_are_checked_like_any_worker_input() -> None:
    from sipload.cluster.checks import check_snapshot

    snap: dict[str, Any] = {
        "t": 1.0, "worker": 0, "started": 1, "succeeded": 1, "failed": 0, "active": 0,
        "late": 0, "dropped": 0, "retransmissions": 0, "loop_lag_ms": 0.1, "cpu": 0.1,
        "target_rate": 1.0, "histograms": {}, "failures": {}, "codes": {}}
    assert check_snapshot(snap) is None  # a worker without traces sends none
    assert check_snapshot({**snap, "traces": {"held": 3, "packed": 0}}) is None
    for bad in ({"held": -1, "packed": 0}, {"held": 1}, {"held": 1, "packed": 2.5},
                {"held": 1, "packed": 0, "more": 1}, {"held": True, "packed": 0}, [1, 2]):
        assert check_snapshot({**snap, "traces": bad}) is not None, bad
    assert check_snapshot({**snap, "rss_mib": 61.5}) is None
    for bad_rss in (-1.0, "61", float("nan"), True, [1]):
        assert check_snapshot({**snap, "rss_mib": bad_rss}) is not None, bad_rss
