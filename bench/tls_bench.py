"""TLS at load: handshakes one worker sustains, and connections one worker holds.

Two measurements, loopback only, against sipload's own UAS (``sipload uas``, one
process, a certificate made for the run that the worker is told to trust):

1. ``handshakes``: ``sipload run --workers 1 --connections per-call`` (one TLS
   connection, so one handshake, per call) at each ``--rates`` step for
   ``--seconds``, with resumption on and off, beside TLS ``shared`` (one handshake in
   all) and TCP per-call, all the same basic call.  Per step: calls that succeeded,
   the worker's CPU share and CPU µs per call (from its interval snapshots), the UAS's
   CPU share, handshakes, resumed, handshake p50/p99 (stamped at the socket).  A step
   holds when every call succeeded, the rate achieved is within 5% of the rate asked and
   the worker stayed below a whole core (generator-limited is shown, with why: on a
   shared host late starts alone can set it); the highest
   held rate is the handshakes/s one worker sustained (bench/basic_call_nopause.yaml:
   a call, so a per-call connection, lasts a few milliseconds) (the UAS, one process on the
   other core, may be what stops it: its CPU share says so).
2. ``hold``: one asyncio loop (as a worker's: uvloop, sipload's TransportSet in
   per-call mode) opens ``--connections`` TCP or TLS connections to the UAS, each with
   an OPTIONS of its own Call-ID, waits for every 200, and holds them: resident memory
   per connection is (RSS holding - RSS before) / connections, in this process and in
   the UAS.  RLIMIT_NOFILE is raised to its hard limit first (inherited by the UAS);
   the figure says how many were reached.

    python3 bench/tls_bench.py                       # both, default steps
    python3 bench/tls_bench.py --only hold --connections 10000
    python3 bench/tls_bench.py --only handshakes --rates 200 400 800 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, rss_kib

from sipload.transport import TransportSet
from sipload.transport.loop import new_event_loop
from sipload.transport.selfsigned import loopback_certificate
from sipload.transport.tlsclient import load_context
from tests.peers import free_port

BASIC = REPO / "bench" / "basic_call_nopause.yaml"  # no pause: calls (and connections) short


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard one; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (0 when gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


RT: list[str] = []
"""``chrt -r 1`` with ``--rt``: the UAS and the run at SCHED_RR 1, ahead of a shared
host's other work (as the capture tests run the generator)."""


class Uas:
    """``sipload uas`` on loopback over ``transport`` (TLS: the certificate of ``pem``)."""

    def __init__(self, transport: str, pem: Path | None) -> None:
        self.port = free_port("tcp")
        argv = [*RT, sys.executable, "-m", "sipload", "uas", "--listen", f"127.0.0.1:{self.port}",
                "--transport", transport, "--duration", "3600"]
        if pem is not None:
            argv += ["--cert", str(pem)]
        self.log = Path(tempfile.mkstemp(prefix="tls-bench-uas-", suffix=".log")[1])
        with self.log.open("w") as f:  # a file, not a pipe: a full pipe would stall it
            self.proc = subprocess.Popen(argv, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while "listening" not in self.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- handshakes


def run_step(uas: Uas, ca: Path, transport: str, connections: str, resume: str, rate: float,
             seconds: float, work: Path) -> dict[str, Any]:
    out = work / f"{transport}-{connections}-{resume}-{rate:g}"
    argv = [*RT, sys.executable, "-m", "sipload", "run", str(BASIC), "--workers", "1",
            "--transport", transport, "--target", f"127.0.0.1:{uas.port}",
            "--rate", str(rate), "--duration", f"{seconds}s", "--trace", "none",
            "--out", str(out), "--quiet", "--connections", connections]
    if transport == "tls":
        argv += ["--tls-ca", str(ca), "--tls-resumption", resume]
    uas_cpu0, wall0 = cpu_seconds(uas.proc.pid), time.monotonic()
    subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=seconds + 120,
                   check=False)
    uas_cpu = (cpu_seconds(uas.proc.pid) - uas_cpu0) / max(time.monotonic() - wall0, 1e-9)
    s = json.loads((out / "summary.json").read_text())
    intervals = [json.loads(line) for line in (out / "intervals.jsonl").read_text().splitlines()]
    busy = [i for i in intervals if i.get("started")]
    cpu_share = sum(i["cpu"] for i in busy) / len(busy) if busy else 0.0
    calls = s["calls"]
    conns = s.get("connections") or {}
    tls = conns.get("tls") or {}
    hs = tls.get("handshake_ms") or {}
    achieved = s["rate"]["achieved"] or 0.0
    return {
        "transport": transport, "connections": connections,
        "resumption": resume if transport == "tls" else "-", "rate": rate,
        "achieved": round(achieved, 1), "attempted": calls["attempted"],
        "succeeded": calls["succeeded"], "limited": s["generator"]["limited"],
        "failed_by": s["failed"]["by_reason"],
        "tls_failures": (tls.get("failures") or {}).get("by_reason"),
        "why_limited": "; ".join(s["generator"].get("limited_reasons") or []),
        # held: every call succeeded at the rate asked, the worker below a whole core
        "held": calls["succeeded"] == calls["attempted"] and achieved >= 0.95 * rate
        and cpu_share < 0.95,
        "worker_cpu": round(cpu_share, 3),
        "cpu_us_per_call": round(cpu_share / achieved * 1e6) if achieved else None,
        "uas_cpu": round(uas_cpu, 3), "opened": conns.get("opened"),
        "handshakes": tls.get("handshakes"), "resumed": tls.get("resumed"),
        "hs_p50_ms": hs.get("p50"), "hs_p99_ms": hs.get("p99"),
    }


