"""``sipload run --trace``: the messages of failed calls, kept while the run goes, in the
run directory (traces.arrows, messages.pcap read by tshark), report.html (every arrow
opens its message, escaped; the failure names the message it came from) and
``sipload trace`` in the terminal.  Real runs: worker processes, sockets on loopback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sipload.stats.rundir import PCAP, TRACES, read_calls, read_traces
from tests.bgproc import Background, run, sipload
from tests.peers import LOOPBACK, free_port, require, sipp_uas, tshark_fields

UAC = """role: uac
counterpart: uas.yaml
steps:
  - send: INVITE
    body: {sdp: offer}
  - recv: 100
    optional: true
  - recv: 200
  - send: ACK
  - send: BYE
  - recv: 200
"""
# what a hostile peer can put in a 503: markup, quotes, an ANSI escape, bidi override
UAS = r"""role: uas
steps:
  - recv: INVITE
  - reply: 503
    reason: "Busy <b>\"now\"</b> & 'then'"
    headers:
      Warning: "399 pbx \"<script>alert('x')</script>\" \e[31mred\u202Egnp.exe"
      Reason: "Q.850;cause=34;text=\"</pre><img src=x onerror=alert(1)>\""
"""


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("trace")
    (d / "uac.yaml").write_text(UAC)
    (d / "uas.yaml").write_text(UAS)
    out = d / "run"
    done = run(sipload("run", d / "uac.yaml", "--calls", 6, "--rate", 50, "--workers", 1,
                       "--trace-limit", 4, "--out", out, "--quiet"), timeout=120)
    # every call fails on purpose: the run gate says so (exit 1)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "6 of 6 calls failed" in done.stderr
    return out


def test_failed_calls_are_traced_up_to_the_limit(failed_run: Path) -> None:
    calls = read_calls(failed_run).to_pylist()
    assert len(calls) == 6 and {c["result"] for c in calls} == {"failed"}
    # the failure names the message: reason phrase and why-headers, not just "503"
    assert calls[0]["detail"].startswith('503 Busy <b>"now"</b> & \'then\'; Warning: 399 pbx')
    assert "Reason: Q.850;cause=34" in calls[0]["detail"]
    traces = read_traces(failed_run).to_pylist()
    traced = {r["call_number"] for r in traces}
    assert len(traced) == 4  # --trace-limit 4 per failure reason per worker
    for number in traced:
        rows = [r for r in traces if r["call_number"] == number]
        firsts = [r["data"].split(b"\r\n", 1)[0] for r in rows]
        assert firsts[0].startswith(b"INVITE ") and firsts[-1].startswith(b"ACK ")
        assert firsts[-2].startswith(b"SIP/2.0 503 Busy")
        assert [r["direction"] for r in rows] == ["out", "in", "in", "out"]
        assert all(r["transport"] == "udp" and r["local_host"] == "127.0.0.1"
                   and r["local_port"] > 0 and r["remote_port"] > 0 for r in rows)
        assert all(r["length"] == len(r["data"]) for r in rows)
        ts = [r["ts"] for r in rows]
        assert ts == sorted(ts) and ts[0] > 1.6e9  # Unix time


def test_tshark_finds_every_traced_call_id_in_the_pcap(failed_run: Path) -> None:
    traces = read_traces(failed_run).to_pylist()
    rows = tshark_fields(failed_run / PCAP, ["sip.Call-ID", "ip.src", "udp.srcport",
                                             "frame.time_epoch"], "sip")
    assert len(rows) == len(traces)
    assert {r[0] for r in rows} == {t["call_id"] for t in traces}
    for r, t in zip(rows, traces, strict=True):
        port = t["local_port"] if t["direction"] == "out" else t["remote_port"]
        assert int(r[2]) == port
        assert float(r[3]) == pytest.approx(t["ts"], abs=2e-6)


def test_report_arrows_open_the_escaped_message(failed_run: Path) -> None:
    html = (failed_run / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower() and "<img src=x" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "\x1b" not in html and "\u202e" not in html
    assert "\\x1b[31mred\\u202egnp.exe" in html  # shown, as escapes
    anchors = re.findall(r'<a class="arrow" href="#(m\d+-\d+-\d+)">', html)
    assert len(anchors) >= 4 * 3
    for a in anchors:
        assert f'<pre class="msgtext" id="{a}">' in html
    # every traced message's full text is in the page, escaped
    assert html.count('class="msgtext"') == read_traces(failed_run).num_rows
    assert html.count("failed on: <code>SIP/2.0 503 Busy &lt;b&gt;") >= 4
    assert 'class="msg in cause"' in html


def test_sipload_trace_prints_ladders_with_text(failed_run: Path) -> None:
    done = run(sipload("trace", failed_run, "--failed"), timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("call_rejected - 503 Busy") == 4
    assert out.count("failed on: SIP/2.0 503 Busy") == 4
    assert "\x1b" not in out and "\u202e" not in out and "\\x1b[31m" in out
    assert re.search(r"\+ +\d+\.\d{3} ms  sipload 127\.0\.0\.1:\d+ -- INVITE --> ", out)
    assert "      Warning: 399 pbx \"<script>alert('x')</script>\"" in out
    call_id = read_traces(failed_run).column("call_id")[0].as_py()
    one = run(sipload("trace", failed_run, "--call-id", call_id), timeout=60)
    assert one.returncode == 0 and one.stdout.count("\ncall ") + one.stdout.startswith(
        "call ") == 1 and call_id in one.stdout
    none = run(sipload("trace", failed_run, "--call-id", "nobody@nowhere"), timeout=60)
    assert none.returncode == 1 and "no traced call with Call-ID" in none.stderr
    bad = run(sipload("trace", failed_run.parent), timeout=60)
    assert bad.returncode == 2 and "not a run directory" in bad.stderr


def test_trace_all_over_tcp_and_ipv6(tmp_path: Path) -> None:
    port = free_port("tcp")
    out = tmp_path / "run"
    with Background(sipload("uas", "--listen", f"[::1]:{port}", "--transport", "tcp",
                            "--duration", "60s"), ready="listening"):
        done = run(sipload("run", "scenarios/basic_call.yaml", "--target", f"[::1]:{port}",
                           "--transport", "tcp", "--calls", 3, "--rate", 20, "--workers", 1,
                           "--trace", "all", "--out", out, "--quiet"), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    traces = read_traces(out).to_pylist()
    assert {r["call_number"] for r in traces} == {0, 1, 2}  # successes too
    assert all(r["local_host"] == "::1" and r["remote_host"] == "::1" and
               r["local_port"] > 0 and r["transport"] == "tcp" for r in traces)
    rows = tshark_fields(out / PCAP, ["sip.Call-ID", "ipv6.src", "tcp.srcport", "tcp.dstport"],
                         "sip")
    assert len(rows) == len(traces)
    assert {r[0] for r in rows} == {t["call_id"] for t in traces}
    assert {r[1] for r in rows} == {"::1"} and str(port) in {r[2] for r in rows}


def test_trace_none_keeps_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (tmp_path / "uac.yaml").write_text(UAC)
    (tmp_path / "uas.yaml").write_text(UAS)
    done = run(sipload("run", tmp_path / "uac.yaml", "--calls", 2, "--rate", 50,
                       "--workers", 1, "--trace", "none", "--out", out, "--quiet",
                       "--allow-failures", "100%"), timeout=120)
    assert done.returncode == 0, done.stderr
    assert not (out / TRACES).exists() and not (out / PCAP).exists()
    assert 'class="msgtext"' not in (out / "report.html").read_text(encoding="utf-8")
    listed = run(sipload("trace", out), timeout=60)
    assert listed.returncode == 1 and "kept no traces" in listed.stderr
    bad = run(sipload("run", tmp_path / "uac.yaml", "--calls", 2, "--trace-limit", -1),
              timeout=60)
    assert bad.returncode == 2 and "--trace-limit" in bad.stderr


def test_following_an_arrow_opens_its_message_in_a_browser(failed_run: Path,
                                                          tmp_path: Path) -> None:
    """What a click on an arrow does (fragment navigation, no script): headless Chromium
    opens the <details> that holds the message."""
    from tests.test_report_browser import run_chromium

    html = (failed_run / "report.html").read_text(encoding="utf-8")
    anchor = re.findall(r'<details class="cause"><summary>[^<]*</summary>'
                        r'<pre class="msgtext" id="([^"]+)">', html)[0]
    done = run_chromium(["--dump-dom", (failed_run / "report.html").as_uri() + "#" + anchor],
                        tmp_path / "profile")
    dom = done.stdout
    assert done.returncode == 0 and "</html>" in dom, done.stderr[-2000:]
    assert "<script" not in dom.lower()
    opened = re.findall(r'<details([^>]*)><summary>[^<]*</summary><pre class="msgtext" '
                        r'id="([^"]+)"', dom)
    assert [a for attrs, a in opened if "open" in attrs] == [anchor]


# the UAC above on the embedded default UAS, paused past IDLE_PACK before its BYE
HELD_UAC = UAC.replace("counterpart: uas.yaml\n", "").replace(
    "  - send: BYE\n", "  - pause: 6.5s\n  - send: BYE\n")


@pytest.mark.parametrize("peer", ["embedded", pytest.param("sipp", marks=pytest.mark.peer)])
def test_a_call_quiet_long_enough_to_be_packed_keeps_its_whole_trace(tmp_path: Path,
                                                                     peer: str) -> None:
    """A call held past IDLE_PACK has its trace packed by the worker (stats/traces.py,
    rule 5) while it pauses, then sends its BYE: with ``--trace all`` the trace kept
    holds every message, the packed ones first, in order, each with its addresses.
    Against the embedded UAS and against ``sipp -sn uas``."""
    from sipload.stats.traces import IDLE_PACK

    assert IDLE_PACK < 6.0  # the pause outlasts it
    (tmp_path / "uac.yaml").write_text(HELD_UAC)
    out = tmp_path / "run"
    argv = sipload("run", tmp_path / "uac.yaml", "--calls", 2, "--rate", 10,
                   "--workers", 1, "--trace", "all", "--out", out, "--quiet")
    if peer == "sipp":
        require("sipp")
        port = free_port("udp")
        with sipp_uas(port) as uas:
            done = run([*argv, "--target", f"{LOOPBACK}:{port}"], timeout=120)
            why = uas.describe()
    else:
        done, why = run(argv, timeout=120), ""
    assert done.returncode == 0, done.stdout + done.stderr + why
    traces = read_traces(out).to_pylist()
    assert {r["call_number"] for r in traces} == {0, 1}
    for number in (0, 1):
        rows = [r for r in traces if r["call_number"] == number]
        firsts = [r["data"].split(b"\r\n", 1)[0].split(b" ")[0 if r["direction"] == "out"
                                                               else 1] for r in rows]
        assert firsts[0] == b"INVITE" and firsts[-4:] == [b"200", b"ACK", b"BYE", b"200"]
        ts = [r["t"] for r in rows]
        assert ts == sorted(ts) and ts[-2] - ts[-3] >= 6.4  # the pause, packed across
        assert all(r["local_port"] > 0 and r["remote_port"] > 0 and
                   r["length"] == len(r["data"]) for r in rows)
    # the packing did happen (not only the trace coming back whole): the worker's
    # intervals count both calls' traces packed while they paused, and none held at the end
    snaps = [json.loads(x) for x in (out / "intervals.jsonl").read_text().splitlines()]
    assert sum(s["traces"]["packed"] for s in snaps) == 2, snaps
    assert max(s["traces"]["held"] for s in snaps) == 2 and snaps[-1]["traces"]["held"] == 0

