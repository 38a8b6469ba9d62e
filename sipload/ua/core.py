"""The primitives every part of the UA uses: transactions in their tables, timers, events.

1. A client transaction is started by :func:`send_request` (our Via, the next hop,
   the tables ``tx`` by tid and ``client`` by branch); a server transaction by
   :func:`new_server_tx`.  After anything happens to a transaction, :func:`flush`
   moves its bytes to the UA's outgoing queue, re-arms its timer, and drops it
   from the tables once it has terminated.  A transaction that has sent or passed
   on its final response is queued to be slimmed (its parsed messages dropped,
   :meth:`~sipload.sip.transaction.ClientTransaction.slim`) once the UA's entry
   point returns (:func:`slim_lingering`): the TU reads its request until then.
2. One timer heap (:class:`~sipload.sip.timerheap.TimerHeap`) holds every
   deadline, keyed by id: a tid (transaction), a did (dialog: 2xx and reliable
   provisional retransmission, the session timer) or a rid (registration refresh).
3. :func:`emit` queues an event with the call's reference and retransmission count.
4. :func:`release` ends a call: every dialog terminated and forgotten, then
   CALL_RELEASED.  It is the only way a call leaves the tables.
5. An INVITE or re-INVITE that carries credentials (a digest answer, or the
   program's own header) has them kept by CSeq (:func:`note_credentials`) until its
   call is released: the ACK for its 2xx repeats them (RFC 3261 §13.2.2.4).
"""

from __future__ import annotations

from sipload.sip.dialog import Dialog, DialogState
from sipload.sip.message import Request, Response
from sipload.sip.transaction import ClientTransaction, ServerTransaction
from sipload.ua.callstate import CallInput, step
from sipload.ua.events import Event, EventType
from sipload.ua.routing import add_via, next_hop
from sipload.ua.state import (
    NO_RETRANSMITTED,
    Call,
    CallDialog,
    CallState,
    Peer,
    Purpose,
    TxRecord,
    UAState,
)


def send_request(
    s: UAState, req: Request, purpose: Purpose, now: float, *, cid: int = 0, did: int = 0,
    rid: int = 0, peer: Peer | None = None, auth_realms: tuple[str, ...] = (),
    local: int = -1,
) -> int:
    """Send ``req`` in a new client transaction (rule 1); returns its tid.  ``local``:
    the local address it leaves from (-1: its call's or registration's, else the
    UA's current source)."""
    if peer is None:
        peer = next_hop(s, req)
    if local < 0:
        local = s.local_of(cid, rid)
    add_via(s, req, peer[0], local)
    return start_client_tx(s, req, peer, purpose, now, cid, did, rid, auth_realms, local)


def start_client_tx(
    s: UAState, req: Request, peer: Peer, purpose: Purpose, now: float, cid: int = 0,
    did: int = 0, rid: int = 0, auth_realms: tuple[str, ...] = (), local: int = -1,
) -> int:
    """Run ``req`` (its Via already on) in a new client transaction towards ``peer``."""
    if purpose is Purpose.INVITE or purpose is Purpose.REINVITE:
        note_credentials(s, req, cid)
    tx = ClientTransaction(req, reliable=peer[0] != "udp", timers=s.config.timers, now=now)
    tid = s.new_id()
    rec = TxRecord(tid, tx, peer, purpose, cid, did, rid, auth_realms)
    rec.local = local if local >= 0 else s.local_of(cid, rid)
    s.tx[tid] = rec
    s.client[tx.key] = rec
    tx.start(now)
    flush(s, rec)
    return tid


CREDENTIAL_HEADERS = (("authorization", "Authorization"),
                      ("proxy-authorization", "Proxy-Authorization"))
"""The header fields that carry credentials: (as looked up, as written)."""


def note_credentials(s: UAState, invite: Request, cid: int) -> None:
    """Keep the credentials ``invite`` carries (a digest answer, or the program's own)
    for the ACK of its 2xx, which MUST carry the same (RFC 3261 §13.2.2.4)."""
    found = [(name, value) for key, name in CREDENTIAL_HEADERS
             for value in invite.get_all(key)]
    by_seq = s.ack_credentials.get(cid)
    if found:
        if by_seq is None:
            by_seq = s.ack_credentials[cid] = {}
        by_seq[invite.cseq.seq] = found
    elif by_seq is not None:
        by_seq.pop(invite.cseq.seq, None)


def ack_credentials(s: UAState, cid: int, seq: int) -> list[tuple[str, str]]:
    """The credentials the ACK for the 2xx to our INVITE of CSeq ``seq`` carries."""
    by_seq = s.ack_credentials.get(cid) if s.ack_credentials else None
    return by_seq.get(seq, []) if by_seq is not None else []


def new_server_tx(s: UAState, req: Request, peer: Peer, purpose: Purpose, now: float,
                  cid: int = 0, did: int = 0) -> TxRecord:
    tx = ServerTransaction(req, reliable=peer[0] != "udp", timers=s.config.timers, now=now)
    tid = s.new_id()
    rec = TxRecord(tid, tx, peer, purpose, cid, did)
    rec.local = s.arrived  # answered from where the request came in
    s.tx[tid] = rec
    s.server[tx.key] = rec
    return rec


