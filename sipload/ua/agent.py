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

Where things live
=================

This class is the facade: it keeps the API and hands the work to plain modules
acting on one :class:`~sipload.ua.state.UAState` record:
:mod:`~sipload.ua.routing` (Via, next hop, new requests), :mod:`~sipload.ua.core`
(transactions, the timer heap, events, releasing a call), :mod:`~sipload.ua.uas`
(requests that arrive, answering them), :mod:`~sipload.ua.uac` (responses, failed
transactions, transport errors), :mod:`~sipload.ua.outbound` (ACK, BYE, CANCEL,
PRACK, refresh), :mod:`~sipload.ua.retransmit` (2xx and reliable provisionals),
:mod:`~sipload.ua.auth` (401/407, 422), :mod:`~sipload.ua.registration`,
:mod:`~sipload.ua.eventmap` (status → event) and :mod:`~sipload.ua.callstate`
(the call's transition table).
"""

from __future__ import annotations

from sipload.sip.build import make_ack_for_non2xx
from sipload.sip.errors import LocalProtocolError, ParseError
from sipload.sip.headers import NameAddress
from sipload.sip.message import Request, Response
from sipload.sip.parser import parse_message
from sipload.sip.servers import ServerSet
from sipload.ua import registration, session_timer, uac, uas
from sipload.ua.callstate import CallAction, CallInput, public_state, step
from sipload.ua.config import DEFAULT_ALLOW, UAConfig
from sipload.ua.core import (
    count_retrans,
    dlg_request,
    emit,
    flush,
    send_request,
    slim_lingering,
    take_retransmitted,
    tx_label,
)
from sipload.ua.events import Event, EventType
from sipload.ua.failover import first_hops, send_located
from sipload.ua.ids import IdGenerator
from sipload.ua.outbound import (
    ack_sent,
    build_ack,
    send_ack,
    send_bye,
    send_cancel,
    send_dialog_ack,
)
from sipload.ua.routing import build_initial, next_hop
from sipload.ua.state import (
    Call,
    CallDialog,
    CallState,
    Credential,
    Peer,
    Purpose,
    UAState,
)

_WHOLE = frozenset({"udp", "ws", "wss"})
"""Transports whose every read is one whole message (Content-Length may be absent)."""

_TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


class UserAgent:
    """A SIP user agent with eXosip2's call-control API (see the module docstring)."""

    def __init__(self, config: UAConfig | None = None, ids: IdGenerator | None = None) -> None:
        self.config = config or UAConfig()
        self.ids = ids or IdGenerator("sl")
        self.state = UAState(self.config, self.ids)
        self.contact = self.state.contact

    @property
    def now(self) -> float:
        """The last ``now`` the UA was given."""
        return self.state.now

    @now.setter
    def now(self, value: float) -> None:
        self.state.now = value

    @property
    def retransmissions(self) -> int:
        """Messages the UA (its transactions and itself) has retransmitted."""
        return self.state.retransmissions

    @property
    def bad_messages(self) -> int:
        """Messages from the network that were malformed or did not fit (dropped or answered)."""
        return self.state.bad_messages

    @property
    def refused_busy(self) -> int:
        """New INVITEs answered 503 + Retry-After because max_calls calls were up."""
        return self.state.refused_busy

    # ================================================================ sans-IO surface

    def outgoing(self) -> list[tuple[bytes, Peer]]:
        """Take the bytes waiting to be sent, each with its destination (each leaves from
        local address 0: a UA with more, see :meth:`outgoing_from`)."""
        s = self.state
        out = s.out
        s.out = []
        if s.out_from:
            s.out_from = {}
        return out

    def outgoing_from(self) -> list[tuple[bytes, Peer, int]]:
        """Like :meth:`outgoing`, each with the local address it leaves from (an index
        given by :meth:`add_local`; 0 for the config's)."""
        s = self.state
        src = s.out_from
        out = [(data, peer, src.get(i, 0)) for i, (data, peer) in enumerate(s.out)]
        s.out = []
        s.out_from = {}
        return out

    # ================================================================ local addresses

    def add_local(self, host: str, port: int) -> int:
        """Another local address for calls to leave from (bound by the shell); returns its
        index.  Calls, registrations and requests outside them started while it is the
        :attr:`source` carry it in Via and Contact, and all their messages leave from it
        (:meth:`outgoing_from`).  Index 0 is the config's own address."""
        return self.state.add_local(host, port)

    @property
    def locals(self) -> list[tuple[str, str]]:
        """The local addresses, each (host:port, Contact); index 0 is the config's."""
        return list(self.state.locals)

    @property
    def source(self) -> int:
        """The local address new calls, registrations and requests outside calls take."""
        return self.state.source

    @source.setter
    def source(self, local: int) -> None:
        if not 0 <= local < len(self.state.locals):
            raise LocalProtocolError(f"no local address {local}")
        self.state.source = local

    def call_local(self, cid: int) -> int:
        """The local address call ``cid`` runs on."""
        return self.state.call(cid).local

    def queued(self) -> int:
        """How many messages wait for :meth:`outgoing` (the next one queued gets this index)."""
        return len(self.state.out)

    def next_event(self) -> Event | None:
        """The oldest event not yet taken, or None."""
        events = self.state.events
        return events.popleft() if events else None

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timers` should next be called (None: no timer)."""
        return self.state.timers.peek()

    def receive(self, data: bytes, peer: Peer, now: float, local: int = 0) -> None:
        """Take one datagram or one framed stream message from ``peer``, which came in on
        local address ``local`` (see :meth:`add_local`; a request is answered from there).

        Never raises for anything the peer sent: a malformed request is answered
        (400, 505 ...) where it can be, anything else is dropped and counted.
        """
        s = self.state
        s.now = now
        s.arrived = local
        if s.linger:  # finals sent through the API since the last entry point
            slim_lingering(s)
        try:
            # a datagram or a WebSocket message is one whole message (RFC 7118 §5.1)
            msg = parse_message(data, datagram=peer[0] in _WHOLE)
        except ParseError as e:
            uas.bad(s, data, peer, e, now)
            return
        try:
            if isinstance(msg, Request):
                uas.on_request(s, msg, peer, now)
            else:
                uac.on_response(s, msg, now)
        except ParseError as e:
            uas.bad(s, data, peer, e, now)
        except LocalProtocolError as e:
            # the message contradicts the state it matched (a response of another
            # dialog, say): the peer is at fault, so it is dropped, never raised
            s.bad_messages += 1
            emit(s, EventType.BAD_MESSAGE, now, reason=f"inconsistent message: {e}")
        if s.linger:  # the TU is done with the messages of what completed here
            slim_lingering(s)

    def handle_timers(self, now: float) -> None:
        """Fire every timer due at ``now`` (one heap: transactions, dialogs, registrations)."""
        s = self.state
        s.now = now
        while True:
            if s.linger:
                slim_lingering(s)
            due = s.timers.pop_due(now)
            if not due:
                return
            for key in due:
                rec = s.tx.get(key)
                if rec is not None:
                    tx = rec.tx
                    before = tx.retransmissions
                    fired = tx.handle_timer(now)
                    if tx.retransmissions != before:
                        count_retrans(s, rec.cid, tx.retransmissions - before, tx_label(tx))
                    flush(s, rec)
                    if fired is not None:
                        uac.tx_failed(s, rec, f"timer {fired}", now)
                    continue
                cd = s.dlg_by_did.get(key)
                if cd is not None:
                    uas.dialog_timer(s, cd, now)
                    continue
                reg = s.regs.get(key)
                if reg is not None:
                    registration.refresh(s, reg, now)

    def transport_error(self, peer: Peer, now: float, reason: str = "transport error",
                        call_id: str = "") -> None:
        """The shell could not reach ``peer`` (ICMP, refused connection, TLS failure);
        with ``call_id``, only that call's connection failed (per-call TCP/TLS)."""
        self.state.now = now
        uac.transport_error(self.state, peer, now, reason, call_id)

    # ================================================================ the eXosip API: calls

    def guess_localip(self, family: int = 4) -> str:
        """The address we put in Via and Contact (eXosip_guess_localip)."""
        return self.config.host

    def add_authentication_info(
        self, username: str, userid: str, password: str, realm: str = ""
    ) -> None:
        """Store credentials for 401/407 challenges (realm "" answers any realm)."""
        self.state.creds.append(Credential(username, userid or username, password, realm))

    def call_build_initial_invite(
        self, to: str, from_: str, route: str | None = None, subject: str | None = None
    ) -> Request:
        """A default INVITE: the program may add any header or body before sending."""
        s = self.state
        req = build_initial(s, "INVITE", to, from_, route)
        if subject is not None:
            req.add_header("Subject", subject)
        req.add_header("Contact", s.contact_of(s.source))
        req.add_header("Allow", s.allow)
        if self.config.session_expires:
            req.add_header("Supported", "timer")
            session_timer.offer(req, self.config.session_expires, self.config.min_se)
        return req

    def call_send_initial_invite(self, invite: Request, now: float | None = None) -> int:
        """Send an INVITE built by :meth:`call_build_initial_invite`; returns the cid."""
        now = self._now(now)
        s = self.state
        cid = s.new_id()
        hops = first_hops(s, invite, now)
        peer = hops[0] if hops else next_hop(s, invite)
        call = Call(cid, True, CallState.CALLING, invite, 0, peer)
        call.local = s.source
        s.calls[cid] = call
        call.invite_tid = send_request(s, invite, Purpose.INVITE, now, cid=cid, peer=peer)
        if hops:
            send_located(s, s.tx[call.invite_tid], hops)
        return cid

    def set_servers(self, servers: ServerSet) -> None:
        """Requests whose Request-URI host is ``servers.name`` go to those servers, in
        the order :meth:`ServerSet.pick` gives per call, the next on failure (RFC 3263)."""
        self.state.servers[servers.name] = servers

    def call_take_server(self, cid: int) -> tuple[str, int] | None:
        """(the server call ``cid``'s INVITE last went to, how many times it moved on),
        for a call placed to a located name; None otherwise.  Forgotten once taken.
        The same for a registration's rid and for the tid of a request outside calls."""
        return self.state.located.pop(cid, None)

    @property
    def failovers(self) -> int:
        """INVITEs sent anew to the next server (RFC 3263 §4.3), in all."""
        return self.state.failovers

    def call_set_reference(self, cid: int, reference: object) -> None:
        self.state.call(cid).reference = reference

    def call_get_reference(self, cid: int) -> object:
        return self.state.call(cid).reference

    def call_build_answer(self, tid: int, status: int) -> Response:
        """A default answer to the request of server transaction ``tid``."""
        return uas.build_answer(self.state, tid, status)

    def call_send_answer(
        self, tid: int, status: int, answer: Response | None = None, now: float | None = None
    ) -> None:
        """Answer server transaction ``tid`` (a default answer when ``answer`` is None)."""
        uas.send_answer(self.state, tid, status, answer, self._now(now))

    def call_terminate(self, cid: int, did: int = 0, now: float | None = None) -> None:
        """End a call: CANCEL, a negative answer or BYE, whichever its state calls for.

        Before any provisional response a CANCEL may not be sent (RFC 3261 §9.1):
        it is sent when one arrives, or the call ends when Timer B fires.  A UAS
        whose 2xx still awaits its ACK sends the BYE when the ACK comes (§15).
        """
        now = self._now(now)
        s = self.state
        call = s.call(cid)
        cd: CallDialog | None = None
        inp = CallInput.TERMINATE
        if public_state(call.state) == CallState.CONFIRMED:
            cd = s.pick_dialog(call, did)
            if not call.uac and cd.ok is not None:
                inp = CallInput.TERMINATE_BEFORE_ACK
        action = step(call, inp)
        if action == CallAction.SEND_CANCEL:
            send_cancel(s, call, now)
        elif action == CallAction.SEND_BYE and cd is not None:
            if call.uac and not ack_sent(cd):
                self.call_send_ack(cd.did, None, now)
            send_bye(s, call, cd, now)
        elif action == CallAction.DECLINE:
            rec = s.tx.get(call.invite_tid)
            if rec is not None and not rec.tx.terminated:
                self.call_send_answer(call.invite_tid, 603, None, now)

    def call_take_retransmissions(self, cid: int) -> list[tuple[float, str]]:
        """The retransmissions of call ``cid`` not yet reported: (time, what was re-sent),
        such as ``(12.5, "BYE")`` or ``(3.0, "200 INVITE")``; [] for an unknown call.

        Each event of a call carries the ones made since its previous event
        (``Event.retransmitted``); this takes those made since, for a program about
        to stop listening to the call."""
        return take_retransmitted(self.state, cid)

    def call_build_ack(self, did: int) -> Request:
        """The ACK for the 2xx to the dialog's last INVITE (initial or re-INVITE)."""
        return build_ack(self.state, self.state.dialog(did))

    def call_send_ack(self, did: int, ack: Request | None = None, now: float | None = None) -> None:
        """Send the ACK for the 2xx of dialog ``did`` (kept and re-sent on 2xx retransmission)."""
        self._now(now)
        cd = self.state.dialog(did)
        if ack is None:
            send_dialog_ack(self.state, cd)
        else:
            send_ack(self.state, cd, ack)

    def call_send_default_ack(self, did: int, now: float | None = None) -> tuple[str, int]:
        """``call_send_ack(did)`` (the default ACK, written without a :class:`Request`);
        returns the ACK's branch and CSeq number."""
        self._now(now)
        return send_dialog_ack(self.state, self.state.dialog(did))

    def call_build_request(self, did: int, method: str) -> Request:
        """A request inside dialog ``did`` (INFO, UPDATE, REFER, NOTIFY, re-INVITE, any)."""
        s = self.state
        cd = s.dialog(did)
        req = dlg_request(cd, method)
        if method in _TARGET_REFRESH:
            req.add_header("Contact", s.contact_of(s.local_of(cd.cid)))
        if method == "INVITE":
            req.add_header("Allow", s.allow)
        return req

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
        s = self.state
        cd = s.dialog(did)
        if request.method == "INVITE":
            purpose = Purpose.REINVITE
            s.reinvite_cseq[did] = request.cseq.seq
        elif request.method == "BYE":
            purpose = Purpose.BYE
            call = s.calls.get(cd.cid)
            if call is not None:  # the program's own BYE: terminate() has nothing left
                step(call, CallInput.BYE_SENT)
        else:
            purpose = Purpose.IN_DIALOG
        return send_request(s, request, purpose, now, cid=cd.cid, did=did,
                            peer=next_hop(s, request, cd.peer))

    # ================================================================ the eXosip API: outside calls

    def register_build_initial_register(
        self, from_: str, proxy: str, contact: str | None = None, expires: int = 3600
    ) -> tuple[int, Request]:
        """A REGISTER for ``from_`` at registrar ``proxy``; returns (rid, request)."""
        return registration.build_initial_register(self.state, from_, proxy, contact, expires)

    def register_build_register(self, rid: int, expires: int) -> Request:
        """The next REGISTER of registration ``rid`` (refresh, or expires 0 to remove)."""
        return registration.build_register(self.state, rid, expires)

    def register_send_register(self, rid: int, request: Request, now: float | None = None) -> int:
        return registration.send_register(self.state, rid, request, self._now(now))

    def options_build_request(self, to: str, from_: str, route: str | None = None) -> Request:
        return self.message_build_request("OPTIONS", to, from_, route)

    def message_build_request(
        self, method: str, to: str, from_: str, route: str | None = None
    ) -> Request:
        """A request outside any dialog (OPTIONS, MESSAGE, any private method)."""
        req = build_initial(self.state, method, to, from_, route)
        if method in ("OPTIONS", "SUBSCRIBE", "REFER", "NOTIFY"):
            req.add_header("Contact", self.state.contact_of(self.state.source))
        return req

    def message_send_request(self, request: Request, now: float | None = None) -> int:
        """Send a request outside any dialog; returns its tid (which its events carry,
        even when it moves on to another server of a located name)."""
        now = self._now(now)
        s = self.state
        hops = first_hops(s, request, now)
        tid = send_request(s, request, Purpose.OUT_OF_DIALOG, now,
                           peer=hops[0] if hops else None)
        if hops:
            send_located(s, s.tx[tid], hops)
        return tid

    def message_build_answer(self, tid: int, status: int) -> Response:
        return self.call_build_answer(tid, status)

    def message_send_answer(
        self, tid: int, status: int, answer: Response | None = None, now: float | None = None
    ) -> None:
        self.call_send_answer(tid, status, answer, now)

    # ================================================================ introspection

    def call_count(self) -> int:
        return len(self.state.calls)

    def transaction_count(self) -> int:
        return len(self.state.tx)

    def call_quiet(self, cid: int) -> None:
        """Call ``cid`` has gone quiet (held open, in a long pause): drop what it keeps only
        to write its next requests faster.  Nothing it will need is lost; an unknown or
        ended call is ignored."""
        call = self.state.calls.get(cid)
        if call is not None:
            for cd in call.dialogs.values():
                cd.dialog.forget_texts()

    def call_dialogs(self, cid: int) -> list[int]:
        return list(self.state.call(cid).dialogs)

    def dialog_of(self, did: int) -> CallDialog:
        return self.state.dialog(did)

    def call_state(self, cid: int) -> CallState | None:
        call = self.state.calls.get(cid)
        return None if call is None else public_state(call.state)

    def transaction_request(self, tid: int) -> Request:
        rec = self.state.tx.get(tid)
        if rec is None:
            raise LocalProtocolError(f"no transaction {tid}")
        return rec.tx.request

    def _now(self, now: float | None) -> float:
        if now is not None:
            self.state.now = now
        return self.state.now


__all__ = ["DEFAULT_ALLOW", "NameAddress", "UAConfig", "UserAgent", "make_ack_for_non2xx"]
