"""Packet captures on loopback for the tests: tcpdump in the background, and a pcap reader.

Test infrastructure, not a test module (benchmarks use it too).  The reference for
every timing check is the kernel's timestamp on each packet, as tcpdump records it.

Typical use::

    with Capture([uas_port]) as cap:
        ...  # run the load
    packets = cap.packets()          # after the with block: tcpdump has stopped
    calls = sip_calls(packets)       # Call-ID -> the SIP messages of that call

Theory of operation
-------------------
1. :class:`Capture` runs ``tcpdump -i lo`` with a BPF filter on the test's ports
   (``port P or port Q ...``), nanosecond timestamps, ``--immediate-mode`` (without
   it, packets still in the kernel's ring block when tcpdump is stopped are lost) and
   packet-buffered output, under ``timeout -k`` so a stuck capture ends by itself.
   It is *ready* when tcpdump prints ``listening on lo`` (the socket is attached and
   filtering), so nothing sent after :meth:`Capture.start` returns is missed.
2. :meth:`Capture.stop` waits :data:`DRAIN` seconds, then sends SIGINT to the
   process group it started (``timeout`` and its tcpdump, by PID): tcpdump writes out
   what it holds and prints how many packets the kernel dropped; a capture that
   dropped any raises, since a timing check on a partial capture could pass wrongly.
3. :func:`read_pcap` reads the classic pcap format (microsecond or nanosecond magic,
   either byte order) for the link types tcpdump gives on Linux loopback (Ethernet,
   Linux cooked v1/v2, raw IP), IPv4 and IPv6, and returns UDP payloads and TCP
   segments with their timestamps (CLOCK_REALTIME seconds, as floats with sub-µs
   resolution) and addresses.  No reassembly: on loopback one SIP message is one
   segment at test rates.
4. :func:`sip_calls` groups SIP messages by Call-ID: first line, CSeq method, time.
5. Requires root (raw sockets) and the ``tcpdump`` program: :func:`require` fails the
   test under ``CI=true`` when it is missing, and skips it elsewhere.
"""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.peers import require

READY_TIMEOUT = 10.0
"""Seconds tcpdump gets to print ``listening on``."""

DRAIN = 0.2
"""Seconds given to tcpdump to read what the kernel holds for it before it is stopped."""


@dataclass(frozen=True, slots=True)
class Packet:
    """One captured UDP datagram or TCP segment with a payload."""

    time: float  #: the kernel's timestamp (CLOCK_REALTIME seconds)
    proto: str  #: "udp" or "tcp"
    src: tuple[str, int]  #: (address, port)
    dst: tuple[str, int]  #: (address, port)
    payload: bytes


@dataclass(frozen=True, slots=True)
class SipPacket:
    """One SIP message seen on the wire."""

    time: float
    first_line: str  #: e.g. "INVITE sip:x@h SIP/2.0" or "SIP/2.0 200 OK"
    method: str  #: the CSeq method
    status: int  #: 0 for a request
    call_id: str
    src: tuple[str, int]
    dst: tuple[str, int]

    @property
    def is_request(self) -> bool:
        return self.status == 0


class CaptureError(RuntimeError):
    """tcpdump did not start, or the capture is incomplete."""


