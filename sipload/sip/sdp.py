"""SDP session descriptions (RFC 8866) and the RFC 3264 offer/answer model.

Owns everything sipload knows about SDP bodies: the data model, a tolerant but
line-exact parser, canonical CRLF serialization, audio offers, RFC 3264 answers
(codec intersection, stream rejection, direction mapping) and hold/resume
re-offers with their ``o=`` version increments. Pure sans-IO: session ids and
addresses come from the caller.

Lines without a dedicated field (``i= u= e= p= z= k=``, unknown letters) live
in ``other_lines``; types RFC 8866 puts before ``c=`` (``i u e p`` at session
level, ``i`` at media level) are written there, the rest after ``t=``/``r=``
(session) or ``b=`` (media). The parser stores them in that order, so parse ->
serialize -> parse is the identity. Trailing spaces/tabs are not significant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, TypeAlias

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
DIRECTIONS: tuple[Direction, ...] = ("sendrecv", "sendonly", "recvonly", "inactive")
_DIRECTION_BY_NAME: dict[str, Direction] = {d: d for d in DIRECTIONS}

Attribute: TypeAlias = tuple[str, str | None]
"""An ``a=`` line: ``(name, value)``; value is None for a flag such as ``a=sendrecv``."""

# Line types with a dedicated place in the model; everything else is "other".
_STRUCTURAL = "vosctrbam"
_SESSION_EARLY = "iuep"  # other-line types written before c= at session level
_MEDIA_EARLY = "i"  # other-line types written before c= at media level
_TOKEN_FORBIDDEN = frozenset(" \r\n\0")
_TEXT_FORBIDDEN = frozenset("\r\n\0")

DEFAULT_CODECS: tuple[str, ...] = ("PCMU", "PCMA", "telephone-event")
DEFAULT_DTMF_EVENTS = "0-11"
TELEPHONE_EVENT_PT = 101
_AUXILIARY = frozenset({"telephone-event", "cn"})  # not a voice codec on their own


class SdpError(ValueError):
    """Malformed SDP (``line`` is the 1-based line number when known)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        self.reason = message
        super().__init__(f"SDP line {line}: {message}" if line is not None else message)

    def __reduce__(self) -> tuple[type[SdpError], tuple[str, int | None]]:
        return type(self), (self.reason, self.line)  # keeps ``line`` across processes


class SdpNegotiationError(SdpError):
    """No offered media stream could be accepted; the caller should answer 488."""


@dataclass(frozen=True)
class Origin:
    """The ``o=`` line."""

    username: str
    sess_id: int
    sess_version: int
    nettype: str
    addrtype: str
    address: str


@dataclass(frozen=True)
class Connection:
    """A ``c=`` line; ``address`` may carry ``/ttl/count`` multicast suffixes."""

    nettype: str
    addrtype: str
    address: str


