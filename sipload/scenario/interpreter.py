"""Running a compiled scenario, one :class:`CallInstance` per call.

Theory of operation
===================

1. The :class:`Runner` owns every call in progress on one user agent.  The
   engine feeds it UA events and ``now``; it drives the UA through the eXosip
   API and turns each call into one :class:`CallRecord`.
2. A call runs steps until one must wait: ``recv`` (a message), ``pause``,
   ``dtmf`` (each INFO's answer) or ``terminate`` (the call's release).
   Waiting sets the instance's deadline; :meth:`Runner.handle_timers` fires it.
3. A message for a call is matched against the chain of ``recv`` steps from
   the current one: optional steps it does not match are skipped; a step of
   another leg that is not optional must come first, so the message waits in
   a small inbox; a non-optional step of its own leg that it does not match
   makes it unexpected.  Provisional responses nobody asked for are ignored;
   a peer's session refresh (RFC 4028) nobody waits for is answered 200.
   A message arriving while the call does not wait in a ``recv`` goes to the
   inbox and is matched when the call reaches its next ``recv``.
4. A new call or out-of-dialog request the UA reports goes to (a) the call of
   the scenario that already has its Call-ID (a request re-sent after a
   challenge); else (b) the oldest call that has a ``recv`` for it ahead on a
   leg without a live call and whose ``match:`` checks pass -- in a UAS
   scenario whose first step also takes it, only a step with ``match:`` does;
   else (c) a new call of a UAS scenario whose first step takes it; else it is
   refused (INVITE 480/488, OPTIONS 200, others 405/481).
5. A call that fails (timeout, unexpected message, rejection, transport
   error, a check) is torn down with ``call_terminate`` on every leg (CANCEL,
   a negative answer or BYE by state) and its record says why.
6. Where things live: which step a message is for (rules 3, 4) is decided by pure
   functions in :mod:`sipload.scenario.matching`; sending steps are the
   :class:`~sipload.scenario.sending.Sender`'s, which answers None or why it could
   not send; which call owns which UA id is the :class:`CallIndex`; the calls'
   deadlines sit on one :class:`~sipload.sip.timerheap.TimerHeap`, as the UA's do;
   making a call (its number, source address, keywords, credentials) and adding
   to its record what the UA did on its own is :mod:`sipload.scenario.instances`'.
7. Loops are bounded twice: a backward ``goto`` needs ``max`` (the loader
   enforces it), and one call may execute at most :data:`MAX_STEPS` steps.
"""

from __future__ import annotations

from collections.abc import Sequence

from sipload.scenario.calls import INF, CallIndex, CallInstance, Leg, Rng, RunContext, mark_timers
from sipload.scenario.inject import Injection
from sipload.scenario.instances import Instances, located, retransmitted
from sipload.scenario.matching import (
    FATAL,
    IN_DIALOG_ONLY,
    REQUEST_EVENTS,
    branch_target,
    classify,
    describe,
    entry_steps,
    find_taker,
    label,
    recv_owner,
    skip_optional,
    unexpected_refresh,
)
from sipload.scenario.messages import automatic_marks, failed_check, run_captures, sample_pause
from sipload.scenario.model import (
    Body,
    CheckStep,
    DtmfStep,
    FailStep,
    GotoStep,
    NopStep,
    PauseStep,
    Program,
    RecvStep,
    ReplyStep,
    SendStep,
    SetStep,
    TerminateStep,
)
from sipload.scenario.sending import Sender
from sipload.sip import sdp
from sipload.sip.errors import LocalProtocolError, ParseError
from sipload.sip.message import Message, Request
from sipload.sip.timerheap import TimerHeap
from sipload.stats.records import CallRecord, Failure, Result
from sipload.ua.agent import UserAgent
from sipload.ua.events import Event, EventType

__all__ = ["MAX_STEPS", "CallInstance", "Rng", "RunContext", "Runner"]

MAX_STEPS = 10_000
INBOX = 16

E = EventType


