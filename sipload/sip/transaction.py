"""SIP transactions: the four state machines of RFC 3261 §17, with RFC 6026's Accepted.

Theory of operation
===================

A transaction is one request and its responses (plus, for INVITE, the ACK of a
non-2xx final).  It makes an unreliable transport look reliable: it
retransmits, absorbs retransmissions from the peer, and gives up after a
while.  The UA ("transaction user", TU) sits above; the transport below.

1. Sans-IO.  A transaction never sends: it appends bytes to ``outgoing`` and
   the caller drains that list into the transport towards the transaction's
   peer.  It never reads a clock: every entry point takes ``now`` (monotonic
   seconds) and :meth:`next_deadline` says when :meth:`handle_timer` wants to
   run next.  Messages are serialized once and the cached bytes are re-queued
   on every retransmission.
2. Inputs.  Everything that can happen to a transaction is an :class:`Input`:
   a 1xx / 2xx / 300-699 arrives (client), the TU sends one (server), the
   request is retransmitted or an ACK arrives (server), the retransmission
   timer or the state's guard timer fires, the transport fails.
3. Transition tables.  Each machine is a dict keyed by ``(state, input)`` giving
   ``(next state, action)``, next to the RFC figure it encodes (in
   :mod:`sipload.sip.txtables`).  A pair left out means "stay, do nothing" (the
   input is absorbed), except that a response from the TU left out is refused
   (ERROR: :class:`LocalProtocolError`).  The dicts are flattened at import into
   lists indexed by ``state * len(inputs) + input``, so a step is one list index.
   The action says what to do with the message (pass it to the TU, send the ACK,
   re-send the last response ...); the *state entered* decides which timers run
   (rule 5).
4. Two timer slots.  In any state a transaction runs at most a retransmission
   timer (A, E or G) and a guard timer that ends the state (B, D, M; F, K; H,
   I, L; J).  Unarmed slots hold ``inf``.  :meth:`handle_timer` fires the
   guard timer if it is due (every guard timer leads to Terminated, so a
   retransmission due at the same moment is moot), else the retransmission
   timer once.  A retransmission timer is re-armed from its scheduled
   deadline (exact schedules: INVITE over UDP goes out at 0, 0.5, 1.5, 3.5 ...)
   unless that is already past, then from ``now`` (no bursts after a stall).
   After ``handle_timer(now)`` no deadline is ``<= now``.
5. Entering a state arms its timers.  Calling: A = T1 (unreliable only, then
   doubling without cap, §17.1.1.2) and B = 64·T1.  Trying (non-INVITE
   client): E = T1 (unreliable only, doubling up to T2) and F = 64·T1;
   Proceeding keeps E and F, and E then repeats every T2.  Completed: D
   (INVITE client), K (non-INVITE client), G (unreliable) and H (INVITE
   server), J (non-INVITE server).  Confirmed: I.  Accepted: M (client),
   L (server).  A guard timer of zero (D, I, J, K over a reliable transport)
   means the state is left for Terminated at once.  Terminated clears both.
6. RFC 6026.  A 2xx to an INVITE moves both INVITE machines to Accepted rather
   than Terminated: the client passes every 2xx retransmission to the TU (which
   ACKs each, the transaction never does), the server passes each ACK to the
   TU and lets the TU's own 2xx retransmissions through, and absorbs INVITE
   retransmissions.  An INVITE server transaction keeps its state on a
   transport error (RFC 6026 §7.1); its timers end it.
7. Failures are results, not exceptions.  ``handle_timer`` returns ``"B"``,
   ``"F"`` or ``"H"`` when the transaction timed out (the TU treats it as a
   408); ``failure`` keeps the reason (``"B"``, ``"F"``, ``"H"`` or
   ``"transport"``).  The only exception raised by a running transaction is
   :class:`LocalProtocolError`, for API misuse (a response after a final, an
   unrelated request, starting twice).
8. Matching (§17.1.3, §17.2.3) is the caller's job, with :func:`client_key` and
   :func:`server_key`; the transaction trusts that what it is given matches.
9. Lingering light.  Once the TU has had the final response (Completed, Confirmed,
   Accepted), a transaction waits out its guard timer (up to 64·T1 = 32 s) only to
   match and absorb retransmissions.  :meth:`slim` then drops the parsed messages
   and keeps what that needs: the key, the method, the request's Call-ID, From tag
   and CSeq number (:meth:`ClientTransaction.answers`), the last status and the
   bytes it re-sends.  ``request`` stays readable: it is parsed again from the
   bytes sent (or, for a server transaction, the bytes it was serialized to when
   slimmed), for the rare caller that still asks.  A busy worker holds tens of
   thousands of lingering transactions; as parsed messages they were most of its
   memory and of the objects the cyclic garbage collector had to traverse.
"""


