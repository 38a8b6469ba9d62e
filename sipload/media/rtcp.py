"""RTCP (RFC 3550 §6): sender and receiver reports, SDES CNAME and BYE, built and parsed.

Theory of operation:

1. Each call sends a compound packet (§6.1: a report first, then SDES with a
   CNAME) about every :data:`INTERVAL` seconds, and a final one with BYE when
   its media stops.  A sender report (SR) while we send, a receiver report (RR)
   otherwise; a report block about the remote stream once one has arrived.
2. Reports from the far end are parsed with every length checked (a lie raises
   :class:`MediaParseError`); the report block about *our* SSRC is the far end's
   view of our stream: its loss, fraction lost and jitter.  The round-trip time
   comes from that block's LSR and DLSR (§6.4.1): ``A − LSR − DLSR`` where A is
   our NTP time of arrival.
3. NTP times are built from the monotonic ``now`` plus a wall-clock offset the
   shell measured once, so this module reads no clock.
"""

from __future__ import annotations

import struct

from sipload.media.errors import MediaParseError

SR = 200
RR = 201
SDES = 202
BYE = 203
APP = 204
CNAME = 1
#: Seconds between two reports of one call (RFC 3550 §6.2's minimum is 5 s).
INTERVAL = 5.0
NTP_EPOCH_OFFSET = 2208988800

_BLOCK = struct.Struct("!IIIIII")
_SENDER = struct.Struct("!IIIII")
_HEAD = struct.Struct("!BBHI")


