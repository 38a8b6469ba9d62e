"""Dialogs (RFC 3261 §12): creation, routing, CSeq order, glare, forking, termination."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipload.sip.build import make_response
from sipload.sip.checks import Rejection
from sipload.sip.dialog import (
    TRANSITIONS,
    Dialog,
    DialogEvent,
    DialogState,
    creates_dialog,
    dialog_id_of_request,
    dialog_id_of_response,
    uac_dialog,
    uas_dialog,
)
from sipload.sip.errors import LocalProtocolError, ParseError
from sipload.sip.message import Request, Response
from sipload.sip.parser import parse_message
from sipload.sip.uri import SipUri

CALL_ID = "a84b4c76e66710@pc33.atlanta.example.com"
ALICE_TAG = "1928301774"
BOB_TAG = "a6c85cf"
ALICE_CONTACT = "sip:alice@pc33.atlanta.example.com"
BOB_CONTACT = "sip:bob@192.0.2.4"

# The INVITE as Alice's UA sent it (no Record-Route yet) ...
INVITE_SENT = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
# ... and as Bob's UA received it, after p1 (atlanta) then p2 (biloxi) record-routed.
INVITE_RECEIVED = (
    b"INVITE sip:bob@192.0.2.4 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP p2.biloxi.example.com;branch=z9hG4bK4b43c2ff8.1\r\n"
    b"Via: SIP/2.0/UDP p1.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 68\r\n"
    b"Record-Route: <sip:p2.biloxi.example.com;lr>\r\n"
    b"Record-Route: <sip:p1.atlanta.example.com;lr>\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
RINGING = (
    b"SIP/2.0 180 Ringing\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    b"Record-Route: <sip:p2.biloxi.example.com;lr>\r\n"
    b"Record-Route: <sip:p1.atlanta.example.com;lr>\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:bob@192.0.2.4>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
OK = RINGING.replace(b"180 Ringing", b"200 OK")


def wire(*lines: str) -> Request | Response:
    """Parse a message given line by line (CRLF line ends, empty line appended)."""
    return parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())


def req(data: bytes) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def resp(data: bytes) -> Response:
    msg = parse_message(data)
    assert isinstance(msg, Response)
    return msg


def response(status: int, *, tag: str | None = BOB_TAG, cseq: str = "314159 INVITE",
             contact: str | None = f"<{BOB_CONTACT}>", rr: tuple[str, ...] = (),
             from_tag: str = ALICE_TAG, call_id: str = CALL_ID) -> Response:
    """A response of Bob's side to Alice, as Alice receives it."""
    lines = [f"SIP/2.0 {status} Whatever",
             "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds"]
    lines += [f"Record-Route: {r}" for r in rr]
    lines.append("To: Bob <sip:bob@biloxi.example.com>" + (f";tag={tag}" if tag else ""))
    lines.append(f"From: Alice <sip:alice@atlanta.example.com>;tag={from_tag}")
    lines += [f"Call-ID: {call_id}", f"CSeq: {cseq}"]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    msg = wire(*lines)
    assert isinstance(msg, Response)
    return msg


BOB = ("Bob <sip:bob@biloxi.example.com>", "192.0.2.4;branch=z9hG4bKnashds10", ALICE_CONTACT)
ALICE = ("Alice <sip:alice@atlanta.example.com>", "pc33.atlanta.example.com;branch=z9hG4bKnashds8",
         BOB_CONTACT)
"""Who sends a request in the dialog: their name-addr, their Via, the remote target."""


def _in_dialog(sender: tuple[str, str, str], receiver: tuple[str, str, str], method: str,
               seq: int, from_tag: str, to_tag: str, contact: str | None) -> Request:
    """A request ``sender`` sends in the dialog, as ``receiver`` gets it."""
    (frm, via, target), to = sender, receiver[0]
    lines = [f"{method} {target} SIP/2.0", f"Via: SIP/2.0/UDP {via}", "Max-Forwards: 70",
             f"From: {frm};tag={from_tag}", f"To: {to};tag={to_tag}",
             f"Call-ID: {CALL_ID}", f"CSeq: {seq} {method}"]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    msg = wire(*lines)
    assert isinstance(msg, Request)
    return msg


def from_bob(method: str, seq: int, *, contact: str | None = None,
             to_tag: str = ALICE_TAG, from_tag: str = BOB_TAG) -> Request:
    """A request Bob sends in the dialog, as Alice receives it (UAC-side dialog)."""
    return _in_dialog(BOB, ALICE, method, seq, from_tag, to_tag, contact)


def from_alice(method: str, seq: int, *, contact: str | None = None) -> Request:
    """A request Alice sends in the dialog, as Bob receives it (UAS-side dialog)."""
    return _in_dialog(ALICE, BOB, method, seq, ALICE_TAG, BOB_TAG, contact)


def confirmed_uac() -> Dialog:
    return uac_dialog(req(INVITE_SENT), resp(OK))


def bob_answer(invite: Request, status: int) -> Response:
    """Bob's own response to ``invite``: his tag, his Contact, the Record-Route copied."""
    r = make_response(invite, status, to_tag=BOB_TAG, extra=[("Contact", f"<{BOB_CONTACT}>")])
    r.copy_headers_from(invite, "record-route")
    return r


def confirmed_uas() -> Dialog:
    invite = req(INVITE_RECEIVED)
    return uas_dialog(invite, bob_answer(invite, 200))


def transfer(msg: Request) -> Request:
    """What the peer parses from ``msg`` on the wire (the UA would add a Via first)."""
    msg.prepend_header("Via", "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKtransfer")
    return req(msg.to_bytes())


# ---------------------------------------------------------------------------- identity


def test_dialog_ids_of_messages() -> None:
    assert dialog_id_of_request(req(INVITE_RECEIVED)) == (CALL_ID, "", ALICE_TAG)
    assert dialog_id_of_response(resp(RINGING)) == (CALL_ID, ALICE_TAG, BOB_TAG)
    assert dialog_id_of_request(from_bob("BYE", 1)) == (CALL_ID, ALICE_TAG, BOB_TAG)
    d = confirmed_uac()
    assert d.id == (CALL_ID, ALICE_TAG, BOB_TAG) == dialog_id_of_request(from_bob("BYE", 1))
    assert confirmed_uas().id == (CALL_ID, BOB_TAG, ALICE_TAG)


def test_creates_dialog() -> None:
    invite = req(INVITE_SENT)
    assert creates_dialog(invite, resp(RINGING))
    assert creates_dialog(invite, resp(OK))
    assert not creates_dialog(invite, response(100, tag=None))
    assert not creates_dialog(invite, response(183, tag=None))
    assert not creates_dialog(invite, response(486))
    options = wire("OPTIONS sip:bob@biloxi.example.com SIP/2.0", "CSeq: 1 OPTIONS",
                   f"Call-ID: {CALL_ID}")
    assert isinstance(options, Request)
    assert not creates_dialog(options, response(200, cseq="1 OPTIONS"))


# ---------------------------------------------------------------------------- UAC creation


def test_uac_early_dialog_then_confirmed_by_2xx() -> None:
    invite = req(INVITE_SENT)
    d = uac_dialog(invite, resp(RINGING))
    assert d.state == DialogState.EARLY
    assert d.invite_client_pending
    assert (d.local_tag, d.remote_tag) == (ALICE_TAG, BOB_TAG)
    assert str(d.local_uri) == f'"Alice" <sip:alice@atlanta.example.com>;tag={ALICE_TAG}'
    assert str(d.remote_uri) == f'"Bob" <sip:bob@biloxi.example.com>;tag={BOB_TAG}'
    assert str(d.remote_target) == BOB_CONTACT
    # Record-Route reversed at the UAC: the first hop (p1, Alice's proxy) first.
    assert [str(r) for r in d.route_set] == [
        "<sip:p1.atlanta.example.com;lr>", "<sip:p2.biloxi.example.com;lr>"]
    assert (d.local_seq, d.remote_seq, d.secure) == (314159, None, False)

    d.receive_response(resp(OK))
    assert d.state == DialogState.CONFIRMED
    assert not d.invite_client_pending
    ack = d.create_request("ACK")
    assert str(ack.cseq) == "314159 ACK"
    assert d.local_seq == 314159
    d.receive_response(resp(OK))  # a 2xx retransmission changes nothing
    assert d.state == DialogState.CONFIRMED


def test_uac_dialog_from_2xx_is_confirmed() -> None:
    d = confirmed_uac()
    assert d.state == DialogState.CONFIRMED
    assert not d.invite_client_pending
    assert d.local_invite_seq == 314159


def test_confirming_2xx_recomputes_route_set_and_target() -> None:
    d = uac_dialog(req(INVITE_SENT), response(180))  # an RFC 2543 proxy: no RR in the 1xx
    assert d.route_set == []
    d.receive_response(response(200, contact="<sip:bob@192.0.2.99>",
                                rr=("<sip:p2.biloxi.example.com;lr>",
                                    "<sip:p1.atlanta.example.com;lr>")))
    assert [str(r.uri) for r in d.route_set] == [
        "sip:p1.atlanta.example.com;lr", "sip:p2.biloxi.example.com;lr"]
    assert str(d.remote_target) == "sip:bob@192.0.2.99"
    # Once confirmed the route set is fixed: a re-INVITE's 2xx does not touch it.
    d.create_request("INVITE")
    d.receive_response(response(200, cseq="314160 INVITE", rr=("<sip:evil.example.com;lr>",)))
    assert len(d.route_set) == 2


def test_uac_dialog_errors() -> None:
    invite = req(INVITE_SENT)
    with pytest.raises(ParseError):
        uac_dialog(invite, response(200, tag=None))
    with pytest.raises(ParseError):
        uac_dialog(invite, response(200, contact=None))
    with pytest.raises(ParseError):
        uac_dialog(invite, response(180, contact=None))
    with pytest.raises(ParseError):
        uac_dialog(invite, response(200, contact="*"))
    with pytest.raises(ParseError):
        uac_dialog(invite, response(200, contact="<tel:+15551234>"))
    with pytest.raises(ParseError):
        uac_dialog(invite, response(200, contact="<sip:a@h1>, <sip:b@h2>"))
    with pytest.raises(LocalProtocolError):
        uac_dialog(invite, response(100, tag=None))
    with pytest.raises(LocalProtocolError):
        uac_dialog(invite, response(183, tag=None))
    with pytest.raises(LocalProtocolError):
        uac_dialog(invite, response(486))
    with pytest.raises(LocalProtocolError):
        uac_dialog(invite, response(200, cseq="314158 INVITE"))
    with pytest.raises(LocalProtocolError):
        uac_dialog(invite, response(200, call_id="other@x"))


# ---------------------------------------------------------------------------- UAS creation


def test_uas_dialog_keeps_record_route_order() -> None:
    d = confirmed_uas()
    assert d.state == DialogState.CONFIRMED
    assert [str(r) for r in d.route_set] == [
        "<sip:p2.biloxi.example.com;lr>", "<sip:p1.atlanta.example.com;lr>"]
    assert str(d.remote_target) == ALICE_CONTACT
    assert (d.local_seq, d.remote_seq) == (None, 314159)
    assert d.local_uri.tag == BOB_TAG and d.remote_uri.tag == ALICE_TAG
    assert not d.invite_server_pending


def test_uas_early_dialog_confirmed_or_ended_by_our_final() -> None:
    invite = req(INVITE_RECEIVED)
    d = uas_dialog(invite, bob_answer(invite, 180))
    assert d.state == DialogState.EARLY and d.invite_server_pending
    with pytest.raises(LocalProtocolError):
        d.create_request("INVITE", cseq=1)  # §14.1: our answer to an INVITE is pending
    d.response_sent(bob_answer(invite, 183))
    assert d.state == DialogState.EARLY
    d.response_sent(bob_answer(invite, 200))
    assert d.state == DialogState.CONFIRMED and not d.invite_server_pending

    d2 = uas_dialog(invite, bob_answer(invite, 180))
    d2.response_sent(bob_answer(invite, 486))
    assert d2.state == DialogState.TERMINATED


def test_uas_dialog_errors() -> None:
    invite = req(INVITE_RECEIVED)
    with pytest.raises(LocalProtocolError):
        uas_dialog(invite, make_response(invite, 200))  # our response lacks our tag
    no_contact = req(INVITE_RECEIVED.replace(b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n",
                                             b""))
    with pytest.raises(ParseError) as e:
        uas_dialog(no_contact, bob_answer(no_contact, 200))
    assert e.value.status == 400


def test_uas_first_request_needs_a_cseq_then_counts_by_one() -> None:
    d = confirmed_uas()
    with pytest.raises(LocalProtocolError):
        d.create_request("BYE")
    info = d.create_request("INFO", cseq=1)
    assert d.local_seq == 1 and info.cseq.seq == 1
    assert d.create_request("INFO").cseq.seq == 2
    assert d.create_request("INFO", cseq=1).cseq.seq == 1  # sent as asked ...
    assert d.local_seq == 2  # ... without moving local_seq back
    with pytest.raises(LocalProtocolError):
        d.create_request("INFO", cseq=2**31)


def test_null_tags_are_omitted() -> None:
    """An RFC 2543 peer sends no From tag: the dialog's remote tag is empty."""
    invite = req(INVITE_RECEIVED.replace(b";tag=1928301774", b""))
    d = uas_dialog(invite, bob_answer(invite, 200))
    assert d.remote_tag == ""
    bye = d.create_request("BYE", cseq=7)
    assert bye.to.tag is None and bye.from_.tag == BOB_TAG


# ---------------------------------------------------------------------------- routing


def test_loose_routing_request() -> None:
    d = confirmed_uac()
    bye = d.create_request("BYE")
    assert bye.uri_text == BOB_CONTACT
    assert [str(r) for r in bye.routes] == [
        "<sip:p1.atlanta.example.com;lr>", "<sip:p2.biloxi.example.com;lr>"]
    assert bye.to.tag == BOB_TAG and bye.from_.tag == ALICE_TAG
    assert str(bye.to.uri) == "sip:bob@biloxi.example.com"
    assert bye.call_id == CALL_ID
    assert str(bye.cseq) == "314160 BYE" and d.local_seq == 314160
    assert bye.max_forwards == 70
    assert not bye.has("via") and not bye.has("contact")


def test_no_route_set_no_route_header() -> None:
    d = uac_dialog(req(INVITE_SENT), response(200))
    info = d.create_request("INFO")
    assert info.uri_text == BOB_CONTACT and not info.has("route")


def test_strict_routing_request() -> None:
    """The example of §12.2.1.1: the route set <sip:proxy1>,<sip:proxy2>,<sip:proxy3;lr>,
    <sip:proxy4> and remote target sip:user@remoteua."""
    ok = response(200, contact="<sip:user@remoteua>",
                  rr=("<sip:proxy4>", "<sip:proxy3;lr>", "<sip:proxy2>",
                      "<sip:proxy1;transport=tcp;method=INVITE>"))
    d = uac_dialog(req(INVITE_SENT), ok)
    info = d.create_request("INFO")
    assert info.uri_text == "sip:proxy1;transport=tcp"  # method= may not be in a R-URI
    assert [str(r) for r in info.routes] == [
        "<sip:proxy2>", "<sip:proxy3;lr>", "<sip:proxy4>", "<sip:user@remoteua>"]
    assert str(info.cseq) == "314160 INFO"
    again = transfer(info)
    assert [str(r.uri) for r in again.routes][-1] == "sip:user@remoteua"


@pytest.mark.parametrize("rr", [
    (),
    ("<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"),
    ("<sip:proxy4>", "<sip:proxy3;lr>", "<sip:proxy2>", "<sip:proxy1;transport=tcp;method=X>"),
], ids=["no-routes", "loose", "strict"])
def test_ack_bytes_are_create_requests_ack_serialized(rr: tuple[str, ...]) -> None:
    """The ACK written as text is byte for byte the one built as a Request, its Via put
    on top; hop_text is what next_hop looks up (first Route, else the Request-URI).
    Again after a target refresh."""
    d = uac_dialog(req(INVITE_SENT), response(200, rr=rr))
    via = "SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKa1;rport"
    for contact in ("<sip:bob@192.0.2.4>", "<sip:bob@192.0.2.99:5080;transport=udp>"):
        d.receive_response(response(200, contact=contact, cseq="314160 UPDATE"))
        built = d.create_request("ACK", cseq=314159)
        first_route = built.get("route")
        built.prepend_header("Via", via)
        assert d.ack_bytes(314159, via) == built.to_bytes()
        assert d.hop_text() == (first_route if first_route is not None else built.uri_text)
    assert d.local_seq == 314159  # an ACK takes no number of its own
    with pytest.raises(LocalProtocolError):
        d.ack_bytes(2**31, via)


def test_requests_do_not_share_state_with_the_dialog() -> None:
    d = confirmed_uac()
    bye = d.create_request("BYE")
    uri = bye.uri
    assert isinstance(uri, SipUri)
    uri.params.set("transport", "tcp")  # the UA may change its request freely ...
    bye.set_header("Route", "<sip:elsewhere;lr>")
    assert str(d.remote_target) == BOB_CONTACT  # ... the dialog keeps its own copies
    assert str(d.create_request("INFO").routes[0].uri) == "sip:p1.atlanta.example.com;lr"


# ---------------------------------------------------------------------------- two endpoints


def test_two_endpoints_in_memory() -> None:
    alice = uac_dialog(req(INVITE_SENT), resp(OK))
    invite = req(INVITE_RECEIVED)
    bob = uas_dialog(invite, bob_answer(invite, 200))
    assert alice.id == (bob.call_id, bob.remote_tag, bob.local_tag)

    info = transfer(alice.create_request("INFO"))
    assert dialog_id_of_request(info) == bob.id
    assert bob.receive_request(info) is None and bob.remote_seq == 314160

    bye = transfer(bob.create_request("BYE", cseq=1))
    assert bye.uri_text == ALICE_CONTACT
    assert [str(r.uri) for r in bye.routes] == [
        "sip:p2.biloxi.example.com;lr", "sip:p1.atlanta.example.com;lr"]
    assert dialog_id_of_request(bye) == alice.id
    assert alice.receive_request(bye) is None
    assert alice.state == DialogState.TERMINATED and alice.remote_seq == 1
    bob.receive_response(make_response(bye, 200))
    assert bob.state == DialogState.TERMINATED


# ---------------------------------------------------------------------------- CSeq rules


def test_cseq_order_at_uas() -> None:
    d = confirmed_uas()
    rej = d.receive_request(from_alice("INFO", 314158))
    assert rej is not None and rej.status == 500
    rej = d.receive_request(from_alice("INFO", 314159))  # equal: not a new request
    assert rej is not None and rej.status == 500
    assert d.remote_seq == 314159
    assert d.receive_request(from_alice("ACK", 314159)) is None  # the INVITE's number
    assert d.receive_request(from_alice("CANCEL", 314159)) is None
    assert d.remote_seq == 314159
    assert d.receive_request(from_alice("INFO", 314165)) is None  # a gap is fine
    assert d.remote_seq == 314165
    rej = d.receive_request(from_alice("INFO", 314160))
    assert isinstance(rej, Rejection) and rej.status == 500 and not rej.headers
    assert d.remote_seq == 314165


def test_first_request_sets_remote_seq_at_uac() -> None:
    d = confirmed_uac()
    assert d.remote_seq is None
    assert d.receive_request(from_bob("INFO", 5)) is None
    assert d.remote_seq == 5


def test_request_of_another_dialog() -> None:
    d = confirmed_uac()
    with pytest.raises(LocalProtocolError):
        d.receive_request(from_bob("INFO", 5, from_tag="someone-else"))
    with pytest.raises(LocalProtocolError):
        d.receive_response(response(200, from_tag="not-ours", cseq="314160 INFO"))


def test_malformed_request_is_rejected_not_raised() -> None:
    d = confirmed_uac()
    bad = from_bob("INFO", 5)
    bad.set_header("CSeq", "five INFO")
    rej = d.receive_request(bad)
    assert rej is not None and rej.status == 400
    mismatch = from_bob("INFO", 5)
    mismatch.set_header("CSeq", "5 BYE")
    rej = d.receive_request(mismatch)
    assert rej is not None and rej.status == 400
    assert d.remote_seq is None


# ---------------------------------------------------------------------------- re-INVITE


def test_glare_gives_491() -> None:
    d = confirmed_uac()
    reinvite = d.create_request("INVITE")
    assert d.invite_client_pending and reinvite.cseq.seq == 314160
    with pytest.raises(LocalProtocolError):
        d.create_request("INVITE")  # §14.1: one INVITE transaction at a time
    rej = d.receive_request(from_bob("INVITE", 10, contact=f"<{BOB_CONTACT}>"))
    assert rej is not None and rej.status == 491
    assert d.remote_seq is None and not d.invite_server_pending  # rejected: no change
    assert d.receive_request(from_bob("INFO", 11)) is None  # other methods go on

    d.receive_response(response(200, cseq="314160 INVITE"))
    assert not d.invite_client_pending
    assert d.receive_request(from_bob("INVITE", 12, contact=f"<{BOB_CONTACT}>")) is None
    assert d.invite_server_pending


def test_overlapping_incoming_reinvites_give_500_with_retry_after() -> None:
    d = confirmed_uas()
    first = from_alice("INVITE", 314160)
    assert d.receive_request(first) is None and d.invite_server_pending
    rej = d.receive_request(from_alice("INVITE", 314161), retry_after=7)
    assert rej is not None and rej.status == 500
    assert ("Retry-After", "7") in rej.headers
    assert d.remote_seq == 314160
    d.response_sent(make_response(from_alice("INVITE", 314161), 500))  # not the pending one
    assert d.invite_server_pending
    d.response_sent(make_response(first, 200))
    assert not d.invite_server_pending and d.state == DialogState.CONFIRMED
    assert d.receive_request(from_alice("INVITE", 314162)) is None


def test_failed_reinvite_keeps_the_dialog() -> None:
    d = confirmed_uac()
    d.create_request("INVITE")
    d.receive_response(response(488, cseq="314160 INVITE"))
    assert d.state == DialogState.CONFIRMED and not d.invite_client_pending
    d.receive_response(response(200, cseq="314159 INVITE"))  # a late 2xx of the first INVITE
    assert not d.invite_client_pending


# ---------------------------------------------------------------------------- target refresh


def test_target_refresh_on_incoming_reinvite_waits_for_acceptance() -> None:
    d = confirmed_uas()
    reinvite = from_alice("INVITE", 314160, contact="<sip:alice@198.51.100.7>")
    assert d.receive_request(reinvite) is None
    assert str(d.remote_target) == ALICE_CONTACT  # not before the UA accepts it
    d.refresh_target(reinvite)
    d.response_sent(make_response(reinvite, 200))
    assert str(d.remote_target) == "sip:alice@198.51.100.7"
    assert d.create_request("BYE", cseq=1).uri_text == "sip:alice@198.51.100.7"


def test_target_refresh_by_update_and_by_2xx_to_our_reinvite() -> None:
    d = confirmed_uac()
    assert d.receive_request(from_bob("UPDATE", 1, contact="<sip:bob@203.0.113.5>")) is None
    assert str(d.remote_target) == "sip:bob@203.0.113.5"
    assert d.receive_request(from_bob("INFO", 2, contact="<sip:bob@203.0.113.6>")) is None
    assert str(d.remote_target) == "sip:bob@203.0.113.5"  # INFO refreshes nothing
    assert d.receive_request(from_bob("UPDATE", 3)) is None  # no Contact: no change
    assert str(d.remote_target) == "sip:bob@203.0.113.5"
    d.create_request("INVITE")
    d.receive_response(response(200, cseq="314160 INVITE", contact="<sip:bob@203.0.113.9>"))
    assert str(d.remote_target) == "sip:bob@203.0.113.9"
    d.receive_response(response(200, cseq="314161 INFO", contact="<sip:bob@203.0.113.1>"))
    assert str(d.remote_target) == "sip:bob@203.0.113.9"


def test_bad_contact_in_target_refresh() -> None:
    d = confirmed_uac()
    rej = d.receive_request(from_bob("UPDATE", 1, contact="*"))
    assert rej is not None and rej.status == 400
    assert d.remote_seq is None and str(d.remote_target) == BOB_CONTACT
    rej = d.receive_request(from_bob("INVITE", 1, contact="<tel:+15551234>"))
    assert rej is not None and rej.status == 400  # refused at once, not at the 2xx
    assert d.remote_seq is None and not d.invite_server_pending
    with pytest.raises(ParseError):
        d.refresh_target(from_bob("INVITE", 2, contact="<tel:+15551234>"))
    d.create_request("INVITE")
    with pytest.raises(ParseError):
        d.receive_response(response(200, cseq="314160 INVITE", contact="<sip:a@b>, <sip:c@d>"))
    assert d.invite_client_pending  # nothing applied


# ---------------------------------------------------------------------------- forking


def test_forked_invite_gives_one_early_dialog_per_to_tag() -> None:
    invite = req(INVITE_SENT)
    a = uac_dialog(invite, response(180, tag="fork-a", contact="<sip:bob@192.0.2.10>"))
    b = uac_dialog(invite, response(183, tag="fork-b", contact="<sip:bob@192.0.2.20>"))
    assert a.id != b.id
    assert a.state == b.state == DialogState.EARLY
    assert (a.local_seq, b.local_seq) == (314159, 314159)

    ok_b = response(200, tag="fork-b", contact="<sip:bob@192.0.2.20>")
    assert dialog_id_of_response(ok_b) == b.id
    b.receive_response(ok_b)
    assert b.state == DialogState.CONFIRMED
    assert a.state == DialogState.EARLY
    with pytest.raises(LocalProtocolError):
        a.receive_response(ok_b)  # the UA routes by dialog ID; this 2xx is b's
    a.receive_response(response(100, tag=None))  # hop-by-hop, harmless
    assert a.state == DialogState.EARLY
    a.terminate()  # 64*T1 after the first 2xx (§13.2.2.4): the UA's call
    assert a.state == DialogState.TERMINATED and b.state == DialogState.CONFIRMED


