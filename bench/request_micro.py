"""In-process cost of building one request's Via and client transaction, and of parsing a
CSeq: the per-message work 4f91ab5 and 676e84a trimmed (see bench/README.md).

Run from a checkout's root (``PYTHONPATH=.`` picks that checkout and its own build):
``PYTHONPATH=. python3 bench/request_micro.py``; for another checkout, run it there.
Prints the best of seven rounds, in µs per operation (CPU time of this process).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: this checkout's sipload, not an installed one
    sys.path.insert(0, str(ROOT))

from sipload._native import describe  # noqa: E402
from sipload.sip.headers import parse_cseq  # noqa: E402
from sipload.sip.message import Request  # noqa: E402
from sipload.sip.transaction import ClientTransaction, TimerConfig  # noqa: E402
from sipload.ua.config import UAConfig  # noqa: E402
from sipload.ua.ids import IdGenerator  # noqa: E402
from sipload.ua.routing import add_via  # noqa: E402
from sipload.ua.state import UAState  # noqa: E402


def best_us(fn: object, n: int, rounds: int = 7) -> float:
    """The best of ``rounds`` timings of ``n`` calls of ``fn``, in µs per call."""
    assert callable(fn)
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - t) / n * 1e6)
    return best


def main() -> int:
    state = UAState(UAConfig(), IdGenerator("w0abx"))
    timers = TimerConfig()

    def request() -> ClientTransaction:
        req = Request("BYE", "sip:bob@127.0.0.1:5060")
        req.add_header("CSeq", "2 BYE")
        req.add_header("Call-ID", "x@y")
        add_via(state, req)
        return ClientTransaction(req, reliable=False, timers=timers, now=0.0)

    req_us = best_us(request, 50_000)
    cseq_us = best_us(lambda: parse_cseq("12 INVITE"), 200_000)
    print(f"{describe()}: request + Via + ClientTransaction {req_us:.2f} µs; "
          f"parse_cseq {cseq_us:.3f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
