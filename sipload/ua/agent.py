"""The user agent: eXosip2's call-control API over the sans-IO SIP core.

Theory of operation
===================

1. The program drives the UA with API calls named after eXosip2's
   (``call_build_initial_invite`` → ``call_send_initial_invite`` → cid ...), and
   the network drives it with :meth:`UserAgent.receive` (bytes, the peer, ``now``)
   and :meth:`UserAgent.handle_timers` (``now``).  The UA never blocks, never
   reads a clock, never opens a socket.
2. What the UA wants sent is queued; :meth:`outgoing` hands it over as
   ``(bytes, peer)``.  :meth:`next_deadline` says when to call
   :meth:`handle_timers` again.  :meth:`next_event` returns what happened.
3. Every request we send runs in a client transaction (tid), every request we
   get in a server transaction (tid), except ACK for 2xx, which belongs to the
   dialog (RFC 3261 §13.2.2.4, §13.3.1.4).  Calls (cid) own dialogs (did); one
   INVITE may make several early dialogs when a proxy forks it.
4. A request that fails the checks of §8.2 is answered by the UA itself (400,
   405, 415, 416, 420, 481, 500, 501 ...) and reported as ``BAD_MESSAGE``; the
   program only sees requests it can act on.  Bytes that are not SIP never
   raise out of :meth:`receive`.
5. Retransmissions are the UA's job: transactions resend requests and final
   responses; the UA resends its 2xx to INVITE until ACK (giving up after
   64·T1 with a BYE), reliable provisionals until PRACK, and the ACK for each
   2xx retransmission it receives.
6. 401/407 are answered once per realm from the stored credentials; a second
   challenge for a realm already answered (not ``stale``) is a failure.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

from sipload.sip.build import (
    make_ack_for_non2xx,
    make_cancel,
    make_response,
    salvage_response,
    stamp_source,
)
from sipload.sip.checks import check_request
from sipload.sip.dialog import (
    DialogState,
    dialog_id_of_request,
    dialog_id_of_response,
    uac_dialog,
    uas_dialog,
)
from sipload.sip.digest import (
    ClientNonceCounter,
    DigestError,
    build_credentials,
    choose_challenge,
    parse_challenges,
)
from sipload.sip.errors import LocalProtocolError, ParseError
from sipload.sip.headers import NameAddress, parse_name_addr_head
from sipload.sip.message import Request, Response
from sipload.sip.parser import parse_message
from sipload.sip.transaction import (
    ClientTransaction,
    ServerTransaction,
    TimerConfig,
    cancel_target_key,
    client_key,
    server_key,
)
from sipload.sip.uri import SipUri, Uri
from sipload.ua import session_timer
from sipload.ua.events import Event, EventType
from sipload.ua.ids import IdGenerator
from sipload.ua.state import (
    Call,
    CallDialog,
    CallState,
    Credential,
    Peer,
    Purpose,
    Registration,
    TxRecord,
)

DEFAULT_ALLOW = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE", "PRACK",
                 "REFER", "NOTIFY", "MESSAGE", "SUBSCRIBE")
_TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})

_K_TX = 0
_K_DLG = 1
_K_REG = 2


@dataclass(slots=True)
class UAConfig:
    """How a user agent presents itself and what it accepts."""

    host: str = "127.0.0.1"  #: the address written in Via and Contact
    port: int = 5060
    transport: str = "udp"  #: default transport for requests: udp, tcp or tls
    user: str = "sipload"  #: user part of our Contact
    user_agent: str = "sipload"
    timers: TimerConfig = field(default_factory=TimerConfig)
    allow: tuple[str, ...] = DEFAULT_ALLOW
    supported: tuple[str, ...] = ("100rel", "timer", "replaces")
    accept: tuple[str, ...] = ("application/sdp", "application/dtmf-relay",
                               "application/dtmf", "message/sipfrag", "text/plain",
                               "application/antisip-domotic")
    send_100: bool = True  #: answer each new INVITE with 100 Trying at once
    auto_ack: bool = False  #: send the ACK for a 2xx without waiting for call_send_ack
    answer_options: bool = True  #: answer OPTIONS outside calls with 200 + Allow
    use_100rel: bool = True  #: send 1xx reliably when the INVITE supports 100rel
    session_expires: int | None = None  #: ask for / offer this session interval (RFC 4028)
    min_se: int = 90  #: the smallest session interval we accept (422 below it)


class UserAgent:
    """A SIP user agent with eXosip2's call-control API (see the module docstring)."""

    def __init__(self, config: UAConfig | None = None, ids: IdGenerator | None = None) -> None:
        self.config = config or UAConfig()
        self.ids = ids or IdGenerator("sl")
        self.now = 0.0
        self._out: list[tuple[bytes, Peer]] = []
        self._events: deque[Event] = deque()
        self._heap: list[tuple[float, int, int, int]] = []
        self._seq = 0
        self._next_id = 0
        self._tx: dict[int, TxRecord] = {}
        self._client: dict[tuple[str, str], TxRecord] = {}
        self._server: dict[tuple[str, ...], TxRecord] = {}
        self._calls: dict[int, Call] = {}
        self._dlg_by_did: dict[int, CallDialog] = {}
        self._dlg_by_id: dict[tuple[str, str, str], CallDialog] = {}
        self._regs: dict[int, Registration] = {}
        self._creds: list[Credential] = []
        self._reinvite_cseq: dict[int, int] = {}  #: did -> CSeq of our last re-INVITE
        self._nc = ClientNonceCounter()
        self._addresses: dict[str, tuple[str, str]] = {}
        self._hops: dict[str, Peer] = {}
        self.retransmissions = 0
        self.bad_messages = 0
        c = self.config
        hostport = f"{c.host}:{c.port}" if ":" not in c.host else f"[{c.host}]:{c.port}"
        self._hostport = hostport
        tp = "" if c.transport == "udp" else f";transport={c.transport}"
        scheme = "sips" if c.transport == "tls" else "sip"
        self.contact = f"<{scheme}:{c.user}@{hostport}{tp}>"
        self._allow = ", ".join(c.allow)

    # ================================================================ sans-IO surface

    def outgoing(self) -> list[tuple[bytes, Peer]]:
        """Take the bytes waiting to be sent, each with its destination."""
        out = self._out
        self._out = []
        return out

    def next_event(self) -> Event | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timers` should next be called (None: no timer).

        Entries made stale by a later re-arm are dropped here, so the shell is
        never woken for a timer that no longer exists.
        """
        heap = self._heap
        while heap:
            deadline, _, kind, key = heap[0]
            if kind == _K_TX:
                rec = self._tx.get(key)
                if rec is not None and rec.armed == deadline:
                    return deadline
            elif kind == _K_DLG:
                cd = self._dlg_by_did.get(key)
                if cd is not None and cd.next_deadline() == deadline:
                    return deadline
            else:
                reg = self._regs.get(key)
                if reg is not None and reg.refresh_at == deadline:
                    return deadline
            heapq.heappop(heap)
        return None

    def receive(self, data: bytes, peer: Peer, now: float) -> None:
        """Take one datagram or one framed stream message from ``peer``.

        Never raises for anything the peer sent: a malformed request is answered
        (400, 505 ...) where it can be, anything else is dropped and counted.
        """
        self.now = now
        try:
            msg = parse_message(data, datagram=peer[0] == "udp")
        except ParseError as e:
            self._bad(data, peer, e, now)
            return
        try:
            if isinstance(msg, Request):
                self._on_request(msg, peer, now)
            else:
                self._on_response(msg, peer, now)
        except ParseError as e:
            self._bad(data, peer, e, now)
        except LocalProtocolError as e:
            # the message contradicts the state it matched (a response of another
            # dialog, say): the peer is at fault, so it is dropped, never raised
            self.bad_messages += 1
            self._emit(EventType.BAD_MESSAGE, now, reason=f"inconsistent message: {e}")

    def handle_timers(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        self.now = now
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, kind, key = heapq.heappop(heap)
            if kind == _K_TX:
                rec = self._tx.get(key)
                if rec is None or rec.armed != deadline:
                    continue
                rec.armed = -1.0
                before = rec.tx.retransmissions
                fired = rec.tx.handle_timer(now)
                self._count_retrans(rec, rec.tx.retransmissions - before)
                self._flush(rec)
                if fired is not None:
                    self._tx_failed(rec, f"timer {fired}", now)
            elif kind == _K_DLG:
                cd = self._dlg_by_did.get(key)
                if cd is not None and cd.next_deadline() == deadline:
                    self._dialog_timer(cd, now)
            else:
                reg = self._regs.get(key)
                if reg is not None and reg.refresh_at == deadline:
                    self._refresh_registration(reg, now)

    # ================================================================ the eXosip API: calls

    def guess_localip(self, family: int = 4) -> str:
        """The address we put in Via and Contact (eXosip_guess_localip)."""
        return self.config.host

    def add_authentication_info(
        self, username: str, userid: str, password: str, realm: str = ""
    ) -> None:
        """Store credentials for 401/407 challenges (realm "" answers any realm)."""
        self._creds.append(Credential(username, userid or username, password, realm))

    def call_build_initial_invite(
        self, to: str, from_: str, route: str | None = None, subject: str | None = None
    ) -> Request:
        """A default INVITE: the program may add any header or body before sending."""
        req = self._build_initial("INVITE", to, from_, route)
        if subject is not None:
            req.add_header("Subject", subject)
        req.add_header("Contact", self.contact)
        req.add_header("Allow", self._allow)
        if self.config.session_expires:
            req.add_header("Supported", "timer")
            session_timer.offer(req, self.config.session_expires, self.config.min_se)
        return req

    def call_send_initial_invite(self, invite: Request, now: float | None = None) -> int:
        """Send an INVITE built by :meth:`call_build_initial_invite`; returns the cid."""
        now = self._now(now)
        cid = self._new_id()
        peer = self._next_hop(invite)
        call = Call(cid, True, CallState.CALLING, invite, 0, peer)
        self._calls[cid] = call
        call.invite_tid = self._send_request(invite, Purpose.INVITE, now, cid=cid, peer=peer)
        return cid

    def call_set_reference(self, cid: int, reference: object) -> None:
        self._call(cid).reference = reference

    def call_get_reference(self, cid: int) -> object:
        return self._call(cid).reference

    def call_build_answer(self, tid: int, status: int) -> Response:
        """A default answer to the request of server transaction ``tid``."""
        rec = self._server_rec(tid)
        req = rec.tx.request
        cd = self._dlg_by_did.get(rec.did)
        tag = cd.dialog.local_tag if cd is not None else None
        if tag is None and status > 100 and req.to_tag is None:
            tag = self.ids.tag()
        resp = make_response(req, status, to_tag=tag)
        if req.method in ("INVITE", "UPDATE", "SUBSCRIBE", "REFER") and 100 < status < 300:
            resp.copy_headers_from(req, "record-route")
            resp.add_header("Contact", self.contact)
        if status == 405 or (req.method in ("INVITE", "OPTIONS") and 200 <= status < 300):
            resp.add_header("Allow", self._allow)
        if req.method == "OPTIONS" and 200 <= status < 300:
            resp.add_header("Accept", ", ".join(self.config.accept))
            resp.add_header("Supported", ", ".join(self.config.supported))
        resp.add_header("Server", self.config.user_agent)
        return resp

    def call_send_answer(
        self, tid: int, status: int, answer: Response | None = None, now: float | None = None
    ) -> None:
        """Answer server transaction ``tid`` (a default answer when ``answer`` is None)."""
        now = self._now(now)
        rec = self._server_rec(tid)
        resp = answer if answer is not None else self.call_build_answer(tid, status)
        req = rec.tx.request
        if req.method == "INVITE":
            self._answer_invite(rec, resp, now)
            return
        cd = self._dlg_by_did.get(rec.did)
        st: session_timer.SessionTimer | None = None
        if cd is not None and req.method == "UPDATE" and 200 <= resp.status < 300:
            if not resp.has("session-expires"):
                st = session_timer.answer(req, resp, self.config.session_expires)
            if st is None and cd.st is not None:
                st = cd.st
        self._respond(rec, resp, now)
        if cd is not None and st is not None:
            st.arm(now)
            cd.st = st
            self._arm_dialog(cd)

    def call_terminate(self, cid: int, did: int = 0, now: float | None = None) -> None:
        """End a call: CANCEL, a negative answer or BYE, whichever its state calls for.

        Before any provisional response a CANCEL may not be sent (RFC 3261 §9.1):
        it is sent when one arrives, or the call ends when Timer B fires.
        """
        now = self._now(now)
        call = self._call(cid)
        if call.uac:
            if call.state == CallState.CALLING:
                call.cancel_pending = True
            elif call.state == CallState.PROCEEDING:
                self._send_cancel(call, now)
            elif call.state == CallState.CONFIRMED:
                cd = self._pick_dialog(call, did)
                if cd.ack is None:
                    self.call_send_ack(cd.did, None, now)
                self._send_bye(call, cd, now)
            return
        if call.state == CallState.INCOMING:
            rec = self._tx.get(call.invite_tid)
            if rec is not None and not rec.tx.terminated:
                self.call_send_answer(call.invite_tid, 603, None, now)
        elif call.state == CallState.CONFIRMED:
            cd = self._pick_dialog(call, did)
            if cd.ok_bytes is not None:
                call.bye_pending_did = cd.did  # §15: no BYE before the ACK (or its timeout)
            else:
                self._send_bye(call, cd, now)

    def call_build_ack(self, did: int) -> Request:
        """The ACK for the 2xx to the dialog's last INVITE (initial or re-INVITE)."""
        cd = self._dialog(did)
        call = self._calls[cd.cid]
        seq = self._reinvite_cseq.get(did, call.invite_cseq)
        ack = self._dlg_request(cd, "ACK", cseq=seq)
        return ack

    def call_send_ack(self, did: int, ack: Request | None = None, now: float | None = None) -> None:
        """Send the ACK for the 2xx of dialog ``did`` (kept and re-sent on 2xx retransmission)."""
        now = self._now(now)
        cd = self._dialog(did)
        if ack is None:
            ack = self.call_build_ack(did)
        self._add_via(ack)
        data = ack.to_bytes()
        cd.ack = data
        self._out.append((data, self._next_hop(ack, cd.peer)))
        call = self._calls.get(cd.cid)
        if call is not None and call.state == CallState.TERMINATING and call.bye_pending_did:
            self._send_bye(call, cd, now)

    def call_build_request(self, did: int, method: str) -> Request:
        """A request inside dialog ``did`` (INFO, UPDATE, REFER, NOTIFY, re-INVITE, any)."""
        cd = self._dialog(did)
        req = self._dlg_request(cd, method)
        if method in _TARGET_REFRESH:
            req.add_header("Contact", self.contact)
        if method == "INVITE":
            req.add_header("Allow", self._allow)
        return req

    @staticmethod
    def _dlg_request(cd: CallDialog, method: str, cseq: int | None = None) -> Request:
        if cseq is None and cd.dialog.local_seq is None and method not in ("ACK", "CANCEL"):
            cseq = 1
        return cd.dialog.create_request(method, cseq=cseq)

    def call_build_info(self, did: int) -> Request:
        return self.call_build_request(did, "INFO")

    def call_build_update(self, did: int) -> Request:
        return self.call_build_request(did, "UPDATE")

    def call_build_refer(self, did: int, refer_to: str) -> Request:
        req = self.call_build_request(did, "REFER")
        req.add_header("Refer-To", refer_to)
        return req

    def call_build_notify(self, did: int, subscription_state: str, event: str = "refer") -> Request:
        req = self.call_build_request(did, "NOTIFY")
        req.add_header("Event", event)
        req.add_header("Subscription-State", subscription_state)
        return req

    def call_build_refer_notify(self, did: int, status_line: str, *,
                                terminated: bool = False, expires: int = 60) -> Request:
        """A NOTIFY for the implicit subscription of a REFER we accepted (RFC 3515 §2.4.4).

        Args:
            status_line: the referred request's progress, e.g. ``"SIP/2.0 100 Trying"``
                or ``"SIP/2.0 200 OK"``; sent as a ``message/sipfrag`` body.
            terminated: the last NOTIFY (the referred request got its final answer).
        """
        state = "terminated;reason=noresource" if terminated else f"active;expires={expires}"
        req = self.call_build_notify(did, state, event="refer")
        req.set_body(f"{status_line}\r\n".encode(), "message/sipfrag;version=2.0")
        return req

    def call_send_request(self, did: int, request: Request, now: float | None = None) -> int:
        """Send a request built by :meth:`call_build_request`; returns its tid."""
        now = self._now(now)
        cd = self._dialog(did)
        if request.method == "INVITE":
            purpose = Purpose.REINVITE
            self._reinvite_cseq[did] = request.cseq.seq
        elif request.method == "BYE":
            purpose = Purpose.BYE
        else:
            purpose = Purpose.IN_DIALOG
        return self._send_request(
            request, purpose, now, cid=cd.cid, did=did, peer=self._next_hop(request, cd.peer)
        )

    # ================================================================ the eXosip API: outside calls

    def register_build_initial_register(
        self, from_: str, proxy: str, contact: str | None = None, expires: int = 3600
    ) -> tuple[int, Request]:
        """A REGISTER for ``from_`` at registrar ``proxy``; returns (rid, request)."""
        req = self._build_initial("REGISTER", from_, from_, None, uri=proxy)
        req.add_header("Contact", contact or self.contact)
        req.add_header("Expires", str(expires))
        rid = self._new_id()
        self._regs[rid] = Registration(rid, req, expires, self._next_hop(req))
        return rid, req

    def register_build_register(self, rid: int, expires: int) -> Request:
        """The next REGISTER of registration ``rid`` (refresh, or expires 0 to remove)."""
        reg = self._reg(rid)
        req = reg.request.copy()
        req.remove_header("via")
        req.remove_header("authorization")
        req.remove_header("proxy-authorization")
        req.set_header("CSeq", f"{req.cseq.seq + 1} REGISTER")
        req.set_header("Expires", str(expires))
        reg.expires = expires
        return req

    def register_send_register(self, rid: int, request: Request, now: float | None = None) -> int:
        now = self._now(now)
        reg = self._reg(rid)
        reg.request = request
        reg.tid = self._send_request(request, Purpose.REGISTER, now, rid=rid, peer=reg.peer)
        return reg.tid

    def options_build_request(self, to: str, from_: str, route: str | None = None) -> Request:
        return self.message_build_request("OPTIONS", to, from_, route)

    def message_build_request(
        self, method: str, to: str, from_: str, route: str | None = None
    ) -> Request:
        """A request outside any dialog (OPTIONS, MESSAGE, any private method)."""
        req = self._build_initial(method, to, from_, route)
        if method in ("OPTIONS", "SUBSCRIBE", "REFER", "NOTIFY"):
            req.add_header("Contact", self.contact)
        return req

    def message_send_request(self, request: Request, now: float | None = None) -> int:
        now = self._now(now)
        return self._send_request(request, Purpose.OUT_OF_DIALOG, now)

    def message_build_answer(self, tid: int, status: int) -> Response:
        return self.call_build_answer(tid, status)

    def message_send_answer(
        self, tid: int, status: int, answer: Response | None = None, now: float | None = None
    ) -> None:
        self.call_send_answer(tid, status, answer, now)

    # ================================================================ introspection

    def call_count(self) -> int:
        return len(self._calls)

    def transaction_count(self) -> int:
        return len(self._tx)

    def call_dialogs(self, cid: int) -> list[int]:
        return list(self._call(cid).dialogs)

    def dialog_of(self, did: int) -> CallDialog:
        return self._dialog(did)

    def call_state(self, cid: int) -> CallState | None:
        call = self._calls.get(cid)
        return None if call is None else call.state

    def transaction_request(self, tid: int) -> Request:
        rec = self._tx.get(tid)
        if rec is None:
            raise LocalProtocolError(f"no transaction {tid}")
        return rec.tx.request

    # ================================================================ building and sending

    def _now(self, now: float | None) -> float:
        if now is not None:
            self.now = now
        return self.now

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _build_initial(
        self, method: str, to: str, from_: str, route: str | None, uri: str | None = None
    ) -> Request:
        try:
            to_uri, to_text = self._address(to)
            _, from_text = self._address(from_)
            req = Request(method, uri if uri is not None else to_uri)
            if uri is not None:
                _ = req.uri
        except ParseError as e:
            raise LocalProtocolError(f"bad address: {e.reason}") from e
        req.add_header("From", f"{from_text};tag={self.ids.tag()}")
        req.add_header("To", to_text)
        req.add_header("Call-ID", self.ids.call_id())
        req.add_header("CSeq", f"1 {method}")
        req.add_header("Max-Forwards", "70")
        if route is not None:
            req.add_header("Route", route)
        req.add_header("User-Agent", self.config.user_agent)
        return req

    def _address(self, text: str) -> tuple[str, str]:
        """(URI text, header text) of a name-addr, parsed once per distinct text."""
        hit = self._addresses.get(text)
        if hit is None:
            na = parse_name_addr_head(text)
            if na.tag is not None:
                raise ParseError("an address for a new request carries no tag")
            hit = (str(na.uri), str(na))
            if len(self._addresses) < 1024:
                self._addresses[text] = hit
        return hit

    def _add_via(self, req: Request) -> str:
        branch = self.ids.branch()
        tp = self.config.transport.upper()
        req.prepend_header("Via", f"SIP/2.0/{tp} {self._hostport};branch={branch};rport")
        return branch

    def _next_hop(self, req: Request, default: Peer | None = None) -> Peer:
        """Where a request goes: the first Route if loose, else the Request-URI (§8.1.2).

        Resolved once per distinct Route or Request-URI text (a run talks to few).
        """
        first_route = req.get("route")
        key = first_route if first_route is not None else req.uri_text
        hop = self._hops.get(key)
        if hop is None:
            hop = self._resolve_hop(req, first_route)
            if hop is None:
                if default is not None:
                    return default
                raise LocalProtocolError(f"cannot send to {key[:60]!r}: not a SIP URI")
            if len(self._hops) < 4096:
                self._hops[key] = hop
        return hop

    def _resolve_hop(self, req: Request, first_route: str | None) -> Peer | None:
        uri: Uri
        if first_route is not None:
            uri = parse_name_addr_head(first_route.split(",")[0]).uri
        else:
            uri = req.uri
        if not isinstance(uri, SipUri):
            return None
        transport = uri.transport or ("tls" if uri.scheme == "sips" else self.config.transport)
        port = uri.port or (5061 if transport == "tls" else 5060)
        maddr = uri.params.get("maddr")
        return (transport, maddr or uri.host_plain, port)

    def _send_request(
        self, req: Request, purpose: Purpose, now: float, *, cid: int = 0, did: int = 0,
        rid: int = 0, peer: Peer | None = None, auth_realms: tuple[str, ...] = (),
    ) -> int:
        self._add_via(req)
        if peer is None:
            peer = self._next_hop(req)
        tx = ClientTransaction(req, reliable=peer[0] != "udp", timers=self.config.timers, now=now)
        tid = self._new_id()
        rec = TxRecord(tid, tx, peer, purpose, cid, did, rid, auth_realms)
        self._tx[tid] = rec
        self._client[tx.key] = rec
        tx.start(now)
        self._flush(rec)
        return tid

    def _flush(self, rec: TxRecord) -> None:
        tx = rec.tx
        out = tx.outgoing
        if out:
            peer = rec.peer
            for data in out:
                self._out.append((data, peer))
            out.clear()
        if tx.terminated:
            self._drop_tx(rec)
            return
        d = tx.next_deadline()
        if d is not None and d != rec.armed:
            rec.armed = d
            self._push(d, _K_TX, rec.tid)

    def _push(self, deadline: float, kind: int, key: int) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, kind, key))

    def _drop_tx(self, rec: TxRecord) -> None:
        self._tx.pop(rec.tid, None)
        tx = rec.tx
        if isinstance(tx, ClientTransaction):
            if self._client.get(tx.key) is rec:
                del self._client[tx.key]
        elif self._server.get(tx.key) is rec:
            del self._server[tx.key]

    def _count_retrans(self, rec: TxRecord, n: int) -> None:
        if n > 0:
            self.retransmissions += n
            call = self._calls.get(rec.cid)
            if call is not None:
                call.retransmissions += n

    def _emit(self, etype: EventType, now: float, *, cid: int = 0, did: int = 0, tid: int = 0,
              rid: int = 0, request: Request | None = None, response: Response | None = None,
              reason: str = "") -> None:
        ref = None
        retrans = 0
        if cid:
            call = self._calls.get(cid)
            if call is not None:
                ref = call.reference
                retrans = call.retransmissions
        self._events.append(Event(etype, now, cid, did, tid, rid, ref, request, response, reason,
                                  retrans))

    # ================================================================ accessors that raise

    def _call(self, cid: int) -> Call:
        call = self._calls.get(cid)
        if call is None:
            raise LocalProtocolError(f"no call {cid}")
        return call

    def _dialog(self, did: int) -> CallDialog:
        cd = self._dlg_by_did.get(did)
        if cd is None:
            raise LocalProtocolError(f"no dialog {did}")
        return cd

    def _reg(self, rid: int) -> Registration:
        reg = self._regs.get(rid)
        if reg is None:
            raise LocalProtocolError(f"no registration {rid}")
        return reg

    def _server_rec(self, tid: int) -> TxRecord:
        rec = self._tx.get(tid)
        if rec is None or not isinstance(rec.tx, ServerTransaction):
            raise LocalProtocolError(f"no server transaction {tid}")
        return rec

    def _pick_dialog(self, call: Call, did: int) -> CallDialog:
        if did:
            return self._dialog(did)
        for cd in call.dialogs.values():
            if cd.dialog.state == DialogState.CONFIRMED:
                return cd
        cd0 = call.first_dialog()
        if cd0 is None:
            raise LocalProtocolError(f"call {call.cid} has no dialog")
        return cd0

    # ================================================================ incoming requests

    def _bad(self, data: bytes, peer: Peer, err: ParseError, now: float) -> None:
        self.bad_messages += 1
        self._emit(EventType.BAD_MESSAGE, now, reason=err.reason)
        answer = salvage_response(data, err.status, err.reason)
        if answer is not None:
            self._out.append((answer, peer))

    def _on_request(self, req: Request, peer: Peer, now: float) -> None:
        key = server_key(req)
        rec = self._server.get(key)
        if rec is not None:
            before = rec.tx.retransmissions
            assert isinstance(rec.tx, ServerTransaction)
            ack_for_2xx = rec.tx.receive_request(req, now)
            self._count_retrans(rec, rec.tx.retransmissions - before)
            self._flush(rec)
            if ack_for_2xx and req.method == "ACK":
                self._on_ack(req, now)
            return
        method = req.method
        if method == "ACK":
            self._on_ack(req, now)
            return
        stamp_source(req, peer[1], peer[2])  # received / rport in the Via we answer with
        if method == "CANCEL":
            self._on_cancel(req, peer, now)
            return
        rejection = check_request(
            req, allowed_methods=self.config.allow, supported=self.config.supported,
            accepted_types=self.config.accept,
        )
        if rejection is not None:
            self.bad_messages += 1
            rec = self._new_server_tx(req, peer, Purpose.OUT_OF_DIALOG, now)
            resp = make_response(req, rejection.status, rejection.reason,
                                 to_tag=self.ids.tag(), extra=list(rejection.headers))
            self._respond(rec, resp, now)
            self._emit(EventType.BAD_MESSAGE, now, request=req, reason=rejection.reason)
            return
        if req.to_tag is not None:
            self._on_in_dialog_request(req, peer, now)
        elif method == "INVITE":
            self._on_new_invite(req, peer, now)
        else:
            rec = self._new_server_tx(req, peer, Purpose.OUT_OF_DIALOG, now)
            if method == "OPTIONS" and self.config.answer_options:
                self._respond(rec, self.call_build_answer(rec.tid, 200), now)
            self._emit(EventType.MESSAGE_NEW, now, tid=rec.tid, request=req)

    def _new_server_tx(self, req: Request, peer: Peer, purpose: Purpose, now: float,
                       cid: int = 0, did: int = 0) -> TxRecord:
        tx = ServerTransaction(req, reliable=peer[0] != "udp", timers=self.config.timers, now=now)
        tid = self._new_id()
        rec = TxRecord(tid, tx, peer, purpose, cid, did)
        self._tx[tid] = rec
        self._server[tx.key] = rec
        return rec

    def _respond(self, rec: TxRecord, resp: Response, now: float) -> None:
        tx = rec.tx
        assert isinstance(tx, ServerTransaction)
        tx.send_response(resp, now)
        self._flush(rec)

    def _on_new_invite(self, req: Request, peer: Peer, now: float) -> None:
        cid = self._new_id()
        rec = self._new_server_tx(req, peer, Purpose.INVITE, now, cid=cid)
        call = Call(cid, False, CallState.INCOMING, req, rec.tid, peer)
        self._calls[cid] = call
        tag = self.ids.tag()
        try:
            dialog = uas_dialog(req, make_response(req, 101, to_tag=tag))
        except ParseError as e:
            del self._calls[cid]
            self._respond(rec, make_response(req, 400, e.reason, to_tag=tag), now)
            return
        too_small = session_timer.check_request(req, self.config.min_se)
        if too_small is not None:
            del self._calls[cid]
            self._respond(rec, make_response(req, too_small.status, too_small.reason,
                                             to_tag=tag, extra=list(too_small.headers)), now)
            return
        cd = self._add_dialog(call, dialog, peer)
        rec.did = cd.did
        if self.config.send_100:
            self._respond(rec, make_response(req, 100), now)
        self._emit(EventType.CALL_INVITE, now, cid=cid, did=cd.did, tid=rec.tid, request=req)

    def _add_dialog(self, call: Call, dialog: object, peer: Peer) -> CallDialog:
        from sipload.sip.dialog import Dialog

        assert isinstance(dialog, Dialog)
        did = self._new_id()
        cd = CallDialog(did, call.cid, dialog, peer)
        call.dialogs[did] = cd
        self._dlg_by_did[did] = cd
        self._dlg_by_id[dialog.id] = cd
        return cd

    def _on_in_dialog_request(self, req: Request, peer: Peer, now: float) -> None:
        cd = self._dlg_by_id.get(dialog_id_of_request(req))
        method = req.method
        if cd is None:
            rec = self._new_server_tx(req, peer, Purpose.IN_DIALOG, now)
            self._respond(rec, make_response(req, 481), now)
            return
        call = self._calls[cd.cid]
        rec = self._new_server_tx(req, peer, Purpose.IN_DIALOG, now, cid=call.cid, did=cd.did)
        rejection = cd.dialog.receive_request(req)
        if rejection is not None:
            resp = make_response(req, rejection.status, rejection.reason,
                                 extra=list(rejection.headers))
            self._respond(rec, resp, now)
            return
        if method == "BYE":
            self._respond(rec, self.call_build_answer(rec.tid, 200), now)
            cd.ok_bytes = None
            cd.rel_bytes = None
            self._emit(EventType.CALL_CLOSED, now, cid=call.cid, did=cd.did, tid=rec.tid,
                       request=req)
            self._release(call, now, "BYE received")
        elif method == "PRACK":
            self._on_prack(rec, cd, req, now)
        elif method == "INVITE":
            rec.purpose = Purpose.REINVITE
            cd.dialog.invite_server_pending = True
            cd.pending_invite_tid = rec.tid
            if self.config.send_100:
                self._respond(rec, make_response(req, 100), now)
            self._emit(EventType.CALL_REINVITE, now, cid=call.cid, did=cd.did, tid=rec.tid,
                       request=req)
        else:
            self._emit(EventType.CALL_MESSAGE_NEW, now, cid=call.cid, did=cd.did, tid=rec.tid,
                       request=req)

    def _on_prack(self, rec: TxRecord, cd: CallDialog, req: Request, now: float) -> None:
        rack = req.rack
        call = self._calls[cd.cid]
        # RFC 3262 §3: after a final answer the UAS stops retransmitting an unacknowledged
        # reliable provisional but "MUST be prepared to process PRACK requests" for it
        if (rack is not None and cd.rel_rseq and rack.rseq == cd.rel_rseq
                and rack.cseq == call.invite_cseq):
            cd.rel_bytes = None
            cd.rel_rseq = 0  # acknowledged: another PRACK for it gets 481
            self._respond(rec, self.call_build_answer(rec.tid, 200), now)
            # answered already; reported so a program can wait for it
            self._emit(EventType.CALL_MESSAGE_NEW, now, cid=call.cid, did=cd.did, tid=rec.tid,
                       request=req)
        else:
            self._respond(rec, make_response(rec.tx.request, 481, "No matching provisional"), now)

    def _on_ack(self, req: Request, now: float) -> None:
        cd = self._dlg_by_id.get(dialog_id_of_request(req)) if req.to_tag else None
        if cd is None or cd.ok_bytes is None:
            return  # an ACK for nothing we wait for (or a retransmission): drop it
        if req.cseq.seq != cd.ok_cseq:
            return
        cd.ok_bytes = None
        call = self._calls.get(cd.cid)
        if call is None:
            return
        self._emit(EventType.CALL_ACK, now, cid=call.cid, did=cd.did, request=req)
        if call.bye_pending_did == cd.did:
            call.bye_pending_did = 0
            self._send_bye(call, cd, now)

    def _on_cancel(self, req: Request, peer: Peer, now: float) -> None:
        rec = self._new_server_tx(req, peer, Purpose.CANCEL, now)
        target = self._server.get(cancel_target_key(req))
        if target is None or target.tx.request.method != "INVITE":
            self._respond(rec, make_response(req, 481), now)
            return
        self._respond(rec, make_response(req, 200), now)
        tx = target.tx
        assert isinstance(tx, ServerTransaction)
        last = tx.last_response
        if last is not None and last.status >= 200:
            return  # too late: the final answer is already out
        call = self._calls.get(target.cid)
        cd = self._dlg_by_did.get(target.did)
        tag = cd.dialog.local_tag if cd is not None else self.ids.tag()
        self._respond(target, make_response(tx.request, 487, to_tag=tag), now)
        if call is not None:
            self._emit(EventType.CALL_CANCELLED, now, cid=call.cid, did=target.did,
                       tid=target.tid, request=req)
            if target.purpose == Purpose.INVITE:
                self._release(call, now, "cancelled")

    # ================================================================ answering INVITE

    def _answer_invite(self, rec: TxRecord, resp: Response, now: float) -> None:
        call = self._calls.get(rec.cid)
        cd = self._dlg_by_did.get(rec.did)
        status = resp.status
        req = rec.tx.request
        if call is None or cd is None:
            self._respond(rec, resp, now)
            return
        if 100 < status < 200 and self._wants_100rel(req):
            if cd.rel_bytes is not None:
                raise LocalProtocolError("a reliable provisional response still awaits PRACK")
            cd.rseq_out += 1
            resp.set_header("Require", "100rel")
            resp.set_header("RSeq", str(cd.rseq_out))
            self._respond(rec, resp, now)
            t1 = self.config.timers.t1
            cd.rel_bytes = resp.to_bytes()
            cd.rel_rseq = cd.rseq_out
            cd.rel_interval = t1
            cd.rel_tid = rec.tid
            reliable = rec.peer[0] != "udp"
            cd.rel_next = float("inf") if reliable else now + t1
            cd.rel_give_up = now + 64 * t1
            self._arm_dialog(cd)
            return
        st: session_timer.SessionTimer | None = None
        if 200 <= status < 300:
            if not resp.has("session-expires"):
                st = session_timer.answer(req, resp, self.config.session_expires)
            else:
                st = session_timer.from_2xx(resp)
                if st is not None:
                    st.refresher_is_us = not st.refresher_is_us  # from_2xx is the UAC's view
            if resp.body and st is not None:
                cd.local_body = resp.body  # for refresh re-INVITEs
            cd.peer_allows_update = "UPDATE" in req.values("allow")
        self._respond(rec, resp, now)
        if st is not None:
            st.arm(now)
            cd.st = st
            self._arm_dialog(cd)
        if status < 200:
            return
        if resp.to_tag == cd.dialog.local_tag:
            cd.dialog.response_sent(resp)
        if rec.purpose == Purpose.REINVITE:
            cd.pending_invite_tid = 0
        if 200 <= status < 300:
            cd.rel_bytes = None
            if rec.purpose == Purpose.REINVITE:
                if req.has("contact"):
                    cd.dialog.refresh_target(req)
            else:
                call.state = CallState.CONFIRMED
                call.invite = None  # the transaction keeps it while it matters
            t1 = self.config.timers.t1
            cd.ok_bytes = resp.to_bytes()
            cd.ok_cseq = req.cseq.seq
            cd.ok_interval = t1
            reliable = rec.peer[0] != "udp"
            cd.ok_next = float("inf") if reliable else now + t1
            cd.ok_give_up = now + 64 * t1
            self._arm_dialog(cd)
        elif rec.purpose == Purpose.INVITE:
            self._release(call, now, f"answered {status}")

    def _wants_100rel(self, req: Request) -> bool:
        if "100rel" in req.require:
            return True
        return self.config.use_100rel and "100rel" in req.supported

    def _arm_dialog(self, cd: CallDialog) -> None:
        d = cd.next_deadline()
        if d is not None and d != float("inf"):
            self._push(d, _K_DLG, cd.did)

    def _dialog_timer(self, cd: CallDialog, now: float) -> None:
        t2 = self.config.timers.t2
        call = self._calls.get(cd.cid)
        if cd.ok_bytes is not None:
            if now >= cd.ok_give_up:
                cd.ok_bytes = None
                if call is not None:
                    self._send_bye(call, cd, now, reason="no ACK for 2xx")
            elif now >= cd.ok_next:
                self._out.append((cd.ok_bytes, cd.peer))
                self.retransmissions += 1
                if call is not None:
                    call.retransmissions += 1
                cd.ok_interval = min(cd.ok_interval * 2, t2)
                cd.ok_next = now + cd.ok_interval
        if cd.rel_bytes is not None:
            if now >= cd.rel_give_up:
                cd.rel_bytes = None
                rec = self._tx.get(cd.rel_tid)
                if rec is not None and call is not None and call.state == CallState.INCOMING:
                    self._answer_invite(rec, make_response(
                        rec.tx.request, 504, "No PRACK", to_tag=cd.dialog.local_tag), now)
            elif now >= cd.rel_next:
                self._out.append((cd.rel_bytes, cd.peer))
                self.retransmissions += 1
                if call is not None:
                    call.retransmissions += 1
                cd.rel_interval *= 2
                cd.rel_next = now + cd.rel_interval
        st = cd.st
        if st is not None and now >= st.deadline and call is not None:
            if st.refresher_is_us:
                st.deadline = now + st.interval / 2.0  # re-armed by the refresh's answer
                self._send_refresh(call, cd, now)
            else:
                cd.st = None
                self._send_bye(call, cd, now, reason="session expired (RFC 4028)")
        self._arm_dialog(cd)

    def _send_refresh(self, call: Call, cd: CallDialog, now: float) -> None:
        """Refresh the session (RFC 4028 §10): UPDATE if the peer allows it, else re-INVITE."""
        st = cd.st
        if st is None or call.state != CallState.CONFIRMED:
            return
        d = cd.dialog
        if d.invite_client_pending or d.invite_server_pending:
            return
        method = "UPDATE" if cd.peer_allows_update else "INVITE"
        req = self._dlg_request(cd, method)
        req.add_header("Contact", self.contact)
        req.add_header("Supported", "timer")
        role = "uac" if call.uac else "uas"
        req.add_header("Session-Expires", f"{st.interval};refresher={role}")
        if method == "INVITE" and cd.local_body:
            req.set_body(cd.local_body, "application/sdp")
        self._send_request(req, Purpose.REFRESH, now, cid=call.cid, did=cd.did,
                           peer=self._next_hop(req, cd.peer))

    def _refreshed(self, cd: CallDialog, resp: Response, now: float) -> None:
        """A 2xx to a re-INVITE or UPDATE we sent: the session interval starts again."""
        st = session_timer.from_2xx(resp)
        if st is None and cd.st is not None:
            st = cd.st
        if st is not None:
            st.arm(now)
            cd.st = st
            self._arm_dialog(cd)

    # ================================================================ incoming responses

    def _on_response(self, resp: Response, peer: Peer, now: float) -> None:
        if resp.via_count() != 1:
            return  # §8.1.3.3: a response with more than one Via is not for us
        rec = self._client.get(client_key(resp))
        if rec is None:
            if 200 <= resp.status < 300 and resp.cseq.method == "INVITE":
                cd = self._dlg_by_id.get(dialog_id_of_response(resp))
                if cd is not None and cd.ack is not None:
                    self._out.append((cd.ack, self._next_hop_ack(cd)))
            return
        tx = rec.tx
        assert isinstance(tx, ClientTransaction)
        sent = tx.request
        if resp.call_id != sent.call_id or resp.from_tag != sent.from_tag or (
                resp.cseq.seq != sent.cseq.seq):
            # matched by branch alone (§17.1.3), but it does not answer our request
            self.bad_messages += 1
            self._emit(EventType.BAD_MESSAGE, now, response=resp,
                       reason="response does not answer the request its branch names")
            return
        passed = tx.receive(resp, now)
        self._flush(rec)
        if passed is None:
            return
        purpose = rec.purpose
        if purpose == Purpose.INVITE:
            self._on_invite_response(rec, passed, now)
        elif purpose == Purpose.REINVITE or (
                purpose == Purpose.REFRESH and tx.request.method == "INVITE"):
            self._on_reinvite_response(rec, passed, now)
        elif purpose == Purpose.REGISTER:
            self._on_register_response(rec, passed, now)
        elif purpose == Purpose.OUT_OF_DIALOG:
            if passed.status >= 300 and self._auth_retry(rec, passed, now):
                return
            self._emit(_message_event(passed.status, False), now, tid=rec.tid,
                       request=tx.request, response=passed)
        elif purpose == Purpose.CANCEL:
            return
        else:
            self._on_dialog_response(rec, passed, now)

    def _next_hop_ack(self, cd: CallDialog) -> Peer:
        return cd.peer

    def _on_invite_response(self, rec: TxRecord, resp: Response, now: float) -> None:
        call = self._calls.get(rec.cid)
        if call is None:
            return
        status = resp.status
        if status < 200:
            if call.state == CallState.CALLING:
                call.state = CallState.PROCEEDING
            cd: CallDialog | None = None
            if status > 100 and resp.to_tag is not None:
                cd = self._uac_dialog(call, rec, resp)
                if cd is not None and "100rel" in resp.require:
                    rseq = resp.rseq
                    if rseq is None or rseq <= cd.rseq_in:
                        return  # a retransmitted reliable provisional: PRACK already sent
                    cd.rseq_in = rseq
                    self._send_prack(call, cd, rseq, now)
            if call.cancel_pending:
                call.cancel_pending = False
                self._send_cancel(call, now)
            etype = EventType.CALL_RINGING if status == 180 else EventType.CALL_PROCEEDING
            self._emit(etype, now, cid=call.cid, did=cd.did if cd else 0, tid=rec.tid,
                       request=rec.tx.request, response=resp)
            return
        if status < 300:
            known = self._dlg_by_id.get(dialog_id_of_response(resp))
            if known is not None and known.ack is not None:
                self._out.append((known.ack, known.peer))
                return  # a retransmission of a 2xx we acknowledged (RFC 6026 Accepted)
            cd = self._uac_dialog(call, rec, resp)
            if cd is None:
                return
            cd.dialog.receive_response(resp)
            cd.peer_allows_update = "UPDATE" in resp.values("allow")
            st = session_timer.from_2xx(resp)
            if st is not None:
                if call.invite is not None:
                    cd.local_body = call.invite.body  # for refresh re-INVITEs
                st.arm(now)
                cd.st = st
                self._arm_dialog(cd)
            cancelling = call.cancel_pending or call.state == CallState.TERMINATING
            call.state = CallState.CONFIRMED
            call.invite = None  # the transaction keeps it while it matters; save the memory
            if cancelling:
                call.cancel_pending = False
                self.call_send_ack(cd.did, None, now)
                self._send_bye(call, cd, now, reason="answered after cancel")
                return
            if self.config.auto_ack:
                self.call_send_ack(cd.did, None, now)
            self._emit(EventType.CALL_ANSWERED, now, cid=call.cid, did=cd.did, tid=rec.tid,
                       request=rec.tx.request, response=resp)
            return
        if status in (401, 407) and self._auth_retry(rec, resp, now):
            return
        if status == 422 and self._interval_retry(rec, resp, now):
            return
        self._emit(_call_failure_event(status), now, cid=call.cid, tid=rec.tid,
                   request=rec.tx.request, response=resp)
        self._release(call, now, f"rejected {status}")

    def _uac_dialog(self, call: Call, rec: TxRecord, resp: Response) -> CallDialog | None:
        did_key = dialog_id_of_response(resp)
        cd = self._dlg_by_id.get(did_key)
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
        return self._add_dialog(call, dialog, rec.peer)

    def _on_reinvite_response(self, rec: TxRecord, resp: Response, now: float) -> None:
        cd = self._dlg_by_did.get(rec.did)
        if cd is None:
            return
        status = resp.status
        if status < 200:
            return
        cd.dialog.invite_client_pending = False
        if status < 300:
            cd.dialog.receive_response(resp)
            self._refreshed(cd, resp, now)
            if rec.purpose == Purpose.REFRESH:
                self._send_reinvite_ack(cd, rec, now)
                return
            if self.config.auto_ack:
                self._send_reinvite_ack(cd, rec, now)
            self._emit(EventType.CALL_ANSWERED, now, cid=cd.cid, did=cd.did, tid=rec.tid,
                       request=rec.tx.request, response=resp)
            return
        if status in (401, 407) and self._auth_retry(rec, resp, now):
            cd.dialog.invite_client_pending = True
            return
        cd.dialog.receive_response(resp)
        self._emit(_message_event(status, True), now, cid=cd.cid, did=cd.did, tid=rec.tid,
                   request=rec.tx.request, response=resp)
        if cd.dialog.state == DialogState.TERMINATED:
            call = self._calls.get(cd.cid)
            if call is not None:
                self._release(call, now, f"re-INVITE answered {status}")

    def _send_reinvite_ack(self, cd: CallDialog, rec: TxRecord, now: float) -> None:
        ack = self._dlg_request(cd, "ACK", cseq=rec.tx.request.cseq.seq)
        self.call_send_ack(cd.did, ack, now)

    def _on_dialog_response(self, rec: TxRecord, resp: Response, now: float) -> None:
        status = resp.status
        cd = self._dlg_by_did.get(rec.did)
        if status >= 300 and status in (401, 407) and self._auth_retry(rec, resp, now):
            return
        if cd is not None:
            cd.dialog.receive_response(resp)
            if 200 <= status < 300 and rec.tx.request.method == "UPDATE":
                self._refreshed(cd, resp, now)
        if rec.purpose in (Purpose.PRACK, Purpose.REFRESH):
            if cd is not None and cd.dialog.state == DialogState.TERMINATED:
                self._dialog_gone(rec, status, now)
            return
        if status >= 200 or rec.purpose != Purpose.BYE:
            self._emit(_message_event(status, True), now, cid=rec.cid, did=rec.did,
                       tid=rec.tid, request=rec.tx.request, response=resp)
        call = self._calls.get(rec.cid)
        if call is None:
            return
        if rec.purpose == Purpose.BYE and status >= 200:
            self._release(call, now, "BYE answered")
        elif cd is not None and cd.dialog.state == DialogState.TERMINATED:
            self._release(call, now, f"{rec.tx.request.method} answered {status}")

    def _dialog_gone(self, rec: TxRecord, status: int, now: float) -> None:
        """A PRACK or refresh was answered 481/408: the dialog is gone, so is the call.

        RFC 5057 §5.1: such an answer ends the dialog. An INVITE still pending is
        CANCELled first (§9.1), so the peer stops ringing a call we dropped.
        """
        call = self._calls.get(rec.cid)
        if call is None:
            return
        if call.uac and call.state == CallState.PROCEEDING:
            self._send_cancel(call, now)
        self._release(call, now, f"{rec.tx.request.method} answered {status}")

    # ================================================================ failures and timeouts

    def _tx_failed(self, rec: TxRecord, reason: str, now: float) -> None:
        """A client transaction timed out (B/F) or a server one got no ACK (H)."""
        req = rec.tx.request
        call = self._calls.get(rec.cid)
        if isinstance(rec.tx, ServerTransaction):
            if call is not None and rec.purpose == Purpose.INVITE:
                self._release(call, now, f"no ACK ({reason})")
            return
        purpose = rec.purpose
        if purpose == Purpose.REGISTER:
            self._emit(EventType.REGISTRATION_FAILURE, now, rid=rec.rid, tid=rec.tid,
                       request=req, reason=reason)
        elif purpose == Purpose.OUT_OF_DIALOG:
            self._emit(EventType.MESSAGE_REQUESTFAILURE, now, tid=rec.tid, request=req,
                       reason=reason)
        elif call is None:
            return
        elif purpose == Purpose.INVITE:
            if call.state in (CallState.CALLING, CallState.PROCEEDING, CallState.TERMINATING):
                self._emit(EventType.CALL_NOANSWER, now, cid=call.cid, tid=rec.tid, request=req,
                           reason=reason)
                self._release(call, now, f"no answer ({reason})")
        elif purpose in (Purpose.BYE, Purpose.CANCEL):
            if purpose == Purpose.BYE:
                self._release(call, now, f"BYE unanswered ({reason})")
        else:
            self._emit(EventType.CALL_MESSAGE_REQUESTFAILURE, now, cid=call.cid, did=rec.did,
                       tid=rec.tid, request=req, reason=reason)
            if purpose == Purpose.REINVITE:
                cd = self._dlg_by_did.get(rec.did)
                if cd is not None:
                    cd.dialog.invite_client_pending = False

    def transport_error(self, peer: Peer, now: float, reason: str = "transport error") -> None:
        """The shell could not reach ``peer`` (ICMP, refused connection, TLS failure)."""
        self.now = now
        for rec in [r for r in self._tx.values() if r.peer == peer]:
            rec.tx.transport_error(now)
            self._flush(rec)
            self._drop_tx(rec)
            if isinstance(rec.tx, ClientTransaction):
                self._emit(EventType.TRANSPORT_ERROR, now, cid=rec.cid, did=rec.did,
                           tid=rec.tid, request=rec.tx.request, reason=reason)
                self._tx_failed(rec, reason, now)

    def _release(self, call: Call, now: float, reason: str) -> None:
        if call.state == CallState.TERMINATED:
            return
        call.state = CallState.TERMINATED
        for cd in call.dialogs.values():
            cd.dialog.state = DialogState.TERMINATED
            self._dlg_by_did.pop(cd.did, None)
            self._reinvite_cseq.pop(cd.did, None)
            if self._dlg_by_id.get(cd.dialog.id) is cd:
                del self._dlg_by_id[cd.dialog.id]
        self._emit(EventType.CALL_RELEASED, now, cid=call.cid, reason=reason)
        del self._calls[call.cid]

    # ================================================================ requests the UA sends itself

    def _send_cancel(self, call: Call, now: float) -> None:
        rec = self._tx.get(call.invite_tid)
        if rec is None or rec.tx.terminated:
            return
        cancel = make_cancel(rec.tx.request)
        call.state = CallState.TERMINATING
        tx = ClientTransaction(cancel, reliable=rec.peer[0] != "udp", timers=self.config.timers,
                               now=now)
        tid = self._new_id()
        crec = TxRecord(tid, tx, rec.peer, Purpose.CANCEL, call.cid)
        self._tx[tid] = crec
        self._client[tx.key] = crec
        tx.start(now)
        self._flush(crec)

    def _send_bye(self, call: Call, cd: CallDialog, now: float, reason: str = "") -> None:
        if call.state == CallState.TERMINATING and call.bye_pending_did == 0 and reason == "":
            pass
        call.state = CallState.TERMINATING
        call.bye_pending_did = 0
        bye = self._dlg_request(cd, "BYE")
        self._send_request(bye, Purpose.BYE, now, cid=call.cid, did=cd.did,
                           peer=self._next_hop(bye, cd.peer))

    def _send_prack(self, call: Call, cd: CallDialog, rseq: int, now: float) -> None:
        prack = self._dlg_request(cd, "PRACK")
        prack.add_header("RAck", f"{rseq} {call.invite_cseq} INVITE")
        self._send_request(prack, Purpose.PRACK, now, cid=call.cid, did=cd.did,
                           peer=self._next_hop(prack, cd.peer))

    # ================================================================ authentication

    def _auth_retry(self, rec: TxRecord, resp: Response, now: float) -> bool:
        """Answer a 401/407 once per realm; True when a new request went out."""
        if resp.status not in (401, 407):
            return False
        hname = "www-authenticate" if resp.status == 401 else "proxy-authenticate"
        challenges = []
        for value in resp.get_all(hname):
            try:
                challenges.extend(parse_challenges(value))
            except DigestError:
                continue
        try:
            challenge = choose_challenge(challenges)
        except DigestError:
            challenge = None
        if challenge is None:
            return False
        if challenge.realm in rec.auth_realms and not challenge.stale:
            return False
        try:
            from_user = getattr(rec.tx.request.from_.uri, "user", None)
        except ParseError:
            from_user = None
        usable = [c for c in self._creds if c.realm in ("", challenge.realm)]
        cred = next((c for c in usable if c.username == from_user), None) or next(
            iter(usable), None)  # eXosip looks credentials up by the From user first
        if cred is None:
            return False
        old = rec.tx.request
        new = self._retry_copy(rec)
        aname = "Authorization" if resp.status == 401 else "Proxy-Authorization"
        new.remove_header(aname)
        nc = self._nc.next_nc(challenge.realm, challenge.nonce)
        try:
            creds = build_credentials(
                challenge, username=cred.userid, password=cred.password, method=old.method,
                uri=old.uri_text, cnonce=self.ids.tag(), body=old.body, nc=nc,
            )
        except DigestError:
            return False
        new.add_header(aname, creds.to_header())
        self._resend(rec, new, now, (*rec.auth_realms, challenge.realm))
        return True

    def _retry_copy(self, rec: TxRecord) -> Request:
        """The request of ``rec`` again, without our Via, with the next CSeq."""
        old = rec.tx.request
        new = old.copy()
        vias = new.get_all("via")
        new.remove_header("via")
        for v in vias[1:]:
            new.add_header("Via", v)
        cd = self._dlg_by_did.get(rec.did)
        if cd is not None and cd.dialog.local_seq is not None and rec.purpose != Purpose.PRACK:
            cd.dialog.local_seq += 1
            seq = cd.dialog.local_seq
        else:
            seq = old.cseq.seq + 1
        new.set_header("CSeq", f"{seq} {old.method}")
        return new

    def _interval_retry(self, rec: TxRecord, resp: Response, now: float) -> bool:
        """Answer a 422 by asking again with the peer's Min-SE (RFC 4028 §7.4)."""
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
        new = self._retry_copy(rec)
        new.set_header("Session-Expires", str(interval))
        new.set_header("Min-SE", str(interval))
        self._resend(rec, new, now, rec.auth_realms)
        return True

    def _resend(self, rec: TxRecord, new: Request, now: float,
                auth_realms: tuple[str, ...]) -> None:
        """Send a new request in place of ``rec``'s (auth or interval retry)."""
        seq = new.cseq.seq
        tid = self._send_request(
            new, rec.purpose, now, cid=rec.cid, did=rec.did, rid=rec.rid, peer=rec.peer,
            auth_realms=auth_realms,
        )
        call = self._calls.get(rec.cid)
        if call is not None and rec.purpose == Purpose.INVITE:
            call.invite = new
            call.invite_cseq = new.cseq.seq
            call.invite_tid = tid
        if rec.purpose == Purpose.REINVITE:
            self._reinvite_cseq[rec.did] = seq
        reg = self._regs.get(rec.rid)
        if reg is not None:
            reg.request = new
            reg.tid = tid

    # ================================================================ registration

    def _on_register_response(self, rec: TxRecord, resp: Response, now: float) -> None:
        reg = self._regs.get(rec.rid)
        if reg is None or resp.status < 200:
            return
        if resp.status >= 300:
            if self._auth_retry(rec, resp, now):
                return
            if resp.status == 423 and resp.has("min-expires"):
                pass
            reg.registered = False
            self._emit(EventType.REGISTRATION_FAILURE, now, rid=reg.rid, tid=rec.tid,
                       request=rec.tx.request, response=resp)
            return
        granted = reg.expires
        ours = self.contact
        contacts = resp.contacts or []
        for c in contacts:
            if str(c.uri) in ours and c.expires is not None:
                granted = c.expires
        if resp.expires is not None and not any(c.expires is not None for c in contacts):
            granted = resp.expires
        reg.registered = granted > 0
        self._emit(EventType.REGISTRATION_SUCCESS, now, rid=reg.rid, tid=rec.tid,
                   request=rec.tx.request, response=resp)
        if granted > 0:
            reg.refresh_at = now + max(granted * 0.9, granted - 60.0, 1.0) if granted > 2 else (
                now + granted / 2)
            self._push(reg.refresh_at, _K_REG, reg.rid)

    def _refresh_registration(self, reg: Registration, now: float) -> None:
        req = self.register_build_register(reg.rid, reg.expires)
        self.register_send_register(reg.rid, req, now)


def _call_failure_event(status: int) -> EventType:
    if status < 400:
        return EventType.CALL_REDIRECTED
    if status < 500:
        return EventType.CALL_REQUESTFAILURE
    if status < 600:
        return EventType.CALL_SERVERFAILURE
    return EventType.CALL_GLOBALFAILURE


def _message_event(status: int, in_call: bool) -> EventType:
    if in_call:
        if status < 200:
            return EventType.CALL_MESSAGE_PROCEEDING
        if status < 300:
            return EventType.CALL_MESSAGE_ANSWERED
        if status < 400:
            return EventType.CALL_MESSAGE_REDIRECTED
        if status < 500:
            return EventType.CALL_MESSAGE_REQUESTFAILURE
        if status < 600:
            return EventType.CALL_MESSAGE_SERVERFAILURE
        return EventType.CALL_MESSAGE_GLOBALFAILURE
    if status < 200:
        return EventType.MESSAGE_PROCEEDING
    if status < 300:
        return EventType.MESSAGE_ANSWERED
    if status < 400:
        return EventType.MESSAGE_REDIRECTED
    if status < 500:
        return EventType.MESSAGE_REQUESTFAILURE
    if status < 600:
        return EventType.MESSAGE_SERVERFAILURE
    return EventType.MESSAGE_GLOBALFAILURE


__all__ = ["NameAddress", "UAConfig", "UserAgent", "make_ack_for_non2xx"]
