"""``messages.pcap``: traced SIP messages as the packets that carried them.

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
"""

from __future__ import annotations

import ipaddress
import struct
from typing import BinaryIO

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
