"""The UAC side: responses to our requests, transactions that failed, transport errors.

1. A response with more than one Via is not for us (§8.1.3.3).  One matching no
   client transaction may still be a 2xx retransmission of an INVITE whose
   transaction has ended: it gets our ACK again (§13.2.2.4).  One whose branch
   matches but whose Call-ID, From tag or CSeq does not answer our request is
   dropped as BAD_MESSAGE.
2. What the transaction passes up is dispatched by the transaction's purpose:
   the call's INVITE, a re-INVITE or refresh, a registration, a request outside
   any call, or one inside a call.
3. The call's INVITE: a provisional with a To tag makes an early dialog (one per
   fork) and, when reliable, a PRACK; a 2xx confirms its dialog; what the call
   does next (a CANCEL that waited, an ACK and BYE after we asked to end the call)
   comes from :mod:`sipload.ua.callstate`.  A 401/407 or 422 is asked again
   (:mod:`sipload.ua.auth`); any other final failure releases the call.
4. A transaction that timed out (B, F, H) or hit a transport error is reported by
   its purpose and, when it was the call's INVITE or BYE, releases the call.
"""

from __future__ import annotations

from sipload.sip.dialog import DialogState, dialog_id_of_response, uac_dialog
from sipload.sip.errors import ParseError
from sipload.sip.message import Response
from sipload.sip.transaction import ClientTransaction, ServerTransaction, client_key
from sipload.ua import session_timer
from sipload.ua.auth import auth_retry, interval_retry
from sipload.ua.callstate import CallAction, CallInput, step
from sipload.ua.core import add_dialog, arm_dialog, dlg_request, drop_tx, emit, flush, release
from sipload.ua.eventmap import call_failure_event, message_event
from sipload.ua.events import EventType
from sipload.ua.failover import fail_over, moved_on_503
from sipload.ua.outbound import (
    ack_again,
    send_ack,
    send_bye,
    send_cancel,
    send_dialog_ack,
    send_prack,
)
from sipload.ua.registration import on_register_response
from sipload.ua.state import Call, CallDialog, Peer, Purpose, TxRecord, UAState


def on_response(s: UAState, resp: Response, now: float) -> None:
    """A response from the network (rules 1, 2)."""
    if resp.via_count() != 1:
        return  # §8.1.3.3: a response with more than one Via is not for us
    rec = _sent_via_match(s, resp)
    if rec is None:
        rec = s.client.get(client_key(resp))
    if rec is None:
        if 200 <= resp.status < 300 and resp.cseq.method == "INVITE":
            cd = s.dlg_by_id.get(dialog_id_of_response(resp))
            ack = ack_again(s, cd) if cd is not None else None
            if cd is not None and ack is not None:
                s.queue(ack, cd.peer, s.local_of(cd.cid))
        return
    tx = rec.tx
    assert isinstance(tx, ClientTransaction)
    if not tx.answers(resp):
        # matched by branch alone (§17.1.3), but it does not answer our request
        s.bad_messages += 1
        emit(s, EventType.BAD_MESSAGE, now, response=resp,
             reason="response does not answer the request its branch names")
        return
    passed = tx.receive(resp, now)
    flush(s, rec)
    if passed is None:
        return
    purpose = rec.purpose
    if purpose == Purpose.INVITE:
        _on_invite_response(s, rec, passed, now)
    elif purpose == Purpose.REINVITE or (
            purpose == Purpose.REFRESH and tx.request.method == "INVITE"):
        _on_reinvite_response(s, rec, passed, now)
    elif purpose == Purpose.REGISTER:
        if passed.status == 503 and moved_on_503(s, rec, passed, now):
            return
        on_register_response(s, rec, passed, now)
    elif purpose == Purpose.OUT_OF_DIALOG:
        if passed.status >= 300 and auth_retry(s, rec, passed, now):
            return
        if passed.status == 503 and moved_on_503(s, rec, passed, now):
            return
        emit(s, message_event(passed.status, False), now, tid=rec.origin or rec.tid,
             request=tx.request, response=passed)
    elif purpose == Purpose.CANCEL:
        return
    else:
        _on_dialog_response(s, rec, passed, now)


def _sent_via_match(s: UAState, resp: Response) -> TxRecord | None:
    """The client transaction whose request's top Via ``resp`` echoes as it was written
    (a UAS that stamps nothing on it), found without parsing that Via: the same one
    :func:`client_key` finds (the branch is the text after ``;branch=``, as the parser
    reads our own Via).  None when that is not so: then the Via is parsed."""
    top = resp.get("via")
    if top is None:
        return None
    i = top.find(";branch=")
    if i < 0:
        return None
    j = top.find(";", i + 8)
    try:
        method = resp.cseq.method
    except ParseError:
        return None  # client_key says what is wrong, the Via first
    rec = s.client.get((top[i + 8:] if j < 0 else top[i + 8:j], method))
    if rec is None:
        return None
    tx = rec.tx
    if tx.slimmed or tx.request.get("via") != top:
        return None
    return rec


