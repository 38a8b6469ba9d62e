"""More README promises of ``sipload run``, each on a real run (loopback, bounded):

* the **generator-limited** verdict by late starts: the rule at its 1% edge on a run
  directory, and a real run asked for far more than one worker can start on time;
* ``--transport tls`` from the command line: against the embedded UAS (a throwaway
  certificate the workers are told to trust, checked, not waved through) and against
  ``sipload uas --transport tls`` with a self-signed certificate (refused without
  ``--tls-insecure``: exit 3; accepted with it);
* the **live panel** on a terminal (a pty: rich's panel with its figures, no plain
  lines) and **plain lines** when stdout is not a terminal.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sipload.report import build_summary, load_run
from sipload.stats.rundir import RunWriter, read_traces
from sipload.transport.selfsigned import loopback_certificate
from tests.bgproc import Background
from tests.bgproc import sipload as sipload_argv
from tests.peers import free_port
from tests.test_run_gate import REPO, SCENARIOS, sipload, summary

BASIC = SCENARIOS / "basic_call.yaml"


# --------------------------------------------------------------------------- late starts


def _late_run(path: Path, attempted: int, late: int) -> dict[str, Any]:
    w = RunWriter(path)
    w.write_json("plan.json", {"rate": 100.0})
    w.append_records([{"call_number": n, "intended_start": n * 0.01,
                       "actual_start": n * 0.01, "end": n * 0.01 + 0.1, "result": "success",
                       "failure": "", "detail": "", "step": -1, "codes": [200],
                       "messages": [], "retransmissions": 0, "marks": {}, "worker": 0,
                       "call_id": f"{n}@x"} for n in range(attempted)])
    w.append_interval({"t": 1.0, "worker": 0, "started": attempted, "succeeded": attempted,
                       "failed": 0, "active": 0, "late": late, "dropped": 0,
                       "retransmissions": 0, "loop_lag_ms": 0.5, "cpu": 0.2,
                       "target_rate": 100.0, "histograms": {}})
    w.append_event({"t": 2.0, "event": "run_end"})
    w.close()
    return build_summary(path)


def test_generator_limited_when_late_starts_exceed_one_percent(tmp_path: Path) -> None:
    at_edge = _late_run(tmp_path / "edge", 200, 2)["generator"]  # 1.0%: not above
    assert at_edge["late_starts"] == 2 and at_edge["limited"] is False
    over = _late_run(tmp_path / "over", 200, 3)["generator"]  # 1.5%
    assert over["limited"] is True and over["late_starts"] == 3
    assert over["limited_reasons"] == ["3 late starts (1.50% of attempted > 1%)"]


def _run_files(out: Path) -> str:
    """The run directory's event and interval lines, for a failure message."""
    text = ""
    for name in ("events.jsonl", "intervals.jsonl"):
        with contextlib.suppress(OSError):
            text += f"\n--- {name}\n" + (out / name).read_text()[-20_000:]
    return text


def test_a_run_beyond_the_workers_pace_is_generator_limited(tmp_path: Path) -> None:
    """2,000 calls asked at 50,000/s of one worker: it cannot build INVITEs that fast, so
    most starts leave more than 10 ms after their intended time and are counted late;
    the summary, the report and the live line say so."""
    out = tmp_path / "run"
    r = sipload("run", BASIC, "--workers", 1, "--calls", 2000, "--rate", 50000,
                "--allow-failures", "100%", "--out", out)
    # CI once saw the worker declared lost here ("silent for 3.0 s", exit 3) while its
    # calls went on; the run's own account of it goes into the failure message
    assert r.returncode in (0, 1), r.stdout + r.stderr + _run_files(out)
    s = summary(out)
    g = s["generator"]
    calls = load_run(out).calls
    late_in_records = int(((calls["actual_start"] - calls["intended_start"]) > 0.010).sum())
    assert g["late_starts"] > 0.01 * s["calls"]["attempted"], g
    # counted as they were released; the record's start is the INVITE's write, later still
    assert 0 < g["late_starts"] <= late_in_records
    assert g["limited"] is True
    assert any(re.match(r"\d+ late starts \(", x) for x in g["limited_reasons"]), g
    assert g["lateness_ms"]["max"] > 10.0
    # the worker's memory came with its snapshots (a Python process: tens of MiB)
    assert all(w["rss_max_mib"] is not None and w["rss_max_mib"] > 10 for w in g["workers"])
    page = (out / "report.html").read_text()
    assert 'class="badge warn">generator-limited' in page
    last = [x for x in r.stdout.splitlines() if re.match(r"sipload: +[0-9.]+s started", x)][-1]
    late_shown = re.search(r" late (\d+) ", last)
    assert late_shown is not None and int(late_shown.group(1)) == g["late_starts"], last


# --------------------------------------------------------------------------- TLS


