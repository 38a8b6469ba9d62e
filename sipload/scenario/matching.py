"""Receiving, as pure functions: which step a UA event is for, and what it means.

Nothing here changes a call or talks to the UA: each function reads the program,
the call instance and the event, and answers.  :class:`~sipload.scenario.interpreter.Runner`
acts on the answers (rule numbers refer to its theory of operation).

* :func:`classify` (rule 3): a message for a call waiting in a ``recv`` chain is
  ``accept`` (by step j), ``defer`` (a step of another leg comes first), ``ignore``
  (a provisional nobody asked for) or ``fail`` (unexpected).
* :func:`entry_steps` and :func:`find_taker` (rule 4): which steps may take a new
  request, and which call in progress takes one.
* :func:`recv_owner`, :func:`skip_optional`, :func:`branch_target`: the step whose
  timeout a ``recv`` chain waits on, where a timed-out chain of optional steps goes
  on, and where an ``on:`` branch sends the call.
"""

from __future__ import annotations

from collections.abc import Iterable

from sipload.scenario.calls import CallInstance, Values
from sipload.scenario.messages import failed_check
from sipload.scenario.model import AnyStep, NopStep, Program, RecvStep, SetStep
from sipload.sip.errors import ParseError
from sipload.sip.headers import CANONICAL
from sipload.sip.message import Message, Request, Response
from sipload.stats.records import Failure
from sipload.ua.agent import UserAgent
from sipload.ua.events import Event, EventType

E = EventType
REQUEST_EVENTS = frozenset({E.CALL_INVITE, E.CALL_REINVITE, E.CALL_MESSAGE_NEW, E.CALL_ACK,
                            E.CALL_CLOSED, E.CALL_CANCELLED, E.MESSAGE_NEW})
"""Events that carry a request of the peer (the others carry an answer, or nothing)."""
FATAL = {E.CALL_NOANSWER: Failure.MAX_RETRANSMISSIONS, E.TRANSPORT_ERROR: Failure.TRANSPORT}
"""Events that end the call that gets them, unless it waits for its release."""
IN_DIALOG_ONLY = frozenset({"ACK", "BYE", "CANCEL", "PRACK", "INFO", "UPDATE"})
"""Methods that never open a call or stand alone: no new request of these is routed (rule 4)."""

_WHY_HEADERS = ("warning", "reason", "retry-after")
"""Headers that say why a peer refused: they join the failure detail."""


def label(ev: Event) -> str:
    """What the ladder calls the message of ``ev``: ``INVITE``, ``200 INVITE`` ..."""
    if ev.type in REQUEST_EVENTS and ev.request is not None:
        return ev.request.method
    if ev.response is not None:
        try:
            return f"{ev.response.status} {ev.response.cseq.method}"
        except ParseError:
            return str(ev.response.status)
    return ev.type.value


def describe(resp: Response) -> str:
    """``503 Service Unavailable; Warning: 399 pbx "Overloaded"`` (wire text, cut short)."""
    out = f"{resp.status} {resp.reason}".rstrip()[:80]
    for name in _WHY_HEADERS:
        for value in resp.get_all(name)[:2]:
            out += f"; {CANONICAL.get(name, name)}: {value[:120]}"
    return "".join(c if c.isprintable() else "?" for c in out)


def entry_steps(program: Program) -> tuple[RecvStep | None, dict[str, list[int]]]:
    """(the recv step a UAS call starts at, or None; the steps that may take a new
    request, by method) -- rule 4 (b), (c)."""
    steps = program.steps
    k = 0  # a UAS call starts at its first recv: steps before it do not wait
    while k < len(steps) and isinstance(steps[k], NopStep | SetStep):
        k += 1
    s0 = steps[k] if k < len(steps) else None
    first = s0 if isinstance(s0, RecvStep) and program.role == "uas" else None
    takers: dict[str, list[int]] = {}
    for j, s in enumerate(steps):
        if not isinstance(s, RecvStep) or (j == k and first is not None):
            continue
        for m in s.matchers:
            if not m.method or m.method in IN_DIALOG_ONLY:
                continue
            if first is not None and first.accepts_request(m.method) and not s.match:
                continue
            takers.setdefault(m.method, []).append(j)
    return first, takers


