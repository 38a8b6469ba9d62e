"""Failover to the next server (RFC 3263 §4.3) beyond the INVITE: a 503's Retry-After
keeps its server avoided that long, and requests outside calls (OPTIONS, REGISTER)
move on too; the report shows the split of calls across servers and the failovers.

The sans-IO tests drive a UserAgent with bytes and a fake clock; the whole runs use the
loopback DNS server of tests/test_locate.py.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from sipload.sip.build import make_response
from sipload.sip.message import Request
from sipload.sip.parser import parse_message
from sipload.sip.servers import Server, ServerSet
from sipload.ua.agent import UAConfig, UserAgent
from sipload.ua.events import Event, EventType
from sipload.ua.ids import IdGenerator
from tests.bgproc import run, sipload
from tests.test_locate import failover_site

REPO = Path(__file__).resolve().parent.parent

A, B, C = ("udp", "10.0.0.1", 5060), ("udp", "10.0.0.2", 5060), ("udp", "10.0.0.3", 5060)


def _set() -> ServerSet:
    # three priorities: the order is fixed, A then B then C
    return ServerSet("example.test", [Server("udp", "10.0.0.1", 5060, 10, 0, "a"),
                                      Server("udp", "10.0.0.2", 5060, 20, 0, "b"),
                                      Server("udp", "10.0.0.3", 5060, 30, 0, "c")],
                     random.Random(1).random)


def test_an_avoided_server_goes_last_until_its_time_is_up() -> None:
    ss = _set()
    assert ss.pick(0.0) == [A, B, C]
    assert ss.avoid(A, 30.0) and not ss.avoid(("udp", "10.9.9.9", 5060), 30.0)
    assert ss.pick(10.0) == [B, C, A]  # avoided, still tried last
    ss.avoid(B, 20.0)
    assert ss.pick(19.9) == [C, A, B]
    assert ss.pick(20.0) == [B, C, A]  # B's time is up
    assert ss.pick(30.0) == [A, B, C]
    assert ss.avoided(30.0) == []


def _ua() -> UserAgent:
    ua = UserAgent(UAConfig(host="127.0.0.1", port=5099), IdGenerator("f"))
    ua.set_servers(_set())
    return ua


def _sent(ua: UserAgent) -> list[tuple[Request, tuple[str, str, int]]]:
    out = []
    for data, peer in ua.outgoing():
        msg = parse_message(data)
        assert isinstance(msg, Request)
        out.append((msg, peer))
    return out


def _events(ua: UserAgent) -> list[Event]:
    out = []
    while (ev := ua.next_event()) is not None:
        out.append(ev)
    return out


def _answer(ua: UserAgent, req: Request, status: int, peer: tuple[str, str, int], now: float,
            retry_after: str | None = None) -> None:
    resp = make_response(req, status, to_tag="x")
    if retry_after is not None:
        resp.add_header("Retry-After", retry_after)
    ua.receive(resp.to_bytes(), peer, now)


def test_options_moves_on_at_a_503_and_its_server_is_avoided_for_retry_after() -> None:
    ua = _ua()
    req = ua.message_build_request("OPTIONS", "<sip:ping@example.test>", "<sip:me@x>")
    tid = ua.message_send_request(req, 0.0)
    [(first, peer)] = _sent(ua)
    assert peer == A
    _answer(ua, first, 503, A, 0.1, "30")
    [(second, peer)] = _sent(ua)
    assert peer == B and second.cseq.seq == first.cseq.seq + 1
    assert second.via.branch != first.via.branch
    assert _events(ua) == []  # nothing reported: the request moved on
    _answer(ua, second, 200, B, 0.2)
    [ev] = _events(ua)
    assert ev.type == EventType.MESSAGE_ANSWERED and ev.tid == tid  # the tid we were given
    assert ua.call_take_server(tid) == ("udp:10.0.0.2:5060", 1)
    assert ua.failovers == 1
    # for the next 30 s, new requests try A last
    again = ua.message_build_request("OPTIONS", "<sip:ping@example.test>", "<sip:me@x>")
    ua.message_send_request(again, 10.0)
    assert [p for _, p in _sent(ua)] == [B]
    late = ua.message_build_request("OPTIONS", "<sip:ping@example.test>", "<sip:me@x>")
    ua.message_send_request(late, 31.0)
    assert [p for _, p in _sent(ua)] == [A]


def test_a_503_without_retry_after_moves_on_but_avoids_nothing() -> None:
    ua = _ua()
    ua.message_send_request(ua.message_build_request("OPTIONS", "<sip:p@example.test>",
                                                     "<sip:me@x>"), 0.0)
    [(first, _)] = _sent(ua)
    _answer(ua, first, 503, A, 0.1)
    assert [p for _, p in _sent(ua)] == [B]
    ua.message_send_request(ua.message_build_request("OPTIONS", "<sip:p@example.test>",
                                                     "<sip:me@x>"), 1.0)
    assert [p for _, p in _sent(ua)] == [A]


def test_register_moves_on_when_its_server_times_out() -> None:
    ua = _ua()
    rid, req = ua.register_build_initial_register("<sip:alice@example.test>",
                                                  "sip:example.test")
    ua.register_send_register(rid, req, 0.0)
    [(_, peer)] = _sent(ua)
    assert peer == A
    ua.handle_timers(40.0)  # timer F (64*T1) of the REGISTER to A: A is silent
    sent = [(m, p) for m, p in _sent(ua) if p == B]
    assert len(sent) == 1 and sent[0][0].method == "REGISTER"
    assert [e.type for e in _events(ua)] == []
    ok = make_response(sent[0][0], 200, to_tag="r")
    ok.add_header("Contact", "<sip:f@127.0.0.1:5099>;expires=300")
    ua.receive(ok.to_bytes(), B, 40.1)
    [ev] = _events(ua)
    assert ev.type == EventType.REGISTRATION_SUCCESS and ev.rid == rid
    assert ua.call_take_server(rid) == ("udp:10.0.0.2:5060", 1)


def test_the_last_server_failing_is_reported_as_one_failure() -> None:
    ua = _ua()
    tid = ua.message_send_request(ua.message_build_request("OPTIONS", "<sip:p@example.test>",
                                                           "<sip:me@x>"), 0.0)
    for peer in (A, B, C):
        [(req, to)] = _sent(ua)
        assert to == peer
        _answer(ua, req, 503, peer, 0.1, "60")
    assert _sent(ua) == []
    [ev] = _events(ua)
    assert ev.type == EventType.MESSAGE_SERVERFAILURE and ev.tid == tid
    assert ev.response is not None and ev.response.status == 503
    assert ua.failovers == 2


def test_options_run_fails_over_and_the_report_shows_the_split(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with failover_site(tmp_path, "  - recv: OPTIONS\n  - reply: 503\n"
                       "    headers: {Retry-After: '300'}\n") as (dns, ports):
        done = run(sipload("run", REPO / "scenarios" / "options_ping.yaml", "--target",
                           "sip:example.test", "--dns-server", dns.address, "--calls", "30",
                           "--rate", "30", "--workers", "1", "--seed", "3", "--t1", "100ms",
                           "--out", out), timeout=120)
        assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["calls"]["succeeded"] == 30
    la, lb = f"udp:127.0.0.1:{ports['a']}", f"udp:127.0.0.1:{ports['b']}"
    servers = summary["servers"]
    assert set(servers) == {la, lb}
    assert servers[la]["calls"] + servers[lb]["calls"] == 30 and servers[lb]["calls"] > 0
    # the dead server (ICMP) and, once, the 503: after its Retry-After it is tried last,
    # after the live ones, so later requests do not meet it
    fo = summary["failovers"]
    assert fo["calls_with"] == 30
    assert 30 < fo["count"] < 45, fo  # not 60: the busy server was avoided
    html = (out / "report.html").read_text()
    assert "Calls per server" in html and f"<code>{la}</code>" in html
    assert f"{fo['count']} failovers" in html
