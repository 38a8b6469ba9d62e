"""Trying the next server when an INVITE's server fails (RFC 3263 §4.3).

An INVITE to a located name moves on when its server times out, gives a transport
(ICMP) error or answers 503.

1. :func:`first_hops` orders the servers of a located Request-URI host for one new
   request (:meth:`~sipload.sip.servers.ServerSet.pick`); the request goes to the
   first, the rest wait on its transaction record as ``alternates``.
2. :func:`fail_over` is asked before a failure is reported: when the failed
   transaction is a call's initial INVITE with an alternate left, the INVITE goes
   again (a new branch and CSeq, RFC 3263 §4.3) to the next server, nothing is
   reported, and the call's server and failover count (``UAState.located``) follow.
"""

from __future__ import annotations

from sipload.sip.message import Request
from sipload.sip.uri import SipUri
from sipload.ua.auth import retry_copy
from sipload.ua.core import send_request
from sipload.ua.state import Peer, Purpose, TxRecord, UAState


def label(peer: Peer) -> str:
    """``transport:host:port`` of a server, as records show it."""
    host = f"[{peer[1]}]" if ":" in peer[1] else peer[1]
    return f"{peer[0]}:{host}:{peer[2]}"


def first_hops(s: UAState, req: Request) -> list[Peer]:
    """The servers to try for ``req`` in order, or [] when its host is not located."""
    if not s.servers or req.get("route") is not None:
        return []
    uri = req.uri
    if not isinstance(uri, SipUri) or "maddr" in uri.params:
        return []
    servers = s.servers.get(uri.host_plain.lower())
    return servers.pick() if servers is not None else []


def fail_over(s: UAState, rec: TxRecord, now: float) -> bool:
    """Send a failed initial INVITE to its next server (rule 2); True when it went."""
    if rec.purpose != Purpose.INVITE or not rec.alternates:
        return False
    call = s.calls.get(rec.cid)
    if call is None or not call.uac or call.dialogs:
        return False
    nxt, rest = rec.alternates[0], rec.alternates[1:]
    new = retry_copy(s, rec)
    tid = send_request(s, new, Purpose.INVITE, now, cid=rec.cid, peer=nxt,
                       auth_realms=rec.auth_realms)
    s.tx[tid].alternates = rest
    call.invite = new
    call.invite_cseq = new.cseq.seq
    call.invite_tid = tid
    call.peer = nxt
    _, count = s.located.get(rec.cid, ("", 0))
    s.located[rec.cid] = (label(nxt), count + 1)
    s.failovers += 1
    return True
