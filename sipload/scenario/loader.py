"""Loading a scenario: safe YAML, schema validation, semantic checks, compilation.

Every problem is one :class:`ScenarioError` naming the file, line and column,
with the nearest valid key for a misspelt one.  YAML is read with PyYAML's
safe loader (no tags that build objects); nothing in a scenario is evaluated.

Semantic rules beyond the schema: labels are unique; every ``goto`` and
``on:`` target exists; a jump backwards (a loop) must be a ``goto`` with
``max``; templates use only known variables (keywords, ``variables:``,
``set:``, captures, CSV fields); a bare number of 100 or more where a duration
goes is refused (``pause: 3000`` would be 3,000 seconds; SIPp users mean ms);
a ``stop_timer`` needs a ``start_timer`` of the same name.  YAML syntax errors
say what to fix, not only the parser's words.

Pitfalls that may be meant are *warnings* (``Program.warnings``, each
``file:line:col: warning: ...``; ``sipload validate`` and ``sipload run`` print
them): a request method that is neither a SIP method sipload knows nor declared
under ``methods:`` (or ``allow:``) (a typo such as ``INVTE``), and steps that can never run
(after an unconditional ``goto``, a ``fail`` or a ``goto`` past them, with no
jump leading back in).
"""

from __future__ import annotations

import difflib
import hashlib
import re
from pathlib import Path
from typing import Any

from sipload.media import g711, source
from sipload.media.errors import MediaConfigError
from sipload.media.sdes import DEFAULT_SUITES
from sipload.media.table import MediaSpec
from sipload.scenario.errors import ScenarioError
from sipload.scenario.inject import Injection, load_injection
from sipload.scenario.model import (
    AnyStep,
    Body,
    Capture,
    ChallengeSpec,
    Check,
    CheckStep,
    DtmfStep,
    FailStep,
    GotoStep,
    HeaderSpec,
    Matcher,
    MediaCheck,
    NopStep,
    PauseStep,
    Program,
    RecvStep,
    ReplyStep,
    SendStep,
    SetStep,
    Template,
    TerminateStep,
)
from sipload.scenario.quickcheck import quick_valid
from sipload.scenario.regexcheck import RegexTooSlow, check_regex
from sipload.scenario.schema import SCHEMA, STEP_KINDS, TOP_KEYS
from sipload.scenario.yamlsource import (
    Marks,
    Path_,
    SafeLoader12,
    compose,
    parse_duration,
    read_source,
)

KEYWORDS = frozenset({
    "call_number", "call_id", "local_host", "local_port", "remote_host", "remote_port",
    "transport", "target", "local_address", "service", "branch", "cseq", "local_tag",
    "remote_tag",
    "local_contact", "media_port", "media_ip", "worker", "pid", "username", "password",
    "realm", "last_status", "last_method", "last_body", "local_ip_type", "media_ip_type",
})
"""Variables every call has (see scenarios/README.md).  Besides these,
``${last.NAME}`` is header NAME of the last message received on the step's leg."""

LAST_PREFIX = "last."
DTMF_PAUSE = 0.050
"""The silence between two digits by default: each digit's INFO follows the previous
one by its duration plus this."""
_SOURCES = ("header", "body", "uri", "message")

KNOWN_METHODS = frozenset({
    "INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "INFO", "UPDATE", "PRACK",
    "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH",
})
"""Request methods sent or received without a warning; others go under ``methods:``."""

BARE_DURATION_LIMIT = 100
"""A bare number of at least this where a duration goes needs a unit."""


__all__ = ["KEYWORDS", "KNOWN_METHODS", "ScenarioError", "load_file", "load_text",
           "parse_duration", "warm_media"]


_Loader = SafeLoader12  # kept for callers that load YAML the scenario way


