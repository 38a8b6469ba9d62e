"""sipload's UA through Kamailio (a peer no one here wrote), on 127.0.0.1 only.

* ``ci/kamailio/proxy.cfg``: a record-routing stateful proxy between two sipload UAs
  (blocking ``UARuntime``s in this process).  The callee sees the INVITE with
  Record-Route and answers with it; the caller's route set then sends ACK and BYE
  to the proxy with a Route header (checked on what the caller builds), and the
  callee gets them with the proxy's Via on top (so they went through it; Kamailio
  removes its own Route entry when it loose-routes).  Same for the callee's BYE.
* ``ci/kamailio/registrar.cfg``: REGISTER with credentials is challenged (401) and
  then accepted (200 listing our contact); a wrong password ends in
  REGISTRATION_FAILURE (403) after exactly two REGISTERs: no retry loop.  With
  INVITE authentication on, a call it challenges (407) is sent again with
  Proxy-Authorization, and the ACK for its 2xx carries the same credentials
  (RFC 3261 §13.2.2.4) through the proxy to the callee.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from sipload.runtime import UARuntime
from sipload.sip.message import Request
from sipload.sip.parser import parse_message
from sipload.transport import Peer
from sipload.ua.agent import UAConfig
from sipload.ua.events import Event, EventType
from tests.peers import (
    LOOPBACK,
    REGISTRAR_REALM,
    REGISTRAR_USERS,
    kamailio_proxy,
    kamailio_registrar,
)

pytestmark = pytest.mark.peer

E = EventType
DEADLINE = 10.0
SDP = (b"v=0\r\no=sipload 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n")


def runtime(user: str) -> UARuntime:
    return UARuntime.start_sync(UAConfig(host=LOOPBACK, port=0, user=user))


class Loops:
    """Several blocking runtimes turned in turn; every wait is bounded."""

    def __init__(self, *rts: UARuntime) -> None:
        self.rts = rts
        self.seen: dict[int, list[Event]] = {id(rt): [] for rt in rts}

    def wait(self, rt: UARuntime, want: Callable[[Event], bool],
             timeout: float = DEADLINE) -> Event:
        end = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.seen[id(rt)]):
                if want(ev):
                    return self.seen[id(rt)].pop(i)
            if time.monotonic() > end:
                raise AssertionError(
                    f"not seen; got {[(e.type.name, e.status) for e in self.seen[id(rt)]]}")
            for side in self.rts:
                got = side.event_wait(0.005)
                while got is not None:
                    self.seen[id(side)].append(got)
                    got = side.event_wait(0)

    def quiet(self, seconds: float) -> None:
        """Turn every loop for ``seconds`` (collecting events)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for side in self.rts:
                ev = side.event_wait(0.01)
                if ev is not None:
                    self.seen[id(side)].append(ev)


def of_type(etype: EventType) -> Callable[[Event], bool]:
    return lambda ev: ev.type is etype


@pytest.fixture
def pair() -> Iterator[tuple[UARuntime, UARuntime]]:
    caller, callee = runtime("alice"), runtime("bob")
    try:
        yield caller, callee
    finally:
        caller.close()
        callee.close()


def _hop(values: list[str], port: int) -> bool:
    return any(f"127.0.0.1:{port}" in v for v in values)


def _call_through(proxy_port: int, caller: UARuntime, callee: UARuntime,
                  loops: Loops) -> tuple[int, Event, Event]:
    """INVITE via the proxy, answered 200; returns (cid, caller's answered, callee's invite)."""
    ua = caller.ua
    invite = ua.call_build_initial_invite(f"<sip:bob@{LOOPBACK}:{proxy_port}>",
                                          f"<sip:alice@{LOOPBACK}:{caller.address[2]}>")
    invite.set_body(SDP, "application/sdp")
    cid = ua.call_send_initial_invite(invite)
    incoming = loops.wait(callee, of_type(E.CALL_INVITE))
    req = incoming.request
    assert req is not None
    assert _hop(req.get_all("record-route"), proxy_port), req.to_bytes().decode()
    assert len(req.vias) == 2 and req.vias[0].port == proxy_port
    callee.ua.call_send_answer(incoming.tid, 180)
    answer = callee.ua.call_build_answer(incoming.tid, 200)
    assert _hop(answer.get_all("record-route"), proxy_port)  # §12.1.1: copied into the 2xx
    answer.set_body(SDP, "application/sdp")
    callee.ua.call_send_answer(incoming.tid, 200, answer)
    answered = loops.wait(caller, lambda e: e.cid == cid and e.type is E.CALL_ANSWERED)
    resp = answered.response
    assert resp is not None and _hop(resp.get_all("record-route"), proxy_port)
    return cid, answered, incoming


