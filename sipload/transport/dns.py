"""Locating SIP servers in DNS (RFC 3263 §4): NAPTR → SRV → A/AAAA, with dnspython.

Theory of operation
===================

1. :func:`locate` takes a ``--target`` that names a host (``example.com``,
   ``example.com:5070``, ``sip:example.com;transport=tcp``, ``sips:example.com``)
   and returns every server found for it as :class:`~sipload.sip.servers.Server`
   rows, which :class:`~sipload.sip.servers.ServerSet` orders per request.
2. The steps of RFC 3263 §4.1-4.2: an address literal is used as it is; a port
   (or ``maddr``-less URI with a port) means no NAPTR or SRV, only A/AAAA; a
   transport (``transport=`` or the command line's) means SRV for that transport
   only; otherwise NAPTR records pick the transports (``SIP+D2U`` udp, ``SIP+D2T``
   tcp, ``SIPS+D2T`` tls, ``SIP+D2W`` ws, ``SIPS+D2W`` wss — RFC 7118 §10) in
   order/preference, and without NAPTR the SRV names of every transport are
   tried (udp, tcp, tls; only tls for ``sips:``); without SRV, A/AAAA on port
   5060 (5061 for tls).  ``sips:`` keeps only TLS-based transports.
3. Bad answers are errors (:class:`LocateError`) naming the name and what was
   wrong, before anything is sent: no record at all, an SRV target of ``.``
   (service not offered), SRV targets none of which resolve, a NAPTR chain that
   does not end (a loop), a server that does not answer.  SRV targets that do not
   resolve while others do are left out and listed in ``skipped``.
4. ``nameserver`` (``--dns-server HOST:PORT``) sends every query to that server;
   otherwise the system's resolver configuration is used.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sipload.sip.servers import Server

if TYPE_CHECKING:  # dnspython is imported where a name is looked up, not by every run
    import dns.resolver

NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls",
                  "SIP+D2W": "ws", "SIPS+D2W": "wss"}
"""NAPTR service fields and the transport each names (RFC 3263 §4.1, RFC 7118 §10)."""

SRV_PREFIX = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp",
              "ws": "_sip._ws", "wss": "_sips._ws"}
"""The SRV owner-name prefix of each transport."""

DEFAULT_PORT = {"udp": 5060, "tcp": 5060, "tls": 5061, "ws": 80, "wss": 443}

SECURE = ("tls", "wss")

MAX_NAPTR_HOPS = 8
"""Non-terminal NAPTR records followed before the chain is called a loop."""


class LocateError(Exception):
    """The target's DNS records lead nowhere usable; the text says which and why."""


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a ``--target`` asks for: a host, maybe a port and transport, sip or sips."""

    host: str
    port: int | None = None
    transport: str | None = None
    secure: bool = False  #: a sips: URI

    @property
    def is_address(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


@dataclass(slots=True)
class Located:
    """What :func:`locate` found."""

    servers: list[Server]
    steps: list[str] = field(default_factory=list)  #: the lookups, in words, for the plan
    skipped: list[str] = field(default_factory=list)  #: SRV targets that did not resolve


_URI = re.compile(r"(sips?):(?:[^@;]*@)?(\[[0-9A-Fa-f:.]+\]|[^:;?]+)(?::([0-9]+))?([^?]*)",
                  re.I)


def parse_wanted(text: str, transport: str | None = None) -> Wanted:
    """A ``--target`` value that needs locating (a name, or a sip:/sips: URI).

    Raises:
        ValueError: not a host, HOST:PORT or sip(s) URI; the text says why.
    """
    text = text.strip()
    m = _URI.fullmatch(text)
    if m is not None:
        scheme, host, port, params = m.groups()
        tp = None
        for p in params.split(";"):
            k, _, v = p.partition("=")
            if k.strip().lower() == "transport" and v:
                tp = v.strip().lower()
        secure = scheme.lower() == "sips"
        if tp == "ws" and secure:
            tp = "wss"
        if tp is not None and tp not in DEFAULT_PORT:
            raise ValueError(f"transport={tp} is not one of udp, tcp, tls, ws")
        if secure and tp == "tcp":
            tp = "tls"
        return Wanted(host.strip("[]"), int(port) if port else None, tp or transport, secure)
    m2 = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::([0-9]+))?|([^:\[\]/@;]+)(?::([0-9]+))?", text)
    if m2 is None:
        raise ValueError(f"expected HOST[:PORT] or a sip:/sips: URI, got {text!r}")
    host = m2.group(1) or m2.group(3)
    port = m2.group(2) or m2.group(4)
    return Wanted(host, int(port) if port else None, transport, transport in SECURE)


def make_resolver(nameserver: tuple[str, int] | None = None,
                  timeout: float = 3.0) -> dns.resolver.Resolver:
    """A resolver asking ``nameserver`` (host, port), or the system's servers."""
    import dns.resolver

    if nameserver is None:
        res = dns.resolver.Resolver(configure=True)
    else:
        res = dns.resolver.Resolver(configure=False)
        res.nameservers = [nameserver[0]]
        res.port = nameserver[1]
    res.lifetime = timeout
    res.timeout = timeout
    return res