def _on_invite_response(s: UAState, rec: TxRecord, resp: Response, now: float) -> None:
    call = s.calls.get(rec.cid)
    if call is None:
        return
    status = resp.status
    if status < 200:
        action = step(call, CallInput.PROVISIONAL)
        cd: CallDialog | None = None
        report = True
        if status > 100 and resp.to_tag is not None:
            cd = _uac_dialog(s, call, rec, resp)
            if cd is not None and "100rel" in resp.require:
                rseq = resp.rseq
                if rseq is None or rseq <= cd.rseq_in:
                    report = False  # a retransmitted reliable provisional: PRACK already sent
                else:
                    cd.rseq_in = rseq
                    send_prack(s, call, cd, rseq, now)
        if action == CallAction.SEND_CANCEL:
            send_cancel(s, call, now)
        if report:
            etype = EventType.CALL_RINGING if status == 180 else EventType.CALL_PROCEEDING
            emit(s, etype, now, cid=call.cid, did=cd.did if cd else 0, tid=rec.tid,
                 request=rec.tx.request, response=resp)
        return
    if status < 300:
        known = s.dlg_by_id.get(dialog_id_of_response(resp))
        ack = ack_again(s, known) if known is not None else None
        if known is not None and ack is not None:
            s.queue(ack, known.peer, call.local)
            return  # a retransmission of a 2xx we acknowledged (RFC 6026 Accepted)
        cd = known if known is not None else _uac_dialog(s, call, rec, resp)
        if cd is None:
            return
        cd.dialog.receive_response(resp)
        # split only an Allow that names UPDATE somewhere (methods are case-sensitive)
        allows = False
        if any("UPDATE" in v for v in resp.get_all("allow")):
            try:
                allows = "UPDATE" in resp.values("allow")
            except ParseError:  # a malformed Allow (an unterminated quote): no UPDATE
                allows = False
        cd.peer_allows_update = allows
        st = session_timer.from_2xx(resp)
        if st is not None:
            if call.invite is not None:
                cd.local_body = call.invite.body  # for refresh re-INVITEs
            st.arm(now)
            cd.st = st
            arm_dialog(s, cd)
        action = step(call, CallInput.ANSWERED)
        call.invite = None  # the transaction keeps it while it matters; save the memory
        if action == CallAction.ACK_AND_BYE:
            send_dialog_ack(s, cd)
            send_bye(s, call, cd, now)  # answered after we asked to end the call
            return
        if action != CallAction.REPORT_ANSWER:
            return
        if s.config.auto_ack:
            send_dialog_ack(s, cd)
        emit(s, EventType.CALL_ANSWERED, now, cid=call.cid, did=cd.did, tid=rec.tid,
             request=rec.tx.request, response=resp)
        return
    if status in (401, 407) and auth_retry(s, rec, resp, now):
        return
    if status == 422 and interval_retry(s, rec, resp, now):
        return
    if status == 503 and moved_on_503(s, rec, resp, now):
        return
    emit(s, call_failure_event(status), now, cid=call.cid, tid=rec.tid,
         request=rec.tx.request, response=resp)
    release(s, call, now, f"rejected {status}")


def _uac_dialog(s: UAState, call: Call, rec: TxRecord, resp: Response) -> CallDialog | None:
    cd = s.dlg_by_id.get(dialog_id_of_response(resp))
    if cd is not None:
        # a 2xx refreshes the target in Dialog.receive_response; an early dialog's
        # later provisional may carry a new Contact
        if resp.status < 200 and resp.has("contact"):
            try:
                cd.dialog.refresh_target(resp)
            except ParseError:
                pass
        return cd
    try:
        dialog = uac_dialog(rec.tx.request, resp)
    except ParseError:
        return None
    return add_dialog(s, call, dialog, rec.peer)


def _on_reinvite_response(s: UAState, rec: TxRecord, resp: Response, now: float) -> None:
    cd = s.dlg_by_did.get(rec.did)
    if cd is None:
        return
    status = resp.status
    if status < 200:
        return
    cd.dialog.invite_client_pending = False
    if status < 300:
        cd.dialog.receive_response(resp)
        _refreshed(s, cd, resp, now)
        if rec.purpose == Purpose.REFRESH or s.config.auto_ack:
            send_ack(s, cd, dlg_request(cd, "ACK", cseq=rec.tx.request.cseq.seq))
        if rec.purpose == Purpose.REFRESH:
            return
        emit(s, EventType.CALL_ANSWERED, now, cid=cd.cid, did=cd.did, tid=rec.tid,
             request=rec.tx.request, response=resp)
        return
    if status in (401, 407) and auth_retry(s, rec, resp, now):
        cd.dialog.invite_client_pending = True
        return
    cd.dialog.receive_response(resp)
    emit(s, message_event(status, True), now, cid=cd.cid, did=cd.did, tid=rec.tid,
         request=rec.tx.request, response=resp)
    if cd.dialog.state == DialogState.TERMINATED:
        call = s.calls.get(cd.cid)
        if call is not None:
            release(s, call, now, f"re-INVITE answered {status}")


