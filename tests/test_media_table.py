"""The worker's media table, sans-IO: which call a received datagram belongs to."""

from __future__ import annotations

import itertools

from sipload.media.negotiate import StreamPlan
from sipload.media.rtp import build_rtp
from sipload.media.table import MediaSpec, MediaTable

FAR = ("127.0.0.1", 40000)


def _table() -> MediaTable:
    bits = itertools.count(1000)
    return MediaTable(0.0, 0.0, lambda: next(bits), "t@test")


def _plan(remote: tuple[str, int] = FAR, remote_ssrc: int = -1) -> StreamPlan:
    return StreamPlan("PCMU", 0, -1, remote, True, True, 20, remote_ssrc)


def _packet(ssrc: int, seq: int) -> bytes:
    return build_rtp(0, seq, seq * 160, ssrc, bytes(160))


def test_one_far_port_for_every_call_is_told_apart_by_latched_ssrc() -> None:
    """SIPp's rtp_stream sends every call from one port and announces no SSRC: each new
    SSRC binds to the oldest call at that address that has none yet."""
    table = _table()
    spec = MediaSpec(echo=True)
    table.start(1, spec, _plan(), 0.0)
    for seq in range(5):  # call 1 alone at the address: latched by address
        assert table.on_rtp(_packet(0xCA110000, seq), FAR, seq * 0.02) is not None
    table.start(2, spec, _plan(), 0.1)
    table.start(3, spec, _plan(), 0.2)
    for seq in range(5, 10):
        for n, ssrc in enumerate((0xCA110000, 0xCA110001, 0xCA110002)):
            if ssrc == 0xCA110000 or seq >= 5 + n:  # streams start in call order
                table.on_rtp(_packet(ssrc, seq), FAR, seq * 0.02)
    got = {key: table.calls[key].stats.received for key in (1, 2, 3)}
    assert got == {1: 10, 2: 4, 3: 3}
    assert table.foreign == 0 and table.echoed_unattributed == 0
    # a fourth SSRC fits no call: echoed (the address is an echo call's) but not counted
    table.on_rtp(_packet(0xCA110003, 1), FAR, 1.0)
    assert table.echoed_unattributed == 1
    assert [table.calls[k].stats.received for k in (1, 2, 3)] == [10, 4, 3]


def test_announced_ssrc_is_not_replaced_and_stop_forgets_latches() -> None:
    table = _table()
    spec = MediaSpec(play="silence")
    table.start(1, spec, _plan(remote_ssrc=77), 0.0)
    table.start(2, spec, _plan(), 0.0)
    table.on_rtp(_packet(77, 1), FAR, 0.0)
    table.on_rtp(_packet(88, 1), FAR, 0.0)  # unknown: the call without an SSRC takes it
    assert table.calls[1].stats.received == 1 and table.calls[2].stats.received == 1
    assert table.calls[2].remote_ssrc == 88
    table.stop(2, 1.0)
    table.on_rtp(_packet(88, 2), FAR, 1.0)
    assert table.foreign == 1  # its stream ended with the call: no one to bind it to
    assert table.calls[1].stats.received == 1


def test_a_malformed_packet_binds_no_ssrc() -> None:
    table = _table()
    table.start(1, MediaSpec(play="silence"), _plan(), 0.0)
    table.start(2, MediaSpec(play="silence"), _plan(), 0.0)
    lie = bytearray(_packet(0x5555, 1))
    lie[0] |= 0x20  # padding bit, last byte 0: a padding lie
    table.on_rtp(bytes(lie), FAR, 0.0)
    assert table.calls[1].remote_ssrc == -1 and table.calls[2].remote_ssrc == -1
    table.on_rtp(_packet(0x6666, 1), FAR, 0.0)
    assert table.calls[1].remote_ssrc == 0x6666


def test_a_batch_is_routed_with_its_stamps_and_echoes_collected() -> None:
    """on_rtp_batch: each datagram as on_rtp would take it, stamps moved by the offset;
    the fast header path and the full parser agree on what they count."""
    table = _table()
    table.start(1, MediaSpec(echo=True), _plan(remote_ssrc=5), 0.0)
    table.start(2, MediaSpec(play="silence"), _plan(("127.0.0.1", 40002), remote_ssrc=6), 0.0)
    odd = build_rtp(0, 3, 480, 5, bytes(160), csrcs=(9,), padding=4)  # the parser's path
    batch = [(_packet(5, 1), FAR, 100.02), (_packet(5, 2), FAR, 100.04), (odd, FAR, 100.06),
             (_packet(6, 1), ("127.0.0.1", 40002), 100.05), (b"\x80\x00", FAR, 100.07),
             (_packet(5, 4), ("127.0.0.9", 1), 100.08)]
    echoes: list[bytes] = []
    dests: list[tuple[str, int]] = []
    table.on_rtp_batch(batch, 100.0, echoes, dests)
    echo_call, player = table.calls[1].stats, table.calls[2].stats
    assert echo_call.received == 3 and echo_call.lost == 0 and echo_call.payload_bytes == 480
    assert abs(echo_call.last_arrival - 0.06) < 1e-9 and abs(echo_call.longest_gap - 0.02) < 1e-9
    assert player.received == 1
    assert echoes == [batch[0][0], batch[1][0], odd] and dests == [FAR] * 3
    assert echo_call.foreign == 1  # its SSRC from another address
    assert echo_call.malformed == 1  # too short for RTP, from the call's address


def test_an_echo_after_the_call_stopped_is_latched_by_no_other_call() -> None:
    """SIPp -rtp_echo returns every call's packets from one port and announces no SSRC:
    a packet of a stopped call still in flight must not bind to a running call."""
    table = _table()
    spec = MediaSpec(play="silence")
    table.start(1, spec, _plan(), 0.0)
    table.start(2, spec, _plan(), 0.0)
    own1, own2 = table.calls[1].ssrc, table.calls[2].ssrc
    table.on_rtp(_packet(own1, 1), FAR, 0.02)  # our own SSRC comes back: call 1's
    table.stop(1, 0.03)
    table.on_rtp(_packet(own1, 2), FAR, 0.04)  # in flight at the stop
    table.on_rtp(_packet(own2, 1), FAR, 0.05)
    stats = table.calls[2].stats
    assert stats.received == 1 and stats.ssrc_changes == 0 and stats.ssrc == own2
    assert table.after_stop == 1 and table.foreign == 0