class Runner:
    """Runs a :class:`Program` for many calls on one :class:`UserAgent`."""

    def __init__(self, program: Program, ua: UserAgent, ctx: RunContext, rng: Rng,
                 injection: Injection | None = None) -> None:
        self.program = program
        self.ua = ua
        self.ctx = ctx
        self.rng = rng
        self.injection = injection if injection is not None else program.injection
        self.instances = Instances(program, ua, ctx, rng, self.injection)
        self._instances = self.instances.by_iid  #: the calls in progress, by iid
        self.index = CallIndex()
        self.sender = Sender(program, ua, ctx, rng, self.index)
        self._timers = TimerHeap[int]()  #: instance deadlines, by iid
        self._finished: list[CallRecord] = []
        self.call_number_base = 0
        #: responses received by calls, by code, since the engine last took them
        #: (the per-second chart counts them when they arrive, not when calls end)
        self.codes_received: dict[str, int] = {}
        self.media = self.sender.media
        steps = program.steps
        self._first, self._takers = entry_steps(program)  # rule 4 (b), (c)
        cfg = ua.config  # the UA accepts what the scenario means to receive
        recv_methods = [m.method for s in steps if isinstance(s, RecvStep)
                        for m in s.matchers if m.method and m.method not in ("ACK", "CANCEL")]
        if program.allow or recv_methods:
            cfg.allow = tuple(dict.fromkeys((*cfg.allow, *program.allow, *recv_methods)))
        if program.supported:
            cfg.supported = tuple(dict.fromkeys((*cfg.supported, *program.supported)))
        if any(isinstance(s, RecvStep) and s.accepts_request("OPTIONS") for s in steps):
            cfg.answer_options = False  # the scenario answers OPTIONS itself

    # ------------------------------------------------------------------ engine surface

    @property
    def active(self) -> int:
        return len(self._instances)

    @property
    def started(self) -> int:
        """Calls started so far (UAC and UAS)."""
        return self.instances.started

    def take_codes(self) -> dict[str, int]:
        """Response codes received since the last call, by code."""
        out = self.codes_received
        self.codes_received = {}
        return out
    def call_quiet(self, call_id: str) -> None:
        """The call in progress that uses ``call_id`` has gone quiet (the shell saw no
        message of it for a while): its UA calls drop what only speeds up their next
        requests (:meth:`UserAgent.call_quiet <sipload.ua.agent.UserAgent.call_quiet>`)."""
        hit = self.index.by_callid.get(call_id)
        inst = self._instances.get(hit[0]) if hit is not None else None
        if inst is not None:
            for leg in inst.legs.values():
                if leg.cid:
                    self.ua.call_quiet(leg.cid)

    def call_number_of(self, call_id: str) -> int | None:
        """The number of the call in progress that uses ``call_id`` (any of its legs)."""
        hit = self.index.by_callid.get(call_id)
        if hit is None:
            return None
        inst = self._instances.get(hit[0])
        return inst.record.call_number if inst is not None else None

    @property
    def stamp_sends(self) -> bool:
        """The shell stamps what it writes (see :class:`Sender`)."""
        return self.sender.stamp_sends

    @stamp_sends.setter
    def stamp_sends(self, value: bool) -> None:
        self.sender.stamp_sends = value

    def stamp_sent(self, stamps: Sequence[float]) -> None:
        """The shell wrote the UA's queue: its message ``i`` at ``stamps[i]``."""
        self.sender.stamp_sent(stamps)

    def media_flush(self, now: float) -> None:
        """Start or update the RTP of the offer/answer exchanges completed since the last
        call (the engine calls this after each batch of events); a leg that needs media
        and got none fails its call."""
        media = self.media
        while media.pending:
            pending = media.pending
            media.pending = []
            for inst, leg, remote_is_answer in pending:
                if not inst.done:
                    detail = media.completed(inst, leg, remote_is_answer, now)
                    if detail is not None:
                        self._fail(inst, Failure.MEDIA, detail, now)

    def finished(self) -> list[CallRecord]:
        """Records of the calls that ended since the last call, with their marks.

        Marks are computed here, not when the call ends: a call may end right
        after a send whose stamp comes in :meth:`stamp_sent` (take records after it).
        """
        out = self._finished
        self._finished = []
        for rec in out:
            if rec.messages:
                rec.end = max(rec.end, max(m[0] for m in rec.messages))
            automatic_marks(rec)
        return out

    def next_deadline(self) -> float | None:
        return self._timers.peek()

    def start_call(self, call_number: int, intended: float, now: float,
                   user: int | None = None) -> CallInstance:
        """Start call ``call_number`` of a UAC scenario (placed by ``user``, 0-based,
        in the closed model: it picks the row of a USER-order injection file)."""
        inst = self.instances.new(call_number, intended, now, user)
        self._run(inst, now)
        return inst

    def handle_timers(self, now: float) -> None:
        while True:
            due = self._timers.pop_due(now)
            if not due:
                return
            for iid in due:
                inst = self._instances.get(iid)
                if inst is not None and inst.deadline <= now:  # INF: the wait ended already
                    inst.deadline = INF
                    self._on_deadline(inst, now)

    def on_event(self, ev: Event, now: float) -> None:
        """Route one UA event to the call it belongs to (or start a UAS call)."""
        if ev.type == E.BAD_MESSAGE:
            return
        target: tuple[int, str] | None = None
        if ev.cid:
            target = self.index.by_cid.get(ev.cid)
        if target is None and ev.rid:
            target = self.index.by_rid.get(ev.rid)
        if target is None and ev.tid and ev.type not in REQUEST_EVENTS:
            target = self.index.by_tid.get(ev.tid)
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

    def _incoming(self, ev: Event, now: float) -> None:
        """A new call or out-of-dialog request nobody owns yet (rule 4)."""
        req = ev.request
        if req is None:
            return
        method = req.method
        try:
            call_id = req.call_id
        except ParseError:
            call_id = ""
        hit = self.index.by_callid.get(call_id)
        if hit is not None:
            inst = self._instances.get(hit[0])
            if inst is not None and not inst.done:
                self._deliver_new(inst, hit[1], ev, now)
                return
        if method in self._takers:
            found = find_taker(self.program.steps, self._takers[method],
                               self._instances.values(), req, self.ua)
            if found is not None:
                self._deliver_new(found[0], found[1], ev, now)
                return
        first = self._first
        if first is not None and first.accepts_request(method) and (
                not first.match or failed_check(first.match, req, {}) is None):
            inst = self.instances.new(self.call_number_base + self.instances.started, now,
                                      now)
            self._deliver_new(inst, first.leg, ev, now)  # not waiting yet: goes to the inbox
            self._run(inst, now)
            return
        self._refuse(ev, method, now)

    def _refuse(self, ev: Event, method: str, now: float) -> None:
        uas = self.program.role == "uas"
        try:
            if ev.type == E.CALL_INVITE:
                self.ua.call_send_answer(ev.tid, 488 if uas else 480, None, now)
            elif method == "OPTIONS":
                if not self.ua.config.answer_options:
                    self.ua.message_send_answer(ev.tid, 200, None, now)
            else:
                self.ua.message_send_answer(ev.tid, 481 if method == "NOTIFY" else 405, None,
                                            now)
        except LocalProtocolError:
            pass

    def _deliver_new(self, inst: CallInstance, leg_name: str, ev: Event, now: float) -> None:
        leg = inst.leg(leg_name)
        if ev.type == E.CALL_INVITE and ev.cid and leg.cid and leg.cid != ev.cid:
            self.index.by_cid.pop(leg.cid, None)
            leg.reset_call()
        req = ev.request
        if req is not None:
            try:
                call_id = req.call_id
            except ParseError:
                call_id = ""
            if call_id and call_id not in self.index.by_callid:
                self.index.by_callid[call_id] = (inst.iid, leg_name)
                inst.call_ids.append(call_id)
            leg.call_id = call_id
            if leg_name == "main" or not inst.vars.get("call_id"):
                inst.vars["call_id"] = call_id
        self._deliver(inst, leg_name, ev, now)

    def _set_deadline(self, inst: CallInstance, deadline: float) -> None:
        inst.deadline = deadline
        self._timers.schedule(inst.iid, None if deadline == INF else deadline)

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
        if self.ua.state.located:  # a located target (RFC 3263): where each request went
            located(inst, self.ua)
        for leg in inst.legs.values():
            if leg.cid:
                retransmitted(rec, self.ua.call_take_retransmissions(leg.cid))
        for leg in inst.legs.values():
            if teardown and leg.live:
                try:
                    self.ua.call_terminate(leg.cid, leg.did, now)
                except LocalProtocolError:
                    pass
        self.index.forget(inst)
        self._timers.discard(inst.iid)
        del self._instances[inst.iid]
        self.media.finish(inst, now)
        self._finished.append(rec)

    def _check_step(self, inst: CallInstance, step: CheckStep, now: float) -> bool:
        """Run a check step's conditions; False when one failed (the call failed)."""
        leg = inst.leg(step.leg)
        for c in step.checks:
            why = self.media.check(inst, leg, c.media) if c.media is not None else None
            if why is not None:
                self._fail(inst, Failure.MEDIA, f"{c.name}: {why}", now)
                return False
        on_message = tuple(c for c in step.checks if c.media is None)
        if not on_message:
            return True
        if leg.last is None:
            self._fail(inst, Failure.CHECK_FAILED, "nothing received to check", now)
            return False
        bad = failed_check(on_message, leg.last, self.sender.values(inst, leg))
        if bad is not None:
            self._fail(inst, Failure.CHECK_FAILED, bad, now)
            return False
        return True

    def _dtmf_rtp(self, inst: CallInstance, step: DtmfStep, now: float) -> None:
        """RFC 4733: queue the digits on the leg's RTP stream and wait while they play."""
        duration = step.duration_ms / 1000.0
        gap = max(step.gap - duration, 0.02)  # step.gap: from one digit's start to the next's
        why = self.media.dtmf(inst, inst.leg(step.leg), step.digits, duration, gap)
        if why is not None:
            self._fail(inst, Failure.CANNOT_SEND, why, now)
            return
        inst.sub = len(step.digits)
        inst.waiting = "pause"
        self._set_deadline(inst, now + len(step.digits) * (duration + gap))

    def _fail(self, inst: CallInstance, failure: Failure, detail: str, now: float) -> None:
        inst.record.fail(failure, detail, now, inst.pc + 1)
        self._finish(inst, now, teardown=True)

    # ------------------------------------------------------------------ events

    def _bind(self, inst: CallInstance, leg: Leg, ev: Event) -> None:
        if ev.cid and not leg.cid:
            leg.cid = ev.cid
            self.index.by_cid[ev.cid] = (inst.iid, leg.name)
            try:
                self.ua.call_set_reference(ev.cid, inst.iid)
            except LocalProtocolError:
                pass
        if ev.did and not leg.did and ev.cid == leg.cid:
            leg.did = ev.did

    def _deliver(self, inst: CallInstance, leg_name: str, ev: Event, now: float) -> None:
        leg = inst.leg(leg_name)
        rec = inst.record
        etype = ev.type
        if ev.retransmitted:
            retransmitted(rec, ev.retransmitted)
        if etype == E.CALL_RELEASED:
            if ev.cid == leg.cid:
                self._released(inst, leg, ev.reason, now)
            return
        self._bind(inst, leg, ev)
        if etype in FATAL:
            if inst.waiting != "terminate":
                self._fail(inst, FATAL[etype], ev.reason or etype.value, now)
            return
        is_request = etype in REQUEST_EVENTS
        if is_request and unexpected_refresh(self.program.steps, inst, leg_name, ev, self.ua):
            self._answer_refresh(inst, leg, ev, now)
            return
        if is_request and ev.request is not None:
            req = ev.request
            leg.last = req
            if req.method not in ("ACK", "PRACK"):  # no answer of theirs to give: a
                leg.last_method = req.method      # reply still answers the INVITE
                leg.last_tid = ev.tid
            if req.body and req.method in ("INVITE", "UPDATE", "ACK", "PRACK"):
                leg.remote_sdp = req.body
                if req.method in ("ACK", "PRACK") and leg.has_local_sdp:
                    self.media.exchanged(inst, leg, True)  # the answer to our offer
        elif ev.response is not None:
            resp = ev.response
            rec.codes.append(resp.status)
            key = str(resp.status)
            self.codes_received[key] = self.codes_received.get(key, 0) + 1
            leg.last = resp
            try:
                cmethod = resp.cseq.method
            except ParseError:
                cmethod = ""
            if resp.body and cmethod in ("INVITE", "UPDATE", "PRACK") and \
                    resp.status < 300:
                leg.remote_sdp = resp.body
                if leg.has_local_sdp:
                    self.media.exchanged(inst, leg, True)
            if resp.status >= 200 and cmethod != "INVITE":
                self.index.by_tid.pop(ev.tid, None)
        else:
            # a request of ours failed without an answer (timer F, transport)
            if ev.reason and inst.waiting != "terminate":
                failure = Failure.MAX_RETRANSMISSIONS if "timer" in ev.reason \
                    else Failure.TRANSPORT
                what = ev.request.method if ev.request is not None else etype.value
                self._fail(inst, failure, f"{what}: {ev.reason}", now)
            return
        rec.messages.append((now, "in", label(ev)))
        w = inst.waiting
        if w == "terminate":
            return
        if w == "dtmf" and not is_request and ev.tid == inst.wait_tid:
            assert ev.response is not None
            self._dtmf_answered(inst, ev.response.status, now)
            return
        if w == "recv":
            self._match(inst, leg_name, ev, now)
        elif not is_request and ev.response is not None and ev.response.status < 200:
            return  # nobody waits: a provisional response needs no keeping
        elif len(inst.inbox) < INBOX:
            inst.queue(leg_name, ev)
        else:
            self._fail(inst, Failure.UNEXPECTED, f"{label(ev)} while not waiting", now)

    def _answer_refresh(self, inst: CallInstance, leg: Leg, ev: Event, now: float) -> None:
        req = ev.request
        assert req is not None
        queued = self.ua.queued()
        try:
            resp = self.ua.call_build_answer(ev.tid, 200)
            if req.body:
                saved, leg.remote_sdp = leg.remote_sdp, req.body
                data, ct = self.sender.body(inst, leg, Body(None, "answer"), None,
                                      self.sender.values(inst, leg))
                leg.remote_sdp = saved
                if data is not None:
                    resp.set_body(data, ct)
            self.ua.call_send_answer(ev.tid, 200, resp, now)
        except (LocalProtocolError, ParseError, sdp.SdpError):
            return
        inst.record.messages.append((now, "in", f"{req.method} (session refresh)"))
        self.sender.log_out(inst, f"200 {req.method}", now, queued)

    def _released(self, inst: CallInstance, leg: Leg, reason: str, now: float) -> None:
        self.media.stop_leg(inst, leg, now)
        leg.released = True
        leg.release_reason = reason
        self.index.by_cid.pop(leg.cid, None)
        steps = self.program.steps
        if inst.pc >= len(steps):
            return
        step = steps[inst.pc]
        if step.leg != leg.name:
            return
        if inst.waiting == "terminate":
            inst.waiting = ""
            inst.deadline = INF
            inst.pc += 1
            self._run(inst, now)
        elif inst.waiting == "dtmf":
            self._fail(inst, Failure.UNEXPECTED, f"call ended ({reason})", now)
        elif inst.waiting == "recv" and isinstance(step, RecvStep) and not any(
                m.method and m.method not in IN_DIALOG_ONLY for m in step.matchers):
            self._fail(inst, Failure.UNEXPECTED,
                       f"call ended ({reason}) while waiting for {step.expected}", now)

    def _dtmf_answered(self, inst: CallInstance, status: int, now: float) -> None:
        if status < 200:
            return
        if status >= 300:
            self._fail(inst, Failure.REJECTED, f"INFO answered {status}", now)
            return
        inst.waiting = ""
        inst.deadline = INF
        inst.sub += 1
        step = self.program.steps[inst.pc]
        assert isinstance(step, DtmfStep)
        due = inst.sent_at + step.gap  # the gap runs from one digit's INFO to the next's
        if due > now and inst.sub < len(step.digits):
            inst.waiting = "pause"
            self._set_deadline(inst, due)
            return
        self._run(inst, now)

    def _match(self, inst: CallInstance, leg_name: str, ev: Event, now: float) -> None:
        kind, j = classify(self.program.steps, inst, leg_name, ev, self.ua)
        if kind == "accept":
            self._accept(inst, j, ev, now)
        elif kind == "defer":
            if len(inst.inbox) < INBOX:
                inst.queue(leg_name, ev)
            else:
                self._fail(inst, Failure.UNEXPECTED, f"{label(ev)} on leg {leg_name}", now)
        elif kind == "fail":
            self._unexpected(inst, ev, now)

    def _unexpected(self, inst: CallInstance, ev: Event, now: float) -> None:
        want = self.program.steps[inst.pc]
        expected = want.expected if isinstance(want, RecvStep) else "?"
        status = ev.response.status if ev.response is not None and \
            ev.type not in REQUEST_EVENTS else 0
        if status >= 300:
            assert ev.response is not None
            self._fail(inst, Failure.REJECTED, f"{describe(ev.response)} (expected {expected})",
                       now)
        else:
            got = ev.request.method if ev.request is not None and not status else str(status)
            self._fail(inst, Failure.UNEXPECTED, f"{got} (expected {expected})", now)

    def _accept(self, inst: CallInstance, j: int, ev: Event, now: float) -> None:
        s = self.program.steps[j]
        assert isinstance(s, RecvStep)
        inst.pc = j
        inst.waiting = ""
        inst.deadline = INF
        is_request = ev.type in REQUEST_EVENTS
        msg: Message | None = ev.request if is_request else ev.response
        leg = inst.legs.get(s.leg)
        if msg is not None:
            if s.authenticate and isinstance(msg, Request):
                why = self.sender.authenticate(inst, msg, now)
                if why:
                    self._fail(inst, Failure.CHECK_FAILED, f"authenticate: {why}", now)
                    return
            bad = run_captures(s.captures, msg, inst.vars)
            if bad is None:
                bad = failed_check(s.checks, msg, self.sender.values(inst, leg))
            if bad is not None:
                self._fail(inst, Failure.CHECK_FAILED, bad, now)
                return
        mark_timers(inst, s.start_timer, s.stop_timer, now)
        target = branch_target(s, j, ev)
        inst.pc = target
        self._run(inst, now)

    def _on_deadline(self, inst: CallInstance, now: float) -> None:
        w = inst.waiting
        inst.waiting = ""
        steps = self.program.steps
        if w == "pause":
            if not isinstance(steps[inst.pc], DtmfStep):
                inst.pc += 1
            self._run(inst, now)
        elif w == "recv":
            owner = steps[inst.wait_owner] if inst.wait_owner >= 0 else steps[inst.pc]
            if isinstance(owner, RecvStep) and owner.on_timeout >= 0:
                mark_timers(inst, owner.start_timer, owner.stop_timer, now)
                inst.pc = owner.on_timeout
                self._run(inst, now)
                return
            j = skip_optional(steps, inst.pc)
            if j > inst.pc:
                inst.pc = j
                self._run(inst, now)
                return
            step = steps[inst.pc]
            expected = step.expected if isinstance(step, RecvStep) else "?"
            self._fail(inst, Failure.TIMEOUT, f"waiting for {expected}", now)
        elif w == "terminate":
            inst.pc += 1
            self._run(inst, now)
        elif w == "dtmf":
            self._fail(inst, Failure.TIMEOUT, "waiting for the answer to INFO", now)

    # ------------------------------------------------------------------ running steps

    def _forget_last(self, inst: CallInstance) -> None:
        """A waiting call drops the last message of each leg when no template reads it
        (``Program.keeps_last``): a check reads the message that completes its own
        step, and nothing else does; a held call then keeps no parsed message."""
        if not self.program.keeps_last:
            for leg in inst.legs.values():
                leg.last = None

    def _wait_recv(self, inst: CallInstance, now: float) -> None:
        """Wait at the recv chain starting at ``pc``; take what the inbox holds for it."""
        steps = self.program.steps
        owner = recv_owner(steps, inst.pc)
        step = steps[owner]
        assert isinstance(step, RecvStep)
        timeout = step.timeout if step.timeout is not None else self.program.recv_timeout
        inst.waiting = "recv"
        inst.wait_owner = owner
        self._set_deadline(inst, now + timeout)
        if not inst.inbox:
            self._forget_last(inst)
        i = 0
        while i < len(inst.inbox):
            leg_name, ev = inst.inbox[i]
            kind, k = classify(self.program.steps, inst, leg_name, ev, self.ua)
            if kind == "defer":
                i += 1
                continue
            del inst.inbox[i]
            if kind == "ignore":
                continue
            if kind == "accept":
                self._accept(inst, k, ev, now)
            else:
                self._unexpected(inst, ev, now)
            return

    def _run(self, inst: CallInstance, now: float) -> None:
        steps = self.program.steps
        self.ua.state.source = inst.local  # what the call starts leaves from its address
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
                self._wait_recv(inst, now)
                return
            if isinstance(step, SendStep | ReplyStep):
                failed = self.sender.send(inst, step, now) if isinstance(step, SendStep) \
                    else self.sender.reply(inst, step, now)
                if failed is not None:
                    self._fail(inst, failed[0], failed[1], now)
                    return
            elif isinstance(step, PauseStep):
                inst.waiting = "pause"
                self._set_deadline(inst, now + sample_pause(step, self.rng))
                if not inst.inbox:
                    self._forget_last(inst)
                return
            elif isinstance(step, DtmfStep):
                if inst.sub >= len(step.digits):
                    inst.sub = 0
                elif step.mode == "rfc4733":
                    self._dtmf_rtp(inst, step, now)
                    return
                else:
                    failed = self.sender.dtmf(inst, step, now)
                    if failed is not None:
                        self._fail(inst, failed[0], failed[1], now)
                    else:
                        self._set_deadline(inst, now + 64 * self.ua.config.timers.t1 + 1)
                    return
            elif isinstance(step, TerminateStep):
                if self._terminate(inst, step, now):
                    return
            elif isinstance(step, GotoStep):
                if self._goto(inst, step):
                    continue
            elif isinstance(step, SetStep):
                for name, tmpl in step.values:
                    inst.vars[name] = tmpl.render(self.sender.values(inst, inst.legs.get(step.leg)))
            elif isinstance(step, CheckStep):
                if not self._check_step(inst, step, now):
                    return
            elif isinstance(step, FailStep):
                detail = step.detail.render(self.sender.values(inst, inst.legs.get(step.leg))) \
                    if step.detail is not None else f"fail: {step.reason}"
                inst.record.fail(step.reason, detail, now, inst.pc + 1)
                self._finish(inst, now, teardown=True)
                return
            elif isinstance(step, NopStep):
                mark_timers(inst, step.start_timer, step.stop_timer, now)
            inst.pc += 1

    def _terminate(self, inst: CallInstance, step: TerminateStep, now: float) -> bool:
        """End the leg's call; True when the call now waits for its release."""
        leg = inst.leg(step.leg)
        if not leg.live:
            return False
        queued = self.ua.queued()
        try:
            self.ua.call_terminate(leg.cid, leg.did, now)
        except LocalProtocolError as e:
            self._fail(inst, Failure.CANNOT_SEND, f"terminate: {e}", now)
            return True
        self.sender.log_out(inst, "terminate", now, queued)
        if step.wait and not inst.done:
            inst.waiting = "terminate"
            self._set_deadline(inst, now + 64 * self.ua.config.timers.t1 + 1)
            return True
        return False

    def _goto(self, inst: CallInstance, step: GotoStep) -> bool:
        if step.when_var:
            value = inst.var(step.when_var)
            if step.when_equals is not None and \
                    value != step.when_equals.render(self.sender.values(inst, None)):
                return False
            if step.when_matches is not None and not step.when_matches.search(value):
                return False
            if step.when_equals is None and step.when_matches is None and not value:
                return False
        if step.max:
            if inst.gotos.get(inst.pc, 0) >= step.max:
                return False
            inst.count_goto(inst.pc)
        inst.pc = step.target
        return True
