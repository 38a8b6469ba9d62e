"""Conformance profiles: what the target claims to do, in the spirit of ETSI PICS.

A profile is a YAML file.  It says which roles the target plays (``uas``,
``proxy``, ``registrar``, ``uac``), the transport to test it over (and
``transports`` it also listens on at the same address: the transport pack
needs ``tcp``), which extensions it implements (``100rel``,
``update``, ``refer``, ``timer``, ``digest``), its digest algorithms and the
credentials to use, the URIs to call, and its own timers (to judge
retransmission schedules).  A case whose requirement the profile does not claim
gets the verdict ``not_applicable``, never ``pass``.

Every mistake is reported as ``file:line:col: message`` (:class:`ProfileError`)
before anything is sent.  ``{target}`` in a URI is replaced by the target's
``host:port``.

Example (``scenarios/conformance/profiles/sipload-uas.yaml``)::

    name: sipload default UAS
    roles: [uas]
    extensions: [100rel, timer]
    timers: {t1: 500ms, t2: 4s}
    uas:
      uri: sip:service@{target}
      rings: true
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sipload.scenario.yamlsource import (
    SourceError,
    compose,
    parse_duration,
    position,
    read_source,
)

ROLES = ("uas", "proxy", "registrar", "uac")
EXTENSIONS = ("100rel", "update", "refer", "timer", "digest")
ALGORITHMS = ("MD5", "MD5-sess", "SHA-256", "SHA-256-sess", "SHA-512-256", "SHA-512-256-sess")
TRANSPORTS = ("udp", "tcp", "tls")


class ProfileError(SourceError):
    """A profile that cannot be used, with where the problem is (1-based line, column)."""


@dataclass(slots=True)
class UasSettings:
    uri: str = "sip:service@{target}"  #: calls to it are answered
    ringing_uri: str = ""  #: calls to it ring and are not answered (CANCEL cases)
    busy_uri: str = ""  #: calls to it are refused 486
    rings: bool = False  #: the target sends 180/183 before it answers
    media: bool = False  #: the target sends RTP once it answers (the rtp pack)


@dataclass(slots=True)
class RegistrarSettings:
    aor: str = "sip:alice@{target}"  #: the address of record to register
    min_expires: int = 0  #: the registrar's minimum (0: unknown; the 423 case uses 1 s)


@dataclass(slots=True)
class ProxySettings:
    uri: str = "sip:callee@{target}"  #: a Request-URI the proxy routes to the callee
    callee: tuple[str, int] = ("127.0.0.1", 5080)  #: where the tester listens as the callee
    loop_uri: str = ""  #: a Request-URI the proxy routes back to itself (482 case)


@dataclass(slots=True)
class UacSettings:
    listen: tuple[str, int] = ("127.0.0.1", 5090)  #: where the target's calls arrive
    wait: float = 20.0  #: seconds to wait for each call of the target
    cancels: bool = False  #: the target hangs up while ringing (CANCEL case)


@dataclass(slots=True)
class Profile:
    """A validated profile (see the module docstring)."""

    name: str = "unnamed"
    file: str = "<defaults>"
    roles: tuple[str, ...] = ("uas",)
    transport: str = "udp"
    transports: tuple[str, ...] = ()  #: more transports the target listens on (same address)
    extensions: tuple[str, ...] = ()
    digest_algorithms: tuple[str, ...] = ("MD5",)
    username: str = ""
    password: str = ""
    realm: str = ""
    t1: float = 0.5  #: the target's T1, seconds
    t2: float = 4.0  #: the target's T2
    slow: bool = False  #: run cases that wait 64*T1
    response_timeout: float = 4.0  #: how long to wait for an answer the RFC demands
    uas: UasSettings = field(default_factory=UasSettings)
    registrar: RegistrarSettings = field(default_factory=RegistrarSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)
    uac: UacSettings = field(default_factory=UacSettings)
    target: tuple[str, int] = ("127.0.0.1", 5060)

    def uri(self, template: str) -> str:
        """``template`` with ``{target}`` replaced by the target's host:port."""
        host, port = self.target
        return template.replace("{target}", f"{host}:{port}")

    def claims(self, requirement: str) -> bool:
        """Whether the profile claims ``role:X``, ``ext:X``, ``transport:X`` (the
        tester's transport or one in ``transports``) or ``set:section.key``."""
        kind, _, what = requirement.partition(":")
        if kind == "role":
            return what in self.roles
        if kind == "transport":
            return what == self.transport or what in self.transports
        if kind == "ext":
            return what in self.extensions
        if kind == "set":
            section, _, key = what.partition(".")
            return bool(getattr(getattr(self, section), key))
        raise ValueError(f"unknown requirement {requirement!r}")


