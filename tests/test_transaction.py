"""Tests for sipload.sip.transaction: the four RFC 3261 §17 machines with RFC 6026 Accepted.

Everything runs against a fake clock (plain floats); nothing sleeps.  The
expected (state, input) tables below are written out independently of the
module's own tables, from the RFC figures.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipload.sip.build import make_cancel
from sipload.sip.errors import LocalProtocolError
from sipload.sip.message import Request, Response
from sipload.sip.parser import parse_message
from sipload.sip.transaction import (
    INVITE_CLIENT_TRANSITIONS,
    INVITE_SERVER_TRANSITIONS,
    NON_INVITE_CLIENT_TRANSITIONS,
    NON_INVITE_SERVER_TRANSITIONS,
    ClientTransaction,
    ServerTransaction,
    TimerConfig,
    TxState,
    cancel_target_key,
    client_key,
    make_branch,
    server_key,
)

S = TxState
T = TimerConfig()  # T1 = 0.5, T2 = 4, T4 = 5
BRANCH = "z9hG4bK776asdhds"

# ------------------------------------------------------------------ messages


def request(
    method: str = "INVITE",
    *,
    branch: str = BRANCH,
    sent_by: str = "pc33.atlanta.example.com",
    cseq: int = 314159,
    cseq_method: str | None = None,
    from_tag: str = "1928301774",
    to_tag: str | None = None,
    uri: str = "sip:bob@biloxi.example.com",
) -> Request:
    to = "Bob <sip:bob@biloxi.example.com>" + (f";tag={to_tag}" if to_tag else "")
    branch_param = f";branch={branch}" if branch else ""
    data = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by}{branch_param}\r\n"
        "Max-Forwards: 70\r\n"
        "Route: <sip:p1.example.com;lr>\r\n"
        f"To: {to}\r\n"
        f"From: Alice <sip:alice@atlanta.example.com>;tag={from_tag}\r\n"
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
        "Content-Length: 0\r\n"
        "\r\n"
    ).encode()
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def response(
    status: int, method: str = "INVITE", *, branch: str = BRANCH, to_tag: str = "a6c85cf"
) -> Response:
    data = (
        f"SIP/2.0 {status} Whatever\r\n"
        f"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch={branch};received=192.0.2.101\r\n"
        f"To: Bob <sip:bob@biloxi.example.com>;tag={to_tag}\r\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        f"CSeq: 314159 {method}\r\n"
        "Content-Length: 0\r\n"
        "\r\n"
    ).encode()
    msg = parse_message(data)
    assert isinstance(msg, Response)
    return msg


def first_lines(out: list[bytes]) -> tuple[str, ...]:
    """What went out, one word each: the method of a request, the status of a response."""
    words = []
    for data in out:
        line = data.split(b"\r\n", 1)[0].decode()
        words.append(line.split(" ")[1] if line.startswith("SIP/2.0") else line.split(" ")[0])
    return tuple(words)


def drain(tx: ClientTransaction | ServerTransaction) -> tuple[str, ...]:
    sent = first_lines(tx.outgoing)
    tx.outgoing.clear()
    return sent


def client(method: str = "INVITE", *, reliable: bool = False,
           timers: TimerConfig = T, now: float = 0.0) -> ClientTransaction:
    tx = ClientTransaction(request(method), reliable=reliable, timers=timers, now=now)
    tx.start(now)
    return tx


def server(method: str = "INVITE", *, reliable: bool = False,
           timers: TimerConfig = T, now: float = 0.0) -> ServerTransaction:
    return ServerTransaction(request(method), reliable=reliable, timers=timers, now=now)


def run_timers(
    tx: ClientTransaction | ServerTransaction, until: float = 1e9
) -> tuple[list[float], tuple[float, str] | None]:
    """Fire every deadline up to ``until``; the send times and the (time, timeout) if any."""
    sends: list[float] = []
    while True:
        d = tx.next_deadline()
        if d is None or d > until:
            return sends, None
        fired = tx.handle_timer(d)
        sends.extend(d for _ in tx.outgoing)
        tx.outgoing.clear()
        if fired is not None:
            return sends, (d, fired)


# ------------------------------------------------------------------ configuration


def test_timer_config_derivations() -> None:
    t = TimerConfig()
    assert (t.timer_b, t.timer_f, t.timer_h, t.timer_l, t.timer_m) == (32, 32, 32, 32, 32)
    assert t.timer_d(False) == 32 and t.timer_d(True) == 0
    assert TimerConfig(t1=1.0, t2=4.0).timer_d(False) == 64  # max(32 s, 64·T1)
    assert TimerConfig(t1=0.1, t2=4.0).timer_d(False) == 32
    assert t.timer_i(False) == 5 and t.timer_i(True) == 0
    assert t.timer_k(False) == 5 and t.timer_k(True) == 0
    assert t.timer_j(False) == 32 and t.timer_j(True) == 0


@pytest.mark.parametrize("kw", [{"t1": 0.0}, {"t1": 1.0, "t2": 0.5}, {"t4": -1.0}])
def test_timer_config_rejects_nonsense(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TimerConfig(**kw)


# ------------------------------------------------------------------ retransmission schedules


def test_invite_over_udp_timer_a_doubles_and_b_fires_at_64_t1() -> None:
    tx = client("INVITE")
    assert drain(tx) == ("INVITE",)
    sends, fired = run_timers(tx)
    assert [0.0, *sends] == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert fired == (32.0, "B")
    assert tx.terminated and tx.timed_out and tx.failed and tx.failure == "B"
    assert tx.retransmissions == 6
    assert tx.next_deadline() is None


def test_timer_a_has_no_t2_cap() -> None:
    tx = client("INVITE", timers=TimerConfig(t1=0.5, t2=1.0))
    drain(tx)
    sends, fired = run_timers(tx)
    assert sends == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # intervals 1, 2, 4, 8, 16 > T2
    assert fired == (32.0, "B")


def test_invite_schedule_follows_t1() -> None:
    tx = client("INVITE", timers=TimerConfig(t1=0.25), now=100.0)
    drain(tx)
    sends, fired = run_timers(tx)
    assert sends == [100.25, 100.75, 101.75, 103.75, 107.75, 115.75]
    assert fired == (116.0, "B")


def test_invite_over_tcp_sends_once_and_b_still_fires() -> None:
    tx = client("INVITE", reliable=True)
    assert drain(tx) == ("INVITE",)
    assert tx.next_deadline() == 32.0
    sends, fired = run_timers(tx)
    assert sends == [] and fired == (32.0, "B")
    assert tx.retransmissions == 0


def test_provisional_stops_timers_a_and_b() -> None:
    tx = client("INVITE")
    tx.handle_timer(0.5)
    assert tx.receive(response(180), 0.7) is not None
    assert tx.state == S.PROCEEDING and tx.next_deadline() is None
    assert drain(tx) == ("INVITE", "INVITE")  # the first send and the one at 0.5
    assert tx.handle_timer(100.0) is None and drain(tx) == ()


def test_non_invite_over_udp_timer_e_caps_at_t2_and_f_fires() -> None:
    tx = client("OPTIONS")
    assert drain(tx) == ("OPTIONS",)
    sends, fired = run_timers(tx)
    assert sends == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert fired == (32.0, "F")
    assert tx.failure == "F" and tx.retransmissions == 10


def test_non_invite_proceeding_retransmits_every_t2() -> None:
    tx = client("OPTIONS")
    drain(tx)
    assert tx.receive(response(100, "OPTIONS"), 0.2) is not None
    assert tx.state == S.PROCEEDING
    sends, fired = run_timers(tx)
    # the armed E (0.5) fires, then E = T2 every time
    assert sends == [0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    assert fired == (32.0, "F")


def test_non_invite_provisional_late_switches_to_t2() -> None:
    tx = client("OPTIONS")
    drain(tx)
    assert run_timers(tx, until=1.0) == ([0.5], None)  # E now armed at 1.5, interval 1
    tx.receive(response(180, "OPTIONS"), 1.0)
    sends, fired = run_timers(tx)
    assert sends == [1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert fired == (32.0, "F")


def test_non_invite_over_tcp_no_e_and_k_is_zero() -> None:
    tx = client("OPTIONS", reliable=True)
    assert tx.next_deadline() == 32.0
    resp = response(200, "OPTIONS")
    assert tx.receive(resp, 1.0) is resp
    assert tx.terminated and not tx.failed  # Timer K = 0: Completed left at once
    assert tx.next_deadline() is None


def test_timer_k_is_t4_over_udp() -> None:
    tx = client("OPTIONS")
    tx.receive(response(404, "OPTIONS"), 1.0)
    assert tx.state == S.COMPLETED and tx.next_deadline() == 6.0
    assert tx.receive(response(404, "OPTIONS"), 2.0) is None  # retransmission absorbed
    assert tx.handle_timer(5.9) is None and tx.state == S.COMPLETED
    assert tx.handle_timer(6.0) is None and tx.terminated and not tx.failed
    assert drain(tx) == ("OPTIONS",)  # nothing but the original request went out


def test_timer_d_over_udp_and_ack_retransmission() -> None:
    tx = client("INVITE")
    drain(tx)
    final = response(486)
    assert tx.receive(final, 1.0) is final
    assert tx.state == S.COMPLETED and drain(tx) == ("ACK",)
    assert tx.next_deadline() == 33.0  # Timer D = 32 s
    assert tx.receive(response(486), 2.0) is None
    assert drain(tx) == ("ACK",) and tx.retransmissions == 1
    assert tx.handle_timer(33.0) is None and tx.terminated and not tx.failed


def test_timer_d_is_at_least_32_s_and_64_t1_above() -> None:
    tx = client("INVITE", timers=TimerConfig(t1=1.0, t2=4.0))
    tx.receive(response(500), 0.0)
    assert tx.next_deadline() == 64.0


def test_timer_d_is_zero_over_tcp() -> None:
    tx = client("INVITE", reliable=True)
    drain(tx)
    tx.receive(response(603), 1.0)
    assert tx.terminated and drain(tx) == ("ACK",)


def test_accepted_timer_m_and_2xx_retransmissions_reach_the_tu() -> None:
    tx = client("INVITE")
    drain(tx)
    ok = response(200)
    assert tx.receive(ok, 1.0) is ok
    assert tx.state == S.ACCEPTED and tx.next_deadline() == 33.0  # Timer M = 64·T1
    again = response(200)
    assert tx.receive(again, 2.0) is again  # RFC 6026: the TU ACKs each 2xx
    forked = response(200, to_tag="other")
    assert tx.receive(forked, 3.0) is forked
    assert tx.receive(response(180), 3.0) is None
    assert tx.receive(response(486), 3.0) is None
    assert drain(tx) == ()  # the transaction never ACKs a 2xx
    assert tx.handle_timer(33.0) is None and tx.terminated and not tx.failed


def test_invite_server_timer_g_h() -> None:
    tx = server("INVITE")
    tx.send_response(response(486), 0.0)
    assert tx.state == S.COMPLETED and drain(tx) == ("486",)
    sends, fired = run_timers(tx)
    assert sends == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert fired == (32.0, "H")
    assert tx.terminated and tx.timed_out and tx.failure == "H"
    assert tx.retransmissions == 10


def test_invite_server_ack_stops_g_and_timer_i() -> None:
    tx = server("INVITE")
    tx.send_response(response(486), 0.0)
    drain(tx)
    assert run_timers(tx, until=2.0) == ([0.5, 1.5], None)
    assert tx.receive_request(request("ACK", cseq_method="ACK"), 2.0) is False
    assert tx.state == S.CONFIRMED and tx.next_deadline() == 7.0  # Timer I = T4
    assert tx.receive_request(request("ACK"), 3.0) is False and drain(tx) == ()
    assert run_timers(tx) == ([], None)
    assert tx.terminated and not tx.failed


def test_invite_server_over_tcp_no_g_h_still_runs_i_zero() -> None:
    tx = server("INVITE", reliable=True)
    tx.send_response(response(486), 0.0)
    assert tx.next_deadline() == 32.0  # H, no G
    assert tx.handle_timer(31.9) is None and drain(tx) == ("486",)
    assert tx.receive_request(request("ACK"), 1.0) is False
    assert tx.terminated  # Timer I = 0


def test_invite_server_accepted_timer_l() -> None:
    tx = server("INVITE")
    tx.send_response(response(180), 0.0)
    tx.send_response(response(200), 1.0)
    assert tx.state == S.ACCEPTED and drain(tx) == ("180", "200")
    assert tx.next_deadline() == 33.0  # Timer L = 64·T1, no retransmission timer
    tx.send_response(response(200), 1.5)  # the TU's own 2xx retransmission passes
    assert drain(tx) == ("200",) and tx.retransmissions == 1
    assert tx.receive_request(request("INVITE"), 2.0) is False and drain(tx) == ()
    assert tx.receive_request(request("ACK"), 2.5) is True  # the ACK of a 2xx: to the TU
    assert tx.receive_request(request("ACK"), 2.6) is True
    assert tx.handle_timer(33.0) is None and tx.terminated and not tx.failed


@pytest.mark.parametrize(("reliable", "end"), [(False, 33.0), (True, None)])
def test_non_invite_server_timer_j(reliable: bool, end: float | None) -> None:
    tx = server("BYE", reliable=reliable)
    tx.send_response(response(200, "BYE"), 1.0)
    assert drain(tx) == ("200",)
    assert tx.next_deadline() == end
    if end is not None:
        assert tx.state == S.COMPLETED
        assert tx.receive_request(request("BYE"), 2.0) is False and drain(tx) == ("200",)
        assert tx.handle_timer(end) is None
    assert tx.terminated and not tx.failed


def test_late_timer_call_sends_once_and_rearms_in_the_future() -> None:
    tx = client("INVITE")
    drain(tx)
    assert tx.handle_timer(10.0) is None
    assert drain(tx) == ("INVITE",)  # one retransmission, not five
    d = tx.next_deadline()
    assert d is not None and d > 10.0
    assert tx.handle_timer(40.0) == "B" and drain(tx) == ()  # B wins over a due A


def test_early_timer_call_does_nothing() -> None:
    tx = client("INVITE")
    drain(tx)
    assert tx.handle_timer(0.49) is None and drain(tx) == () and tx.state == S.CALLING


# ------------------------------------------------------------------ ACK for a non-2xx


def test_ack_for_non_2xx_headers() -> None:
    invite = request("INVITE")
    tx = ClientTransaction(invite, reliable=False, timers=T, now=0.0)
    tx.start(0.0)
    drain(tx)
    final = response(486, to_tag="7c0b9e")
    tx.receive(final, 0.3)
    ack = tx.ack
    assert ack is not None
    assert ack.method == "ACK" and ack.uri_text == invite.uri_text
    assert len(ack.vias) == 1 and ack.via.branch == BRANCH  # the INVITE's top Via
    assert ack.to.tag == "7c0b9e" and ack.get("to") == final.get("to")
    assert (ack.cseq.seq, ack.cseq.method) == (314159, "ACK")
    assert ack.call_id == invite.call_id and ack.from_tag == invite.from_tag
    assert ack.get_all("route") == invite.get_all("route")
    wire = parse_message(tx.outgoing[0])
    assert isinstance(wire, Request) and wire.to_bytes() == ack.to_bytes()
    assert tx.last_response is final


# ------------------------------------------------------------------ matching keys


def test_client_key_matches_response_and_separates_cancel() -> None:
    invite = request("INVITE")
    tx = ClientTransaction(invite, reliable=False, timers=T, now=0.0)
    assert tx.key == (BRANCH, "INVITE") == client_key(response(180))
    cancel_tx = ClientTransaction(make_cancel(invite), reliable=False, timers=T, now=0.0)
    assert cancel_tx.key == (BRANCH, "CANCEL") == client_key(response(200, "CANCEL"))
    assert cancel_tx.key != tx.key
    assert client_key(response(200, branch="z9hG4bKother")) != tx.key


def test_make_branch() -> None:
    assert make_branch("abc123") == "z9hG4bKabc123"


def test_server_key_rfc3261() -> None:
    invite = request("INVITE")
    key = server_key(invite)
    assert key == (BRANCH, "pc33.atlanta.example.com", "", "INVITE")
    assert ServerTransaction(invite, reliable=False, timers=T, now=0.0).key == key
    # the ACK for a non-2xx (same branch) finds the INVITE transaction
    assert server_key(request("ACK", to_tag="a6c85cf")) == key
    # sent-by host is case-insensitive; port and branch are not ignored
    assert server_key(request("INVITE", sent_by="PC33.Atlanta.Example.COM")) == key
    assert server_key(request("INVITE", sent_by="pc33.atlanta.example.com:5060")) != key
    assert server_key(request("INVITE", branch="z9hG4bKdifferent")) != key
    # same branch, other method: another transaction (a CANCEL, §9.2)
    cancel = request("CANCEL")
    assert server_key(cancel) != key
    assert cancel_target_key(cancel) == key


def test_server_key_rfc2543_fallback() -> None:
    invite = request("INVITE", branch="")
    key = server_key(invite)
    assert key[0] == "2543" and key[-1] == "INVITE"
    # an ACK with the INVITE's Request-URI, From tag, Call-ID, CSeq number and top Via
    assert server_key(request("ACK", branch="", to_tag="a6c85cf")) == key
    assert server_key(request("INVITE", branch="", from_tag="x")) != key
    assert server_key(request("INVITE", branch="", cseq=1)) != key
    assert server_key(request("INVITE", branch="", uri="sip:carol@chicago.com")) != key
    assert server_key(request("INVITE", branch="", sent_by="pc34.atlanta.example.com")) != key
    # an old-style branch without the magic cookie also means RFC 2543
    assert server_key(request("INVITE", branch="old1"))[0] == "2543"
    cancel = request("CANCEL", branch="")
    assert cancel_target_key(cancel) == key and server_key(cancel) != key
    bye = request("BYE", branch="")
    assert server_key(bye)[-1] == "BYE" and server_key(bye) != key


# ------------------------------------------------------------------ API misuse


def test_client_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        ClientTransaction(request("ACK"), reliable=False, timers=T, now=0.0)
    with pytest.raises(LocalProtocolError):
        ClientTransaction(request("INVITE", branch=""), reliable=False, timers=T, now=0.0)
    no_via = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n")
    assert isinstance(no_via, Request)
    with pytest.raises(LocalProtocolError):
        ClientTransaction(no_via, reliable=False, timers=T, now=0.0)
    tx = client("INVITE")
    with pytest.raises(LocalProtocolError):
        tx.start(0.0)
    with pytest.raises(LocalProtocolError):
        tx.receive(Response(99, "Nope"), 0.0)


def test_server_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        ServerTransaction(request("ACK"), reliable=False, timers=T, now=0.0)
    tx = server("INVITE")
    with pytest.raises(LocalProtocolError):
        tx.receive_request(request("BYE"), 0.0)
    with pytest.raises(LocalProtocolError):
        tx.send_response(Response(42, "Nope"), 0.0)
    tx.send_response(response(200), 0.0)
    with pytest.raises(LocalProtocolError):
        tx.send_response(response(180), 0.0)  # a 1xx after the final
    with pytest.raises(LocalProtocolError):
        tx.send_response(response(486), 0.0)
    nist = server("OPTIONS")
    with pytest.raises(LocalProtocolError):
        nist.receive_request(request("ACK"), 0.0)  # ACK never matches a non-INVITE
    nist.send_response(response(200, "OPTIONS"), 0.0)
    with pytest.raises(LocalProtocolError):
        nist.send_response(response(200, "OPTIONS"), 0.0)


def test_transport_errors() -> None:
    tx = client("INVITE")
    tx.transport_error(0.1)
    assert tx.terminated and tx.failure == "transport" and tx.failed and not tx.timed_out
    ist = server("INVITE")
    ist.send_response(response(486), 0.0)
    ist.transport_error(0.1)  # RFC 6026 §7.1: the state is kept, the timers end it
    assert ist.state == S.COMPLETED and ist.failure == "transport"
    nist = server("OPTIONS")
    nist.send_response(response(100, "OPTIONS"), 0.0)
    nist.transport_error(0.1)
    assert nist.terminated and nist.failure == "transport"


# ------------------------------------------------------------------ every (state, input) pair
#
# Each machine is driven into each state (over UDP), then fed one input.  The
# expected outcome is (next state, what the TU sees, what went out).  "tu" is a
# response returned by receive() or True from receive_request(); "B"/"F"/"H" a
# timeout from handle_timer(); "error" a LocalProtocolError; "-" nothing.
# A retransmission-timer input exists only where that timer runs.

Outcome = tuple[TxState, str, tuple[str, ...]]

ICT_EXPECTED: dict[TxState, dict[str, Outcome]] = {
    S.CALLING: {
        "1xx": (S.PROCEEDING, "tu", ()), "2xx": (S.ACCEPTED, "tu", ()),
        "4xx": (S.COMPLETED, "tu", ("ACK",)), "retx": (S.CALLING, "-", ("INVITE",)),
        "guard": (S.TERMINATED, "B", ()), "terr": (S.TERMINATED, "-", ()),
    },
    S.PROCEEDING: {
        "1xx": (S.PROCEEDING, "tu", ()), "2xx": (S.ACCEPTED, "tu", ()),
        "4xx": (S.COMPLETED, "tu", ("ACK",)), "guard": (S.PROCEEDING, "-", ()),
        "terr": (S.TERMINATED, "-", ()),
    },
    S.COMPLETED: {
        "1xx": (S.COMPLETED, "-", ()), "2xx": (S.COMPLETED, "-", ()),
        "4xx": (S.COMPLETED, "-", ("ACK",)), "guard": (S.TERMINATED, "-", ()),
        "terr": (S.TERMINATED, "-", ()),
    },
    S.ACCEPTED: {
        "1xx": (S.ACCEPTED, "-", ()), "2xx": (S.ACCEPTED, "tu", ()),
        "4xx": (S.ACCEPTED, "-", ()), "guard": (S.TERMINATED, "-", ()),
        "terr": (S.TERMINATED, "-", ()),
    },
    S.TERMINATED: {i: (S.TERMINATED, "-", ()) for i in ("1xx", "2xx", "4xx", "guard", "terr")},
}

NICT_EXPECTED: dict[TxState, dict[str, Outcome]] = {
    S.TRYING: {
        "1xx": (S.PROCEEDING, "tu", ()), "2xx": (S.COMPLETED, "tu", ()),
        "4xx": (S.COMPLETED, "tu", ()), "retx": (S.TRYING, "-", ("OPTIONS",)),
        "guard": (S.TERMINATED, "F", ()), "terr": (S.TERMINATED, "-", ()),
    },
    S.PROCEEDING: {
        "1xx": (S.PROCEEDING, "tu", ()), "2xx": (S.COMPLETED, "tu", ()),
        "4xx": (S.COMPLETED, "tu", ()), "retx": (S.PROCEEDING, "-", ("OPTIONS",)),
        "guard": (S.TERMINATED, "F", ()), "terr": (S.TERMINATED, "-", ()),
    },
    S.COMPLETED: {
        "1xx": (S.COMPLETED, "-", ()), "2xx": (S.COMPLETED, "-", ()),
        "4xx": (S.COMPLETED, "-", ()), "guard": (S.TERMINATED, "-", ()),
        "terr": (S.TERMINATED, "-", ()),
    },
    S.TERMINATED: {i: (S.TERMINATED, "-", ()) for i in ("1xx", "2xx", "4xx", "guard", "terr")},
}

IST_EXPECTED: dict[TxState, dict[str, Outcome]] = {
    S.PROCEEDING: {  # a 180 was sent before
        "1xx": (S.PROCEEDING, "-", ("180",)), "2xx": (S.ACCEPTED, "-", ("200",)),
        "4xx": (S.COMPLETED, "-", ("486",)), "request": (S.PROCEEDING, "-", ("180",)),
        "ack": (S.PROCEEDING, "-", ()), "guard": (S.PROCEEDING, "-", ()),
        "terr": (S.PROCEEDING, "-", ()),
    },
    S.COMPLETED: {  # 486 sent
        "1xx": (S.COMPLETED, "error", ()), "2xx": (S.COMPLETED, "error", ()),
        "4xx": (S.COMPLETED, "error", ()), "request": (S.COMPLETED, "-", ("486",)),
        "ack": (S.CONFIRMED, "-", ()), "retx": (S.COMPLETED, "-", ("486",)),
        "guard": (S.TERMINATED, "H", ()), "terr": (S.COMPLETED, "-", ()),
    },
    S.CONFIRMED: {
        "1xx": (S.CONFIRMED, "error", ()), "2xx": (S.CONFIRMED, "error", ()),
        "4xx": (S.CONFIRMED, "error", ()), "request": (S.CONFIRMED, "-", ()),
        "ack": (S.CONFIRMED, "-", ()), "guard": (S.TERMINATED, "-", ()),
        "terr": (S.CONFIRMED, "-", ()),
    },
    S.ACCEPTED: {
        "1xx": (S.ACCEPTED, "error", ()), "2xx": (S.ACCEPTED, "-", ("200",)),
        "4xx": (S.ACCEPTED, "error", ()), "request": (S.ACCEPTED, "-", ()),
        "ack": (S.ACCEPTED, "tu", ()), "guard": (S.TERMINATED, "-", ()),
        "terr": (S.ACCEPTED, "-", ()),
    },
    S.TERMINATED: {
        **{i: (S.TERMINATED, "error", ()) for i in ("1xx", "2xx", "4xx")},
        **{i: (S.TERMINATED, "-", ()) for i in ("request", "ack", "guard", "terr")},
    },
}

NIST_EXPECTED: dict[TxState, dict[str, Outcome]] = {
    S.TRYING: {
        "1xx": (S.PROCEEDING, "-", ("180",)), "2xx": (S.COMPLETED, "-", ("200",)),
        "4xx": (S.COMPLETED, "-", ("486",)), "request": (S.TRYING, "-", ()),
        "guard": (S.TRYING, "-", ()), "terr": (S.TERMINATED, "-", ()),
    },
    S.PROCEEDING: {  # a 180 was sent before
        "1xx": (S.PROCEEDING, "-", ("180",)), "2xx": (S.COMPLETED, "-", ("200",)),
        "4xx": (S.COMPLETED, "-", ("486",)), "request": (S.PROCEEDING, "-", ("180",)),
        "guard": (S.PROCEEDING, "-", ()), "terr": (S.TERMINATED, "-", ()),
    },
    S.COMPLETED: {  # 200 sent
        "1xx": (S.COMPLETED, "error", ()), "2xx": (S.COMPLETED, "error", ()),
        "4xx": (S.COMPLETED, "error", ()), "request": (S.COMPLETED, "-", ("200",)),
        "guard": (S.TERMINATED, "-", ()), "terr": (S.TERMINATED, "-", ()),
    },
    S.TERMINATED: {
        **{i: (S.TERMINATED, "error", ()) for i in ("1xx", "2xx", "4xx")},
        **{i: (S.TERMINATED, "-", ()) for i in ("request", "guard", "terr")},
    },
}

STATUS = {"1xx": 180, "2xx": 200, "4xx": 486}


def client_in(method: str, state: TxState) -> ClientTransaction:
    tx = client(method)
    if state == S.PROCEEDING:
        tx.receive(response(180, method), 0.1)
    elif state == S.COMPLETED:
        tx.receive(response(486, method), 0.1)
    elif state == S.ACCEPTED:
        tx.receive(response(200, method), 0.1)
    elif state == S.TERMINATED:
        tx.transport_error(0.1)
    assert tx.state == state
    tx.outgoing.clear()
    return tx


def server_in(method: str, state: TxState) -> ServerTransaction:
    tx = server(method)
    if state == S.PROCEEDING:
        tx.send_response(response(180, method), 0.1)
    elif state in (S.COMPLETED, S.CONFIRMED):
        tx.send_response(response(486 if method == "INVITE" else 200, method), 0.1)
        if state == S.CONFIRMED:
            tx.receive_request(request("ACK", cseq_method="ACK"), 0.2)
    elif state == S.ACCEPTED:
        tx.send_response(response(200, method), 0.1)
    elif state == S.TERMINATED:
        tx.send_response(response(486 if method == "INVITE" else 200, method), 0.1)
        tx.handle_timer(1000.0)
    assert tx.state == state
    tx.outgoing.clear()
    return tx


def apply_client(tx: ClientTransaction, method: str, inp: str) -> str:
    now = 0.2
    if inp in STATUS:
        resp = response(STATUS[inp], method)
        return "tu" if tx.receive(resp, now) is resp else "-"
    if inp == "retx":
        d = tx.next_deadline()
        assert d is not None
        return tx.handle_timer(d) or "-"
    if inp == "guard":
        return tx.handle_timer(now + 10_000) or "-"
    tx.transport_error(now)
    return "-"


def apply_server(tx: ServerTransaction, method: str, inp: str) -> str:
    now = 0.3
    if inp in STATUS:
        try:
            tx.send_response(response(STATUS[inp], method), now)
        except LocalProtocolError:
            return "error"
        return "-"
    if inp in ("request", "ack"):
        req = request(method) if inp == "request" else request("ACK", cseq_method="ACK")
        return "tu" if tx.receive_request(req, now) else "-"
    if inp == "retx":
        d = tx.next_deadline()
        assert d is not None
        return tx.handle_timer(d) or "-"
    if inp == "guard":
        return tx.handle_timer(now + 10_000) or "-"
    tx.transport_error(now)
    return "-"


def _pairs(expected: dict[TxState, dict[str, Outcome]]) -> list[tuple[TxState, str]]:
    return [(state, inp) for state, row in expected.items() for inp in row]


@pytest.mark.parametrize(("state", "inp"), _pairs(ICT_EXPECTED))
def test_invite_client_pair(state: TxState, inp: str) -> None:
    tx = client_in("INVITE", state)
    seen = apply_client(tx, "INVITE", inp)
    assert (tx.state, seen, drain(tx)) == ICT_EXPECTED[state][inp]


@pytest.mark.parametrize(("state", "inp"), _pairs(NICT_EXPECTED))
def test_non_invite_client_pair(state: TxState, inp: str) -> None:
    tx = client_in("OPTIONS", state)
    seen = apply_client(tx, "OPTIONS", inp)
    assert (tx.state, seen, drain(tx)) == NICT_EXPECTED[state][inp]


@pytest.mark.parametrize(("state", "inp"), _pairs(IST_EXPECTED))
def test_invite_server_pair(state: TxState, inp: str) -> None:
    tx = server_in("INVITE", state)
    seen = apply_server(tx, "INVITE", inp)
    assert (tx.state, seen, drain(tx)) == IST_EXPECTED[state][inp]


@pytest.mark.parametrize(("state", "inp"), _pairs(NIST_EXPECTED))
def test_non_invite_server_pair(state: TxState, inp: str) -> None:
    tx = server_in("OPTIONS", state)
    seen = apply_server(tx, "OPTIONS", inp)
    assert (tx.state, seen, drain(tx)) == NIST_EXPECTED[state][inp]


def test_module_tables_only_use_reachable_states() -> None:
    """Each module table names only the states its figure has."""
    allowed = {
        id(INVITE_CLIENT_TRANSITIONS): set(ICT_EXPECTED),
        id(NON_INVITE_CLIENT_TRANSITIONS): set(NICT_EXPECTED),
        id(INVITE_SERVER_TRANSITIONS): set(IST_EXPECTED),
        id(NON_INVITE_SERVER_TRANSITIONS): set(NIST_EXPECTED),
    }
    for table in (INVITE_CLIENT_TRANSITIONS, NON_INVITE_CLIENT_TRANSITIONS,
                  INVITE_SERVER_TRANSITIONS, NON_INVITE_SERVER_TRANSITIONS):
        for (state, _), (nxt, _) in table.items():
            assert {state, nxt} <= allowed[id(table)]


# ------------------------------------------------------------------ random sequences

# How far along a machine is: no transition may lower it (nothing leaves Terminated).
RANK = {S.CALLING: 0, S.TRYING: 0, S.PROCEEDING: 1, S.COMPLETED: 2, S.ACCEPTED: 2,
        S.CONFIRMED: 3, S.TERMINATED: 4}

statuses = st.sampled_from([100, 180, 183, 200, 202, 302, 404, 486, 500, 603, 699])
client_ops = st.lists(
    st.one_of(
        st.tuples(st.just("recv"), statuses),
        st.tuples(st.just("tick"), st.floats(0.0, 40.0, allow_nan=False)),
        st.tuples(st.just("next"), st.just(0)),
        st.tuples(st.just("terr"), st.just(0)),
    ),
    max_size=40,
)
server_ops = st.lists(
    st.one_of(
        st.tuples(st.just("send"), statuses),
        st.tuples(st.just("request"), st.just(0)),
        st.tuples(st.just("ack"), st.just(0)),
        st.tuples(st.just("tick"), st.floats(0.0, 40.0, allow_nan=False)),
        st.tuples(st.just("next"), st.just(0)),
        st.tuples(st.just("terr"), st.just(0)),
    ),
    max_size=40,
)


def check_invariants(
    tx: ClientTransaction | ServerTransaction, before: TxState, now: float, after_timer: bool
) -> None:
    assert RANK[tx.state] >= RANK[before]
    d = tx.next_deadline()
    if tx.terminated:
        assert d is None
    if after_timer:
        assert d is None or d > now


@given(method=st.sampled_from(["INVITE", "OPTIONS"]), reliable=st.booleans(), ops=client_ops)
def test_client_random_sequences(method: str, reliable: bool, ops: list[tuple[str, float]]
                                 ) -> None:
    tx = client(method, reliable=reliable)
    now = 0.0
    timeouts = 0
    for op, arg in ops:
        before = tx.state
        timer = False
        if op == "recv":
            tx.receive(response(int(arg), method), now)
        elif op == "terr":
            tx.transport_error(now)
        else:
            if op == "tick":
                now += arg
            else:
                d = tx.next_deadline()
                now = max(now, d if d is not None else now)
            fired = tx.handle_timer(now)
            timer = True
            if fired is not None:
                timeouts += 1
                assert fired == ("B" if method == "INVITE" else "F") and tx.terminated
        check_invariants(tx, before, now, timer)
        tx.outgoing.clear()
    assert timeouts <= 1


@given(method=st.sampled_from(["INVITE", "BYE"]), reliable=st.booleans(), ops=server_ops)
def test_server_random_sequences(method: str, reliable: bool, ops: list[tuple[str, float]]
                                 ) -> None:
    tx = server(method, reliable=reliable)
    now = 0.0
    for op, arg in ops:
        before = tx.state
        timer = False
        try:
            if op == "send":
                tx.send_response(response(int(arg), method), now)
            elif op == "request":
                tx.receive_request(request(method), now)
            elif op == "ack":
                tx.receive_request(request("ACK", cseq_method="ACK"), now)
            elif op == "terr":
                tx.transport_error(now)
            else:
                if op == "tick":
                    now += arg
                else:
                    d = tx.next_deadline()
                    now = max(now, d if d is not None else now)
                fired = tx.handle_timer(now)
                timer = True
                assert fired in (None, "H")
        except LocalProtocolError:
            # only API misuse: a response after a final one, or an ACK to non-INVITE
            assert op == "ack" or (op == "send" and before not in (S.TRYING, S.PROCEEDING))
            assert tx.state == before
        check_invariants(tx, before, now, timer)
        tx.outgoing.clear()
