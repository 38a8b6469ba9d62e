"""RTP packets (RFC 3550 §5.1): parse with every length checked, build from fields.

Theory of operation:

1. A datagram is parsed once, where it is read; what the statistics need (sequence
   number, timestamp, SSRC, payload type, marker, where the payload starts and
   ends) comes back as one :class:`RtpHeader`.
2. Everything a hostile sender can lie about is checked against the datagram's
   length: the fixed header (12 bytes), the version (2), the CSRC count (4 bytes
   each), the header extension's length word, and the padding count in the last
   byte (not zero, not beyond the payload).  A lie raises :class:`MediaParseError`
   with a short reason, never anything else.
3. RTCP on the same port (RFC 5761 §4) is told apart by the second byte: payload
   types 64-95 with the marker bit are RTCP packet types 192-223.

Wire format (RFC 3550 §5.1)::

     0                   1                   2                   3
    |V=2|P|X|  CC   |M|     PT      |       sequence number         |
    |                           timestamp                           |
    |           synchronization source (SSRC) identifier            |
    |            contributing source (CSRC) identifiers             |  CC x 32 bits
"""

from __future__ import annotations

import struct

from sipload.media.errors import MediaParseError

_HEADER = struct.Struct("!BBHII")
HEADER_SIZE = 12
VERSION = 2


class RtpHeader:
    """The fields of one received RTP packet, and where its payload lies.

    Attributes:
        marker: the M bit (start of a talkspurt, start of an RFC 4733 event).
        payload_type: 0-127.
        seq: the 16-bit sequence number.
        timestamp: the 32-bit RTP timestamp.
        ssrc: the sender's synchronisation source.
        csrcs: the contributing sources, in order.
        payload_start: index of the payload's first byte in the datagram.
        payload_end: index one past the payload's last byte (padding excluded).
    """

    __slots__ = ("csrcs", "marker", "payload_end", "payload_start", "payload_type", "seq",
                 "ssrc", "timestamp")

    def __init__(self, marker: bool, payload_type: int, seq: int, timestamp: int, ssrc: int,
                 csrcs: tuple[int, ...], payload_start: int, payload_end: int) -> None:
        self.marker = marker
        self.payload_type = payload_type
        self.seq = seq
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.csrcs = csrcs
        self.payload_start = payload_start
        self.payload_end = payload_end

    @property
    def payload_size(self) -> int:
        return self.payload_end - self.payload_start


def is_rtcp(data: bytes) -> bool:
    """True when a datagram on an RTP port is RTCP multiplexed onto it (RFC 5761 §4)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def parse_rtp(data: bytes) -> RtpHeader:
    """Parse one RTP packet.

    Args:
        data: the whole datagram.

    Returns:
        Its header fields and payload bounds.

    Raises:
        MediaParseError: the datagram is not a well-formed RTP packet; ``reason``
            says which rule it breaks.  Nothing else is raised.
    """
    size = len(data)
    if size < HEADER_SIZE:
        raise MediaParseError("short")
    first, second, seq, timestamp, ssrc = _HEADER.unpack_from(data, 0)
    if first >> 6 != VERSION:
        raise MediaParseError("version")
    cc = first & 0x0F
    start = HEADER_SIZE + 4 * cc
    if start > size:
        raise MediaParseError("csrc-count")
    csrcs: tuple[int, ...] = ()
    if cc:
        csrcs = struct.unpack_from(f"!{cc}I", data, HEADER_SIZE)
    if first & 0x10:
        if start + 4 > size:
            raise MediaParseError("extension")
        words = (data[start + 2] << 8) | data[start + 3]
        start += 4 + 4 * words
        if start > size:
            raise MediaParseError("extension")
    end = size
    if first & 0x20:
        pad = data[size - 1]
        if pad == 0 or pad > size - start:
            raise MediaParseError("padding")
        end = size - pad
    return RtpHeader(bool(second & 0x80), second & 0x7F, seq, timestamp, ssrc, csrcs, start, end)


def build_rtp(payload_type: int, seq: int, timestamp: int, ssrc: int, payload: bytes,
              marker: bool = False, csrcs: tuple[int, ...] = (), padding: int = 0) -> bytes:
    """Build one RTP packet (no header extension).

    Args:
        payload_type: 0-127.
        seq: sequence number (taken modulo 2**16).
        timestamp: RTP timestamp (taken modulo 2**32).
        ssrc: synchronisation source.
        payload: the payload bytes.
        marker: the M bit.
        csrcs: up to 15 contributing sources.
        padding: bytes of padding to add (0, or 1-255; the last one holds the count).
    """
    if not 0 <= payload_type <= 127:
        raise ValueError(f"payload type {payload_type} is not 0-127")
    if len(csrcs) > 15:
        raise ValueError("at most 15 CSRCs")
    if not 0 <= padding <= 255:
        raise ValueError("padding is 0-255 bytes")
    first = (VERSION << 6) | (0x20 if padding else 0) | len(csrcs)
    head = _HEADER.pack(first, (0x80 if marker else 0) | payload_type, seq & 0xFFFF,
                        timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)
    if csrcs:
        head += struct.pack(f"!{len(csrcs)}I", *csrcs)
    tail = b""
    if padding:
        tail = bytes(padding - 1) + bytes((padding,))
    return head + payload + tail
