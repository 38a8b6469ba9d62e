"""SIP parse / serialize throughput on one core: sipload against sippy.

Run ``python3 bench/parse_bench.py`` (or ``python3 -m bench.parse_bench``) from the
repository root; ``--json`` prints JSON, ``--profile [OP]`` runs the sipload INVITE
loop of OP (default parse) under cProfile and prints the top 25 by tottime.

Messages (INVITE with a libeXosip2 SDP offer, 180, 200 with SDP, BYE) come from one
spec each; sipload must round-trip them and both stacks must read equal fields.

Columns (one call = one message; figures are calls per second):

parse      sipload: ``parse_message(data)``, then ``via.branch``, ``via.host``,
           ``via.port``, ``cseq.seq``, ``cseq.method``, ``call_id``, ``from_tag``,
           ``to_tag`` (transaction and dialog matching).  sippy: ``data.decode()``,
           ``SipResponse``/``SipRequest`` chosen on the ``"SIP/2.0 "`` prefix (as
           sippy's SipTransactionManager does), then ``getHFBody()`` of via
           (``getBranch()``, ``hostname``, ``port``), cseq (``cseq``, ``method``),
           call-id (``str()``), from and to (``getTag()``).  sippy header bodies
           are lazy: ``getHFBody`` runs the typed parse of exactly those headers,
           as sipload's properties do (both apply Content-Length at parse time;
           sippy parses the Request-URI too, sipload not until ``msg.uri``).
full       parse, then sipload ``check_syntax(msg)``; sippy ``getBody()`` on every
           header field (forces every lazy parse).  Neither parses the SDP.
serialize  a message parsed beforehand with its matching fields read (the state
           of a received message in a stack): sipload ``msg.to_bytes()``; sippy
           ``msg.localStr().encode()`` (its send path; re-renders parsed headers).
build      construct a message from the spec's strings and serialize it: sipload
           ``Request``/``Response``, ``add_header`` per field, ``to_bytes()``; sippy
           ``SipResponse(scode=, ...)`` or a bare ``SipRequest`` with a parsed
           ``SipURL``, ``appendHeader(SipHeader(name=, bodys=))`` per field,
           ``setBody(MsgBody)`` (writes Content-Type/Length), ``localStr().encode()``.

Method: pinned to CPU 0 if ``os.sched_setaffinity`` allows; each figure is calibrated
(which warms up), then timed ``--repeat`` (5) runs of ``--seconds`` (0.2) with
``perf_counter``, sipload and sippy runs alternating, ``gc.collect()`` before each
run, GC on.  best = fastest run; ratio = sipload best / sippy best; targets use best.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import platform
import pstats
import statistics
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from time import perf_counter
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a plain script

from sipload.sip.message import Message, Request, Response
from sipload.sip.parser import check_syntax, parse_message

try:
    from sippy.MsgBody import MsgBody
    from sippy.SipHeader import SipHeader
    from sippy.SipRequest import SipRequest
    from sippy.SipResponse import SipResponse
    from sippy.SipURL import SipURL
    SIPPY: str | None = metadata.version("sippy")
except (ImportError, metadata.PackageNotFoundError):
    SIPPY = None

Op = Callable[[], object]
Spec = tuple[str, list[tuple[str, str]], str]
OPS = ("parse", "full", "serialize", "build")
UA = "eXosip/5.3.0"
VIA = "SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bK1473318713"
VIA_R = "SIP/2.0/UDP 192.0.2.10:5060;rport=5060;branch=z9hG4bK1473318713;received=192.0.2.10"
FROM = '"Alice" <sip:alice@192.0.2.10>;tag=1618826590'
TO = "<sip:bob@192.0.2.20:5060>"
TO_T = TO + ";tag=893428791"
CALL_ID = "1206519717@192.0.2.10"
ALLOW = "INVITE, ACK, UPDATE, INFO, CANCEL, BYE, OPTIONS, REFER, SUBSCRIBE, NOTIFY, MESSAGE, PRACK"
RR = ("<sip:198.51.100.2;lr>", "<sip:198.51.100.1;lr>")


def sdp(user: str, ip: str, port: int) -> str:
    return (f"v=0\r\no={user} 20 20 IN IP4 {ip}\r\ns=talk\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-11\r\n")


def spec(start: str, hdrs: list[tuple[str, str]], body: str = "") -> Spec:
    ct = [("Content-Type", "application/sdp")] if body else []
    return start, [*hdrs, *ct, ("Content-Length", str(len(body.encode())))], body


MESSAGES: dict[str, Spec] = {
    "INVITE": spec("INVITE sip:bob@192.0.2.20:5060 SIP/2.0", [
        ("Via", VIA), ("From", FROM), ("To", TO), ("Call-ID", CALL_ID), ("CSeq", "20 INVITE"),
        ("Contact", "<sip:alice@192.0.2.10:5060>"), ("Max-Forwards", "70"),
        ("User-Agent", UA), ("Subject", "Phone call"), ("Allow", ALLOW),
    ], sdp("alice", "192.0.2.10", 7078)),
    "180": spec("SIP/2.0 180 Ringing", [
        ("Via", VIA_R), ("From", FROM), ("To", TO_T), ("Call-ID", CALL_ID), ("CSeq", "20 INVITE"),
        ("Contact", "<sip:bob@192.0.2.20:5060>"), ("User-Agent", UA),
    ]),
    "200": spec("SIP/2.0 200 OK", [
        ("Via", VIA_R), ("Record-Route", RR[0]), ("Record-Route", RR[1]), ("From", FROM),
        ("To", TO_T), ("Call-ID", CALL_ID), ("CSeq", "20 INVITE"),
        ("Contact", "<sip:bob@192.0.2.20:5060>"), ("User-Agent", UA), ("Allow", ALLOW),
    ], sdp("bob", "192.0.2.20", 9000)),
    "BYE": spec("BYE sip:bob@192.0.2.20:5060 SIP/2.0", [
        ("Via", VIA.replace("1473318713", "0930175344")), ("Route", RR[1]), ("Route", RR[0]),
        ("From", FROM), ("To", TO_T), ("Call-ID", CALL_ID), ("CSeq", "21 BYE"),
        ("Max-Forwards", "70"), ("User-Agent", UA),
    ]),
}


def wire(s: Spec) -> bytes:
    start, hdrs, body = s
    return ("\r\n".join([start, *(f"{n}: {v}" for n, v in hdrs)]) + "\r\n\r\n" + body).encode()


def sipload_fields(m: Message) -> tuple[object, ...]:
    v, c = m.via, m.cseq
    return v.branch, v.host, v.port, c.seq, c.method, m.call_id, m.from_tag, m.to_tag


def sipload_ops(s: Spec) -> dict[str, Op]:
    data = wire(s)
    start, hdrs, body = s

    def full() -> object:
        m = parse_message(data)
        f = sipload_fields(m)
        check_syntax(m)
        return f

    a, b, c = start.split(" ", 2)
    raw_body = body.encode()

    def build() -> bytes:
        m: Message = Response(int(b), c) if a == "SIP/2.0" else Request(a, b)
        for name, value in hdrs:
            m.add_header(name, value)
        m.body = raw_body
        return m.to_bytes()

    parsed = parse_message(data)
    sipload_fields(parsed)
    assert parsed.to_bytes() == data and build() == data, "sipload does not round-trip"
    return {"parse": lambda: sipload_fields(parse_message(data)), "full": full,
            "serialize": parsed.to_bytes, "build": build}


def sippy_parse(data: bytes) -> Any:
    text = data.decode()
    return SipResponse(text) if text.startswith("SIP/2.0 ") else SipRequest(text)


def sippy_fields(m: Any) -> tuple[object, ...]:
    v, c = m.getHFBody("via"), m.getHFBody("cseq")
    return (v.getBranch(), v.hostname, v.port, c.cseq, c.method, str(m.getHFBody("call-id")),
            m.getHFBody("from").getTag(), m.getHFBody("to").getTag())


def sippy_ops(s: Spec) -> dict[str, Op]:
    data = wire(s)
    start, hdrs, body = s

    def full() -> object:
        m = sippy_parse(data)
        f = sippy_fields(m)
        for h in m.headers:
            h.getBody()
        return f

    a, b, c = start.split(" ", 2)

    def build() -> bytes:
        if a == "SIP/2.0":
            m = SipResponse(scode=int(b), reason=c, sipver=a)
        else:  # SipRequest(...) without buf insists on adding its own headers
            m = SipRequest.__new__(SipRequest)
            m.headers, m.method, m.ruri, m.sipver = [], a, SipURL(b), c
        for name, value in hdrs:
            if name not in ("Content-Type", "Content-Length"):
                m.appendHeader(SipHeader(name=name, bodys=value))
        if body:
            m.setBody(MsgBody(body))
        return m.localStr().encode()

    parsed = sippy_parse(data)
    ref = sipload_fields(parse_message(data))
    assert sippy_fields(parsed) == ref, f"sippy reads {sippy_fields(parsed)} != {ref}"
    assert sippy_fields(sippy_parse(build())) == ref, "sippy build does not re-parse"
    return {"parse": lambda: sippy_fields(sippy_parse(data)), "full": full,
            "serialize": lambda: parsed.localStr().encode(), "build": build}


def timed(fn: Op, n: int) -> float:
    t0 = perf_counter()
    for _ in range(n):
        fn()
    return perf_counter() - t0


def calibrate(fn: Op, seconds: float) -> int:
    """Calls that take about ``seconds`` (running them is the warm-up)."""
    n = 64
    while (t := timed(fn, n)) < min(0.05, seconds / 2):
        n *= 2
    return max(1, int(n * seconds / t))


def measure(impls: dict[str, dict[str, dict[str, Op]]], seconds: float,
            repeat: int) -> dict[tuple[str, str, str], list[float]]:
    """Calls per second per (impl, message, op); the impls' runs alternate, so drift
    in the machine's load hits both sides of a ratio alike."""
    res: dict[tuple[str, str, str], list[float]] = {}
    for kind in MESSAGES:
        for op in OPS:
            runs = [(impl, ops[kind][op]) for impl, ops in impls.items()]
            sized = [(impl, fn, calibrate(fn, seconds)) for impl, fn in runs]
            for _ in range(repeat):
                for impl, fn, n in sized:
                    gc.collect()
                    res.setdefault((impl, kind, op), []).append(n / timed(fn, n))
    return res