def test_non_2xx_final_ends_early_dialogs_whatever_its_tag() -> None:
    invite = req(INVITE_SENT)
    a = uac_dialog(invite, response(180, tag="fork-a"))
    b = uac_dialog(invite, response(180, tag="fork-b"))
    a.receive_response(response(487, tag="proxy-made"))
    b.receive_response(response(486, tag="fork-b"))
    assert a.state == b.state == DialogState.TERMINATED
    assert not a.invite_client_pending and not b.invite_client_pending


# ---------------------------------------------------------------------------- termination


@pytest.mark.parametrize("status", [481, 408])
def test_481_and_408_terminate(status: int) -> None:
    d = confirmed_uac()
    d.create_request("INFO")
    d.receive_response(response(status, cseq="314160 INFO"))
    assert d.state == DialogState.TERMINATED
    with pytest.raises(LocalProtocolError):
        d.create_request("BYE")
    rej = d.receive_request(from_bob("INFO", 3))
    assert rej is not None and rej.status == 481
    assert d.create_request("ACK").method == "ACK"  # a 2xx may still need its ACK


def test_481_to_cancel_or_other_errors_keep_the_dialog() -> None:
    d = confirmed_uac()
    d.create_request("INVITE")
    d.create_request("CANCEL")
    d.receive_response(response(481, cseq="314160 CANCEL"))
    assert d.state == DialogState.CONFIRMED
    d.create_request("BYE")
    d.receive_response(response(401, cseq="314161 BYE"))  # retried with credentials
    assert d.state == DialogState.CONFIRMED


def test_bye_ends_the_dialog_both_ways() -> None:
    d = confirmed_uac()
    bye = d.create_request("BYE")
    assert d.state == DialogState.CONFIRMED
    d.receive_response(response(200, cseq=f"{bye.cseq.seq} BYE", contact=None))
    assert d.state == DialogState.TERMINATED
    u = confirmed_uas()
    assert u.receive_request(from_alice("BYE", 314160)) is None
    assert u.state == DialogState.TERMINATED


# ---------------------------------------------------------------------------- ACK and CANCEL


def test_ack_and_cancel_reuse_the_invite_number() -> None:
    d = confirmed_uac()
    reinvite = d.create_request("INVITE")
    cancel = d.create_request("CANCEL")
    assert str(cancel.cseq) == f"{reinvite.cseq.seq} CANCEL"
    assert cancel.uri_text == reinvite.uri_text
    assert cancel.get_all("route") == reinvite.get_all("route")
    ack = d.create_request("ACK", cseq=314159)
    assert str(ack.cseq) == "314159 ACK"
    assert d.local_seq == reinvite.cseq.seq
    assert d.create_request("INFO").cseq.seq == reinvite.cseq.seq + 1
    u = confirmed_uas()
    with pytest.raises(LocalProtocolError):
        u.create_request("ACK")  # this side sent no INVITE: the caller must say
    assert str(u.create_request("ACK", cseq=9).cseq) == "9 ACK" and u.local_seq is None


# ---------------------------------------------------------------------------- secure


def _sips_invite() -> Request:
    return req(INVITE_SENT.replace(b"INVITE sip:bob@", b"INVITE sips:bob@")
               .replace(b"<sip:alice@", b"<sips:alice@"))


def test_sips_remote_target_keeps_dialog_secure() -> None:
    invite = _sips_invite()
    d = uac_dialog(invite, response(200, contact="<sips:bob@192.0.2.4>"))
    assert d.secure
    bye = d.create_request("INFO")
    assert bye.uri_text == "sips:bob@192.0.2.4"
    d.refresh_target(from_bob("UPDATE", 1, contact="<sips:bob@192.0.2.5>"))
    assert str(d.remote_target) == "sips:bob@192.0.2.5" and d.secure
    with pytest.raises(ParseError):
        d.refresh_target(from_bob("UPDATE", 2, contact="<sip:bob@192.0.2.6>"))
    rej = d.receive_request(from_bob("UPDATE", 3, contact="<sip:bob@192.0.2.6>"))
    assert rej is not None and rej.status == 400
    assert str(d.remote_target) == "sips:bob@192.0.2.5" and d.secure
    with pytest.raises(ParseError):  # a secure dialog cannot start with a sip: target
        uac_dialog(invite, response(200))


def test_secure_needs_sips_and_tls() -> None:
    invite = _sips_invite()
    assert not uac_dialog(invite, response(200), secure=False).secure
    assert uac_dialog(invite, response(200, contact="<sips:b@h>"), secure=True).secure
    assert not uac_dialog(req(INVITE_SENT), response(200), secure=True).secure
    assert not confirmed_uas().secure