@dataclass(frozen=True)
class Timing:
    """A ``t=`` line with the raw values of the ``r=`` lines that follow it."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()


@dataclass(frozen=True)
class RtpMap:
    """A decoded ``a=rtpmap`` value (or the RFC 3551 default of a static type)."""

    payload_type: str
    encoding: str
    clock_rate: int
    channels: int | None = None

    def to_value(self) -> str:
        value = f"{self.payload_type} {self.encoding}/{self.clock_rate}"
        return value if self.channels is None else f"{value}/{self.channels}"

    def same_codec(self, other: RtpMap) -> bool:
        """Same encoding (case-insensitive), clock rate and channel count."""
        return (
            self.encoding.lower() == other.encoding.lower()
            and self.clock_rate == other.clock_rate
            and (self.channels or 1) == (other.channels or 1)
        )


def _direction_in(attributes: Sequence[Attribute]) -> Direction | None:
    for name, value in attributes:
        if value is None and name in _DIRECTION_BY_NAME:
            return _DIRECTION_BY_NAME[name]
    return None


def _with_direction(
    attributes: Sequence[Attribute], direction: Direction | None
) -> list[Attribute]:
    kept = [a for a in attributes if not (a[1] is None and a[0] in _DIRECTION_BY_NAME)]
    if direction is not None:
        kept.append((direction, None))
    return kept


def _parse_rtpmap(value: str) -> RtpMap | None:
    pt, _, spec = value.partition(" ")
    parts = spec.strip(" ").split("/")
    if not pt or len(parts) not in (2, 3) or not parts[0] or not _is_uint(parts[1]):
        return None
    channels: int | None = None
    if len(parts) == 3:
        if not _is_uint(parts[2]):
            return None
        channels = int(parts[2])
    return RtpMap(pt, parts[0], int(parts[1]), channels)


@dataclass(init=False)
class MediaDescription:
    """One media section: the ``m=`` line and the lines that follow it."""

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    connection: Connection | None = None
    bandwidths: list[tuple[str, int]] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    other_lines: list[tuple[str, str]] = field(default_factory=list)

    def __init__(
        self,
        media: str,
        port: int,
        proto: str,
        formats: list[str],
        port_count: int | None = None,
        connection: Connection | None = None,
        bandwidths: list[tuple[str, int]] | None = None,
        attributes: list[Attribute] | None = None,
        other_lines: list[tuple[str, str]] | None = None,
    ) -> None:
        self.media = media
        self.port = port
        self.proto = proto
        self.formats = formats
        self.port_count = port_count
        self.connection = connection
        self.bandwidths = [] if bandwidths is None else bandwidths
        self.attributes = [] if attributes is None else attributes
        self.other_lines = [] if other_lines is None else other_lines

    def copy(self) -> MediaDescription:
        return replace(
            self,
            formats=list(self.formats),
            bandwidths=list(self.bandwidths),
            attributes=list(self.attributes),
            other_lines=list(self.other_lines),
        )

    def rtpmap(self, fmt: str) -> RtpMap | None:
        """The ``a=rtpmap`` for payload type *fmt*, None if absent or malformed."""
        for name, value in self.attributes:
            if name == "rtpmap" and value is not None and value.partition(" ")[0] == fmt:
                return _parse_rtpmap(value)
        return None

    def codec(self, fmt: str) -> RtpMap | None:
        """The rtpmap of *fmt*, falling back to the RFC 3551 static assignment."""
        return self.rtpmap(fmt) or _STATIC_PT.get(fmt)

    def fmtp(self, fmt: str) -> str | None:
        """The parameters of ``a=fmtp:<fmt> <params>``, None if absent."""
        for name, value in self.attributes:
            if name == "fmtp" and value is not None:
                pt, _, params = value.partition(" ")
                if pt == fmt:
                    return params.lstrip(" ")
        return None

    @property
    def ptime(self) -> int | None:
        for name, value in self.attributes:
            if name == "ptime" and value is not None and _is_uint(value.strip(" ")):
                return int(value.strip(" "))
        return None

    @property
    def direction(self) -> Direction | None:
        """The media-level direction attribute, None when absent (see
        :meth:`SessionDescription.media_direction` for the effective value)."""
        return _direction_in(self.attributes)

    def set_direction(self, direction: Direction | None) -> None:
        self.attributes = _with_direction(self.attributes, direction)

    def _lines(self) -> list[str]:
        port = _uint_out(self.port, "m= port")
        if self.port > 65535:
            raise SdpError(f"cannot serialize m= port {self.port}")
        if self.port_count is not None:
            port = f"{port}/{_uint_out(self.port_count, 'm= port count')}"
        words = [_tok(self.media, "media"), port, _tok(self.proto, "proto")]
        words.extend(_tok(f, "format") for f in self.formats)
        out = ["m=" + " ".join(words)]
        out.extend(_other_out(t, v) for t, v in self.other_lines if t in _MEDIA_EARLY)
        if self.connection is not None:
            out.append(_connection_out(self.connection))
        out.extend(_bandwidth_out(t, v) for t, v in self.bandwidths)
        out.extend(_other_out(t, v) for t, v in self.other_lines if t not in _MEDIA_EARLY)
        out.extend(_attribute_out(n, v) for n, v in self.attributes)
        return out


@dataclass(init=False)
class SessionDescription:
    """A complete SDP body."""

    origin: Origin
    session_name: str
    version: int = 0
    connection: Connection | None = None
    timing: list[Timing] = field(default_factory=lambda: [Timing()])
    bandwidths: list[tuple[str, int]] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    other_lines: list[tuple[str, str]] = field(default_factory=list)

    def __init__(
        self,
        origin: Origin,
        session_name: str,
        version: int = 0,
        connection: Connection | None = None,
        timing: list[Timing] | None = None,
        bandwidths: list[tuple[str, int]] | None = None,
        attributes: list[Attribute] | None = None,
        media: list[MediaDescription] | None = None,
        other_lines: list[tuple[str, str]] | None = None,
    ) -> None:
        self.origin = origin
        self.session_name = session_name
        self.version = version
        self.connection = connection
        self.timing = [Timing()] if timing is None else timing
        self.bandwidths = [] if bandwidths is None else bandwidths
        self.attributes = [] if attributes is None else attributes
        self.media = [] if media is None else media
        self.other_lines = [] if other_lines is None else other_lines

    def copy(self) -> SessionDescription:
        return replace(
            self,
            timing=list(self.timing),
            bandwidths=list(self.bandwidths),
            attributes=list(self.attributes),
            media=[m.copy() for m in self.media],
            other_lines=list(self.other_lines),
        )

    @property
    def direction(self) -> Direction:
        """The session-level direction (default sendrecv)."""
        return _direction_in(self.attributes) or "sendrecv"

    def set_direction(self, direction: Direction | None) -> None:
        self.attributes = _with_direction(self.attributes, direction)

    def media_direction(self, index: int) -> Direction:
        """Effective direction of media *index*: media level, else session level."""
        return self.media[index].direction or self.direction

    def media_connection(self, index: int) -> Connection | None:
        """Effective connection of media *index*: media level, else session level."""
        return self.media[index].connection or self.connection

    def to_str(self) -> str:
        o = self.origin
        user = _tok(o.username, "o= username")
        ids = f"{_uint_out(o.sess_id, 'o= sess-id')} {_uint_out(o.sess_version, 'o= version')}"
        net = " ".join(_tok(w, "o=") for w in (o.nettype, o.addrtype, o.address))
        out = [f"v={self.version}", f"o={user} {ids} {net}"]
        out.append("s=" + (_txt(self.session_name, "s=") or " "))
        out.extend(_other_out(t, v) for t, v in self.other_lines if t in _SESSION_EARLY)
        if self.connection is not None:
            out.append(_connection_out(self.connection))
        out.extend(_bandwidth_out(t, v) for t, v in self.bandwidths)
        for t in self.timing:
            out.append(f"t={_uint_out(t.start, 't= start')} {_uint_out(t.stop, 't= stop')}")
            out.extend("r=" + _txt(r, "r=") for r in t.repeats)
        out.extend(_other_out(t, v) for t, v in self.other_lines if t not in _SESSION_EARLY)
        out.extend(_attribute_out(n, v) for n, v in self.attributes)
        for m in self.media:
            out.extend(m._lines())
        return "\r\n".join(out) + "\r\n"

    def to_bytes(self) -> bytes:
        """Canonical CRLF encoding (UTF-8). Raises SdpError for unencodable fields."""
        return self.to_str().encode("utf-8", "surrogateescape")


# --- serialization helpers -------------------------------------------------


def _tok(value: str, what: str, also_forbidden: str = "") -> str:
    if not value or not _TOKEN_FORBIDDEN.isdisjoint(value) or (
            also_forbidden and not frozenset(also_forbidden).isdisjoint(value)):
        raise SdpError(f"cannot serialize {what} {value!r}: empty or bad character")
    return value


def _txt(value: str, what: str) -> str:
    if not _TEXT_FORBIDDEN.isdisjoint(value):
        raise SdpError(f"cannot serialize {what} {value!r}: contains CR, LF or NUL")
    return value


def _uint_out(value: int, what: str) -> str:
    if value < 0:
        raise SdpError(f"cannot serialize {what} {value}: must not be negative")
    return str(value)


def _connection_out(c: Connection) -> str:
    words = (_tok(c.nettype, "c= nettype"), _tok(c.addrtype, "c= addrtype"), _tok(c.address, "c="))
    return "c=" + " ".join(words)


def _bandwidth_out(bwtype: str, value: int) -> str:
    return f"b={_tok(bwtype, 'b= type', ':')}:{_uint_out(value, 'b= value')}"


def _attribute_out(name: str, value: str | None) -> str:
    _tok(name, "attribute name", ":")
    return f"a={name}" if value is None else f"a={name}:{_txt(value, 'a= value')}"


def _other_out(kind: str, value: str) -> str:
    if len(kind) != 1 or not _is_letter(kind) or kind in _STRUCTURAL:
        raise SdpError(f"cannot serialize line type {kind!r} as an other line")
    return f"{kind}={_txt(value, kind + '=')}"


# --- parsing ---------------------------------------------------------------


def _is_letter(c: str) -> bool:
    return "a" <= c <= "z" or "A" <= c <= "Z"


def _is_uint(text: str) -> bool:
    return bool(text) and text.isascii() and text.isdigit()


def _uint(text: str, what: str, line: int) -> int:
    if not _is_uint(text):
        raise SdpError(f"{what} must be a non-negative integer, got {text!r}", line)
    return int(text)


def _fields(value: str) -> list[str]:
    return [p for p in value.split(" ") if p]


def _early_first(lines: list[tuple[str, str]], early: str) -> list[tuple[str, str]]:
    return [x for x in lines if x[0] in early] + [x for x in lines if x[0] not in early]


def _parse_origin(value: str, n: int) -> Origin:
    parts = _fields(value)
    if len(parts) != 6:
        raise SdpError(f"o= needs 6 fields (user id version nettype addrtype addr): {value!r}", n)
    sess_id = _uint(parts[1], "o= sess-id", n)
    sess_version = _uint(parts[2], "o= sess-version", n)
    return Origin(parts[0], sess_id, sess_version, parts[3], parts[4], parts[5])


def _parse_connection(value: str, n: int) -> Connection:
    parts = _fields(value)
    if len(parts) != 3:
        raise SdpError(f"c= needs '<nettype> <addrtype> <address>', got {value!r}", n)
    return Connection(parts[0], parts[1], parts[2])


def _parse_bandwidth(value: str, n: int) -> tuple[str, int]:
    bwtype, sep, amount = value.partition(":")
    if not sep or not bwtype or any(c in _TOKEN_FORBIDDEN for c in bwtype):
        raise SdpError(f"b= needs '<bwtype>:<bandwidth>', got {value!r}", n)
    return bwtype, _uint(amount.strip(" "), "b= bandwidth", n)


def _parse_attribute(value: str, n: int) -> Attribute:
    name, sep, attr_value = value.partition(":")
    if not name or any(c in _TOKEN_FORBIDDEN for c in name):
        raise SdpError(f"a= needs '<name>' or '<name>:<value>', got {value!r}", n)
    return name, (attr_value if sep else None)


def _parse_media(value: str, n: int) -> MediaDescription:
    parts = _fields(value)
    if len(parts) < 3:
        raise SdpError(f"m= needs '<media> <port> <proto> <fmt> ...', got {value!r}", n)
    port_text, slash, count_text = parts[1].partition("/")
    port = _uint(port_text, "m= port", n)
    if port > 65535:
        raise SdpError(f"m= port {port} out of range", n)
    count = _uint(count_text, "m= port count", n) if slash else None
    return MediaDescription(parts[0], port, parts[2], parts[3:], port_count=count)


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body. Accepts CRLF or bare LF line ends and ignores trailing
    spaces/tabs and trailing blank lines; raises :class:`SdpError` otherwise."""
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    lines = [line.rstrip(" \t\r") for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise SdpError("empty session description")
    sd = SessionDescription(Origin("", 0, 0, "", "", ""), "", timing=[])
    seen: set[str] = set()
    for n, line in enumerate(lines, 1):
        if len(line) < 2 or line[1] != "=" or not _is_letter(line[0]):
            raise SdpError(f"expected '<letter>=<value>', got {line!r}", n)
        if "\0" in line or "\r" in line:
            raise SdpError(f"NUL or stray CR in {line!r}", n)
        kind, value = line[0], line[2:]
        if (n == 1) != (kind == "v"):
            raise SdpError("v= must be the first line and appear only once", n)
        md = sd.media[-1] if sd.media else None
        target: SessionDescription | MediaDescription = sd if md is None else md
        if kind == "m":
            sd.media.append(_parse_media(value, n))
        elif kind == "a":
            target.attributes.append(_parse_attribute(value, n))
        elif kind == "b":
            target.bandwidths.append(_parse_bandwidth(value, n))
        elif kind == "c":
            if target.connection is not None:
                raise SdpError("more than one c= line in a section is not supported", n)
            target.connection = _parse_connection(value, n)
        elif md is not None:
            if kind in "vostr":
                raise SdpError(f"{kind}= line is not allowed in a media section", n)
            md.other_lines.append((kind, value))
        elif kind in "vos":
            if kind in seen:
                raise SdpError(f"duplicate {kind}= line", n)
            seen.add(kind)
            if kind == "v" and _uint(value, "v=", n) != 0:
                raise SdpError(f"unsupported SDP version {value!r}", n)
            if kind == "o":
                sd.origin = _parse_origin(value, n)
            elif kind == "s":
                sd.session_name = value
        elif kind == "t":
            parts = _fields(value)
            if len(parts) != 2:
                raise SdpError(f"t= needs '<start> <stop>', got {value!r}", n)
            sd.timing.append(Timing(_uint(parts[0], "t= start", n), _uint(parts[1], "t= stop", n)))
        elif kind == "r":
            if not sd.timing:
                raise SdpError("r= line before any t= line", n)
            last = sd.timing[-1]
            sd.timing[-1] = replace(last, repeats=(*last.repeats, value))
        else:
            sd.other_lines.append((kind, value))
    for kind, what in (("o", "o="), ("s", "s=")):
        if kind not in seen:
            raise SdpError(f"missing {what} line")
    if not sd.timing:
        raise SdpError("missing t= line")
    sd.other_lines = _early_first(sd.other_lines, _SESSION_EARLY)
    for md in sd.media:
        md.other_lines = _early_first(md.other_lines, _MEDIA_EARLY)
    return sd


def _rtpmap_list(spec: str) -> list[RtpMap]:
    maps = [_parse_rtpmap(item.strip()) for item in spec.split(",")]
    return [m for m in maps if m is not None]


# RFC 3551 static audio payload types.
_STATIC_PT: dict[str, RtpMap] = {
    m.payload_type: m
    for m in _rtpmap_list(
        "0 PCMU/8000, 3 GSM/8000, 4 G723/8000, 5 DVI4/8000, 6 DVI4/16000, 7 LPC/8000,"
        "8 PCMA/8000, 9 G722/8000, 10 L16/44100/2, 11 L16/44100, 12 QCELP/8000, 13 CN/8000,"
        "14 MPA/90000, 15 G728/8000, 16 DVI4/11025, 17 DVI4/22050, 18 G729/8000"
    )
}
# Codecs sipload offers and accepts by name; payload type "-" marks a dynamic one.
_KNOWN_CODECS: dict[str, RtpMap] = {
    m.encoding.lower(): m
    for m in _rtpmap_list(
        "0 PCMU/8000, 3 GSM/8000, 4 G723/8000, 8 PCMA/8000, 9 G722/8000, 13 CN/8000,"
        "18 G729/8000, - telephone-event/8000, - opus/48000/2, - iLBC/8000, - speex/8000"
    )
}


def _known_codec(name: str) -> RtpMap:
    try:
        return _KNOWN_CODECS[name.lower()]
    except KeyError:
        known = ", ".join(m.encoding for m in _KNOWN_CODECS.values())
        raise ValueError(f"unknown codec {name!r} (known: {known})") from None


# --- building offers and answers -------------------------------------------


def build_audio_offer(
    address: str,
    port: int,
    *,
    session_id: int,
    version: int = 0,
    username: str = "sipload",
    session_name: str = "sipload",
    codecs: Sequence[str] = DEFAULT_CODECS,
    ptime: int | None = None,
    direction: Direction = "sendrecv",
    ipv6: bool = False,
    dtmf_events: str = DEFAULT_DTMF_EVENTS,
    proto: str = "RTP/AVP",
) -> SessionDescription:
    """A single-stream audio offer (RTP/AVP, or *proto*: RTP/SAVP for SRTP, whose
    a=crypto lines the caller adds). Static codecs use their RFC 3551
    payload type, telephone-event uses 101 (with ``a=fmtp:101 <dtmf_events>``)
    and other dynamic codecs 96 upwards. ``a=<direction>`` is only written when
    it is not sendrecv. An IPv6 literal address implies ``ipv6=True``."""
    if not codecs:
        raise ValueError("at least one codec is required")
    known: list[RtpMap] = []
    for name in codecs:
        codec = _known_codec(name)
        if codec not in known:
            known.append(codec)
    free = [pt for pt in range(96, 128) if pt != TELEPHONE_EVENT_PT]
    maps: list[RtpMap] = []
    for codec in known:
        if not _is_uint(codec.payload_type):
            pt = TELEPHONE_EVENT_PT if codec.encoding == "telephone-event" else free.pop(0)
            codec = replace(codec, payload_type=str(pt))
        maps.append(codec)
    fmtps = {m.payload_type: dtmf_events for m in maps if m.encoding == "telephone-event"}
    attributes = _audio_attributes(maps, fmtps, ptime, direction)
    media = MediaDescription("audio", port, proto, [m.payload_type for m in maps])
    media.attributes = attributes
    addrtype = "IP6" if ipv6 or ":" in address else "IP4"
    origin = Origin(username, session_id, version, "IN", addrtype, address)
    connection = Connection("IN", addrtype, address)
    return SessionDescription(origin, session_name, connection=connection, media=[media])


def _audio_attributes(
    maps: Sequence[RtpMap], fmtps: Mapping[str, str | None], ptime: int | None, direction: Direction
) -> list[Attribute]:
    attributes: list[Attribute] = [("rtpmap", m.to_value()) for m in maps]
    for m in maps:
        params = fmtps.get(m.payload_type)
        if params:
            attributes.append(("fmtp", f"{m.payload_type} {params}"))
    if ptime is not None:
        attributes.append(("ptime", str(ptime)))
    if direction != "sendrecv":
        attributes.append((direction, None))
    return attributes


def _answer_direction(offered: Direction, wanted: Direction | None) -> Direction:
    """RFC 3264 §6.1: we may send only if the offerer receives, and vice versa."""
    we_send = offered in ("sendrecv", "recvonly") and wanted in (None, "sendrecv", "sendonly")
    we_receive = offered in ("sendrecv", "sendonly") and wanted in (None, "sendrecv", "recvonly")
    return DIRECTIONS[2 * (not we_send) + (not we_receive)]  # DIRECTIONS order matters


def _common_codecs(md: MediaDescription, wanted: Sequence[RtpMap]) -> list[RtpMap]:
    common: list[RtpMap] = []
    for fmt in md.formats:
        codec = md.codec(fmt)
        if codec is not None and any(codec.same_codec(w) for w in wanted):
            common.append(codec)
    return common


def build_answer(
    offer: SessionDescription,
    *,
    address: str,
    port: int,
    session_id: int,
    version: int = 0,
    username: str = "sipload",
    session_name: str = "sipload",
    supported: Sequence[str] = DEFAULT_CODECS,
    direction: Direction | None = None,
    ptime: int | None = None,
    protos: Sequence[str] = ("RTP/AVP",),
    ipv6: bool = False,
) -> SessionDescription:
    """Answer *offer* per RFC 3264 §6.

    Every offered m-line gets an answer m-line in the same position. An audio
    stream with an accepted proto is answered with the codecs common to both
    sides in the offerer's order and with the offerer's payload type numbers
    and fmtp parameters; it is rejected (port 0, offered formats echoed) when
    no voice codec is common or the offer already had port 0. Any other media
    type is rejected. Accepted streams get ports *port*, *port*+2, ...
    Raises :class:`SdpNegotiationError` when the offer has media but none of it
    could be accepted.
    """
    wanted = [_known_codec(name) for name in supported]
    media: list[MediaDescription] = []
    reasons: list[str] = []
    next_port = port
    for index, md in enumerate(offer.media):
        common: list[RtpMap] = []
        if md.media != "audio":
            reasons.append(f"m-line {index + 1}: media type {md.media!r} not supported")
        elif md.port == 0:
            reasons.append(f"m-line {index + 1}: stream disabled by the offerer")
        elif md.proto not in protos:
            reasons.append(f"m-line {index + 1}: proto {md.proto!r} not supported")
        else:
            common = _common_codecs(md, wanted)
            if all(c.encoding.lower() in _AUXILIARY for c in common):
                reasons.append(f"m-line {index + 1}: no common codec")
                common = []
        if not common:
            media.append(MediaDescription(md.media, 0, md.proto, list(md.formats)))
            continue
        fmtps = {c.payload_type: md.fmtp(c.payload_type) for c in common}
        answer_direction = _answer_direction(offer.media_direction(index), direction)
        attributes = _audio_attributes(common, fmtps, ptime, answer_direction)
        formats = [c.payload_type for c in common]
        media.append(MediaDescription("audio", next_port, md.proto, formats, attributes=attributes))
        next_port += 2
    if offer.media and all(m.port == 0 for m in media):
        raise SdpNegotiationError("no acceptable media stream: " + "; ".join(reasons))
    addrtype = "IP6" if ipv6 or ":" in address else "IP4"
    origin = Origin(username, session_id, version, "IN", addrtype, address)
    connection = Connection("IN", addrtype, address)
    timing = list(offer.timing) or [Timing()]
    return SessionDescription(
        origin, session_name, connection=connection, timing=timing, media=media
    )


def with_session_id(sd: SessionDescription, session_id: int) -> SessionDescription:
    """*sd* under another o= sess-id, sharing its media and timing (which every
    operation deriving a description copies before it changes them)."""
    o = sd.origin
    return SessionDescription(
        Origin(o.username, session_id, o.sess_version, o.nettype, o.addrtype, o.address),
        sd.session_name, version=sd.version, connection=sd.connection, timing=sd.timing,
        bandwidths=list(sd.bandwidths), attributes=list(sd.attributes), media=sd.media,
        other_lines=list(sd.other_lines))


def bump_version(sd: SessionDescription) -> SessionDescription:
    """A copy of *sd* with the o= sess-version incremented (RFC 3264 §8)."""
    new = sd.copy()
    new.origin = replace(sd.origin, sess_version=sd.origin.sess_version + 1)
    return new


def hold(sd: SessionDescription, *, inactive: bool = False) -> SessionDescription:
    """Re-offer putting every active stream on hold (RFC 3264 §8.4).

    Streams become sendonly, or inactive when *inactive* is set or the stream
    was already recvonly/inactive (RFC 6337 §5.3). The session-level direction
    attribute is dropped in favour of media-level ones.
    """
    new = bump_version(sd)
    for index, md in enumerate(new.media):
        if md.port != 0:
            current = sd.media_direction(index)
            held = inactive or current in ("recvonly", "inactive")
            md.set_direction("inactive" if held else "sendonly")
    new.set_direction(None)
    return new


def resume(sd: SessionDescription) -> SessionDescription:
    """Re-offer taking every active stream off hold: a=sendrecv, version + 1."""
    new = bump_version(sd)
    for md in new.media:
        if md.port != 0:
            md.set_direction("sendrecv")
    new.set_direction(None)
    return new


def negotiated_codecs(offer: SessionDescription, answer: SessionDescription) -> list[str]:
    """Encoding names agreed for the first audio stream of *offer*, in the
    answer's order; empty when that stream was rejected or there is none."""
    for index, offered in enumerate(offer.media):
        if offered.media != "audio":
            continue
        if index >= len(answer.media) or offered.port == 0 or answer.media[index].port == 0:
            return []
        answered = answer.media[index]
        offered_codecs = [c for c in map(offered.codec, offered.formats) if c is not None]
        names: list[str] = []
        for fmt in answered.formats:
            codec = answered.codec(fmt) or offered.codec(fmt)
            if codec is not None and any(codec.same_codec(o) for o in offered_codecs):
                names.append(codec.encoding)
        return names
    return []
