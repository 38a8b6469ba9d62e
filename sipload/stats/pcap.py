"""``messages.pcap``: traced SIP messages as the packets that carried them; and reading
the UDP datagrams of a capture (``sipload import-sipp``'s ``play_pcap_audio``).

A classic libpcap file (what Wireshark, tshark, tcpdump and sngrep read) with
link type ``LINKTYPE_RAW`` (101): each record is an IPv4 or IPv6 packet, told
apart by its version nibble, so no made-up Ethernet addresses are needed.

Theory of operation
===================

1. The file starts with the 24-byte global header (magic ``a1b2c3d4`` in this
   machine's byte order, version 2.4, snaplen 262144, link type 101); each
   packet is a 16-byte record header (seconds, microseconds, captured length,
   original length) and the packet.
2. A UDP message is one IP packet with a UDP header (RFC 768); the UDP
   checksum covers the pseudo-header (RFC 768 / RFC 8200 §8.1).
3. A TCP or TLS message (TLS shown as the plaintext SIP it carried, which is
   what a reader needs) is one or more TCP segments with PSH+ACK, sequence
   numbers that continue per direction of each connection, and the
   acknowledgement of the other direction's bytes, so readers reassemble it.
4. A message kept cut (the trace's byte cap) is written with its captured
   bytes and its original length, as a capture with a short snaplen would be;
   its IP and UDP lengths say the full size and its checksum is left zero.
5. Addresses are the real ones of the socket; a host that is not an address
   literal (never expected: the shell resolves names) skips the message, which
   is counted in :attr:`PcapWriter.skipped`.

Reading (:func:`read_udp`) takes a capture's bytes -- classic libpcap in either
byte order, microsecond or nanosecond stamps, or pcapng (section header,
interface description, enhanced and simple packet blocks) -- with link type
Ethernet (802.1Q/802.1ad tags skipped), Linux cooked v1/v2, BSD loopback or raw
IP, and gives each UDP datagram over IPv4 or IPv6 (no IP fragments, no IPv6
extension headers: those are counted as skipped).  Every length is checked; a
file that is not a capture, or is cut inside a header, raises :class:`PcapError`
naming the offset.  Nothing else is raised for any input.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import BinaryIO, NamedTuple

LINKTYPE_RAW = 101
SNAPLEN = 262144
MAX_SEGMENT = 65000  #: TCP payload per segment (an IPv4 packet holds at most 65535 bytes)

_GLOBAL = struct.Struct("=IHHiIII")
_RECORD = struct.Struct("=IIII")


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class PcapWriter:
    """Appends messages as packets to an open binary file (see the module docstring)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._ip_id = 0
        self._seq: dict[tuple[str, int, str, int], int] = {}
        self.packets = 0
        self.skipped = 0

    def write_header(self) -> None:
        self._out.write(_GLOBAL.pack(0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_RAW))

    def message(self, ts: float, transport: str, src: tuple[str, int], dst: tuple[str, int],
                data: bytes, length: int | None = None) -> bool:
        """Write one message sent from ``src`` to ``dst`` at Unix time ``ts``.

        ``data`` is what was kept of it and ``length`` its full size (default:
        all of it).  Returns False (and counts it) when an address is not a
        literal of one family.
        """
        try:
            s_ip = ipaddress.ip_address(src[0].split("%", 1)[0])
            d_ip = ipaddress.ip_address(dst[0].split("%", 1)[0])
        except ValueError:
            self.skipped += 1
            return False
        if s_ip.version != d_ip.version:
            self.skipped += 1
            return False
        full = len(data) if length is None else max(length, len(data))
        if transport == "udp":
            self._udp(ts, s_ip.packed, d_ip.packed, src[1], dst[1], data, full)
        else:
            key = (str(s_ip), src[1], str(d_ip), dst[1])
            back = (str(d_ip), dst[1], str(s_ip), src[1])
            for at in range(0, max(full, 1), MAX_SEGMENT):
                part = data[at:at + MAX_SEGMENT]
                part_full = min(MAX_SEGMENT, full - at)
                seq = self._seq.get(key, 1)
                self._seq[key] = (seq + part_full) & 0xFFFFFFFF
                ack = self._seq.get(back, 1)
                self._tcp(ts, s_ip.packed, d_ip.packed, src[1], dst[1], seq, ack, part,
                          part_full)
        return True

    # ---------------------------------------------------------------- packets

    def _udp(self, ts: float, src: bytes, dst: bytes, sport: int, dport: int, data: bytes,
             full: int) -> None:
        ulen = 8 + full
        header = struct.pack("!HHHH", sport, dport, ulen & 0xFFFF, 0)
        if full == len(data):
            csum = _checksum(self._pseudo(src, dst, 17, ulen) + header + data) or 0xFFFF
            header = header[:6] + struct.pack("!H", csum)
        self._ip(ts, src, dst, 17, header + data, 8 + full)

    def _tcp(self, ts: float, src: bytes, dst: bytes, sport: int, dport: int, seq: int,
             ack: int, data: bytes, full: int) -> None:
        flags = 0x18  # PSH, ACK
        header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
        if full == len(data):
            csum = _checksum(self._pseudo(src, dst, 6, 20 + full) + header + data)
            header = header[:16] + struct.pack("!H", csum) + header[18:]
        self._ip(ts, src, dst, 6, header + data, 20 + full)

    @staticmethod
    def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
        if len(src) == 4:
            return src + dst + struct.pack("!BBH", 0, proto, length & 0xFFFF)
        return src + dst + struct.pack("!IxxxB", length, proto)

    def _ip(self, ts: float, src: bytes, dst: bytes, proto: int, payload: bytes,
            payload_full: int) -> None:
        if len(src) == 4:
            self._ip_id = (self._ip_id + 1) & 0xFFFF
            total = 20 + payload_full
            header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, min(total, 0xFFFF), self._ip_id,
                                 0x4000, 64, proto, 0, src, dst)
            header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        else:
            total = 40 + payload_full
            header = struct.pack("!IHBB16s16s", 0x60000000, payload_full & 0xFFFF, proto, 64,
                                 src, dst)
        packet = header + payload
        sec = int(ts)
        usec = min(round((ts - sec) * 1_000_000), 999_999)
        self._out.write(_RECORD.pack(sec, usec, len(packet), total))
        self._out.write(packet)
        self.packets += 1


# -------------------------------------------------------------------- reading

MAX_PACKETS = 5_000_000
"""Packets read from one capture at most (a bound on a hostile file's cost)."""


class PcapError(ValueError):
    """The bytes are not a capture :func:`read_udp` can read; the message says where."""


class Datagram(NamedTuple):
    """One UDP datagram of a capture."""

    ts: float  #: capture time, Unix seconds
    src: str  #: source address
    sport: int
    dst: str
    dport: int
    payload: bytes


class Capture(NamedTuple):
    """What :func:`read_udp` found."""

    datagrams: list[Datagram]
    packets: int  #: packets in the file
    skipped: int  #: packets that were not whole UDP over IPv4/IPv6 on a known link


_ETHERNET, _NULL, _RAW, _LOOP, _SLL, _SLL2, _IPV4, _IPV6 = 1, 0, 101, 108, 113, 276, 228, 229
_LINKS = frozenset({_ETHERNET, _NULL, _RAW, 12, 14, _LOOP, _SLL, _SLL2, _IPV4, _IPV6})


def read_udp(data: bytes) -> Capture:
    """The UDP datagrams of a pcap or pcapng capture, in file order.

    Raises:
        PcapError: not a capture, an unknown link type, or a header cut short.
    """
    if len(data) < 4:
        raise PcapError("not a capture: shorter than a file header")
    frames = _pcapng(data) if data[:4] == b"\x0a\x0d\x0d\x0a" else _classic(data)
    out: list[Datagram] = []
    packets = skipped = 0
    for ts, link, frame in frames:
        packets += 1
        got = _udp_of(link, frame, ts)
        if got is None:
            skipped += 1
        else:
            out.append(got)
    return Capture(out, packets, skipped)


Frame = tuple[float, int, bytes]


def _classic(data: bytes) -> list[Frame]:
    magic = data[:4]
    order = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\x4d\x3c\xb2\xa1": "<",
             b"\xa1\xb2\x3c\x4d": ">"}.get(magic)
    if order is None:
        raise PcapError("not a capture: no pcap or pcapng magic number at offset 0")
    if len(data) < 24:
        raise PcapError("the pcap file header is cut short")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    link = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    if link not in _LINKS:
        raise PcapError(f"link type {link} is not one sipload reads (Ethernet, Linux cooked, "
                        "loopback or raw IP)")
    record = struct.Struct(order + "IIII")
    scale = 1e-9 if nano else 1e-6
    out: list[Frame] = []
    at = 24
    while at < len(data) and len(out) < MAX_PACKETS:
        if at + 16 > len(data):
            raise PcapError(f"a packet record header is cut short at offset {at}")
        sec, frac, caplen, _ = record.unpack_from(data, at)
        at += 16
        if at + caplen > len(data):
            raise PcapError(f"a packet is cut short at offset {at}")
        out.append((sec + frac * scale, link, data[at:at + caplen]))
        at += caplen
    return out