def sipp_tcp_per_call(rate: float, seconds: float) -> dict[str, Any]:
    """SIPp's built-in uac with ``-t tn`` (one TCP connection per call) against its uas
    ``-t tn``: the reference for TCP per call (the installed SIPp has no TLS)."""
    port = free_port("tcp")
    uas = subprocess.Popen([*RT, "sipp", "-sn", "uas", "-t", "tn", "-i", "127.0.0.1", "-p",
                            str(port), "-nostdin", "-max_socket", "10000"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    n = int(rate * seconds)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([*RT, "timeout", "-k", "5", str(int(seconds + 60)), "sipp",
                        f"127.0.0.1:{port}", "-sn", "uac", "-t", "tn", "-i", "127.0.0.1",
                        "-p", str(free_port("tcp")), "-m", str(n), "-r", f"{rate:g}",
                        "-nostdin", "-max_socket", "10000"],
                       capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    uas.terminate()
    uas.wait(10)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"transport": "tcp (SIPp -t tn)", "connections": "per-call", "resumption": "-",
            "rate": rate, "attempted": n, "all_succeeded": r.returncode == 0,
            "cpu_us_per_call": round(cpu / n * 1e6)}


def handshakes(rates: list[float], seconds: float, work: Path) -> list[dict[str, Any]]:
    cert, key = loopback_certificate()
    pem, ca = work / "uas.pem", work / "ca.pem"
    pem.write_text(cert + key)
    ca.write_text(cert)
    rows: list[dict[str, Any]] = []
    plans = [("tls", "per-call", "on"), ("tls", "per-call", "off"), ("tls", "shared", "on"),
             ("tcp", "per-call", "on")]
    for transport, connections, resume in plans:
        uas = Uas(transport, pem if transport == "tls" else None)
        try:
            for rate in rates:
                row = run_step(uas, ca, transport, connections, resume, rate, seconds, work)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
                if not row["held"]:
                    break  # the next (higher) rate will not hold either
        finally:
            uas.stop()
    for rate in rates:
        row = sipp_tcp_per_call(rate, seconds)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return rows


# ---------------------------------------------------------------------------- holding


async def hold(transport: str, n: int, port: int, ca: str, batch: int) -> dict[str, Any]:
    answered: set[bytes] = set()
    errors: list[str] = []
    done = asyncio.Event()

    def on_message(data: bytes, peer: Any, stamp: float) -> None:
        if data.startswith(b"SIP/2.0 200"):
            start = data.find(b"Call-ID: ") + 9
            answered.add(data[start:data.find(b"\r\n", start)])
            if len(answered) + len(errors) >= n:
                done.set()

    def on_call_error(peer: Any, call: str, reason: str) -> None:
        errors.append(reason)
        if len(answered) + len(errors) >= n:
            done.set()

    ctx = load_context(cadata=ca) if transport == "tls" else None
    tp = TransportSet(on_message, lambda p, r: errors.append(r), tls_client_context=ctx,
                      connections="per-call", on_call_error=on_call_error,
                      connect_timeout=30.0)
    rss0 = rss_kib(os.getpid())
    t0 = time.monotonic()
    for i in range(n):
        call = f"hold-{i}@bench"
        msg = (f"OPTIONS sip:uas@127.0.0.1:{port} SIP/2.0\r\n"
               f"Via: SIP/2.0/{transport.upper()} 127.0.0.1:5999;branch=z9hG4bK{i}x\r\n"
               f"Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1>;tag={i}\r\n"
               f"To: <sip:uas@127.0.0.1>\r\nCall-ID: {call}\r\nCSeq: 1 OPTIONS\r\n"
               f"Content-Length: 0\r\n\r\n").encode()
        tp.send(msg, (transport, "127.0.0.1", port))
        if (i + 1) % batch == 0:  # let the handshakes of a batch finish (the accept backlog)
            while len(answered) + len(errors) < i + 1 - batch // 2:
                await asyncio.sleep(0.005)
    try:
        await asyncio.wait_for(done.wait(), 120)
    except TimeoutError:
        pass
    took = time.monotonic() - t0
    await asyncio.sleep(1.0)
    rss1 = rss_kib(os.getpid())
    figures = tp.take_connection_figures()
    _, open_now = tp.connection_counts(transport)
    result = {"answered": len(answered), "errors": len(errors),
              "first_error": errors[0] if errors else "",
              "open": open_now, "seconds_to_open": round(took, 2),
              "client_rss_kib": rss1 - rss0,
              "handshakes": figures.handshakes if figures else 0}
    result["_close"] = tp.close
    return result


def holding(transports: list[str], n: int, work: Path) -> list[dict[str, Any]]:
    limit = raise_fd_limit()
    cert, key = loopback_certificate()
    pem = work / "uas.pem"
    pem.write_text(cert + key)
    rows = []
    for transport in transports:
        uas = Uas(transport, pem if transport == "tls" else None)
        loop = new_event_loop()
        try:
            uas_rss0 = rss_kib(uas.proc.pid)
            r = loop.run_until_complete(hold(transport, n, uas.port, cert, 500))
            uas_rss1 = rss_kib(uas.proc.pid)
            close = r.pop("_close")
            row = {"transport": transport, "asked": n, "fd_limit": limit, **r,
                   "client_kib_per_conn": round(r["client_rss_kib"] / max(r["open"], 1), 2),
                   "uas_kib_per_conn": round((uas_rss1 - uas_rss0) / max(r["open"], 1), 2)}
            loop.run_until_complete(close())
        finally:
            loop.close()
            uas.stop()
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return rows


# ---------------------------------------------------------------------------- output


def show(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    keys = [k for k in rows[0] if not k.startswith("_")]
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(str(r.get(k)) for k in keys))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("handshakes", "hold"))
    ap.add_argument("--rates", type=float, nargs="+", default=[100, 200, 400, 800])
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per rate step")
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--transports", nargs="+", default=["tcp", "tls"])
    ap.add_argument("--rt", action="store_true",
                    help="run the UAS and sipload run under chrt -r 1 (a shared host)")
    ap.add_argument("--json", type=Path, help="write the rows here too")
    args = ap.parse_args()
    if args.rt:
        RT[:] = ["chrt", "-r", "1"]
    from sipload import _native

    build = "compiled" if _native.compiled() else "pure"
    out: dict[str, Any] = {"build": build}
    with tempfile.TemporaryDirectory(prefix="tls-bench-") as tmp:
        # holding first: the per-call runs leave tens of thousands of loopback ports in
        # TIME_WAIT for a minute, and 10,000 more connections would not find a port
        if args.only in (None, "hold"):
            out["hold"] = holding(args.transports, args.connections, Path(tmp))
            print(f"\n## hold: {args.connections} connections from one loop")
            show(out["hold"])
        if args.only in (None, "handshakes"):
            out["handshakes"] = handshakes(sorted(args.rates), args.seconds, Path(tmp))
            print("\n## handshakes: sipload run -w 1 against sipload uas")
            show(out["handshakes"])
    print(f"\nbuild: {build}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
