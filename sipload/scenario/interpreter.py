"""Running a compiled scenario, one :class:`CallInstance` per call.

Theory of operation
===================

1. The :class:`Runner` owns every call in progress on one user agent.  The
   engine feeds it UA events and ``now``; it drives the UA through the eXosip
   API and turns each call into one :class:`CallRecord`.
2. A call runs steps until one must wait: ``recv`` (a message), ``pause``,
   ``dtmf`` (each INFO's answer) or ``terminate`` (the call's release).
   Waiting sets the instance's deadline; :meth:`Runner.handle_timers` fires it.
3. A message arriving while the call waits in a chain of ``recv`` steps is
   matched against the chain from the current step: optional steps it does
   not match are skipped; a non-optional step it does not match makes it
   unexpected.  Provisional responses nobody asked for are ignored.  A message
   arriving while the call is not waiting (a pause) is kept in a small inbox
   and matched when the call reaches its next ``recv``.
4. A call that fails (timeout, unexpected message, rejection, transport
   error, a check) is torn down with ``call_terminate`` on every leg (CANCEL,
   a negative answer or BYE by state) and its record says why.
5. Loops are bounded twice: a backward ``goto`` needs ``max`` (the loader
   enforces it), and one call may execute at most :data:`MAX_STEPS` steps.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, field
from typing import Protocol

from sipload.scenario.inject import Injection
from sipload.scenario.model import (
    Body,
    Check,
    CheckStep,
    DtmfStep,
    GotoStep,
    HeaderSpec,
    NopStep,
    PauseStep,
    Program,
    RecvStep,
    ReplyStep,
    SendStep,
    SetStep,
    TerminateStep,
)
from sipload.sip import sdp
from sipload.sip.errors import LocalProtocolError, ParseError
from sipload.sip.message import Message
from sipload.stats.records import CallRecord, Failure, Result
from sipload.ua.agent import UserAgent
from sipload.ua.events import Event, EventType

MAX_STEPS = 10_000
INBOX = 16
INF = float("inf")

E = EventType
_REQUEST_EVENTS = {E.CALL_INVITE, E.CALL_REINVITE, E.CALL_MESSAGE_NEW, E.CALL_ACK,
                   E.CALL_CLOSED, E.CALL_CANCELLED, E.MESSAGE_NEW}
_FATAL = {E.CALL_NOANSWER: Failure.MAX_RETRANSMISSIONS, E.TRANSPORT_ERROR: Failure.TRANSPORT}


class Rng(Protocol):
    """The randomness a scenario needs, passed in by the shell (the core draws none)."""

    def uniform(self, a: float, b: float) -> float: ...
    def gauss(self, mu: float, sigma: float) -> float: ...
    def lognormvariate(self, mu: float, sigma: float) -> float: ...
    def expovariate(self, lambd: float) -> float: ...
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


@dataclass(slots=True)
class Leg:
    """One call (or registration) inside a scenario instance."""

    name: str
    cid: int = 0
    did: int = 0
    rid: int = 0
    last_tid: int = 0
    last_method: str = ""
    last: Message | None = None  #: the last message received on this leg
    released: bool = False
    local_sdp: sdp.SessionDescription | None = None
    remote_sdp: bytes = b""


@dataclass(slots=True)
class CallInstance:
    """One call of the scenario in progress."""

    iid: int
    record: CallRecord
    vars: dict[str, str]
    legs: dict[str, Leg] = field(default_factory=dict)
    pc: int = 0
    deadline: float = INF
    waiting: str = ""  #: "", "recv", "pause", "dtmf", "terminate"
    sub: int = 0  #: progress inside a step (dtmf digit)
    wait_tid: int = 0
    inbox: list[tuple[str, Event]] = field(default_factory=list)
    gotos: dict[int, int] = field(default_factory=dict)
    timers: dict[str, float] = field(default_factory=dict)
    executed: int = 0
    done: bool = False

    def leg(self, name: str) -> Leg:
        leg = self.legs.get(name)
        if leg is None:
            leg = Leg(name)
            self.legs[name] = leg
        return leg


def _label(ev: Event) -> str:
    if ev.type in _REQUEST_EVENTS and ev.request is not None:
        return ev.request.method
    if ev.response is not None:
        try:
            return f"{ev.response.status} {ev.response.cseq.method}"
        except ParseError:
            return str(ev.response.status)
    return ev.type.value


class Runner:
    """Runs a :class:`Program` for many calls on one :class:`UserAgent`."""

    def __init__(self, program: Program, ua: UserAgent, ctx: RunContext, rng: Rng,
                 injection: Injection | None = None) -> None:
        self.program = program
        self.ua = ua
        self.ctx = ctx
        self.rng = rng
        self.injection = injection
        self._instances: dict[int, CallInstance] = {}
        self._by_cid: dict[int, tuple[int, str]] = {}
        self._by_tid: dict[int, tuple[int, str]] = {}
        self._by_rid: dict[int, tuple[int, str]] = {}
        self._waiting_calls: list[tuple[int, str]] = []
        self._heap: list[tuple[float, int, int]] = []
        self._seq = 0
        self._next_iid = 0
        self._finished: list[CallRecord] = []
        self.started = 0
        self.call_number_base = 0

    # ------------------------------------------------------------------ engine surface

    @property
    def active(self) -> int:
        return len(self._instances)

    def finished(self) -> list[CallRecord]:
        """Records of the calls that ended since the last call."""
        out = self._finished
        self._finished = []
        return out

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            d, _, iid = heap[0]
            inst = self._instances.get(iid)
            if inst is not None and inst.deadline == d:
                return d
            heapq.heappop(heap)
        return None

    def start_call(self, call_number: int, intended: float, now: float) -> CallInstance:
        """Start call ``call_number`` of a UAC scenario."""
        inst = self._new_instance(call_number, intended, now)
        self._run(inst, now)
        return inst

    def handle_timers(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            d, _, iid = heapq.heappop(heap)
            inst = self._instances.get(iid)
            if inst is None or inst.deadline != d:
                continue
            inst.deadline = INF
            self._on_deadline(inst, now)

    def on_event(self, ev: Event, now: float) -> None:
        """Route one UA event to the call it belongs to (or start a UAS call)."""
        target: tuple[int, str] | None = None
        if ev.cid:
            target = self._by_cid.get(ev.cid)
        if target is None and ev.rid:
            target = self._by_rid.get(ev.rid)
        if target is None and ev.tid and ev.type not in _REQUEST_EVENTS:
            target = self._by_tid.get(ev.tid)
        if target is None:
            if ev.type == E.CALL_INVITE or ev.type == E.MESSAGE_NEW:
                self._incoming(ev, now)
            return
        inst = self._instances.get(target[0])
        if inst is None or inst.done:
            return
        self._deliver(inst, target[1], ev, now)

    def stop_all(self, now: float, result: Result = Result.IN_FLIGHT,
                 failure: Failure = Failure.IN_FLIGHT) -> None:
        """End every call in progress: record it and tear its calls down."""
        for inst in list(self._instances.values()):
            if result == Result.IN_FLIGHT:
                inst.record.result = Result.IN_FLIGHT
                inst.record.failure = failure.value
                inst.record.detail = f"step {inst.pc + 1}"
                inst.record.end = now
                self._finish(inst, now, teardown=True)
            else:
                self._fail(inst, failure, "stopped", now)

    # ------------------------------------------------------------------ instances

    def _new_instance(self, call_number: int, intended: float, now: float) -> CallInstance:
        self._next_iid += 1
        self.started += 1
        rec = CallRecord(call_number, intended, now, worker=self.ctx.worker)
        ctx = self.ctx
        values = {
            "call_number": str(call_number), "local_host": ctx.local_host,
            "local_port": str(ctx.local_port), "remote_host": ctx.remote_host,
            "remote_port": str(ctx.remote_port), "transport": ctx.transport,
            "target": f"{ctx.remote_host}:{ctx.remote_port}", "service": ctx.service,
            "media_ip": ctx.media_ip or ctx.local_host, "media_port": str(ctx.media_port),
            "worker": str(ctx.worker), "local_contact": self.ua.contact,
        }
        if self.injection is not None:
            draw = self.rng.randrange(len(self.injection.rows))
            values.update(self.injection.row_for(call_number, draw))
        for name, tmpl in self.program.variables:
            values[name] = tmpl.render(values)
        if self.program.credentials is not None:
            user, password, realm = (t.render(values) for t in self.program.credentials)
            values["username"], values["password"], values["realm"] = user, password, realm
        inst = CallInstance(self._next_iid, rec, values)
        self._instances[inst.iid] = inst
        return inst

    def _incoming(self, ev: Event, now: float) -> None:
        if ev.type == E.CALL_INVITE and self._waiting_calls:
            iid, leg_name = self._waiting_calls.pop(0)
            inst = self._instances.get(iid)
            if inst is not None and not inst.done:
                self._deliver(inst, leg_name, ev, now)
                return
        if self.program.role != "uas":
            if ev.type == E.CALL_INVITE:
                self.ua.call_send_answer(ev.tid, 480, None, now)
            elif ev.type == E.MESSAGE_NEW and ev.request is not None \
                    and ev.request.method != "OPTIONS":
                self.ua.message_send_answer(ev.tid, 481, None, now)
            return
        first = self.program.steps[0] if self.program.steps else None
        method = ev.request.method if ev.request is not None else ""
        if isinstance(first, RecvStep) and not first.accepts_request(method):
            if ev.type == E.CALL_INVITE:
                self.ua.call_send_answer(ev.tid, 488, None, now)
            elif method != "OPTIONS":
                self.ua.message_send_answer(ev.tid, 405, None, now)
            return
        inst = self._new_instance(self.call_number_base + self.started, now, now)
        self._deliver(inst, "main", ev, now)  # not waiting yet: goes to the inbox
        self._run(inst, now)

    def _set_deadline(self, inst: CallInstance, deadline: float) -> None:
        inst.deadline = deadline
        if deadline != INF:
            self._seq += 1
            heapq.heappush(self._heap, (deadline, self._seq, inst.iid))

    def _finish(self, inst: CallInstance, now: float, teardown: bool) -> None:
        if inst.done:
            return
        inst.done = True
        rec = inst.record
        if rec.result == Result.IN_FLIGHT and rec.failure == "":
            rec.result = Result.SUCCESS
        if rec.end == 0.0:
            rec.end = now
        rec.call_id = inst.vars.get("call_id", "")
        _automatic_marks(rec)
        for leg in inst.legs.values():
            if teardown and leg.cid and not leg.released:
                try:
                    self.ua.call_terminate(leg.cid, leg.did, now)
                except LocalProtocolError:
                    pass
            self._by_cid.pop(leg.cid, None)
            self._by_rid.pop(leg.rid, None)
        self._waiting_calls = [w for w in self._waiting_calls if w[0] != inst.iid]
        for tid in [t for t, (i, _) in self._by_tid.items() if i == inst.iid]:
            del self._by_tid[tid]
        del self._instances[inst.iid]
        self._finished.append(rec)

    def _fail(self, inst: CallInstance, failure: Failure, detail: str, now: float) -> None:
        inst.record.fail(failure, detail, now, inst.pc + 1)
        self._finish(inst, now, teardown=True)

    # ------------------------------------------------------------------ events

    def _deliver(self, inst: CallInstance, leg_name: str, ev: Event, now: float) -> None:
        leg = inst.leg(leg_name)
        rec = inst.record
        if ev.cid and not leg.cid:
            leg.cid = ev.cid
            self._by_cid[ev.cid] = (inst.iid, leg_name)
            self.ua.call_set_reference(ev.cid, inst.iid)
        if ev.did and not leg.did:
            leg.did = ev.did
        etype = ev.type
        if etype == E.CALL_RELEASED:
            leg.released = True
            if inst.waiting == "terminate" and self.program.steps[inst.pc].leg == leg_name:
                inst.waiting = ""
                inst.deadline = INF
                inst.pc += 1
                self._run(inst, now)
            elif inst.waiting in ("recv", "dtmf") and self._waits_on(inst, leg_name):
                self._fail(inst, Failure.UNEXPECTED, f"call ended ({ev.reason})", now)
            return
        if etype in _FATAL:
            if inst.waiting == "terminate":
                return
            self._fail(inst, _FATAL[etype], ev.reason or etype.value, now)
            return
        label = _label(ev)
        rec.messages.append((now, "in", label))
        if ev.response is not None and etype not in _REQUEST_EVENTS:
            rec.codes.append(ev.response.status)
            leg.last = ev.response
            if ev.response.body and ev.response.cseq.method in ("INVITE", "UPDATE"):
                leg.remote_sdp = ev.response.body
        elif ev.request is not None:
            leg.last = ev.request
            leg.last_tid = ev.tid
            leg.last_method = ev.request.method
            if ev.request.body and ev.request.method in ("INVITE", "UPDATE", "ACK"):
                leg.remote_sdp = ev.request.body
            if ev.request.method == "INVITE" and not ev.request.to_tag:
                inst.vars["call_id"] = ev.request.call_id if leg_name == "main" else \
                    inst.vars.get("call_id", "")
        elif ev.response is None and ev.request is None:
            return
        if inst.waiting == "terminate":
            return
        if inst.waiting == "dtmf":
            if ev.tid == inst.wait_tid and ev.response is not None and ev.response.status >= 200:
                if ev.response.status >= 300:
                    self._fail(inst, Failure.REJECTED, f"INFO answered {ev.response.status}", now)
                    return
                inst.waiting = ""
                inst.sub += 1
                step = self.program.steps[inst.pc]
                assert isinstance(step, DtmfStep)
                if step.gap > 0 and inst.sub < len(step.digits):
                    inst.waiting = "pause"
                    self._set_deadline(inst, now + step.gap)
                    return
                self._run(inst, now)
            return
        if inst.waiting == "recv":
            self._match(inst, leg_name, ev, now)
        elif len(inst.inbox) < INBOX:
            inst.inbox.append((leg_name, ev))
        else:
            self._fail(inst, Failure.UNEXPECTED, f"{label} while not waiting", now)

    def _waits_on(self, inst: CallInstance, leg_name: str) -> bool:
        step = self.program.steps[inst.pc]
        return step.leg == leg_name

    def _match(self, inst: CallInstance, leg_name: str, ev: Event, now: float) -> None:
        """Match a message against the recv chain at the current step (rule 3)."""
        steps = self.program.steps
        is_request = ev.type in _REQUEST_EVENTS
        method = ev.request.method if (is_request and ev.request is not None) else ""
        status = ev.response.status if (not is_request and ev.response is not None) else 0
        j = inst.pc
        while j < len(steps):
            s = steps[j]
            if not isinstance(s, RecvStep) or s.leg != leg_name:
                break
            if (is_request and s.accepts_request(method)) or (
                    not is_request and s.accepts_response(status)):
                self._accept(inst, j, s, ev, status, now)
                return
            if not s.optional:
                break
            j += 1
        if not is_request and status < 200:
            return  # a provisional response the scenario did not ask for
        want = steps[inst.pc]
        expected = ", ".join(m.text for m in want.matchers) if isinstance(want, RecvStep) else "?"
        got = method or str(status)
        if not is_request and status >= 300:
            self._fail(inst, Failure.REJECTED, f"{status} (expected {expected})", now)
        else:
            self._fail(inst, Failure.UNEXPECTED, f"{got} (expected {expected})", now)

    def _accept(self, inst: CallInstance, j: int, s: RecvStep, ev: Event, status: int,
                now: float) -> None:
        inst.pc = j
        inst.waiting = ""
        inst.deadline = INF
        msg: Message | None = ev.request if ev.type in _REQUEST_EVENTS else ev.response
        if msg is not None and not (self._captures(inst, s, msg, now)
                                    and self._checks(inst, s.checks, msg, now)):
            return
        self._timers(inst, s, now)
        target = j + 1
        for m, t in s.on:
            if status and m.matches_response(status):
                target = t
                break
        inst.pc = target
        self._run(inst, now)

    def _on_deadline(self, inst: CallInstance, now: float) -> None:
        w = inst.waiting
        inst.waiting = ""
        if w == "pause":
            step = self.program.steps[inst.pc]
            if isinstance(step, DtmfStep):
                self._run(inst, now)
                return
            inst.pc += 1
            self._run(inst, now)
        elif w == "recv":
            steps = self.program.steps
            j = inst.pc
            while j < len(steps):
                sj = steps[j]
                if not (isinstance(sj, RecvStep) and sj.optional):
                    break
                j += 1
            if j > inst.pc and (j >= len(steps) or not isinstance(steps[j], RecvStep)):
                inst.pc = j
                self._run(inst, now)
                return
            step = steps[inst.pc]
            expected = ", ".join(m.text for m in step.matchers) if isinstance(
                step, RecvStep) else "?"
            self._fail(inst, Failure.TIMEOUT, f"waiting for {expected}", now)
        elif w == "terminate":
            inst.pc += 1
            self._run(inst, now)
        elif w == "dtmf":
            self._fail(inst, Failure.TIMEOUT, "waiting for the answer to INFO", now)

    # ------------------------------------------------------------------ running steps

    def _run(self, inst: CallInstance, now: float) -> None:
        steps = self.program.steps
        while not inst.done:
            if inst.pc >= len(steps):
                self._finish(inst, now, teardown=True)
                return
            inst.executed += 1
            if inst.executed > MAX_STEPS:
                self._fail(inst, Failure.CHECK_FAILED, f"more than {MAX_STEPS} steps", now)
                return
            step = steps[inst.pc]
            if isinstance(step, RecvStep):
                inst.waiting = "recv"
                timeout = step.timeout if step.timeout is not None else self.program.recv_timeout
                self._set_deadline(inst, now + timeout)
                if step.matchers and step.matchers[0].method == "INVITE" and \
                        inst.leg(step.leg).cid == 0 and self.program.role == "uac":
                    self._waiting_calls.append((inst.iid, step.leg))
                while inst.inbox and inst.waiting == "recv" and not inst.done:
                    leg_name, ev = inst.inbox.pop(0)
                    self._match(inst, leg_name, ev, now)
                return
            if isinstance(step, SendStep):
                if not self._send(inst, step, now):
                    return
            elif isinstance(step, ReplyStep):
                if not self._reply(inst, step, now):
                    return
            elif isinstance(step, PauseStep):
                inst.waiting = "pause"
                self._set_deadline(inst, now + max(0.0, self._sample(step)))
                return
            elif isinstance(step, DtmfStep):
                if inst.sub >= len(step.digits):
                    inst.sub = 0
                else:
                    self._dtmf(inst, step, now)
                    return
            elif isinstance(step, TerminateStep):
                leg = inst.leg(step.leg)
                if leg.cid and not leg.released:
                    try:
                        self.ua.call_terminate(leg.cid, leg.did, now)
                    except LocalProtocolError as e:
                        self._fail(inst, Failure.CANNOT_SEND, str(e), now)
                        return
                    inst.record.messages.append((now, "out", "terminate"))
                    if step.wait:
                        inst.waiting = "terminate"
                        self._set_deadline(inst, now + 64 * self.ua.config.timers.t1 + 1)
                        return
            elif isinstance(step, GotoStep):
                if self._goto(inst, step):
                    continue
            elif isinstance(step, SetStep):
                for name, tmpl in step.values:
                    inst.vars[name] = tmpl.render(inst.vars)
            elif isinstance(step, CheckStep):
                last = inst.leg(step.leg).last
                if last is None:
                    self._fail(inst, Failure.CHECK_FAILED, "nothing received to check", now)
                    return
                if not self._checks(inst, step.checks, last, now):
                    return
            elif isinstance(step, NopStep):
                self._timers(inst, step, now)
            inst.pc += 1

    def _goto(self, inst: CallInstance, step: GotoStep) -> bool:
        if step.when_var:
            value = inst.vars.get(step.when_var, "")
            if step.when_equals is not None and value != step.when_equals.render(inst.vars):
                return False
            if step.when_matches is not None and not step.when_matches.search(value):
                return False
        if step.max:
            n = inst.gotos.get(inst.pc, 0)
            if n >= step.max:
                return False
            inst.gotos[inst.pc] = n + 1
        inst.pc = step.target
        return True

    def _sample(self, step: PauseStep) -> float:
        d = step.distribution
        if d == "fixed":
            return step.a
        if d == "uniform":
            return self.rng.uniform(step.a, step.b)
        if d == "normal":
            return self.rng.gauss(step.a, step.b)
        if d == "exponential":
            return self.rng.expovariate(1.0 / step.a) if step.a > 0 else 0.0
        # lognormal given by the mean and standard deviation of the pause itself
        mean, sd = step.a, step.b
        if mean <= 0:
            return 0.0
        import math

        sigma2 = math.log(1 + (sd * sd) / (mean * mean))
        return self.rng.lognormvariate(math.log(mean) - sigma2 / 2, math.sqrt(sigma2))

    def _timers(self, inst: CallInstance, step: SendStep | ReplyStep | RecvStep | NopStep,
                now: float) -> None:
        if step.start_timer:
            inst.timers[step.start_timer] = now
        if step.stop_timer:
            started = inst.timers.get(step.stop_timer)
            if started is not None:
                inst.record.marks[step.stop_timer] = now - started

    # ------------------------------------------------------------------ building messages

    def _apply(self, inst: CallInstance, msg: Message, headers: tuple[HeaderSpec, ...],
               body: Body | None, content_type: str | None, leg: Leg) -> None:
        values = inst.vars
        for name, vals in headers:
            if vals is None:
                msg.remove_header(name)
                continue
            rendered = [v.render(values) for v in vals]
            msg.set_header(name, rendered[0])
            for extra in rendered[1:]:
                msg.add_header(name, extra)
        if body is not None:
            if body.sdp:
                data = self._sdp_body(inst, leg, body.sdp)
                msg.set_body(data, content_type or "application/sdp")
            elif body.text is not None:
                text = body.text.render(values)
                ctype = content_type or ("application/sdp" if text.startswith("v=0")
                                         else "text/plain")
                msg.set_body(text.encode("utf-8"), ctype)
        elif content_type is not None:
            msg.set_header("Content-Type", content_type)

    def _sdp_body(self, inst: CallInstance, leg: Leg, kind: str) -> bytes:
        ip = inst.vars.get("media_ip", self.ctx.local_host)
        port = self.ctx.media_port
        sid = int(inst.record.call_number) + 1
        current = leg.local_sdp
        desc: sdp.SessionDescription
        if kind == "answer" and leg.remote_sdp:
            try:
                desc = sdp.build_answer(sdp.parse_sdp(leg.remote_sdp), address=ip, port=port,
                                        session_id=sid)
            except sdp.SdpError:
                desc = sdp.build_audio_offer(ip, port, session_id=sid)
        elif kind in ("hold", "inactive") and current is not None:
            desc = sdp.hold(current, inactive=kind == "inactive")
        elif kind == "resume" and current is not None:
            desc = sdp.resume(current)
        else:
            desc = sdp.build_audio_offer(ip, port, session_id=sid, username="sipload")
        leg.local_sdp = desc
        return desc.to_bytes()

    def _address(self, text: str) -> str:
        return text if "<" in text else f"<{text}>"

    def _send(self, inst: CallInstance, step: SendStep, now: float) -> bool:
        ua = self.ua
        leg = inst.leg(step.leg)
        v = inst.vars
        m = step.method
        prog = self.program
        ctype = step.content_type.render(v) if step.content_type is not None else None
        try:
            if m == "INVITE" and leg.cid == 0:
                to = self._address((step.to or prog.to).render(v))
                from_ = self._address((step.from_ or prog.from_).render(v))
                req = ua.call_build_initial_invite(
                    to, from_, step.route.render(v) if step.route else None,
                    step.subject.render(v) if step.subject else None)
                if step.request_uri is not None:
                    req.uri_text = step.request_uri.render(v)
                self._apply(inst, req, step.headers, step.body, ctype, leg)
                cid = ua.call_send_initial_invite(req, now)
                ua.call_set_reference(cid, inst.iid)
                leg.cid = cid
                self._by_cid[cid] = (inst.iid, leg.name)
                if leg.name == "main":
                    v["call_id"] = req.call_id
            elif m == "ACK":
                if not leg.did:
                    raise LocalProtocolError("ACK before any 2xx")
                ack = ua.call_build_ack(leg.did)
                self._apply(inst, ack, step.headers, step.body, ctype, leg)
                ua.call_send_ack(leg.did, ack, now)
            elif m == "CANCEL":
                if not leg.cid:
                    raise LocalProtocolError("CANCEL with no call")
                ua.call_terminate(leg.cid, 0, now)
            elif m == "REGISTER":
                expires = step.expires if step.expires is not None else 3600
                if not leg.rid:
                    registrar = (step.request_uri.render(v) if step.request_uri else
                                 f"sip:{v['remote_host']}:{v['remote_port']}")
                    from_ = self._address((step.from_ or prog.from_).render(v))
                    rid, req = ua.register_build_initial_register(from_, registrar,
                                                                   expires=expires)
                    leg.rid = rid
                    self._by_rid[rid] = (inst.iid, leg.name)
                else:
                    req = ua.register_build_register(leg.rid, expires)
                self._apply(inst, req, step.headers, step.body, ctype, leg)
                ua.register_send_register(leg.rid, req, now)
            elif leg.did and not step.out_of_dialog and not leg.released:
                req = ua.call_build_request(leg.did, m)
                self._apply(inst, req, step.headers, step.body, ctype, leg)
                tid = ua.call_send_request(leg.did, req, now)
                self._by_tid[tid] = (inst.iid, leg.name)
            else:
                to = self._address((step.to or prog.to).render(v))
                from_ = self._address((step.from_ or prog.from_).render(v))
                req = ua.message_build_request(m, to, from_,
                                               step.route.render(v) if step.route else None)
                if step.request_uri is not None:
                    req.uri_text = step.request_uri.render(v)
                self._apply(inst, req, step.headers, step.body, ctype, leg)
                tid = ua.message_send_request(req, now)
                self._by_tid[tid] = (inst.iid, leg.name)
        except (LocalProtocolError, ParseError, sdp.SdpError) as e:
            self._fail(inst, Failure.CANNOT_SEND, f"{m}: {e}", now)
            return False
        inst.record.messages.append((now, "out", m))
        self._timers(inst, step, now)
        return True

    def _reply(self, inst: CallInstance, step: ReplyStep, now: float) -> bool:
        leg = inst.leg(step.leg)
        if leg.last_method in ("BYE", "CANCEL", "ACK", "PRACK") and step.code < 300:
            self._timers(inst, step, now)
            return True  # the UA answered these itself
        if not leg.last_tid:
            self._fail(inst, Failure.CANNOT_SEND, f"reply {step.code}: no request to answer",
                       now)
            return False
        try:
            resp = self.ua.call_build_answer(leg.last_tid, step.code)
            if step.reason:
                resp.reason = step.reason
            ctype = step.content_type.render(inst.vars) if step.content_type else None
            self._apply(inst, resp, step.headers, step.body, ctype, leg)
            self.ua.call_send_answer(leg.last_tid, step.code, resp, now)
        except (LocalProtocolError, ParseError, sdp.SdpError) as e:
            self._fail(inst, Failure.CANNOT_SEND, f"reply {step.code}: {e}", now)
            return False
        inst.record.messages.append((now, "out", f"{step.code} {leg.last_method}"))
        self._timers(inst, step, now)
        return True

    def _dtmf(self, inst: CallInstance, step: DtmfStep, now: float) -> None:
        leg = inst.leg(step.leg)
        digit = step.digits[inst.sub]
        try:
            info = self.ua.call_build_info(leg.did)
            info.set_body(f"Signal={digit}\r\nDuration={step.duration_ms}\r\n".encode(),
                          "application/dtmf-relay")
            tid = self.ua.call_send_request(leg.did, info, now)
        except LocalProtocolError as e:
            self._fail(inst, Failure.CANNOT_SEND, f"INFO: {e}", now)
            return
        self._by_tid[tid] = (inst.iid, leg.name)
        inst.record.messages.append((now, "out", "INFO"))
        inst.waiting = "dtmf"
        inst.wait_tid = tid
        self._set_deadline(inst, now + 64 * self.ua.config.timers.t1 + 1)

    # ------------------------------------------------------------------ checks

    def _header_or_body(self, msg: Message, header: str, body: bool) -> str | None:
        if body:
            return msg.body.decode("utf-8", "replace")
        values = msg.get_all(header)
        return ", ".join(values) if values else None

    def _captures(self, inst: CallInstance, s: RecvStep, msg: Message, now: float) -> bool:
        for c in s.captures:
            text = self._header_or_body(msg, c.header, c.body)
            m = c.regex.search(text) if text is not None else None
            if m is None:
                if c.required:
                    self._fail(inst, Failure.CHECK_FAILED, f"capture {c.var}", now)
                    return False
                inst.vars[c.var] = ""
            else:
                inst.vars[c.var] = m.group(1) if m.groups() else m.group(0)
        return True

    def _checks(self, inst: CallInstance, checks: tuple[Check, ...], msg: Message,
                now: float) -> bool:
        for c in checks:
            text = self._header_or_body(msg, c.header, c.body)
            ok = True
            if c.present is not None:
                ok = (text is not None) == c.present
            if ok and c.matches is not None:
                ok = text is not None and c.matches.search(text) is not None
            if ok and c.equals is not None:
                ok = text == c.equals.render(inst.vars)
            if not ok:
                self._fail(inst, Failure.CHECK_FAILED, c.name, now)
                return False
        return True


_FIRST_PROVISIONAL = re.compile(r"^1[0-9][0-9] INVITE$")


def _automatic_marks(rec: CallRecord) -> None:
    """Marks every call gets from its message log (seconds)."""
    invite_at: float | None = None
    bye_at: float | None = None
    marks = rec.marks
    for t, direction, label in rec.messages:
        if direction == "out":
            if label == "INVITE" and invite_at is None:
                invite_at = t
            elif label == "BYE" and bye_at is None:
                bye_at = t
            continue
        if invite_at is not None:
            if "first_provisional" not in marks and _FIRST_PROVISIONAL.match(label):
                marks["first_provisional"] = t - invite_at
            if "pdd" not in marks and label in ("180 INVITE", "183 INVITE"):
                marks["pdd"] = t - invite_at
            if "answer" not in marks and label.startswith("2") and label.endswith(" INVITE"):
                marks["answer"] = t - invite_at
        if bye_at is not None and "bye" not in marks and label.endswith(" BYE") \
                and label[0] in "23456":
            marks["bye"] = t - bye_at
    if rec.result == Result.SUCCESS:
        marks["call"] = rec.end - rec.actual_start
