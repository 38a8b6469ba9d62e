"""The tester's harness: a user agent on sockets, plus a tracer of every message.

Theory of operation
===================

1. A :class:`Probe` is one :class:`~sipload.runtime.UARuntime` whose
   :class:`~sipload.transport.TransportSet` is wrapped: every byte string the
   runtime (or a case) sends, and every one that arrives, goes through the
   :class:`Tracer` first, which timestamps it (the loop's monotonic clock) and
   appends it to the current case's ladder.  Nothing is sent that the ladder
   does not show.
2. Two ways to talk to the target share those sockets.  *Scenario cases* use the
   UA through the scenario :class:`~sipload.scenario.interpreter.Runner`
   (:meth:`Probe.run_scenario`), exactly as a load run does.  *Python cases*
   build messages themselves with the core's builders (:meth:`Probe.request`,
   :func:`~sipload.sip.build.make_response`, :func:`uac_dialog`) and send raw
   bytes (:meth:`Probe.send`, :meth:`Probe.send_raw`), so they can send what a
   well-behaved UA never would (a lower CSeq, no To, an unknown scheme).
3. Diversion keeps the two apart: a message whose Call-ID a Python case owns
   (:meth:`Probe.own`; every request built by :meth:`Probe.request` is owned), or
   any message while :attr:`Probe.divert_all` is set (the UAC pack, where the
   target calls the tester), goes to the probe's inbox and never reaches the
   UA, which would otherwise answer it by itself.  Everything else goes to the UA.
4. :meth:`Probe.expect` takes the oldest inbox message matching a predicate,
   waiting at most ``timeout`` seconds; messages that do not match stay in the
   inbox for a later ``expect``.  Every wait is bounded.
5. :meth:`Probe.transact` is a minimal client transaction for raw requests:
   it retransmits over UDP on the RFC 3261 §17.1 schedule (T1 doubling; capped
   at T2 for non-INVITE; INVITE stops at the first provisional) until a final
   response or the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import secrets
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sipload.conformance.ladder import LadderEntry, call_id_of, describe, first_line
from sipload.runtime import UARuntime
from sipload.scenario.calls import RunContext
from sipload.scenario.interpreter import Runner
from sipload.scenario.model import Program, Template
from sipload.sip.build import make_ack_for_non2xx, make_cancel
from sipload.sip.dialog import Dialog, uac_dialog
from sipload.sip.errors import LocalProtocolError, ParseError
from sipload.sip.grammar import split_commas
from sipload.sip.message import Message, Request, Response
from sipload.sip.parser import StreamFramer, parse_message
from sipload.stats.records import CallRecord, Failure, Result
from sipload.transport import Peer, TransportSet
from sipload.ua.agent import UAConfig
from sipload.ua.ids import IdGenerator

PROBE_T1 = 0.5
PROBE_T2 = 4.0

Predicate = Callable[[Message], bool]


@dataclass(slots=True)
class Incoming:
    """A message that arrived for a Python case."""

    msg: Message
    peer: Peer
    at: float  #: loop time of arrival
    data: bytes


@dataclass(slots=True)
class Exchange:
    """What :meth:`Probe.transact` saw for one request."""

    request: Request
    sent_at: float
    final: Response | None = None
    final_at: float = 0.0
    provisionals: list[tuple[float, Response]] = dataclasses.field(default_factory=list)

    @property
    def status(self) -> int:
        return self.final.status if self.final is not None else 0


class Tracer:
    """Timestamps every message both ways and keeps the current case's ladder."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.t0 = loop.time()
        self.entries: list[LadderEntry] = []
        self.inbox: deque[Incoming] = deque()
        self.owned: set[str] = set()
        self.divert_all = False
        self._waiters: set[asyncio.Future[None]] = set()
        self._framers: dict[Peer, StreamFramer] = {}

    def reset(self) -> None:
        """Start a new ladder (a new case); the inbox is emptied."""
        self.t0 = self.loop.time()
        self.entries = []
        self.inbox.clear()

    def record(self, direction: str, data: bytes, peer: Peer) -> None:
        self.entries.append(LadderEntry(
            self.loop.time() - self.t0, direction, describe(peer), first_line(data),
            data.decode("utf-8", "replace")))

    def incoming(self, data: bytes, peer: Peer) -> bool:
        """Record a received message; True when a case owns it (the UA must not see it)."""
        self.record("in", data, peer)
        call_id = call_id_of(data)
        if not self.divert_all and (call_id is None or call_id not in self.owned):
            return False
        try:
            msg = parse_message(data, datagram=peer[0] == "udp")
        except ParseError:
            return True  # owned but unreadable: the ladder shows it
        self.inbox.append(Incoming(msg, peer, self.loop.time(), data))
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        return True

    async def wait(self, timeout: float) -> None:
        """Wait until a new inbox message arrives or ``timeout`` passes."""
        if timeout <= 0:
            await asyncio.sleep(0)
            return
        waiter = self.loop.create_future()
        self._waiters.add(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)


