"""A scenario's calls in progress: how each is made (number, source address, shared
keywords, injected row, credentials) and what the user agent adds to its record.

:class:`Instances` keeps the calls in progress by their instance id and makes each new
one (:meth:`Instances.new`): calls take the run's source addresses in turn, and every
call on one address shares a single dict of the keywords that do not change
(``local_host``, ``target``, ``worker`` ...), so a held call keeps only its own
variables (the empty inbox, gotos and timers it shares are :class:`CallInstance`'s).
:func:`retransmitted` and :func:`located` add to a call's record what the user agent
did for it on its own: retransmissions, and the servers a located target's requests
went to.  The runner (:mod:`sipload.scenario.interpreter`) runs the calls' steps.
"""

from __future__ import annotations

from sipload.scenario.calls import CallInstance, Rng, RunContext, Values
from sipload.scenario.inject import Injection
from sipload.scenario.model import Program
from sipload.stats.records import CallRecord
from sipload.ua.agent import UserAgent

__all__ = ["Instances", "hostport", "located", "retransmitted"]

#: the most distinct keyword dicts kept (one per source address and what names it)
_CONSTS_KEPT = 64


def hostport(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets (RFC 3261 §25.1 hostport); the
    host alone for port 0 (a name located by DNS, RFC 3263)."""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host


class Instances:
    """The calls in progress of one runner, by instance id, and how a new one is made.

    Attributes:
        by_iid: the calls in progress, by :attr:`CallInstance.iid`.
        started: calls made so far (the next one takes source address
            ``started mod len(ctx.locals)``).
    """

    def __init__(self, program: Program, ua: UserAgent, ctx: RunContext, rng: Rng,
                 injection: Injection | None) -> None:
        self.program = program
        self.ua = ua
        self.ctx = ctx
        self.rng = rng
        self.injection = injection
        self.by_iid: dict[int, CallInstance] = {}
        self.started = 0
        self._next_iid = 0
        self._creds: set[tuple[str, str, str]] = set()
        self._consts_by_key: dict[tuple[object, ...], dict[str, str]] = {}

    def new(self, call_number: int, intended: float, now: float,
            user_index: int | None = None) -> CallInstance:
        """Make call ``call_number`` (placed by ``user_index`` in the closed model) and
        keep it: its record, source address, keywords, variables and credentials."""
        self._next_iid += 1
        self.started += 1
        ctx = self.ctx
        rec = CallRecord(call_number, intended, now, worker=ctx.worker)
        host, port, media_ip, media_port = ctx.local_host, ctx.local_port, ctx.media_ip, \
            ctx.media_port
        contact = self.ua.contact
        local = 0
        if ctx.locals:  # several source addresses: calls take them in turn
            local = (self.started - 1) % len(ctx.locals)
            host, port, media_ip, media_port = ctx.locals[local]
            contact = self.ua.state.contact_of(local)
            rec.source = host
        media_ip = media_ip or host
        consts = self._consts(local, host, port, media_ip, media_port, contact)
        # its own variables only (the keywords empty until set are the shared consts'):
        # a dict of at most five keys takes the smallest table
        values = {"call_number": str(call_number)}
        row: dict[str, str] = {}
        injection = self.injection
        if injection is not None and injection.rows:
            draw = self.rng.randrange(len(injection.rows))
            row = injection.row_for(call_number, draw, user_index)
            values.update(row)
        both = Values(values, None, self.ua, consts)
        program = self.program
        for name, tmpl in program.variables:
            if name not in row:  # CSV fields win over variables: (defaults)
                values[name] = tmpl.render(both)
        if program.credentials is not None:
            user, password, realm = (t.render(both) for t in program.credentials)
            values["username"], values["password"], values["realm"] = user, password, realm
            if (user, password, realm) not in self._creds:
                self._creds.add((user, password, realm))
                self.ua.add_authentication_info(user, user, password, realm)
        inst = CallInstance(self._next_iid, rec, values)
        inst.consts = consts
        inst.local = local
        self.by_iid[inst.iid] = inst
        return inst

    def _consts(self, local: int, host: str, port: int, media_ip: str, media_port: int,
                contact: str) -> dict[str, str]:
        """The keywords every call on local address ``local`` shares: one dict, made once
        (a held call keeps only its own variables)."""
        ctx = self.ctx
        key = (local, host, port, media_ip, media_port, contact, ctx.remote_host,
               ctx.remote_port, ctx.transport, ctx.service, ctx.worker, ctx.pid)
        consts = self._consts_by_key.get(key)
        if consts is None:
            if len(self._consts_by_key) >= _CONSTS_KEPT:
                self._consts_by_key.clear()
            consts = {
                "local_host": host, "local_port": str(port), "remote_host": ctx.remote_host,
                "remote_port": str(ctx.remote_port), "transport": ctx.transport,
                "target": hostport(ctx.remote_host, ctx.remote_port),
                "local_address": hostport(host, port), "service": ctx.service,
                "media_ip": media_ip, "media_port": str(media_port),
                "worker": str(ctx.worker), "local_contact": contact, "pid": str(ctx.pid),
                "local_ip_type": "6" if ":" in host else "4",
                "media_ip_type": "6" if ":" in media_ip else "4",
                # a call's own until it sets them (branch, cseq, call_id: each message
                # sent; username, password, realm: the scenario's credentials)
                "branch": "", "cseq": "", "call_id": "", "username": "", "password": "",
                "realm": "",
            }
            self._consts_by_key[key] = consts
        return consts


def _time_of(message: tuple[float, str, str]) -> float:
    return message[0]


def retransmitted(rec: CallRecord, items: list[tuple[float, str]]) -> None:
    """Count the UA's retransmissions of this call into its record, each one a
    message of the ladder (direction ``re``), where it belongs in time."""
    if not items:
        return
    rec.retransmissions += len(items)
    msgs = rec.messages
    for t, what in items:
        msgs.append((t, "re", what))
    if len(msgs) > len(items) and msgs[-len(items) - 1][0] > items[0][0]:
        msgs.sort(key=_time_of)


def located(inst: CallInstance, ua: UserAgent) -> None:
    """The server each of the call's requests to a located name last went to (the
    INVITE's wins) and how often they moved on (:mod:`sipload.ua.failover`)."""
    rec = inst.record
    keys = [*inst.tids, *(leg.rid for leg in inst.legs.values() if leg.rid),
            *(leg.cid for leg in inst.legs.values() if leg.cid)]
    for key in keys:
        found = ua.call_take_server(key)
        if found is not None:
            rec.server, moved = found
            rec.failovers += moved