class _Marks(Marks):
    """:class:`~sipload.scenario.yamlsource.Marks` that make :class:`ScenarioError`."""

    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file

    def error(self, path: Path_, message: str, *, key: bool = False) -> ScenarioError:
        line, col = self.find(path, key=key)
        return ScenarioError(self.file, line, col, message)

    def warning(self, path: Path_, message: str, *, key: bool = False) -> str:
        line, col = self.find(path, key=key)
        return f"{self.file}:{line}:{col}: warning: {message}"


def _nearest(word: str, options: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def _parse_matcher(spec: Any) -> Matcher:
    if isinstance(spec, int):
        return Matcher(spec, spec, "", str(spec))
    text = str(spec)
    if len(text) == 3 and text.endswith("xx"):
        base = int(text[0]) * 100
        return Matcher(base, base + 99, "", text)
    if re.fullmatch(r"[1-6][0-9][0-9]-[1-6][0-9][0-9]", text):
        lo, hi = text.split("-")
        return Matcher(int(lo), int(hi), "", text)
    if text.isdigit():
        return Matcher(int(text), int(text), "", text)
    return Matcher(0, 0, text, text)


class _Compiler:
    def __init__(self, data: dict[str, Any], marks: _Marks, csv_fields: int) -> None:
        self.data = data
        self.marks = marks
        self.labels: dict[str, int] = {}
        self.known: set[str] = set(KEYWORDS)
        self.uses_last = False  #: a template reads the last message (``${last.X}`` ...)
        self.known.update(f"field{i}" for i in range(max(csv_fields, 0)))
        self.csv_fields = csv_fields
        self.methods = frozenset(str(m) for m in data.get("methods", []) or [])
        self.declared = self.methods | {str(m) for m in data.get("allow", []) or []}
        self.warnings: list[str] = []

    def duration(self, value: Any, path: Path_) -> float:
        """A duration in seconds; a bare number >= BARE_DURATION_LIMIT is refused."""
        bare = (isinstance(value, int | float) and not isinstance(value, bool)) or (
            isinstance(value, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?", value) is not None)
        if bare and float(value) >= BARE_DURATION_LIMIT:
            raise self.err(path, f"{value} has no unit, so it means {value} seconds "
                                 f"(SIPp counts milliseconds): write {value}ms, or "
                                 f"{value}s if you mean seconds")
        return parse_duration(value)

    def method(self, method: str, path: Path_, what: str) -> None:
        """Warn about a request method neither known nor declared under methods:."""
        if method in KNOWN_METHODS or method in self.declared:
            return
        hint = _nearest(method, sorted(KNOWN_METHODS))
        self.warnings.append(self.marks.warning(
            path, f"{what} {method} is not a SIP method sipload knows{hint} (a private "
                  f"method: declare it with 'methods: [{method}]')"))

    def err(self, path: Path_, message: str, key: bool = False) -> ScenarioError:
        return self.marks.error(path, message, key=key)

    # ------------------------------------------------------------------ validation

    def validate(self) -> None:
        data = self.data
        for key in data:
            if key not in TOP_KEYS:
                raise self.err((key,), f"unknown key '{key}'{_nearest(key, TOP_KEYS)}", key=True)
        top = dict(SCHEMA)
        top_props = {k: v for k, v in SCHEMA["properties"].items() if k != "steps"}
        top = {"type": "object", "properties": top_props}
        self._validate(data, top, ())
        steps = data.get("steps")
        if not isinstance(steps, list) or not steps:
            raise self.err(("steps",) if "steps" in data else (),
                           "'steps' must be a non-empty list of steps")
        kinds = list(STEP_KINDS)
        for i, step in enumerate(steps):
            path: Path_ = ("steps", i)
            if not isinstance(step, dict):
                if isinstance(step, str) and step in STEP_KINDS:
                    raise self.err(path, f"step '{step}' needs a value, e.g. '{step}: ...'")
                raise self.err(path, "a step is a mapping such as 'send: INVITE'")
            present = [k for k in step if k in STEP_KINDS]
            if not present:
                first = next(iter(step), "")
                raise self.err((*path, first),
                               f"unknown step '{first}'{_nearest(str(first), kinds)}"
                               f" (steps: {', '.join(kinds)})", key=True)
            if len(present) > 1:  # a kind's own keys may name another kind (recv: check)
                owners = [k for k in present
                          if all(o in STEP_KINDS[k]["properties"] for o in present)]
                if len(owners) != 1:
                    raise self.err((*path, present[1]), "a step has one kind; this one has "
                                   f"{' and '.join(present)}", key=True)
                present = owners
            kind = present[0]
            allowed = list(STEP_KINDS[kind]["properties"])
            for key in step:
                if key not in allowed:
                    raise self.err((*path, key), f"unknown key '{key}' in a {kind} step"
                                   f"{_nearest(str(key), allowed)}", key=True)
            self._validate(step, STEP_KINDS[kind], path)

    def _validate(self, instance: Any, schema: dict[str, Any], base: Path_) -> None:
        if quick_valid(instance, schema):  # the common case, without importing jsonschema
            return
        import jsonschema  # here: only for an error message (or what quick_valid cannot tell)

        validator = jsonschema.Draft202012Validator(schema)
        errors = sorted(validator.iter_errors(instance), key=lambda e: len(e.absolute_path))
        if not errors:
            return
        best = jsonschema.exceptions.best_match(errors)
        path: Path_ = (*base, *best.absolute_path)
        value = best.instance
        message = best.message
        parent = best.parent
        while parent is not None and parent.validator not in ("oneOf", "anyOf"):
            parent = parent.parent
        if parent is not None and isinstance(parent.schema, dict) and \
                parent.schema.get("description"):
            path = (*base, *parent.absolute_path)
            message = f"{parent.instance!r} is not valid: expected {parent.schema['description']}"
        elif best.validator in ("oneOf", "anyOf"):
            what = best.schema.get("description") if isinstance(best.schema, dict) else None
            message = f"{value!r} is not valid" + (f": expected {what}" if what else "")
        elif best.validator == "additionalProperties" and isinstance(value, dict):
            props = list(best.schema.get("properties", {}))
            extra = [k for k in value if k not in props]
            if extra:
                raise self.err((*path, extra[0]), f"unknown key '{extra[0]}'"
                               f"{_nearest(str(extra[0]), props)}", key=True)
        elif best.validator == "pattern" and best.absolute_path:
            message = f"{value!r} is not valid here"
        field = ".".join(str(p) for p in best.absolute_path)
        raise self.err(path, f"{field + ': ' if field else ''}{message}")

    # ------------------------------------------------------------------ compiling

    def template(self, text: Any, path: Path_) -> Template:
        t = Template.compile(str(text))
        for name in t.names:
            if name.startswith("last"):
                self.uses_last = True
            if name.startswith(LAST_PREFIX) and len(name) > len(LAST_PREFIX):
                continue
            if name not in self.known:
                hint = _nearest(name, sorted(self.known))
                raise self.err(path, f"unknown variable '${{{name}}}'{hint}")
        return t

    def headers(self, spec: dict[str, Any] | None, path: Path_) -> tuple[HeaderSpec, ...]:
        out: list[HeaderSpec] = []
        for name, value in (spec or {}).items():
            p = (*path, "headers", name)
            if value is None:
                out.append((name, None))
            elif isinstance(value, list):
                out.append((name, tuple(self.template(v, p) for v in value)))
            else:
                out.append((name, (self.template(value, p),)))
        return tuple(out)

    def body(self, spec: Any, path: Path_) -> Body | None:
        if spec is None:
            return None
        if isinstance(spec, dict):
            return Body(None, str(spec["sdp"]))
        return Body(self.template(spec, (*path, "body")), "")

    def regex(self, text: str, path: Path_) -> re.Pattern[str]:
        try:
            compiled = re.compile(text)
            check_regex(text)
        except re.error as e:
            raise self.err(path, f"bad regular expression: {e}") from e
        except RegexTooSlow as e:
            raise self.err(path, f"regular expression {text!r}: {e}") from e
        return compiled

    def checks(self, items: list[dict[str, Any]], path: Path_,
               media_ok: bool = False) -> tuple[Check, ...]:
        out: list[Check] = []
        for j, c in enumerate(items):
            p = (*path, j)
            if "media" in c:
                if not media_ok:
                    raise self.err((*p, "media"), "a media condition belongs in a 'check' step",
                                   key=True)
                if len(c) > 1 + ("name" in c):
                    raise self.err(p, "a media check has only 'media' (and a 'name')")
                out.append(self.media_check(c["media"], (*p, "media"), str(c.get("name", ""))))
                continue
            if sum(1 for k in _SOURCES if c.get(k)) != 1:
                raise self.err(p, "a check names one 'header', or sets one of 'body', "
                                  "'uri' or 'message' to true")
            name = c.get("name") or str(c.get("header") or ("uri" if c.get("uri") else "body"))
            present = True if c.get("present") else (False if c.get("absent") else None)
            out.append(Check(
                str(name), str(c.get("header") or ""), bool(c.get("body")), present,
                self.regex(c["matches"], (*p, "matches")) if "matches" in c else None,
                self.template(c["equals"], (*p, "equals")) if "equals" in c else None,
                bool(c.get("uri")), bool(c.get("message")),
            ))
        return tuple(out)

    def media_check(self, m: dict[str, Any], path: Path_, name: str) -> Check:
        loss = m.get("max_loss", -1.0)
        if isinstance(loss, str):
            loss = float(loss.rstrip("%")) / 100.0
        cond = MediaCheck(
            min_packets=int(m.get("min_packets", -1)), max_loss=float(loss),
            max_jitter=parse_duration(m["max_jitter"]) if "max_jitter" in m else -1.0,
            min_mos=float(m.get("min_mos", -1.0)))
        if not self.data.get("media"):
            raise self.err(path, "a media check needs RTP: give the scenario a 'media:' section")
        return Check(name or "media", media=cond)

    def media_specs(self) -> tuple[tuple[str, MediaSpec], ...]:
        """``media:`` compiled: the scenario's spec, then each leg's (WAV files read now)."""
        top = self.data.get("media")
        if not top:
            return ()
        out = [("", self.media_spec(top, ("media",), {}))]
        for leg, own in (top.get("legs") or {}).items():
            out.append((str(leg), self.media_spec(own or {}, ("media", "legs", leg), top)))
        return tuple(out)

    def media_spec(self, m: dict[str, Any], path: Path_, base: dict[str, Any]) -> MediaSpec:
        def get(key: str, default: Any) -> Any:
            return m[key] if key in m else base.get(key, default)

        codec = get("codec", ["PCMU", "PCMA"])
        codecs = tuple(str(c) for c in (codec if isinstance(codec, list) else [codec]))
        ptime = parse_duration(get("ptime", 0.02))
        ptime_ms = round(ptime * 1000)
        if ptime_ms not in (10, 20, 30, 40, 50, 60) or abs(ptime * 1000 - ptime_ms) > 1e-6:
            where = (*path, "ptime") if "ptime" in m else ("media", "ptime")
            raise self.err(where, "ptime must be 10, 20, 30, 40, 50 or 60 ms")
        echo = bool(get("echo", False))
        play_text = str(get("play", "silence" if echo else "tone"))
        if echo and "play" in m:
            raise self.err((*path, "play"), "echo returns what arrives: remove 'play'")
        play, samples, label = "tone", None, ""
        frequency = source.TONE_HZ
        if play_text == "silence":
            play = "silence"
        elif play_text == "tone" or play_text.startswith("tone:"):
            if play_text.startswith("tone:"):
                freq = play_text[5:]
                if not freq.isdigit() or not 0 < int(freq) < 4000:
                    raise self.err((*path, "play"), "tone:FREQ takes a frequency 1-3999 Hz")
                frequency = int(freq)
        else:
            play = "file"
            wav = Path(play_text)
            file = self.marks.file
            if not wav.is_absolute() and not file.startswith("<"):
                wav = Path(file).parent / wav
            where = (*path, "play") if "play" in m else ("media", "play")
            try:
                data = wav.read_bytes()
            except OSError as e:
                raise self.err(where, f"cannot read WAV file '{wav}': {e.strerror}") from e
            try:
                samples = source.wav_samples(data, str(wav))
            except MediaConfigError as e:
                raise self.err(where, str(e)) from e
            label = str(wav)
        srtp = str(get("srtp", ""))
        suites = tuple(str(x) for x in get("srtp_suites", DEFAULT_SUITES))
        if "srtp_suites" in m and not srtp:
            raise self.err((*path, "srtp_suites"), "srtp_suites needs 'srtp: sdes'")
        return MediaSpec(codecs=codecs, ptime_ms=ptime_ms, play=play, echo=echo,
                         record=str(get("record", "")), dtmf=bool(get("dtmf", True)),
                         samples=samples, label=label, frequency=frequency, srtp=srtp,
                         suites=suites)

    def collect_names(self) -> None:
        """First pass: labels and every variable a step defines."""
        for name in self.data.get("variables", {}) or {}:
            self.known.add(str(name))
        for i, step in enumerate(self.data["steps"]):
            if "label" in step:
                label = str(step["label"])
                if label in self.labels:
                    raise self.err(("steps", i, "label"), f"label '{label}' is defined twice")
                self.labels[label] = i
            for name in (step.get("set") or {}) if "set" in step else {}:
                self.known.add(str(name))
            for cap in step.get("capture", []) or []:
                self.known.add(str(cap["var"]))

    def target(self, label: str, path: Path_) -> int:
        if label not in self.labels:
            raise self.err(path, f"no label '{label}'{_nearest(label, list(self.labels))}")
        return self.labels[label]

    def forward(self, label: str, path: Path_, i: int, what: str) -> int:
        target = self.target(label, path)
        if target <= i:
            raise self.err(path, f"'{what}' jumps forward only; loop with a 'goto' and 'max'")
        return target

    def challenge(self, spec: Any, path: Path_) -> ChallengeSpec | None:
        if spec is None or spec is False:
            return None
        if spec is True:
            return ChallengeSpec()
        qop = spec.get("qop", ["auth"])
        qops = () if qop == "none" else ((qop,) if isinstance(qop, str) else tuple(qop))
        return ChallengeSpec(
            self.template(spec["realm"], (*path, "realm")) if "realm" in spec else None,
            str(spec.get("algorithm", "MD5")), qops, bool(spec.get("stale")))

    def step(self, i: int, s: dict[str, Any]) -> AnyStep:
        path: Path_ = ("steps", i)
        line = self.marks.at.get(path, (0, 0))[0]
        common: dict[str, Any] = {
            "line": line, "start_timer": str(s.get("start_timer", "")),
            "stop_timer": str(s.get("stop_timer", "")), "leg": str(s.get("leg", "main")),
        }
        t = self.template
        if "send" in s:
            def opt(key: str) -> Template | None:
                return t(s[key], (*path, key)) if key in s else None

            method = str(s["send"]).upper()
            self.method(method, (*path, "send"), "send:")
            return SendStep(
                **common, method=method, to=opt("to"), from_=opt("from"),
                request_uri=opt("request_uri"), route=opt("route"), subject=opt("subject"),
                headers=self.headers(s.get("headers"), path), body=self.body(s.get("body"), path),
                content_type=opt("content_type"), out_of_dialog=bool(s.get("out_of_dialog")),
                expires=s.get("expires"),
            )
        if "reply" in s:
            code = int(s["reply"])
            if "challenge" in s and code not in (401, 407):
                raise self.err((*path, "challenge"), "a challenge goes with 401 or 407")
            return ReplyStep(
                **common, code=code, reason=str(s.get("reason", "")),
                headers=self.headers(s.get("headers"), path), body=self.body(s.get("body"), path),
                content_type=t(s["content_type"], (*path, "content_type"))
                if "content_type" in s else None,
                challenge=self.challenge(s.get("challenge"), (*path, "challenge")),
            )
        if "recv" in s:
            spec = s["recv"] if isinstance(s["recv"], list) else [s["recv"]]
            on: list[tuple[Matcher, int]] = []
            for code, label in (s.get("on") or {}).items():
                p = (*path, "on", code)
                if not re.fullmatch(r"[1-6]xx|[1-6][0-9][0-9](-[1-6][0-9][0-9])?|"
                                    r"[A-Z][A-Z0-9_\-]*", str(code)):
                    raise self.err(p, f"'on:' key {code!r} is not a status code, class, "
                                      "range or method", key=True)
                on.append((_parse_matcher(code), self.forward(str(label), p, i, "on:")))
            caps: list[Capture] = []
            for j, c in enumerate(s.get("capture", []) or []):
                cp = (*path, "capture", j)
                if sum(1 for k in _SOURCES if c.get(k)) != 1:
                    raise self.err(cp, "a capture names one 'header', or sets one of 'body',"
                                       " 'uri' or 'message' to true")
                rx = self.regex(c["regex"], (*cp, "regex"))
                group = int(c.get("group", -1))
                if group > rx.groups:
                    raise self.err((*cp, "group"), f"the regex has {rx.groups} group(s)")
                caps.append(Capture(str(c["var"]), rx, str(c.get("header", "")),
                                    bool(c.get("body")), bool(c.get("required")),
                                    bool(c.get("uri")), bool(c.get("message")), group))
            timeout = self.duration(s["timeout"], (*path, "timeout")) \
                if "timeout" in s else None
            matchers = tuple(_parse_matcher(x) for x in spec)
            for m in matchers:
                if m.method:
                    self.method(m.method, (*path, "recv"), "recv:")
            if s.get("authenticate") and not all(m.method for m in matchers):
                raise self.err((*path, "authenticate"), "only a request can be authenticated")
            on_timeout = (self.forward(str(s["on_timeout"]), (*path, "on_timeout"), i,
                                       "on_timeout") if "on_timeout" in s else -1)
            return RecvStep(**common, matchers=matchers,
                            optional=bool(s.get("optional")), timeout=timeout, on=tuple(on),
                            captures=tuple(caps),
                            checks=self.checks(s.get("check", []) or [], (*path, "check")),
                            on_timeout=on_timeout,
                            match=self.checks(s.get("match", []) or [], (*path, "match")),
                            authenticate=bool(s.get("authenticate")))
        if "pause" in s:
            p = s["pause"]
            pp: Path_ = (*path, "pause")
            d = self.duration
            if isinstance(p, dict):
                (dist, arg), = p.items()
                dp: Path_ = (*pp, dist)
                if dist == "uniform":
                    a, b = d(arg[0], (*dp, 0)), d(arg[1], (*dp, 1))
                    if b < a:
                        raise self.err(pp, "uniform: the first bound is larger")
                elif dist == "exponential":
                    a, b = d(arg, dp), 0.0
                else:
                    a, b = d(arg["mean"], (*dp, "mean")), d(arg["stddev"], (*dp, "stddev"))
                return PauseStep(**common, distribution=str(dist), a=a, b=b)
            return PauseStep(**common, distribution="fixed", a=d(p, pp))
        if "dtmf" in s:
            dur = self.duration(s.get("duration", 0.25), (*path, "duration"))
            gap = self.duration(s["gap"], (*path, "gap")) if "gap" in s else dur + DTMF_PAUSE
            mode = str(s.get("mode", "info"))
            if mode == "rfc4733" and not self.data.get("media"):
                raise self.err((*path, "mode"), "mode rfc4733 sends the digits in the RTP "
                                                "stream: give the scenario a 'media:' section")
            return DtmfStep(**common, digits=str(s["dtmf"]), duration_ms=int(dur * 1000),
                            gap=gap, mode=mode)
        if "fail" in s:
            return FailStep(**common, reason=str(s["fail"]),
                            detail=t(s["detail"], (*path, "detail")) if "detail" in s else None)
        if "terminate" in s:
            return TerminateStep(**common, wait=bool(s.get("wait", True)))
        if "label" in s:
            return NopStep(**common, label=str(s["label"]))
        if "goto" in s:
            target = self.target(str(s["goto"]), (*path, "goto"))
            mx = int(s.get("max", 0))
            if target <= i and mx == 0:
                raise self.err((*path, "goto"), "a jump backwards is a loop: give it a 'max'")
            when = s.get("when") or {}
            if when and str(when["var"]) not in self.known:
                raise self.err((*path, "when", "var"), f"unknown variable '{when['var']}'")
            return GotoStep(
                **common, target=target, max=mx, when_var=str(when.get("var", "")),
                when_equals=t(when["equals"], (*path, "when", "equals"))
                if "equals" in when else None,
                when_matches=self.regex(when["matches"], (*path, "when", "matches"))
                if "matches" in when else None,
            )
        if "set" in s:
            return SetStep(**common, values=tuple(
                (str(k), t(v, (*path, "set", k))) for k, v in (s["set"] or {}).items()))
        if "check" in s:
            return CheckStep(**common, checks=self.checks(s["check"], (*path, "check"),
                                                          media_ok=True))
        return NopStep(**common)

    def check_timers(self, steps: tuple[AnyStep, ...]) -> None:
        """Every stop_timer has a start_timer of the same name somewhere."""
        started = {st.start_timer for st in steps if st.start_timer}
        for i, st in enumerate(steps):
            if st.stop_timer and st.stop_timer not in started:
                raise self.err(("steps", i, "stop_timer"),
                               f"stop_timer '{st.stop_timer}' has no start_timer "
                               f"'{st.stop_timer}', so it would never be measured"
                               f"{_nearest(st.stop_timer, sorted(started))}")

    def check_reachable(self, steps: tuple[AnyStep, ...]) -> None:
        """Warn about the first step of each run of steps no path reaches."""
        seen = [False] * len(steps)
        todo = [0]
        while todo:
            i = todo.pop()
            if seen[i]:
                continue
            seen[i] = True
            todo += _successors(i, steps[i], len(steps))
        i = 0
        while i < len(steps):
            if seen[i] or (isinstance(steps[i], NopStep) and "label" in self.data["steps"][i]):
                i += 1
                continue
            kind = next((k for k in self.data["steps"][i] if k in STEP_KINDS), "step")
            prev = steps[i - 1] if i else None
            why = ("it follows an unconditional 'goto'" if isinstance(prev, GotoStep)
                   else "it follows a 'fail'" if isinstance(prev, FailStep)
                   else "every path jumps past it")
            self.warnings.append(self.marks.warning(
                ("steps", i, kind), f"this '{kind}' step can never run: {why} and no "
                                    "jump leads to it", key=True))
            while i < len(steps) and not seen[i]:
                i += 1

    def program(self, name: str, path: str, digest: str,
                injection: Injection | None = None) -> Program:
        d = self.data
        self.collect_names()
        steps = tuple(self.step(i, s) for i, s in enumerate(d["steps"]))
        self.check_timers(steps)
        self.check_reachable(steps)
        role = str(d.get("role") or _guess_role(steps))
        creds = d.get("credentials")
        extra: dict[str, Any] = {}
        if "to" in d:
            extra["to"] = self.template(d["to"], ("to",))
        if "from" in d:
            extra["from_"] = self.template(d["from"], ("from",))
        return Program(
            name=str(d.get("name") or name), path=path, role=role, steps=steps,
            transport=str(d.get("transport", "udp")),
            variables=tuple((str(k), self.template(v, ("variables", k)))
                            for k, v in (d.get("variables") or {}).items()),
            credentials=(self.template(creds["username"], ("credentials", "username")),
                         self.template(creds["password"], ("credentials", "password")),
                         self.template(creds.get("realm", ""), ("credentials", "realm")))
            if creds else None,
            inject=str(d.get("inject", "")),
            recv_timeout=self.duration(d["recv_timeout"], ("recv_timeout",))
            if "recv_timeout" in d else 32.0,
            counterpart=str(d.get("counterpart", "")),
            allow=tuple(str(x) for x in d.get("allow", []) or []),
            supported=tuple(str(x) for x in d.get("supported", []) or []),
            thresholds=tuple(str(x) for x in d.get("thresholds", []) or []),
            methods=tuple(sorted(self.methods)), warnings=tuple(self.warnings),
            digest=digest, injection=injection, media=self.media_specs(),
            keeps_last=self.uses_last, **extra,
        )


def _successors(i: int, step: AnyStep, count: int) -> list[int]:
    """The steps that may run after step ``i``."""
    if isinstance(step, FailStep):
        return []
    if isinstance(step, GotoStep):
        conditional = bool(step.when_var or step.max)
        out = [step.target, i + 1] if conditional else [step.target]
        return [j for j in out if j < count]
    out = [i + 1]
    if isinstance(step, RecvStep):
        out += [t for _, t in step.on]
        if step.on_timeout >= 0:
            out.append(step.on_timeout)
    return [j for j in out if j < count]


def _guess_role(steps: tuple[AnyStep, ...]) -> str:
    for s in steps:
        if isinstance(s, SendStep):
            return "uac"
        if isinstance(s, RecvStep):
            return "uas"
    return "uac"


def load_text(text: str, file: str = "<scenario>", *, csv_fields: int = 0,
              checked: bool = False) -> Program:
    """Validate and compile scenario text.

    Args:
        checked: the text passed this validation already (a worker compiles the
            scenario its coordinator loaded): skip the schema pass.

    Raises:
        ScenarioError: the first problem found, with file, line and column.
    """
    marks = _Marks(file)
    node, data = compose(text, lambda line, col, message: ScenarioError(file, line, col,
                                                                          message))
    if node is None or not isinstance(data, dict):
        raise ScenarioError(file, 1, 1, "a scenario is a mapping with a 'steps' list")
    assert node is not None
    marks.collect(node, ())
    if not checked:
        _Compiler(data, marks, csv_fields).validate()
    injection: Injection | None = None
    if data.get("inject") and not csv_fields:
        csv = Path(str(data["inject"]))
        if not csv.is_absolute() and not file.startswith("<"):
            csv = Path(file).parent / csv
        if not csv.is_file():
            raise marks.error(("inject",), f"no injection file '{csv}'")
        injection = load_injection(csv)
        csv_fields = injection.fields
    compiler = _Compiler(data, marks, csv_fields)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return compiler.program(Path(file).stem, file, digest, injection)


def load_file(path: str | Path, *, csv_fields: int = 0) -> Program:
    """Load a scenario file (see :func:`load_text`)."""
    p = Path(path)
    text = read_source(p, lambda line, col, message: ScenarioError(str(p), line, col, message))
    return load_text(text, str(p), csv_fields=csv_fields)


def warm_media(program: Program | None) -> None:
    """Encode every leg's audio now, before the run: the first call with RTP would
    otherwise import numpy and build the G.711 tables mid-run, a stall of its loop
    (a tenth of a second or more) that every call in flight would feel."""
    if program is None:
        return
    for _, spec in program.media:
        if spec.echo:
            continue
        for codec in spec.codecs:
            if codec in g711.PAYLOAD_TYPES:
                spec.frames(codec, g711.CLOCK_RATE * spec.ptime_ms // 1000)