def _through_proxy(req: Request | None, proxy_port: int) -> None:
    assert req is not None
    vias = req.vias
    assert len(vias) == 2 and vias[0].port == proxy_port, req.to_bytes().decode()


def test_record_routing_proxy_caller_hangs_up(pair: tuple[UARuntime, UARuntime]) -> None:
    caller, callee = pair
    loops = Loops(caller, callee)
    with kamailio_proxy(uas_port=callee.address[2]) as proxy:
        cid, answered, _ = _call_through(proxy.port, caller, callee, loops)
        ack = caller.ua.call_build_ack(answered.did)
        assert _hop(ack.get_all("route"), proxy.port), ack.to_bytes().decode()
        assert f":{callee.address[2]}" in ack.uri_text  # R-URI: the callee's Contact
        caller.ua.call_send_ack(answered.did, ack)
        acked = loops.wait(callee, of_type(E.CALL_ACK))
        _through_proxy(acked.request, proxy.port)
        bye = caller.ua.call_build_request(answered.did, "BYE")
        assert _hop(bye.get_all("route"), proxy.port), bye.to_bytes().decode()
        caller.ua.call_terminate(cid, answered.did)
        closed = loops.wait(callee, of_type(E.CALL_CLOSED))
        _through_proxy(closed.request, proxy.port)
        loops.wait(caller, lambda e: e.cid == cid and e.type is E.CALL_RELEASED)
        loops.wait(callee, of_type(E.CALL_RELEASED))
    assert caller.ua.call_count() == 0 and callee.ua.call_count() == 0


def test_record_routing_proxy_callee_hangs_up(pair: tuple[UARuntime, UARuntime]) -> None:
    caller, callee = pair
    loops = Loops(caller, callee)
    caller.ua.config.auto_ack = True
    with kamailio_proxy(uas_port=callee.address[2]) as proxy:
        cid, _answered, incoming = _call_through(proxy.port, caller, callee, loops)
        loops.wait(callee, of_type(E.CALL_ACK))
        bye = callee.ua.call_build_request(incoming.did, "BYE")
        assert _hop(bye.get_all("route"), proxy.port), bye.to_bytes().decode()
        callee.ua.call_terminate(incoming.cid, incoming.did)
        closed = loops.wait(caller, of_type(E.CALL_CLOSED))
        _through_proxy(closed.request, proxy.port)
        loops.wait(callee, lambda e: e.type is E.CALL_RELEASED)
        loops.wait(caller, lambda e: e.cid == cid and e.type is E.CALL_RELEASED)


def _count_registers(rt: UARuntime) -> list[bytes]:
    """Record every REGISTER the runtime sends: all it writes goes through its
    transports' ``send_many`` (the pump's flush), which this wraps."""
    sent: list[bytes] = []
    real_send_many = rt.transports.send_many

    def send_many(out: list[tuple[bytes, Peer]]) -> list[float]:
        sent.extend(data for data, _ in out if data.startswith(b"REGISTER "))
        return real_send_many(out)  # the send stamps, as TransportSet.send_many returns them

    rt.transports.send_many = send_many  # type: ignore[method-assign]
    return sent


@pytest.fixture
def alice() -> Iterator[UARuntime]:
    rt = runtime("alice")
    try:
        yield rt
    finally:
        rt.close()


def _register(rt: UARuntime, loops: Loops, registrar_port: int, password: str,
              expires: int = 3600) -> tuple[int, Event]:
    """alice REGISTERs at the registrar on ``registrar_port`` with ``password``: the
    registration's id and how it ended (success or failure)."""
    ua = rt.ua
    ua.add_authentication_info("alice", "alice", password, REGISTRAR_REALM)
    rid, req = ua.register_build_initial_register(
        f"sip:alice@{LOOPBACK}:{registrar_port}", f"sip:{LOOPBACK}:{registrar_port}",
        expires=expires)
    ua.register_send_register(rid, req)
    return rid, loops.wait(rt, lambda e: e.rid == rid and e.type in (
        E.REGISTRATION_SUCCESS, E.REGISTRATION_FAILURE))


