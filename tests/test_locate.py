"""Locating the target (RFC 3263): server ordering, DNS lookups against a DNS server
this test starts on loopback (dnslib), and whole runs that fail over.

The DNS server answers from a zone written in each test; nothing leaves loopback.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSServer

from sipload.sip.servers import Server, ServerSet
from sipload.stats.rundir import read_calls
from sipload.transport.dns import LocateError, locate, make_resolver, parse_wanted
from tests.bgproc import Background, run, sipload
from tests.peers import free_port

REPO = Path(__file__).resolve().parent.parent
BASIC = REPO / "scenarios" / "basic_call.yaml"


# ================================================================ ordering (pure)


def test_priority_first_then_weight_shares() -> None:
    rng = random.Random(7)
    servers = [Server("udp", "10.0.0.1", 5060, 10, 0, "dead"),
               Server("udp", "10.0.0.2", 5060, 20, 3, "a"),
               Server("udp", "10.0.0.3", 5060, 20, 1, "b")]
    ss = ServerSet("Example.COM", servers, rng.random)
    assert ss.name == "example.com"
    firsts: Counter[str] = Counter()
    for _ in range(4000):
        order = ss.pick()
        assert order[0] == ("udp", "10.0.0.1", 5060)  # priority 10 always first
        assert sorted(order[1:]) == [("udp", "10.0.0.2", 5060), ("udp", "10.0.0.3", 5060)]
        firsts[order[1][1]] += 1
    share = firsts["10.0.0.2"] / 4000
    assert 0.70 < share < 0.80  # weight 3 of 4


def test_weight_zero_is_drawn_last_unless_alone() -> None:
    rng = random.Random(1)
    ss = ServerSet("x", [Server("udp", "10.0.0.1", 1, 0, 0, "zero"),
                         Server("udp", "10.0.0.2", 1, 0, 5, "five")], rng.random)
    seconds = Counter(ss.pick()[1][1] for _ in range(500))
    assert seconds["10.0.0.1"] > 490  # drawn first only when the draw is exactly 0
    alone = ServerSet("y", [Server("tcp", "10.0.0.9", 1, 0, 0, "z")], rng.random)
    assert alone.pick() == [("tcp", "10.0.0.9", 1)]


def test_addresses_of_one_target_stay_together() -> None:
    ss = ServerSet("x", [Server("udp", "10.0.0.1", 1, 0, 1, "a"),
                         Server("udp", "10.0.0.2", 1, 0, 1, "a"),
                         Server("udp", "10.0.0.3", 2, 0, 1, "b")], random.Random(3).random)
    for _ in range(50):
        order = [p[1] for p in ss.pick()]
        i = order.index("10.0.0.1")
        assert order[i + 1] == "10.0.0.2"


def test_naptr_rank_comes_before_srv_priority() -> None:
    ss = ServerSet("x", [Server("tcp", "10.0.0.1", 1, 0, 1, "t", rank=1),
                         Server("udp", "10.0.0.2", 1, 50, 1, "u", rank=0)],
                   random.Random(2).random)
    assert [p[0] for p in ss.pick()] == ["udp", "tcp"]


def test_an_empty_set_is_refused() -> None:
    with pytest.raises(ValueError, match="no server"):
        ServerSet("x", [], random.random)


# ================================================================ a DNS server on loopback


class ZoneResolver(BaseResolver):  # type: ignore[misc]
    """Answers from a list of zone-file records; NXDOMAIN for names it has none of."""

    def __init__(self, zone: str) -> None:
        self.rrs = RR.fromZone(zone)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        q = request.q
        names = {str(rr.rname).lower() for rr in self.rrs}
        for rr in self.rrs:
            if str(rr.rname).lower() == str(q.qname).lower() and (
                    q.qtype == rr.rtype or q.qtype == QTYPE.ANY):
                reply.add_answer(rr)
        if not reply.rr and str(q.qname).lower() not in names:
            reply.header.rcode = 3  # NXDOMAIN
        return reply


class Dns:
    """A DNS server on 127.0.0.1:port answering from ``zone``."""

    def __init__(self, zone: str) -> None:
        self.port = free_port("udp")
        self.server = DNSServer(ZoneResolver(zone), address="127.0.0.1", port=self.port,
                                logger=_Quiet())

    def __enter__(self) -> Dns:
        self.server.start_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self.server.server.server_close()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


def _zone(ports: dict[str, int]) -> str:
    """example.test: NAPTR -> SRV (udp) with a dead, a 503 and two live servers; other
    names for the bad-answer tests."""
    return f"""
