"""No per-call reference cycles, and lingering transactions that hold no parsed messages.

A worker runs with the cyclic garbage collector frozen and disabled (see
``sipload.transport.loop.tune_gc``): that is only safe while a call leaves nothing
behind that reference counting cannot free.  Each test here runs calls with the
collector disabled and then asks it what it would have found: ``gc.collect()``
returns the number of unreachable objects, which must be 0.  Every path a call
can end by is covered: answered and hung up, rejected, cancelled, unanswered
(Timer B), the BYE unanswered (Timer F), a bad message, through the bare UA and
through the scenario interpreter, plus the interval histograms.  ``_cycles``
itself is checked to see a cycle made on purpose, so these tests can fail.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sipload.sip.parser import parse_message
from sipload.sip.transaction import ClientTransaction, ServerTransaction, TimerConfig, TxState
from sipload.stats.connintervals import connection_snapshot
from sipload.stats.histograms import decode_histogram, new_histogram
from sipload.stats.interval import IntervalAccountant
from sipload.stats.records import CallRecord
from sipload.transport.selfsigned import loopback_certificate, server_context_from_pem
from sipload.ua.events import EventType as E
from tests.scenario_pair import ScenarioPair, program
from tests.test_transaction import request, response
from tests.uapair import Pair

T = TimerConfig()


@contextmanager
def _collector_off() -> Iterator[None]:
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _cycles(work: Callable[[], None]) -> int:
    """Objects the cyclic collector finds unreachable after ``work`` ran with it off."""
    with _collector_off():
        work()
        return gc.collect()


def test_cycles_sees_a_cycle_made_on_purpose() -> None:
    def leak() -> None:
        a: list[object] = []
        a.append(a)

    assert _cycles(leak) >= 1


# ------------------------------------------------------------------ the bare UA

INVITE_TO, INVITE_FROM = "<sip:bob@127.0.0.1:5072>", "<sip:alice@127.0.0.1:5071>"


ANSWERED, BUSY, RINGING = (180, 200), (180, 486), (180,)


def _call(p: Pair, bob_sends: tuple[int, ...], *, hang_up: bool = True,
          cancel: bool = False) -> None:
    """One call alice -> bob; bob answers the INVITE with ``bob_sends`` (none: never);
    alice then hangs up an answered call or (``cancel``) cancels it: bob answers 487."""
    a, b = p.alice, p.bob
    cid = a.call_send_initial_invite(a.call_build_initial_invite(INVITE_TO, INVITE_FROM), p.now)
    p.transfer()
    for ev in p.events(b):
        if ev.type == E.CALL_INVITE:
            for status in bob_sends:
                b.call_send_answer(ev.tid, status, None, p.now)
    p.transfer()
    for ev in p.events(a):
        if ev.type == E.CALL_ANSWERED and hang_up:
            a.call_send_ack(ev.did, None, p.now)
            a.call_terminate(cid, ev.did, p.now)
    if cancel:
        a.call_terminate(cid, 0, p.now)
    p.transfer()
    p.events(a)
    p.events(b)


def _settle(p: Pair) -> None:
    p.advance(40.0)  # every guard timer (64·T1 = 32 s) has fired
    p.events(p.alice)
    p.events(p.bob)
    assert p.alice.transaction_count() == p.bob.transaction_count() == 0
    assert p.alice.call_count() == p.bob.call_count() == 0


def _pair_cycles(calls: Callable[[Pair], None]) -> tuple[int, Pair]:
    """What the collector finds after ``calls`` ran on a fresh pair and every timer
    fired; one call of each kind first (caches and interned strings are not per call)."""
    p = Pair()
    _call(p, ANSWERED)
    _call(p, BUSY)
    _settle(p)

    def work() -> None:
        calls(p)
        _settle(p)

    return _cycles(work), p


def test_no_cycles_answered_and_rejected_calls() -> None:
    def calls(p: Pair) -> None:
        for i in range(100):
            _call(p, BUSY if i % 3 == 0 else ANSWERED)
            p.advance(0.01)

    assert _pair_cycles(calls)[0] == 0


def test_no_cycles_cancelled_calls() -> None:
    def calls(p: Pair) -> None:
        for _ in range(50):
            _call(p, RINGING, cancel=True)

    assert _pair_cycles(calls)[0] == 0


def test_no_cycles_on_timeouts_and_bad_messages() -> None:
    def calls(p: Pair) -> None:
        p.drop_to_bob = lambda data: True  # Timer B: no answer at all
        for _ in range(20):
            _call(p, ())
        p.advance(40.0)
        p.drop_to_bob = None
        for _ in range(20):  # answered, then the BYE is lost: Timer F
            p.drop_to_bob = None
            _call(p, ANSWERED, hang_up=False)
            p.drop_to_bob = lambda data: data.startswith(b"BYE")
            for cid in list(p.alice.state.calls):
                cd = p.alice.state.calls[cid].first_dialog()
                assert cd is not None
                p.alice.call_send_ack(cd.did, None, p.now)
                p.alice.call_terminate(cid, cd.did, p.now)
            p.transfer()
        p.advance(40.0)
        p.drop_to_bob = None
        for cid in list(p.bob.state.calls):  # bob never got those BYEs: his BYE gets 481
            p.bob.call_terminate(cid, 0, p.now)
        p.transfer()
        for _ in range(20):  # bytes that are not SIP, and a response for nothing
            p.bob.receive(b"\x00garbage", ("udp", "127.0.0.1", 5071), p.now)
            p.alice.receive(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKnone\r\n"
                            b"Content-Length: 0\r\n\r\n", ("udp", "127.0.0.1", 5072), p.now)
        p.events(p.alice)
        p.events(p.bob)
        p.bob.outgoing()
        p.alice.outgoing()

    found, p = _pair_cycles(calls)
    assert found == 0
    assert p.alice.bad_messages >= 20 and p.bob.bad_messages >= 20


# ------------------------------------------------------------------ the interpreter


def _scenario_cycles(uac: str, uas: str) -> int:
    sp = ScenarioPair(program(uac), program(uas))
    sp.run(calls=3)
    sp.pair.advance(40.0)
    sp.pump()

    def calls() -> None:
        sp.run(calls=60)
        sp.pair.advance(40.0)
        sp.pump()
        assert len(sp.records) == 63 and all(r.result.value == "success" for r in sp.records)
        sp.records.clear()
        sp.uas_records.clear()

    return _cycles(calls)


def test_no_cycles_scenario_basic_call() -> None:
    assert _scenario_cycles("basic_call.yaml", "basic_call_uas.yaml") == 0


def test_no_cycles_scenario_busy_and_cancel() -> None:
    assert _scenario_cycles("busy.yaml", "busy_uas.yaml") == 0
    assert _scenario_cycles("cancel_ringing.yaml", "cancel_ringing_uas.yaml") == 0


# ------------------------------------------------------------------ the interval histograms


def test_no_cycles_interval_snapshots() -> None:
    acc = IntervalAccountant(0)

    def intervals() -> None:
        for i in range(20):
            rec = CallRecord(i, float(i), float(i), float(i))
            rec.marks["answer"] = 0.004
            rec.marks["pdd"] = 0.002
            acc.call_ended(rec)
            acc.snapshot(float(i), active=0, retransmissions=0, cpu=0.0, wall=float(i),
                         loop_lag=0.0, target_rate=1.0, codes={})
            acc.take_batch()

    intervals()  # the first snapshot makes the histograms; later ones reuse them
    assert _cycles(intervals) == 0


def test_no_cycles_connection_snapshots() -> None:
    """A stream transport's worker takes a connections map every second: with or without
    handshakes in it, none may leave a histogram (a cycle with its encoder) behind."""
    counts = {"opened": 3, "handshakes": 2}

    def snapshots() -> None:
        for i in range(20):
            connection_snapshot(counts, [], {})  # TCP: no handshakes
            connection_snapshot(counts, [1500 + i, 90_000, 0, 10**13], {"x": 1})  # TLS

    snapshots()
    assert _cycles(snapshots) == 0


def test_connection_snapshot_histogram_is_the_intervals_only() -> None:
    """The histogram made once is emptied after each snapshot: each map encodes its own
    interval's handshakes, the same as a new histogram would (values clamped in range)."""
    first = connection_snapshot({}, [1500, 90_000, 0], {})
    second = connection_snapshot({}, [7, 10**13], {})
    assert "histogram" not in connection_snapshot({}, [], {})
    for snap, values in ((first, [1500, 90_000, 1]), (second, [7, 3_600_000_000])):
        expected = new_histogram()
        for v in values:
            expected.record_value(v)
        got = decode_histogram(snap["histogram"])
        assert got.get_total_count() == len(values)
        assert list(got.counts) == list(expected.counts)


