"""SIPp XML scenarios to sipload YAML (``sipload import-sipp``).

Theory of operation
===================

1. The XML is parsed with expat (line numbers for every element); a document
   that declares entities is refused, and external entities are never fetched.
2. Each ``<send>`` becomes a ``send`` (a request) or ``reply`` (a response)
   step.  Our user agent builds what SIPp scenarios spell out by hand -- Via,
   From/To tags, Call-ID, CSeq, Contact, Max-Forwards, Content-Length, Route,
   Record-Route -- so those lines are dropped; an initial request keeps its
   From, To and Request-URI as ``from:``/``to:``/``request_uri:``; every other
   header, and the body, is kept with SIPp keywords turned into ``${...}``.
3. ``<recv>`` becomes ``recv`` (``optional``, ``timeout``, ``ontimeout`` ->
   ``on_timeout``, ``next`` -> ``on:``); ``<ereg>`` actions become captures;
   ``start_rtd``/``rtd`` become ``start_timer``/``stop_timer``; ``<pause>``,
   ``<timewait>`` become ``pause``; ``<nop>`` a ``nop`` (or a ``goto`` for its
   ``next`` or ``<jump>``); ``<label>`` a ``label``.
4. What cannot be translated is left out and named, with its XML line, in
   :attr:`Imported.warnings`.  Nothing in the XML is ever executed.
5. RTP (``rtp_stream``, ``play_pcap_audio``, ``-rtp_echo``) becomes ``media:``
   and built SDP bodies (:mod:`sipload.scenario.sipp_media`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from xml.parsers import expat

from sipload.scenario.errors import ScenarioError
from sipload.scenario.sipp_media import Resolver, SippMedia
from sipload.scenario.yamlout import dump_scenario
from sipload.sip.message import REASONS

Line = tuple[int, str]
"""A line of a message in the XML, with its line number."""


@dataclass
class Node:
    """An XML element with the line it starts on."""

    tag: str
    attrs: dict[str, str]
    line: int
    children: list[Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    text_line: int = 0  #: the line its character data starts on

    def content(self) -> str:
        return "".join(self.text)


def parse_xml(data: bytes, file: str) -> Node:
    """The document's root element, with line numbers.

    Raises:
        ScenarioError: not well-formed, or declares entities (file:line:col).
    """
    parser = expat.ParserCreate()
    root = Node("#document", {}, 1)
    stack = [root]

    def start(tag: str, attrs: dict[str, str]) -> None:
        node = Node(tag, attrs, parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def chars(text: str) -> None:
        if not stack[-1].text:
            stack[-1].text_line = parser.CurrentLineNumber
        stack[-1].text.append(text)

    def entity(*_args: object) -> None:
        raise ScenarioError(file, parser.CurrentLineNumber, parser.CurrentColumnNumber + 1,
                            "entity declarations are not accepted")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.EntityDeclHandler = entity
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise ScenarioError(file, e.lineno, e.offset + 1,
                            f"not well-formed XML: {expat.ErrorString(e.code)}") from e
    elements = root.children
    if len(elements) != 1 or elements[0].tag != "scenario":
        raise ScenarioError(file, 1, 1, "not a SIPp scenario: the root must be <scenario>")
    return elements[0]


# --------------------------------------------------------------------------- keywords

_SIMPLE = {
    "service": "service", "remote_ip": "remote_host", "remote_port": "remote_port",
    "local_ip": "local_host", "local_port": "local_port", "local_ip_type": "local_ip_type",
    "media_ip": "media_ip", "media_ip_type": "media_ip_type", "media_port": "media_port",
    "auto_media_port": "media_port", "transport": "transport", "call_id": "call_id",
    "call_number": "call_number", "pid": "pid", "branch": "branch", "cseq": "cseq",
}
_KEYWORD = re.compile(r"\[([^\[\]\r\n]+)\]")
_MANAGED_REQUEST = frozenset({"via", "v", "from", "f", "to", "t", "call-id", "i", "cseq",
                              "contact", "m", "max-forwards", "content-length", "l",
                              "route", "record-route"})
_MANAGED_RESPONSE = frozenset({"via", "v", "from", "f", "to", "t", "call-id", "i", "cseq",
                               "contact", "m", "content-length", "l", "record-route"})
_COMMON = {"start_rtd", "rtd", "repeat_rtd", "crlf", "next", "test", "hide", "display",
           "lost", "chance", "counter", "condexec", "condexec_inverse"}
_ATTRS: dict[str, set[str]] = {
    # handled, or left to the UA (retrans, transactions, record-route) on purpose
    "send": _COMMON | {"retrans", "start_txn", "ack_txn"},
    "recv": _COMMON | {"response", "request", "optional", "timeout", "ontimeout", "rrs",
                       "auth", "regexp_match", "response_txn"},
    "pause": _COMMON | {"milliseconds", "distribution", "value", "min", "max", "mean",
                        "stdev", "variable", "sanity_check"},
    "timewait": _COMMON | {"milliseconds"},
    "nop": _COMMON,
    "label": {"id"},
    "sendCmd": set(), "recvCmd": set(),
}
"""Attributes each element may carry without a warning."""
_POSIX = {"alnum": "a-zA-Z0-9", "alpha": "a-zA-Z", "digit": "0-9", "xdigit": "0-9a-fA-F",
          "space": r"\s", "upper": "A-Z", "lower": "a-z", "blank": r" \t",
          "punct": r"!-/:-@\[-`{-~", "print": r" -~", "graph": r"!-~", "cntrl": r"\x00-\x1f"}


def sipp_regex(text: str) -> str:
    """A POSIX extended regex as a Python one (bracket classes such as [:alnum:])."""
    return re.sub(r"\[:([a-z]+):\]", lambda m: _POSIX.get(m.group(1), m.group(0)), text)


def var_name(sipp: str) -> str:
    """A SIPp variable name (``1``, ``name``) as ours (``v1``, ``name``)."""
    return sipp if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", sipp) else "v" + re.sub(
        r"[^A-Za-z0-9_]", "_", sipp)


# --------------------------------------------------------------------------- translation


@dataclass
class Imported:
    """The YAML text, the scenario as data, and what could not be translated."""

    yaml: str
    data: dict[str, Any]
    warnings: list[tuple[int, str]]


class _Translator:
    def __init__(self, root: Node, file: str, resolve: Resolver | None = None,
                 rtp_echo: bool = False) -> None:
        self.root = root
        self.file = file
        self.warnings: list[tuple[int, str]] = []
        self.media = SippMedia(self.warn, resolve, rtp_echo)
        self.pending: list[tuple[dict[str, Any], int]] = []  # steps an action adds after
        self.steps: list[dict[str, Any]] = []
        self.lines: list[int] = []  # XML line of each step
        self.used_vars: set[str] = set()
        self.defined_vars: set[str] = set()
        self.labels: dict[str, int] = {}  # label id -> step index it stands before
        self.index_at: dict[int, int] = {}  # SIPp msg_index -> step index
        self.jumps: list[tuple[int, int, int]] = []  # (goto step, msg_index, line)
        self.role = ""
        self.in_call = False
        self.credentials: dict[str, str] = {}
        self.fields = 0

    def warn(self, line: int, text: str) -> None:
        self.warnings.append((line, text))

    def add(self, step: dict[str, Any], line: int) -> None:
        self.steps.append(step)
        self.lines.append(line)
        pending, self.pending = self.pending, []
        for extra, at in pending:  # what the element's actions add comes after it
            self.add(extra, at)

    # ------------------------------------------------------------------ text

    def keywords(self, text: str, line: int, *, drop_len: bool = False) -> str:
        def one(m: re.Match[str]) -> str:
            word = m.group(1).strip()
            name = word.split()[0]
            base = re.sub(r"[-+][0-9]+$", "", name)
            if base in _SIMPLE:
                if base != name:
                    self.warn(line, f"[{word}]: the offset is not kept")
                return "${" + _SIMPLE[base] + "}"
            if name.startswith("$"):
                v = var_name(name[1:])
                self.used_vars.add(v)
                return "${" + v + "}"
            fm = re.fullmatch(r"field([0-9]+)", name)
            if fm:
                if " " in word:
                    self.warn(line, f"[{word}]: only the plain [fieldN] form is kept")
                self.fields = max(self.fields, int(fm.group(1)) + 1)
                return "${field" + fm.group(1) + "}"
            lm = re.fullmatch(r"last_([A-Za-z0-9_.!%*+`'~\-]+):?", name)
            if lm:
                return "${last." + lm.group(1) + "}"
            if name in ("len", "peer_tag_param", "routes", "next_url") and drop_len:
                return ""
            if name == "authentication":
                return ""
            self.warn(line, f"[{word}]: no such keyword here; left out")
            return ""

        return _KEYWORD.sub(one, text)

    @staticmethod
    def split_message(node: Node) -> tuple[Line, list[Line], list[Line]]:
        """Start line, header lines and body lines of a ``<send>``, each with its line."""
        lines = [(node.text_line + i, ln.strip())
                 for i, ln in enumerate(node.content().splitlines())]
        while lines and not lines[0][1]:
            lines.pop(0)
        if not lines:
            return (node.line, ""), [], []
        first, rest = lines[0], lines[1:]
        headers: list[Line] = []
        body: list[Line] = []
        target = headers
        for ln in rest:
            if target is headers and not ln[1]:
                target = body
                continue
            target.append(ln)
        while body and not body[-1][1]:
            body.pop()
        return first, headers, body

    # ------------------------------------------------------------------ elements

    def run(self) -> dict[str, Any]:
        index = 0
        for node in self.root.children:
            tag = node.tag
            if tag in ("send", "recv", "pause", "nop", "timewait", "sendCmd", "recvCmd"):
                self.index_at[index] = len(self.steps)
                index += 1
            handler = self._handlers().get(tag)
            if handler is not None:
                unknown = sorted(set(node.attrs) - _ATTRS.get(tag, set()))
                for attr in unknown:
                    self.warn(node.line, f"<{tag} {attr}=\"{node.attrs[attr]}\"> is not "
                                         "translated")
                handler(node)
            elif tag not in ("ResponseTimeRepartition", "CallLengthRepartition", "Reference"):
                self.warn(node.line, f"<{tag}> is not translated")
        self.index_at[index] = len(self.steps)
        return self.finish()

    def _handlers(self) -> dict[str, Callable[[Node], None]]:
        return {"send": self.send, "recv": self.recv, "pause": self.pause, "nop": self.nop,
                "label": self.label, "timewait": self.pause,
                "sendCmd": self.three_pcc, "recvCmd": self.three_pcc}

    def three_pcc(self, node: Node) -> None:
        self.warn(node.line, f"<{node.tag}> (3PCC) is not supported")

    def timers(self, node: Node, step: dict[str, Any]) -> None:
        start, stop = node.attrs.get("start_rtd"), node.attrs.get("rtd")
        if start:
            step["start_timer"] = "rtd" + ("1" if start == "true" else f"_{start}")
        if stop:
            step["stop_timer"] = "rtd" + ("1" if stop == "true" else f"_{stop}")
        for attr in ("lost", "chance", "counter", "condexec", "condexec_inverse"):
            if attr in node.attrs:
                self.warn(node.line, f"{attr}=\"{node.attrs[attr]}\" is not supported")

    def next_goto(self, node: Node) -> None:
        nxt = node.attrs.get("next")
        if not nxt:
            if node.attrs.get("test"):
                self.warn(node.line, "test= without next= does nothing")
            return
        step: dict[str, Any] = {"goto": nxt}
        test = node.attrs.get("test")
        if test:
            v = var_name(test)
            self.used_vars.add(v)
            step["when"] = {"var": v, "matches": "."}
        self.add(step, node.line)

    def label(self, node: Node) -> None:
        lid = node.attrs.get("id", "")
        if not lid:
            self.warn(node.line, "<label> without an id")
            return
        self.labels[lid] = len(self.steps)
        self.add({"label": lid}, node.line)

    def pause(self, node: Node) -> None:
        a = node.attrs
        dist = a.get("distribution")
        step: dict[str, Any]
        if "variable" in a:
            self.warn(node.line, "a pause taken from a variable is not supported; 0 ms")
        if dist in (None, "fixed"):
            ms = a.get("milliseconds") or a.get("value")
            if ms is None:
                if node.tag == "pause":
                    self.warn(node.line, "a pause without milliseconds uses SIPp's -d "
                                         "(default 0): 0 ms")
                ms = "0"
            step = {"pause": f"{_num(ms)}ms"}
        elif dist == "uniform":
            step = {"pause": {"uniform": [f"{_num(a.get('min', '0'))}ms",
                                          f"{_num(a.get('max', '0'))}ms"]}}
        elif dist == "normal":
            step = {"pause": {"normal": {"mean": f"{_num(a.get('mean', '0'))}ms",
                                         "stddev": f"{_num(a.get('stdev', '0'))}ms"}}}
        elif dist == "exponential":
            step = {"pause": {"exponential": f"{_num(a.get('mean', '0'))}ms"}}
        else:
            self.warn(node.line, f"distribution=\"{dist}\" is not supported; a fixed pause of"
                                 " its mean")
            step = {"pause": f"{_num(a.get('mean', '0'))}ms"}
        self.timers(node, step)
        self.add(step, node.line)
        self.next_goto(node)

    def nop(self, node: Node) -> None:
        step: dict[str, Any] = {"nop": None}
        self.timers(node, step)
        jump: tuple[int, int] | None = None
        for action in (c for c in node.children if c.tag == "action"):
            for act in action.children:
                if act.tag == "jump" and act.attrs.get("value", "").isdigit():
                    jump = (int(act.attrs["value"]), act.line)
                else:
                    self.action(act, None)
        self.add(step, node.line)
        if jump is not None:
            self.jumps.append((len(self.steps), jump[0], jump[1]))
            self.add({"goto": ""}, jump[1])
        self.next_goto(node)

    def action(self, act: Node, captures: list[dict[str, Any]] | None) -> None:
        if act.tag == "ereg" and captures is not None:
            self.ereg(act, captures)
        elif act.tag == "exec" and SippMedia.handles(act.attrs):
            step = self.media.action(act.attrs, act.line)
            if step is not None:
                self.pending.append((step, act.line))
        elif act.tag == "exec":
            self.warn(act.line, "<exec> is not translated (nothing is ever executed)")
        elif act.tag == "log":
            self.warn(act.line, "<log> is not translated")
        else:
            self.warn(act.line, f"<{act.tag}> action is not translated")

    def ereg(self, act: Node, captures: list[dict[str, Any]]) -> None:
        a = act.attrs
        regex = sipp_regex(a.get("regexp", ""))
        names = [var_name(x.strip()) for x in a.get("assign_to", "").split(",") if x.strip()]
        if not names:
            self.warn(act.line, "<ereg> without assign_to")
            return
        where = a.get("search_in", "msg")
        source: dict[str, Any]
        if where == "hdr":
            header = a.get("header", "").strip().rstrip(":").strip()
            if not header:
                self.warn(act.line, "<ereg search_in=\"hdr\"> without a header")
                return
            source = {"header": header}
            if a.get("occurrence"):
                self.warn(act.line, "occurrence= is not supported: all occurrences joined")
        elif where == "body":
            source = {"body": True}
        else:
            source = {"message": True}
        try:
            groups = re.compile(regex).groups
        except re.error as e:
            self.warn(act.line, f"regexp cannot be used: {e}")
            return
        for i, name in enumerate(names):
            if i > groups:
                self.warn(act.line, f"assign_to {name}: the regexp has no group {i}")
                continue
            cap: dict[str, Any] = {"var": name, **source, "regex": regex, "group": i}
            if a.get("check_it") == "true" and i == 0:
                cap["required"] = True
            captures.append(cap)
            self.defined_vars.add(name)

    def recv(self, node: Node) -> None:
        a = node.attrs
        what: int | str
        if "response" in a:
            what = int(a["response"]) if a["response"].isdigit() else a["response"]
        elif "request" in a:
            what = a["request"].strip().upper()
            if self.role == "":
                self.role = "uas"
            if what == "INVITE":
                self.in_call = True
        else:
            self.warn(node.line, "<recv> without response= or request= is not translated")
            return
        if self.role == "":
            self.role = "uac"
        prev = self.steps[-1] if self.steps else {}
        if what == "ACK" and isinstance(prev.get("reply"), int) and prev["reply"] >= 300:
            self.warn(node.line, "the ACK of a non-2xx answer stays in the UA's transaction: "
                                 "not waited for")
            return
        step: dict[str, Any] = {"recv": what}
        if a.get("optional") in ("true", "global"):
            step["optional"] = True
            if a["optional"] == "global":
                self.warn(node.line, "optional=\"global\" is treated as optional=\"true\"")
        if a.get("timeout"):
            step["timeout"] = f"{_num(a['timeout'])}ms"
        if a.get("ontimeout"):
            step["on_timeout"] = a["ontimeout"]
        nxt = a.get("next")
        if nxt:
            if a.get("test"):
                self.warn(node.line, "next= with test= on a recv jumps always")
            step["on"] = {what: nxt}
        for attr in ("regexp_match", "auth"):
            if attr in a and not (attr == "auth" and what in (401, 407)):
                self.warn(node.line, f"{attr}=\"{a[attr]}\" is not supported")
        self.timers(node, step)
        captures: list[dict[str, Any]] = []
        for action in (c for c in node.children if c.tag == "action"):
            for act in action.children:
                if act.tag == "verifyauth":
                    step["authenticate"] = True
                    self.warn(act.line, "verifyauth: checked against credentials: (set them)")
                else:
                    self.action(act, captures)
        if captures:
            step["capture"] = captures
        if isinstance(what, int) and what in (401, 407):
            step["optional"] = True
            self.warn(node.line, f"recv {what}: the UA answers digest challenges itself "
                                 "(from credentials:); made optional")
        self.add(step, node.line)

    def send(self, node: Node) -> None:
        first, headers, body = self.split_message(node)
        if not first[1]:
            self.warn(node.line, "<send> with no message")
            return
        if first[1].startswith("SIP/2.0"):
            self.reply(node, first, headers, body)
        else:
            self.request(node, first, headers, body)
        self.next_goto(node)

    def _headers(self, headers: list[Line], managed: frozenset[str],
                 step: dict[str, Any]) -> tuple[dict[str, str], dict[str, Line]]:
        """(headers kept, mapped; the UA-managed ones, raw); Content-Type goes to the step."""
        kept: dict[str, str] = {}
        managed_seen: dict[str, Line] = {}
        for line, raw in headers:
            if raw.startswith("[authentication"):
                self.auth_keyword(line, raw)
                continue
            if raw in ("[routes]", "[next_url]"):
                continue  # the UA builds the route set of the dialog
            lm = re.fullmatch(r"\[last_([A-Za-z0-9_.!%*+`'~\-]+):?\](.*)", raw)
            if lm:
                name, value = lm.group(1), "${last." + lm.group(1) + "}" + lm.group(2)
            elif ":" in raw:
                name, value = (x.strip() for x in raw.split(":", 1))
            else:
                self.warn(line, f"header line {raw!r} is not translated")
                continue
            low = name.lower()
            if low in managed:
                managed_seen[low] = (line, value)
                continue
            if "[authentication" in value:
                self.auth_keyword(line, value)
                continue
            mapped = self.keywords(value, line)
            if low in ("content-type", "c"):
                step["content_type"] = mapped
            elif name in kept:
                kept[name] = kept[name] + ", " + mapped
            else:
                kept[name] = mapped
        return kept, managed_seen

    def auth_keyword(self, line: int, value: str) -> None:
        m = re.search(r"\[authentication([^\]]*)\]", value)
        attrs = dict(re.findall(r"([a-z_]+)=([^\s\]]+)", m.group(1))) if m else {}
        if "username" in attrs and "password" in attrs:
            self.credentials = {"username": attrs["username"], "password": attrs["password"]}
        else:
            self.warn(line, "[authentication]: the UA answers challenges from "
                                 "credentials: (set them; SIPp took -au/-ap)")

    def body(self, body: list[Line], step: dict[str, Any]) -> None:
        if body:
            step["body"] = "".join(self.keywords(text, line) + "\r\n" for line, text in body)

    def reply(self, node: Node, first: Line, headers: list[Line], body: list[Line]) -> None:
        parts = first[1].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            self.warn(first[0], f"status line {first[1]!r} is not translated")
            return
        if self.role == "":
            self.role = "uas"
        step: dict[str, Any] = {"reply": int(parts[1])}
        reason = parts[2].strip() if len(parts) > 2 else ""
        if reason and reason != REASONS.get(int(parts[1])):
            step["reason"] = reason
        kept, _ = self._headers(headers, _MANAGED_RESPONSE, step)
        if kept:
            step["headers"] = kept
        self.body(body, step)
        self.timers(node, step)
        self.add(step, node.line)

    def request(self, node: Node, first: Line, headers: list[Line], body: list[Line]) -> None:
        parts = first[1].split()
        if len(parts) != 3 or not parts[2].startswith("SIP/"):
            self.warn(first[0], f"request line {first[1]!r} is not translated")
            return
        method, ruri = parts[0].upper(), self.keywords(parts[1], first[0], drop_len=True)
        if self.role == "":
            self.role = "uac"
        step: dict[str, Any] = {"send": method}
        kept, managed = self._headers(headers, _MANAGED_REQUEST, step)
        to_raw = (managed.get("to") or managed.get("t") or (0, ""))[1]
        in_dialog = "[peer_tag_param]" in to_raw or ";tag=" in to_raw.lower() or (
            self.role == "uas" and self.in_call and method not in ("REGISTER", "OPTIONS"))
        prev = self.steps[-1] if self.steps else {}
        if method == "ACK" and isinstance(prev.get("recv"), int) and prev["recv"] >= 300:
            self.warn(node.line, "ACK for a non-2xx final response: the UA sends it itself")
            return
        auth = "[authentication" in " ".join(h for _, h in headers)
        if auth and prev.get("recv") in (401, 407):
            self.warn(node.line, f"{method} re-sent with credentials: the UA does it itself")
            return
        if not in_dialog and method not in ("ACK", "BYE", "CANCEL", "PRACK", "INFO",
                                            "UPDATE"):
            self.initial(first[0], step, method, ruri, managed)
        if method == "INVITE" and not in_dialog:
            self.in_call = True
        exp = next((k for k in kept if k.lower() == "expires"), None)
        if method == "REGISTER" and exp is not None and kept[exp].isdigit():
            step["expires"] = int(kept.pop(exp))
        if kept:
            step["headers"] = kept
        self.body(body, step)
        self.timers(node, step)
        self.add(step, node.line)

    def initial(self, line: int, step: dict[str, Any], method: str, ruri: str,
                managed: dict[str, Line]) -> None:
        """From, To and Request-URI of a request that opens a call or stands alone."""
        def addr(raw: Line) -> str:
            text = self.keywords(raw[1], raw[0], drop_len=True)
            return re.sub(r";\s*tag=[^;>]*", "", text).strip()

        frm = managed.get("from") or managed.get("f")
        to = managed.get("to") or managed.get("t")
        if frm:
            step["from"] = addr(frm)
        if to:
            step["to"] = addr(to)
        to_uri = re.search(r"<([^>]*)>", step.get("to", ""))
        bare = to_uri.group(1) if to_uri else step.get("to", "")
        if method == "REGISTER" or ruri != bare:
            step["request_uri"] = ruri
        host = re.match(r"sips?:(?:[^@]*@)?([^;:>]+)", ruri)
        if method != "REGISTER" and host and host.group(1) != "${remote_host}":
            step["route"] = "<sip:${remote_host}:${remote_port};lr>"
            self.warn(line, f"Request-URI host {host.group(1)!r} is not [remote_ip]: "
                                 "a Route to the target is added (SIPp sends to the target)")

    # ------------------------------------------------------------------ assembling

    def finish(self) -> dict[str, Any]:
        for goto_at, index, line in self.jumps:
            at = self.index_at.get(index)
            if at is None:
                self.warn(line, f"<jump value=\"{index}\"> goes past the end; left out")
                self.steps[goto_at] = {"nop": None}
                continue
            name = f"msg{index}"
            if name not in self.labels:
                self.labels[name] = at
            self.steps[goto_at] = {"goto": name}
            if at <= goto_at:
                self.steps[goto_at]["max"] = 100
                self.warn(line, f"<jump value=\"{index}\"> goes back: loop bounded to 100 "
                                "times")
        inserts = sorted(((at, lid) for lid, at in self.labels.items()
                          if not any(s.get("label") == lid for s in self.steps)),
                         reverse=True)
        for at, lid in inserts:
            self.steps.insert(at, {"label": lid})
            self.lines.insert(at, 0)
        started = {s.get("start_timer") for s in self.steps}
        for s in self.steps:  # SIPp's rtd timers start with the call unless start_rtd says
            stop = s.get("stop_timer")
            if stop and stop not in started:
                started.add(stop)
                self.steps.insert(0, {"nop": None, "start_timer": stop})
                self.lines.insert(0, 0)
        positions = {s["label"]: i for i, s in enumerate(self.steps) if "label" in s}
        for i, s in enumerate(self.steps):
            self.check_jump(i, s, positions)
        data: dict[str, Any] = {"name": self.root.attrs.get("name") or "imported",
                                "role": self.role or "uac"}
        if self.credentials:
            data["credentials"] = self.credentials
        missing = sorted(self.used_vars - self.defined_vars)
        fields = [f"field{i}" for i in range(self.fields)]
        if missing or fields:
            data["variables"] = {v: "" for v in (*missing, *fields)}
        if self.fields:
            self.warn(0, f"uses [field0]..[field{self.fields - 1}]: empty until the CSV is "
                         "given with inject: (CSV fields win over variables:)")
        data["steps"] = self.steps or [{"nop": None}]
        self.media.finish(data, self.steps, data["role"])
        return data

    def check_jump(self, i: int, step: dict[str, Any], positions: dict[str, int]) -> None:
        line = self.lines[i] if i < len(self.lines) else 0
        if "goto" in step:
            at = positions.get(step["goto"])
            if at is None:
                self.warn(line, f"next=\"{step['goto']}\": no such label; left out")
                step.clear()
                step["nop"] = None
            elif at <= i and "max" not in step:
                step["max"] = 100
                self.warn(line, f"jump back to {step['goto']!r}: loop bounded to 100 times")
        for key in ("on_timeout",):
            if key in step and positions.get(step[key], -1) <= i:
                self.warn(line, f"{key} to {step[key]!r} (missing or backwards) left out")
                del step[key]
        if "on" in step:
            for code, lid in list(step["on"].items()):
                if positions.get(lid, -1) <= i:
                    self.warn(line, f"next=\"{lid}\" (missing or backwards) left out")
                    del step["on"][code]
            if not step["on"]:
                del step["on"]


def _num(text: str) -> str:
    t = text.strip()
    return t if re.fullmatch(r"[0-9]+(\.[0-9]+)?", t) else "0"


def import_sipp(data: bytes, file: str = "<sipp>", *, resolve: Resolver | None = None,
                rtp_echo: bool = False) -> Imported:
    """Translate a SIPp XML scenario.

    Args:
        data: the XML.
        file: its name, for messages.
        resolve: turns the audio files of ``rtp_stream``/``play_pcap_audio`` into
            what ``media: {play: ...}`` can play (the command line reads and writes
            the files); without it an ``rtp_stream`` file is played as named and a
            capture is left out (see :mod:`sipload.scenario.sipp_media`).
        rtp_echo: the scenario ran with SIPp's ``-rtp_echo``: ``media: {echo: true}``.

    Raises:
        ScenarioError: the XML is not well-formed (file:line:col), or not a scenario.
    """
    root = parse_xml(data, file)
    t = _Translator(root, file, resolve, rtp_echo)
    out = t.run()
    header = [f"Imported from {file} by sipload import-sipp."]
    header += [f"XML line {ln}: {msg}" if ln else msg for ln, msg in t.warnings]
    return Imported(dump_scenario(out, header), out, t.warnings)
