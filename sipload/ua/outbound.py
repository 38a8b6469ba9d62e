"""Requests the UA sends on its own inside a call: ACK, BYE, CANCEL, PRACK, session refresh.

Each moves the call state where it should (:mod:`sipload.ua.callstate`): a CANCEL
or a BYE sent puts the call in TERMINATING.
"""

from __future__ import annotations

from sipload.sip.build import make_cancel
from sipload.sip.message import Request
from sipload.ua.callstate import CallInput, public_state, step
from sipload.ua.core import ack_credentials, dlg_request, send_request, start_client_tx
from sipload.ua.routing import add_via, next_hop, via_text, via_with_branch
from sipload.ua.state import Call, CallDialog, CallState, Purpose, UAState


def build_ack(s: UAState, cd: CallDialog) -> Request:
    """The ACK for the 2xx to the dialog's last INVITE (initial or re-INVITE)."""
    call = s.calls[cd.cid]
    seq = s.reinvite_cseq.get(cd.did, call.invite_cseq)
    ack = dlg_request(cd, "ACK", cseq=seq)
    for name, value in ack_credentials(s, cd.cid, seq):  # the INVITE's (§13.2.2.4)
        ack.add_header(name, value)
    return ack


def send_dialog_ack(s: UAState, cd: CallDialog) -> tuple[str, int]:
    """:func:`send_ack` of :func:`build_ack`, the bytes written from the dialog's cached
    text (no :class:`Request` built, no Via parsed); returns the ACK's branch and CSeq
    number.  The first ACK towards a hop not yet resolved goes the long way."""
    call = s.calls[cd.cid]
    seq = s.reinvite_cseq.get(cd.did, call.invite_cseq)
    peer = s.hops.get(cd.dialog.hop_text())
    if peer is None or ack_credentials(s, cd.cid, seq):
        # a hop not yet resolved (next_hop caches it, from a parsed request), or the
        # INVITE's credentials to repeat: the long way
        ack = build_ack(s, cd)
        send_ack(s, cd, ack)
        return ack.via.branch or "", seq
    local = s.local_of(cd.cid)
    via, branch = via_text(s, local)
    data = cd.dialog.ack_bytes(seq, via)
    # the bytes are not kept: a 2xx retransmission gets them written again (ack_again)
    cd.ack = None
    cd.ack_branch = branch
    cd.ack_seq = seq
    s.queue(data, peer, local)
    return branch, seq


def send_ack(s: UAState, cd: CallDialog, ack: Request) -> None:
    """Send ``ack`` (kept: a 2xx retransmission gets it again, §13.2.2.4)."""
    local = s.local_of(cd.cid)
    add_via(s, ack, "", local)
    data = ack.to_bytes()
    cd.ack = data
    cd.ack_branch = ""
    s.queue(data, next_hop(s, ack, cd.peer), local)


def ack_sent(cd: CallDialog) -> bool:
    """Whether an ACK went for the 2xx of the dialog's last INVITE."""
    return cd.ack is not None or bool(cd.ack_branch)


def ack_again(s: UAState, cd: CallDialog) -> bytes | None:
    """The ACK last sent for the dialog's 2xx, for a retransmission of that 2xx
    (§13.2.2.4), or None when none was sent.  One written from the dialog's text is
    written again from the same text, Via and CSeq: the same bytes, without a held
    call keeping them (about 300 bytes of its memory)."""
    if cd.ack is not None:
        return cd.ack
    if not cd.ack_branch:
        return None
    via = via_with_branch(s, s.local_of(cd.cid), cd.ack_branch)
    return cd.dialog.ack_bytes(cd.ack_seq, via)


def send_bye(s: UAState, call: Call, cd: CallDialog, now: float) -> None:
    step(call, CallInput.BYE_SENT)
    bye = dlg_request(cd, "BYE")
    send_request(s, bye, Purpose.BYE, now, cid=call.cid, did=cd.did,
                 peer=next_hop(s, bye, cd.peer))


def send_cancel(s: UAState, call: Call, now: float) -> None:
    """CANCEL the call's INVITE while its transaction lives (§9.1)."""
    rec = s.tx.get(call.invite_tid)
    if rec is None or rec.tx.terminated:
        return
    cancel = make_cancel(rec.tx.request)
    step(call, CallInput.CANCEL_SENT)
    start_client_tx(s, cancel, rec.peer, Purpose.CANCEL, now, call.cid)


def send_prack(s: UAState, call: Call, cd: CallDialog, rseq: int, now: float) -> None:
    prack = dlg_request(cd, "PRACK")
    prack.add_header("RAck", f"{rseq} {call.invite_cseq} INVITE")
    send_request(s, prack, Purpose.PRACK, now, cid=call.cid, did=cd.did,
                 peer=next_hop(s, prack, cd.peer))


def send_refresh(s: UAState, call: Call, cd: CallDialog, now: float) -> None:
    """Refresh the session (RFC 4028 §10): UPDATE if the peer allows it, else re-INVITE."""
    st = cd.st
    if st is None or public_state(call.state) != CallState.CONFIRMED:
        return
    d = cd.dialog
    if d.invite_client_pending or d.invite_server_pending:
        return
    method = "UPDATE" if cd.peer_allows_update else "INVITE"
    req = dlg_request(cd, method)
    req.add_header("Contact", s.contact_of(call.local))
    req.add_header("Supported", "timer")
    role = "uac" if call.uac else "uas"
    req.add_header("Session-Expires", f"{st.interval};refresher={role}")
    if method == "INVITE" and cd.local_body:
        req.set_body(cd.local_body, "application/sdp")
    send_request(s, req, Purpose.REFRESH, now, cid=call.cid, did=cd.did,
                 peer=next_hop(s, req, cd.peer))
