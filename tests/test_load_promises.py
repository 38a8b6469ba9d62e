"""The README's load promises, each checked on a real ``sipload run`` (loopback, bounded).

The open model (uniform and Poisson intended times, a ramp), the ``--concurrent``
cap and its dropped count, the closed model ``--users``, thresholds on the command
line and in the scenario (exit 1; an unknown metric exit 2 before anything is sent),
exit 2 on a bad flag, ``--transport tcp``, the plain progress line agreeing with the
summary, and summary percentiles agreeing with the calls' own marks.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from sipload.report import load_run
from tests.test_run_gate import ANSWER, SCENARIOS, pair, sipload, summary

BASIC = SCENARIOS / "basic_call.yaml"


def _run(tmp: Path, scenario: Path, *args: object, code: int = 0) -> tuple[Path, str]:
    out = tmp / f"run{len(list(tmp.glob('run*')))}"
    r = sipload("run", scenario, "--workers", 1, "--out", out, *args)
    assert r.returncode == code, r.stdout + r.stderr
    return out, r.stdout + r.stderr


def _long(tmp: Path, hold: str) -> Path:
    path = pair(tmp, f"hold{hold}", ANSWER.format(pause=""))
    path.write_text(path.read_text().replace("pause: 10ms", f"pause: {hold}"))
    return path


def test_uniform_open_model_intended_times_and_the_live_line(tmp_path: Path) -> None:
    out, text = _run(tmp_path, BASIC, "--calls", 60, "--rate", 100)
    calls = load_run(out).calls.sort_values("intended_start")
    gaps = np.diff(calls["intended_start"].to_numpy())
    assert gaps == pytest.approx(np.full(59, 0.010), abs=1e-9)  # exactly 1/rate apart
    lateness = (calls["actual_start"] - calls["intended_start"]).to_numpy()
    s = summary(out)
    # lateness is measured from the intended time, never hidden (how small it is is a
    # matter for bench/ on a quiet machine, not for a test on a shared one)
    late_ms = np.maximum(lateness, 0.0) * 1000.0
    # (in ms rounded to the microsecond, as every timing value shown)
    assert s["generator"]["lateness_ms"]["p50"] == pytest.approx(np.percentile(late_ms, 50),
                                                                abs=5e-4)
    assert s["generator"]["lateness_ms"]["max"] == pytest.approx(late_ms.max(), abs=5e-4)
    assert s["rate"]["target"] == 100.0
    assert s["rate"]["achieved"] == pytest.approx(
        59 / float(np.ptp(calls["actual_start"].to_numpy())))
    # the last plain progress line (stdout is not a terminal) agrees with the summary
    lines = [x for x in text.splitlines() if re.match(r"sipload: +[0-9.]+s started", x)]
    assert lines, text
    m = re.search(r"started (\d+) ok (\d+) failed (\d+) .* retrans (\d+)", lines[-1])
    assert m is not None, lines[-1]
    assert [int(g) for g in m.groups()] == [
        s["calls"]["attempted"], s["calls"]["succeeded"], s["calls"]["failed"],
        s["retransmissions"]["count"]]
    # its latency figures are the summary's, to the microsecond (0.284 ms, not 0.3 or 0)
    m = re.search(r"answer p50 (\d+\.\d{3}) ms  p95 (\d+\.\d{3}) ms  p99 (\d+\.\d{3}) ms$",
                  lines[-1])
    assert m is not None, lines[-1]
    answer = s["latency"]["answer"]
    assert [float(g) for g in m.groups()] == [answer["p50"], answer["p95"], answer["p99"]]


def test_poisson_open_model_intended_gaps_are_exponential(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, BASIC, "--calls", 400, "--rate", 200, "--arrival", "poisson",
                  "--seed", 7, "--quiet")
    starts = np.sort(load_run(out).calls["intended_start"].to_numpy())
    gaps = np.diff(starts)
    result = stats.kstest(gaps, "expon", args=(0.0, 1.0 / 200))
    assert result.pvalue > 0.01, result
    assert stats.kstest(gaps, "uniform", args=(0.0, 2.0 / 200)).pvalue < 0.01


def test_ramp_raises_the_rate_each_interval(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, BASIC, "--duration", "3s", "--rate", 20, "--rate-increase", 20,
                  "--rate-interval", "1s", "--rate-max", 60, "--quiet")
    starts = load_run(out).calls["intended_start"].to_numpy()
    t0 = starts.min()
    per_second = [int(((starts - t0 >= k) & (starts - t0 < k + 1)).sum()) for k in range(3)]
    assert per_second == [pytest.approx(n, abs=1) for n in (20, 40, 60)], per_second


def test_concurrent_cap_drops_and_counts(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, _long(tmp_path, "1500ms"), "--calls", 20, "--rate", 100,
                  "--concurrent", 5, "--allow-failures", "100%", "--quiet")
    s = summary(out)
    assert s["concurrency"]["max"] == 5
    assert s["generator"]["dropped"] == 15
    assert s["failed"]["by_reason"] == {"generator_overload": 15}
    assert s["calls"]["succeeded"] == 5


def test_closed_model_users(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, _long(tmp_path, "200ms"), "--calls", 12, "--rate", 100,
                  "--users", 3, "--quiet")
    s = summary(out)
    assert s["calls"]["succeeded"] == 12
    assert s["concurrency"]["max"] == 3
    calls = load_run(out).calls.sort_values("actual_start")
    # each of the 3 users starts its next call only when its previous one ended
    ends = calls["end"].to_numpy()
    starts = calls["actual_start"].to_numpy()
    for k in range(3, 12):
        assert (ends[:k] <= starts[k] + 1e-3).sum() >= k - 2


def test_thresholds_on_the_command_line_and_in_the_scenario(tmp_path: Path) -> None:
    out, text = _run(tmp_path, BASIC, "--calls", 10, "--rate", 50, "--quiet",
                     "--threshold", "answer.p50<0.001ms", "--threshold", "asr>=0.9", code=1)
    s = summary(out)
    verdicts = {v["threshold"]: v["passed"] for v in s["thresholds"]}
    assert verdicts == {"answer.p50<0.001ms": False, "asr>=0.9": True}
    assert (s["exit_code"], s["passed"], s["gate"]["verdict"]) == (1, False, "passed")
    junit = (out / "junit.xml").read_text()
    assert 'failures="1"' in junit and "answer.p50&lt;0.001ms" in junit
    assert "threshold FAILED" in text
    scen = tmp_path / "thr.yaml"
    scen.write_text(BASIC.read_text().replace(
        "counterpart: basic_call_uas.yaml",
        f"counterpart: {SCENARIOS / 'basic_call_uas.yaml'}\nthresholds: ['answer.p50<0.001ms']"))
    out, _ = _run(tmp_path, scen, "--calls", 5, "--rate", 50, "--quiet", code=1)
    assert [v["passed"] for v in summary(out)["thresholds"]] == [False]


def test_usage_errors_exit_2_and_send_nothing(tmp_path: Path) -> None:
    for args in (("--threshold", "answr.p95<1ms"), ("--rate", "-1"),
                 ("--allow-failures", "2")):
        out = tmp_path / "never"
        r = sipload("run", BASIC, "--calls", 5, "--out", out, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert not out.exists(), args  # no run directory: nothing was sent


def test_tcp_transport_from_the_command_line(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, BASIC, "--calls", 10, "--rate", 50, "--transport", "tcp",
                  "--quiet")
    s = summary(out)
    assert s["calls"]["succeeded"] == 10 and s["exit_code"] == 0


def test_summary_percentiles_are_the_records_marks(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, BASIC, "--calls", 200, "--rate", 200, "--quiet")
    s = summary(out)
    calls = load_run(out).calls
    for mark in ("answer", "pdd", "bye"):
        values = np.sort(calls[f"mark_ms.{mark}"].dropna().to_numpy())
        row = s["latency"][mark]
        assert row["count"] == len(values) == 200
        # HdrHistogram keeps 3 significant digits: each percentile is the record's own
        # value at that rank, within 0.1% (and 1 µs)
        for stat, p in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0)):
            rank = max(int(p * len(values) / 100 + 0.5), 1) - 1
            assert row[stat] == pytest.approx(values[rank], rel=1e-3, abs=1e-3), (mark, stat)
        assert row["max"] == pytest.approx(values[-1], rel=1e-3, abs=1e-3)


def test_codes_per_second_count_responses_when_they_arrive(tmp_path: Path) -> None:
    """Calls held 2 s: their 180s arrive in the first second, long before the calls end,
    and the snapshots (the per-second chart) count them there."""
    out, _ = _run(tmp_path, _long(tmp_path, "2s"), "--calls", 5, "--rate", 50, "--quiet")
    intervals = load_run(out).intervals.sort_values("t")
    first = intervals.iloc[0]
    assert first["t"] < 1.9, intervals[["t", "codes"]]
    assert first["codes"].get("180") == 5 and first["succeeded"] == 0
    calls = load_run(out).calls
    assert (calls["end"] > first["t"]).all()  # no call had ended by then
    total: dict[str, int] = {}
    for codes in intervals["codes"]:
        for code, n in codes.items():
            total[code] = total.get(code, 0) + int(n)
    assert total == summary(out)["codes"]


def test_inject_from_the_command_line(tmp_path: Path) -> None:
    """Each call carries its CSV row (SEQUENTIAL): the callee checks the header and
    declines a call without it, so every call succeeding proves the rows went out."""
    uas = ANSWER.format(pause="").replace(
        "  - recv: INVITE\n",
        "  - recv: INVITE\n    check: [{name: csv-user, header: X-User, matches: '^u[0-9]$'}]\n")
    scenario = pair(tmp_path, "inject", uas)
    scenario.write_text(scenario.read_text().replace(
        "  - send: INVITE\n", "  - send: INVITE\n    headers: {X-User: '${field0}'}\n", 1))
    csv = tmp_path / "users.csv"
    csv.write_text("SEQUENTIAL\nu1;x\nu2;y\nu3;z\n")
    out, _ = _run(tmp_path, scenario, "--calls", 6, "--rate", 30, "--inject", csv, "--quiet")
    assert summary(out)["calls"]["succeeded"] == 6
    # a template naming a field the CSV lacks is refused before anything is sent
    scenario.write_text(scenario.read_text().replace("${field0}", "${field5}"))
    r = sipload("run", scenario, "--calls", 1, "--inject", csv, "--out", tmp_path / "no")
    assert r.returncode == 2 and "field5" in r.stderr and not (tmp_path / "no").exists()
