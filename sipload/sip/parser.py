"""Turning bytes into messages: the datagram parser, the stream framer, syntax checks.

Theory of operation
===================

1. :func:`parse_message` takes one complete message (a UDP datagram, or what the
   framer cut from a stream).  It reads the start line, unfolds and splits the
   header fields, applies Content-Length, and stops: typed header values are
   parsed later, on access (see :mod:`sipload.sip.message`).
2. Over a datagram, a missing Content-Length means "the rest of the datagram"
   (RFC 3261 §18.3); a Content-Length larger than what arrived is a 400; bytes
   beyond it are dropped.  Over a stream, Content-Length is mandatory.
3. :func:`check_syntax` forces every typed view that matters (Via, From, To,
   CSeq, Call-ID, Contact, Max-Forwards, the Request-URI ...) and applies the
   rules a message must meet to be processed at all (single-valued headers
   appear once, the CSeq method matches the request method).
4. :class:`StreamFramer` cuts a TCP/TLS byte stream into messages and skips the
   CRLF keep-alives of RFC 5626 §4.4.1.
5. The only exception that leaves this module is :class:`ParseError`; its
   ``status`` is what a UAS answers (400, 505 ...).
"""

from __future__ import annotations

import re

from sipload.sip.errors import ParseError
from sipload.sip.headers import (
    CANONICAL,
    COMPACT,
    SINGLE_HEADERS,
    parse_uint,
)
from sipload.sip.message import Header, Message, Request, Response
from sipload.sip.uri import SipUri

_FOLD_RE = re.compile(r"\r?\n[ \t]+")
_FOLDED_RE = re.compile(r"\n[ \t]")
_COMMON_METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK",
                             "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE",
                             "UPDATE"})
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_VERSION_RE = re.compile(r"SIP/([0-9]+)\.([0-9]+)", re.IGNORECASE)

MAX_HEADER_BYTES = 65536
"""A header section larger than this is refused (513 over UDP, connection closed over TCP)."""

MAX_STREAM_MESSAGE = 65536
"""The default largest message (header section and body) a stream framer accepts."""

# Known header names map straight to their key and spelling; unknown ones are checked.
# Exact spellings (canonical, lower case, compact) hit without calling lower().
_KNOWN: dict[str, tuple[str, str]] = {}
for _k, _n in CANONICAL.items():
    _KNOWN[_k] = (_k, _n)
    _KNOWN[_n] = (_k, _n)
for _c, _k in COMPACT.items():
    _KNOWN[_c] = (_k, CANONICAL.get(_k, _k))
    _KNOWN[_c.upper()] = (_k, CANONICAL.get(_k, _k))


def _header_fields(lines: list[str]) -> tuple[list[Header], list[str]]:
    """Split ``Name: value`` lines; also return every Content-Length value seen."""
    headers: list[Header] = []
    lengths: list[str] = []
    known = _KNOWN
    append = headers.append
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            if not line.strip():
                continue
            raise ParseError(f"header line without ':': {line[:60]!r}")
        entry = known.get(name)
        if entry is None:
            lname = name.lower().rstrip(" \t")
            entry = known.get(lname)
            if entry is None:
                stripped = name.rstrip(" \t")
                if _TOKEN_RE.fullmatch(stripped) is None:
                    raise ParseError(f"bad header name {name[:40]!r}")
                entry = (lname, stripped)
        value = value.strip(" \t")
        key = entry[0]
        if key == "content-length":
            lengths.extend(value.split(","))
        append((key, entry[1], value))
    return headers, lengths


def _content_length(lengths: list[str]) -> int | None:
    if not lengths:
        return None
    if len(lengths) == 1:
        v = lengths[0].strip()
        if v.isdigit() and v.isascii():
            return int(v)
    values = {v.strip() for v in lengths}
    if len(values) != 1:
        raise ParseError("conflicting Content-Length values")
    v = values.pop()
    if not v.isdigit() or not v.isascii():
        raise ParseError(f"bad Content-Length {v[:20]!r}")
    return int(v)