def test_registrar_challenges_then_accepts(alice: UARuntime) -> None:
    sent = _count_registers(alice)
    loops = Loops(alice)
    with kamailio_registrar() as registrar:
        _, ok = _register(alice, loops, registrar.port, "alice-secret", expires=600)
        assert ok.type is E.REGISTRATION_SUCCESS, (ok.status, ok.reason)
        assert ok.status == 200
        assert ok.response is not None
        contacts = " ".join(ok.response.get_all("contact"))
        assert f"alice@{LOOPBACK}:{alice.address[2]}" in contacts and "expires=" in contacts
    assert len(sent) == 2, sent  # challenged once (401), then accepted
    assert b"Authorization:" not in sent[0] and b"Authorization: Digest" in sent[1]
    assert b'username="alice"' in sent[1] and b"CSeq: 2 REGISTER" in sent[1]


def test_registrar_wrong_password_fails_without_looping(alice: UARuntime) -> None:
    sent = _count_registers(alice)
    loops = Loops(alice)
    with kamailio_registrar() as registrar:
        rid, failed = _register(alice, loops, registrar.port, "not-the-password")
        assert failed.type is E.REGISTRATION_FAILURE and failed.status == 403, failed
        loops.quiet(1.0)  # nothing more goes out
    assert len(sent) == 2, [s.split(b"\r\n", 1)[0] for s in sent]
    assert not [e for e in loops.seen[id(alice)] if e.rid == rid], loops.seen


def _sent_invites(rt: UARuntime) -> list[bytes]:
    """Record every INVITE and ACK the runtime sends (see :func:`_count_registers`)."""
    sent: list[bytes] = []
    real_send_many = rt.transports.send_many

    def send_many(out: list[tuple[bytes, Peer]]) -> list[float]:
        sent.extend(data for data, _ in out if data.startswith((b"INVITE ", b"ACK ")))
        return real_send_many(out)

    rt.transports.send_many = send_many  # type: ignore[method-assign]
    return sent


def test_a_challenged_invites_ack_carries_its_credentials(
        pair: tuple[UARuntime, UARuntime]) -> None:
    """Kamailio challenges alice's INVITE (407); she sends it again with
    Proxy-Authorization, bob (registered there) answers, and the ACK for the 2xx
    reaches bob through the proxy with the same credentials (§13.2.2.4)."""
    caller, callee = pair
    sent = _sent_invites(caller)
    loops = Loops(caller, callee)
    with kamailio_registrar(invite_auth=True) as registrar:
        port = registrar.port
        bob = callee.ua
        bob.add_authentication_info("bob", "bob", REGISTRAR_USERS["bob"], REGISTRAR_REALM)
        rid, req = bob.register_build_initial_register(
            f"sip:bob@{LOOPBACK}:{port}", f"sip:{LOOPBACK}:{port}", expires=600)
        bob.register_send_register(rid, req)
        ok = loops.wait(callee, lambda e: e.rid == rid and e.type in (
            E.REGISTRATION_SUCCESS, E.REGISTRATION_FAILURE))
        assert ok.type is E.REGISTRATION_SUCCESS, (ok.status, registrar.describe())

        ua = caller.ua
        ua.add_authentication_info("alice", "alice", REGISTRAR_USERS["alice"], REGISTRAR_REALM)
        invite = ua.call_build_initial_invite(f"<sip:bob@{LOOPBACK}:{port}>",
                                              f"<sip:alice@{LOOPBACK}:{port}>")
        invite.set_body(SDP, "application/sdp")
        cid = ua.call_send_initial_invite(invite)
        incoming = loops.wait(callee, of_type(E.CALL_INVITE))
        answer = callee.ua.call_build_answer(incoming.tid, 200)
        answer.set_body(SDP, "application/sdp")
        callee.ua.call_send_answer(incoming.tid, 200, answer)
        answered = loops.wait(caller, lambda e: e.cid == cid and e.type is E.CALL_ANSWERED)
        ua.call_send_ack(answered.did)
        acked = loops.wait(callee, of_type(E.CALL_ACK))
        ua.call_terminate(cid, answered.did)
        loops.wait(caller, lambda e: e.cid == cid and e.type is E.CALL_RELEASED)

    invites = [_request(d) for d in sent if d.startswith(b"INVITE ")]
    assert len(invites) == 2, registrar.describe()  # challenged once (407), then let through
    assert invites[0].get("proxy-authorization") is None
    credentials = invites[1].get_all("proxy-authorization")
    assert credentials and 'username="alice"' in credentials[0]
    acks = [_request(d) for d in sent if d.startswith(b"ACK ")]
    assert [a.cseq.seq for a in acks] == [1, 2]  # the 407's (no credentials), the 200's
    assert acks[0].get("proxy-authorization") is None
    assert acks[1].get_all("proxy-authorization") == credentials
    assert acked.request is not None
    _through_proxy(acked.request, port)
    assert acked.request.get_all("proxy-authorization") == credentials


def _request(data: bytes) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg
