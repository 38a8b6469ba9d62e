"""A compiled scenario: templates and steps as plain frozen data.

The loader (:mod:`sipload.scenario.loader`) turns YAML into a :class:`Program`
once; the interpreter runs that program for every call.  Nothing here parses
text at run time: templates are split into literal parts and variable names
when compiled, and rendering is a join.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sipload.media.table import MediaSpec
from sipload.scenario.inject import Injection

_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.\-]*)\}")


@dataclass(frozen=True, slots=True)
class Template:
    """Text with ``${name}`` holes; ``parts`` alternates literal, name, literal ..."""

    parts: tuple[str, ...]

    @staticmethod
    def compile(text: str) -> Template:
        pieces = _VAR_RE.split(text)
        return Template(tuple(pieces))

    @property
    def names(self) -> tuple[str, ...]:
        return self.parts[1::2]

    @property
    def constant(self) -> bool:
        return len(self.parts) == 1

    def render(self, values: Mapping[str, str]) -> str:
        parts = self.parts
        if len(parts) == 1:
            return parts[0]
        out = []
        for i, p in enumerate(parts):
            out.append(values.get(p, "") if i % 2 else p)
        return "".join(out)


@dataclass(frozen=True, slots=True)
class Matcher:
    """What a recv step (or an ``on:`` branch) accepts: a code range or a method."""

    lo: int = 0
    hi: int = 0
    method: str = ""
    text: str = ""

    def matches_response(self, status: int) -> bool:
        return not self.method and self.lo <= status <= self.hi

    def matches_request(self, method: str) -> bool:
        return self.method == method


@dataclass(frozen=True, slots=True)
class Capture:
    """Store what ``regex`` finds in a header, the body or the Request-URI in ``var``."""

    var: str
    regex: re.Pattern[str]
    header: str = ""  #: "" with body=True means the body
    body: bool = False
    required: bool = False
    uri: bool = False  #: search the Request-URI (requests) instead
    message: bool = False  #: search the whole message (start line, headers, body)
    group: int = -1  #: the group to store (-1: 1 when the regex has groups, else 0)


@dataclass(frozen=True, slots=True)
class MediaCheck:
    """Conditions on the call's received RTP so far (-1: not checked)."""

    min_packets: int = -1
    max_loss: float = -1.0  #: fraction of expected packets
    max_jitter: float = -1.0  #: seconds (RFC 3550 A.8 jitter now)
    min_mos: float = -1.0


@dataclass(frozen=True, slots=True)
class Check:
    """One condition on a received message; a failed check names the call's failure."""

    name: str
    header: str = ""
    body: bool = False
    present: bool | None = None
    matches: re.Pattern[str] | None = None
    equals: Template | None = None
    uri: bool = False  #: test the Request-URI (requests) instead
    message: bool = False  #: test the whole message
    media: MediaCheck | None = None  #: a condition on the call's media instead


@dataclass(frozen=True, slots=True)
class ChallengeSpec:
    """A UAS reply's digest challenge: WWW-Authenticate (407: Proxy-Authenticate)."""

    realm: Template | None = None  #: None: the credentials' realm, else "sipload"
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ("auth",)
    stale: bool = False


@dataclass(frozen=True, slots=True)
class Body:
    text: Template | None = None
    sdp: str = ""  #: offer, answer, hold, resume, inactive


HeaderSpec = tuple[str, tuple[Template, ...] | None]
"""A header name and its values (None: remove it)."""


@dataclass(frozen=True, slots=True)
class Step:
    """Fields common to every step: where it was written and its timing marks."""

    line: int
    start_timer: str = ""
    stop_timer: str = ""
    leg: str = "main"


@dataclass(frozen=True, slots=True)
class SendStep(Step):
    method: str = ""
    to: Template | None = None
    from_: Template | None = None
    request_uri: Template | None = None
    route: Template | None = None
    subject: Template | None = None
    headers: tuple[HeaderSpec, ...] = ()
    body: Body | None = None
    content_type: Template | None = None
    out_of_dialog: bool = False
    expires: int | None = None


@dataclass(frozen=True, slots=True)
class ReplyStep(Step):
    code: int = 200
    reason: str = ""
    headers: tuple[HeaderSpec, ...] = ()
    body: Body | None = None
    content_type: Template | None = None
    challenge: ChallengeSpec | None = None


@dataclass(frozen=True, slots=True)
class RecvStep(Step):
    matchers: tuple[Matcher, ...] = ()
    optional: bool = False
    timeout: float | None = None
    on: tuple[tuple[Matcher, int], ...] = ()  #: (what, step index to jump to)
    captures: tuple[Capture, ...] = ()
    checks: tuple[Check, ...] = ()
    on_timeout: int = -1  #: step index to jump to when the timeout passes (-1: fail)
    match: tuple[Check, ...] = ()  #: a message failing these is not this step's
    authenticate: bool = False  #: the request must carry valid digest credentials

    def accepts_response(self, status: int) -> bool:
        return any(m.matches_response(status) for m in self.matchers) or any(
            m.matches_response(status) for m, _ in self.on
        )

    def accepts_request(self, method: str) -> bool:
        return any(m.matches_request(method) for m in self.matchers) or any(
            m.matches_request(method) for m, _ in self.on
        )

    @property
    def expected(self) -> str:
        """What the step waits for, in words (for failure details)."""
        return ", ".join(m.text for m in self.matchers)


@dataclass(frozen=True, slots=True)
class PauseStep(Step):
    distribution: str = "fixed"  #: fixed, uniform, normal, lognormal, exponential
    a: float = 0.0
    b: float = 0.0


@dataclass(frozen=True, slots=True)
class DtmfStep(Step):
    digits: str = ""
    duration_ms: int = 250
    gap: float = 0.3  #: from one digit's INFO to the next's (default: duration + 50 ms)
    mode: str = "info"  #: info (SIP INFO per digit) or rfc4733 (events in the RTP stream)


@dataclass(frozen=True, slots=True)
class TerminateStep(Step):
    wait: bool = True


@dataclass(frozen=True, slots=True)
class GotoStep(Step):
    target: int = 0
    max: int = 0  #: 0: unbounded (only allowed for forward jumps)
    when_var: str = ""
    when_equals: Template | None = None
    when_matches: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class SetStep(Step):
    values: tuple[tuple[str, Template], ...] = ()


@dataclass(frozen=True, slots=True)
class CheckStep(Step):
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True, slots=True)
class FailStep(Step):
    reason: str = ""  #: the failure reason the record is counted with
    detail: Template | None = None


@dataclass(frozen=True, slots=True)
class NopStep(Step):
    label: str = ""


AnyStep = (SendStep | ReplyStep | RecvStep | PauseStep | DtmfStep | TerminateStep | GotoStep
           | SetStep | CheckStep | FailStep | NopStep)


@dataclass(frozen=True, slots=True)
class Program:
    """A validated, compiled scenario."""

    name: str
    path: str
    role: str  #: uac or uas
    steps: tuple[AnyStep, ...]
    transport: str = "udp"
    to: Template = field(default_factory=lambda: Template.compile(
        "sip:${service}@${target}"))
    from_: Template = field(default_factory=lambda: Template.compile(
        "sip:sipload@${local_address}"))
    variables: tuple[tuple[str, Template], ...] = ()
    credentials: tuple[Template, Template, Template] | None = None
    inject: str = ""
    recv_timeout: float = 32.0
    counterpart: str = ""
    allow: tuple[str, ...] = ()
    supported: tuple[str, ...] = ()
    thresholds: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()  #: private methods declared with ``methods:``
    warnings: tuple[str, ...] = ()  #: ``file:line:col: warning: ...`` found when loaded
    digest: str = ""  #: SHA-256 of the source text
    injection: Injection | None = None  #: the rows of ``inject:``, read when loaded
    media: tuple[tuple[str, MediaSpec], ...] = ()
    #: RTP per leg name ("" = every leg without its own), from ``media:``; () = no media
    keeps_last: bool = True
    #: a template reads the last message received (``${last.X}``, ``${last_status}`` ...):
    #: without one, a call waiting (a pause, a recv with nothing queued) drops it

    def media_for(self, leg: str) -> MediaSpec | None:
        """The media spec of a leg (its own, else the scenario's), or None: no RTP."""
        default: MediaSpec | None = None
        for name, spec in self.media:
            if name == leg:
                return spec
            if name == "":
                default = spec
        return default

    @property
    def timer_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for s in self.steps:
            for n in (s.start_timer, s.stop_timer):
                if n and n not in names:
                    names.append(n)
        return tuple(names)