def _refreshed(s: UAState, cd: CallDialog, resp: Response, now: float) -> None:
    """A 2xx to a re-INVITE or UPDATE we sent: the session interval starts again."""
    st = session_timer.from_2xx(resp)
    if st is None and cd.st is not None:
        st = cd.st
    if st is not None:
        st.arm(now)
        cd.st = st
        arm_dialog(s, cd)


def _on_dialog_response(s: UAState, rec: TxRecord, resp: Response, now: float) -> None:
    status = resp.status
    cd = s.dlg_by_did.get(rec.did)
    if status >= 300 and status in (401, 407) and auth_retry(s, rec, resp, now):
        return
    if cd is not None:
        cd.dialog.receive_response(resp)
        if 200 <= status < 300 and rec.tx.request.method == "UPDATE":
            _refreshed(s, cd, resp, now)
    if rec.purpose in (Purpose.PRACK, Purpose.REFRESH):
        if cd is not None and cd.dialog.state == DialogState.TERMINATED:
            _dialog_gone(s, rec, status, now)
        return
    if status >= 200 or rec.purpose != Purpose.BYE:
        emit(s, message_event(status, True), now, cid=rec.cid, did=rec.did, tid=rec.tid,
             request=rec.tx.request, response=resp)
    call = s.calls.get(rec.cid)
    if call is None:
        return
    if rec.purpose == Purpose.BYE and status >= 200:
        release(s, call, now, "BYE answered")
    elif cd is not None and cd.dialog.state == DialogState.TERMINATED:
        release(s, call, now, f"{rec.tx.request.method} answered {status}")


def _dialog_gone(s: UAState, rec: TxRecord, status: int, now: float) -> None:
    """A PRACK or refresh was answered 481/408: the dialog is gone, so is the call.

    RFC 5057 §5.1: such an answer ends the dialog. An INVITE still pending is
    CANCELled first (§9.1), so the peer stops ringing a call we dropped.
    """
    call = s.calls.get(rec.cid)
    if call is None:
        return
    if step(call, CallInput.DIALOG_GONE) == CallAction.SEND_CANCEL:
        send_cancel(s, call, now)
    release(s, call, now, f"{rec.tx.request.method} answered {status}")


# ---------------------------------------------------------------------------- failures


def tx_failed(s: UAState, rec: TxRecord, reason: str, now: float) -> None:
    """A client transaction timed out (B/F) or a server one got no ACK (H) (rule 4)."""
    call = s.calls.get(rec.cid)
    if isinstance(rec.tx, ServerTransaction):
        if call is not None and rec.purpose == Purpose.INVITE:
            release(s, call, now, f"no ACK ({reason})")
        return
    req = rec.tx.request
    purpose = rec.purpose
    if purpose in (Purpose.REGISTER, Purpose.OUT_OF_DIALOG) and fail_over(s, rec, now):
        return
    if purpose == Purpose.REGISTER:
        emit(s, EventType.REGISTRATION_FAILURE, now, rid=rec.rid, tid=rec.origin or rec.tid,
             request=req, reason=reason)
    elif purpose == Purpose.OUT_OF_DIALOG:
        emit(s, EventType.MESSAGE_REQUESTFAILURE, now, tid=rec.origin or rec.tid, request=req,
             reason=reason)
    elif call is None:
        return
    elif purpose == Purpose.INVITE:
        if fail_over(s, rec, now):
            return
        if step(call, CallInput.NO_ANSWER) == CallAction.REPORT_NO_ANSWER:
            emit(s, EventType.CALL_NOANSWER, now, cid=call.cid, tid=rec.tid, request=req,
                 reason=reason)
            release(s, call, now, f"no answer ({reason})")
    elif purpose == Purpose.BYE:
        release(s, call, now, f"BYE unanswered ({reason})")
    elif purpose != Purpose.CANCEL:
        emit(s, EventType.CALL_MESSAGE_REQUESTFAILURE, now, cid=call.cid, did=rec.did,
             tid=rec.tid, request=req, reason=reason)
        if purpose == Purpose.REINVITE:
            cd = s.dlg_by_did.get(rec.did)
            if cd is not None:
                cd.dialog.invite_client_pending = False


def transport_error(s: UAState, peer: Peer, now: float, reason: str, call_id: str = "") -> None:
    """Every transaction towards ``peer`` (of the call ``call_id``, if given) fails at once
    (rule 4)."""
    for rec in [r for r in s.tx.values()
                if r.peer == peer and (not call_id or r.tx.call_id == call_id)]:
        rec.tx.transport_error(now)
        flush(s, rec)
        drop_tx(s, rec)
        if isinstance(rec.tx, ClientTransaction):
            if fail_over(s, rec, now):
                continue
            emit(s, EventType.TRANSPORT_ERROR, now, cid=rec.cid, did=rec.did,
                 tid=rec.origin or rec.tid, request=rec.tx.request, reason=reason)
            tx_failed(s, rec, reason, now)