# ------------------------------------------------------------------ lingering transactions


def test_client_transaction_slimmed_keeps_matching_and_ack() -> None:
    invite = request("INVITE")
    sent = invite.to_bytes()
    tx = ClientTransaction(invite, reliable=False, timers=T, now=0.0)
    tx.start(0.0)
    tx.outgoing.clear()
    final = response(486)
    assert tx.receive(final, 0.1) is final and tx.state == TxState.COMPLETED
    ack = tx.outgoing.pop()
    tx.slim()
    assert tx.slimmed and tx.last_response is None and tx.ack is None
    assert tx.last_status == 486 and tx.method == "INVITE"
    assert tx.answers(response(486))
    other = parse_message(response(486).to_bytes().replace(b"314159 INVITE", b"7 INVITE"))
    assert not tx.answers(other)  # type: ignore[arg-type]
    assert tx.receive(response(486), 0.2) is None and tx.outgoing == [ack]  # ACK again
    assert tx.request.to_bytes() == sent  # parsed again from the bytes sent


def test_server_transaction_slimmed_resends_its_final() -> None:
    invite = request("BYE")
    tx = ServerTransaction(invite, reliable=False, timers=T, now=0.0)
    final = response(200, "BYE")
    tx.send_response(final, 0.0)
    sent = tx.outgoing.pop()
    tx.slim()
    assert tx.slimmed and tx.last_response is None and tx.last_status == 200
    assert tx.receive_request(request("BYE"), 1.0) is False and tx.outgoing == [sent]
    assert tx.request.to_bytes() == invite.to_bytes()


