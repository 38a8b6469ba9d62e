"""Media at load: one sipload worker holding N concurrent G.711 calls against SIPp's
``-rtp_echo``, beside SIPp's own ``rtp_stream`` at the same load, in one command.

Usage (from the repository root)::

    python3 bench/media_bench.py --calls 1000            # both, then the table
    python3 bench/media_bench.py --calls 250 500 1000    # a trend
    python3 bench/media_bench.py --calls 1000 --no-sipp --json out.json
    python3 bench/media_bench.py --calls 500 --srtp      # RTP vs SRTP, sipload's echo

What runs, for each N:

1. **sipload**: a SIPp ``uas -rtp_echo`` is the target (it returns every RTP
   packet to its source); ``sipload run --workers 1`` places N calls over
   ``--ramp`` seconds, each playing a 1004 Hz tone in PCMU with 20 ms packets and
   held until every call is up for ``--steady`` seconds, then hung up: N×50
   packets/s each way through the one worker.  The steady window starts when the
   worker's interval snapshots (``intervals.jsonl``) show N streams running.
2. **SIPp**: the same SIPp ``-rtp_echo`` target (a fresh one) called by SIPp's
   uac with ``rtp_stream`` playing the same tone (a u-law WAV, looped), the same
   N, ramp and hold.

With ``--srtp`` step 1 runs twice against ``sipload uas --srtp sdes`` (SIPp's
``-rtp_echo`` answers RTP/AVP only): once with plain RTP (the UAS echoes it without
per-call state), once with ``srtp: sdes`` (AES_CM_128_HMAC_SHA1_80: the caller
protects 50 packets/s and unprotects the 50 that come back, the echo unprotects and
protects again); the rows differ only in SRTP.

Figures (each process's CPU from ``/proc/PID/stat`` over the steady window, all
its threads; memory from ``VmRSS``):

* ``cpu_us_per_stream_s``: CPU µs per stream-second (one call's media for one
  second: sipload sends 50 packets and receives and accounts 50; SIPp's
  ``rtp_stream`` sends 50 and does not read what comes back);
* ``mem_kib_per_call``: RSS growth from the first snapshot to the steady window
  divided by the streams added in between;
* sipload's quality from the run's records (``summary.json`` ``media``): calls
  succeeded, loss, jitter p95, MOS p5; its sending from the interval snapshots'
  ``media.send`` maps: packets sent, skipped (their tick came more than 100 ms
  late), unsent (send buffer full), and each packet's lateness against its
  tick's due time (the send-interval error, p50/p99/max); whether the run says
  it was generator-limited, and the kernel's UDP receive-buffer drops over the
  run (``/proc/net/snmp`` ``RcvbufErrors``, every socket on the host), and of
  those, the drops of the worker's sockets and of the echo's media socket
  (``/proc/net/udp``).

The machine is shared: the figures of one command are comparable with each other
(the ratio), less so across commands.  Always exits 0.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, rss_kib
from hdrh.histogram import HdrHistogram

from sipload.media.source import TONE_HZ
from tests.bgproc import Background, sipload
from tests.mediahelpers import media_call, ulaw_wav
from tests.peers import free_port, sipp_uac, sipp_uas

SIPP_XML = (REPO / "tests" / "sipp" / "media_uac_rtp_stream.xml").read_text()
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` (all threads) so far; 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


def descendants(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        for c in children(p):
            seen.append(c)
            todo.append(c)
    return seen


def udp_drops(pid: int | None = None, port: int | None = None) -> int:
    """Datagrams dropped by the UDP sockets of process ``pid`` or bound to ``port``
    (``/proc/net/udp`` ``drops``; a full receive buffer)."""
    inodes: set[str] = set()
    if pid is not None:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            pass
    total = 0
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(name).read_text().splitlines()[1:]:
            f = line.split()
            if (port is not None and int(f[1].rsplit(":", 1)[1], 16) == port) or \
                    f[9] in inodes:
                total += int(f[12])
    return total


def rcvbuf_errors() -> int:
    lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines()
             if ln.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def _percentiles(h: HdrHistogram) -> dict[str, float]:
    if not h.get_total_count():
        return {}
    return {f"p{p:g}": h.get_value_at_percentile(p) / 1000.0 for p in (50, 99, 99.9)} | {
        "max": h.get_max_value() / 1000.0}


class SiploadEcho(Background):
    """``sipload uas --srtp sdes`` (the default UAS: echoes RTP, and SRTP per call)."""

    def __init__(self, port: int) -> None:
        super().__init__(sipload("uas", "--listen", f"127.0.0.1:{port}", "--srtp", "sdes"),
                         ready="listening on", ready_timeout=30)

    def program_pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


def run_sipload(n: int, ramp: float, steady: float, work: Path,
                srtp: bool | None = None) -> dict[str, Any]:
    """sipload against SIPp -rtp_echo (``srtp`` None), or against ``sipload uas --srtp
    sdes`` with RTP (False) or SRTP (True); the run directory stays in ``work``."""
    hold = ramp + steady + 3.0
    scenario = work / "media_load.yaml"
    media = "{codec: PCMU, ptime: 20ms, play: tone" + (", srtp: sdes" if srtp else "") + "}"
    scenario.write_text(media_call("media-load", media, pause=f"{int(hold * 1000)}ms",
                                   timeout="30s"))
    tag = {None: "", False: "-rtp", True: "-srtp"}[srtp]
    out = work / f"sipload-{n}{tag}"
    sip_port, media_port = free_port("udp"), free_port("udp")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    tool = {None: "sipload", False: "sipload RTP, sipload echo",
            True: "sipload SRTP, sipload echo"}[srtp]
    res: dict[str, Any] = {"tool": tool, "calls": n}
    drops0 = rcvbuf_errors()
    echo_proc: Any = SiploadEcho(sip_port) if srtp is not None else sipp_uas(
        sip_port, extra_args=["-rtp_echo", "-mp", str(media_port), "-max_socket", "4096"],
        limit=hold + ramp + 120)
    with echo_proc as echo:
        cmd = [sys.executable, "-m", "sipload", "run", str(scenario), "--target",
               f"127.0.0.1:{sip_port}", "--calls", str(n), "--rate", f"{n / ramp:g}",
               "--workers", "1", "--out", str(out), "--quiet", "--allow-failures", "1"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        intervals = out / "intervals.jsonl"
        first: tuple[int, int, int] | None = None  # (streams, rss, worker)
        window: dict[str, float] = {}
        deadline = time.monotonic() + hold + ramp + 60
        seen = 0
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                lines = intervals.read_text().splitlines()
            except OSError:
                continue
            if len(lines) == seen:
                continue
            seen = len(lines)
            snap = json.loads(lines[-1])
            # RTP streams running (a build without media snapshots: calls in progress)
            streams = int((snap.get("media") or {}).get("streams", snap.get("active", 0)))
            kids = [p for p in descendants(proc.pid) if cpu_seconds(p) > 0]
            if not kids:
                continue
            worker = max(kids, key=cpu_seconds)
            if first is None and streams:
                first = (streams, rss_kib(worker), worker)
            if "t0" not in window and streams >= n:
                window.update(t0=time.monotonic(), cpu0=cpu_seconds(worker),
                              echo0=cpu_seconds(echo.program_pid() or 0), worker=worker,
                              rss=rss_kib(worker), streams=streams)
            if "t0" in window and "t1" not in window and \
                    time.monotonic() - window["t0"] >= steady:
                window.update(t1=time.monotonic(), cpu1=cpu_seconds(int(window["worker"])),
                              echo1=cpu_seconds(echo.program_pid() or 0))
            if "worker" in window:  # the sockets' drops so far (they close at the end)
                res["drops_sipload"] = udp_drops(pid=int(window["worker"]))
                res["drops_echo"] = udp_drops(port=media_port)
        output, _ = proc.communicate(timeout=hold + 120)
    res["drops"] = rcvbuf_errors() - drops0
    if "t1" not in window:
        res["error"] = "the steady window was not reached: " + output.strip()[-300:]
        return res
    span = window["t1"] - window["t0"]
    res["cpu_us_per_stream_s"] = (window["cpu1"] - window["cpu0"]) / (n * span) * 1e6
    res["cpu_share"] = (window["cpu1"] - window["cpu0"]) / span
    res["echo_cpu_share"] = (window["echo1"] - window["echo0"]) / span
    if first is not None and window["streams"] > first[0]:
        res["mem_kib_per_call"] = (window["rss"] - first[1]) / (window["streams"] - first[0])
    summary = json.loads((out / "summary.json").read_text())
    media = summary.get("media") or {}
    res.update(succeeded=summary["calls"]["succeeded"], failed=summary["calls"]["failed"],
               loss_rate=media.get("loss_rate"), jitter_p95_ms=(media.get("jitter_ms") or {})
               .get("p95"), mos_p5=(media.get("mos") or {}).get("p5"),
               limited=summary["generator"]["limited"],
               limited_reasons=summary["generator"].get("limited_reasons", []))
    late = HdrHistogram(1, 3_600_000_000, 3)
    sent = skipped = unsent = 0
    for line in (out / "intervals.jsonl").read_text().splitlines():
        send = (json.loads(line).get("media") or {}).get("send") or {}
        sent += send.get("sent", 0)
        skipped += send.get("skipped", 0)
        unsent += send.get("unsent", 0)
        if "late_us" in send:
            late.add(HdrHistogram.decode(base64.b64decode(send["late_us"])))
    res.update(sent=sent, skipped=skipped, unsent=unsent, send_late_ms=_percentiles(late))
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    res["build"] = next((e.get("build") for e in events if e["event"] == "worker_joined"), "?")
    return res


def run_sipp(n: int, ramp: float, steady: float, work: Path) -> dict[str, Any]:
    hold = ramp + steady + 3.0
    sdir = work / f"sipp-{n}"
    sdir.mkdir(exist_ok=True)
    ulaw_wav(sdir / "tone.ulaw.wav", TONE_HZ)  # the tone sipload plays
    xml = SIPP_XML.replace('<pause milliseconds="1500"/>',
                           f'<pause milliseconds="{int(hold * 1000)}"/>')
    (sdir / "uac.xml").write_text(xml)
    sip_port, media_port = free_port("udp"), free_port("udp")
    res: dict[str, Any] = {"tool": "sipp rtp_stream", "calls": n}
    with sipp_uas(sip_port, extra_args=["-rtp_echo", "-mp", str(media_port),
                                        "-max_socket", "4096"], limit=hold + ramp + 120) as echo:
        uac = sipp_uac(f"127.0.0.1:{sip_port}", sdir / "uac.xml", calls=n, rate=n / ramp,
                       extra_args=["-l", str(n), "-max_socket", "4096"],
                       limit=hold + ramp + 90, workdir=sdir)
        with uac:
            t_start = time.monotonic()
            pid = None
            while pid is None and time.monotonic() - t_start < 10:
                pid = uac.program_pid()
                time.sleep(0.05)
            if pid is None:
                res["error"] = "SIPp did not start"
                return res
            time.sleep(0.2)
            rss0 = rss_kib(pid)
            time.sleep(max(ramp + 1.0 - (time.monotonic() - t_start), 0))
            c0, e0, t0 = cpu_seconds(pid), cpu_seconds(echo.program_pid() or 0), time.monotonic()
            rss1 = rss_kib(pid)
            time.sleep(steady)
            c1, e1, t1 = cpu_seconds(pid), cpu_seconds(echo.program_pid() or 0), time.monotonic()
            code = uac.wait()
    span = t1 - t0
    res.update(cpu_us_per_stream_s=(c1 - c0) / (n * span) * 1e6, cpu_share=(c1 - c0) / span,
               echo_cpu_share=(e1 - e0) / span, mem_kib_per_call=(rss1 - rss0) / n,
               exit_code=code)
    return res


def show(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        print(json.dumps(r, default=str))
    print()
    print("| calls | tool | CPU µs/stream-s | CPU share | mem KiB/call | ok/failed | loss | "
          "jitter p95 ms | MOS p5 | send late p50/p99/max ms | skipped | limited | "
          "drops: all/sipload/echo | echo CPU |")
    print("|" + "---|" * 14)
    for r in rows:
        if "error" in r:
            print(f"| {r['calls']} | {r['tool']} | {r['error'][:80]} |")
            continue
        late = r.get("send_late_ms") or {}
        print(f"| {r['calls']} | {r['tool']} | {r['cpu_us_per_stream_s']:.1f} | "
              f"{r['cpu_share']:.2f} | {r.get('mem_kib_per_call', float('nan')):.2f} | "
              f"{r.get('succeeded', '-')}/{r.get('failed', '-')} | "
              f"{_pct(r.get('loss_rate'))} | {_num(r.get('jitter_p95_ms'))} | "
              f"{_num(r.get('mos_p5'))} | "
              + ("/".join(f"{late[k]:.2f}" for k in ("p50", "p99", "max")) if late else "-")
              + f" | {r.get('skipped', '-')} | {r.get('limited', '-')} | "
              f"{r.get('drops', '-')}/{r.get('drops_sipload', '-')}/{r.get('drops_echo', '-')}"
              f" | {r['echo_cpu_share']:.2f} |")
    by = {(r["calls"], r["tool"]): r for r in rows if "error" not in r}
    for n in sorted({r["calls"] for r in rows}):
        b = by.get((n, "sipp rtp_stream"))
        for name in ("sipload", "sipload RTP, sipload echo", "sipload SRTP, sipload echo"):
            a = by.get((n, name))
            if a and b and b["cpu_us_per_stream_s"] > 0:
                print(f"{n} calls: {name} / SIPp CPU per stream-second "
                      f"{a['cpu_us_per_stream_s'] / b['cpu_us_per_stream_s']:.2f}x")
        a, c = by.get((n, "sipload SRTP, sipload echo")), by.get((n, "sipload RTP, sipload echo"))
        if a and c and c["cpu_us_per_stream_s"] > 0:
            print(f"{n} calls: SRTP / RTP CPU per stream-second "
                  f"{a['cpu_us_per_stream_s'] / c['cpu_us_per_stream_s']:.2f}x (the caller), "
                  f"echo CPU share {c['echo_cpu_share']:.2f} -> {a['echo_cpu_share']:.2f}")


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.2f}%"


def _num(v: Any) -> str:
    return "-" if v is None else f"{float(v):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, nargs="+", default=[1000])
    ap.add_argument("--ramp", type=float, default=5.0, help="seconds to start all calls")
    ap.add_argument("--steady", type=float, default=10.0, help="seconds measured at full load")
    ap.add_argument("--no-sipp", action="store_true", help="skip SIPp's rtp_stream run")
    ap.add_argument("--srtp", action="store_true",
                    help="sipload with RTP and with SRTP against sipload's own echo")
    ap.add_argument("--json", type=Path, help="write the rows here too")
    ap.add_argument("--keep", type=Path, help="keep the run directories here")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="media-bench-") as tmp:
        work = Path(tmp) if args.keep is None else args.keep
        work.mkdir(parents=True, exist_ok=True)
        for n in args.calls:
            if args.srtp:
                rows.append(run_sipload(n, args.ramp, args.steady, work, srtp=False))
                rows.append(run_sipload(n, args.ramp, args.steady, work, srtp=True))
            else:
                rows.append(run_sipload(n, args.ramp, args.steady, work))
            if not args.no_sipp:
                rows.append(run_sipp(n, args.ramp, args.steady, work))
    show(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
