"""Grammar fragments of RFC 3261 §25 and the small lexical helpers built on them.

Each regular expression stands under the ABNF it implements.  The helpers here
split header values into list elements and parameters without ever cutting
inside a quoted string or a URI in angle brackets; everything above them (URIs,
typed headers, the parser) uses them.

https://www.rfc-editor.org/rfc/rfc3261#section-25.1
"""

from __future__ import annotations

import re

from sipload.sip.errors import ParseError

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
TOKEN_RE = re.compile(TOKEN)

# LWS = [*WSP CRLF] 1*WSP ; SWS = [LWS]   (folding is undone before we get here)
LWS = r"[ \t]+"

# quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
# qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
# quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
QUOTED_STRING = r'"(?:[^"\\\r\n]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"'
QUOTED_STRING_RE = re.compile(QUOTED_STRING)

# Method = INVITEm / ... / extension-method ; extension-method = token
METHOD_RE = re.compile(TOKEN)

# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT
SIP_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)

# header-name = token   (no white space inside a name)
HEADER_NAME_RE = re.compile(TOKEN)

# hostname = *( domainlabel "." ) toplabel [ "." ]   (we also allow "_", common in practice)
# IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
# IPv6reference = "[" IPv6address "]"
HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_\-.]+)"
HOST_RE = re.compile(HOST)

_unreserved = r"A-Za-z0-9\-_.!~*'()"
# paramchar = param-unreserved / unreserved / escaped
# param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"
PARAMCHARS_RE = re.compile(r"(?:[" + _unreserved + r"\[\]/:&+$]|%[0-9A-Fa-f]{2})+")
# user = 1*( unreserved / escaped / user-unreserved )
# user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
USER_RE = re.compile(r"(?:[" + _unreserved + r"&=+$,;?/]|%[0-9A-Fa-f]{2})+")
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
PASSWORD_RE = re.compile(r"(?:[" + _unreserved + r"&=+$,]|%[0-9A-Fa-f]{2})*")
# hname / hvalue: 1*( hnv-unreserved / unreserved / escaped )
# hnv-unreserved = "[" / "]" / "/" / "?" / ":" / "+" / "$"
HNV_RE = re.compile(r"(?:[" + _unreserved + r"\[\]/?:+$]|%[0-9A-Fa-f]{2})*")

_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")


def unescape(text: str) -> str:
    """Decode %HH escapes once (never recursively), keeping the result a str.

    Escapes that do not form UTF-8 are kept as the code points of their octets.
    """
    if "%" not in text:
        return text
    raw = _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), text)
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return raw


def split_commas(value: str) -> list[str]:
    """Split a header value at the commas that separate list elements.

    Commas inside quoted strings and inside ``<...>`` do not split.  Empty
    elements are dropped (``a,,b`` gives two), as RFC 7230-style lists allow;
    callers that must refuse them check the raw value.
    """
    if "," not in value:
        v = value.strip()
        return [v] if v else []
    out: list[str] = []
    start = 0
    in_quote = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if in_quote:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif c == "<":
            in_angle = True
        elif c == ">":
            in_angle = False
        elif c == "," and not in_angle:
            part = value[start:i].strip()
            if part:
                out.append(part)
            start = i + 1
        i += 1
    if in_quote:
        raise ParseError("unterminated quoted string")
    part = value[start:].strip()
    if part:
        out.append(part)
    return out


_NO_ITEMS: list[tuple[str, str | None]] = []
"""The items of every :class:`Params` without any: one list, never mutated (a held
call's dialog has a handful of parameterless URIs and addresses)."""


class Params:
    """Ordered ``;name=value`` parameters with case-insensitive names.

    Values keep their original form (quoted strings keep their quotes); a
    parameter with no ``=`` has the value ``None``.  ``items`` is read-only
    outside this class (empty, it is a list shared by all): change it with
    :meth:`set` and :meth:`remove`.
    """

    __slots__ = ("items",)

    def __init__(self, items: list[tuple[str, str | None]] | None = None) -> None:
        self.items: list[tuple[str, str | None]] = items if items else _NO_ITEMS

    def get(self, name: str, default: str | None = None) -> str | None:
        lname = name.lower()
        for k, v in self.items:
            if k.lower() == lname:
                return v
        return default

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        lname = name.lower()
        return any(k.lower() == lname for k, _ in self.items)

    def set(self, name: str, value: str | None) -> None:
        lname = name.lower()
        for i, (k, _) in enumerate(self.items):
            if k.lower() == lname:
                self.items[i] = (k, value)
                return
        if self.items is _NO_ITEMS:
            self.items = [(name, value)]
        else:
            self.items.append((name, value))

    def remove(self, name: str) -> None:
        lname = name.lower()
        self.items = [(k, v) for k, v in self.items if k.lower() != lname]

    def copy(self) -> Params:
        return Params(list(self.items))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Params):
            return NotImplemented
        return self.items == other.items

    def __len__(self) -> int:
        return len(self.items)

    def __str__(self) -> str:
        return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.items)

    def __repr__(self) -> str:
        return f"Params({self.items!r})"


_PARAM_RE = re.compile(
    r"[ \t]*;[ \t]*(" + TOKEN + r")(?:[ \t]*=[ \t]*(" + QUOTED_STRING + r"|[^;, \t\"]+))?[ \t]*"
)


def parse_params(text: str, what: str = "header") -> Params:
    """Parse ``;a=b;c;d="x y"`` (header parameters, RFC 3261 generic-param).

    Raises:
        ParseError: an empty parameter (``;;``), a bad name, or junk between them.
    """
    items: list[tuple[str, str | None]] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _PARAM_RE.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise ParseError(f"malformed {what} parameters: {text[pos:pos + 40]!r}")
        items.append((m.group(1), m.group(2)))
        pos = m.end()
    return Params(items)


def unquote(value: str) -> str:
    """Remove the quotes of a quoted-string and undo its quoted-pairs."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        if "\\" not in inner:
            return inner
        out: list[str] = []
        i = 0
        while i < len(inner):
            c = inner[i]
            if c == "\\" and i + 1 < len(inner):
                i += 1
                c = inner[i]
            out.append(c)
            i += 1
        return "".join(out)
    return value


def quote(value: str) -> str:
    """Make a quoted-string of ``value``."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
