"""The state of one running call of a scenario, and what it shares with the run.

A :class:`CallInstance` is one call of the scenario (one record); it holds one
:class:`Leg` per dialog or registration the scenario names with ``leg:``
(``main`` by default).  :class:`Values` is the view templates render from: the
call's variables plus keywords computed when asked (``${last.NAME}``,
``${local_tag}`` ...), so nothing is computed that no template uses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, overload

from sipload.sip import sdp
from sipload.sip.digest import DigestServer
from sipload.sip.errors import LocalProtocolError, ParseError
from sipload.sip.message import Message, Request, Response
from sipload.stats.records import CallRecord
from sipload.ua.agent import UserAgent
from sipload.ua.events import Event

INF = float("inf")


class Rng(Protocol):
    """The randomness a scenario needs, passed in by the shell (the core draws none)."""

    def uniform(self, a: float, b: float, /) -> float: ...
    def gauss(self, mu: float, sigma: float, /) -> float: ...
    def lognormvariate(self, mu: float, sigma: float, /) -> float: ...
    def expovariate(self, lambd: float, /) -> float: ...
    def randrange(self, stop: int, /) -> int: ...


@dataclass(slots=True)
class RunContext:
    """What every call of a run shares: addresses and names for the keywords."""

    local_host: str
    local_port: int
    remote_host: str
    remote_port: int
    transport: str = "udp"
    service: str = "service"
    media_ip: str = ""
    media_port: int = 6000
    worker: int = 0
    pid: int = field(default_factory=os.getpid)
    #: several source addresses (--source-addresses): per UA local address, its
    #: (host, SIP port, media address, media port); calls take them in turn
    locals: tuple[tuple[str, int, str, int], ...] = ()


@dataclass(slots=True, init=False)
class Leg:
    """One call (or registration) inside a scenario instance."""

    name: str
    cid: int = 0
    did: int = 0
    rid: int = 0
    call_id: str = ""
    last_tid: int = 0  #: server transaction of the last request received (to reply to)
    last_method: str = ""
    last: Message | None = None  #: the last message received on this leg
    released: bool = False
    retransmissions: int = 0  #: the UA's count for this leg's call, as last reported
    release_reason: str = ""
    remote_sdp: bytes = b""
    #: the leg's last SDP sent, unless it is the default offer (see :attr:`local_sdp`)
    sent_sdp: sdp.SessionDescription | None = None
    #: the default offer, shared by every call from one address, and this leg's o=
    #: session id in it: made into the leg's own description only when asked for
    offer_base: sdp.SessionDescription | None = None
    offer_session: int = 0

    def __init__(
        self,
        name: str,
        cid: int = 0,
        did: int = 0,
        rid: int = 0,
        call_id: str = "",
        last_tid: int = 0,
        last_method: str = "",
        last: Message | None = None,
        released: bool = False,
        retransmissions: int = 0,
        release_reason: str = "",
        local_sdp: sdp.SessionDescription | None = None,
        remote_sdp: bytes = b"",
    ) -> None:
        self.name = name
        self.cid = cid
        self.did = did
        self.rid = rid
        self.call_id = call_id
        self.last_tid = last_tid
        self.last_method = last_method
        self.last = last
        self.released = released
        self.retransmissions = retransmissions
        self.release_reason = release_reason
        self.remote_sdp = remote_sdp
        self.sent_sdp = local_sdp
        self.offer_base = None
        self.offer_session = 0

    @property
    def local_sdp(self) -> sdp.SessionDescription | None:
        """The leg's last SDP sent.  The default offer is kept as the shared one and a
        session id, and made into a description of its own only here: a held call of
        most scenarios never asks (about 400 bytes a call)."""
        if self.sent_sdp is None and self.offer_base is not None:
            self.sent_sdp = sdp.with_session_id(self.offer_base, self.offer_session)
            self.offer_base = None
        return self.sent_sdp

    @local_sdp.setter
    def local_sdp(self, desc: sdp.SessionDescription | None) -> None:
        self.sent_sdp = desc
        self.offer_base = None

    def sent_default_offer(self, base: sdp.SessionDescription, session_id: int) -> None:
        """The leg sent the shared default offer ``base`` under ``session_id``."""
        self.sent_sdp = None
        self.offer_base = base
        self.offer_session = session_id

    @property
    def has_local_sdp(self) -> bool:
        """The leg has sent SDP (without making the default offer's description)."""
        return self.sent_sdp is not None or self.offer_base is not None

    @property
    def live(self) -> bool:
        """A call is up (or being set up) on this leg."""
        return self.cid != 0 and not self.released

    def reset_call(self) -> None:
        """Forget the call of this leg (a new one is about to take its place)."""
        self.cid = 0
        self.did = 0
        self.released = False
        self.release_reason = ""
        self.local_sdp = None
        self.remote_sdp = b""


@dataclass(slots=True, init=False)
class CallInstance:
    """One call of the scenario in progress."""

    iid: int
    record: CallRecord
    vars: dict[str, str]
    legs: dict[str, Leg] = field(default_factory=dict)
    pc: int = 0
    deadline: float = INF
    waiting: str = ""  #: "", "recv", "pause", "dtmf", "terminate"
    wait_owner: int = -1  #: the recv step whose timeout the deadline is
    sub: int = 0  #: progress inside a step (dtmf digit)
    wait_tid: int = 0
    sent_at: float = 0.0  #: when the step's last message went out (a dtmf digit's INFO)
    inbox: list[tuple[str, Event]] = field(default_factory=list)
    gotos: dict[int, int] = field(default_factory=dict)
    timers: dict[str, float] = field(default_factory=dict)
    executed: int = 0
    done: bool = False
    tids: list[int] = field(default_factory=list)  #: client transactions routed to us
    call_ids: list[str] = field(default_factory=list)
    digest: DigestServer | None = None  #: the server of our last challenge
    local: int = 0  #: the UA local address the call runs on (RunContext.locals)
    #: the keywords every call of its address shares (local_host, target, worker ...):
    #: one dict for them all, read after ``vars`` (:meth:`var`, :class:`Values`)
    consts: dict[str, str] = field(default_factory=dict)

    def __init__(
        self,
        iid: int,
        record: CallRecord,
        vars: dict[str, str],
        legs: dict[str, Leg] | None = None,
        pc: int = 0,
        deadline: float = INF,
        waiting: str = "",
        wait_owner: int = -1,
        sub: int = 0,
        wait_tid: int = 0,
        inbox: list[tuple[str, Event]] | None = None,
        gotos: dict[int, int] | None = None,
        timers: dict[str, float] | None = None,
        executed: int = 0,
        done: bool = False,
        tids: list[int] | None = None,
        call_ids: list[str] | None = None,
        digest: DigestServer | None = None,
    ) -> None:
        self.iid = iid
        self.record = record
        self.vars = vars
        self.legs = {} if legs is None else legs
        self.pc = pc
        self.deadline = deadline
        self.waiting = waiting
        self.wait_owner = wait_owner
        self.sub = sub
        self.wait_tid = wait_tid
        self.sent_at = 0.0
        self.inbox = _NO_INBOX if inbox is None else inbox
        self.gotos = _NO_GOTOS if gotos is None else gotos
        self.timers = _NO_TIMERS if timers is None else timers
        self.executed = executed
        self.done = done
        self.tids = [] if tids is None else tids
        self.call_ids = [] if call_ids is None else call_ids
        self.digest = digest
        self.local = 0
        self.consts = _NO_CONSTS

    def queue(self, leg_name: str, ev: Event) -> None:
        """Keep an event for a later recv step (the inbox is shared while empty)."""
        if self.inbox is _NO_INBOX:
            self.inbox = []
        self.inbox.append((leg_name, ev))

    def count_goto(self, pc: int) -> int:
        """Count one more jump of the goto at ``pc``; returns the count before it."""
        if self.gotos is _NO_GOTOS:
            self.gotos = {}
        n = self.gotos.get(pc, 0)
        self.gotos[pc] = n + 1
        return n

    def start_timer(self, name: str, at: float) -> None:
        if self.timers is _NO_TIMERS:
            self.timers = {}
        self.timers[name] = at

    def var(self, name: str) -> str:
        """A variable or keyword of the call ("" when it has none by that name)."""
        v = self.vars.get(name)
        return v if v is not None else self.consts.get(name, "")

    def leg(self, name: str) -> Leg:
        leg = self.legs.get(name)
        if leg is None:
            leg = Leg(name)
            self.legs[name] = leg
        return leg


_NO_INBOX: list[tuple[str, Event]] = []
_NO_GOTOS: dict[int, int] = {}
_NO_TIMERS: dict[str, float] = {}
"""A call's inbox, goto counts and timers while it has none: shared, never written
(CallInstance.queue, count_goto, start_timer give the call its own)."""

_NO_CONSTS: dict[str, str] = {}
"""The ``consts`` of a call made without any (never written)."""


class CallIndex:
    """Which call instance (and leg) a UA id or a Call-ID belongs to: ``(iid, leg name)``.

    Written by the sender when it starts calls and transactions, and by the runner
    when the UA reports new ones; read when routing UA events (the runner's rule 4).
    """

    def __init__(self) -> None:
        self.by_cid: dict[int, tuple[int, str]] = {}
        self.by_tid: dict[int, tuple[int, str]] = {}
        self.by_rid: dict[int, tuple[int, str]] = {}
        self.by_callid: dict[str, tuple[int, str]] = {}

    def track_tid(self, inst: CallInstance, leg: Leg, tid: int) -> None:
        self.by_tid[tid] = (inst.iid, leg.name)
        inst.tids.append(tid)

    def own_call_id(self, inst: CallInstance, leg: Leg, call_id: str,
                    main_too: bool = True) -> None:
        """``call_id`` is the leg's: route requests of it here, and name the call by it."""
        leg.call_id = call_id
        if call_id and call_id not in self.by_callid:
            self.by_callid[call_id] = (inst.iid, leg.name)
            inst.call_ids.append(call_id)
        if (leg.name == "main" and main_too) or not inst.vars.get("call_id"):
            inst.vars["call_id"] = call_id

    def forget(self, inst: CallInstance) -> None:
        """The call ended: nothing routes to it any more."""
        for leg in inst.legs.values():
            self.by_cid.pop(leg.cid, None)
            self.by_rid.pop(leg.rid, None)
        for tid in inst.tids:
            self.by_tid.pop(tid, None)
        for call_id in inst.call_ids:
            if self.by_callid.get(call_id, (0, ""))[0] == inst.iid:
                del self.by_callid[call_id]


def mark_timers(inst: CallInstance, start_timer: str, stop_timer: str, now: float) -> None:
    """A step's ``start_timer``/``stop_timer``: a stopped timer becomes a mark of the record."""
    if start_timer:
        inst.start_timer(start_timer, now)
    if stop_timer:
        started = inst.timers.get(stop_timer)
        if started is not None:
            inst.record.marks[stop_timer] = max(0.0, now - started)


_T = TypeVar("_T")


class Values(Mapping[str, str]):
    """A call's variables, its shared keywords (``consts``), plus keywords computed from
    its leg when a template asks."""

    __slots__ = ("consts", "leg", "ua", "vars")

    def __init__(self, variables: dict[str, str], leg: Leg | None, ua: UserAgent,
                 consts: dict[str, str] | None = None) -> None:
        self.vars = variables
        self.leg = leg
        self.ua = ua
        self.consts = consts if consts is not None else _NO_CONSTS

    def __getitem__(self, key: str) -> str:
        v = self.vars.get(key)
        if v is not None:
            return v
        v = self.consts.get(key)
        if v is not None:
            return v
        leg = self.leg
        last = leg.last if leg is not None else None
        if key.startswith("last."):
            values = last.get_all(key[5:]) if last is not None else []
            if not values:
                raise KeyError(key)
            return ", ".join(values)
        if key in ("last_status", "last_method", "last_body"):
            if last is None:
                return ""
            if key == "last_body":
                return last.body.decode("utf-8", "replace")
            if key == "last_status":
                return str(last.status) if isinstance(last, Response) else ""
            if isinstance(last, Request):
                return last.method
            try:
                return last.cseq.method
            except ParseError:
                return ""
        if key in ("local_tag", "remote_tag") and leg is not None and leg.did:
            try:
                dialog = self.ua.dialog_of(leg.did).dialog
            except LocalProtocolError:
                return ""
            tag = dialog.local_tag if key == "local_tag" else dialog.remote_tag
            return tag or ""
        raise KeyError(key)

    @overload
    def get(self, key: str, /) -> str | None: ...
    @overload
    def get(self, key: str, /, default: str | _T) -> str | _T: ...

    def get(self, key: str, /, default: object = None) -> object:
        """``self[key]``, or ``default`` when there is none: ``Mapping.get`` without its
        interpreted frame (a template asks once per placeholder it renders)."""
        try:
            return self[key]
        except KeyError:
            return default

    def __iter__(self) -> Iterator[str]:
        return iter({**self.consts, **self.vars})

    def __len__(self) -> int:
        return len({**self.consts, **self.vars})
