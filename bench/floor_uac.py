"""The floor under a sipload call: a UAC with no SIP stack, on the same loop and sockets.

``bench/ua_bench.py`` says how far sipload's UAC is from SIPp's; this says how much of
that distance the platform itself takes (one CPython process, uvloop, a UDP socket)
and how much is sipload's.  It places the same basic calls against the same ``sipp -sn
uas`` (INVITE with an audio offer, 180/200, ACK, BYE at once on the 200, 200), the way
SIPp does: each message built from a byte template (Call-ID, branch, tags and CSeq
filled in), each datagram read looked at only as far as a UAC must (status code,
Call-ID, the CSeq method, the To tag of the 200).  No transactions, no retransmission
timers, no dialogs, no events, no records: what is left is the loop's callbacks, the
system calls, and the least Python a call needs.

Levels (``--level``), each adding one piece of sipload to the floor:

``bare``
    the above: the floor.
``parse``
    every datagram also goes through :func:`sipload.sip.parser.parse_message` and
    the typed views a UA reads of a response (top Via, CSeq, Call-ID, From and To
    tags): the parser's share.
``stamps``
    ``bare``, reading with sipload's batched receive (``recvmmsg`` with kernel
    stamps, :func:`sipload.transport.batch.recv_batch`) instead of ``recv`` until
    ``EAGAIN``, and writing each message with a stamp taken at the write, as
    sipload's transports do.

Calls start on an open model at ``start + i / rate`` from one ``loop.call_at`` timer
(as ``ua_uac.py --mode ua``).  At the end one JSON object goes to stdout: calls,
completed, failed, the calling phase's wall and in-process CPU seconds (``cpu_s``)
and CPU per call.

    python3 bench/floor_uac.py --target 127.0.0.1:5080 --calls 8000 --rate 800
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: this checkout's sipload, not an installed one
    sys.path.insert(0, str(ROOT))

from sipload.sip.parser import parse_message  # noqa: E402
from sipload.transport.batch import enable_stamps, recv_batch  # noqa: E402
from sipload.transport.loop import loop_name, new_event_loop, tune_gc  # noqa: E402

OFFER = (b"v=0\r\no=sipload 1 1 IN IP4 127.0.0.1\r\ns=sipload\r\nc=IN IP4 127.0.0.1\r\n"
         b"t=0 0\r\nm=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
         b"a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n")
"""The audio offer of scenarios/basic_call.yaml's ``sdp: offer`` (as ua_uac.py's)."""

INVITE = (
    "INVITE sip:service@{th}:{tp} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP {lh}:{lp};branch=z9hG4bK{cid}i;rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:sipload@{lh}:{lp}>;tag={cid}f\r\n"
    "To: <sip:service@{th}:{tp}>\r\n"
    "Call-ID: {cid}\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:sipload@{lh}:{lp}>\r\n"
    "User-Agent: sipload-floor\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {n}\r\n\r\n"
)
IN_DIALOG = (
    "{method} sip:service@{th}:{tp} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP {lh}:{lp};branch=z9hG4bK{cid}{b};rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:sipload@{lh}:{lp}>;tag={cid}f\r\n"
    "To: <sip:service@{th}:{tp}>;tag={tag}\r\n"
    "Call-ID: {cid}\r\n"
    "CSeq: {seq} {method}\r\n"
    "User-Agent: sipload-floor\r\n"
    "Content-Length: 0\r\n\r\n"
)


def header(data: bytes, name: bytes) -> bytes:
    """The value of header ``name`` (``b"\\r\\nCall-ID:"`` form), or b"" (no parser)."""
    i = data.find(name)
    if i < 0:
        return b""
    j = data.find(b"\r\n", i + len(name))
    return data[i + len(name): j].strip()


class FloorUac:
    """N calls at rate R from byte templates (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, target: tuple[str, int], calls: int,
                 rate: float, level: str) -> None:
        self.loop = loop
        self.target = target
        self.calls = calls
        self.rate = rate
        self.level = level
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("127.0.0.1", 0))
        self.stamps = level == "stamps" and enable_stamps(self.sock)
        lh, lp = self.sock.getsockname()
        self.fill = {"lh": lh, "lp": lp, "th": target[0], "tp": target[1]}
        self.prefix = f"f{os.getpid():x}x"
        self.live: dict[bytes, int] = {}  #: Call-ID -> call number, until its BYE's 200
        self.started = 0
        self.completed = 0
        self.unexpected = 0
        self.sent_at = 0.0  #: the last write's stamp (``stamps``: taken per message)
        self.t0 = 0.0
        self.done: asyncio.Future[None] | None = None

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)
        if self.stamps:
            self.sent_at = time.monotonic()

    def start(self) -> None:
        """The calls due now: each INVITE from the template; the timer for the next.

        The call the timer was armed for starts whatever the loop's clock says: uvloop's
        ``time()`` is libuv's cached millisecond, which can read a timer's instant as
        not reached yet, and a re-armed timer would then spin until the tick passes."""
        now = max(self.loop.time(), self.t0 + self.started / self.rate)
        while self.started < self.calls and self.t0 + self.started / self.rate <= now:
            cid = f"{self.prefix}{self.started}"
            head = INVITE.format(cid=cid, n=len(OFFER), **self.fill)
            self.live[cid.encode()] = self.started
            self.started += 1
            self.send(head.encode() + OFFER)
        if self.started < self.calls:
            self.loop.call_at(self.t0 + self.started / self.rate, self.start)

    def readable(self) -> None:
        sock = self.sock
        if self.level == "stamps":
            while True:
                got, _ = recv_batch(sock, 64, 4096, True)
                for data, _addr, _stamp in got:
                    self.on_datagram(data)
                if len(got) < 64:
                    break
        else:
            while True:
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    break
                self.on_datagram(data)
        done = self.done
        if done is not None and not done.done() and \
                self.completed + self.unexpected >= self.calls:
            done.set_result(None)

    def on_datagram(self, data: bytes) -> None:
        if not data.startswith(b"SIP/2.0 "):
            self.unexpected += 1
            return
        if self.level == "parse":
            msg = parse_message(data)
            _ = msg.via, msg.cseq, msg.call_id, msg.from_tag, msg.to_tag
        status = int(data[8:11])
        if status < 200:
            return
        cid = header(data, b"\r\nCall-ID:")
        method = header(data, b"\r\nCSeq:").partition(b" ")[2]
        if cid not in self.live:
            return  # a retransmitted 200 of a call already ended
        if status >= 300:
            self.unexpected += 1
            del self.live[cid]
            return
        if method == b"INVITE":
            to = header(data, b"\r\nTo:")
            tag = to[to.find(b";tag=") + 5:].split(b";")[0].decode()
            c = cid.decode()
            self.send(IN_DIALOG.format(method="ACK", b="i", seq=1, cid=c, tag=tag,
                                       **self.fill).encode())
            self.send(IN_DIALOG.format(method="BYE", b="b", seq=2, cid=c, tag=tag,
                                       **self.fill).encode())
        elif method == b"BYE":
            del self.live[cid]
            self.completed += 1

    async def run(self, limit: float) -> bool:
        self.done = self.loop.create_future()
        self.loop.add_reader(self.sock.fileno(), self.readable)
        self.t0 = self.loop.time() + 0.01
        self.loop.call_at(self.t0, self.start)
        try:
            await asyncio.wait_for(self.done, limit)
        except TimeoutError:
            return True
        finally:
            self.loop.remove_reader(self.sock.fileno())
        return False


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True, help="HOST:PORT of the UAS (loopback)")
    p.add_argument("--calls", type=int, default=8000)
    p.add_argument("--rate", type=float, default=800.0)
    p.add_argument("--level", choices=("bare", "parse", "stamps"), default="bare")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                   help="the event loop (default uvloop, as sipload's workers)")
    args = p.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    if not host.startswith("127."):
        p.error("--target must be on loopback (127.0.0.0/8)")
    loop = new_event_loop() if args.loop == "uvloop" else asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    uac = FloorUac(loop, (host, int(port)), args.calls, args.rate, args.level)
    tune_gc()  # as a worker process does
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    timed_out = loop.run_until_complete(uac.run(args.calls / args.rate + 30.0))
    cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
    print(json.dumps({
        "mode": f"floor-{args.level}", "loop": loop_name(loop), "calls": args.calls,
        "rate": args.rate, "started": uac.started, "completed": uac.completed,
        "failed": args.calls - uac.completed, "unexpected": uac.unexpected,
        "timed_out": timed_out, "wall_s": wall, "cpu_s": cpu,
        "cpu_us_per_call": cpu / max(uac.completed, 1) * 1e6,
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
