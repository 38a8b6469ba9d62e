"""messages.pcap (stats/pcap.py) is what Wireshark's own reader makes of it: tshark finds
each message's addresses, ports, transport, time and Call-ID, over IPv4 and IPv6, UDP
and TCP, with valid checksums; a message cut by the trace cap is a short capture."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sipload.stats.pcap import PcapWriter
from sipload.stats.rundir import PCAP, RunWriter, read_traces
from tests.peers import tshark_fields

HOSTILE = b'<script>alert("x")</script> \x1b[31m & \x00'


def sip(call_id: str, first: bytes = b"INVITE sip:bob@example.com SIP/2.0",
        body: bytes = b"") -> bytes:
    return (first + b"\r\nVia: SIP/2.0/UDP host;branch=z9hG4bK" + call_id.encode() +
            b"\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n"
            b"Call-ID: " + call_id.encode() + b"\r\nCSeq: 1 INVITE\r\nX-Hostile: " +
            HOSTILE.replace(b"\x00", b"") + b"\r\nContent-Length: " +
            str(len(body)).encode() + b"\r\n\r\n" + body)


CASES = [
    ("udp", ("127.0.0.1", 5061), ("127.0.0.2", 5060)),
    ("udp", ("::1", 5061), ("::1", 5060)),
    ("tcp", ("127.0.0.1", 40001), ("127.0.0.1", 5060)),
    ("tcp", ("::1", 40002), ("::1", 5060)),
    ("tls", ("127.0.0.1", 40003), ("127.0.0.1", 5061)),
]


def test_tshark_reads_every_message(tmp_path: Path) -> None:
    f = tmp_path / "m.pcap"
    with f.open("wb") as out:
        w = PcapWriter(out)
        w.write_header()
        for i, (transport, a, b) in enumerate(CASES):
            ts = 1_700_000_000.0 + i + 0.123456
            assert w.message(ts, transport, a, b, sip(f"call{i}", body=b"v=0\r\n"))
            assert w.message(ts + 0.0005, transport, b, a,
                             sip(f"call{i}", b"SIP/2.0 503 Service Unavailable"))
        assert not w.message(0.0, "udp", ("pbx.example.com", 5060), a, b"x")
        assert w.skipped == 1 and w.packets == 2 * len(CASES)
    rows = tshark_fields(f, ["frame.time_epoch", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst",
                             "udp.srcport", "tcp.srcport", "udp.dstport", "tcp.dstport",
                             "sip.Call-ID", "sip.Method", "sip.Status-Code",
                             "udp.checksum.status", "tcp.checksum.status"],
                         "sip", ("-o", "udp.check_checksum:TRUE",
                                 "-o", "tcp.check_checksum:TRUE"))
    assert len(rows) == 2 * len(CASES), rows
    for i, (transport, a, b) in enumerate(CASES):
        for j, (src, dst) in enumerate(((a, b), (b, a))):
            r = rows[2 * i + j]
            assert float(r[0]) == pytest.approx(1_700_000_000.0 + i + 0.123456 + j * 0.0005,
                                                abs=2e-6)
            assert (r[1] or r[2], r[3] or r[4]) == (src[0], dst[0])
            assert (r[5] or r[6], r[7] or r[8]) == (str(src[1]), str(dst[1]))
            assert r[9] == f"call{i}"
            assert (r[10], r[11]) == (("INVITE", "") if j == 0 else ("", "503"))
            assert r[12 if transport == "udp" else 13] == "1"  # checksum good


def test_a_cut_message_is_a_short_capture(tmp_path: Path) -> None:
    f = tmp_path / "m.pcap"
    whole = sip("cut", body=b"x" * 500)
    with f.open("wb") as out:
        w = PcapWriter(out)
        w.write_header()
        w.message(1.0, "udp", ("127.0.0.1", 1), ("127.0.0.1", 2), whole[:200], len(whole))
    rows = tshark_fields(f, ["frame.len", "frame.cap_len", "udp.length"])
    assert rows == [[str(28 + len(whole)), str(28 + 200), str(8 + len(whole))]]


def test_tcp_sequence_numbers_continue_per_direction() -> None:
    buf = io.BytesIO()
    w = PcapWriter(buf)
    a, b = ("127.0.0.1", 40000), ("127.0.0.1", 5060)
    for n in (10, 20, 30):
        w.message(1.0, "tcp", a, b, b"x" * n)
    w.message(1.0, "tcp", b, a, b"y" * 7)
    data = buf.getvalue()
    seqs = []
    at = 0
    while at < len(data):
        caplen = int.from_bytes(data[at + 8:at + 12], "little")
        pkt = data[at + 16:at + 16 + caplen]
        seqs.append((int.from_bytes(pkt[24:28], "big"), int.from_bytes(pkt[28:32], "big")))
        at += 16 + caplen
    assert seqs == [(1, 1), (11, 1), (31, 1), (1, 61)]


def test_run_writer_keeps_traces_as_bytes_and_skips_malformed_ones(tmp_path: Path) -> None:
    w = RunWriter(tmp_path)
    w.open_traces()
    good = {"worker": 1, "call_number": 7, "call_id": "c7", "dropped": 2, "epoch": 100.0,
            "messages": [[0.5, "out", "udp", "127.0.0.1", 5061, "127.0.0.1", 5060, 40,
                          sip("c7")[:40]],
                         [0.6, "in", "udp", "127.0.0.1", 5061, "127.0.0.1", 5060,
                          len(sip("c7")), sip("c7")]]}
    bad = [{"worker": 1}, {**good, "messages": [[0.5, "sideways", "udp", "h", 1, "h", 2, 3,
                                                  b"x"]]},
           {**good, "messages": [[0.5, "out", "udp", "h", 1, "h", 2, 3, "text, not bytes"]]}]
    assert w.append_traces([*bad, good]) == 2
    assert w.bad_traces == 3 and w.traced_calls == 1
    w.close()
    t = read_traces(tmp_path).to_pylist()
    assert [(r["seq"], r["direction"], r["ts"], r["length"], r["dropped"]) for r in t] == [
        (0, "out", 100.5, 40, 2), (1, "in", 100.6, len(sip("c7")), 2)]
    assert t[1]["data"] == sip("c7") and HOSTILE.replace(b"\x00", b"") in t[1]["data"]
    rows = tshark_fields(tmp_path / PCAP, ["ip.src", "udp.srcport", "frame.cap_len"])
    assert [r[:2] for r in rows] == [["127.0.0.1", "5061"], ["127.0.0.1", "5060"]]
