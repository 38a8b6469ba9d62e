"""The UAS side: requests that arrive, and our answers to them (RFC 3261 §8.2, §12-§15).

1. A request matching a server transaction is a retransmission (or the ACK of a
   non-2xx): the transaction absorbs it.  An ACK for a 2xx belongs to the dialog.
2. A new request is stamped with where it came from (``received``/``rport`` in
   its top Via, §18.2.1 and RFC 3581), checked (§8.2: method, Require,
   Content-Type ...) and, when a check fails, answered here and reported as
   BAD_MESSAGE.  CANCEL finds the INVITE it cancels (§9.2).
3. A new INVITE makes a call (cid) with one early dialog (did) and, unless
   configured off, 100 Trying at once.  A request with a To tag goes to its
   dialog, or gets 481.
4. Answering an INVITE: a 1xx the INVITE allows to be reliable gets Require:
   100rel and an RSeq and is re-sent until PRACK (RFC 3262); a 2xx confirms the
   call and is re-sent until ACK (§13.3.1.4), one retransmitter for both
   (:mod:`sipload.ua.retransmit`).  A 2xx not ACKed within 64·T1 ends the call
   with a BYE; a reliable provisional not PRACKed within 64·T1 gets 504.
5. The session timer (RFC 4028) runs on the dialog's timer with those two.
"""

from __future__ import annotations

from sipload.sip.build import make_response, salvage_response, stamp_source
from sipload.sip.checks import check_request
from sipload.sip.dialog import dialog_id_of_request, uas_dialog
from sipload.sip.errors import LocalProtocolError, ParseError
from sipload.sip.message import Request, Response
from sipload.sip.transaction import ServerTransaction, cancel_target_key, server_key
from sipload.ua import retransmit, session_timer
from sipload.ua.callstate import CallAction, CallInput, step
from sipload.ua.core import (
    add_dialog,
    arm_dialog,
    bytes_label,
    count_retrans,
    emit,
    flush,
    new_server_tx,
    release,
    respond,
    tx_label,
)
from sipload.ua.events import EventType
from sipload.ua.outbound import send_bye, send_refresh
from sipload.ua.state import Call, CallDialog, CallState, Peer, Purpose, TxRecord, UAState


def bad(s: UAState, data: bytes, peer: Peer, err: ParseError, now: float) -> None:
    """Bytes that do not parse: counted, reported, answered where they can be."""
    s.bad_messages += 1
    emit(s, EventType.BAD_MESSAGE, now, reason=err.reason)
    answer = salvage_response(data, err.status, err.reason)
    if answer is not None:
        s.queue(answer, peer, s.arrived)


def on_request(s: UAState, req: Request, peer: Peer, now: float) -> None:
    """A request from ``peer`` (rules 1-3)."""
    key = server_key(req)
    rec = s.server.get(key)
    if rec is not None:
        tx = rec.tx
        assert isinstance(tx, ServerTransaction)
        before = tx.retransmissions
        ack_for_2xx = tx.receive_request(req, now)
        count_retrans(s, rec.cid, tx.retransmissions - before, tx_label(tx))
        flush(s, rec)
        if ack_for_2xx and req.method == "ACK":
            _on_ack(s, req, now)
        return
    method = req.method
    if method == "ACK":
        _on_ack(s, req, now)
        return
    stamp_source(req, peer[1], peer[2])  # received / rport in the Via we answer with
    if method == "CANCEL":
        _on_cancel(s, req, peer, now)
        return
    c = s.config
    rejection = check_request(req, allowed_methods=c.allow, supported=c.supported,
                              accepted_types=c.accept)
    if rejection is not None:
        s.bad_messages += 1
        rec = new_server_tx(s, req, peer, Purpose.OUT_OF_DIALOG, now)
        resp = make_response(req, rejection.status, rejection.reason,
                             to_tag=s.ids.tag(), extra=list(rejection.headers))
        respond(s, rec, resp, now)
        emit(s, EventType.BAD_MESSAGE, now, request=req, reason=rejection.reason)
        return
    if req.to_tag is not None:
        _on_in_dialog_request(s, req, peer, now)
    elif method == "INVITE":
        _on_new_invite(s, req, peer, now)
    else:
        rec = new_server_tx(s, req, peer, Purpose.OUT_OF_DIALOG, now)
        if method == "OPTIONS" and c.answer_options:
            respond(s, rec, build_answer(s, rec.tid, 200), now)
        emit(s, EventType.MESSAGE_NEW, now, tid=rec.tid, request=req)


