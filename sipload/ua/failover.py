"""Trying the next server when a request's server fails (RFC 3263 §4.3).

A request to a located name -- a call's initial INVITE, a REGISTER, or any request
outside a dialog (OPTIONS, MESSAGE ...) -- moves on when its server times out, gives
a transport (ICMP) error or answers 503.

1. :func:`first_hops` orders the servers of a located Request-URI host for one new
   request (:meth:`~sipload.sip.servers.ServerSet.pick`); the request goes to the
   first, the rest wait on its transaction record as ``alternates``.
2. :func:`fail_over` is asked before a failure is reported: when the failed
   transaction has an alternate left (and, for an INVITE, the call made no dialog),
   the request goes again (a new branch and CSeq, RFC 3263 §4.3) to the next server
   and nothing is reported.  Where it went and how often it moved on follow in
   ``UAState.located``: by cid for a call, by rid for a registration, by the tid the
   program knows for a request outside both (its events keep carrying that tid:
   ``TxRecord.origin``).
3. A 503 with Retry-After makes every server set holding that server avoid it for
   that many seconds (:func:`note_503`), whether or not the request can move on.
"""

from __future__ import annotations

from sipload.sip.message import Request, Response
from sipload.sip.uri import SipUri
from sipload.ua.auth import retry_copy
from sipload.ua.core import send_request
from sipload.ua.state import Peer, Purpose, TxRecord, UAState

_MOVES = frozenset({Purpose.INVITE, Purpose.REGISTER, Purpose.OUT_OF_DIALOG})
"""Requests that move on to the next server: those sent to a located name (rule 1)."""


def label(peer: Peer) -> str:
    """``transport:host:port`` of a server, as records show it."""
    host = f"[{peer[1]}]" if ":" in peer[1] else peer[1]
    return f"{peer[0]}:{host}:{peer[2]}"


def first_hops(s: UAState, req: Request, now: float = 0.0) -> list[Peer]:
    """The servers to try for ``req`` in order, or [] when its host is not located."""
    if not s.servers or req.get("route") is not None:
        return []
    uri = req.uri
    if not isinstance(uri, SipUri) or "maddr" in uri.params:
        return []
    servers = s.servers.get(uri.host_plain.lower())
    return servers.pick(now) if servers is not None else []


def located_key(rec: TxRecord) -> int:
    """Where ``UAState.located`` keeps the request's server: its cid, rid or tid (rule 2)."""
    if rec.purpose == Purpose.INVITE:
        return rec.cid
    if rec.purpose == Purpose.REGISTER:
        return rec.rid
    return rec.origin or rec.tid


def send_located(s: UAState, rec: TxRecord, hops: list[Peer]) -> None:
    """``rec`` went to ``hops[0]`` of a located name: the rest wait as its alternates."""
    rec.alternates = tuple(hops[1:])
    if len(s.located) < 1_000_000:
        s.located[located_key(rec)] = (label(hops[0]), 0)


def note_503(s: UAState, rec: TxRecord, resp: Response, now: float) -> None:
    """A 503's Retry-After: its server is avoided that long (rule 3)."""
    text = resp.get("retry-after")
    if text is None or not s.servers:
        return
    digits = text.strip().split(None, 1)[0].split(";", 1)[0] if text.strip() else ""
    if not digits.isdigit():
        return
    for servers in s.servers.values():
        servers.avoid(rec.peer, now + int(digits))


def fail_over(s: UAState, rec: TxRecord, now: float) -> bool:
    """Send a failed request to its next server (rule 2); True when it went."""
    purpose = rec.purpose
    if purpose not in _MOVES or not rec.alternates:
        return False
    call = s.calls.get(rec.cid)
    if purpose == Purpose.INVITE and (call is None or not call.uac or call.dialogs):
        return False
    if purpose == Purpose.REGISTER and rec.rid not in s.regs:
        return False
    nxt, rest = rec.alternates[0], rec.alternates[1:]
    new = retry_copy(s, rec)
    tid = send_request(s, new, purpose, now, cid=rec.cid, rid=rec.rid, peer=nxt,
                       auth_realms=rec.auth_realms, local=rec.local)
    moved = s.tx[tid]
    moved.alternates = rest
    moved.origin = rec.origin or rec.tid
    if call is not None and purpose == Purpose.INVITE:
        call.invite = new
        call.invite_cseq = new.cseq.seq
        call.invite_tid = tid
        call.peer = nxt
    reg = s.regs.get(rec.rid) if purpose == Purpose.REGISTER else None
    if reg is not None:
        reg.request = new
        reg.tid = tid
    key = located_key(rec)
    _, count = s.located.get(key, ("", 0))
    s.located[key] = (label(nxt), count + 1)
    s.failovers += 1
    return True


def moved_on_503(s: UAState, rec: TxRecord, resp: Response, now: float) -> bool:
    """A 503 to ``rec``: its server avoided for Retry-After (rule 3), and the request
    sent to the next server if it has one (rule 2); True when it went."""
    note_503(s, rec, resp, now)
    return fail_over(s, rec, now)
