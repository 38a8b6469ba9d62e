"""Many source addresses (``--source-addresses``): parsing and checking the flag, the
user agent's local addresses, whole runs that spread calls over 127.0.0.0/8 (a UAS of
this file records where each request came from and what it carried), and SIPp's uas
answering calls from several addresses.

Linux routes all of 127.0.0.0/8 to loopback, so no alias is needed.
"""

from __future__ import annotations

import json
import re
import socket
from collections import Counter
from pathlib import Path

import pytest

from sipload.cli.sources import MAX_SOURCES, SourceError, check, parse
from sipload.cluster.sources import share, split
from sipload.sip.build import make_response
from sipload.sip.message import Request
from sipload.sip.parser import parse_message
from sipload.stats.rundir import read_calls
from sipload.ua.agent import UAConfig, UserAgent
from sipload.ua.ids import IdGenerator
from tests.bgproc import Background, run, sipload
from tests.peers import LoopbackServer, free_port, sipp_uas, tshark_fields

REPO = Path(__file__).resolve().parent.parent
BASIC = REPO / "scenarios" / "basic_call.yaml"


# ================================================================ the flag (pure)


def test_ranges_lists_and_networks() -> None:
    assert parse("127.0.0.2-127.0.0.5") == ["127.0.0.2", "127.0.0.3", "127.0.0.4",
                                             "127.0.0.5"]
    assert parse("127.0.0.9, 127.0.0.7,127.0.0.9") == ["127.0.0.9", "127.0.0.7"]
    assert parse("127.0.1.0/30") == ["127.0.1.1", "127.0.1.2"]  # its host addresses
    assert len(parse("127.0.1.0/28")) == 14
    assert parse("127.0.0.2/32") == ["127.0.0.2"]
    assert parse("::1") == ["::1"]
    assert parse("[::1]") == ["::1"]
    assert parse("127.0.0.2-127.0.0.3,127.0.2.0/31") == ["127.0.0.2", "127.0.0.3",
                                                          "127.0.2.0", "127.0.2.1"]


@pytest.mark.parametrize(("text", "words"), [
    ("", "expected addresses"),
    ("127.0.0.2,", "expected addresses"),
    ("127.0.0.300", "not an IP address"),
    ("localhost", "not an IP address"),
    ("127.0.0.9-127.0.0.2", "ends before it starts"),
    ("127.0.0.2-::1", "mixes IPv4 and IPv6"),
    ("127.0.0.2,::1", "mixes IPv4 and IPv6"),
    ("127.0.0.0/33", "not a network"),
    ("127.0.0.0/8", "at most"),
    ("127.0.0.1-127.0.10.1", "at most"),
    (f"127.0.0.1/{32 - 10},127.1.0.0/22", "more than"),
])
def test_bad_lists_name_the_flag(text: str, words: str) -> None:
    with pytest.raises(SourceError, match=words) as e:
        parse(text)
    assert str(e.value).startswith("--source-addresses:")
    assert MAX_SOURCES == 1024


def test_addresses_must_be_bindable_and_of_the_targets_family() -> None:
    check(["127.0.0.2", "127.0.0.200"], "127.0.0.1")
    with pytest.raises(SourceError, match=r"cannot bind 192\.0\.2\.7"):
        check(["127.0.0.2", "192.0.2.7"], "127.0.0.1")  # TEST-NET-1: no host has it
    with pytest.raises(SourceError, match="IPv4 addresses cannot reach the IPv6 target"):
        check(["127.0.0.2"], "::1")


def test_each_worker_gets_its_own_share() -> None:
    addrs = [f"127.0.0.{i}" for i in range(2, 9)]  # 7 addresses
    shares = split(addrs, 3)
    assert shares == [["127.0.0.2", "127.0.0.5", "127.0.0.8"], ["127.0.0.3", "127.0.0.6"],
                      ["127.0.0.4", "127.0.0.7"]]
    assert sorted(a for s in shares for a in s) == sorted(addrs)  # each once
    assert split(addrs[:2], 3) == [["127.0.0.2"], ["127.0.0.3"], ["127.0.0.2"]]  # fewer
    assert share(shares, 4) == ("127.0.0.3", "127.0.0.6")  # a joined worker: round the list
    assert share([], 0) == ()


