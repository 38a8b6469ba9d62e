"""Asking again: digest authentication (RFC 3261 §22) and the 422 retry (RFC 4028 §7.4).

1. A 401/407 is answered once per realm from the stored credentials: the one
   whose username is the From user, else the first for that realm (or for any
   realm, ``realm=""``), as eXosip looks them up.  A second challenge for a realm
   already answered on this request chain is a failure unless it says ``stale``.
2. The new request is the old one without our Via, with the next CSeq (the
   dialog's when inside one), sent in a new transaction that takes the old one's
   place: the call's INVITE, a re-INVITE's CSeq, a registration's request.
3. A 422 is answered by asking again with the peer's Min-SE as our interval.
"""

from __future__ import annotations

from sipload.sip.digest import DigestError, answerable_challenge, build_credentials
from sipload.sip.errors import ParseError
from sipload.sip.message import Request, Response
from sipload.ua import session_timer
from sipload.ua.core import send_request
from sipload.ua.state import Purpose, TxRecord, UAState


def auth_retry(s: UAState, rec: TxRecord, resp: Response, now: float) -> bool:
    """Answer a 401/407 (rule 1); True when a new request went out."""
    if resp.status not in (401, 407):
        return False
    hname = "www-authenticate" if resp.status == 401 else "proxy-authenticate"
    challenge = answerable_challenge(resp.get_all(hname))
    if challenge is None:
        return False
    if challenge.realm in rec.auth_realms and not challenge.stale:
        return False
    try:
        from_user = getattr(rec.tx.request.from_.uri, "user", None)
    except ParseError:
        from_user = None
    usable = [c for c in s.creds if c.realm in ("", challenge.realm)]
    cred = next((c for c in usable if c.username == from_user), None) or next(
        iter(usable), None)  # eXosip looks credentials up by the From user first
    if cred is None:
        return False
    old = rec.tx.request
    new = retry_copy(s, rec)
    aname = "Authorization" if resp.status == 401 else "Proxy-Authorization"
    new.remove_header(aname)
    nc = s.nc.next_nc(challenge.realm, challenge.nonce)
    try:
        creds = build_credentials(
            challenge, username=cred.userid, password=cred.password, method=old.method,
            uri=old.uri_text, cnonce=s.ids.tag(), body=old.body, nc=nc,
        )
    except DigestError:
        return False
    new.add_header(aname, creds.to_header())
    resend(s, rec, new, now, (*rec.auth_realms, challenge.realm))
    return True


def interval_retry(s: UAState, rec: TxRecord, resp: Response, now: float) -> bool:
    """Answer a 422 by asking again with the peer's Min-SE (rule 3)."""
    old = rec.tx.request
    asked = session_timer.from_2xx(resp)
    try:
        se = old.session_expires
        current = int(se.value) if se is not None and se.value.isdigit() else 0
    except ParseError:
        current = 0
    interval = session_timer.retry_interval(resp, current)
    if interval is None or asked is not None:
        return False
    new = retry_copy(s, rec)
    new.set_header("Session-Expires", str(interval))
    new.set_header("Min-SE", str(interval))
    resend(s, rec, new, now, rec.auth_realms)
    return True


def retry_copy(s: UAState, rec: TxRecord) -> Request:
    """The request of ``rec`` again, without our Via, with the next CSeq (rule 2)."""
    old = rec.tx.request
    new = old.copy()
    vias = new.get_all("via")
    new.remove_header("via")
    for v in vias[1:]:
        new.add_header("Via", v)
    cd = s.dlg_by_did.get(rec.did)
    if cd is not None and cd.dialog.local_seq is not None and rec.purpose != Purpose.PRACK:
        cd.dialog.local_seq += 1
        seq = cd.dialog.local_seq
    else:
        seq = old.cseq.seq + 1
    new.set_header("CSeq", f"{seq} {old.method}")
    return new


def resend(s: UAState, rec: TxRecord, new: Request, now: float,
           auth_realms: tuple[str, ...]) -> None:
    """Send ``new`` in place of ``rec``'s request (rule 2)."""
    seq = new.cseq.seq
    tid = send_request(
        s, new, rec.purpose, now, cid=rec.cid, did=rec.did, rid=rec.rid, peer=rec.peer,
        auth_realms=auth_realms, local=rec.local,
    )
    again = s.tx[tid]
    again.alternates = rec.alternates  # the servers still to try, if this one fails
    again.origin = rec.origin
    call = s.calls.get(rec.cid)
    if call is not None and rec.purpose == Purpose.INVITE:
        call.invite = new
        call.invite_cseq = new.cseq.seq
        call.invite_tid = tid
    if rec.purpose == Purpose.REINVITE:
        s.reinvite_cseq[rec.did] = seq
    reg = s.regs.get(rec.rid)
    if reg is not None:
        reg.request = new
        reg.tid = tid