def parse_message(data: bytes, *, datagram: bool = True) -> Request | Response:
    """Parse one whole SIP message.

    Args:
        data: the bytes of one message (leading CRLFs are skipped, RFC 3261 §7.5).
        datagram: True when ``data`` is a datagram (UDP); False when a stream
            framer cut it (then Content-Length is mandatory and exact).

    Returns:
        A :class:`Request` or :class:`Response`; typed views parse on access.

    Raises:
        ParseError: the bytes are not a SIP message we can accept; ``status``
            says what a UAS answers.
    """
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    end = data.find(b"\r\n\r\n", start)
    if end >= 0:
        body_at = end + 4
    else:
        end = data.find(b"\n\n", start)
        if end < 0:
            if datagram and data.endswith(b"\r\n", start):
                end = len(data) - 2
                body_at = len(data)
            else:
                raise ParseError("no empty line after the header section")
        else:
            body_at = end + 2
    if end - start > MAX_HEADER_BYTES:
        raise ParseError("header section too large", 513)
    head = data[start:end].decode("utf-8", "surrogateescape")
    if _FOLDED_RE.search(head) is not None:
        head = _FOLD_RE.sub(" ", head)
    lines = head.split("\r\n")
    if head.count("\n") != len(lines) - 1:  # bare LF line ends somewhere: be liberal
        lines = [ln.rstrip("\r") for ln in head.split("\n")]
    first = lines[0]
    headers, lengths = _header_fields(lines[1:])

    length = _content_length(lengths)
    available = len(data) - body_at
    if length is None:
        if not datagram:
            raise ParseError("missing Content-Length on a stream")
        body = data[body_at:]
    else:
        if length > available:
            raise ParseError(f"Content-Length {length} larger than the {available} body bytes")
        body = data[body_at : body_at + length]

    if first.startswith("SIP/") or first[:4].upper() == "SIP/":
        return _response(first, headers, body)
    return _request(first, headers, body)


def _check_version(version: str, status: int) -> str:
    m = _VERSION_RE.fullmatch(version)
    if m is None:
        raise ParseError(f"bad SIP version {version[:20]!r}", 400)
    if m.group(1) != "2" or m.group(2) != "0":
        raise ParseError(f"SIP version {version} not supported", status)
    return "SIP/2.0"


def _request(first: str, headers: list[Header], body: bytes) -> Request:
    parts = first.split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2]:
        raise ParseError(f"malformed request line {first[:80]!r}")
    method, uri, version = parts
    if method not in _COMMON_METHODS and _TOKEN_RE.fullmatch(method) is None:
        raise ParseError(f"bad method {method[:30]!r}")
    if "\t" in uri or ":" not in uri:
        raise ParseError(f"bad Request-URI {uri[:80]!r}")
    if version != "SIP/2.0":
        _check_version(version, 505)
    return Request(method, uri, headers, body)


def _response(first: str, headers: list[Header], body: bytes) -> Response:
    version, _, rest = first.partition(" ")
    code, _, reason = rest.partition(" ")
    if version != "SIP/2.0":
        _check_version(version, 400)
    if len(code) != 3 or not code.isdigit() or not code.isascii() or not 100 <= int(code) <= 699:
        raise ParseError(f"bad status code {code[:20]!r}")
    return Response(int(code), reason, headers, body)