# ================================================================ the user agent (sans-IO)


def _ua() -> UserAgent:
    return UserAgent(UAConfig(host="127.0.0.2", port=5062), IdGenerator("t"))


def test_a_call_keeps_its_local_address_in_via_contact_and_every_message() -> None:
    ua = _ua()
    assert ua.add_local("127.0.0.3", 5063) == 1
    assert ua.locals[1] == ("127.0.0.3:5063", "<sip:sipload@127.0.0.3:5063>")
    ua.source = 1
    inv = ua.call_build_initial_invite("<sip:bob@127.0.0.1:5060>", "<sip:a@x>")
    cid = ua.call_send_initial_invite(inv, 0.0)
    ua.source = 0  # another call may start meanwhile: this one keeps its address
    out = ua.outgoing_from()
    assert len(out) == 1 and out[0][2] == 1
    sent = parse_message(out[0][0])
    assert isinstance(sent, Request)
    assert "127.0.0.3:5063" in sent.get("via") and sent.get("contact") == \
        "<sip:sipload@127.0.0.3:5063>"
    assert ua.call_local(cid) == 1
    ok = make_response(sent, 200, to_tag="b1")
    ok.add_header("Contact", "<sip:bob@127.0.0.1:5060>")
    ua.receive(ok.to_bytes(), ("udp", "127.0.0.1", 5060), 0.1, 1)
    dids = ua.call_dialogs(cid)
    ua.call_send_ack(dids[0], None, 0.1)
    ua.call_terminate(cid, 0, 0.2)
    rest = ua.outgoing_from()
    assert [m[2] for m in rest] == [1, 1]  # the ACK and the BYE leave from 127.0.0.3 too
    for data, _, _ in rest:
        msg = parse_message(data)
        assert "127.0.0.3:5063" in msg.get("via")