def _pcapng(data: bytes) -> list[Frame]:
    out: list[Frame] = []
    links: list[tuple[int, float]] = []  # per interface: link type, seconds per tick
    order = "<"
    at = 0
    while at < len(data) and len(out) < MAX_PACKETS:
        if at + 12 > len(data):
            raise PcapError(f"a pcapng block header is cut short at offset {at}")
        if data[at:at + 4] == b"\x0a\x0d\x0d\x0a":
            bom = data[at + 8:at + 12]
            order = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}.get(bom, "")
            if not order:
                raise PcapError(f"a pcapng section at offset {at} has no byte-order magic")
            links = []
        kind, length = struct.unpack_from(order + "II", data, at)
        if length < 12 or length % 4 or at + length > len(data):
            raise PcapError(f"a pcapng block at offset {at} has a bad length {length}")
        body = data[at + 8:at + length - 4]
        if kind == 1 and len(body) >= 8:  # interface description
            links.append((struct.unpack_from(order + "H", body, 0)[0], _tick(body[8:], order)))
        elif kind == 6 and len(body) >= 20:  # enhanced packet
            iface, high, low, caplen = struct.unpack_from(order + "IIII", body, 0)
            if iface < len(links) and 20 + caplen <= len(body):
                link, tick = links[iface]
                out.append((((high << 32) | low) * tick, link, body[20:20 + caplen]))
        elif kind == 3 and len(body) >= 4 and links:  # simple packet
            out.append((0.0, links[0][0], body[4:]))
        at += length
    return out


def _tick(options: bytes, order: str) -> float:
    """Seconds per timestamp unit from an interface's if_tsresol option (default µs)."""
    at = 0
    while at + 4 <= len(options):
        code, size = struct.unpack_from(order + "HH", options, at)
        if code == 0:
            break
        if code == 9 and size >= 1 and at + 5 <= len(options):
            v = options[at + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -(v & 0x7F)
        at += 4 + size + (-size % 4)
    return 1e-6


def _udp_of(link: int, frame: bytes, ts: float) -> Datagram | None:
    ip = _ip_of(link, frame)
    if ip is None or len(ip) < 1:
        return None
    version = ip[0] >> 4
    if version == 4:
        ihl = (ip[0] & 0x0F) * 4
        if ihl < 20 or len(ip) < ihl + 8 or ip[9] != 17:
            return None
        if struct.unpack_from("!H", ip, 6)[0] & 0x3FFF:  # a fragment (MF or an offset)
            return None
        src, dst, udp = str(ipaddress.IPv4Address(ip[12:16])), \
            str(ipaddress.IPv4Address(ip[16:20])), ip[ihl:]
    elif version == 6:
        if len(ip) < 48 or ip[6] != 17:
            return None
        src, dst, udp = str(ipaddress.IPv6Address(ip[8:24])), \
            str(ipaddress.IPv6Address(ip[24:40])), ip[40:]
    else:
        return None
    sport, dport, ulen = struct.unpack_from("!HHH", udp, 0)
    if ulen < 8 or ulen > len(udp):
        return None
    return Datagram(ts, src, sport, dst, dport, bytes(udp[8:ulen]))


def _ip_of(link: int, frame: bytes) -> bytes | None:
    """The IP packet a link-layer frame carries, or None."""
    if link == _ETHERNET:
        at = 12
        while at + 2 <= len(frame) and frame[at:at + 2] in (b"\x81\x00", b"\x88\xa8"):
            at += 4
        if at + 2 > len(frame) or frame[at:at + 2] not in (b"\x08\x00", b"\x86\xdd"):
            return None
        return frame[at + 2:]
    if link in (_NULL, _LOOP):
        return frame[4:]
    if link == _SLL:
        return frame[16:] if len(frame) >= 16 and frame[14:16] in (b"\x08\x00",
                                                                   b"\x86\xdd") else None
    if link == _SLL2:
        return frame[20:] if len(frame) >= 20 and frame[0:2] in (b"\x08\x00",
                                                                 b"\x86\xdd") else None
    return frame  # raw IP (101, 12, 14, 228, 229)