def _query(res: dns.resolver.Resolver, name: str, rtype: str) -> list[object]:
    """The answers of one type; [] for none (NXDOMAIN, no data).

    Raises:
        LocateError: the server did not answer, or answered with an error.
    """
    import dns.exception
    import dns.resolver

    try:
        answer = res.resolve(name, rtype, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.resolver.LifetimeTimeout as e:
        raise LocateError(f"{rtype} {name}: no answer from the DNS server ({e})") from e
    except dns.exception.DNSException as e:
        raise LocateError(f"{rtype} {name}: {type(e).__name__}: {e}") from e
    return list(answer)


def _addresses(res: dns.resolver.Resolver, host: str) -> list[str]:
    out = [str(r) for r in _query(res, host, "A")]
    out += [str(r) for r in _query(res, host, "AAAA")]
    return out


def _srv(res: dns.resolver.Resolver, name: str, transport: str, found: Located,
         rank: int = 0) -> bool:
    """Servers of one SRV name into ``found``; False when the name has no SRV at all.

    Raises:
        LocateError: the SRV says the service is not offered (target "."), or none
            of its targets resolves.
    """
    records = _query(res, name, "SRV")
    found.steps.append(f"SRV {name}: {len(records)} record(s)")
    if not records:
        return False
    targets = [(int(r.priority), int(r.weight), int(r.port),  # type: ignore[attr-defined]
                str(r.target).rstrip(".")) for r in records]  # type: ignore[attr-defined]
    if all(t[3] == "" for t in targets):
        raise LocateError(f"SRV {name}: target '.': the service is not offered there "
                          "(RFC 2782)")
    before = len(found.servers)
    for prio, weight, port, target in targets:
        if not target:
            continue
        addrs = _addresses(res, target)
        if not addrs:
            found.skipped.append(f"{target}:{port} (SRV {name}: no A/AAAA record)")
            continue
        for a in addrs:
            found.servers.append(Server(transport, a, port, prio, weight, target, rank))
    if len(found.servers) == before:
        raise LocateError(f"SRV {name}: none of its targets resolves "
                          f"({', '.join(t[3] or '.' for t in targets)}): it points nowhere")
    return True


def _naptr(res: dns.resolver.Resolver, host: str, secure: bool,
           found: Located) -> list[tuple[str, str]]:
    """(transport, SRV name) in NAPTR order, following non-terminal records (bounded)."""
    name, hops = host, 0
    while True:
        records = _query(res, name, "NAPTR")
        found.steps.append(f"NAPTR {name}: {len(records)} record(s)")
        if not records:
            return []
        records.sort(key=lambda r: (r.order, r.preference))  # type: ignore[attr-defined]
        out: list[tuple[str, str]] = []
        follow = ""
        for r in records:
            flags = r.flags.decode().lower()  # type: ignore[attr-defined]
            service = r.service.decode().upper()  # type: ignore[attr-defined]
            repl = str(r.replacement).rstrip(".")  # type: ignore[attr-defined]
            if flags == "s" and service in NAPTR_SERVICES:
                tp = NAPTR_SERVICES[service]
                if secure and tp not in SECURE:
                    continue
                if repl:
                    out.append((tp, repl))
            elif flags == "" and repl and not follow:
                follow = repl
        if out or not follow:
            return out
        hops += 1
        if hops > MAX_NAPTR_HOPS or follow.lower() == name.lower():
            raise LocateError(f"NAPTR {host}: the chain of non-terminal records does not "
                              f"end after {hops} step(s) (a loop at {follow!r})")
        name = follow


def locate(wanted: Wanted, res: dns.resolver.Resolver) -> Located:
    """Every server for ``wanted`` (see the module docstring).

    Raises:
        LocateError: nothing usable was found; the text says what and where.
    """
    import dns.exception
    import dns.name

    found = Located([])
    default_tp = wanted.transport or ("tls" if wanted.secure else "udp")
    if wanted.is_address:
        port = wanted.port or DEFAULT_PORT[default_tp]
        found.servers.append(Server(default_tp, wanted.host, port, name=wanted.host))
        return found
    try:
        dns.name.from_text(wanted.host)
    except dns.exception.DNSException as e:
        raise LocateError(f"{wanted.host!r} is not a valid DNS name ({e})") from e
    if wanted.port is not None:
        addrs = _addresses(res, wanted.host)
        found.steps.append(f"A/AAAA {wanted.host}: {len(addrs)} address(es)")
        if not addrs:
            raise LocateError(f"{wanted.host}: no A or AAAA record")
        found.servers += [Server(default_tp, a, wanted.port, name=wanted.host) for a in addrs]
        return found
    if wanted.transport is not None:
        tp = wanted.transport
        if _srv(res, f"{SRV_PREFIX[tp]}.{wanted.host}", tp, found):
            return found
    else:
        for rank, (tp, srv_name) in enumerate(_naptr(res, wanted.host, wanted.secure, found)):
            try:
                _srv(res, srv_name, tp, found, rank)
            except LocateError as e:
                found.skipped.append(str(e))
        if found.servers:
            return found
        if found.skipped:
            raise LocateError(f"{wanted.host}: no NAPTR-named SRV leads anywhere: "
                              + "; ".join(found.skipped))
        for tp in (("tls",) if wanted.secure else ("udp", "tcp", "tls")):
            if _srv(res, f"{SRV_PREFIX[tp]}.{wanted.host}", tp, found):
                return found
    addrs = _addresses(res, wanted.host)
    found.steps.append(f"A/AAAA {wanted.host}: {len(addrs)} address(es)")
    if not addrs:
        raise LocateError(f"{wanted.host}: no NAPTR, SRV, A or AAAA record: nothing to call")
    found.servers += [Server(default_tp, a, DEFAULT_PORT[default_tp], name=wanted.host)
                      for a in addrs]
    return found
