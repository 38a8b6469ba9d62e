"""Events the user agent hands to its program, named after eXosip2's.

An :class:`Event` carries the ids the program needs to act (``tid`` to answer,
``did`` to send inside the dialog, ``cid`` to terminate, ``rid`` for a
registration), the reference the program attached to the call, the message
that caused it, and the time it happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sipload.sip.message import Request, Response


class EventType(Enum):
    """What happened (eXosip2's ``EXOSIP_*`` event names, lower case)."""

    CALL_INVITE = "call-invite"  #: a new incoming call
    CALL_REINVITE = "call-reinvite"  #: a re-INVITE inside an established call
    CALL_NOANSWER = "call-noanswer"  #: our INVITE got no final answer (Timer B)
    CALL_PROCEEDING = "call-proceeding"  #: 1xx other than 180
    CALL_RINGING = "call-ringing"  #: 180
    CALL_ANSWERED = "call-answered"  #: 2xx to our INVITE or re-INVITE
    CALL_REDIRECTED = "call-redirected"  #: 3xx
    CALL_REQUESTFAILURE = "call-requestfailure"  #: 4xx
    CALL_SERVERFAILURE = "call-serverfailure"  #: 5xx
    CALL_GLOBALFAILURE = "call-globalfailure"  #: 6xx
    CALL_ACK = "call-ack"  #: ACK for our 2xx
    CALL_CANCELLED = "call-cancelled"  #: the caller cancelled before our final answer
    CALL_MESSAGE_NEW = "call-message-new"  #: a request inside a call (INFO, UPDATE, REFER ...)
    CALL_MESSAGE_PROCEEDING = "call-message-proceeding"
    CALL_MESSAGE_ANSWERED = "call-message-answered"  #: 2xx to our request inside a call
    CALL_MESSAGE_REDIRECTED = "call-message-redirected"
    CALL_MESSAGE_REQUESTFAILURE = "call-message-requestfailure"
    CALL_MESSAGE_SERVERFAILURE = "call-message-serverfailure"
    CALL_MESSAGE_GLOBALFAILURE = "call-message-globalfailure"
    CALL_CLOSED = "call-closed"  #: BYE received
    CALL_RELEASED = "call-released"  #: the call and all its state are gone
    REGISTRATION_SUCCESS = "registration-success"
    REGISTRATION_FAILURE = "registration-failure"
    MESSAGE_NEW = "message-new"  #: a request outside any call (OPTIONS, MESSAGE ...)
    MESSAGE_PROCEEDING = "message-proceeding"
    MESSAGE_ANSWERED = "message-answered"
    MESSAGE_REDIRECTED = "message-redirected"
    MESSAGE_REQUESTFAILURE = "message-requestfailure"
    MESSAGE_SERVERFAILURE = "message-serverfailure"
    MESSAGE_GLOBALFAILURE = "message-globalfailure"
    TRANSPORT_ERROR = "transport-error"  #: a message could not be sent or was refused
    BAD_MESSAGE = "bad-message"  #: the peer sent something we refused (and answered)

    # A member is its one instance in the process, so identity hashes it.  Enum's own
    # __hash__ (hash of the name) is Python code that runs interpreted even in the
    # compiled build, on every dict or set look-up of an event type (~18 a call).
    __hash__ = object.__hash__


@dataclass(slots=True, init=False)
class Event:
    """One thing that happened, with the ids to act on it (read-only by convention).

    ``__init__`` is written out: mypyc compiles a hand-written one, while the one the
    ``dataclass`` decorator generates runs interpreted (several events per call).
    """

    type: EventType  #: what happened
    time: float  #: when (the ``now`` the UA was given)
    cid: int = 0  #: call id, 0 outside calls
    did: int = 0  #: dialog id, 0 when no dialog exists yet
    tid: int = 0  #: transaction id to answer with, or of our request that was answered
    rid: int = 0  #: registration id
    #: what the program attached with ``call_set_reference`` (``Any``, not ``object``:
    #: mypyc needs dataclass field types it can resolve at run time)
    reference: Any = None
    request: Request | None = None  #: the request concerned
    response: Response | None = None  #: the response concerned
    reason: str = ""  #: for failures: why, in words (timer, transport, auth ...)
    retransmissions: int = 0  #: messages of this call the UA has retransmitted so far
    #: the retransmissions of this call since its previous event: (time, "BYE" or
    #: "200 INVITE"), for the call's record (``call_take_retransmissions`` takes the rest)
    retransmitted: list[tuple[float, str]] = field(default_factory=list)

    def __init__(self, type: EventType, time: float, cid: int = 0, did: int = 0,
                 tid: int = 0, rid: int = 0, reference: Any = None,
                 request: Request | None = None, response: Response | None = None,
                 reason: str = "", retransmissions: int = 0,
                 retransmitted: list[tuple[float, str]] | None = None) -> None:
        self.type = type
        self.time = time
        self.cid = cid
        self.did = did
        self.tid = tid
        self.rid = rid
        self.reference = reference
        self.request = request
        self.response = response
        self.reason = reason
        self.retransmissions = retransmissions
        self.retransmitted = [] if retransmitted is None else retransmitted

    @property
    def status(self) -> int:
        return self.response.status if self.response is not None else 0

    @property
    def method(self) -> str:
        return self.request.method if self.request is not None else ""
