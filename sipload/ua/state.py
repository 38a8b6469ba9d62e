"""What the user agent remembers: calls, their dialogs, transactions, registrations.

Plain slotted records, and :class:`UAState`, the one record that holds all of a
user agent's state.  The modules of :mod:`sipload.ua` act on it; the classes
here only hold state and answer small questions about it (the accessors of
:class:`UAState` raise :class:`LocalProtocolError` for ids that do not exist).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from sipload.sip.dialog import Dialog, DialogState
from sipload.sip.digest import ClientNonceCounter
from sipload.sip.errors import LocalProtocolError
from sipload.sip.message import Request
from sipload.sip.servers import ServerSet
from sipload.sip.timerheap import TimerHeap
from sipload.sip.transaction import ClientTransaction, ServerTransaction
from sipload.ua.config import UAConfig
from sipload.ua.events import Event
from sipload.ua.ids import IdGenerator
from sipload.ua.retransmit import Peer as Peer  # re-exported: where bytes go
from sipload.ua.retransmit import Resend
from sipload.ua.session_timer import SessionTimer

NO_RETRANSMITTED: list[tuple[float, str]] = []
"""``Call.retransmitted`` while there is none to report: one list for every call, never
appended to (core.count_retrans gives a call its own first)."""


class CallState(IntEnum):
    """Where a call is (the transitions: :mod:`sipload.ua.callstate`)."""

    CALLING = 0  #: INVITE sent, nothing heard yet (a CANCEL must wait)
    PROCEEDING = 1  #: a provisional response heard (CANCEL possible)
    INCOMING = 2  #: an INVITE received, not answered finally
    CONFIRMED = 3  #: a 2xx sent or received
    TERMINATING = 4  #: BYE or CANCEL sent
    TERMINATED = 5
    CANCEL_PENDING = 6  #: CALLING, and the program asked to end it: CANCEL on the first 1xx
    BYE_PENDING = 7  #: CONFIRMED (UAS), asked to end it before the ACK came: BYE on the ACK


class Purpose(IntEnum):
    """Why a transaction exists, which decides what its responses mean."""

    INVITE = 0  #: the initial INVITE of a call
    REINVITE = 1  #: an INVITE inside a dialog
    CANCEL = 2
    BYE = 3
    IN_DIALOG = 4  #: INFO, UPDATE, REFER, NOTIFY, PRACK, OPTIONS ... inside a call
    REGISTER = 5
    OUT_OF_DIALOG = 6  #: OPTIONS, MESSAGE, any request outside a call
    PRACK = 7
    REFRESH = 8  #: a session refresh (RFC 4028) the UA sends itself


@dataclass(slots=True, init=False)
class CallDialog:
    """One dialog of a call, plus what the UA retransmits on its behalf."""

    did: int
    cid: int
    dialog: Dialog
    peer: Peer
    #: the last ACK sent for a 2xx, re-sent on 2xx retransmission, when it was built as a
    #: request (credentials, a hop not resolved yet); one written from the dialog's text
    #: keeps only its branch and CSeq (:attr:`ack_branch`) and is written again from them
    ack: bytes | None = None
    ack_branch: str = ""  #: the branch of the last ACK written from the dialog's text
    ack_seq: int = 0  #: its CSeq number
    ok: Resend | None = None  #: UAS: our 2xx to INVITE, re-sent until ACK (§13.3.1.4)
    ok_cseq: int = 0  #: the CSeq of the INVITE that 2xx answers (its ACK carries it)
    rel: Resend | None = None  #: UAS: a reliable provisional, re-sent until PRACK (RFC 3262)
    rel_rseq: int = 0  #: its RSeq (0: none outstanding; a PRACK for it still gets 200)
    rel_tid: int = 0  #: the INVITE server transaction it belongs to
    rseq_out: int = 0  #: last RSeq we sent
    rseq_in: int = -1  #: last RSeq we acknowledged with PRACK
    pending_invite_tid: int = 0  #: tid of an INVITE server tx inside this dialog awaiting our final
    st: SessionTimer | None = None  #: the session timer (RFC 4028), when one was agreed
    local_body: bytes = b""  #: our last session description, for refresh re-INVITEs
    peer_allows_update: bool = False

    def __init__(self, did: int, cid: int, dialog: Dialog, peer: Peer) -> None:
        self.did = did
        self.cid = cid
        self.dialog = dialog
        self.peer = peer
        self.ack = None
        self.ack_branch = ""
        self.ack_seq = 0
        self.ok = None
        self.ok_cseq = 0
        self.rel = None
        self.rel_rseq = 0
        self.rel_tid = 0
        self.rseq_out = 0
        self.rseq_in = -1
        self.pending_invite_tid = 0
        self.st = None
        self.local_body = b""
        self.peer_allows_update = False

    def next_deadline(self) -> float | None:
        d: float | None = None
        if self.ok is not None:
            d = self.ok.deadline()
        if self.rel is not None:
            r = self.rel.deadline()
            d = r if d is None or r < d else d
        if self.st is not None:
            d = self.st.deadline if d is None else min(d, self.st.deadline)
        return d


@dataclass(slots=True, init=False)
class Call:
    """A call (cid): the INVITE that started it, the dialogs it made, where it stands."""

    cid: int
    uac: bool
    state: CallState  #: moved only by :func:`sipload.ua.callstate.step`
    invite: Request | None  #: the INVITE as last sent (UAC) or received (UAS), until answered
    invite_tid: int
    peer: Peer
    reference: Any = None  # mypyc: dataclass field types must resolve at runtime
    local: int = 0  #: the local address it runs on (an index of UAState.locals)
    dialogs: dict[int, CallDialog] = field(default_factory=dict)
    retransmissions: int = 0
    invite_cseq: int = 0  #: the CSeq number of that INVITE (kept after the INVITE is dropped)
    #: retransmissions not yet reported in an event: (time, what was re-sent)
    retransmitted: list[tuple[float, str]] = field(default_factory=list)

    def __init__(
        self,
        cid: int,
        uac: bool,
        state: CallState,
        invite: Request | None,
        invite_tid: int,
        peer: Peer,
    ) -> None:
        self.cid = cid
        self.uac = uac
        self.state = state
        self.invite = invite
        self.invite_tid = invite_tid
        self.peer = peer
        self.reference = None
        self.local = 0
        self.dialogs = {}
        self.retransmissions = 0
        self.invite_cseq = invite.cseq.seq if invite is not None else 0
        self.retransmitted = NO_RETRANSMITTED

    def first_dialog(self) -> CallDialog | None:
        for d in self.dialogs.values():
            return d
        return None


@dataclass(slots=True, init=False)
class TxRecord:
    """A transaction and what it belongs to."""

    tid: int
    tx: ClientTransaction | ServerTransaction
    peer: Peer
    purpose: Purpose
    cid: int = 0
    did: int = 0
    rid: int = 0
    auth_realms: tuple[str, ...] = ()  #: realms we already answered on this request chain
    alternates: tuple[Peer, ...] = ()  #: servers to try next on failure (RFC 3263 §4.3)
    local: int = 0  #: the local address its messages leave from (UAState.locals)
    origin: int = 0  #: the tid the program knows, when this request replaced it (failover)

    def __init__(
        self,
        tid: int,
        tx: ClientTransaction | ServerTransaction,
        peer: Peer,
        purpose: Purpose,
        cid: int = 0,
        did: int = 0,
        rid: int = 0,
        auth_realms: tuple[str, ...] = (),
    ) -> None:
        self.tid = tid
        self.tx = tx
        self.peer = peer
        self.purpose = purpose
        self.cid = cid
        self.did = did
        self.rid = rid
        self.auth_realms = auth_realms
        self.alternates = ()
        self.local = 0
        self.origin = 0


@dataclass(slots=True)
class Registration:
    """A registration (rid) kept alive by refreshing before it expires."""

    rid: int
    request: Request
    expires: int
    peer: Peer
    refresh_at: float = 0.0
    tid: int = 0
    registered: bool = False
    local: int = 0  #: the local address it registers (UAState.locals)


@dataclass(slots=True)
class Credential:
    """What :meth:`UserAgent.add_authentication_info` stored."""

    username: str
    userid: str
    password: str
    realm: str  #: "" answers any realm


class UAState:
    """Everything a :class:`~sipload.ua.agent.UserAgent` remembers, in one record.

    Ids (cid, did, tid, rid) come from one counter, so one number names one thing:
    the timer heap is keyed by it (a transaction, a dialog or a registration).
    """

    def __init__(self, config: UAConfig, ids: IdGenerator) -> None:
        self.config = config
        self.ids = ids
        self.now = 0.0
        self.out: list[tuple[bytes, Peer]] = []  #: bytes waiting for :meth:`outgoing`
        self.events: deque[Event] = deque()
        self.timers: TimerHeap[int] = TimerHeap()  #: tid, did or rid by deadline
        self.next_id = 0
        self.tx: dict[int, TxRecord] = {}
        #: transactions past their final, to slim when the entry point returns (core.flush)
        self.linger: list[ClientTransaction | ServerTransaction] = []
        self.client: dict[tuple[str, str], TxRecord] = {}
        self.server: dict[tuple[str, ...], TxRecord] = {}
        self.calls: dict[int, Call] = {}
        self.dlg_by_did: dict[int, CallDialog] = {}
        self.dlg_by_id: dict[tuple[str, str, str], CallDialog] = {}
        self.regs: dict[int, Registration] = {}
        self.creds: list[Credential] = []
        self.reinvite_cseq: dict[int, int] = {}  #: did -> CSeq of our last re-INVITE
        #: cid -> CSeq -> the credentials our INVITE or re-INVITE of that CSeq carried,
        #: for the ACK of its 2xx (RFC 3261 §13.2.2.4); only calls that sent any
        self.ack_credentials: dict[int, dict[int, list[tuple[str, str]]]] = {}
        self.nc = ClientNonceCounter()
        self.servers: dict[str, ServerSet] = {}  #: located name -> its servers (RFC 3263)
        #: cid (a call), rid (a registration) or tid (a request outside both) -> (the
        #: server it last went to, how many times it moved on), for located names
        self.located: dict[int, tuple[str, int]] = {}
        self.failovers = 0  #: requests sent anew to the next server
        self.addresses: dict[str, tuple[str, str]] = {}  #: name-addr text -> (URI, header)
        self.hops: dict[str, Peer] = {}  #: Route or Request-URI text -> next hop
        self.retransmissions = 0
        self.bad_messages = 0
        self.refused_busy = 0  #: new INVITEs answered 503 at max_calls
        c = config
        self.hostport = f"{c.host}:{c.port}" if ":" not in c.host else f"[{c.host}]:{c.port}"
        # RFC 7118 §5.2: the URI parameter is transport=ws for WS and WSS alike
        param = "ws" if c.transport == "wss" else c.transport
        tp = "" if param == "udp" else f";transport={param}"
        scheme = "sips" if c.transport == "tls" else "sip"
        self.contact = f"<{scheme}:{c.user}@{self.hostport}{tp}>"
        self.allow = ", ".join(c.allow)
        #: the local addresses, each (hostport, Contact): 0 is the config's, more are added
        #: by UserAgent.add_local (calls spread over several source addresses)
        self.locals: list[tuple[str, str]] = [(self.hostport, self.contact)]
        self.source = 0  #: the local address new calls, registrations and requests take
        self.arrived = 0  #: the local address the message being received came in on
        #: out's messages that leave from another local address than 0: index -> local
        self.out_from: dict[int, int] = {}

    def add_local(self, host: str, port: int) -> int:
        """Another local address (its Via sent-by and Contact); returns its index."""
        hostport = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        head, _, tail = self.contact.partition("@")
        self.locals.append((hostport, f"{head}@{hostport}{tail[len(self.hostport):]}"))
        return len(self.locals) - 1

    def contact_of(self, local: int) -> str:
        """Our Contact on local address ``local``."""
        return self.locals[local][1] if local else self.contact

    def local_of(self, cid: int = 0, rid: int = 0) -> int:
        """The local address of call ``cid`` or registration ``rid``, else the current
        :attr:`source` (a request outside both)."""
        if cid:
            call = self.calls.get(cid)
            return call.local if call is not None else 0
        if rid:
            reg = self.regs.get(rid)
            return reg.local if reg is not None else 0
        return self.source

    def queue(self, data: bytes, peer: Peer, local: int) -> None:
        """Queue ``data`` for ``peer``, to leave from local address ``local``."""
        if local:
            self.out_from[len(self.out)] = local
        self.out.append((data, peer))

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def call(self, cid: int) -> Call:
        call = self.calls.get(cid)
        if call is None:
            raise LocalProtocolError(f"no call {cid}")
        return call

    def dialog(self, did: int) -> CallDialog:
        cd = self.dlg_by_did.get(did)
        if cd is None:
            raise LocalProtocolError(f"no dialog {did}")
        return cd

    def reg(self, rid: int) -> Registration:
        reg = self.regs.get(rid)
        if reg is None:
            raise LocalProtocolError(f"no registration {rid}")
        return reg

    def server_rec(self, tid: int) -> TxRecord:
        rec = self.tx.get(tid)
        if rec is None or not isinstance(rec.tx, ServerTransaction):
            raise LocalProtocolError(f"no server transaction {tid}")
        return rec

    def pick_dialog(self, call: Call, did: int) -> CallDialog:
        """Dialog ``did``, or the call's confirmed dialog, or its first one."""
        if did:
            return self.dialog(did)
        for cd in call.dialogs.values():
            if cd.dialog.state == DialogState.CONFIRMED:
                return cd
        cd0 = call.first_dialog()
        if cd0 is None:
            raise LocalProtocolError(f"call {call.cid} has no dialog")
        return cd0