def test_ua_slims_what_lingers() -> None:
    p = Pair()
    _call(p, ANSWERED)
    _call(p, BUSY)
    left = list(p.alice.state.tx.values()) + list(p.bob.state.tx.values())
    assert left, "the INVITE and BYE transactions linger (Timers M, K, L, J)"
    assert all(rec.tx.lingering and rec.tx.slimmed for rec in left)
    _settle(p)


# ------------------------------------------------------------------ the engine, on sockets

NOPAUSE = Path(__file__).resolve().parent.parent / "bench" / "basic_call_nopause.yaml"


_CERT = loopback_certificate()
"""The UAS's certificate and key for the TLS runs (PEM), made once."""


def _engine_garbage(calls: int, *, transport: str = "udp", rate: float = 400.0,
                    snapshot_every: float = 1.0) -> int:
    """Run ``calls`` basic calls UAC engine -> UAS engine on loopback with the
    collector off; what it then finds, the engines (and their lingering
    transactions) still referenced."""
    import asyncio
    from typing import Any

    from sipload.engine import Engine, EngineConfig
    from sipload.scenario.loader import load_file

    records: list[dict[str, Any]] = []
    keep: list[object] = []

    async def go() -> None:
        tls = server_context_from_pem(*_CERT) if transport == "tls" else None
        uas = Engine(EngineConfig(program=None, local_host="127.0.0.1", local_port=0,
                                  transport=transport, snapshot_every=snapshot_every,
                                  tls_server=tls),
                     on_records=lambda batch: None)
        _, port = await uas.start()
        served = asyncio.ensure_future(uas.run())
        uac = Engine(EngineConfig(program=load_file(NOPAUSE), target=("127.0.0.1", port),
                                  transport=transport, calls=calls, rate=rate, seed=1,
                                  snapshot_every=snapshot_every,
                                  # TLS: a handshake a call, timed into the connections map
                                  connections="per-call" if tls else "shared",
                                  tls_cadata=_CERT[0] if tls else None),
                     on_records=records.extend)
        keep.extend((uac, uas))
        await asyncio.wait_for(uac.run(), 60)
        uas.request_stop(0.0)
        await asyncio.wait_for(served, 30)

    with _collector_off():
        loop = asyncio.new_event_loop()
        keep.append(loop)
        loop.run_until_complete(go())
        found = gc.collect()
        loop.close()
    keep.clear()
    assert len(records) == calls and all(r["result"] == "success" for r in records)
    return found


