"""Registrations (rid): REGISTER built, sent, answered, and refreshed before they expire.

1. The refresh is due at 90% of the granted time or 60 s before it ends,
   whichever is later, and at least 1 s after now (half the grant for grants of
   2 s or less).  The granted
   time is our Contact's ``expires`` in the 2xx, else the Expires header, else
   what we asked for.
2. A 401/407 is answered once per realm (:mod:`sipload.ua.auth`); any other
   failure is REGISTRATION_FAILURE.
"""

from __future__ import annotations

from sipload.sip.message import Request, Response
from sipload.ua.auth import auth_retry
from sipload.ua.core import emit, send_request
from sipload.ua.events import EventType
from sipload.ua.failover import first_hops, send_located
from sipload.ua.routing import build_initial, next_hop
from sipload.ua.state import Purpose, Registration, TxRecord, UAState


def build_initial_register(
    s: UAState, from_: str, proxy: str, contact: str | None, expires: int
) -> tuple[int, Request]:
    req = build_initial(s, "REGISTER", from_, from_, None, uri=proxy)
    req.add_header("Contact", contact or s.contact_of(s.source))
    req.add_header("Expires", str(expires))
    rid = s.new_id()
    s.regs[rid] = reg = Registration(rid, req, expires, next_hop(s, req))
    reg.local = s.source
    return rid, req


def build_register(s: UAState, rid: int, expires: int) -> Request:
    reg = s.reg(rid)
    req = reg.request.copy()
    req.remove_header("via")
    req.remove_header("authorization")
    req.remove_header("proxy-authorization")
    req.set_header("CSeq", f"{req.cseq.seq + 1} REGISTER")
    req.set_header("Expires", str(expires))
    reg.expires = expires
    return req


def send_register(s: UAState, rid: int, request: Request, now: float) -> int:
    """Send a REGISTER of ``rid``: to its registrar, or to the servers of a located
    name in the order picked for it (:mod:`sipload.ua.failover`)."""
    reg = s.reg(rid)
    reg.request = request
    hops = first_hops(s, request, now)
    reg.tid = send_request(s, request, Purpose.REGISTER, now, rid=rid,
                           peer=hops[0] if hops else reg.peer)
    if hops:
        send_located(s, s.tx[reg.tid], hops)
    return reg.tid


def on_register_response(s: UAState, rec: TxRecord, resp: Response, now: float) -> None:
    reg = s.regs.get(rec.rid)
    if reg is None or resp.status < 200:
        return
    if resp.status >= 300:
        if auth_retry(s, rec, resp, now):
            return
        reg.registered = False
        emit(s, EventType.REGISTRATION_FAILURE, now, rid=reg.rid, tid=rec.tid,
             request=rec.tx.request, response=resp)
        return
    granted = reg.expires
    ours = s.contact_of(reg.local)
    contacts = resp.contacts or []
    for c in contacts:
        if str(c.uri) in ours and c.expires is not None:
            granted = c.expires
    if resp.expires is not None and not any(c.expires is not None for c in contacts):
        granted = resp.expires
    reg.registered = granted > 0
    emit(s, EventType.REGISTRATION_SUCCESS, now, rid=reg.rid, tid=rec.tid,
         request=rec.tx.request, response=resp)
    if granted > 0:
        reg.refresh_at = now + max(granted * 0.9, granted - 60.0, 1.0) if granted > 2 else (
            now + granted / 2)
        s.timers.push(reg.refresh_at, reg.rid)


def refresh(s: UAState, reg: Registration, now: float) -> None:
    """The refresh timer of ``reg`` fired: REGISTER again."""
    send_register(s, reg.rid, build_register(s, reg.rid, reg.expires), now)
