"""A run's media in summary.json, intervals, load_run, thresholds, report.html and the
live line: real runs against the embedded UAS (which echoes RTP), figures checked
against the calls' own records."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from sipload.cluster.checks import check_snapshot
from sipload.cluster.live import LiveView
from sipload.report import load_run
from sipload.report.compare import compare_runs, format_comparison, parse_min_delta
from sipload.report.html import write_report
from sipload.report.summary import build_summary, validate_summary
from sipload.report.synthetic import HOSTILE, make_run
from sipload.report.thresholds import ThresholdError, evaluate, parse_threshold
from sipload.stats.mediaintervals import MediaHistograms, MediaIntervals
from sipload.stats.rundir import RunWriter
from tests.mediahelpers import media_call
from tests.test_run_gate import sipload, summary

ROOT = Path(__file__).resolve().parent.parent

CALLS = 4

SCENARIO = media_call("media-report", "{codec: PCMU, ptime: 20ms, play: tone}", pause="1500ms",
                      header="THRESHOLDS\n")


def _scenario(tmp: Path, thresholds: str = "") -> Path:
    path = tmp / "media.yaml"
    path.write_text(SCENARIO.replace("THRESHOLDS", thresholds))
    return path


@pytest.fixture(scope="module")
def media_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("media_report")
    out = tmp / "run"
    r = sipload("run", _scenario(tmp), "--calls", CALLS, "--rate", 10, "--out", out,
                "--threshold", "media.loss_rate<1%", "--threshold", "media.jitter_ms.p95<30ms",
                "--threshold", "media.mos.p5>=4.0")
    assert r.returncode == 0, r.stdout + r.stderr
    return out, r.stdout


@pytest.mark.timeout(120)
def test_summary_media_is_what_the_records_say(media_run: tuple[Path, str]) -> None:
    out, _ = media_run
    s = summary(out)
    validate_summary(s)
    m = s["media"]
    calls = load_run(out).calls
    assert len(calls) == CALLS and (calls["result"] == "success").all()
    assert m["streams"] == CALLS
    for name in ("sent", "received", "expected", "lost", "duplicates", "events"):
        assert m[name] == int(calls[f"media_{name}"].sum()), name
    assert m["sent"] >= CALLS * 70  # 1.5 s of 20 ms packets per call, at least
    assert m["received"] >= m["sent"] - 2 * CALLS  # echoed; a few in flight at BYE
    assert m["loss_rate"] == m["lost"] / m["expected"]
    jitter = calls["media_jitter_ms"].to_numpy()
    # milliseconds to the microsecond (stats.msround)
    assert m["jitter_ms"]["p50"] == round(float(np.percentile(jitter, 50)), 3)
    assert m["jitter_ms"]["p95"] == round(float(np.percentile(jitter, 95)), 3)
    assert m["jitter_ms"]["max"] == round(float(jitter.max()), 3)
    mos = calls["media_mos"].to_numpy()
    assert m["mos"]["count"] == CALLS
    assert m["mos"]["min"] == pytest.approx(float(mos.min()), abs=1e-12)
    assert m["mos"]["p5"] == pytest.approx(float(np.percentile(mos, 5)), abs=1e-12)
    assert m["mos"]["p50"] == pytest.approx(float(np.percentile(mos, 50)), abs=1e-12)
    assert 4.0 < m["mos"]["min"] <= 4.41  # G.711 over loopback
    assert [v["passed"] for v in s["thresholds"]] == [True, True, True]
    assert s["thresholds"][2]["measured"] == m["mos"]["p5"]


@pytest.mark.timeout(120)
def test_intervals_carry_packets_and_mergeable_histograms(media_run: tuple[Path, str]) -> None:
    out, _ = media_run
    run = load_run(out)
    iv = run.intervals
    s = summary(out)["media"]
    # every stream's packets over the intervals add up to the records' (one leg a call)
    assert int(iv["media_sent"].sum()) == s["sent"]
    assert int(iv["media_received"].sum()) == s["received"]
    assert int(iv["media_calls"].sum()) == CALLS
    merged = MediaHistograms()
    for h in iv["media_histograms"]:
        if h:
            merged.merge(MediaHistograms.decode(h))
    assert merged.mos.get_total_count() == CALLS
    assert merged.jitter.get_total_count() == CALLS
    calls = run.calls
    # the histograms hold the records' values at their resolution (0.01 MOS, 3 digits)
    assert merged.mos_at(100) == pytest.approx(float(calls["media_mos"].max()), abs=0.006)
    top = merged.jitter_ms(100)
    assert top is not None
    assert top == pytest.approx(float(calls["media_jitter_ms"].max()), rel=2e-3, abs=2e-3)
    per_second = run.media
    assert int(per_second["sent"].sum()) == s["sent"]
    assert per_second["streams"].max() >= 1
    assert (per_second["loss_rate"].dropna() <= 0.05).all()


@pytest.mark.timeout(120)
def test_report_media_section_and_live_line(media_run: tuple[Path, str]) -> None:
    out, stdout = media_run
    html = (out / "report.html").read_text()
    section = html[html.index('<section id="media">'):html.index('<section id="ladders">')]
    assert "MOS distribution" in section and "Media over time" in section
    assert section.count("data:image/png;base64,") == 2
    worst = section[section.index('id="media-worst"'):]
    assert worst.count('<code class="call-id">') == CALLS
    mos = summary(out)["media"]["mos"]["min"]
    assert f"{mos:.2f}" in worst
    # the plain live line (not a terminal) shows packets per second, loss and MOS
    m = summary(out)["media"]
    assert (f"media: {CALLS} streams, RTP sent {m['sent']} received {m['received']} lost "
            f"{m['lost']}") in stdout
    lines = [ln for ln in stdout.splitlines() if ln.startswith("sipload:") and "rtp " in ln]
    assert lines, stdout
    last = lines[-1]
    assert re.search(r"rtp \d+/s out, \d+/s in, \d+ streams, loss \d+\.\d+% ", last), last
    assert re.search(r"MOS p50 4\.\d\d p5 4\.\d\d", last), last


@pytest.mark.timeout(120)
def test_a_media_threshold_fails_the_run(tmp_path: Path) -> None:
    scen = _scenario(tmp_path, "thresholds: ['media.mos.p5>=4.5']")  # G.711 tops at 4.41
    out = tmp_path / "run"
    r = sipload("run", scen, "--calls", 2, "--rate", 10, "--out", out, "--quiet")
    assert r.returncode == 1, r.stdout + r.stderr
    s = summary(out)
    assert s["calls"]["succeeded"] == 2 and s["gate"]["verdict"] == "passed"
    (v,) = s["thresholds"]
    assert v["metric"] == "media.mos.p5" and not v["passed"]
    assert v["measured"] == s["media"]["mos"]["p5"] < 4.5


def test_unknown_media_metric_exits_2_and_sends_nothing(tmp_path: Path) -> None:
    out = tmp_path / "never"
    r = sipload("run", _scenario(tmp_path), "--calls", 2, "--out", out,
                "--threshold", "media.mos.p05>=4")
    assert r.returncode == 2, r.stderr
    assert "unknown metric 'media.mos.p05'" in r.stderr
    assert "did you mean 'media.mos.p5'" in r.stderr
    assert not out.exists()


def test_media_thresholds_parse_with_units() -> None:
    assert parse_threshold("media.loss_rate<1%").limit == pytest.approx(0.01)
    assert parse_threshold("media.jitter_ms.p95<0.03s").limit == pytest.approx(30.0)
    t = parse_threshold("media.mos.p5>=4.0")
    assert (t.kind, t.path) == ("score", ("media", "mos", "p5"))
    with pytest.raises(ThresholdError, match="does not fit"):
        parse_threshold("media.mos.p5>=4ms")
    with pytest.raises(ThresholdError, match="not a fraction"):
        parse_threshold("media.loss_rate<5")
    # no media in the run: a media threshold has no data and fails
    (v,) = evaluate(["media.mos.p5>=4"], {"media": None})
    assert not v.passed and v.measured is None


def test_no_media_no_section(tmp_path: Path) -> None:
    make_run(tmp_path, calls=200)
    s = build_summary(tmp_path)
    validate_summary(s)
    assert s["media"] is None
    html = write_report(tmp_path, s).read_text()
    assert 'id="media"' not in html


def test_worst_calls_escape_the_wire(tmp_path: Path) -> None:
    fig = {"sent": 100.0, "received": 80.0, "expected": 100.0, "lost": 20.0,
           "loss_rate": 0.2, "jitter_ms": 3.0, "max_jitter_ms": 9.0, "mos": 2.5,
           "r_factor": 50.0, "remote_lost": -1.0, "remote_fraction_lost": -1.0,
           "remote_jitter_ms": -1.0, "rtt_ms": -1.0}
    w = RunWriter(tmp_path)
    rec: dict[str, Any] = {
        "call_number": 1, "intended_start": 0.0, "actual_start": 0.0, "end": 2.0,
        "result": "failed", "failure": "media_failed", "detail": HOSTILE, "step": 3,
        "codes": [200], "retransmissions": 0, "call_id": HOSTILE, "marks": {},
        "messages": [], "media": fig}
    w.append_records([rec, {**rec, "call_number": 2, "call_id": "ok",
                            "media": {**fig, "mos": 4.2, "lost": 0.0, "loss_rate": 0.0}}])
    w.write_json("plan.json", {"rate": 1})
    w.close()
    s = build_summary(tmp_path)
    validate_summary(s)
    assert s["media"]["lost"] == 20 and s["media"]["loss_rate"] == 0.1
    assert s["media"]["mos"]["min"] == 2.5
    html = write_report(tmp_path, s).read_text()
    worst = html[html.index('id="media-worst"'):]
    assert HOSTILE not in html
    assert "&lt;script&gt;" in worst
    assert worst.index("2.50") < worst.index("4.20")  # the worst call first
    json.dumps(s)  # plain JSON


def test_media_intervals_telescope_and_merge() -> None:
    mi = MediaIntervals()
    mi.call({"expected": 50.0, "jitter_ms": 1.5, "mos": 4.38})
    mi.call({"expected": 0.0, "jitter_ms": 0.0, "mos": -1.0})  # nothing received: no entries
    first = mi.snapshot((100, 90, 95, 5), 3)
    assert {k: first[k] for k in ("streams", "calls", "sent", "received", "expected",
                                  "lost")} == {"streams": 3, "calls": 2, "sent": 100,
                                               "received": 90, "expected": 95, "lost": 5}
    second = mi.snapshot((150, 150, 150, 0), 0)  # late packets filled a gap: lost -5
    assert (second["sent"], second["lost"], second["calls"]) == (50, -5, 0)
    h = MediaHistograms.decode(first["histograms"])
    assert h.mos.get_total_count() == 1 and h.mos_at(50) == 4.38
    assert h.jitter_ms(50) == pytest.approx(1.5, rel=1e-3)
    assert check_snapshot({**_SNAP, "media": first}) is None
    assert check_snapshot({**_SNAP, "media": second}) is None
    for bad in ({**first, "streams": -1}, {**first, "sent": 1.5},
                {**first, "histograms": {"mos": "garbage"}},
                {**first, "histograms": {"other": first["histograms"]["mos"]}}, []):
        assert check_snapshot({**_SNAP, "media": bad}) is not None, bad


_SNAP: dict[str, Any] = {
    "t": 1.0, "worker": 0, "started": 1, "succeeded": 1, "failed": 0, "active": 0, "late": 0,
    "dropped": 0, "retransmissions": 0, "loop_lag_ms": 0.1, "cpu": 0.1, "target_rate": 1.0,
    "histograms": {}, "failures": {}, "codes": {}}


@pytest.mark.timeout(120)
def test_far_end_figures_from_rtcp_are_the_records(tmp_path: Path) -> None:
    """Calls of 11 s against the media_call pair's UAS (echo with its own RTCP): the far
    end's reports (every 5 s) give the summary's remote figures and round trips.  Both
    ends send their first report 5 s after the answer, so the far end's first one may
    leave before our first SR reaches it (no round trip in it); its second, at 10 s,
    answers our SR of 5 s: 11 s calls always measure one."""
    scen = (ROOT / "scenarios" / "media_call.yaml").read_text().replace("pause: 3s",
                                                                          "pause: 11s")
    (tmp_path / "uac.yaml").write_text(scen)
    shutil.copy(ROOT / "scenarios" / "media_call_uas.yaml", tmp_path)
    out = tmp_path / "run"
    r = sipload("run", tmp_path / "uac.yaml", "--calls", 2, "--rate", 5, "--out", out,
                "--quiet", "--threshold", "media.remote.fraction_lost.max<1%",
                "--threshold", "media.rtt_ms.p95<50ms")
    assert r.returncode == 0, r.stdout + r.stderr
    s = summary(out)
    validate_summary(s)
    calls = load_run(out).calls
    remote = s["media"]["remote"]
    assert remote["streams"] == 2 == int((calls["media_remote_lost"] >= 0).sum())
    assert remote["lost"] == int(calls["media_remote_lost"].sum())
    rj = calls["media_remote_jitter_ms"].to_numpy()
    assert remote["jitter_ms"]["p95"] == round(float(np.percentile(rj, 95)), 3)
    rtt = calls["media_rtt_ms"].to_numpy()
    rtt = rtt[rtt >= 0]  # -1: no report answered one of our sender reports in time
    assert len(rtt) >= 1
    assert s["media"]["rtt_ms"]["max"] == round(float(rtt.max()), 3)
    assert s["media"]["rtt_ms"]["p50"] == round(float(np.percentile(rtt, 50)), 3)
    assert [v["passed"] for v in s["thresholds"]] == [True, True]


def test_rich_panel_shows_media(media_run: tuple[Path, str]) -> None:
    """The terminal panel, fed the run's own snapshots, has a media row."""
    out, _ = media_run
    view = LiveView({"scenario_name": "media"}, tty=True)
    for line in (out / "intervals.jsonl").read_text().splitlines():
        view.snapshot(json.loads(line))
    console = Console(record=True, width=200)
    console.print(view._render())
    text = console.export_text()
    m = summary(out)["media"]
    assert "media" in text and re.search(r"rtp \d+/s out, \d+/s in", text), text
    assert f"loss 0.00% (0 of {m['expected']})" in text or m["lost"] > 0, text
    assert re.search(r"MOS p50 4\.\d\d p5 4\.\d\d", text), text