from __future__ import annotations

import math
from typing import Final

from sipload.sip.build import make_ack_for_non2xx
from sipload.sip.errors import LocalProtocolError, ParseError
from sipload.sip.headers import MAGIC_COOKIE
from sipload.sip.message import Request, Response
from sipload.sip.parser import parse_message
from sipload.sip.txtables import (
    INVITE_CLIENT_TRANSITIONS,
    INVITE_SERVER_TRANSITIONS,
    NON_INVITE_CLIENT_TRANSITIONS,
    NON_INVITE_SERVER_TRANSITIONS,
    Action,
    Flat,
    Input,
    TimerConfig,
    TxState,
    flatten,
)

__all__ = [
    "INVITE_CLIENT_TRANSITIONS", "INVITE_SERVER_TRANSITIONS", "NON_INVITE_CLIENT_TRANSITIONS",
    "NON_INVITE_SERVER_TRANSITIONS", "Action", "ClientTransaction", "Input", "ServerTransaction",
    "TimerConfig", "TxState", "cancel_target_key", "client_key", "make_branch", "server_key",
]

_INF: Final = math.inf

S = TxState
In = Input
A = Action

_N: Final = len(Input)
_ICT: Final = flatten(INVITE_CLIENT_TRANSITIONS)
_NICT: Final = flatten(NON_INVITE_CLIENT_TRANSITIONS)
_IST: Final = flatten(INVITE_SERVER_TRANSITIONS)
_NIST: Final = flatten(NON_INVITE_SERVER_TRANSITIONS)


# ------------------------------------------------------------------ keys (§17.1.3, §17.2.3)


def make_branch(token: str) -> str:
    """An RFC 3261 branch: the magic cookie, then ``token`` (the caller makes it unique)."""
    return MAGIC_COOKIE + token


def client_key(response: Response) -> tuple[str, str]:
    """The client transaction of a response: (top Via branch, CSeq method), §17.1.3.

    Raises:
        ParseError: the response has no usable Via or CSeq (drop it).
    """
    return (response.via.branch or "", response.cseq.method)


def _server_key(request: Request, method: str) -> tuple[str, ...]:
    via = request.via
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        port = via.port
        return (branch, via.host.lower(), "" if port is None else str(port), method)
    return (
        "2543",
        request.uri_text,
        request.from_tag or "",
        request.call_id,
        str(request.cseq.seq),
        str(via),
        method,
    )


def server_key(request: Request) -> tuple[str, ...]:
    """The server transaction of a request, §17.2.3.

    With an RFC 3261 branch (``z9hG4bK...``): ``(branch, sent-by host in lower
    case, sent-by port or "", method)``.  Otherwise the RFC 2543 fallback:
    ``("2543", Request-URI, From tag, Call-ID, CSeq number, top Via, method)``.
    An ACK's method counts as INVITE, so an ACK finds its INVITE transaction.
    The To tag is not in the 2543 key: for an ACK the caller compares it with
    the To tag of the response the transaction sent.

    Raises:
        ParseError: the request has no usable Via (or, for the fallback, From,
            Call-ID or CSeq).
    """
    method = request.method
    return _server_key(request, "INVITE" if method == "ACK" else method)