def _on_new_invite(s: UAState, req: Request, peer: Peer, now: float) -> None:
    if 0 < s.config.max_calls <= len(s.calls):  # at capacity (RFC 3261 §21.5.4)
        s.refused_busy += 1
        rec = new_server_tx(s, req, peer, Purpose.OUT_OF_DIALOG, now)
        respond(s, rec, make_response(req, 503, "Service Unavailable", to_tag=s.ids.tag(),
                                      extra=[("Retry-After", str(s.config.retry_after))]), now)
        return
    cid = s.new_id()
    rec = new_server_tx(s, req, peer, Purpose.INVITE, now, cid=cid)
    tag = s.ids.tag()
    try:
        dialog = uas_dialog(req, make_response(req, 101, to_tag=tag))
    except ParseError as e:
        respond(s, rec, make_response(req, 400, e.reason, to_tag=tag), now)
        return
    too_small = session_timer.check_request(req, s.config.min_se)
    if too_small is not None:
        respond(s, rec, make_response(req, too_small.status, too_small.reason,
                                      to_tag=tag, extra=list(too_small.headers)), now)
        return
    call = Call(cid, False, CallState.INCOMING, req, rec.tid, peer)
    call.local = rec.local
    s.calls[cid] = call
    cd = add_dialog(s, call, dialog, peer)
    rec.did = cd.did
    if s.config.send_100:
        respond(s, rec, make_response(req, 100), now)
    emit(s, EventType.CALL_INVITE, now, cid=cid, did=cd.did, tid=rec.tid, request=req)


def _on_in_dialog_request(s: UAState, req: Request, peer: Peer, now: float) -> None:
    cd = s.dlg_by_id.get(dialog_id_of_request(req))
    method = req.method
    if cd is None:
        rec = new_server_tx(s, req, peer, Purpose.IN_DIALOG, now)
        respond(s, rec, make_response(req, 481), now)
        return
    call = s.calls[cd.cid]
    rec = new_server_tx(s, req, peer, Purpose.IN_DIALOG, now, cid=call.cid, did=cd.did)
    rejection = cd.dialog.receive_request(req)
    if rejection is not None:
        resp = make_response(req, rejection.status, rejection.reason,
                             extra=list(rejection.headers))
        respond(s, rec, resp, now)
        return
    if method == "BYE":
        respond(s, rec, build_answer(s, rec.tid, 200), now)
        cd.ok = None
        cd.rel = None
        emit(s, EventType.CALL_CLOSED, now, cid=call.cid, did=cd.did, tid=rec.tid, request=req)
        release(s, call, now, "BYE received")
    elif method == "PRACK":
        _on_prack(s, rec, cd, req, now)
    elif method == "INVITE":
        rec.purpose = Purpose.REINVITE
        cd.dialog.invite_server_pending = True
        cd.pending_invite_tid = rec.tid
        if s.config.send_100:
            respond(s, rec, make_response(req, 100), now)
        emit(s, EventType.CALL_REINVITE, now, cid=call.cid, did=cd.did, tid=rec.tid,
             request=req)
    else:
        emit(s, EventType.CALL_MESSAGE_NEW, now, cid=call.cid, did=cd.did, tid=rec.tid,
             request=req)


def _on_prack(s: UAState, rec: TxRecord, cd: CallDialog, req: Request, now: float) -> None:
    rack = req.rack
    call = s.calls[cd.cid]
    # RFC 3262 §3: after a final answer the UAS stops retransmitting an unacknowledged
    # reliable provisional but "MUST be prepared to process PRACK requests" for it
    if (rack is not None and cd.rel_rseq and rack.rseq == cd.rel_rseq
            and rack.cseq == call.invite_cseq):
        cd.rel = None
        cd.rel_rseq = 0  # acknowledged: another PRACK for it gets 481
        respond(s, rec, build_answer(s, rec.tid, 200), now)
        # answered already; reported so a program can wait for it
        emit(s, EventType.CALL_MESSAGE_NEW, now, cid=call.cid, did=cd.did, tid=rec.tid,
             request=req)
    else:
        respond(s, rec, make_response(rec.tx.request, 481, "No matching provisional"), now)


