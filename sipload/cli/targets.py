"""What ``--target`` and ``--listen`` may say, parsed into one :class:`Target`.

Forms:

* ``HOST[:PORT]`` (``[v6]:PORT`` too): port 5060 by default, transport from
  ``--transport`` or the scenario.
* ``ws://HOST[:PORT][/PATH]`` and ``wss://...``: SIP over WebSocket (RFC 7118);
  port 80 / 443 by default, path ``/`` by default.

A bad value raises :class:`TargetError` naming the flag; nothing is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WS_PORTS = {"ws": 80, "wss": 443}

_HOSTPORT = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::([0-9]+))?|([^:\[\]/]+)(?::([0-9]+))?")
_WS = re.compile(r"(wss?)://(\[[0-9A-Fa-f:.]+\](?::[0-9]+)?|[^/\[\]]+)(/[^\s#]*)?", re.I)


class TargetError(ValueError):
    """A ``--target``/``--listen`` value that cannot be used; the text names the flag."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where calls go (or where a UAS listens)."""

    host: str  #: a name or an address literal (no brackets)
    port: int
    transport: str | None = None  #: what the value itself says (ws://, wss://), else None
    path: str = "/"  #: the WebSocket request path

    @property
    def hostport(self) -> tuple[str, int]:
        return (self.host, self.port)


def _port(text: str | None, default: int, flag: str) -> int:
    port = int(text) if text else default
    if not 0 < port < 65536:
        raise TargetError(f"{flag}: bad port {port}")
    return port


def parse_hostport(text: str, flag: str, default_port: int = 5060) -> tuple[str, int]:
    """HOST[:PORT] or [V6]:PORT."""
    m = _HOSTPORT.fullmatch(text)
    if m is None:
        raise TargetError(f"{flag}: expected HOST[:PORT], got {text!r}")
    host = m.group(1) or m.group(3)
    return host, _port(m.group(2) or m.group(4), default_port, flag)


def parse(text: str, flag: str = "--target") -> Target:
    """Parse a ``--target`` (or ``--listen``) value; see the module docstring.

    Raises:
        TargetError: the value is not one of the forms, or its port is out of range.
    """
    text = text.strip()
    if "://" in text:
        m = _WS.fullmatch(text)
        if m is None:
            scheme = text.split("://", 1)[0]
            if scheme.lower() in WS_PORTS:
                raise TargetError(f"{flag}: expected {scheme}://HOST[:PORT][/PATH], got {text!r}")
            raise TargetError(f"{flag}: unknown scheme {scheme!r} in {text!r}: use HOST[:PORT], "
                              "ws://HOST[:PORT][/PATH] or wss://...")
        scheme = m.group(1).lower()
        host, port = parse_hostport(m.group(2), flag, WS_PORTS[scheme])
        return Target(host, port, scheme, m.group(3) or "/")
    host, port = parse_hostport(text, flag)
    return Target(host, port)


def transport_for(target: Target, chosen: str | None, flag: str = "--target") -> str | None:
    """The transport of a run: ``chosen`` (``--transport``) must agree with the target's.

    Returns:
        The transport the target names, else ``chosen`` (None: the scenario decides).

    Raises:
        TargetError: ``--transport`` says one thing and the target another.
    """
    if target.transport is None:
        return chosen
    if chosen is not None and chosen != target.transport:
        raise TargetError(f"--transport {chosen} contradicts {flag} {target.transport}://... "
                          f"(leave --transport out, or give {flag} HOST:PORT)")
    return target.transport