def test_tls_from_the_command_line_against_the_embedded_uas(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = sipload("run", BASIC, "--workers", 1, "--calls", 5, "--rate", 20,
                "--transport", "tls", "--trace", "all", "--out", out, "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    s = summary(out)
    assert s["calls"]["succeeded"] == 5 and s["exit_code"] == 0
    rows = read_traces(out).to_pylist()
    # every message of the 5 calls went over TLS (INVITE, 100, 180, 200, ACK, BYE, 200)
    assert len({r["call_id"] for r in rows}) == 5 and len(rows) >= 5 * 6
    assert {r["transport"] for r in rows} == {"tls"}
    plan = (out / "plan.json").read_text()
    assert "BEGIN CERTIFICATE" not in plan  # the throwaway certificate is not kept


def test_tls_against_a_self_signed_uas_needs_tls_insecure(tmp_path: Path) -> None:
    cert, key = loopback_certificate()
    (tmp_path / "uas.pem").write_text(cert + key)
    port = free_port()
    with Background(sipload_argv("uas", "--listen", f"127.0.0.1:{port}", "--transport",
                                 "tls", "--cert", tmp_path / "uas.pem", "--duration", 60),
                    ready="listening", ready_timeout=30):
        refused = sipload("run", BASIC, "--workers", 1, "--calls", 2, "--rate", 20,
                          "--transport", "tls", "--target", f"127.0.0.1:{port}",
                          "--out", tmp_path / "refused", "--quiet")
        ok = sipload("run", BASIC, "--workers", 1, "--calls", 3, "--rate", 20,
                     "--transport", "tls", "--target", f"127.0.0.1:{port}",
                     "--tls-insecure", "--out", tmp_path / "ok", "--quiet")
    # verification is on by default: nothing is answered over an unverified connection
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert summary(tmp_path / "refused")["failed"]["by_reason"] == {"transport_error": 2}
    conns = summary(tmp_path / "refused")["connections"]
    tls = conns["tls"]  # shared: calls that start while the connection opens ride on it
    assert tls["failures"]["count"] == conns["opened"] >= 1
    assert set(tls["failures"]["by_reason"]) == {"cert_verify_failed"}
    assert tls["verified"] is True and tls["handshakes"] == 0
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert summary(tmp_path / "ok")["calls"]["succeeded"] == 3
    # skipping verification is said in the output, the summary and the report
    assert "warning: --tls-insecure" in ok.stderr
    assert summary(tmp_path / "ok")["connections"]["tls"]["verified"] is False
    assert 'id="tls-insecure"' in (tmp_path / "ok" / "report.html").read_text()


# --------------------------------------------------------------------------- live view


def _run_on_pty(argv: list[str], timeout: float = 90.0) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; (exit code, all it wrote)."""
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="160", LINES="50")
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            cwd=REPO, env=env, start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the other side is closed
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace")
    return code, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # colours and cursor moves


def test_live_panel_on_a_terminal(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, text = _run_on_pty([sys.executable, "-m", "sipload", "run", str(BASIC), "--workers",
                              "1", "--calls", "150", "--rate", "50", "--out", str(out)])
    assert code == 0, text
    s = summary(out)
    for label in ("elapsed", "target rate", "in progress", "succeeded", "retransmissions",
                  "late starts", "latency", "loop lag ms", "memory MiB"):
        assert label in text, (label, text[-3000:])
    # the panel's last state: every call succeeded, the latency figures of the run
    assert re.search(rf"succeeded\s+{s['calls']['succeeded']}\b", text), text[-3000:]
    # the worker's row: its memory in MiB (a Python process: two or three digits)
    rows = re.findall(r"^\s*0 \u2502\s+\d+% \u2502.*\u2502\s+(\S+)\s*$", text, re.MULTILINE)
    assert rows and all(r.isdigit() and 10 <= int(r) < 1000 for r in rows), text[-3000:]
    m = re.findall(r"answer p50 (\d+\.\d{3}) ms", text)
    assert m, text[-3000:]
    assert not re.search(r"^sipload: +[0-9.]+s started", text, re.MULTILINE)  # no plain lines
    assert f"report: {out}/report.html" in text.replace("\r", "").replace("\n", "")


def test_plain_lines_when_not_a_terminal(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = sipload("run", BASIC, "--workers", 1, "--calls", 300, "--rate", 50, "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [x for x in r.stdout.splitlines() if x.startswith("sipload:")]
    assert lines[0].startswith("sipload: run basic-call -> 127.0.0.1:"), lines
    progress = [x for x in lines if re.match(r"sipload: +[0-9.]+s started \d+ ok \d+", x)]
    # one line every 5 s while it runs (6 s of calls), and the last one at the end
    assert len(progress) >= 2, lines
    assert "\x1b[" not in r.stdout and "elapsed" not in r.stdout  # no panel, no escapes
    s = summary(out)
    assert re.search(rf"started {s['calls']['attempted']} ok {s['calls']['succeeded']} ",
                     progress[-1]), progress[-1]