def _on_ack(s: UAState, req: Request, now: float) -> None:
    cd = s.dlg_by_id.get(dialog_id_of_request(req)) if req.to_tag else None
    if cd is None or cd.ok is None:
        return  # an ACK for nothing we wait for (or a retransmission): drop it
    if req.cseq.seq != cd.ok_cseq:
        return
    cd.ok = None
    arm_dialog(s, cd)
    call = s.calls.get(cd.cid)
    if call is None:
        return
    emit(s, EventType.CALL_ACK, now, cid=call.cid, did=cd.did, request=req)
    if step(call, CallInput.ACKED) == CallAction.SEND_BYE:
        send_bye(s, call, cd, now)


def _on_cancel(s: UAState, req: Request, peer: Peer, now: float) -> None:
    rec = new_server_tx(s, req, peer, Purpose.CANCEL, now)
    target = s.server.get(cancel_target_key(req))
    if target is None or target.tx.method != "INVITE":
        respond(s, rec, make_response(req, 481), now)
        return
    respond(s, rec, make_response(req, 200), now)
    tx = target.tx
    assert isinstance(tx, ServerTransaction)
    if tx.last_status >= 200:
        return  # too late: the final answer is already out
    call = s.calls.get(target.cid)
    cd = s.dlg_by_did.get(target.did)
    tag = cd.dialog.local_tag if cd is not None else s.ids.tag()
    respond(s, target, make_response(tx.request, 487, to_tag=tag), now)
    if call is not None:
        emit(s, EventType.CALL_CANCELLED, now, cid=call.cid, did=target.did, tid=target.tid,
             request=req)
        if target.purpose == Purpose.INVITE:
            release(s, call, now, "cancelled")


# ---------------------------------------------------------------------------- answering


def build_answer(s: UAState, tid: int, status: int) -> Response:
    """A default answer to the request of server transaction ``tid``."""
    rec = s.server_rec(tid)
    req = rec.tx.request
    cd = s.dlg_by_did.get(rec.did)
    tag = cd.dialog.local_tag if cd is not None else None
    if tag is None and status > 100 and req.to_tag is None:
        tag = s.ids.tag()
    resp = make_response(req, status, to_tag=tag)
    if req.method in ("INVITE", "UPDATE", "SUBSCRIBE", "REFER") and 100 < status < 300:
        resp.copy_headers_from(req, "record-route")
        resp.add_header("Contact", s.contact_of(rec.local))
    if status == 405 or (req.method in ("INVITE", "OPTIONS") and 200 <= status < 300):
        resp.add_header("Allow", s.allow)
    if req.method == "OPTIONS" and 200 <= status < 300:
        resp.add_header("Accept", ", ".join(s.config.accept))
        resp.add_header("Supported", ", ".join(s.config.supported))
    resp.add_header("Server", s.config.user_agent)
    return resp


def send_answer(s: UAState, tid: int, status: int, answer: Response | None,
                now: float) -> None:
    """Answer server transaction ``tid`` (a default answer when ``answer`` is None)."""
    rec = s.server_rec(tid)
    resp = answer if answer is not None else build_answer(s, tid, status)
    req = rec.tx.request
    if req.method == "INVITE":
        answer_invite(s, rec, resp, now)
        return
    cd = s.dlg_by_did.get(rec.did)
    st: session_timer.SessionTimer | None = None
    if cd is not None and req.method == "UPDATE" and 200 <= resp.status < 300:
        if not resp.has("session-expires"):
            st = session_timer.answer(req, resp, s.config.session_expires)
        if st is None and cd.st is not None:
            st = cd.st
    respond(s, rec, resp, now)
    if cd is not None and st is not None:
        st.arm(now)
        cd.st = st
        arm_dialog(s, cd)