def ntp_of(wall: float) -> int:
    """64-bit NTP timestamp of a Unix time."""
    return int((wall + NTP_EPOCH_OFFSET) * 4294967296.0) & 0xFFFFFFFFFFFFFFFF


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp (LSR, §6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


class ReportBlock:
    """One reception report block (§6.4.1): what ``source`` looks like to the reporter.

    Attributes:
        source: the SSRC it is about.
        fraction_lost: lost share since the reporter's previous report, 0-1.
        cumulative_lost: packets lost over the session (may be negative).
        highest_seq: extended highest sequence number received.
        jitter: interarrival jitter, timestamp units.
        lsr: middle 32 bits of the NTP time of the last SR received (0: none).
        dlsr: delay since that SR, 1/65536 s.
    """

    __slots__ = ("cumulative_lost", "dlsr", "fraction_lost", "highest_seq", "jitter", "lsr",
                 "source")

    def __init__(self, source: int, fraction_lost: float, cumulative_lost: int,
                 highest_seq: int, jitter: int, lsr: int, dlsr: int) -> None:
        self.source = source
        self.fraction_lost = fraction_lost
        self.cumulative_lost = cumulative_lost
        self.highest_seq = highest_seq
        self.jitter = jitter
        self.lsr = lsr
        self.dlsr = dlsr


class RtcpReport:
    """What one compound RTCP packet said.

    Attributes:
        sender: SSRC of the SR/RR's sender (-1 when the packet had none).
        ntp: the SR's NTP timestamp (0 for an RR).
        rtp_timestamp, packets, octets: the SR's sender info (0 for an RR).
        blocks: the report blocks.
        cname: the SDES CNAME, if any.
        bye: a BYE was in the packet.
    """

    __slots__ = ("blocks", "bye", "cname", "ntp", "octets", "packets", "rtp_timestamp", "sender")

    def __init__(self) -> None:
        self.sender = -1
        self.ntp = 0
        self.rtp_timestamp = 0
        self.packets = 0
        self.octets = 0
        self.blocks: list[ReportBlock] = []
        self.cname = ""
        self.bye = False


def _blocks_out(blocks: list[tuple[int, int, int, int, int, int, int]]) -> bytes:
    out = b""
    for source, fraction, cumulative, highest, jitter, lsr, dlsr in blocks:
        out += _BLOCK.pack(source & 0xFFFFFFFF, ((fraction & 0xFF) << 24) | (cumulative & 0xFFFFFF),
                           highest & 0xFFFFFFFF, jitter & 0xFFFFFFFF, lsr & 0xFFFFFFFF,
                           dlsr & 0xFFFFFFFF)
    return out


def build_report(ssrc: int, blocks: list[tuple[int, int, int, int, int, int, int]],
                 sender: tuple[int, int, int, int] | None) -> bytes:
    """An SR (when ``sender`` is given: NTP, RTP timestamp, packets, octets) or an RR.

    Each block is (source, fraction lost ×256, cumulative lost, highest extended
    sequence, jitter, LSR, DLSR).
    """
    if len(blocks) > 31:
        raise ValueError("at most 31 report blocks")
    body = _blocks_out(blocks)
    if sender is not None:
        ntp, rtp_ts, packets, octets = sender
        info = _SENDER.pack(ntp >> 32, ntp & 0xFFFFFFFF, rtp_ts & 0xFFFFFFFF,
                            packets & 0xFFFFFFFF, octets & 0xFFFFFFFF)
        words = (4 + len(info) + len(body)) // 4
        return _HEAD.pack(0x80 | len(blocks), SR, words, ssrc) + info + body
    words = (4 + len(body)) // 4
    return _HEAD.pack(0x80 | len(blocks), RR, words, ssrc) + body


def build_sdes(ssrc: int, cname: str) -> bytes:
    """An SDES packet with one chunk holding the CNAME (§6.5)."""
    text = cname.encode("utf-8")[:255]
    chunk = struct.pack("!IBB", ssrc, CNAME, len(text)) + text + b"\x00"
    chunk += bytes(-len(chunk) % 4)
    return struct.pack("!BBH", 0x81, SDES, len(chunk) // 4) + chunk


def build_bye(ssrc: int) -> bytes:
    """A BYE packet for ``ssrc`` (§6.6)."""
    return struct.pack("!BBHI", 0x81, BYE, 1, ssrc)


def parse_rtcp(data: bytes) -> RtcpReport:
    """Parse a compound RTCP packet.

    Raises:
        MediaParseError: a length, version, count or padding does not fit the datagram.
    """
    size = len(data)
    if size < 8:
        raise MediaParseError("rtcp-short")
    report = RtcpReport()
    pos = 0
    while pos < size:
        if size - pos < 4:
            raise MediaParseError("rtcp-short")
        first, ptype, words = struct.unpack_from("!BBH", data, pos)
        if first >> 6 != 2:
            raise MediaParseError("rtcp-version")
        end = pos + 4 + 4 * words
        if end > size:
            raise MediaParseError("rtcp-length")
        body_end = end
        if first & 0x20:
            if end != size:
                raise MediaParseError("rtcp-padding")
            pad = data[end - 1]
            if pad == 0 or pad > end - pos - 4:
                raise MediaParseError("rtcp-padding")
            body_end = end - pad
        count = first & 0x1F
        if ptype in (SR, RR):
            _parse_report(data, pos, body_end, ptype, count, report)
        elif ptype == SDES:
            _parse_sdes(data, pos + 4, body_end, count, report)
        elif ptype == BYE:
            report.bye = True
        pos = end
    return report


def _parse_report(data: bytes, pos: int, end: int, ptype: int, count: int,
                  report: RtcpReport) -> None:
    start = pos + 8
    if start > end:
        raise MediaParseError("rtcp-length")
    sender = struct.unpack_from("!I", data, pos + 4)[0]
    if ptype == SR:
        if start + 20 > end:
            raise MediaParseError("rtcp-length")
        msw, lsw, rtp_ts, packets, octets = _SENDER.unpack_from(data, start)
        report.ntp = (msw << 32) | lsw
        report.rtp_timestamp = rtp_ts
        report.packets = packets
        report.octets = octets
        start += 20
    if start + 24 * count > end:
        raise MediaParseError("rtcp-count")
    if report.sender < 0:
        report.sender = sender
    for i in range(count):
        source, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, start + 24 * i)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        report.blocks.append(ReportBlock(source, (lost >> 24) / 256.0, cumulative, highest,
                                         jitter, lsr, dlsr))


def _parse_sdes(data: bytes, pos: int, end: int, count: int, report: RtcpReport) -> None:
    for _ in range(count):
        if pos + 4 > end:
            raise MediaParseError("rtcp-sdes")
        pos += 4
        while True:
            if pos >= end:
                raise MediaParseError("rtcp-sdes")
            item = data[pos]
            if item == 0:
                pos += 1
                pos += -pos % 4
                break
            if pos + 2 > end:
                raise MediaParseError("rtcp-sdes")
            length = data[pos + 1]
            if pos + 2 + length > end:
                raise MediaParseError("rtcp-sdes")
            if item == CNAME and not report.cname:
                report.cname = data[pos + 2:pos + 2 + length].decode("utf-8", "replace")
            pos += 2 + length