# ---------------------------------------------------------------------------- state table


def test_transition_table_is_total() -> None:
    for state, event in itertools.product(DialogState, DialogEvent):
        assert (state, event) in TRANSITIONS
    assert len(TRANSITIONS) == len(DialogState) * len(DialogEvent)


@given(st.sampled_from(list(DialogState)), st.lists(st.sampled_from(list(DialogEvent))))
def test_terminated_absorbs_and_confirmed_never_goes_back(
    start: DialogState, events: list[DialogEvent]
) -> None:
    state = start
    for event in events:
        nxt = TRANSITIONS[(state, event)]
        if state == DialogState.TERMINATED:
            assert nxt == DialogState.TERMINATED
        if state == DialogState.CONFIRMED:
            assert nxt != DialogState.EARLY
        if event in (DialogEvent.GONE, DialogEvent.BYE, DialogEvent.TERMINATE):
            assert nxt == DialogState.TERMINATED
        state = nxt


# ---------------------------------------------------------------------------- fuzz

METHODS = ["INVITE", "ACK", "BYE", "CANCEL", "INFO", "UPDATE", "NOTIFY", "REFER",
           "SUBSCRIBE", "OPTIONS", "PRACK", "MESSAGE",
           "+INVITE", "+FINAL"]  # this side sends a re-INVITE / gets its final response
CONTACTS = [None, "<sip:alice@198.51.100.1>", "<sips:alice@198.51.100.2>", "*",
            "<tel:+15551234>", "<sip:a@h1>, <sip:b@h2>", "<sip:broken", ""]
STEP = st.tuples(
    st.sampled_from(METHODS),
    # mostly a small step from the last number (in order, equal, a little lower),
    # sometimes any number at all
    st.one_of(st.integers(-3, 6), st.integers(0, 2**32 - 1).map(lambda n: n + 100)),
    st.sampled_from(CONTACTS),
    st.sampled_from([None, 180, 200, 486]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=25), st.booleans())
def test_random_mid_dialog_requests_keep_remote_seq_monotonic(
    steps: list[tuple[str, int, str | None, int | None]], uas_side: bool
) -> None:
    """Invariants: remote_seq never decreases; an accepted request sets it, a rejected one
    leaves it; at most one INVITE transaction is pending; only ParseError or
    LocalProtocolError escape (none here: receive_request answers with Rejections)."""
    d = confirmed_uas() if uas_side else confirmed_uac()
    make = from_alice if uas_side else from_bob
    for method, step, contact, answer in steps:
        assert not (d.invite_client_pending and d.invite_server_pending)  # §14.1
        before = d.remote_seq
        seq = step - 100 if step >= 100 else max(0, (before or 314159) + step)
        try:
            if method == "+INVITE":
                d.create_request("INVITE", cseq=(d.local_seq or 0) + 1)
                continue
            if method == "+FINAL":
                n = d.local_invite_seq
                if d.invite_client_pending and n is not None:
                    local, remote = (BOB_TAG, ALICE_TAG) if uas_side else (ALICE_TAG, BOB_TAG)
                    final = response(answer or 500, cseq=f"{n} INVITE", tag=remote,
                                     from_tag=local)
                    d.receive_response(final)
                continue
        except LocalProtocolError:
            continue
        was_terminated = d.state == DialogState.TERMINATED
        request = make(method, seq, contact=contact)
        try:
            rej = d.receive_request(request, retry_after=3)
            if answer is not None and method == "INVITE" and rej is None:
                d.response_sent(make_response(request, answer))
        except (ParseError, LocalProtocolError):
            continue
        after = d.remote_seq
        if before is not None:
            assert after is not None and after >= before
        if rej is None and method not in ("ACK", "CANCEL"):
            assert not was_terminated and after == seq
        if rej is not None:
            assert after == before
            assert rej.status in (400, 481, 491, 500)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["INFO", "INVITE", "UPDATE", "ACK", "CANCEL", "BYE"]),
                max_size=20))
def test_local_cseq_counts_by_one(methods: list[str]) -> None:
    d = confirmed_uac()
    for method in methods:
        before = d.local_seq
        try:
            r = d.create_request(method)
        except LocalProtocolError:
            continue
        if method in ("ACK", "CANCEL"):
            assert d.local_seq == before
        else:
            assert before is not None and r.cseq.seq == before + 1 == d.local_seq
        if method == "INVITE":
            d.receive_response(response(200, cseq=f"{r.cseq.seq} INVITE"))
        assert transfer(r).cseq == r.cseq