def answer_invite(s: UAState, rec: TxRecord, resp: Response, now: float) -> None:
    """Send an answer to an INVITE (rule 4)."""
    call = s.calls.get(rec.cid)
    cd = s.dlg_by_did.get(rec.did)
    status = resp.status
    req = rec.tx.request
    if call is None or cd is None:
        respond(s, rec, resp, now)
        return
    t1 = s.config.timers.t1
    reliable = rec.peer[0] != "udp"
    if 100 < status < 200 and _wants_100rel(s, req):
        if cd.rel is not None:
            raise LocalProtocolError("a reliable provisional response still awaits PRACK")
        cd.rseq_out += 1
        resp.set_header("Require", "100rel")
        resp.set_header("RSeq", str(cd.rseq_out))
        respond(s, rec, resp, now)
        cd.rel = retransmit.Resend(resp.to_bytes(), cd.peer, now, t1, float("inf"), reliable)
        cd.rel_rseq = cd.rseq_out
        cd.rel_tid = rec.tid
        arm_dialog(s, cd)
        return
    st: session_timer.SessionTimer | None = None
    if 200 <= status < 300:
        if not resp.has("session-expires"):
            st = session_timer.answer(req, resp, s.config.session_expires)
        else:
            st = session_timer.from_2xx(resp)
            if st is not None:
                st.refresher_is_us = not st.refresher_is_us  # from_2xx is the UAC's view
        if resp.body and st is not None:
            cd.local_body = resp.body  # for refresh re-INVITEs
        try:
            cd.peer_allows_update = "UPDATE" in req.values("allow")
        except ParseError:  # a malformed Allow (an unterminated quote): no UPDATE
            cd.peer_allows_update = False
    respond(s, rec, resp, now)
    if st is not None:
        st.arm(now)
        cd.st = st
        arm_dialog(s, cd)
    if status < 200:
        return
    if resp.to_tag == cd.dialog.local_tag:
        cd.dialog.response_sent(resp)
    if rec.purpose == Purpose.REINVITE:
        cd.pending_invite_tid = 0
    if 200 <= status < 300:
        cd.rel = None
        if rec.purpose == Purpose.REINVITE:
            if req.has("contact"):
                cd.dialog.refresh_target(req)
        else:
            step(call, CallInput.ANSWER_SENT)
            call.invite = None  # the transaction keeps it while it matters
        cd.ok = retransmit.Resend(resp.to_bytes(), cd.peer, now, t1, s.config.timers.t2,
                                  reliable)
        cd.ok_cseq = req.cseq.seq
        arm_dialog(s, cd)
    elif rec.purpose == Purpose.INVITE:
        release(s, call, now, f"answered {status}")


def _wants_100rel(s: UAState, req: Request) -> bool:
    if "100rel" in req.require:
        return True
    return s.config.use_100rel and "100rel" in req.supported


def dialog_timer(s: UAState, cd: CallDialog, now: float) -> None:
    """The dialog's timer fired: retransmissions, their give-up, the session timer (4, 5)."""
    call = s.calls.get(cd.cid)
    ok = cd.ok
    if ok is not None:
        fired = retransmit.fire(ok, now, s.out)
        if fired == retransmit.SENT and call is not None and call.local:
            s.out_from[len(s.out) - 1] = call.local
        if fired == retransmit.EXPIRED:
            cd.ok = None
            if call is not None:
                send_bye(s, call, cd, now)  # no ACK for 2xx
        elif fired == retransmit.SENT:
            count_retrans(s, cd.cid, 1, bytes_label(ok.data, "INVITE"))
    rel = cd.rel
    if rel is not None:
        fired = retransmit.fire(rel, now, s.out)
        if fired == retransmit.SENT and call is not None and call.local:
            s.out_from[len(s.out) - 1] = call.local
        if fired == retransmit.EXPIRED:
            cd.rel = None
            rec = s.tx.get(cd.rel_tid)
            if rec is not None and call is not None and call.state == CallState.INCOMING:
                answer_invite(s, rec, make_response(
                    rec.tx.request, 504, "No PRACK", to_tag=cd.dialog.local_tag), now)
        elif fired == retransmit.SENT:
            count_retrans(s, cd.cid, 1, bytes_label(rel.data, "INVITE"))
    st = cd.st
    if st is not None and now >= st.deadline and call is not None:
        if st.refresher_is_us:
            st.deadline = now + st.interval / 2.0  # re-armed by the refresh's answer
            send_refresh(s, call, cd, now)
        else:
            cd.st = None
            send_bye(s, call, cd, now)  # session expired (RFC 4028)
    arm_dialog(s, cd)
