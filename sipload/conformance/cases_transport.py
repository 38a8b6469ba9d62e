"""The transport pack (RFC 3261 §7.5, §18.2.2, §18.3): SIP framing over a TCP stream.

Each case opens a TCP connection of its own to the target (the profile's host
and port, which must listen for TCP: ``transport: tcp`` or ``tcp`` in
``transports``) and writes OPTIONS requests to ``uas.uri`` as bytes, cut where
the case says: two messages in one write, one message over several writes
(inside the start line, inside a header, between the CRLFs that end the header
section, inside the body), a body that arrives late, CRLFs before the start
line.  A receiver finds each message's end by its Content-Length alone, never
by where a read ended.  OPTIONS is the request: every UAS answers it (§11.2),
and no call is left behind.  Every write and every message read is on the
case's ladder.

Responses are read off the stream by their Content-Length; one without it is
taken to end at its header section (and judged by ``TP-001``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re

from sipload.conformance.model import (
    Case,
    Outcome,
    broke,
    inconclusive,
    must,
    passed,
    should,
)
from sipload.conformance.probe import Probe
from sipload.conformance.profile import Profile
from sipload.conformance.steps import uas_uri
from sipload.sip.errors import ParseError
from sipload.sip.message import Response
from sipload.sip.parser import parse_message
from sipload.transport import Peer

CONTENT_LENGTH = must("RFC 3261 §18.3", "In the case of stream-oriented transports such as "
                      "TCP, the Content-Length header field indicates the size of the body.  "
                      "The Content-Length header field MUST be used with stream oriented "
                      "transports.")
FRAMING = must("RFC 3261 §18.3, §7.5", "The Content-Length header field MUST be used with "
               "stream oriented transports. [...] (§7.5) The Content-Length header field "
               "value is used to locate the end of each SIP message in a stream.")
LEADING_CRLF = must("RFC 3261 §7.5", "Implementations processing SIP messages over "
                    "stream-oriented transports MUST ignore any CRLF appearing before the "
                    "start-line [H4.1].")
SAME_CONNECTION = must("RFC 3261 §18.2.2", "If the \"sent-protocol\" is a reliable transport "
                       "protocol such as TCP or SCTP, or TLS over those, the response MUST be "
                       "sent using the existing connection to the source of the original "
                       "request that created the transaction, if that connection is still "
                       "open.")

UNRECOVERABLE = should("RFC 4475 §3.1.2.3", "(informational) If a request like this arrives "
                       "over TCP, the framing error is not recoverable, and the connection "
                       "should be closed.")

PAUSE = 0.05
"""Seconds between the writes of one cut message (each write its own TCP segment)."""
_CL = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*\r?$")


class Stream:
    """One TCP connection of a case: writes bytes, reads messages, traces both."""

    def __init__(self, probe: Probe, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, peer: Peer) -> None:
        self.probe = probe
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.buf = b""
        self.local: tuple[str, int] = writer.get_extra_info("sockname")[:2]
        self.closed = False
        self.missing_length: list[str] = []  #: first lines of messages without Content-Length

    @classmethod
    async def open(cls, probe: Probe, profile: Profile) -> Stream:
        host, port = profile.target
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
        return cls(probe, reader, writer, ("tcp", host, port))

    async def write(self, *parts: bytes) -> None:
        """Write ``parts`` one by one, :data:`PAUSE` apart (each its own segment)."""
        for i, part in enumerate(parts):
            if i:
                await asyncio.sleep(PAUSE)
            self.probe.tracer.record("out", part, self.peer)
            self.writer.write(part)
            await self.writer.drain()

    def _take(self) -> bytes | None:
        buf = self.buf.lstrip(b"\r\n")
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = buf[:end + 4]
        m = _CL.search(head)
        if m is None:
            self.missing_length.append(head.split(b"\r\n", 1)[0].decode("utf-8", "replace"))
        size = int(m.group(1)) if m else 0
        if len(buf) < end + 4 + size:
            return None
        self.buf = buf[end + 4 + size:]
        return buf[:end + 4 + size]

    async def read(self, timeout: float) -> Response | None:
        """The next response on the stream (None after ``timeout`` s or at its end)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            data = self._take()
            if data is not None:
                self.probe.tracer.record("in", data, self.peer)
                try:
                    msg = parse_message(data, datagram=False)
                except ParseError:
                    continue
                if isinstance(msg, Response):
                    return msg
                continue
            left = deadline - loop.time()
            if left <= 0 or self.closed:
                return None
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
            except (TimeoutError, ConnectionError):
                return None
            if not chunk:
                self.closed = True
                return None
            self.buf += chunk

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self.writer.wait_closed()


def options(probe: Probe, profile: Profile, stream: Stream, *, body: bytes = b"",
            sent_by: tuple[str, int] | None = None) -> tuple[bytes, str]:
    """An OPTIONS for the stream, as bytes, and its Call-ID."""
    req = probe.request("OPTIONS", uas_uri(profile), contact=False)
    host, port = sent_by or stream.local
    req.remove_header("via")
    req.prepend_header("Via", f"SIP/2.0/TCP {host}:{port};branch={probe.ids.branch()}")
    if body:
        req.set_body(body, "application/sdp")
    else:
        req.set_header("Content-Length", "0")
    return req.to_bytes(), req.call_id