def test_a_request_is_answered_from_the_address_it_came_in_on() -> None:
    ua = _ua()
    ua.add_local("127.0.0.3", 5063)
    opts = (b"OPTIONS sip:sipload@127.0.0.3:5063 SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKo1\r\n"
            b"From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:sipload@127.0.0.3>\r\n"
            b"Call-ID: o1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    ua.receive(opts, ("udp", "127.0.0.1", 5060), 0.0, 1)
    ua.receive(opts.replace(b"o1", b"o2"), ("udp", "127.0.0.1", 5060), 0.0, 0)
    assert [m[2] for m in ua.outgoing_from()] == [1, 0]
    ua.receive(opts.replace(b"o1", b"o3"), ("udp", "127.0.0.1", 5060), 0.0, 1)
    assert len(ua.outgoing()) == 1  # plain outgoing() forgets the tags with the queue
    ua.receive(opts.replace(b"o1", b"o4"), ("udp", "127.0.0.1", 5060), 0.0, 0)
    assert [m[2] for m in ua.outgoing_from()] == [0]


# ================================================================ whole runs


class RecordingUas(LoopbackServer):
    """A UAS on 127.0.0.1 (UDP, or TCP with ``tcp=True``) that answers INVITE 200 (with
    SDP) and BYE 200, and records for each request: the address it came from, the host
    in its top Via and Contact, and the c= address of its SDP.  Threads; use ``with``."""

    def __init__(self, tcp: bool = False) -> None:
        super().__init__(tcp=tcp)
        self.seen: list[tuple[str, str, str, str, str]] = []  # method, src, via, contact, c=

    def _datagram(self, data: bytes, peer: tuple[str, int]) -> bytes | None:
        msg = parse_message(data)
        if not isinstance(msg, Request):
            return None
        via = re.search(r"SIP/2.0/(?:UDP|TCP) ([^:;]+)", msg.get("via") or "")
        contact = re.search(r"@([^:;>]+)", msg.get("contact") or "")
        c_line = re.search(rb"\r\nc=IN IP4 ([^\r]+)", msg.body)
        self.seen.append((msg.method, peer[0], via.group(1) if via else "",
                          contact.group(1) if contact else "",
                          c_line.group(1).decode() if c_line else ""))
        if msg.method == "ACK":
            return None
        resp = make_response(msg, 200, to_tag="uas1")
        if msg.method == "INVITE":
            tp = ";transport=tcp" if self.tcp else ""
            resp.add_header("Contact", f"<sip:uas@127.0.0.1:{self.port}{tp}>")
            resp.set_body(b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1"
                          b"\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
                          "application/sdp")
        return resp.to_bytes()

    def _connection(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        """Messages framed by Content-Length, each answered as a datagram would be."""
        buf = b""
        for chunk in self._chunks(conn):
            buf += chunk
            while True:
                head, sep, rest = buf.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", head)
                need = int(length.group(1)) if length else 0
                if not sep or len(rest) < need:
                    break
                answer = self._datagram(head + sep + rest[:need], peer)
                buf = rest[need:]
                if answer is not None:
                    conn.sendall(answer)


def test_calls_spread_over_each_workers_addresses(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with RecordingUas() as uas:
        done = run(sipload("run", BASIC, "--target", f"127.0.0.1:{uas.port}", "--calls", "24",
                           "--rate", "40", "--workers", "2", "--source-addresses",
                           "127.0.0.2-127.0.0.4,127.0.1.0/30", "--out", out), timeout=120)
        assert done.returncode == 0, done.stderr
    invites = [s for s in uas.seen if s[0] == "INVITE"]
    byes = [s for s in uas.seen if s[0] == "BYE"]
    assert len(invites) == 24 and len(byes) == 24
    for method, src, via, contact, c_line in uas.seen:
        assert via == src, (method, src, via)  # Via names the address it left from
        if method == "INVITE":
            assert contact == src and c_line == src, (src, contact, c_line)
    addrs = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.1.1", "127.0.1.2"]
    per_source = Counter(s[1] for s in invites)
    assert set(per_source) == set(addrs)
    # records: each worker called only from its own share, in turn over it
    calls = read_calls(out)
    by_worker: dict[int, Counter[str]] = {}
    for worker, source in zip(calls.column("worker").to_pylist(),
                              calls.column("source").to_pylist(), strict=True):
        by_worker.setdefault(worker, Counter())[source] += 1
    shares = split(addrs, 2)
    for worker, counts in by_worker.items():
        assert set(counts) == set(shares[worker]), (worker, counts)
        assert max(counts.values()) - min(counts.values()) <= 1  # round robin
    assert sum(sum(c.values()) for c in by_worker.values()) == 24
    assert Counter(calls.column("source").to_pylist()) == per_source
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sources"] == {a: {"calls": per_source[a], "succeeded": per_source[a]}
                                  for a in addrs}
    html = (out / "report.html").read_text()
    assert "Calls per source address" in html and "127.0.1.2" in html
    plan = json.loads((out / "plan.json").read_text())
    assert plan["source_shares"] == shares


def test_tcp_connections_are_bound_to_each_calls_address(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with RecordingUas(tcp=True) as uas:
        done = run(sipload("run", BASIC, "--target", f"127.0.0.1:{uas.port}", "--transport",
                           "tcp", "--calls", "6", "--rate", "20", "--workers", "1",
                           "--source-addresses", "127.0.0.8,127.0.0.9", "--out", out),
                   timeout=120)
        assert done.returncode == 0, done.stderr
    assert Counter(s[1] for s in uas.seen if s[0] == "INVITE") == Counter(
        {"127.0.0.8": 3, "127.0.0.9": 3})
    for method, src, via, contact, _ in uas.seen:
        assert via == src and (method != "INVITE" or contact == src), (method, src, via)


def test_bad_source_addresses_stop_the_run_before_anything_is_sent(tmp_path: Path) -> None:
    for text, words in (("192.0.2.7", "cannot bind 192.0.2.7"),
                        ("127.0.0.2-127.0.0.x", "not an IP address"),
                        ("127.0.0.2,::1", "mixes IPv4 and IPv6"),
                        ("127.0.0.0/8", "at most"),
                        ("::1", "cannot reach the IPv4 target")):
        out = tmp_path / re.sub(r"\W", "_", text)
        with RecordingUas() as uas:
            done = run(sipload("run", BASIC, "--target", f"127.0.0.1:{uas.port}", "--calls",
                               "2", "--source-addresses", text, "--out", out), timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("sipload run: --source-addresses:") and words in \
            done.stderr, done.stderr
        assert done.stderr.count("\n") == 1
        assert not out.exists() and uas.seen == []


def test_sipp_uas_answers_calls_from_several_addresses(tmp_path: Path) -> None:
    port = free_port("udp")
    out = tmp_path / "run"
    with sipp_uas(port, trace_msg=True, workdir=tmp_path / "sipp") as uas:
        done = run(sipload("run", BASIC, "--target", f"127.0.0.1:{port}", "--calls", "12",
                           "--rate", "20", "--workers", "1", "--source-addresses",
                           "127.0.0.5-127.0.0.7", "--out", out), timeout=120)
        assert done.returncode == 0, done.stderr + uas.describe()
        log = uas.messages
    summary = json.loads((out / "summary.json").read_text())
    assert summary["calls"]["succeeded"] == 12
    assert summary["sources"] == {a: {"calls": 4, "succeeded": 4}
                                  for a in ("127.0.0.5", "127.0.0.6", "127.0.0.7")}
    # SIPp saw each INVITE come from the address its Via names
    seen = re.findall(r"UDP message received \[\d+\] bytes :\s+INVITE .*?\nVia: SIP/2.0/UDP "
                      r"([\d.]+):", log, re.S)
    assert Counter(seen) == Counter({"127.0.0.5": 4, "127.0.0.6": 4, "127.0.0.7": 4})


def test_rtp_leaves_from_and_comes_back_to_each_calls_address(tmp_path: Path) -> None:
    """With media, each source address has its own RTP socket: the SDP offers it, and
    the embedded UAS's RTP (sent to that address) arrives, or the media check fails."""
    out = tmp_path / "run"
    done = run(sipload("run", REPO / "scenarios" / "media_call.yaml", "--calls", "6", "--rate",
                       "6", "--workers", "1", "--source-addresses", "127.0.0.2-127.0.0.4",
                       "--trace", "all", "--out", out), timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sources"] == {a: {"calls": 2, "succeeded": 2}
                                  for a in ("127.0.0.2", "127.0.0.3", "127.0.0.4")}
    assert summary["media"]["streams"] == 6
    rows = tshark_fields(out / "messages.pcap", ["ip.src", "sdp.connection_info",
                                                 "sdp.media"], "sip.Method == INVITE")
    ports: dict[str, set[str]] = {}
    for src, c_line, m_line in rows:
        assert c_line == f"IN IP4 {src}", (src, c_line)
        ports.setdefault(src, set()).add(m_line.split()[1])
    assert len(ports) == 3 and all(len(p) == 1 for p in ports.values())  # one RTP port each


def test_ipv6_loopback_alone(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    with Background(sipload("uas", "--listen", f"[::1]:{port}"), ready="listening on",
                    ready_timeout=30) as uas:
        done = run(sipload("run", BASIC, "--target", f"[::1]:{port}", "--calls", "3",
                           "--source-addresses", "::1", "--out", out), timeout=120)
        uas.stop()
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "summary.json").read_text())["sources"] == {
        "::1": {"calls": 3, "succeeded": 3}}
