"""What the user agent remembers: calls, their dialogs, transactions, registrations.

Plain slotted records.  :mod:`sipload.ua.agent` owns the logic; these classes
only hold state and answer small questions about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from sipload.sip.dialog import Dialog
from sipload.sip.message import Request
from sipload.sip.transaction import ClientTransaction, ServerTransaction
from sipload.ua.session_timer import SessionTimer

Peer = tuple[str, str, int]
"""Where bytes go or came from: (transport "udp"/"tcp"/"tls", host, port)."""


class CallState(IntEnum):
    """Where a call is, as :meth:`UserAgent.call_terminate` needs to know."""

    CALLING = 0  #: INVITE sent, nothing heard yet (a CANCEL must wait)
    PROCEEDING = 1  #: a provisional response heard (CANCEL possible)
    INCOMING = 2  #: an INVITE received, not answered finally
    CONFIRMED = 3  #: a 2xx sent or received
    TERMINATING = 4  #: BYE or CANCEL sent
    TERMINATED = 5


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
    ack: bytes | None = None  #: the last ACK sent for a 2xx, re-sent on 2xx retransmission
    # UAS: our 2xx to INVITE, retransmitted until ACK (RFC 3261 §13.3.1.4)
    ok_bytes: bytes | None = None
    ok_cseq: int = 0
    ok_next: float = 0.0
    ok_interval: float = 0.0
    ok_give_up: float = 0.0
    # UAS: reliable provisional awaiting PRACK (RFC 3262 §3)
    rel_bytes: bytes | None = None
    rel_rseq: int = 0
    rel_next: float = 0.0
    rel_interval: float = 0.0
    rel_give_up: float = 0.0
    rel_tid: int = 0
    rseq_out: int = 0  #: last RSeq we sent
    rseq_in: int = -1  #: last RSeq we acknowledged with PRACK
    pending_invite_tid: int = 0  #: tid of an INVITE server tx inside this dialog awaiting our final
    st: SessionTimer | None = None  #: the session timer (RFC 4028), when one was agreed
    local_body: bytes = b""  #: our last session description, for refresh re-INVITEs
    peer_allows_update: bool = False

    def __init__(
        self,
        did: int,
        cid: int,
        dialog: Dialog,
        peer: Peer,
        ack: bytes | None = None,
        ok_bytes: bytes | None = None,
        ok_cseq: int = 0,
        ok_next: float = 0.0,
        ok_interval: float = 0.0,
        ok_give_up: float = 0.0,
        rel_bytes: bytes | None = None,
        rel_rseq: int = 0,
        rel_next: float = 0.0,
        rel_interval: float = 0.0,
        rel_give_up: float = 0.0,
        rel_tid: int = 0,
        rseq_out: int = 0,
        rseq_in: int = -1,
        pending_invite_tid: int = 0,
        st: SessionTimer | None = None,
        local_body: bytes = b"",
        peer_allows_update: bool = False,
    ) -> None:
        self.did = did
        self.cid = cid
        self.dialog = dialog
        self.peer = peer
        self.ack = ack
        self.ok_bytes = ok_bytes
        self.ok_cseq = ok_cseq
        self.ok_next = ok_next
        self.ok_interval = ok_interval
        self.ok_give_up = ok_give_up
        self.rel_bytes = rel_bytes
        self.rel_rseq = rel_rseq
        self.rel_next = rel_next
        self.rel_interval = rel_interval
        self.rel_give_up = rel_give_up
        self.rel_tid = rel_tid
        self.rseq_out = rseq_out
        self.rseq_in = rseq_in
        self.pending_invite_tid = pending_invite_tid
        self.st = st
        self.local_body = local_body
        self.peer_allows_update = peer_allows_update

    def next_deadline(self) -> float | None:
        d: float | None = None
        if self.ok_bytes is not None:
            d = min(self.ok_next, self.ok_give_up)
        if self.rel_bytes is not None:
            r = min(self.rel_next, self.rel_give_up)
            d = r if d is None else min(d, r)
        if self.st is not None:
            d = self.st.deadline if d is None else min(d, self.st.deadline)
        return d


@dataclass(slots=True, init=False)
class Call:
    """A call (cid): the INVITE that started it and the dialogs it made."""

    cid: int
    uac: bool
    state: CallState
    invite: Request | None  #: the INVITE as last sent (UAC) or received (UAS), until answered
    invite_tid: int
    peer: Peer
    reference: Any = None  # mypyc: dataclass field types must resolve at runtime
    dialogs: dict[int, CallDialog] = field(default_factory=dict)
    cancel_pending: bool = False  #: terminate() came before any provisional
    bye_pending_did: int = 0  #: terminate() came while a 2xx was on its way: BYE after ACK
    retransmissions: int = 0
    invite_cseq: int = 0  #: the CSeq number of that INVITE (kept after the INVITE is dropped)

    def __init__(
        self,
        cid: int,
        uac: bool,
        state: CallState,
        invite: Request | None,
        invite_tid: int,
        peer: Peer,
        reference: Any = None,
        dialogs: dict[int, CallDialog] | None = None,
        cancel_pending: bool = False,
        bye_pending_did: int = 0,
        retransmissions: int = 0,
        invite_cseq: int = 0,
    ) -> None:
        self.cid = cid
        self.uac = uac
        self.state = state
        self.invite = invite
        self.invite_tid = invite_tid
        self.peer = peer
        self.reference = reference
        self.dialogs = {} if dialogs is None else dialogs
        self.cancel_pending = cancel_pending
        self.bye_pending_did = bye_pending_did
        self.retransmissions = retransmissions
        self.invite_cseq = invite_cseq
        self.__post_init__()

    def __post_init__(self) -> None:
        if self.invite is not None:
            self.invite_cseq = self.invite.cseq.seq

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
    armed: float = -1.0  #: the deadline last pushed on the timer heap

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
        armed: float = -1.0,
    ) -> None:
        self.tid = tid
        self.tx = tx
        self.peer = peer
        self.purpose = purpose
        self.cid = cid
        self.did = did
        self.rid = rid
        self.auth_realms = auth_realms
        self.armed = armed


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


@dataclass(slots=True)
class Credential:
    """What :meth:`UserAgent.add_authentication_info` stored."""

    username: str
    userid: str
    password: str
    realm: str  #: "" answers any realm
