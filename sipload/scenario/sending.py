"""Sending steps of a scenario: requests, replies, DTMF, the UAS's digest side, SDP with RTP.

SDP bodies of legs with RTP carry its codecs, ptime and SSRC (:mod:`scenario.mediacalls`).

:class:`Sender` is its own object, which the runner holds.  Each method builds
the user agent's default message (eXosip style), applies the step's overrides,
sends it, records it on the call, and answers None or why it could not send
(:data:`Failed`): failing the call is the runner's job.
"""

from __future__ import annotations

from collections.abc import Sequence

from sipload.scenario.calls import (
    CallIndex,
    CallInstance,
    Leg,
    Rng,
    RunContext,
    Values,
    mark_timers,
)
from sipload.scenario.mediacalls import MediaCalls
from sipload.scenario.messages import MediaSdp, apply_overrides, body_bytes
from sipload.scenario.model import (
    Body,
    DtmfStep,
    Program,
    ReplyStep,
    SendStep,
)
from sipload.sip import sdp
from sipload.sip.digest import DigestError, DigestServer, parse_credentials
from sipload.sip.errors import LocalProtocolError, ParseError
from sipload.sip.message import Request, Response
from sipload.stats.records import Failure
from sipload.ua.agent import UserAgent

_UA_ANSWERS = frozenset({"BYE", "CANCEL"})
"""Requests the UA answers itself: a 2xx reply step after them has nothing to do (nor a
487 after CANCEL: the UA answered the INVITE 487 when the CANCEL came)."""


Unstamped = tuple[CallInstance, tuple[float, str, str], int, SendStep | ReplyStep | None]
"""A message logged as sent whose bytes the shell has not written yet: (call, its entry in
the call's message log, its index in the UA's send queue, the step that sent it)."""

Failed = tuple[Failure, str]
"""Why a step could not send: the call fails with it (None: sent)."""