def test_compare_judges_media(media_run: tuple[Path, str]) -> None:
    out, _ = media_run
    a = summary(out)
    b = json.loads(json.dumps(a))
    b["media"]["loss_rate"] = 0.05
    b["media"]["mos"]["p5"] = a["media"]["mos"]["p5"] - 0.5
    r = compare_runs(a, b)
    rows = {m["metric"]: m for m in r["metrics"]}
    assert rows["media.loss_rate"]["status"] == "regression"
    assert rows["media.mos.p5"]["status"] == "too_few_samples"  # 4 calls, p5 needs 200
    assert rows["media.mos.p5"]["samples"] == CALLS
    r = compare_runs(a, b, tail_samples=0)
    rows = {m["metric"]: m for m in r["metrics"]}
    assert rows["media.mos.p5"]["status"] == "regression"
    assert rows["media.mos.p50"]["status"] == "same"
    assert "media.mos.p5" in r["regressions"] and r["regressed"]
    assert "MOS" in format_comparison(r)
    assert parse_min_delta("0.1mos") == ("score", 0.1)
    same = compare_runs(a, a)
    assert not same["regressed"]
    # runs without media compare as before: no media rows
    assert not any(m["metric"].startswith("media.")
                   for m in compare_runs({**a, "media": None}, {**a, "media": None})["metrics"])