class Capture:
    """tcpdump on ``lo`` for the given ports (see the module docstring).

    Args:
        ports: the ports whose UDP and TCP traffic to capture.
        limit: seconds after which the capture ends by itself.
        buffer_kib: the kernel capture buffer (tcpdump ``-B``).
        snaplen: bytes kept of each packet (tcpdump ``-s``), or tcpdump's default.  In
            ``--immediate-mode`` the kernel's ring has one slot per packet, sized for the
            snapshot length (with the default, ~64 KiB on loopback: 32 MiB hold ~500
            packets); a capture of short SIP messages at 1,000 calls/s needs a small one.
            A packet longer than this fails :meth:`packets` (a cut message's Call-ID
            could be lost).
    """

    def __init__(self, ports: Sequence[int], *, limit: float = 300.0,
                 buffer_kib: int = 32768, snaplen: int | None = None) -> None:
        if not ports:
            raise ValueError("a capture needs at least one port to filter on")
        self.ports = list(ports)
        self.limit = limit
        self.buffer_kib = buffer_kib
        self.snaplen = snaplen
        self._dir = Path(tempfile.mkdtemp(prefix="sipload-capture-"))
        self.path = self._dir / "capture.pcap"
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: list[str] = []
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None
        self.dropped: int | None = None

    @property
    def filter(self) -> str:
        return " or ".join(f"port {p}" for p in self.ports)

    def start(self) -> Self:
        """Start tcpdump and wait until it is capturing.

        Raises:
            CaptureError: tcpdump exited or did not say it was listening in time.
        """
        tcpdump = require("tcpdump")
        argv = ["timeout", "-k", "5", str(self.limit), tcpdump, "-i", "lo", "-n", "-U",
                "--immediate-mode",
                "-B", str(self.buffer_kib), "--time-stamp-precision=nano",
                *(["-s", str(self.snaplen)] if self.snaplen is not None else []),
                "-w", str(self.path), self.filter]
        self._proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True, start_new_session=True)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if not self._ready.wait(READY_TIMEOUT) or self._proc.poll() is not None:
            self._kill()
            raise CaptureError(f"tcpdump did not start: {' '.join(self._stderr)[-2000:]}")
        return self

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.rstrip())
            if "listening on" in line:
                self._ready.set()
        self._ready.set()

    def stop(self) -> None:
        """Stop tcpdump (SIGINT, by PID) and check that the kernel dropped nothing.

        Raises:
            CaptureError: packets were dropped, or tcpdump would not stop.
        """
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        time.sleep(DRAIN)
        # tcpdump is the child of `timeout` in our session: signal that group only.
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            self._kill()
            raise CaptureError("tcpdump did not stop on SIGINT") from None
        if self._reader is not None:
            self._reader.join(5)
        if proc.stderr is not None:
            proc.stderr.close()
        for line in self._stderr:
            m = re.match(r"(\d+) packets? dropped by kernel", line)
            if m:
                self.dropped = int(m.group(1))
        if self.dropped:
            raise CaptureError(f"tcpdump: {self.dropped} packets dropped by the kernel")

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(5)

    def packets(self) -> list[Packet]:
        """The packets captured (call after :meth:`stop`)."""
        return read_pcap(self.path)

    def close(self) -> None:
        self._kill()
        if self._reader is not None:
            self._reader.join(5)
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        for f in self._dir.iterdir():
            f.unlink()
        self._dir.rmdir()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if et is None:
                self.stop()
        finally:
            if et is not None:
                self._kill()


# --------------------------------------------------------------------------- pcap reading

_MAGICS = {0xA1B2C3D4: 1e-6, 0xA1B23C4D: 1e-9}
_LINK_ETHERNET, _LINK_RAW, _LINK_SLL, _LINK_SLL2 = 1, 101, 113, 276