class _TracedTransportSet(TransportSet):
    def __init__(self, tracer: Tracer, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.tracer = tracer

    def send(self, data: bytes, peer: Peer) -> float:
        self.tracer.record("out", data, peer)
        return super().send(data, peer)


class _TracedRuntime(UARuntime):
    """A runtime whose sockets report to a :class:`Tracer` (rule 1)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, owns_loop: bool,
                 tls_client_context: ssl.SSLContext | None = None) -> None:
        super().__init__(loop, owns_loop=owns_loop, tls_client_context=tls_client_context)
        self.tracer = Tracer(loop)
        self.transports = _TracedTransportSet(
            self.tracer, self._on_message, self._on_error,
            tls_client_context=tls_client_context, loop=loop)

    def _on_message(self, data: bytes, peer: Peer, stamp: float) -> None:
        if self.tracer.incoming(data, peer):
            return
        super()._on_message(data, peer, stamp)


def is_response_to(msg: Message, req: Request) -> bool:
    """Whether ``msg`` is a response of ``req``'s transaction (branch, Call-ID, method)."""
    if not isinstance(msg, Response):
        return False
    try:
        return (msg.call_id == req.call_id and msg.cseq.method == req.method
                and msg.cseq.seq == req.cseq.seq and msg.via.branch == req.via.branch)
    except ParseError:
        return False


class Probe:
    """The harness cases run on (see the module docstring).

    Make one with :meth:`open`; close it with :meth:`close`.

    Attributes:
        target: where requests go by default, as (transport, host, port).
        local: the (host, port) the probe listens on.
        alive_method: how the target is known to answer (``OPTIONS`` or ``INVITE``),
            set by the reachability probe; used to check it is still alive.
    """

    def __init__(self, rt: _TracedRuntime, target: Peer, tls_insecure: bool = False,
                 config: UAConfig | None = None, tls_client: ssl.SSLContext | None = None,
                 tls_server: ssl.SSLContext | None = None) -> None:
        self.rt = rt
        self._config = config
        self._tls = (tls_client, tls_server)
        self.tracer = rt.tracer
        self.target = target
        self.local: tuple[str, int] = (rt.address[1], rt.address[2])
        self.ids = IdGenerator(f"cf{secrets.token_hex(3)}x", domain="conformance.sipload")
        self.alive_method = "OPTIONS"
        self.seen_calls: set[str] = set()  #: Call-IDs of the target's calls already taken
        self.rng = random.Random()

    @classmethod
    async def open(cls, target: Peer, *, listen: tuple[str, int] = ("127.0.0.1", 0),
                   tls_insecure: bool = False, tls_server: ssl.SSLContext | None = None
                   ) -> Probe:
        """Bind the probe's socket and start its UA.

        Raises:
            OSError: the listen address cannot be bound.
        """
        from sipload.transport.tls import client_context

        tls = client_context(insecure=tls_insecure) if target[0] == "tls" else None
        config = UAConfig(host=listen[0], port=listen[1], transport=target[0],
                          user="conformance", user_agent="sipload-conformance")
        rt = await _TracedRuntime.start(config, tls_client_context=tls, tls_context=tls_server)
        assert isinstance(rt, _TracedRuntime)
        return cls(rt, target, tls_insecure, config, tls, tls_server)

    async def close(self) -> None:
        await self.rt.aclose()

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        """Listen on one more address (the proxy pack's callee) with the probe's transport."""
        return await self.rt.transports.listen(self.target[0], host, port)

    # ------------------------------------------------------------------ the ladder

    def begin_case(self) -> None:
        self.tracer.reset()

    def ladder(self) -> list[LadderEntry]:
        return list(self.tracer.entries)

    @property
    def divert_all(self) -> bool:
        return self.tracer.divert_all

    @divert_all.setter
    def divert_all(self, value: bool) -> None:
        self.tracer.divert_all = value

    def now(self) -> float:
        return self.rt.loop.time()

    # ------------------------------------------------------------------ building

    def own(self, call_id: str) -> None:
        """Send every message with this Call-ID to the inbox, not to the UA."""
        self.tracer.owned.add(call_id)

    def new_call_id(self) -> str:
        call_id = self.ids.call_id()
        self.own(call_id)
        return call_id

    def tag(self) -> str:
        return self.ids.tag()

    def via(self, branch: str | None = None) -> str:
        host, port = self.local
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return (f"SIP/2.0/{self.target[0].upper()} {hostport}"
                f";branch={branch or self.ids.branch()};rport")

    @property
    def contact(self) -> str:
        host, port = self.local
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        tp = "" if self.target[0] == "udp" else f";transport={self.target[0]}"
        return f"<sip:conformance@{hostport}{tp}>"

    def request(self, method: str, uri: str, *, call_id: str | None = None,
                from_uri: str | None = None, from_tag: str | None = None,
                to: str | None = None, cseq: int = 1, contact: bool | None = None,
                max_forwards: int | None = 70) -> Request:
        """A request outside any dialog, as RFC 3261 §8.1.1 builds one.

        Its Call-ID is owned (rule 3).  ``to`` defaults to the Request-URI; a
        Contact is added to INVITE, REGISTER, SUBSCRIBE and OPTIONS unless
        ``contact`` is False.
        """
        host, port = self.local
        req = Request(method, uri)
        req.add_header("Via", self.via())
        if max_forwards is not None:
            req.add_header("Max-Forwards", str(max_forwards))
        from_uri = from_uri or f"sip:conformance@{host}:{port}"
        req.add_header("From", f"<{from_uri}>;tag={from_tag or self.tag()}")
        req.add_header("To", to or f"<{uri}>")
        req.add_header("Call-ID", call_id or self.new_call_id())
        if call_id is not None:
            self.own(call_id)
        req.add_header("CSeq", f"{cseq} {method}")
        if contact or (contact is None and method in ("INVITE", "REGISTER", "SUBSCRIBE",
                                                      "OPTIONS")):
            req.add_header("Contact", self.contact)
        req.add_header("User-Agent", "sipload-conformance")
        return req

    def in_dialog(self, dialog: Dialog, method: str, *, cseq: int | None = None) -> Request:
        """A request in ``dialog`` (§12.2.1.1) with a fresh Via."""
        req = dialog.create_request(method, cseq=cseq)
        req.prepend_header("Via", self.via())
        if method in ("INVITE", "UPDATE"):
            req.add_header("Contact", self.contact)
        return req

    # ------------------------------------------------------------------ sending

    def send(self, msg: Message, peer: Peer | None = None) -> float:
        """Serialize and send ``msg``; returns the loop time it was sent."""
        return self.send_raw(msg.to_bytes(), peer)

    def send_raw(self, data: bytes, peer: Peer | None = None) -> float:
        """Send bytes as they are (a torture message); returns the send time."""
        self.rt.transports.send(data, peer or self.target)
        return self.now()

    # ------------------------------------------------------------------ receiving

    async def expect(self, predicate: Predicate, timeout: float) -> Incoming | None:
        """The oldest inbox message matching ``predicate``, waiting at most ``timeout`` s."""
        deadline = self.now() + timeout
        while True:
            inbox = self.tracer.inbox
            for item in inbox:
                try:
                    hit = predicate(item.msg)
                except ParseError:
                    hit = False
                if hit:
                    inbox.remove(item)
                    return item
            left = deadline - self.now()
            if left <= 0:
                return None
            await self.tracer.wait(left)

    async def expect_response(self, req: Request, timeout: float,
                              statuses: Callable[[int], bool] = lambda s: True
                              ) -> Incoming | None:
        return await self.expect(
            lambda m: is_response_to(m, req) and statuses(m.status)  # type: ignore[attr-defined]
            , timeout)

    async def expect_request(self, method: str, timeout: float, call_id: str | None = None
                             ) -> Incoming | None:
        def match(m: Message) -> bool:
            return isinstance(m, Request) and m.method == method and (
                call_id is None or m.call_id == call_id)
        return await self.expect(match, timeout)

    async def transact(self, req: Request, *, timeout: float | None = None,
                       peer: Peer | None = None, retransmit: bool = True,
                       until_provisional: bool = False, until_ringing: bool = False
                       ) -> Exchange:
        """Send ``req`` and wait for its final response (rule 5).

        Args:
            timeout: seconds to wait for the final response (default 32 s for
                INVITE, 4 s otherwise, at most 64*T1).
            until_provisional: return at the first provisional response.
            until_ringing: return at the first provisional response above 100.
        """
        return await self.transact_raw(
            req.to_bytes(), req.method, lambda m: is_response_to(m, req), request=req,
            timeout=timeout, peer=peer, retransmit=retransmit,
            until_provisional=until_provisional, until_ringing=until_ringing)

    async def transact_raw(self, data: bytes, method: str, match: Predicate, *,
                           request: Request | None = None, timeout: float | None = None,
                           peer: Peer | None = None, retransmit: bool = True,
                           until_provisional: bool = False, until_ringing: bool = False
                           ) -> Exchange:
        """:meth:`transact` for bytes (a torture message): ``match`` picks its responses.

        The request is retransmitted over UDP on the §17.1 schedule (Timer A
        doubling for INVITE, stopped by a provisional; Timer E capped at T2
        otherwise) until a final response or ``timeout``.
        """
        if timeout is None:
            timeout = 32.0 if method == "INVITE" else 4.0
        ex = Exchange(request if request is not None else Request(method, "sip:unparsed"),
                      self.send_raw(data, peer))
        deadline = ex.sent_at + timeout
        interval = PROBE_T1
        next_retrans = ex.sent_at + interval
        reliable = (peer or self.target)[0] != "udp"
        invite = method == "INVITE"
        while True:
            now = self.now()
            if now >= deadline:
                return ex
            until = deadline
            if retransmit and not reliable and next_retrans < until:
                until = next_retrans
            got = await self.expect(match, until - now)
            now = self.now()
            if got is None:
                if retransmit and not reliable and now >= next_retrans:
                    self.send_raw(data, peer)
                    interval = interval * 2 if invite else min(interval * 2, PROBE_T2)
                    next_retrans = now + interval
                continue
            resp = got.msg
            if not isinstance(resp, Response):
                continue
            if resp.status < 200:
                ex.provisionals.append((got.at, resp))
                if invite:
                    retransmit = False
                if until_provisional or (until_ringing and resp.status > 100):
                    return ex
                continue
            ex.final = resp
            ex.final_at = got.at
            return ex

    # ------------------------------------------------------------------ finishing calls

    def ack(self, invite: Request, resp: Response, peer: Peer | None = None) -> Dialog | None:
        """Send the ACK ``resp`` calls for; returns the dialog a 2xx made (else None).

        Non-2xx: the transaction's hop-by-hop ACK (§17.1.1.3).  2xx: an ACK in the
        dialog with a new branch (§13.2.2.4).  Only INVITE is ever ACKed
        (§17.1.2: a non-INVITE transaction has no ACK).
        """
        if invite.method != "INVITE":
            return None
        if resp.status >= 300:
            self.send(make_ack_for_non2xx(invite, resp), peer)
            return None
        if resp.status < 200:
            return None
        try:
            dialog = uac_dialog(invite, resp)
        except ParseError:
            return None
        self.send(self.in_dialog(dialog, "ACK", cseq=invite.cseq.seq), peer)
        return dialog

    def stand_in(self, method: str, uri: str, resp: Response) -> Request:
        """A request as the target must have read it, rebuilt from its response.

        For a torture message no parser here accepts: the response copies the
        request's Via, From, Call-ID and CSeq (§8.2.6.2), which is all that
        :meth:`ack` and :meth:`finish` need to end the transaction and the call.

        Raises:
            ParseError: the response lacks one of those fields.
        """
        req = Request(method, uri)
        req.add_header("Via", split_commas(resp.get_all("via")[0])[0] if resp.get_all("via")
                       else self.via())
        req.add_header("Max-Forwards", "70")
        for key in ("from", "call-id"):
            req.copy_headers_from(resp, key)
        req.add_header("To", f"<{resp.to.uri}>")
        req.add_header("CSeq", f"{resp.cseq.seq} {method}")
        req.add_header("Contact", self.contact)
        return req

    async def hang_up(self, dialog: Dialog, peer: Peer | None = None) -> Exchange:
        """Send BYE in ``dialog`` and wait for its answer."""
        bye = self.in_dialog(dialog, "BYE")
        return await self.transact(bye, peer=peer, timeout=4.0)

    async def finish(self, invite: Request, ex: Exchange, peer: Peer | None = None) -> None:
        """Leave no call behind: ACK a final answer (and BYE a 2xx), CANCEL a pending one."""
        try:
            if ex.final is None and invite.method != "INVITE":
                return
            if ex.final is None:
                if ex.provisionals:
                    cancel = make_cancel(invite)
                    await self.transact(cancel, peer=peer, timeout=2.0)
                    got = await self.expect_response(invite, 2.0, lambda s: s >= 200)
                    if got is not None:
                        assert isinstance(got.msg, Response)
                        ex.final = got.msg
                if ex.final is None:
                    return
            dialog = self.ack(invite, ex.final, peer)
            if dialog is not None:
                await self.hang_up(dialog, peer)
        except (ParseError, LocalProtocolError):
            return

    async def invite(self, uri: str, *, headers: list[tuple[str, str]] | None = None,
                     body: bytes = b"", timeout: float = 32.0, cseq: int = 1,
                     until_provisional: bool = False) -> Exchange:
        """Send an INVITE (with an SDP offer unless ``body`` is given) and wait."""
        from sipload.sip import sdp

        req = self.request("INVITE", uri, cseq=cseq)
        for name, value in headers or []:
            req.add_header(name, value)
        if body == b"":
            body = sdp.build_audio_offer(self.local[0], 6000, session_id=1).to_bytes()
        if body:
            req.set_body(body, "application/sdp")
        return await self.transact(req, timeout=timeout, until_provisional=until_provisional)

    async def alive(self, uri: str, timeout: float = 2.0) -> bool:
        """Whether the target still answers (with the method the reachability probe found)."""
        if self.alive_method == "OPTIONS":
            req = self.request("OPTIONS", uri)
            ex = await self.transact(req, timeout=timeout)
            return ex.final is not None
        ex = await self.invite(uri, timeout=timeout)
        answered = ex.final is not None or bool(ex.provisionals)
        await self.finish(ex.request, ex)
        return answered

    # ------------------------------------------------------------------ scenarios

    async def run_scenario(self, program: Program, to: str, *, timeout: float,
                           username: str = "", password: str = "",
                           first_answer: float | None = None) -> CallRecord:
        """Run one call of a UAC ``program`` toward ``to`` on a UA of its own.

        The UA gets a runtime (and socket) for this call alone, traced into the
        probe's ladder and closed at the end, so nothing the call leaves behind
        (a transaction still retransmitting) outlives the case.  The runner is
        driven the way the engine drives it: UA events and the runner's
        deadline, on the runtime's clock; at most ``timeout`` seconds, and at
        most ``first_answer`` seconds when nothing at all comes back.
        """
        program = dataclasses.replace(program, to=Template.compile(to))
        assert self._config is not None
        tls_client, tls_server = self._tls
        config = dataclasses.replace(self._config, port=0)
        rt = await _TracedRuntime.start(config, tls_client_context=tls_client,
                                        tls_context=tls_server)
        assert isinstance(rt, _TracedRuntime)
        rt.tracer = self.tracer
        assert isinstance(rt.transports, _TracedTransportSet)
        rt.transports.tracer = self.tracer
        try:
            return await self._drive(rt, program, timeout, username, password, first_answer)
        finally:
            await rt.aclose()

    async def _drive(self, rt: _TracedRuntime, program: Program, timeout: float,
                     username: str, password: str, first_answer: float | None
                     ) -> CallRecord:
        ua = rt.ua
        if username:
            ua.add_authentication_info(username, username, password)
        _, host, port = self.target
        local_host, local_port = rt.address[1], rt.address[2]
        ctx = RunContext(local_host, local_port, host, port, self.target[0],
                         media_ip=local_host)
        runner = Runner(program, ua, ctx, self.rng)
        loop = rt.loop
        start = loop.time()
        seen = len(self.tracer.entries)
        runner.start_call(0, start, start)
        records: list[CallRecord] = []
        while not records:
            rt.flush()
            now = loop.time()
            silent = first_answer is not None and now - start > first_answer and not any(
                e.direction == "in" for e in self.tracer.entries[seen:])
            if now - start > timeout or silent:
                runner.stop_all(now, Result.FAILED, Failure.TIMEOUT)
                rt.flush()
                records = runner.finished()
                break
            wait = start + timeout - now
            if first_answer is not None and now < start + first_answer:
                wait = min(wait, start + first_answer - now + 0.01)
            deadline = runner.next_deadline()
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - now))
            ev = await rt.next_event(wait)
            now = loop.time()
            with contextlib.suppress(LocalProtocolError):
                if ev is not None:
                    runner.on_event(ev, now)
                runner.handle_timers(now)
            records = runner.finished()
        rt.flush()
        return records[0]