def cancel_target_key(cancel: Request) -> tuple[str, ...]:
    """The :func:`server_key` of the INVITE that ``cancel`` cancels (§9.2)."""
    return _server_key(cancel, "INVITE")


# ------------------------------------------------------------------ common part


class _Transaction:
    """What both sides share: state, timer slots (rules 4, 5), timers and transport errors."""

    __slots__ = (
        "_call_id", "_completed_guard", "_end_at", "_invite", "_reliable", "_request",
        "_request_data",
        "_retx_at", "_retx_data", "_retx_interval", "_table", "_timeout_name", "_timer_g",
        "_timers", "created", "failure", "last_status", "method", "outgoing",
        "retransmissions", "state",
    )

    def __init__(
        self, request: Request, reliable: bool, timers: TimerConfig, now: float, client: bool
    ) -> None:
        method = request.method
        invite = method == "INVITE"
        self._request: Request | None = request
        self._request_data: bytes = b""  # what ``request`` is parsed from once slimmed
        self._call_id: str = ""  # the request's, kept by slim()
        self.method: str = method
        self.last_status: int = 0  #: the status of the last response passed on or sent
        if client:
            self.state: TxState = S.CALLING if invite else S.TRYING
            self._table: Flat = _ICT if invite else _NICT
            self._timeout_name: str = "B" if invite else "F"
            guard = timers.timer_d(reliable) if invite else timers.timer_k(reliable)
        else:
            self.state = S.PROCEEDING if invite else S.TRYING
            self._table = _IST if invite else _NIST
            self._timeout_name = "H"
            guard = timers.timer_h if invite else timers.timer_j(reliable)
        self._completed_guard: float = guard  # D, K, H or J
        self._timer_g: bool = invite and not client
        self.outgoing: list[bytes] = []
        self.retransmissions: int = 0
        self.failure: str | None = None
        self.created: float = now
        self._invite: bool = invite
        self._reliable: bool = reliable
        self._timers: TimerConfig = timers
        self._retx_data: bytes = b""  # what the retransmission timer re-sends
        self._retx_at: float = _INF
        self._retx_interval: float = 0.0
        self._end_at: float = _INF

    @property
    def request(self) -> Request:
        """The request; parsed again from its bytes after :meth:`slim` (rule 9)."""
        req = self._request
        if req is not None:
            return req
        msg = parse_message(self._request_data)
        assert isinstance(msg, Request)  # our own bytes, serialized from a Request
        return msg

    @property
    def call_id(self) -> str:
        """The request's Call-ID (without parsing it again once slimmed)."""
        req = self._request
        return req.call_id if req is not None else self._call_id

    @property
    def slimmed(self) -> bool:
        """True once :meth:`slim` has dropped the parsed messages."""
        return self._request is None

    def slim(self) -> None:
        """Drop the parsed messages; keep what matching and retransmission need (rule 9).

        For a transaction whose final response the TU has had: it then lingers on
        bytes and a few strings.  Idempotent.
        """
        raise NotImplementedError

    @property
    def terminated(self) -> bool:
        return self.state == S.TERMINATED

    @property
    def lingering(self) -> bool:
        """Completed, Confirmed or Accepted: the final is out, only the guard timer runs."""
        state = self.state
        return S.COMPLETED <= state <= S.ACCEPTED

    @property
    def timed_out(self) -> bool:
        """True when Timer B, F or H ended the transaction."""
        f = self.failure
        return f is not None and f != "transport"

    @property
    def failed(self) -> bool:
        """True when the transaction timed out or the transport failed."""
        return self.failure is not None

    @property
    def reliable(self) -> bool:
        return self._reliable

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` should run next; None when no timer is armed."""
        d = self._retx_at if self._retx_at < self._end_at else self._end_at
        return None if d == _INF else d

    def handle_timer(self, now: float) -> str | None:
        """Fire what is due at ``now``: the guard timer, else the retransmission timer (rule 4).

        Returns:
            ``"B"`` (INVITE client), ``"F"`` (non-INVITE client) or ``"H"``
            (INVITE server, no ACK came) when the transaction timed out and the
            TU must be told (a client treats it as a 408); None otherwise.
        """
        if self._end_at <= now:
            guard = True
            inp = In.TIMER_GUARD
        elif self._retx_at <= now:
            guard = False
            inp = In.TIMER_RETX
        else:
            return None
        nxt, action = self._table[self.state * _N + inp]
        if action == A.RETX_DOUBLE or action == A.RETX_CAPPED or action == A.RETX_T2:
            self.outgoing.append(self._retx_data)
            self.retransmissions += 1
            self._rearm_retx(action, now)
        elif action == A.TIMEOUT:
            self.failure = self._timeout_name
            self._terminate()
            return self._timeout_name
        elif nxt != self.state:
            self._enter(nxt, now)
        elif guard:  # a timer with no meaning in this state (never armed so): disarm it
            self._end_at = _INF
        else:
            self._retx_at = _INF
        return None

    def transport_error(self, now: float) -> None:
        """The transport could not deliver what this transaction sent.

        ``failure`` becomes ``"transport"``.  A client transaction terminates
        (in Calling, Trying and Proceeding the TU treats it as a 503, §8.1.3.1);
        so does a non-INVITE server transaction (§17.2.2); an INVITE server
        transaction keeps its state and lets its timers end it (RFC 6026 §7.1).
        """
        nxt, action = self._table[self.state * _N + In.TRANSPORT_ERROR]
        if action == A.FAIL:
            self.failure = "transport"
        if nxt != self.state:
            self._enter(nxt, now)

    def _enter(self, state: TxState, now: float) -> None:
        """Rule 5: enter ``state`` and arm its timers."""
        self.state = state
        timers = self._timers
        if state == S.COMPLETED:
            self._retx_at = _INF
            if self._timer_g:
                self._start_retx(now)
            self._guard(now, self._completed_guard)
        elif state == S.PROCEEDING:
            if self._invite:  # an INVITE client stops A and B on a 1xx
                self._retx_at = _INF
                self._end_at = _INF
        elif state == S.ACCEPTED:
            self._retx_at = _INF
            self._guard(now, timers.timer_m)  # Timer M (client) = Timer L (server)
        elif state == S.CONFIRMED:
            self._retx_at = _INF
            self._guard(now, timers.timer_i(self._reliable))
        elif state == S.TERMINATED:
            self._terminate()

    def _start_retx(self, now: float) -> None:
        if not self._reliable:
            t1 = self._timers.t1
            self._retx_interval = t1
            self._retx_at = now + t1

    def _rearm_retx(self, action: Action, now: float) -> None:
        interval = self._retx_interval
        if action == A.RETX_DOUBLE:
            interval = 2 * interval
        elif action == A.RETX_CAPPED:
            interval = min(2 * interval, self._timers.t2)
        else:
            interval = self._timers.t2
        self._retx_interval = interval
        at = self._retx_at + interval
        if at <= now:  # late (a stalled loop): no burst, one retransmission per interval
            at = now + interval
        self._retx_at = at

    def _guard(self, now: float, interval: float) -> None:
        """Arm the state's guard timer; zero ends the transaction at once (rule 5)."""
        if interval > 0:
            self._end_at = now + interval
        else:
            self._terminate()

    def _terminate(self) -> None:
        self.state = S.TERMINATED
        self._retx_at = _INF
        self._end_at = _INF


def _status_input(status: int, base: Input) -> int:
    """``base`` (the 1xx input) + 0, 1 or 2 by status class."""
    if status < 200:
        if status < 100:
            raise LocalProtocolError(f"status {status} is not a SIP status")
        return base
    return base + 1 if status < 300 else base + 2


# ------------------------------------------------------------------ client


class ClientTransaction(_Transaction):
    """An INVITE (§17.1.1) or non-INVITE (§17.1.2) client transaction, by request method.

    Attributes:
        key: ``(branch, method)``; equals :func:`client_key` of its responses.
        request: the request this transaction sends.
        state: Calling (INVITE) or Trying (other methods) to begin with.
        outgoing: bytes to send to the request's destination; the caller drains it.
        retransmissions: request retransmissions made, re-sent ACKs included.
        ack: the ACK built for a 300-699 (INVITE only), else None.
        last_response: the last response passed to the TU (None once slimmed).
        last_status: its status (kept when slimmed).
        failure: ``"B"`` / ``"F"`` (timed out) or ``"transport"``; else None.
    """

    __slots__ = ("_ack_data", "_cseq", "_from_tag", "ack", "key", "last_response")

    def __init__(
        self, request: Request, *, reliable: bool, timers: TimerConfig, now: float
    ) -> None:
        """Create the transaction; nothing is sent before :meth:`start`.

        Raises:
            LocalProtocolError: ``request`` is an ACK (an ACK has no client
                transaction) or its top Via has no branch.
        """
        method = request.method
        if method == "ACK":
            raise LocalProtocolError("an ACK does not create a client transaction")
        try:
            branch = request.via.branch
        except ParseError as exc:
            raise LocalProtocolError(f"request without a usable Via: {exc.reason}") from exc
        if not branch:
            raise LocalProtocolError("the top Via of a request needs a branch")
        super().__init__(request, reliable, timers, now, True)
        self.key: tuple[str, str] = (branch, method)
        self.ack: Request | None = None
        self.last_response: Response | None = None
        self._ack_data: bytes = b""
        self._from_tag: str | None = None
        self._cseq: int = 0

    def slim(self) -> None:
        req = self._request
        if req is None or not self._retx_data:
            return  # slimmed already, or never started (no bytes to parse again)
        self._call_id = req.call_id
        self._from_tag = req.from_tag
        self._cseq = req.cseq.seq
        self._request_data = self._retx_data
        self._request = None
        self.last_response = None
        self.ack = None

    def answers(self, response: Response) -> bool:
        """Whether ``response`` (matched by :func:`client_key`) has the request's Call-ID,
        From tag and CSeq number: a branch alone may be reused by a faulty peer.

        Raises:
            ParseError: the response's CSeq or From is malformed.
        """
        req = self._request
        if req is not None:
            return (response.call_id == req.call_id and response.from_tag == req.from_tag
                    and response.cseq.seq == req.cseq.seq)
        return (response.call_id == self._call_id and response.from_tag == self._from_tag
                and response.cseq.seq == self._cseq)

    def start(self, now: float) -> None:
        """Serialize the request into ``outgoing`` and arm A and B, or E and F.

        Raises:
            LocalProtocolError: the transaction was started already.
        """
        if self._retx_data:
            raise LocalProtocolError("client transaction started twice")
        data = self.request.to_bytes()
        self._retx_data = data
        self._request_data = data
        self.outgoing.append(data)
        if self.state != S.TERMINATED:
            self._start_retx(now)
            timers = self._timers
            self._end_at = now + (timers.timer_b if self._invite else timers.timer_f)

    def receive(self, response: Response, now: float) -> Response | None:
        """Feed a response that matched this transaction (see :func:`client_key`).

        Returns:
            ``response`` when the TU must see it (a 1xx, the first final, and,
            RFC 6026, every 2xx to an INVITE: the TU ACKs each); None when it
            was absorbed (a retransmitted final; for a 300-699 to an INVITE the
            ACK is queued again).

        Raises:
            LocalProtocolError: the status is below 100.
        """
        nxt, action = self._table[self.state * _N + _status_input(response.status, In.RECV_1XX)]
        if action == A.NONE:
            return None
        if action == A.RESEND_ACK:
            self.outgoing.append(self._ack_data)
            self.retransmissions += 1
            return None
        if action == A.ACK_TO_TU:
            ack = make_ack_for_non2xx(self.request, response)
            self.ack = ack
            self._ack_data = ack.to_bytes()
            self.outgoing.append(self._ack_data)
        self.last_response = response
        self.last_status = response.status
        if nxt != self.state:
            self._enter(nxt, now)
        return response

    def __repr__(self) -> str:
        return f"<ClientTransaction {self.key[1]} {self.key[0]} {self.state.name}>"


# ------------------------------------------------------------------ server


class ServerTransaction(_Transaction):
    """An INVITE (§17.2.1) or non-INVITE (§17.2.2) server transaction, by request method.

    Attributes:
        key: :func:`server_key` of the request.
        request: the request that created the transaction.
        state: Proceeding (INVITE) or Trying (other methods) to begin with.
        outgoing: bytes to send back to the request's source (§18.2.2); the caller drains it.
        retransmissions: responses re-sent (for a retransmitted request, on
            Timer G, and the TU's 2xx retransmissions in Accepted).
        last_response: the last response the TU sent (None once slimmed).
        last_status: its status (kept when slimmed; 0 before any).
        failure: ``"H"`` (no ACK came) or ``"transport"``; else None.
    """

    __slots__ = ("key", "last_response")

    def __init__(
        self, request: Request, *, reliable: bool, timers: TimerConfig, now: float
    ) -> None:
        """Create the transaction for a new request (the TU handles the request itself).

        Raises:
            LocalProtocolError: ``request`` is an ACK (an ACK never creates one).
            ParseError: the request has no usable Via (see :func:`server_key`).
        """
        if request.method == "ACK":
            raise LocalProtocolError("an ACK does not create a server transaction")
        super().__init__(request, reliable, timers, now, False)
        self.key: tuple[str, ...] = server_key(request)
        self.last_response: Response | None = None

    def slim(self) -> None:
        req = self._request
        if req is None:
            return
        self._request_data = req.to_bytes()  # as stamped (received/rport), for ``request``
        try:
            self._call_id = req.call_id
        except ParseError:  # a request answered 400 for having none
            self._call_id = ""
        self._request = None
        self.last_response = None

    def send_response(self, response: Response, now: float) -> None:
        """Queue a response from the TU and move as the figure says.

        A 2xx to an INVITE goes to Accepted (Timer L); the TU retransmits it
        itself (§13.3.1.4), through this method, while in Accepted.  A 300-699
        to an INVITE goes to Completed (Timer G when unreliable, and H); a final
        response to another method goes to Completed (Timer J).

        Raises:
            LocalProtocolError: a response after a final one (other than a 2xx
                in Accepted), on a terminated transaction, or a status below 100.
        """
        state = self.state
        nxt, action = self._table[state * _N + _status_input(response.status, In.SEND_1XX)]
        if action == A.ERROR:
            raise LocalProtocolError(
                f"cannot send {response.status} to {self.method} in {state.name}"
            )
        data = response.to_bytes()
        self._retx_data = data
        self.last_response = response
        self.last_status = response.status
        self.outgoing.append(data)
        if state == S.ACCEPTED:
            self.retransmissions += 1
        if nxt != state:
            self._enter(nxt, now)

    def receive_request(self, request: Request, now: float) -> bool:
        """Feed a request that matched this transaction (see :func:`server_key`).

        A retransmission of the request re-sends the last response (if any) in
        Proceeding and Completed, and is absorbed silently in Trying, Confirmed
        and Accepted (RFC 6026).  An ACK moves Completed to Confirmed (Timer I).

        Returns:
            True only for an ACK in Accepted: the ACK of a 2xx, which the TU
            must see.  False when the transaction absorbed the request.

        Raises:
            LocalProtocolError: the request is neither of the transaction's
                method nor an ACK to an INVITE transaction.
        """
        method = request.method
        if method == self.method:
            inp = In.REQUEST
        elif method == "ACK" and self._invite:
            inp = In.ACK
        else:
            raise LocalProtocolError(f"{method} is not for a {self.method} transaction")
        nxt, action = self._table[self.state * _N + inp]
        if action == A.RESEND and self._retx_data:
            self.outgoing.append(self._retx_data)
            self.retransmissions += 1
        if nxt != self.state:
            self._enter(nxt, now)
        return action == A.TO_TU

    def __repr__(self) -> str:
        return f"<ServerTransaction {self.method} {self.key[0]} {self.state.name}>"