def read_pcap(path: Path) -> list[Packet]:
    """UDP and TCP packets with a payload from a classic pcap file (see the module doc)."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    for order in ("<", ">"):
        (magic,) = struct.unpack_from(order + "I", data)
        if magic in _MAGICS:
            break
    else:
        raise CaptureError(f"{path}: not a pcap file")
    unit = _MAGICS[magic]
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    rec = struct.Struct(order + "IIII")
    out: list[Packet] = []
    pos = 24
    while pos + rec.size <= len(data):
        sec, frac, caplen, length = rec.unpack_from(data, pos)
        if caplen < length:
            raise CaptureError(f"{path}: a packet of {length} bytes was cut to {caplen} "
                               f"(the capture's snaplen)")
        pos += rec.size
        frame = data[pos:pos + caplen]
        pos += caplen
        packet = _decode(frame, linktype, sec + frac * unit)
        if packet is not None:
            out.append(packet)
    return out


def _decode(frame: bytes, linktype: int, t: float) -> Packet | None:
    if linktype == _LINK_ETHERNET:
        ethertype, offset = struct.unpack_from("!H", frame, 12)[0], 14
    elif linktype == _LINK_SLL:
        ethertype, offset = struct.unpack_from("!H", frame, 14)[0], 16
    elif linktype == _LINK_SLL2:
        ethertype, offset = struct.unpack_from("!H", frame, 0)[0], 20
    elif linktype == _LINK_RAW:
        ethertype, offset = (0x86DD if frame[0] >> 4 == 6 else 0x0800), 0
    else:
        raise CaptureError(f"unsupported pcap link type {linktype}")
    ip = frame[offset:]
    if ethertype == 0x0800 and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        proto, total = ip[9], struct.unpack_from("!H", ip, 2)[0]
        src = ".".join(str(b) for b in ip[12:16])
        dst = ".".join(str(b) for b in ip[16:20])
        body = ip[ihl:total]
    elif ethertype == 0x86DD and len(ip) >= 40:
        proto, length = ip[6], struct.unpack_from("!H", ip, 4)[0]
        src = _ipv6(ip[8:24])
        dst = _ipv6(ip[24:40])
        body = ip[40:40 + length]
    else:
        return None
    if proto == 17 and len(body) >= 8:
        sport, dport = struct.unpack_from("!HH", body)
        payload = body[8:]
        kind = "udp"
    elif proto == 6 and len(body) >= 20:
        sport, dport = struct.unpack_from("!HH", body)
        payload = body[(body[12] >> 4) * 4:]
        kind = "tcp"
    else:
        return None
    if not payload:
        return None
    return Packet(t, kind, (src, sport), (dst, dport), payload)


def _ipv6(raw: bytes) -> str:
    import ipaddress
    return str(ipaddress.IPv6Address(raw))


# --------------------------------------------------------------------------- SIP on the wire

_CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)
_CSEQ = re.compile(rb"^cseq[ \t]*:[ \t]*\d+[ \t]+(\S+)", re.IGNORECASE | re.MULTILINE)


def sip_messages(packets: Iterable[Packet]) -> list[SipPacket]:
    """The SIP messages among ``packets`` (keep-alives and other bytes are skipped)."""
    out: list[SipPacket] = []
    for p in packets:
        head, _, _ = p.payload.partition(b"\r\n\r\n")
        first = head.split(b"\r\n", 1)[0].decode("utf-8", "replace")
        cid = _CALL_ID.search(head)
        cseq = _CSEQ.search(head)
        if cid is None or cseq is None:
            continue
        status = 0
        if first.startswith("SIP/2.0 "):
            parts = first.split(" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            if not status:
                continue
        out.append(SipPacket(p.time, first, cseq.group(1).decode(), status,
                             cid.group(1).decode(), p.src, p.dst))
    return out


def sip_calls(packets: Iterable[Packet]) -> dict[str, list[SipPacket]]:
    """SIP messages by Call-ID, each list in capture order."""
    calls: dict[str, list[SipPacket]] = {}
    for m in sip_messages(packets):
        calls.setdefault(m.call_id, []).append(m)
    return calls


def wire_answer(messages: Sequence[SipPacket]) -> float | None:
    """First INVITE to the first 2xx to an INVITE, as the wire saw it (seconds), or None."""
    invite = next((m.time for m in messages if m.is_request and m.method == "INVITE"), None)
    if invite is None:
        return None
    ok = next((m.time for m in messages
               if 200 <= m.status < 300 and m.method == "INVITE" and m.time >= invite), None)
    return None if ok is None else ok - invite


def first_invites(calls: dict[str, list[SipPacket]]) -> list[float]:
    """The time of each call's first INVITE, sorted (retransmissions left out)."""
    times = [next(m.time for m in ms if m.is_request and m.method == "INVITE")
             for ms in calls.values() if any(m.is_request and m.method == "INVITE" for m in ms)]
    return sorted(times)