def test_engine_leaves_no_garbage_per_call() -> None:
    """What a run leaves (the loop, the engines' own cycles) does not grow with calls."""
    _engine_garbage(20)  # imports, caches
    few = _engine_garbage(40)
    many = _engine_garbage(400)
    assert many - few < 40, (few, many)  # 360 calls more: not one object per call


@pytest.mark.parametrize("transport", ["udp", "tcp", "ws", "tls"])
def test_engine_leaves_no_garbage_per_snapshot(transport: str) -> None:
    """A worker runs with the collector off for hours: what it does once a second (the
    interval snapshot, its histograms, a stream transport's connections map) may leave
    nothing behind either.  The same 20 calls, in 0.05 s with one snapshot and in 1 s
    with one every 20 ms (~50 on each side): a new HdrHistogram per connections map
    (~185 KiB each, a cycle with its encoder) once left ~6 objects a snapshot over TCP."""
    _engine_garbage(20, transport=transport)  # imports, caches
    few = _engine_garbage(20, transport=transport)
    many = _engine_garbage(20, transport=transport, rate=20.0, snapshot_every=0.02)
    assert many - few < 40, (few, many)


# ------------------------------------------------------------------ held calls

HOLD = """
name: gc-hold
role: uac
steps:
  - send: INVITE
    body: {sdp: offer}
  - recv: 100
    optional: true
  - recv: [180, 183]
    optional: true
  - recv: 200
  - send: ACK
  - pause: 3600s
  - send: BYE
    headers: {X-Last: "%s"}
  - recv: 200
"""


def _held_lasts(text: str) -> list[object]:
    sp = ScenarioPair(program(text), program("basic_call_uas.yaml"))
    sp.run(calls=5, until=2.0)
    insts = list(sp.uac._instances.values())
    assert len(insts) == 5 and all(i.waiting == "pause" for i in insts)
    return [leg.last for i in insts for leg in i.legs.values()]


def test_held_call_keeps_no_parsed_message() -> None:
    assert _held_lasts(HOLD % "none") == [None] * 5


def test_held_call_keeps_the_last_message_a_template_reads() -> None:
    lasts = _held_lasts(HOLD % "${last_status}")
    assert len(lasts) == 5 and all(last is not None for last in lasts)


def test_empty_params_and_uri_headers_share_one_list() -> None:
    from sipload.sip.grammar import Params
    from sipload.sip.uri import SipUri, parse_uri

    a, b = Params(), Params([])
    assert a.items is b.items  # a held call's parameterless addresses cost no list each
    a.set("lr", None)
    assert a.items == [("lr", None)] and b.items == [] and Params().items == []
    u, v = parse_uri("sip:x@example.com"), parse_uri("sip:y@example.com;transport=tcp")
    assert isinstance(u, SipUri) and isinstance(v, SipUri) and u.headers is v.headers == []
    assert u.params.items is Params().items and v.params.get("transport") == "tcp"