async def _answers(stream: Stream, call_ids: list[str], timeout: float
                   ) -> dict[str, Response]:
    """The final responses to ``call_ids`` read within ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    got: dict[str, Response] = {}
    while len(got) < len(call_ids):
        resp = await stream.read(deadline - loop.time())
        if resp is None:
            break
        try:
            if resp.status >= 200 and resp.call_id in call_ids:
                got[resp.call_id] = resp
        except ParseError:
            continue
    return got


async def _opened(probe: Probe, profile: Profile) -> Stream | Outcome:
    try:
        return await Stream.open(probe, profile)
    except (OSError, TimeoutError) as e:
        host, port = profile.target
        return inconclusive(f"no TCP connection to {host}:{port}: {e}")


async def _one(probe: Probe, profile: Profile, cut: list[int] | None = None,
               body: bytes = b"") -> tuple[Stream, bytes, dict[str, Response]] | Outcome:
    stream = await _opened(probe, profile)
    if isinstance(stream, Outcome):
        return stream
    data, call_id = options(probe, profile, stream, body=body)
    points = [0, *(cut or []), len(data)]
    await stream.write(*(data[a:b] for a, b in itertools.pairwise(points)))
    got = await _answers(stream, [call_id], profile.response_timeout)
    await stream.close()
    return stream, data, got


# --------------------------------------------------------------------------- cases


async def content_length(probe: Probe, profile: Profile) -> Outcome:
    got = await _one(probe, profile)
    if isinstance(got, Outcome):
        return got
    stream, _, answers = got
    if stream.missing_length:
        return broke(CONTENT_LENGTH, f"'{stream.missing_length[0]}' came over TCP without "
                     "Content-Length")
    if not answers:
        return broke(FRAMING, f"no answer to an OPTIONS over TCP within "
                     f"{profile.response_timeout:g} s")
    resp = next(iter(answers.values()))
    return passed(f"{resp.status} {resp.reason} with Content-Length: "
                  f"{resp.get('content-length') or resp.get('l')}")


async def two_in_one(probe: Probe, profile: Profile) -> Outcome:
    stream = await _opened(probe, profile)
    if isinstance(stream, Outcome):
        return stream
    a, id_a = options(probe, profile, stream)
    b, id_b = options(probe, profile, stream)
    await stream.write(a + b)
    got = await _answers(stream, [id_a, id_b], profile.response_timeout)
    await stream.close()
    if len(got) < 2:
        which = "the second" if id_a in got else "the first" if id_b in got else "neither"
        return broke(FRAMING, f"two OPTIONS in one TCP segment: {which} answered "
                     f"({len(got)} of 2)")
    return passed("both OPTIONS of one segment answered")


async def many_segments(probe: Probe, profile: Profile) -> Outcome:
    stream = await _opened(probe, profile)
    if isinstance(stream, Outcome):
        return stream
    data, call_id = options(probe, profile, stream)
    end = data.find(b"\r\n\r\n")
    via = data.find(b"Via:")
    cuts = [4, via + 6, end + 2]  # the start line, a header's value, between the CRLFs
    points = [0, *cuts, len(data)]
    await stream.write(*(data[a:b] for a, b in itertools.pairwise(points)))
    got = await _answers(stream, [call_id], profile.response_timeout)
    await stream.close()
    if call_id not in got:
        return broke(FRAMING, f"an OPTIONS cut into {len(points) - 1} segments (inside the "
                     "start line, a header, the blank line) got no answer")
    return passed(f"an OPTIONS in {len(points) - 1} segments answered "
                  f"{got[call_id].status}")


BODY = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 6000 RTP/AVP 0\r\n")


async def body_split(probe: Probe, profile: Profile) -> Outcome:
    stream = await _opened(probe, profile)
    if isinstance(stream, Outcome):
        return stream
    data, call_id = options(probe, profile, stream, body=BODY)
    after, id_after = options(probe, profile, stream)
    start = data.find(b"\r\n\r\n") + 4
    cut = start + 20  # inside the body, at a CRLF-free point
    await stream.write(data[:cut], data[cut:] + after)
    got = await _answers(stream, [call_id, id_after], profile.response_timeout)
    await stream.close()
    if call_id not in got:
        return broke(FRAMING, "an OPTIONS whose body arrived in two segments got no answer")
    if id_after not in got:
        return broke(FRAMING, "the OPTIONS right after a body split across segments got no "
                     "answer (the body's end was not found by its Content-Length)")
    return passed(f"the split body's OPTIONS answered {got[call_id].status}, and the next "
                  f"one {got[id_after].status}")


async def late_body(probe: Probe, profile: Profile) -> Outcome:
    stream = await _opened(probe, profile)
    if isinstance(stream, Outcome):
        return stream
    data, call_id = options(probe, profile, stream, body=BODY)
    cut = data.find(b"\r\n\r\n") + 4 + len(BODY) // 2
    await stream.write(data[:cut])
    early = await _answers(stream, [call_id], min(1.0, profile.response_timeout))
    closed = stream.closed
    if not closed:
        await stream.write(data[cut:])
    got = early or await _answers(stream, [call_id], profile.response_timeout)
    await stream.close()
    if early:
        return broke(FRAMING, f"answered {early[call_id].status} before the body its "
                     "Content-Length announced had arrived")
    if closed:
        return broke(FRAMING, "the connection was closed while the body its Content-Length "
                     "announced was still on its way")
    if call_id not in got:
        return broke(FRAMING, "no answer once the rest of the body arrived")
    return passed(f"waited for the body Content-Length announced, then answered "
                  f"{got[call_id].status}")


async def leading_crlf(probe: Probe, profile: Profile) -> Outcome:
    got = await _one_prefixed(probe, profile, b"\r\n\r\n\r\n")
    if isinstance(got, Outcome):
        return got
    if not got:
        return broke(LEADING_CRLF, "an OPTIONS after CRLFs on the stream got no answer")
    return passed(f"CRLFs before the start line ignored; answered {got.status}")


async def _one_prefixed(probe: Probe, profile: Profile, prefix: bytes
                        ) -> Response | Outcome | None:
    stream = await _opened(probe, profile)
    if isinstance(stream, Outcome):
        return stream
    data, call_id = options(probe, profile, stream)
    await stream.write(prefix + data)
    got = await _answers(stream, [call_id], profile.response_timeout)
    await stream.close()
    return got.get(call_id)


async def same_connection(probe: Probe, profile: Profile) -> Outcome:
    stream = await _opened(probe, profile)
    if isinstance(stream, Outcome):
        return stream
    # a sent-by nothing listens on: the answer can only come on this connection
    host = stream.local[0]
    data, call_id = options(probe, profile, stream, sent_by=(host, 9))
    await stream.write(data)
    got = await _answers(stream, [call_id], profile.response_timeout)
    await stream.close()
    if call_id not in got:
        return broke(SAME_CONNECTION, f"no answer on the connection the OPTIONS came on (its "
                     f"Via names {host}:9, where nothing listens)")
    return passed(f"answered {got[call_id].status} on the request's own connection")


async def negative_length(probe: Probe, profile: Profile) -> Outcome:
    stream = await _opened(probe, profile)
    if isinstance(stream, Outcome):
        return stream
    data, call_id = options(probe, profile, stream)
    data = data.replace(b"Content-Length: 0\r\n", b"Content-Length: -999\r\n", 1)
    await stream.write(data + BODY)
    got = await _answers(stream, [call_id], profile.response_timeout)
    if not stream.closed:  # still open: does it end once more time has passed?
        await stream.read(profile.response_timeout)
    closed = stream.closed
    await stream.close()
    said = f"{got[call_id].status} {got[call_id].reason}" if call_id in got else "no answer"
    if not closed:
        return broke(UNRECOVERABLE, f"a negative Content-Length on the stream got {said}, and "
                     f"the connection stayed open {2 * profile.response_timeout:g} s")
    return passed(f"{said}, and the connection closed")


_TCP = ("role:uas", "transport:tcp")

CASES = [
    Case("TP-001", "3261", "18.3", "a response over TCP carries Content-Length", "transport",
         _TCP, content_length, budget=10.0, rules=(CONTENT_LENGTH, FRAMING)),
    Case("TP-002", "3261", "18.3", "two requests in one TCP segment are both answered",
         "transport", _TCP, two_in_one, budget=10.0, rules=(FRAMING,)),
    Case("TP-003", "3261", "18.3", "a request cut into segments (inside the start line, a "
         "header, the blank line) is answered once whole", "transport", _TCP, many_segments,
         budget=10.0, rules=(FRAMING,)),
    Case("TP-004", "3261", "18.3", "a body split across segments is read by its "
         "Content-Length, and the request after it is answered too", "transport", _TCP,
         body_split, budget=10.0, rules=(FRAMING,)),
    Case("TP-005", "3261", "18.3", "a request whose body has not all arrived is not answered "
         "(nor the connection closed) until it has", "transport", _TCP, late_body,
         budget=10.0, rules=(FRAMING,)),
    Case("TP-006", "3261", "7.5", "CRLFs before the start line are ignored", "transport",
         _TCP, leading_crlf, budget=10.0, rules=(LEADING_CRLF,)),
    Case("TP-007", "3261", "18.2.2", "the response comes on the request's connection, "
         "whatever the Via's sent-by", "transport", _TCP, same_connection, budget=10.0,
         rules=(SAME_CONNECTION,)),
    Case("TP-008", "4475", "3.1.2.3", "a negative Content-Length on a stream cannot be framed: "
         "the connection is closed (a 400 first is allowed)", "transport", _TCP,
         negative_length, budget=10.0, rules=(UNRECOVERABLE,)),
]
