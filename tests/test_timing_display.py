"""Timing values as users read them: milliseconds with microsecond resolution (0.284 ms),
never integers of milliseconds, never floating noise (3e-10 ms, -0.000, 0.28400000000000003).

A run directory whose marks come from socket stamps (differences of large monotonic
readings, as the engine makes them) goes through the histograms, summary.json,
report.html, ``load_run`` and the live view (plain line and rich panel).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from sipload.cluster.live import LiveView
from sipload.report import build_summary, load_run, write_report
from sipload.stats.histograms import MarkHistograms
from sipload.stats.msround import fmt_ms, ms, seconds_to_ms
from sipload.stats.rundir import RunWriter

T0 = 12345.678901234  # a monotonic reading: marks are differences of such stamps
#: answer marks as the engine computes them (stamp - stamp), in seconds: 284 µs, 512 µs,
#: and floating noise around zero (3e-13 s = 3e-10 ms)
ANSWERS = [(T0 + 0.000284) - T0, (T0 + 0.000512) - T0, 3e-13]
NOISY_LAG = 0.1 + 0.2  # 0.30000000000000004 ms


def _snapshot(t: float) -> dict[str, Any]:
    h = MarkHistograms()
    for a in ANSWERS:
        h.record("answer", a)
    return {"t": t, "worker": 0, "started": 3, "succeeded": 3, "failed": 0, "active": 0,
            "late": 0, "dropped": 0, "retransmissions": 0, "loop_lag_ms": NOISY_LAG,
            "cpu": 0.1, "target_rate": 100.0, "histograms": h.encode()}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("subms") / "r"
    w = RunWriter(path)
    w.write_json("plan.json", {"command": "sipload run x.yaml", "rate": 100.0})
    rows = []
    for n, a in enumerate(ANSWERS):
        intended = n * 0.01
        rows.append({"call_number": n, "intended_start": intended,
                     # started 3e-13 s "before" its intended time: noise, not earliness
                     "actual_start": intended - 3e-13, "end": intended + 0.1,
                     "result": "success", "failure": "", "detail": "", "step": -1,
                     "codes": [200], "messages": [], "retransmissions": 0,
                     "marks": {"answer": a}, "worker": 0, "call_id": f"{n}@x"})
    w.append_records(rows)
    w.append_interval(_snapshot(1.0))
    w.append_event({"t": 1.5, "event": "run_end"})
    w.close()
    return path


def test_msround_rounds_to_the_microsecond_and_never_below_zero() -> None:
    assert ms(0.28400000000000003) == 0.284
    assert fmt_ms(3e-10) == fmt_ms(-3e-10) == "0.000"
    assert math.copysign(1.0, ms(-0.0)) == 1.0 and math.copysign(1.0, ms(-3e-10)) == 1.0
    assert seconds_to_ms((T0 + 0.000284) - T0) == 0.284
    assert fmt_ms(1234.5, grouped=True) == "1,234.500"
    assert math.isnan(ms(float("nan")))


def test_histograms_count_whole_microseconds() -> None:
    h = MarkHistograms()
    h.record("answer", (T0 + 0.000284) - T0)  # 283.99999... µs: int() would say 283
    row = h.summary()["answer"]
    assert row["p50"] == row["min"] == row["max"] == 0.284


def _decimals_ok(value: Any) -> bool:
    return isinstance(value, int) or (value >= 0 and round(value, 3) == value)


def test_summary_json_shows_microseconds_without_noise(run_dir: Path) -> None:
    s = build_summary(run_dir)
    row = s["latency"]["answer"]
    assert row["count"] == 3
    assert row["p50"] == 0.284 and row["max"] == 0.512  # not 0 or 1 ms, not 0.283
    assert row["min"] == 0.001  # the noise mark counts as the histogram's 1 µs floor
    assert row["mean"] == 0.266  # (1 + 284 + 512) / 3 µs, rounded to the µs
    assert all(_decimals_ok(v) for v in row.values()), row
    g = s["generator"]
    assert g["lateness_ms"] == {"p50": 0.0, "p99": 0.0, "max": 0.0}
    assert g["loop_lag_max_ms"] == 0.3 and g["workers"][0]["loop_lag_max_ms"] == 0.3
    text = (run_dir / "summary.json").read_text()
    latency_text = json.dumps(json.loads(text)["latency"])
    assert not re.search(r"\d\.\d{4,}|e-\d|-0\.0", latency_text), latency_text
    assert not re.search(r"\d\.\d{4,}|e-\d|-0\.0", json.dumps(json.loads(text)["generator"]))


def test_report_html_shows_microseconds(run_dir: Path) -> None:
    build_summary(run_dir)
    page = write_report(run_dir).read_text()
    table = page[page.index("Latency percentiles (ms)"):]
    table = table[:table.index("</table>")]
    cells = re.findall(r'<td class="n">([^<]*)</td>', table)
    assert cells == ["3", "0.001", "0.266", "0.284", "0.512", "0.512", "0.512", "0.512", "0.512"]
    assert "-0.000" not in page
    assert "0.512 ms" in page  # the headline card (answer p95)


def test_load_run_marks_in_ms_at_microsecond_resolution(run_dir: Path) -> None:
    marks = load_run(run_dir).calls.sort_values("call_number")["mark_ms.answer"].tolist()
    assert marks == [0.284, 0.512, 0.0]


def _view(tty: bool) -> LiveView:
    view = LiveView({"scenario_name": "x", "target_text": "127.0.0.1:5060", "rate": 100.0},
                    tty=tty)
    return view


def test_plain_live_line_shows_microseconds(capsys: pytest.CaptureFixture[str]) -> None:
    view = _view(tty=False)
    view.snapshot(_snapshot(1.0))
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "answer p50 0.284 ms  p95 0.512 ms  p99 0.512 ms" in line, line


def test_rich_panel_shows_microseconds() -> None:
    view = _view(tty=True)
    view.snapshot(_snapshot(1.0))  # not started: nothing is drawn yet
    console = Console(record=True, width=200, force_terminal=True)
    console.print(view._render())
    text = console.export_text()
    assert "answer p50 0.284 ms  p95 0.512 ms  p99 0.512 ms" in text, text
