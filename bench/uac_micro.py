"""In-process CPU of a UAC's basic call: a ``UserAgent`` (``auto_ack``, BYE on the 200)
against an in-memory UAS ``UserAgent`` (180, 200 with SDP), no sockets.

Only the UAC's own calls are timed (thread CPU time around each of its entry points),
so the figure is the UA's share of a call as ``bench/ua_uac.py --mode ua`` makes it,
without transport, loop or UAS.  Run from a checkout's root (``PYTHONPATH=.`` picks that
checkout and its own build): ``PYTHONPATH=. python3 bench/uac_micro.py [CALLS]``; prints
the best and the median of seven runs, in µs per call.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: this checkout's sipload, not an installed one
    sys.path.insert(0, str(ROOT))

from sipload._native import describe  # noqa: E402
from sipload.sip.transaction import TimerConfig  # noqa: E402
from sipload.ua.agent import UAConfig, UserAgent  # noqa: E402
from sipload.ua.events import EventType  # noqa: E402
from sipload.ua.ids import IdGenerator  # noqa: E402

SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def run(calls: int) -> float:
    """µs of the UAC's thread CPU per call over ``calls`` calls."""
    timers = TimerConfig()
    a = UserAgent(UAConfig(host="127.0.0.1", port=5071, user="alice", timers=timers,
                           auto_ack=True), IdGenerator("a"))
    b = UserAgent(UAConfig(host="127.0.0.1", port=5072, user="bob", timers=timers),
                  IdGenerator("b"))
    pa, pb = ("udp", "127.0.0.1", 5071), ("udp", "127.0.0.1", 5072)
    clock = time.thread_time
    spent = 0.0
    now = 0.0
    for _ in range(calls):
        now += 0.001
        t0 = clock()
        inv = a.call_build_initial_invite("<sip:bob@127.0.0.1:5072>",
                                          "<sip:alice@127.0.0.1:5071>")
        inv.set_body(SDP, "application/sdp")
        a.call_send_initial_invite(inv, now)
        out = a.outgoing()
        spent += clock() - t0
        for _ in range(6):
            for data, _peer in out:
                b.receive(data, pa, now)
            while (ev := b.next_event()) is not None:
                if ev.type == EventType.CALL_INVITE:
                    b.call_send_answer(ev.tid, 180, None, now)
                    ok = b.call_build_answer(ev.tid, 200)
                    ok.set_body(SDP, "application/sdp")
                    b.call_send_answer(ev.tid, 200, ok, now)
            back = b.outgoing()
            if not back:
                break
            t0 = clock()
            for data, _peer in back:
                a.receive(data, pb, now)
            while (ev := a.next_event()) is not None:
                if ev.type == EventType.CALL_ANSWERED:
                    a.call_terminate(ev.cid, 0, now)
            out = a.outgoing()
            spent += clock() - t0
        now += 0.001
    return spent / calls * 1e6


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    print(describe())
    run(500)  # warm-up
    runs = sorted(run(calls) for _ in range(7))
    print(f"UAC µs/call: best {runs[0]:.1f}, median {runs[3]:.1f}")


if __name__ == "__main__":
    main()