# ---------------------------------------------------------------------------- loading

_HOSTPORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):([0-9]{1,5})$")


class _Walker:
    def __init__(self, file: str) -> None:
        self.file = file

    def err(self, node: yaml.Node, message: str) -> ProfileError:
        return ProfileError(self.file, *position(node), message)

    def mapping(self, node: yaml.Node, allowed: tuple[str, ...], where: str
                ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.err(node, f"{where} must be a mapping")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for knode, vnode in node.value:
            key = str(knode.value)
            if key not in allowed:
                close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.5)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise self.err(knode, f"unknown key '{key}' in {where}{hint}")
            if key in out:
                raise self.err(knode, f"'{key}' given twice in {where}")
            out[key] = (knode, vnode)
        return out

    def scalar(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self.err(node, f"{what} must be a single value")
        return str(node.value)

    def string(self, node: yaml.Node, what: str) -> str:
        value = self.scalar(node, what)
        if not value:
            raise self.err(node, f"{what} must not be empty")
        return value

    def boolean(self, node: yaml.Node, what: str) -> bool:
        value = self.scalar(node, what)
        if value in ("true", "True", "TRUE"):
            return True
        if value in ("false", "False", "FALSE"):
            return False
        raise self.err(node, f"{what} must be true or false, not '{value}'")

    def integer(self, node: yaml.Node, what: str, low: int = 0) -> int:
        value = self.scalar(node, what)
        if not value.isdigit() or int(value) < low:
            raise self.err(node, f"{what} must be a whole number >= {low}, not '{value}'")
        return int(value)

    def duration(self, node: yaml.Node, what: str) -> float:
        value = self.scalar(node, what)
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise self.err(node, f"{what} must be a duration such as 500ms, 4s or 1m, "
                           f"not '{value}'") from None
        if seconds <= 0:
            raise self.err(node, f"{what} must be above zero")
        return seconds

    def choice(self, node: yaml.Node, what: str, options: tuple[str, ...]) -> str:
        value = self.scalar(node, what)
        if value not in options:
            close = difflib.get_close_matches(value, list(options), n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise self.err(node, f"{what} '{value}' is not one of {', '.join(options)}{hint}")
        return value

    def choices(self, node: yaml.Node, what: str, options: tuple[str, ...]) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.err(node, f"{what} must be a list, e.g. [{options[0]}]")
        out: list[str] = []
        for item in node.value:
            value = self.choice(item, f"{what} item", options)
            if value not in out:
                out.append(value)
        return tuple(out)

    def uri(self, node: yaml.Node, what: str) -> str:
        value = self.string(node, what)
        if not re.match(r"^sips?:", value):
            raise self.err(node, f"{what} must be a sip: or sips: URI, not '{value}'")
        return value

    def hostport(self, node: yaml.Node, what: str) -> tuple[str, int]:
        value = self.string(node, what)
        m = _HOSTPORT.match(value)
        if m is None or not 0 < int(m.group(2)) < 65536:
            raise self.err(node, f"{what} must be HOST:PORT, not '{value}'")
        return m.group(1).strip("[]"), int(m.group(2))


def load_profile(path: str | Path) -> Profile:
    """Read and validate a profile file.

    Raises:
        ProfileError: the file cannot be read, is not YAML, or breaks a rule
            (``file:line:col: message``).
    """
    file = str(path)
    text = read_source(path, lambda line, col, message: ProfileError(
        file, line, col, f"the profile: {message}"))
    return load_profile_text(text, file)


def load_profile_text(text: str, file: str = "<profile>") -> Profile:
    """Validate a profile given as text (see :func:`load_profile`)."""
    root, _ = compose(text, lambda line, col, message: ProfileError(file, line, col, message))
    w = _Walker(file)
    if root is None:
        raise ProfileError(file, 1, 1, "the profile is empty; it needs at least 'roles'")
    top = w.mapping(root, ("name", "roles", "transport", "transports", "extensions",
                           "digest_algorithms", "credentials", "timers", "slow",
                           "response_timeout", "uas", "registrar", "proxy", "uac"),
                    "the profile")
    if "roles" not in top:
        raise w.err(root, "the profile must name its 'roles' (uas, proxy, registrar, uac)")
    p = Profile(file=file)
    setters: dict[str, Callable[[yaml.Node], None]] = {
        "name": lambda n: setattr(p, "name", w.string(n, "name")),
        "roles": lambda n: setattr(p, "roles", w.choices(n, "roles", ROLES)),
        "transport": lambda n: setattr(p, "transport", w.choice(n, "transport", TRANSPORTS)),
        "transports": lambda n: setattr(p, "transports", w.choices(n, "transports", TRANSPORTS)),
        "extensions": lambda n: setattr(p, "extensions", w.choices(n, "extensions", EXTENSIONS)),
        "digest_algorithms": lambda n: setattr(
            p, "digest_algorithms", w.choices(n, "digest_algorithms", ALGORITHMS)),
        "slow": lambda n: setattr(p, "slow", w.boolean(n, "slow")),
        "response_timeout": lambda n: setattr(
            p, "response_timeout", w.duration(n, "response_timeout")),
    }
    for key, (_, vnode) in top.items():
        if key in setters:
            setters[key](vnode)
    if not p.roles:
        raise w.err(top["roles"][1], "roles must name at least one role")
    if "credentials" in top:
        c = w.mapping(top["credentials"][1], ("username", "password", "realm"), "credentials")
        for key in ("username", "password"):
            if key not in c:
                raise w.err(top["credentials"][1], f"credentials need '{key}'")
        p.username = w.string(c["username"][1], "credentials.username")
        p.password = w.string(c["password"][1], "credentials.password")
        if "realm" in c:
            p.realm = w.string(c["realm"][1], "credentials.realm")
    if "timers" in top:
        t = w.mapping(top["timers"][1], ("t1", "t2"), "timers")
        if "t1" in t:
            p.t1 = w.duration(t["t1"][1], "timers.t1")
        if "t2" in t:
            p.t2 = w.duration(t["t2"][1], "timers.t2")
        if p.t2 < p.t1:
            raise w.err(top["timers"][1], f"timers.t2 ({p.t2:g}s) is below t1 ({p.t1:g}s)")
    _sections(w, top, p)
    if "digest" in p.extensions and not p.username and (
            "registrar" in p.roles or "uas" in p.roles):
        raise w.err(top["extensions"][1],
                    "extension 'digest' needs credentials (username, password)")
    return p


def _sections(w: _Walker, top: dict[str, tuple[yaml.Node, yaml.Node]], p: Profile) -> None:
    if "uas" in top:
        s = w.mapping(top["uas"][1], ("uri", "ringing_uri", "busy_uri", "rings", "media"),
                      "uas")
        for key in ("uri", "ringing_uri", "busy_uri"):
            if key in s:
                setattr(p.uas, key, w.uri(s[key][1], f"uas.{key}"))
        if "rings" in s:
            p.uas.rings = w.boolean(s["rings"][1], "uas.rings")
        if "media" in s:
            p.uas.media = w.boolean(s["media"][1], "uas.media")
    if "registrar" in top:
        s = w.mapping(top["registrar"][1], ("aor", "min_expires"), "registrar")
        if "aor" in s:
            p.registrar.aor = w.uri(s["aor"][1], "registrar.aor")
        if "min_expires" in s:
            p.registrar.min_expires = w.integer(s["min_expires"][1], "registrar.min_expires")
    if "proxy" in top:
        s = w.mapping(top["proxy"][1], ("uri", "callee", "loop_uri"), "proxy")
        for key in ("uri", "loop_uri"):
            if key in s:
                setattr(p.proxy, key, w.uri(s[key][1], f"proxy.{key}"))
        if "callee" in s:
            p.proxy.callee = w.hostport(s["callee"][1], "proxy.callee")
    if "uac" in top:
        s = w.mapping(top["uac"][1], ("listen", "wait", "cancels"), "uac")
        if "listen" in s:
            p.uac.listen = w.hostport(s["listen"][1], "uac.listen")
        if "wait" in s:
            p.uac.wait = w.duration(s["wait"][1], "uac.wait")
        if "cancels" in s:
            p.uac.cancels = w.boolean(s["cancels"][1], "uac.cancels")


def profile_summary(p: Profile) -> dict[str, Any]:
    """The profile as plain data, for the evidence files."""
    return {
        "name": p.name, "file": p.file, "roles": list(p.roles), "transport": p.transport,
        "transports": list(p.transports),
        "extensions": list(p.extensions), "digest_algorithms": list(p.digest_algorithms),
        "username": p.username, "t1": p.t1, "t2": p.t2, "slow": p.slow,
    }