def targets(res: dict[tuple[str, str, str], list[float]]) -> list[dict[str, Any]]:
    def best(impl: str, op: str) -> float | None:
        r = res.get((impl, "INVITE", op))
        return max(r) if r else None

    p, sp = best("sipload", "parse"), best("sippy", "parse")
    rows = [("sipload INVITE parse >= 100,000/s", p, 100_000),
            ("sipload INVITE parse >= 2x sippy", p / sp if p and sp else None, 2.0),
            ("sipload INVITE serialize >= 150,000/s", best("sipload", "serialize"), 150_000),
            ("sipload INVITE build >= 150,000/s", best("sipload", "build"), 150_000)]
    return [{"target": n, "value": v, "threshold": t, "pass": None if v is None else v >= t}
            for n, v, t in rows]


def report(res: dict[tuple[str, str, str], list[float]], head: str) -> None:
    def cell(impl: str, kind: str, op: str) -> tuple[str, str, float | None]:
        r = res.get((impl, kind, op))
        if not r:
            return "n/a", "n/a", None
        return f"{max(r):,.0f}", f"{statistics.median(r):,.0f}", max(r)

    print(head)
    fmt = "{:<8} {:<10} {:>13} {:>10} {:>11} {:>10} {:>7}"
    print(fmt.format("message", "operation", "sipload best", "median", "sippy best", "median",
                     "ratio"))
    for kind in MESSAGES:
        for op in OPS:
            a, am, ab = cell("sipload", kind, op)
            b, bm, bb = cell("sippy", kind, op)
            ratio = f"{ab / bb:.2f}x" if ab and bb else "n/a"
            print(fmt.format(kind, op, a, am, b, bm, ratio))
    print("\ntargets (judged on best):")
    for t in targets(res):
        mark = {True: "PASS", False: "FAIL", None: "SKIP"}[t["pass"]]
        v = t["value"]
        shown = "n/a" if v is None else (f"{v:.2f}x" if t["threshold"] == 2.0 else f"{v:,.0f}/s")
        print(f"  [{mark}] {t['target']}: {shown}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--seconds", type=float, default=0.2, help="length of one run (0.2)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per figure (5)")
    ap.add_argument("--no-sippy", action="store_true", help="skip the sippy columns")
    ap.add_argument("--profile", nargs="?", const="parse", choices=OPS,
                    help="profile the sipload INVITE loop of this operation (parse) and exit")
    args = ap.parse_args(argv)
    try:
        os.sched_setaffinity(0, {0})
        pinned = "pinned to CPU 0"
    except (AttributeError, OSError) as e:
        pinned = f"not pinned ({type(e).__name__})"
    if args.profile:  # warm up, then 20,000 calls under cProfile
        fn = sipload_ops(MESSAGES["INVITE"])[args.profile]
        timed(fn, 2000)
        prof = cProfile.Profile()
        prof.runcall(timed, fn, 20000)
        print(f"sipload INVITE {args.profile}: 20,000 calls under cProfile, top 25 by tottime")
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)
        return 0
    impls: dict[str, Callable[[Spec], dict[str, Op]]] = {"sipload": sipload_ops}
    sippy = None if args.no_sippy else SIPPY
    if sippy is None:
        why = "--no-sippy" if args.no_sippy else "sippy is not importable (pip install sippy)"
        print(f"note: {why}; sippy columns skipped", file=sys.stderr)
    else:
        impls["sippy"] = sippy_ops
    ops = {impl: {kind: make(s) for kind, s in MESSAGES.items()} for impl, make in impls.items()}
    res = measure(ops, args.seconds, args.repeat)
    py = f"{platform.python_implementation()} {platform.python_version()}"
    if args.json:
        rows = [{"impl": i, "message": k, "op": o, "best": max(r),
                 "median": statistics.median(r), "runs": r} for (i, k, o), r in res.items()]
        json.dump({"python": py, "cpu": pinned, "sippy": sippy, "seconds": args.seconds,
                   "repeat": args.repeat, "unit": "messages/s", "results": rows,
                   "targets": targets(res)}, sys.stdout, indent=2)
        print()
    else:
        report(res, f"{py}, {pinned}, sippy {sippy or 'skipped'}, {args.repeat} runs x "
                    f"~{args.seconds:g} s per figure; messages per second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