def find_taker(steps: tuple[AnyStep, ...], taker_steps: list[int],
               instances: Iterable[CallInstance], req: Request,
               ua: UserAgent) -> tuple[CallInstance, str] | None:
    """The oldest call with a step ahead that takes the new request ``req`` (rule 4 b)."""
    method = req.method
    for inst in instances:
        if inst.done:
            continue
        for j in taker_steps:
            s = steps[j]
            if j < inst.pc or not isinstance(s, RecvStep):
                continue
            leg = inst.legs.get(s.leg)
            if method == "INVITE" and leg is not None and leg.live:
                continue
            if s.match and failed_check(
                    s.match, req, Values(inst.vars, leg, ua, inst.consts)) is not None:
                continue
            return inst, s.leg
    return None


def classify(steps: tuple[AnyStep, ...], inst: CallInstance, leg_name: str, ev: Event,
             ua: UserAgent) -> tuple[str, int]:
    """Rule 3: ("accept", step), ("defer", 0), ("ignore", 0) or ("fail", 0)."""
    is_request = ev.type in REQUEST_EVENTS
    msg: Message | None = ev.request if is_request else ev.response
    method = ev.request.method if (is_request and ev.request is not None) else ""
    status = ev.response.status if (not is_request and ev.response is not None) else 0
    own_leg = False
    j = inst.pc
    while j < len(steps):
        s = steps[j]
        if not isinstance(s, RecvStep):
            break
        if s.leg == leg_name:
            own_leg = True
            took = s.accepts_request(method) if is_request else s.accepts_response(status)
            if took and (not s.match or msg is None or failed_check(
                    s.match, msg,
                    Values(inst.vars, inst.legs.get(leg_name), ua, inst.consts)) is None):
                return "accept", j
            if not s.optional:
                break
        elif not s.optional:
            return "defer", 0
        j += 1
    if not is_request and status < 200:
        return "ignore", 0
    if not own_leg:
        return "defer", 0
    return "fail", 0


def unexpected_refresh(steps: tuple[AnyStep, ...], inst: CallInstance, leg_name: str, ev: Event,
                       ua: UserAgent) -> bool:
    """A session refresh (RFC 4028: re-INVITE or UPDATE with Session-Expires) that no
    step waits for now: the peer's session timer, answered without the scenario."""
    req = ev.request
    if req is None or not req.has("session-expires") or not (
            ev.type == E.CALL_REINVITE or (ev.type == E.CALL_MESSAGE_NEW
                                           and req.method == "UPDATE")):
        return False
    return inst.waiting != "recv" or classify(steps, inst, leg_name, ev, ua)[0] != "accept"


def recv_owner(steps: tuple[AnyStep, ...], pc: int) -> int:
    """The step whose timeout a recv chain starting at ``pc`` waits on: the first with
    its own ``timeout``, among the optional steps and the first non-optional one."""
    j = pc
    while j < len(steps):
        sj = steps[j]
        if not isinstance(sj, RecvStep):
            break
        if sj.timeout is not None:
            return j
        if not sj.optional:
            break
        j += 1
    return pc


def skip_optional(steps: tuple[AnyStep, ...], pc: int) -> int:
    """Where a timed-out recv chain goes on: past its optional steps when nothing but
    optional steps waited (then the answer is > ``pc``), else ``pc`` (a timeout)."""
    j = pc
    while j < len(steps):
        sj = steps[j]
        if not (isinstance(sj, RecvStep) and sj.optional):
            break
        j += 1
    if j > pc and (j >= len(steps) or not isinstance(steps[j], RecvStep)):
        return j
    return pc


def branch_target(step: RecvStep, j: int, ev: Event) -> int:
    """The step after the recv step ``j`` that took ``ev``: its ``on:`` branch, or j+1."""
    is_request = ev.type in REQUEST_EVENTS
    method = ev.request.method if is_request and ev.request is not None else ""
    status = ev.response.status if not is_request and ev.response is not None else 0
    for m, t in step.on:
        if (status and m.matches_response(status)) or (method and m.matches_request(method)):
            return t
    return j + 1