def check_syntax(msg: Message) -> None:
    """Parse every header that SIP processing relies on; raise on the first fault.

    This is what makes a message "valid" in the sense of RFC 4475: the header
    fields that matter are well formed and the single-valued ones appear once.
    Mandatory headers missing (RFC 3261 §8.1.1) are *not* checked here: that is
    a request-level decision (see :mod:`sipload.sip.checks`).

    Raises:
        ParseError: with the status a UAS answers (always 400 here).
    """
    seen: dict[str, int] = {}
    for key, _, value in msg._headers:
        if key in SINGLE_HEADERS:
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > 1 or ("," in value and key in ("call-id", "cseq", "max-forwards")):
                raise ParseError(f"more than one {CANONICAL.get(key, key)} value")
    _ = msg.vias
    if msg.has("cseq"):
        _ = msg.cseq
    if msg.has("from"):
        _ = msg.from_
    if msg.has("to"):
        _ = msg.to
    if msg.has("call-id") and not msg.call_id:
        raise ParseError("empty Call-ID")
    _ = msg.contacts
    _ = msg.max_forwards
    _ = msg.content_type
    _ = msg.require, msg.proxy_require, msg.supported
    _ = msg.routes, msg.record_routes
    ex = msg.get("expires")
    if ex is not None:
        parse_uint(ex, "Expires")
    if isinstance(msg, Request):
        uri = msg.uri
        if isinstance(uri, SipUri) and uri.headers:
            raise ParseError("headers are not allowed in a Request-URI")
        if msg.has("cseq") and msg.cseq.method != msg.method:
            raise ParseError(
                f"CSeq method {msg.cseq.method} does not match request method {msg.method}"
            )
    else:
        _ = msg.rseq


_CL_RE = re.compile(rb"\r?\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)


class StreamFramer:
    """Cuts a TCP/TLS byte stream into whole SIP messages.

    Feed bytes as they arrive; take complete messages from the returned list.
    A double CRLF between messages is a keep-alive ping (RFC 5626 §4.4.1): it
    is counted in ``pings`` so the transport can answer with a single CRLF.

    Memory is bounded by ``max_message`` (plus one read): a message whose
    Content-Length takes it past the limit is refused as soon as its header
    section is complete, before any of its body is kept, and a header section
    that grows past the limit without ending is refused too.  The framer then
    drops what it holds and keeps the refused header section (at most
    ``max_message`` bytes) in :attr:`refused`, so the transport can answer it.

    Raises (from :meth:`feed`):
        ParseError: the stream cannot be framed; close the connection.  Status
            413 (Request Entity Too Large, RFC 3261 §21.4.11): the declared body
            takes the message past ``max_message``; 513 (Message Too Large,
            §21.5.7): a header section past the limit with no end; 400: no or a
            bad Content-Length.
    """

    __slots__ = ("_buf", "_crlfs", "max_message", "pings", "refused")

    def __init__(self, max_message: int = MAX_STREAM_MESSAGE) -> None:
        self._buf = bytearray()
        self._crlfs = 0
        self.pings = 0
        self.max_message = max_message  #: the largest message accepted, in bytes
        self.refused = b""  #: the header section of the message refused, if one was

    def _refuse(self, keep: int, reason: str, status: int) -> ParseError:
        self.refused = bytes(self._buf[:min(keep, self.max_message)])
        self._buf = bytearray()
        return ParseError(reason, status)

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        buf = self._buf
        limit = self.max_message
        while True:
            skip = 0
            while buf.startswith(b"\r\n", skip):
                skip += 2
            if skip:
                self._crlfs += skip // 2
                del buf[:skip]
                self.pings += self._crlfs // 2
                self._crlfs %= 2
            if not buf or buf == b"\r":
                break
            self._crlfs = 0
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > min(limit, MAX_HEADER_BYTES):
                    raise self._refuse(len(buf), f"header section over "
                                       f"{min(limit, MAX_HEADER_BYTES)} bytes with no end", 513)
                break
            m = _CL_RE.search(bytes(buf[: end + 2]))
            if m is None:
                raise self._refuse(end + 4, "missing Content-Length on a stream", 400)
            raw = m.group(1).strip()
            if not raw.isdigit():
                raise self._refuse(end + 4, f"bad Content-Length {raw[:20]!r}", 400)
            # more digits than any allowed size has: refused without int() of a huge number
            length = int(raw) if len(raw) <= 12 else 10**12
            total = end + 4 + length
            if total > limit:
                raise self._refuse(end + 4, f"a message of {total} bytes is over the "
                                   f"{limit}-byte limit", 413)
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a message."""
        return len(self._buf)