def respond(s: UAState, rec: TxRecord, resp: Response, now: float) -> None:
    """Send ``resp`` in server transaction ``rec``."""
    tx = rec.tx
    assert isinstance(tx, ServerTransaction)
    tx.send_response(resp, now)
    flush(s, rec)


def flush(s: UAState, rec: TxRecord) -> None:
    """Queue what ``rec``'s transaction wants sent; re-arm or drop it (rule 1)."""
    tx = rec.tx
    out = tx.outgoing
    if out:
        peer = rec.peer
        local = rec.local
        for data in out:
            if local:
                s.out_from[len(s.out)] = local
            s.out.append((data, peer))
        out.clear()
    if tx.terminated:
        drop_tx(s, rec)
        return
    if tx.lingering and not tx.slimmed:
        s.linger.append(tx)
    s.timers.schedule(rec.tid, tx.next_deadline())


def slim_lingering(s: UAState) -> None:
    """Slim the transactions :func:`flush` queued (rule 1)."""
    for tx in s.linger:
        tx.slim()
    s.linger.clear()


def drop_tx(s: UAState, rec: TxRecord) -> None:
    s.tx.pop(rec.tid, None)
    s.timers.discard(rec.tid)
    tx = rec.tx
    if isinstance(tx, ClientTransaction):
        if s.client.get(tx.key) is rec:
            del s.client[tx.key]
    elif s.server.get(tx.key) is rec:
        del s.server[tx.key]


def count_retrans(s: UAState, cid: int, n: int, label: str) -> None:
    """Count ``n`` retransmissions of ``label`` (``"BYE"``, ``"200 INVITE"``), for the
    UA and for call ``cid``, whose next event reports each with its time."""
    if n > 0:
        s.retransmissions += n
        call = s.calls.get(cid)
        if call is not None:
            call.retransmissions += n
            pending = call.retransmitted
            if pending is NO_RETRANSMITTED:
                pending = []
                call.retransmitted = pending
            for _ in range(n):
                pending.append((s.now, label))


def tx_label(tx: ClientTransaction | ServerTransaction) -> str:
    """What a transaction re-sends: its request (``"BYE"``) or its last response
    (``"200 INVITE"``)."""
    if isinstance(tx, ClientTransaction):
        return tx.method
    status = tx.last_status
    return f"{status} {tx.method}" if status else tx.method


def bytes_label(data: bytes, method: str) -> str:
    """``"200 INVITE"`` for the bytes of a response to ``method`` (its status line)."""
    return f"{data[8:11].decode('ascii', 'replace')} {method}"


def take_retransmitted(s: UAState, cid: int) -> list[tuple[float, str]]:
    """Call ``cid``'s retransmissions not yet reported in an event (and forget them)."""
    call = s.calls.get(cid)
    if call is None or not call.retransmitted:
        return []
    out = call.retransmitted
    call.retransmitted = NO_RETRANSMITTED
    return out


def emit(s: UAState, etype: EventType, now: float, *, cid: int = 0, did: int = 0,
         tid: int = 0, rid: int = 0, request: Request | None = None,
         response: Response | None = None, reason: str = "") -> None:
    """Queue an event (rule 3)."""
    ref = None
    retrans = 0
    retransmitted: list[tuple[float, str]] = []
    if cid:
        call = s.calls.get(cid)
        if call is not None:
            ref = call.reference
            retrans = call.retransmissions
            if call.retransmitted:
                retransmitted = call.retransmitted
                call.retransmitted = NO_RETRANSMITTED
    s.events.append(Event(etype, now, cid, did, tid, rid, ref, request, response, reason,
                          retrans, retransmitted))


def add_dialog(s: UAState, call: Call, dialog: Dialog, peer: Peer) -> CallDialog:
    did = s.new_id()
    cd = CallDialog(did, call.cid, dialog, peer)
    call.dialogs[did] = cd
    s.dlg_by_did[did] = cd
    s.dlg_by_id[dialog.id] = cd
    return cd


def arm_dialog(s: UAState, cd: CallDialog) -> None:
    """Put the dialog's next deadline on the timer heap (rule 2)."""
    d = cd.next_deadline()
    s.timers.schedule(cd.did, None if d == float("inf") else d)


def dlg_request(cd: CallDialog, method: str, cseq: int | None = None) -> Request:
    """A request inside ``cd`` (the first one we send numbers its CSeq 1)."""
    if cseq is None and cd.dialog.local_seq is None and method not in ("ACK", "CANCEL"):
        cseq = 1
    return cd.dialog.create_request(method, cseq=cseq)


def release(s: UAState, call: Call, now: float, reason: str) -> None:
    """End ``call`` and forget it (rule 4)."""
    if call.state == CallState.TERMINATED:
        return
    step(call, CallInput.RELEASED)
    for cd in call.dialogs.values():
        cd.dialog.state = DialogState.TERMINATED
        s.dlg_by_did.pop(cd.did, None)
        s.reinvite_cseq.pop(cd.did, None)
        s.timers.discard(cd.did)
        if s.dlg_by_id.get(cd.dialog.id) is cd:
            del s.dlg_by_id[cd.dialog.id]
    emit(s, EventType.CALL_RELEASED, now, cid=call.cid, reason=reason)
    del s.calls[call.cid]
    if s.ack_credentials:
        s.ack_credentials.pop(call.cid, None)
