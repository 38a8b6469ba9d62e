"""Dialogs (RFC 3261 §12): identity, route set, remote target, CSeq order, INVITE overlap.

Theory of operation
===================

A :class:`Dialog` is the state a UA keeps for one peer-to-peer relationship:
the dialog ID, both sequence numbers, the local and remote URIs, the remote
target, the route set, the "secure" flag and a state (EARLY, CONFIRMED,
TERMINATED).  It is plain data plus a few pure methods.  It sends nothing,
reads no clock and draws no random number: tags, Call-IDs, the first CSeq
number of a UAS dialog and the Retry-After value are the caller's to choose.
The UA layer matches messages to dialogs by :attr:`Dialog.id`, then calls
exactly one method per message:

================================  ==========================================
the UA ...                        calls
================================  ==========================================
gets a 1xx-with-tag/2xx, no       :func:`uac_dialog` (each To tag of a forked
matching dialog                   INVITE is a dialog of its own, §13.2.2.4)
sends a 1xx-with-tag/2xx to a     :func:`uas_dialog`
dialog-creating request
sends a request in the dialog     :meth:`Dialog.create_request`
receives a request in it          :meth:`Dialog.receive_request`
receives a response in it         :meth:`Dialog.receive_response`
sends a response in it            :meth:`Dialog.response_sent`
accepts a re-INVITE (sends 2xx)   :meth:`Dialog.refresh_target` (the request)
gives up (64*T1 after a fork's    :meth:`Dialog.terminate`
2xx, a transaction timeout ...)
================================  ==========================================

Rules
-----

1. **Identity.**  A dialog ID is ``(Call-ID, local tag, remote tag)``; a tag
   that is absent (an RFC 2543 peer) is the empty string.  A UAS reads it from
   a request as (Call-ID, To tag, From tag), a UAC from a response as
   (Call-ID, From tag, To tag) (§12).
2. **Creation.**  Only a 101-199 with a To tag or a 2xx to INVITE, or a 2xx to
   SUBSCRIBE, REFER or NOTIFY, creates a dialog: EARLY for a 1xx, CONFIRMED
   for a 2xx (§12.1).  The UAC takes the route set from the response's
   Record-Route *reversed*, the UAS from the request's Record-Route *in
   order*; the remote target is the URI of the peer's single Contact, which
   must be a SIP or SIPS URI (§12.1.1, §12.1.2).  "secure" is true when the
   Request-URI was SIPS and the request went over TLS, and never changes.
3. **Route set.**  It is fixed at creation.  The one exception: the 2xx that
   confirms an EARLY UAC dialog recomputes it from its own Record-Route
   (§13.2.2.4, for RFC 2543 proxies that only record-route 2xx); nothing else
   of the early state is recomputed.
4. **Sending** (§12.2.1.1).  To is the remote URI with the remote tag, From the
   local URI with the local tag, Call-ID the dialog's, Max-Forwards 70.  With
   an empty route set the Request-URI is the remote target and there is no
   Route.  If the first route has ``lr`` (loose routing) the Request-URI is the
   remote target and Route is the route set.  Otherwise (strict routing) the
   Request-URI is the first route's URI, minus what a Request-URI may not carry
   (``method``, URI headers), and Route is the rest of the route set followed
   by the remote target.  Via and Contact are the UA's to add.
5. **Local CSeq.**  Each request but ACK and CANCEL takes ``local_seq + 1``
   (or the ``cseq=`` passed, which must be given while ``local_seq`` is empty);
   ``local_seq`` then moves up to it and never moves down.  ACK and CANCEL
   carry the number of the INVITE they belong to: ``cseq=``, or by default the
   last INVITE this side sent.
6. **Receiving** (§12.2.2), checks in this order, each answered by a
   :class:`Rejection` and leaving the dialog untouched: a malformed Call-ID,
   To, From or CSeq gives 400; a terminated dialog gives 481; a CSeq method
   unlike the request's gives 400; a CSeq number not above ``remote_seq`` gives 500 (the RFC
   demands this for lower numbers; an equal one is a retransmission the
   transaction layer let through, such as an INVITE repeated after its 2xx,
   and is refused the same way); an INVITE while our answer to an earlier
   INVITE is pending gives 500 with Retry-After (§14.2); an INVITE while our
   own INVITE is pending gives 491 (glare, §14.2); a target refresh with an
   unusable Contact gives 400.  ACK and CANCEL are never refused nor counted.
   A request that passes changes everything at once: ``remote_seq``, the
   pending-INVITE flag, the remote target (non-INVITE target refresh
   requests: UPDATE, SUBSCRIBE, NOTIFY, REFER) and, for BYE, the state.
7. **Target refresh.**  A Contact in a target refresh request or in a 2xx to
   one replaces the remote target; a request or response without Contact
   leaves it.  For an incoming re-INVITE the refresh waits until the UA
   accepts it: the UA calls :meth:`Dialog.refresh_target` with the request
   when it sends the 2xx.  In a secure dialog a non-SIPS Contact is refused
   (the sender MUST use SIPS there, §12.2.1.1), so "secure" cannot be lost.
8. **INVITE overlap** (§14.1).  ``invite_client_pending`` is set when this
   side creates an INVITE (or a UAC dialog is created EARLY) and cleared by a
   final response to that INVITE; ``invite_server_pending`` is set when an
   INVITE is accepted by :meth:`Dialog.receive_request` (or a UAS dialog is
   created EARLY) and cleared by :meth:`Dialog.response_sent` with a final
   response to it.  While either is set, creating an INVITE is refused.
9. **State** changes only through :data:`TRANSITIONS`, below.  A 481 or 408
   for a request in the dialog (not for a CANCEL, whose 481 is about a
   transaction) ends it (§12.2.1.2); a non-2xx final to the INVITE that
   created an early dialog ends it too, whatever the response's To tag, since
   a proxy may have made it (§12.3), so the UA hands that response to every
   early dialog of the INVITE.  Early dialogs of other forks still open 64*T1
   after the first 2xx are the UA's to end (:meth:`Dialog.terminate`).
10. **Errors.**  :class:`ParseError`: the peer sent something a dialog cannot
    use (no To tag or Contact in a dialog-creating response, ``Contact: *``,
    a tel: remote target ...).  :class:`LocalProtocolError`: the caller asked
    for something the protocol forbids or passed a message of another dialog.
    :meth:`Dialog.receive_request` never raises ParseError: it answers with a
    Rejection instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from sipload.sip.checks import Rejection
from sipload.sip.errors import LocalProtocolError, ParseError
from sipload.sip.grammar import Params
from sipload.sip.headers import MAX_CSEQ, NameAddress
from sipload.sip.message import Message, Request, Response
from sipload.sip.uri import SipUri, Uri

DialogId = tuple[str, str, str]

DIALOG_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})
"""Methods whose 2xx creates a dialog (RFC 3261 §12.1, RFC 6665 §4, RFC 3515 §2.4.4)."""

TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
"""Requests whose Contact replaces the remote target (§12.2, RFC 3311, RFC 6665, RFC 3515)."""

MAX_FORWARDS = 70

_NO_ROUTES: list[NameAddress] = []
"""The route set of every dialog without one: one list, never mutated (rule 3)."""
_MAX_FORWARDS_TEXT = str(MAX_FORWARDS)


class DialogState(IntEnum):
    """The states of §12: early (1xx), confirmed (2xx), and gone."""

    EARLY = 0
    CONFIRMED = 1
    TERMINATED = 2


class DialogEvent(IntEnum):
    """What moves a dialog between states: the columns of :data:`TRANSITIONS`."""

    CONFIRM = 0  # a 2xx to an INVITE of the dialog, sent or received (§13.2.2.4, §13.3.1.4)
    REJECT = 1  # a 300-699 to that INVITE (§12.3, §13.2.2.3; a re-INVITE's leaves it, §14.1)
    GONE = 2  # a 481 or 408 to a request in the dialog (§12.2.1.2)
    BYE = 3  # a BYE accepted, or a 2xx to ours (§15)
    TERMINATE = 4  # the UA decides (timeouts, 64*T1 after a fork's first 2xx, §13.2.2.4)


_E, _C, _T = DialogState.EARLY, DialogState.CONFIRMED, DialogState.TERMINATED

TRANSITIONS: dict[tuple[DialogState, DialogEvent], DialogState] = {
    #       RFC 3261 §12:  1xx+tag -> EARLY --2xx--> CONFIRMED --BYE--> TERMINATED
    #                                   \--3xx-6xx, 481, 408, BYE--------/
    (_E, DialogEvent.CONFIRM): _C,
    (_E, DialogEvent.REJECT): _T,
    (_E, DialogEvent.GONE): _T,
    (_E, DialogEvent.BYE): _T,
    (_E, DialogEvent.TERMINATE): _T,
    (_C, DialogEvent.CONFIRM): _C,
    (_C, DialogEvent.REJECT): _C,
    (_C, DialogEvent.GONE): _T,
    (_C, DialogEvent.BYE): _T,
    (_C, DialogEvent.TERMINATE): _T,
    (_T, DialogEvent.CONFIRM): _T,
    (_T, DialogEvent.REJECT): _T,
    (_T, DialogEvent.GONE): _T,
    (_T, DialogEvent.BYE): _T,
    (_T, DialogEvent.TERMINATE): _T,
}
"""Every (state, event) pair and the state it leads to; TERMINATED absorbs everything."""


@dataclass(slots=True, init=False)
class Dialog:
    """The dialog state of §12, from this UA's point of view.

    Attributes:
        call_id: the Call-ID shared by every message of the dialog.
        local_tag: our tag ("" if none, RFC 2543).
        remote_tag: the peer's tag ("" if none, RFC 2543).
        local_uri: the From of our requests, carrying our tag.
        remote_uri: the To of our requests, carrying the peer's tag.
        remote_target: where our requests go: the URI of the peer's Contact.
        route_set: the proxies our requests traverse, first hop first.
        local_seq: the CSeq number of our last request (None before the first).
        remote_seq: the highest CSeq number accepted from the peer (None before).
        secure: the dialog was set up over TLS with a SIPS Request-URI.
        state: EARLY, CONFIRMED or TERMINATED.
        invite_client_pending: an INVITE we sent awaits its final response.
        invite_server_pending: an INVITE we received awaits our final response.
        local_invite_seq: the CSeq number of the last INVITE we sent (for ACK, CANCEL).
        remote_invite_seq: the CSeq number of the last INVITE we accepted.
    """

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddress
    remote_uri: NameAddress
    remote_target: Uri
    route_set: list[NameAddress]
    local_seq: int | None
    remote_seq: int | None
    secure: bool
    state: DialogState
    invite_client_pending: bool = False
    invite_server_pending: bool = False
    local_invite_seq: int | None = None
    remote_invite_seq: int | None = None
    _texts: tuple[object, object, object, str, str, str] | None = field(
        default=None, repr=False, compare=False)
    _target_src: tuple[str, Uri] | None = field(default=None, repr=False, compare=False)

    def __init__(self, call_id: str, local_tag: str, remote_tag: str, local_uri: NameAddress,
                 remote_uri: NameAddress, remote_target: Uri, route_set: list[NameAddress],
                 local_seq: int | None, remote_seq: int | None, secure: bool,
                 state: DialogState, invite_client_pending: bool = False,
                 invite_server_pending: bool = False, local_invite_seq: int | None = None,
                 remote_invite_seq: int | None = None,
                 _texts: tuple[object, object, object, str, str, str] | None = None,
                 _target_src: tuple[str, Uri] | None = None) -> None:
        # Written out so that mypyc compiles it (the decorator's would run interpreted).
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = local_uri
        self.remote_uri = remote_uri
        self.remote_target = remote_target
        self.route_set = route_set
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.secure = secure
        self.state = state
        self.invite_client_pending = invite_client_pending
        self.invite_server_pending = invite_server_pending
        self.local_invite_seq = local_invite_seq
        self.remote_invite_seq = remote_invite_seq
        self._texts = _texts
        self._target_src = _target_src

    @property
    def id(self) -> DialogId:
        """``(call_id, local_tag, remote_tag)``, as :func:`dialog_id_of_request` and
        :func:`dialog_id_of_response` compute it from messages."""
        return (self.call_id, self.local_tag, self.remote_tag)

    # ------------------------------------------------------------------ state

    def _on(self, event: DialogEvent) -> None:
        self.state = TRANSITIONS[(self.state, event)]

    def terminate(self) -> None:
        """End the dialog (the UA gave up on it or sent/received what ends it)."""
        self._on(DialogEvent.TERMINATE)

    def refresh_target(self, msg: Message) -> None:
        """Replace the remote target with the URI of ``msg``'s Contact, if it has one.

        Call it with an incoming re-INVITE when sending the 2xx that accepts it
        (:meth:`receive_request` has already refused an unusable Contact); every
        other target refresh is applied by the receive methods.

        Raises:
            ParseError: ``Contact: *``, several Contacts, a URI that is not SIP
                or SIPS, or a non-SIPS URI in a secure dialog; the target stays.
        """
        target = _target_of(msg, self.secure)
        if target is not None:
            self.remote_target = target

    # ------------------------------------------------------------------ UAC side

    def create_request(self, method: str, *, cseq: int | None = None) -> Request:
        """Build a request in this dialog (§12.2.1.1), without Via and Contact.

        Args:
            method: the method; ``ACK`` (for a 2xx) and ``CANCEL`` reuse an
                INVITE's number and leave ``local_seq`` alone.
            cseq: the CSeq number to use instead of the next one.  Required while
                ``local_seq`` is empty (a UAS dialog's first request); for ACK
                and CANCEL it defaults to the last INVITE this side sent.  An
                explicit number below ``local_seq`` is sent as asked (a
                conformance test may want that) but does not lower it.

        Returns:
            The request with Request-URI, Route, Max-Forwards, To, From,
            Call-ID and CSeq set; ``local_seq`` (and the INVITE flags) updated.

        Raises:
            LocalProtocolError: the dialog is terminated (only ACK is still
                allowed); an INVITE while another INVITE transaction is in
                progress (§14.1); no number to use; a number above 2**31-1.
        """
        ack_or_cancel = method in ("ACK", "CANCEL")
        if self.state == DialogState.TERMINATED and method != "ACK":
            raise LocalProtocolError(f"cannot send {method} in a terminated dialog")
        number: int | None
        if ack_or_cancel:
            number = cseq if cseq is not None else self.local_invite_seq
        else:
            if method == "INVITE" and (self.invite_client_pending or self.invite_server_pending):
                raise LocalProtocolError("an INVITE transaction is in progress (§14.1)")
            number = cseq if cseq is not None else (
                None if self.local_seq is None else self.local_seq + 1
            )
        if number is None:
            raise LocalProtocolError(f"no CSeq number for {method}: pass cseq=")
        if not 0 <= number <= MAX_CSEQ:
            raise LocalProtocolError(f"CSeq number {number} out of range (§8.1.1.5)")

        routes = self.route_set
        headers: list[tuple[str, str, str]] = []
        to_text, from_text, target_text = self._texts_now()
        target: Uri | str
        if not routes:
            target = target_text
        elif _is_loose(routes[0].uri):
            target = target_text
            headers.extend(("route", "Route", str(r)) for r in routes)
        else:
            target = _as_request_uri(routes[0].uri)
            headers.extend(("route", "Route", str(r)) for r in routes[1:])
            headers.append(("route", "Route", f"<{self.remote_target}>"))
        headers.append(("max-forwards", "Max-Forwards", _MAX_FORWARDS_TEXT))
        headers.append(("to", "To", to_text))
        headers.append(("from", "From", from_text))
        headers.append(("call-id", "Call-ID", self.call_id))
        headers.append(("cseq", "CSeq", f"{number} {method}"))
        req = Request(method, target, headers)

        if not ack_or_cancel:
            if self.local_seq is None or number > self.local_seq:
                self.local_seq = number
            if method == "INVITE":
                self.invite_client_pending = True
                self.local_invite_seq = number
        return req

    def forget_texts(self) -> None:
        """Drop the cached texts of :meth:`_texts_now` (a call gone quiet: ~0.3 KiB it holds
        for its next request, written again when one comes)."""
        self._texts = None

    def _texts_now(self) -> tuple[str, str, str]:
        """To, From and the remote target's Request-URI as written in our requests.

        Cached while the dialog keeps the same address objects (they are replaced,
        never changed in place, when a target refresh or a route update comes).
        """
        cached = self._texts
        if (cached is not None and cached[0] is self.remote_uri
                and cached[1] is self.local_uri and cached[2] is self.remote_target):
            return cached[3], cached[4], cached[5]
        to_text, from_text = str(self.remote_uri), str(self.local_uri)
        target_text = str(_as_request_uri(self.remote_target))
        self._texts = (self.remote_uri, self.local_uri, self.remote_target, to_text, from_text,
                       target_text)
        return to_text, from_text, target_text

    def ack_bytes(self, number: int, via: str) -> bytes:
        """``create_request("ACK", cseq=number)`` with ``via`` as its top Via, serialized:
        the same bytes, written as text (SIPp's way) rather than through a
        :class:`Request` (the UA's own ACK for a 2xx needs only its bytes).  Nothing is
        kept: a dialog writes one ACK per INVITE, and a held call's memory counts.

        Raises:
            LocalProtocolError: ``number`` is out of range (§8.1.1.5).
        """
        if not 0 <= number <= MAX_CSEQ:
            raise LocalProtocolError(f"CSeq number {number} out of range (§8.1.1.5)")
        to_text, from_text, target = self._texts_now()
        routes = self.route_set
        lines = ""
        if routes:
            if _is_loose(routes[0].uri):
                lines = "".join(f"Route: {r}\r\n" for r in routes)
            else:
                target = str(_as_request_uri(routes[0].uri))
                lines = "".join(f"Route: {r}\r\n" for r in routes[1:])
                lines += f"Route: <{self.remote_target}>\r\n"
        return (f"ACK {target} SIP/2.0\r\nVia: {via}\r\n{lines}Max-Forwards: "
                f"{_MAX_FORWARDS_TEXT}\r\nTo: {to_text}\r\nFrom: {from_text}\r\n"
                f"Call-ID: {self.call_id}\r\nCSeq: {number} ACK\r\n"
                "Content-Length: 0\r\n\r\n").encode("utf-8", "surrogateescape")

    def hop_text(self) -> str:
        """What decides where :meth:`create_request`'s requests go: the text of their first
        Route, or their Request-URI when they carry no Route (RFC 3261 §8.1.2)."""
        routes = self.route_set
        if not routes:
            return self._texts_now()[2]
        if _is_loose(routes[0].uri):
            return str(routes[0])
        return str(routes[1]) if len(routes) > 1 else f"<{self.remote_target}>"

    def receive_response(self, resp: Response) -> None:
        """Apply a response to a request this side sent in the dialog.

        A 2xx to the INVITE confirms an early dialog and recomputes its route
        set (§13.2.2.4); a 2xx to a target refresh request refreshes the remote
        target (§12.2.1.2); a 2xx to BYE, a 481 or a 408 ends the dialog; a
        300-699 to the INVITE that created an early dialog ends it, whatever
        its To tag.  A final response to our pending INVITE clears
        ``invite_client_pending``.  A 100 without the peer's tag is ignored.

        Raises:
            ParseError: the response is malformed, or a 2xx's Contact is not a
                usable target; nothing is changed.
            LocalProtocolError: the response is of another dialog (another
                Call-ID or From tag, or another fork's To tag).
        """
        call_id, local_tag, remote_tag = dialog_id_of_response(resp)
        if call_id != self.call_id or local_tag != self.local_tag:
            raise LocalProtocolError("response of another dialog")
        status = resp.status
        cseq = resp.cseq
        method = cseq.method
        of_our_invite = method == "INVITE" and cseq.seq == self.local_invite_seq
        if remote_tag != self.remote_tag:
            if status >= 300 and of_our_invite and self.state == DialogState.EARLY:
                self.invite_client_pending = False
                self._on(DialogEvent.REJECT)
                return
            if status == 100:
                return
            raise LocalProtocolError(f"response of another dialog (To tag {remote_tag!r})")
        if status < 200:
            return
        if status < 300:
            if method == "INVITE" and not of_our_invite:
                return  # a late 2xx retransmission for an older INVITE: nothing new
            routes: list[NameAddress] | None = None
            if method == "INVITE" and self.state == DialogState.EARLY:
                routes = [r.copy() for r in reversed(resp.record_routes)]
            target = self._target_from(resp) if method in TARGET_REFRESH_METHODS else None
            if routes is not None:
                self.route_set = routes or _NO_ROUTES
            if target is not None:
                self.remote_target = target
            if method == "INVITE":
                self.invite_client_pending = False
                self._on(DialogEvent.CONFIRM)
                self._target_src = None  # a held call keeps no text it will not compare
            elif method == "BYE":
                self._on(DialogEvent.BYE)
            return
        if of_our_invite:
            self.invite_client_pending = False
        if status in (481, 408) and method != "CANCEL":
            self._on(DialogEvent.GONE)
        elif of_our_invite:
            self._on(DialogEvent.REJECT)

    def _target_from(self, msg: Message) -> Uri | None:
        """``_target_of(msg, self.secure)``, without parsing again a Contact written as
        the one the remote target came from (a 2xx repeats its 1xx's Contact): then the
        remote target itself, which is replaced, never changed in place."""
        src = self._target_src
        if src is not None and src[1] is self.remote_target:
            texts = msg.get_all("contact")
            if len(texts) == 1 and texts[0] == src[0]:
                return src[1]
        target = _target_of(msg, self.secure)
        if target is not None:
            self._target_src = _source_of(msg, target)
        return target

    # ------------------------------------------------------------------ UAS side

    def receive_request(self, req: Request, *, retry_after: int = 5) -> Rejection | None:
        """Check a request of the peer against the dialog, and apply it (§12.2.2).

        Args:
            req: a request whose dialog ID (:func:`dialog_id_of_request`) is ours.
            retry_after: seconds for the Retry-After of a 500 to an overlapping
                INVITE; §14.2 wants it random in 0-10, so the caller draws it.

        Returns:
            None if the request may be processed (its state changes are then
            made), or the response to send instead (rule 6 of the module).

        Raises:
            LocalProtocolError: the request belongs to another dialog.
        """
        try:
            rid = dialog_id_of_request(req)
            cseq = req.cseq
        except ParseError as e:
            return Rejection(e.status, e.reason)
        if rid != self.id:
            raise LocalProtocolError("request of another dialog")
        method = req.method
        if method in ("ACK", "CANCEL"):
            return None
        if self.state == DialogState.TERMINATED:
            return Rejection(481, "Call/Transaction Does Not Exist")
        if cseq.method != method:
            return Rejection(400, f"CSeq method {cseq.method} is not {method}")
        seq = cseq.seq
        if self.remote_seq is not None and seq <= self.remote_seq:
            return Rejection(500, f"CSeq {seq} out of order (last {self.remote_seq})")
        target: Uri | None = None
        if method == "INVITE":
            if self.invite_server_pending:
                return Rejection(
                    500, "Earlier INVITE Pending", (("Retry-After", str(retry_after)),)
                )
            if self.invite_client_pending:
                return Rejection(491, "Request Pending")
        if method in TARGET_REFRESH_METHODS:  # checked now, for INVITE applied on its 2xx
            try:
                target = _target_of(req, self.secure)
            except ParseError as e:
                return Rejection(e.status, e.reason)
        self.remote_seq = seq
        if method == "INVITE":
            self.invite_server_pending = True
            self.remote_invite_seq = seq
        elif target is not None:
            self.remote_target = target
        if method == "BYE":
            self._on(DialogEvent.BYE)
        return None

    def response_sent(self, resp: Response) -> None:
        """Note a response this side sent to a request of the peer in the dialog.

        A final response to the pending INVITE clears
        ``invite_server_pending``; a 2xx to it confirms an early dialog, a
        300-699 ends an early one.  (The target refresh of an accepted
        re-INVITE is :meth:`refresh_target`'s, since the response does not
        carry the request's Contact.)

        Raises:
            LocalProtocolError: the response is of another dialog.
        """
        if (resp.call_id, resp.to_tag or "", resp.from_tag or "") != self.id:
            raise LocalProtocolError("response of another dialog")
        cseq = resp.cseq
        if resp.status < 200 or cseq.method != "INVITE" or cseq.seq != self.remote_invite_seq:
            return
        self.invite_server_pending = False
        if resp.status < 300:
            self._on(DialogEvent.CONFIRM)
        else:
            self._on(DialogEvent.REJECT)


# ---------------------------------------------------------------------------- dialog IDs


def dialog_id_of_request(req: Request) -> DialogId:
    """A request's dialog ID as its UAS sees it: (Call-ID, To tag, From tag).

    Raises:
        ParseError: a malformed or missing Call-ID, To or From.
    """
    return (req.call_id, req.to_tag or "", req.from_tag or "")


def dialog_id_of_response(resp: Response) -> DialogId:
    """A response's dialog ID as its UAC sees it: (Call-ID, From tag, To tag).

    Raises:
        ParseError: a malformed or missing Call-ID, To or From.
    """
    return (resp.call_id, resp.from_tag or "", resp.to_tag or "")


# ---------------------------------------------------------------------------- creation


def creates_dialog(request: Request, response: Response) -> bool:
    """Whether ``response`` to ``request`` establishes a dialog (§12.1, rule 2).

    A 2xx to a dialog-creating request counts even without a To tag (it is
    then malformed, and :func:`uac_dialog` says so).
    """
    status = response.status
    if 200 <= status < 300:
        return request.method in DIALOG_METHODS
    return request.method == "INVITE" and 101 <= status < 200 and response.to_tag is not None


def uac_dialog(request: Request, response: Response, *, secure: bool | None = None) -> Dialog:
    """The dialog a UAC builds from its request and a response creating one (§12.1.2).

    Args:
        request: the INVITE (SUBSCRIBE, REFER) this side sent.
        response: a 101-199 with a To tag (EARLY; INVITE only) or a 2xx
            (CONFIRMED).  Each To tag of a forked INVITE gives its own dialog.
        secure: whether the request went over TLS; the dialog is secure when
            it did and the Request-URI is SIPS.  None trusts the scheme alone.

    Returns:
        The dialog: route set = the response's Record-Route reversed, remote
        target = its Contact, ``local_seq`` = the request's CSeq number.

    Raises:
        ParseError: the response has no To tag, no Contact, or an unusable one.
        LocalProtocolError: the response does not answer the request, or
            creates no dialog (see :func:`creates_dialog`).
    """
    early = _check_creates(request, response)
    method = request.method
    to = response.to
    remote_tag = to.tag
    if remote_tag is None:
        if early:
            raise LocalProtocolError("a 1xx without To tag creates no dialog (§12.1)")
        raise ParseError("dialog-creating 2xx without a To tag")
    is_secure = _secure(request, secure)
    target = _target_of(response, is_secure)
    if target is None:
        raise ParseError(f"dialog-creating {response.status} without a Contact")
    frm = request.from_
    local_tag = frm.tag or ""
    seq = request.cseq.seq
    invite = method == "INVITE"
    dialog = Dialog(
        call_id=request.call_id,
        local_tag=local_tag,
        remote_tag=remote_tag,
        local_uri=_tagged(frm, local_tag),
        remote_uri=_tagged(request.to, remote_tag),
        remote_target=target,
        route_set=[r.copy() for r in reversed(response.record_routes)] or _NO_ROUTES,
        local_seq=seq,
        remote_seq=None,
        secure=is_secure,
        state=DialogState.EARLY if early else DialogState.CONFIRMED,
        invite_client_pending=invite and early,
        local_invite_seq=seq if invite else None,
    )
    dialog._target_src = _source_of(response, target)
    return dialog


def uas_dialog(request: Request, response: Response, *, secure: bool | None = None) -> Dialog:
    """The dialog a UAS builds from a request and its own response creating one (§12.1.1).

    Args:
        request: the INVITE (SUBSCRIBE, REFER, NOTIFY) received.
        response: our 101-199 (EARLY; INVITE only) or 2xx (CONFIRMED), with
            our To tag.
        secure: whether the request came over TLS (see :func:`uac_dialog`).

    Returns:
        The dialog: route set = the request's Record-Route in order, remote
        target = its Contact, ``remote_seq`` = its CSeq number.

    Raises:
        ParseError: the request has no Contact or an unusable one (status 400,
            to answer with instead of the dialog-creating response).
        LocalProtocolError: the response does not answer the request, has no
            To tag, or creates no dialog.
    """
    early = _check_creates(request, response)
    method = request.method
    local_tag = response.to.tag
    if local_tag is None:
        raise LocalProtocolError("a dialog-creating response needs our To tag (§8.2.6.2)")
    is_secure = _secure(request, secure)
    target = _target_of(request, is_secure)
    if target is None:
        raise ParseError(f"{method} creating a dialog without a Contact")
    frm = request.from_
    seq = request.cseq.seq
    invite = method == "INVITE"
    return Dialog(
        call_id=request.call_id,
        local_tag=local_tag,
        remote_tag=frm.tag or "",
        local_uri=_tagged(request.to, local_tag),
        remote_uri=frm.copy(),
        remote_target=target,
        route_set=[r.copy() for r in request.record_routes] or _NO_ROUTES,
        local_seq=None,
        remote_seq=seq,
        secure=is_secure,
        state=DialogState.EARLY if early else DialogState.CONFIRMED,
        invite_server_pending=invite and early,
        remote_invite_seq=seq if invite else None,
    )


# ---------------------------------------------------------------------------- helpers


def _check_creates(request: Request, response: Response) -> bool:
    """Refuse a pair that creates no dialog (rule 2); True when the dialog is early."""
    _check_pair(request, response)
    status = response.status
    method = request.method
    early = status < 200
    if not (200 <= status < 300 and method in DIALOG_METHODS) and not (
        early and method == "INVITE" and status > 100
    ):
        raise LocalProtocolError(f"a {status} to {method} creates no dialog")
    return early


def _check_pair(request: Request, response: Response) -> None:
    rc, pc = request.cseq, response.cseq
    if response.call_id != request.call_id or rc.seq != pc.seq or pc.method != request.method:
        raise LocalProtocolError("the response does not answer this request")


def _secure(request: Request, over_tls: bool | None) -> bool:
    uri = request.uri
    return isinstance(uri, SipUri) and uri.secure and (over_tls is None or over_tls)


def _tagged(address: NameAddress, tag: str) -> NameAddress:
    """``address`` with ``tag`` as its tag (none at all when ``tag`` is ""): itself when it
    already reads so, else a new address sharing its URI.  Addresses are replaced, never
    changed in place (see :meth:`Dialog._texts_now`), so sharing is safe and spares a
    copy per call (the UAC's From already carries its tag)."""
    items = [(k, v) for k, v in address.params.items if k.lower() != "tag"]
    if tag:
        items.append(("tag", tag))
    if items == address.params.items:
        return address
    return NameAddress(address.uri, address.display_name, Params(items))


def _target_of(msg: Message, secure: bool) -> Uri | None:
    """The URI of ``msg``'s one Contact, or None when it has no Contact (rule 7)."""
    if not msg.has("contact"):
        return None
    contacts = msg.contacts
    if contacts is None:
        raise ParseError("Contact '*' cannot be a remote target")
    if len(contacts) != 1:
        raise ParseError(f"a remote target needs exactly one Contact, not {len(contacts)}")
    uri = contacts[0].uri
    if not isinstance(uri, SipUri):
        raise ParseError(f"remote target {uri.scheme}: is not a SIP or SIPS URI (§12.1.1)")
    if secure and not uri.secure:
        raise ParseError("a secure dialog's remote target must be a SIPS URI (§12.2.1.1)")
    return uri.copy()


def _source_of(msg: Message, target: Uri) -> tuple[str, Uri] | None:
    """(the Contact field ``target`` was parsed from, ``target``) for
    :meth:`Dialog._target_from`; None when ``msg`` has several Contact fields."""
    texts = msg.get_all("contact")
    return (texts[0], target) if len(texts) == 1 else None


def _is_loose(uri: Uri) -> bool:
    return isinstance(uri, SipUri) and uri.lr


def _as_request_uri(uri: Uri) -> Uri:
    """A copy of ``uri`` without what a Request-URI may not carry (§19.1.1 table)."""
    out = uri.copy()
    if isinstance(out, SipUri):
        if "method" in out.params:
            out.params.remove("method")
        out.headers = []
    return out