class Sender:
    """Sends what the steps of a scenario say, on one user agent, for many calls.

    It records what it sent on the call (ladder, ``branch``/``cseq`` variables,
    timers) and indexes what it started (:class:`CallIndex`); it never fails a
    call itself: each step answers None or why it could not send.

    Send stamps: a step logs its message at the ``now`` it ran, but the time that
    counts is when the bytes were written.  With :attr:`stamp_sends` set, the shell
    calls :meth:`stamp_sent` after writing the UA's queue, with one stamp per
    datagram; each message logged since then gets its datagram's stamp (found by
    its index in the queue), and so do the timers its step started or stopped.
    """

    def __init__(self, program: Program, ua: UserAgent, ctx: RunContext, rng: Rng,
                 index: CallIndex) -> None:
        self.program = program
        self.ua = ua
        self.ctx = ctx
        self.rng = rng
        self.index = index
        self._digest: dict[tuple[str, str, tuple[str, ...]], DigestServer] = {}
        self._nonces = 0
        self.stamp_sends = False  #: the shell calls stamp_sent after each write
        self._unstamped: list[Unstamped] = []
        self.media = MediaCalls(program)  #: RTP of the calls (once the engine attaches a table)

    def values(self, inst: CallInstance, leg: Leg | None) -> Values:
        return Values(inst.vars, leg, self.ua, inst.consts)

    def log_out(self, inst: CallInstance, label: str, now: float, queued_before: int,
                step: SendStep | ReplyStep | None = None) -> None:
        """Log a message sent; if it was queued, its send stamp comes in :meth:`stamp_sent`."""
        entry = (now, "out", label)
        if self.stamp_sends and self.ua.queued() > queued_before:
            self._unstamped.append((inst, entry, queued_before, step))
        inst.record.messages.append(entry)

    def stamp_sent(self, stamps: Sequence[float]) -> None:
        """The shell wrote the UA's queue: its message ``i`` at ``stamps[i]`` (see the class)."""
        for inst, entry, q, step in self._unstamped:
            if q >= len(stamps):
                continue
            rec = inst.record
            msgs = rec.messages
            # Found by value, from the end (retransmissions may have been sorted in);
            # not by identity: compiled by mypyc, a tuple is boxed anew when stored.
            i = len(msgs) - 1
            while i >= 0 and msgs[i] != entry:
                i -= 1
            if i < 0:
                continue
            t, direction, label = entry
            s = stamps[q]
            msgs[i] = (s, direction, label)
            if i == 0 and rec.actual_start == t:
                rec.actual_start = s  # a call starts when its first message is written
            if step is None:
                continue
            if step.start_timer and inst.timers.get(step.start_timer) == t:
                inst.start_timer(step.start_timer, s)
            started = inst.timers.get(step.stop_timer) if step.stop_timer else None
            if started is not None and step.stop_timer in rec.marks:
                rec.marks[step.stop_timer] = max(0.0, s - started)
        self._unstamped.clear()

    # ------------------------------------------------------------------ sending

    def body(self, inst: CallInstance, leg: Leg, body: Body | None,
              ctype: str | None, values: Values) -> tuple[bytes | None, str | None]:
        if body is None:
            return None, ctype
        ip = inst.var("media_ip") or self.ctx.local_host
        spec = self.media.spec(leg) if body.sdp else None
        media: MediaSdp | None = None
        if spec is not None:
            calls = self.media
            media = MediaSdp(spec.offer_codecs, spec.ptime_ms,
                             lambda desc, answering: calls.announce(inst, leg, desc, answering),
                             spec.proto)
        port = self.ctx.locals[inst.local][3] if self.ctx.locals else self.ctx.media_port
        data, ct = body_bytes(body, leg, values, ip, port,
                              inst.record.call_number + 1, ctype, media)
        if spec is not None and body.sdp == "answer":
            self.media.exchanged(inst, leg, False)  # RTP starts with our answer
        return data, ct

    def _address(self, text: str) -> str:
        return text if "<" in text else f"<{text}>"

    def _sent(self, inst: CallInstance, req: Request, now: float, queued_before: int,
              step: SendStep | None = None) -> None:
        v = inst.vars
        try:
            v["branch"] = req.via.branch or ""
            v["cseq"] = str(req.cseq.seq)
        except ParseError:
            pass
        self.log_out(inst, req.method, now, queued_before, step)

    def send(self, inst: CallInstance, step: SendStep, now: float) -> Failed | None:
        """Build the UA's default request for ``step``, apply its overrides, send it."""
        ua = self.ua
        queued = ua.queued()
        leg = inst.leg(step.leg)
        values = self.values(inst, leg)
        m = step.method
        prog = self.program
        ctype = step.content_type.render(values) if step.content_type is not None else None
        if leg.cid and m not in ("INVITE", "REGISTER") and not step.out_of_dialog and (
                leg.released or ua.call_state(leg.cid) is None):
            return (Failure.UNEXPECTED,
                    f"{m}: the call already ended ({leg.release_reason or 'released'})")
        try:
            route = step.route.render(values) if step.route is not None else None
            req: Request
            if m == "INVITE" and not leg.live:
                if leg.cid:
                    leg.reset_call()
                to = self._address((step.to or prog.to).render(values))
                from_ = self._address((step.from_ or prog.from_).render(values))
                req = ua.call_build_initial_invite(
                    to, from_, route, step.subject.render(values) if step.subject else None)
                if step.request_uri is not None:
                    req.uri_text = step.request_uri.render(values)
                body, ct = self.body(inst, leg, step.body, ctype, values)
                apply_overrides(req, step.headers, body, ct, values)
                cid = ua.call_send_initial_invite(req, now)
                ua.call_set_reference(cid, inst.iid)
                leg.cid = cid
                self.index.by_cid[cid] = (inst.iid, leg.name)
                self.index.own_call_id(inst, leg, req.call_id)
            elif m == "ACK":
                if not leg.did:
                    raise LocalProtocolError("ACK before any 2xx")
                if not step.headers and step.body is None and ctype is None:
                    branch, seq = ua.call_send_default_ack(leg.did, now)  # nothing to change
                    inst.vars["branch"] = branch
                    inst.vars["cseq"] = str(seq)
                    self.log_out(inst, m, now, queued, step)
                    mark_timers(inst, step.start_timer, step.stop_timer, now)
                    return None
                req = ua.call_build_ack(leg.did)
                body, ct = self.body(inst, leg, step.body, ctype, values)
                apply_overrides(req, step.headers, body, ct, values)
                ua.call_send_ack(leg.did, req, now)
            elif m == "CANCEL":
                if not leg.cid:
                    raise LocalProtocolError("CANCEL with no call")
                ua.call_terminate(leg.cid, 0, now)
                self.log_out(inst, m, now, queued, step)
                mark_timers(inst, step.start_timer, step.stop_timer, now)
                return None
            elif m == "REGISTER":
                expires = step.expires if step.expires is not None else 3600
                if not leg.rid:
                    host, port = self.ctx.remote_host, self.ctx.remote_port
                    host = f"[{host}]" if ":" in host else host
                    registrar = f"sip:{host}:{port}" if port else f"sip:{host}"
                    from_ = self._address((step.from_ or prog.from_).render(values))
                    rid, req = ua.register_build_initial_register(from_, registrar,
                                                                   expires=expires)
                    leg.rid = rid
                    self.index.by_rid[rid] = (inst.iid, leg.name)
                    self.index.own_call_id(inst, leg, req.call_id, main_too=False)
                else:
                    req = ua.register_build_register(leg.rid, expires)
                if step.request_uri is not None:
                    req.uri_text = step.request_uri.render(values)
                if step.to is not None:
                    req.set_header("To", self._address(step.to.render(values)))
                if route is not None:
                    req.set_header("Route", route)
                body, ct = self.body(inst, leg, step.body, ctype, values)
                apply_overrides(req, step.headers, body, ct, values)
                ua.register_send_register(leg.rid, req, now)
            elif leg.did and not step.out_of_dialog and leg.live:
                req = ua.call_build_request(leg.did, m)
                body, ct = self.body(inst, leg, step.body, ctype, values)
                apply_overrides(req, step.headers, body, ct, values)
                tid = ua.call_send_request(leg.did, req, now)
                self.index.track_tid(inst, leg, tid)
            else:
                to = self._address((step.to or prog.to).render(values))
                from_ = self._address((step.from_ or prog.from_).render(values))
                req = ua.message_build_request(m, to, from_, route)
                if step.request_uri is not None:
                    req.uri_text = step.request_uri.render(values)
                if step.subject is not None:
                    req.set_header("Subject", step.subject.render(values))
                body, ct = self.body(inst, leg, step.body, ctype, values)
                apply_overrides(req, step.headers, body, ct, values)
                tid = ua.message_send_request(req, now)
                self.index.track_tid(inst, leg, tid)
                self.index.own_call_id(inst, leg, req.call_id, main_too=False)
        except (LocalProtocolError, ParseError, sdp.SdpError) as e:
            return Failure.CANNOT_SEND, f"{m}: {e}"
        self._sent(inst, req, now, queued, step)
        mark_timers(inst, step.start_timer, step.stop_timer, now)
        return None

    def reply(self, inst: CallInstance, step: ReplyStep, now: float) -> Failed | None:
        """Answer the leg's last request as ``step`` says."""
        leg = inst.leg(step.leg)
        if (step.code < 300 and (leg.last_method in _UA_ANSWERS or (
                leg.last_method == "OPTIONS" and self.ua.config.answer_options))) or (
                leg.last_method == "CANCEL" and step.code == 487):
            mark_timers(inst, step.start_timer, step.stop_timer, now)
            return None  # the UA answered these itself
        if not leg.last_tid:
            return Failure.CANNOT_SEND, f"reply {step.code}: no request to answer"
        values = self.values(inst, leg)
        queued = self.ua.queued()
        try:
            resp = self.ua.call_build_answer(leg.last_tid, step.code)
            if step.reason:
                resp.reason = step.reason
            if step.challenge is not None:
                self._challenge(inst, step, resp, values, now)
            ctype = step.content_type.render(values) if step.content_type else None
            body, ct = self.body(inst, leg, step.body, ctype, values)
            apply_overrides(resp, step.headers, body, ct, values)
            self.ua.call_send_answer(leg.last_tid, step.code, resp, now)
        except (LocalProtocolError, ParseError, sdp.SdpError, DigestError) as e:
            return Failure.CANNOT_SEND, f"reply {step.code}: {e}"
        self.log_out(inst, f"{step.code} {leg.last_method}", now, queued, step)
        mark_timers(inst, step.start_timer, step.stop_timer, now)
        return None

    def dtmf(self, inst: CallInstance, step: DtmfStep, now: float) -> Failed | None:
        """Send the next digit of ``step`` as an INFO; the call then waits for its answer."""
        leg = inst.leg(step.leg)
        digit = step.digits[inst.sub]
        queued = self.ua.queued()
        try:
            if not leg.live:
                raise LocalProtocolError(f"no call on leg {leg.name}")
            info = self.ua.call_build_info(leg.did)
            info.set_body(f"Signal={digit}\r\nDuration={step.duration_ms}\r\n".encode(),
                          "application/dtmf-relay")
            tid = self.ua.call_send_request(leg.did, info, now)
        except LocalProtocolError as e:
            return Failure.CANNOT_SEND, f"INFO: {e}"
        self.index.track_tid(inst, leg, tid)
        self._sent(inst, info, now, queued)
        inst.waiting = "dtmf"
        inst.wait_tid = tid
        inst.sent_at = now
        return None

    # ------------------------------------------------------------------ digest (UAS side)

    def _nonce(self) -> str:
        self._nonces += 1
        return f"{self.rng.randrange(1 << 62):x}{self._nonces:x}"

    def _challenge(self, inst: CallInstance, step: ReplyStep, resp: Response,
                   values: Values, now: float) -> None:
        spec = step.challenge
        assert spec is not None
        realm = spec.realm.render(values) if spec.realm is not None else (
            inst.vars.get("realm") or "sipload")
        key = (realm, spec.algorithm, spec.qop)
        server = self._digest.get(key)
        if server is None:
            server = DigestServer(realm, algorithm=spec.algorithm, qop=spec.qop,
                                  nonce_factory=self._nonce)
            self._digest[key] = server
        inst.digest = server
        name = "Proxy-Authenticate" if step.code == 407 else "WWW-Authenticate"
        resp.add_header(name, server.challenge(spec.stale, now=now).to_header())

    def authenticate(self, inst: CallInstance, req: Request, now: float) -> str:
        """Why ``req``'s digest credentials are not good ("" when they are)."""
        value = req.get("authorization") or req.get("proxy-authorization")
        if value is None:
            return "no credentials"
        try:
            creds = parse_credentials(value)
        except DigestError as e:
            return f"malformed credentials: {e}"
        server = inst.digest
        if server is None or server.realm != creds.realm:
            server = next((s for s in self._digest.values() if s.realm == creds.realm), None)
        if server is None:
            return f"no challenge was issued for realm {creds.realm!r}"
        user, password = inst.vars.get("username", ""), inst.vars.get("password", "")
        result = server.verify(creds, method=req.method, now=now, body=req.body,
                               password_lookup=lambda u: password if u == user else None,
                               request_uri=req.uri_text)
        if result.ok:
            return ""
        return f"{result.status.value} ({result.reason})"