example.test. 60 IN NAPTR 10 50 "s" "SIP+D2U" "" _sip._udp.example.test.
example.test. 60 IN NAPTR 20 50 "s" "SIP+D2T" "" _sip._tcp.example.test.
_sip._udp.example.test. 60 IN SRV 10 0 {ports['dead']} dead.example.test.
_sip._udp.example.test. 60 IN SRV 15 0 {ports['busy']} busy.example.test.
_sip._udp.example.test. 60 IN SRV 20 3 {ports['a']} a.example.test.
_sip._udp.example.test. 60 IN SRV 20 1 {ports['b']} b.example.test.
_sip._tcp.example.test. 60 IN SRV 10 0 5060 tcp.example.test.
dead.example.test. 60 IN A 127.0.0.1
busy.example.test. 60 IN A 127.0.0.1
a.example.test. 60 IN A 127.0.0.1
b.example.test. 60 IN A 127.0.0.1
tcp.example.test. 60 IN A 127.0.0.1
plain.test. 60 IN A 127.0.0.1
srvonly.test. 60 IN A 127.0.0.9
_sip._tcp.srvonly.test. 60 IN SRV 0 0 5070 plain.test.
_sips._tcp.secure.test. 60 IN SRV 0 0 5061 plain.test.
secure.test. 60 IN NAPTR 10 50 "s" "SIP+D2U" "" _sip._udp.secure.test.
secure.test. 60 IN NAPTR 20 50 "s" "SIPS+D2T" "" _sips._tcp.secure.test.
none.test. 60 IN SRV 0 0 5060 nowhere.test.
_sip._udp.offnot.test. 60 IN SRV 0 0 0 .
offnot.test. 60 IN TXT "no sip here"
loop.test. 60 IN NAPTR 10 50 "" "" "" loop2.test.
loop2.test. 60 IN NAPTR 10 50 "" "" "" loop.test.
_sip._udp.nowhere.test. 60 IN SRV 0 0 5060 ghost.test.
nowhere.test. 60 IN TXT "points at a name with no address"
"""


PORTS = {"dead": 1, "busy": 2, "a": 3, "b": 4}


@pytest.fixture(scope="module")
def dns() -> Iterator[Dns]:
    with Dns(_zone(PORTS)) as d:
        yield d


def _find(dns: Dns, target: str, transport: str | None = None) -> list[tuple[Any, ...]]:
    got = locate(parse_wanted(target, transport), make_resolver(("127.0.0.1", dns.port)))
    return [(s.transport, s.address, s.port, s.priority, s.weight) for s in got.servers]


def test_naptr_srv_a(dns: Dns) -> None:
    assert _find(dns, "example.test") == [
        ("udp", "127.0.0.1", 1, 10, 0), ("udp", "127.0.0.1", 2, 15, 0),
        ("udp", "127.0.0.1", 3, 20, 3), ("udp", "127.0.0.1", 4, 20, 1),
        ("tcp", "127.0.0.1", 5060, 10, 0)]
    assert _find(dns, "sip:service@example.test;transport=tcp") == [
        ("tcp", "127.0.0.1", 5060, 10, 0)]  # a transport: only its SRV


def test_without_naptr_srv_then_a(dns: Dns) -> None:
    assert _find(dns, "srvonly.test") == [("tcp", "127.0.0.1", 5070, 0, 0)]
    assert _find(dns, "plain.test") == [("udp", "127.0.0.1", 5060, 0, 0)]
    assert _find(dns, "plain.test:5099") == [("udp", "127.0.0.1", 5099, 0, 0)]  # port: A only
    assert _find(dns, "sips:plain.test") == [("tls", "127.0.0.1", 5061, 0, 0)]


def test_sips_keeps_only_tls(dns: Dns) -> None:
    assert _find(dns, "sips:secure.test") == [("tls", "127.0.0.1", 5061, 0, 0)]
    # sip: takes SIP+D2U first, but its SRV name has no records: left out, TLS remains
    assert [r[0] for r in _find(dns, "sip:secure.test")] == ["tls"]


@pytest.mark.parametrize(("target", "words"), [
    ("missing.test", "no NAPTR, SRV, A or AAAA record"),
    ("offnot.test", "service is not offered"),
    ("loop.test", "does not end"),
    ("nowhere.test", "points nowhere"),
    ("none.test", "no NAPTR, SRV, A or AAAA record"),
])
def test_bad_answers_are_clear_errors(dns: Dns, target: str, words: str) -> None:
    with pytest.raises(LocateError, match=words):
        _find(dns, target)


def test_a_silent_dns_server_is_an_error() -> None:
    port = free_port("udp")  # nobody answers there
    with pytest.raises(LocateError, match="no answer from the DNS server"):
        locate(parse_wanted("example.test"), make_resolver(("127.0.0.1", port), timeout=0.3))


# ================================================================ whole runs


def _uas(port: int, scenario: Path | None = None) -> Background:
    args: list[object] = ["uas", "--listen", f"127.0.0.1:{port}"]
    if scenario is not None:
        args.insert(1, scenario)
    return Background(sipload(*args), ready="listening on", ready_timeout=30)


@contextmanager
def failover_site(tmp: Path, busy_steps: str) -> Iterator[tuple[Dns, dict[str, int]]]:
    """``example.test`` (:func:`_zone`) on a loopback DNS server, with its servers on the
    ports yielded: "dead" (nobody listens), "busy" (a sipload uas running
    ``busy_steps``, a 503) and two live sipload uas, "a" and "b"."""
    ports = {k: free_port("udp") for k in ("dead", "busy", "a", "b")}
    busy = tmp / "busy_uas.yaml"
    busy.write_text(f"name: unavailable\nrole: uas\nsteps:\n{busy_steps}")
    with Dns(_zone(ports)) as dns, _uas(ports["busy"], busy), _uas(ports["a"]), \
            _uas(ports["b"]):
        yield dns, ports


def test_calls_fail_over_past_a_dead_server_and_a_503(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with failover_site(tmp_path, "  - recv: INVITE\n  - reply: 503\n") as (dns, ports):
        done = run(sipload("run", BASIC, "--target", "sip:example.test", "--dns-server",
                           dns.address, "--calls", "40", "--rate", "20", "--workers", "1",
                           "--seed", "5", "--out", out), timeout=120)
        assert done.returncode == 0, done.stderr
        assert "located: udp:127.0.0.1:" in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["calls"]["succeeded"] == 40
    servers = summary["servers"]
    la, lb = f"udp:127.0.0.1:{ports['a']}", f"udp:127.0.0.1:{ports['b']}"
    assert set(servers) == {la, lb}  # every call ended on a live server
    assert servers[la]["calls"] + servers[lb]["calls"] == 40
    assert servers[la]["calls"] > servers[lb]["calls"] > 0  # weights 3 and 1
    # each call: the dead server (ICMP), then the one answering 503, then a live one
    assert summary["failovers"] == {"count": 80, "calls_with": 40}
    calls = read_calls(out)
    assert set(calls.column("failovers").to_pylist()) == {2}
    plan = json.loads((out / "plan.json").read_text())
    assert plan["located"]["name"] == "example.test" and len(plan["located"]["servers"]) == 5


def test_bad_dns_answer_stops_the_run_before_anything_is_sent(tmp_path: Path,
                                                              dns: Dns) -> None:
    for target, words in (("loop.test", "does not end"), ("nowhere.test", "points nowhere"),
                          ("missing.test", "nothing to call")):
        out = tmp_path / target
        done = run(sipload("run", BASIC, "--target", target, "--dns-server", dns.address,
                           "--calls", "1", "--out", out), timeout=60)
        assert done.returncode == 3 and words in done.stderr and "--target" in done.stderr, \
            done.stderr
        assert not out.exists()
    done = run(sipload("run", BASIC, "--target", "example.test", "--dns-server", "nohost:53",
                       "--calls", "1", "--out", tmp_path / "x"), timeout=60)
    assert done.returncode == 2 and "--dns-server" in done.stderr
