"""report.html (self-contained, escaped), junit.xml, compare, and the report/compare CLI."""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from sipload.cli import main
from sipload.report import build_summary, write_junit, write_report
from sipload.report.compare import (
    CompareError,
    compare_runs,
    format_comparison,
    min_samples,
    parse_min_delta,
    parse_tolerance,
    write_comparison,
)
from sipload.report.junit import JUnitCase, junit_xml
from sipload.report.synthetic import HOSTILE, make_run


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "run"
    make_run(path, calls=600, rate=100.0, workers=2, hostile=True, in_flight=2,
             failures={"timeout": 0.03, "call_rejected": 0.03, "unexpected_message": 0.02})
    plan = json.loads((path / "plan.json").read_text())
    plan["command"] = f"sipload run {HOSTILE}.yaml"
    (path / "plan.json").write_text(json.dumps(plan))
    with (path / "scenario.yaml").open("a") as f:
        f.write(f"# {HOSTILE}\n")
    return path


@pytest.fixture(scope="module")
def page(hostile: Path) -> str:
    build_summary(hostile, thresholds=["answer.p95<1ms", "asr>=0.5"])
    return write_report(hostile).read_text(encoding="utf-8")


EXTERNAL = re.compile(r"""(?:src|href|xlink:href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def test_report_is_self_contained(page: str) -> None:
    assert not EXTERNAL.search(page)
    assert "@import" not in page and not re.search(r"url\(\s*['\"]?(?:https?:)?//", page)
    assert "<link" not in page.lower()
    images = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert len(images) >= 6 and all(s.startswith("data:image/png;base64,") for s in images)


def test_everything_from_the_wire_is_escaped(page: str) -> None:
    assert "<script" not in page.lower()  # the report runs no script of its own either
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in page
    assert page.count("&lt;script&gt;") >= 10  # detail, call-id, labels, command, scenario


def test_report_content(page: str) -> None:
    for needle in ('id="verdict"', ">FAIL<", "answer.p95&lt;1ms", "Latency percentiles",
                   "call_rejected", "timeout", "unexpected_message", "Failed calls",
                   "<svg", "180 INVITE", "486 INVITE", "scenario.yaml", "generator"):
        assert needle in page, needle
    # one ladder per failure reason first, at most ten
    heads = re.findall(r"<h3>call \d+ \(worker \d+\): (\w+)</h3>", page)
    assert 3 <= len(heads) <= 10
    assert heads[:3] == sorted(set(heads[:3]), key=heads[:3].index)
    assert {"timeout", "call_rejected", "unexpected_message"} == set(heads[:3])


def test_write_report_builds_a_missing_summary(tmp_path: Path) -> None:
    make_run(tmp_path, calls=100, rate=50.0, workers=1)
    out = write_report(tmp_path)
    assert out.name == "report.html" and (tmp_path / "summary.json").exists()
    assert "No failed calls" in out.read_text() or "Failed calls" in out.read_text()


def test_junit(hostile: Path) -> None:
    summary = build_summary(hostile, thresholds=["answer.p95<1ms", "asr>=0.5"])
    path = write_junit(hostile, summary)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "2" and root.get("failures") == "1"
    cases = root.findall("./testsuite/testcase")
    assert [c.get("classname") for c in cases] == ["thresholds", "thresholds"]
    assert [c.get("name") for c in cases] == ["answer.p95<1ms", "asr>=0.5"]
    failure = cases[0].find("failure")
    assert failure is not None and cases[1].find("failure") is None
    measured = summary["latency"]["answer"]["p95"]
    assert f"{measured:.3f} ms" in (failure.get("message") or "")


def test_junit_more_suites_and_escaping() -> None:
    data = junit_xml([JUnitCase("conformance.invite", "a<b&\"c\"", failure="got <486>")])
    root = ET.fromstring(data)
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "conformance.invite"
    case = suite.find("testcase")
    assert case is not None and case.get("name") == 'a<b&"c"'
    empty = ET.fromstring(junit_xml([]))
    assert empty.get("tests") == "0" and empty.find("testsuite") is not None


# ----------------------------------------------------------------------------- compare


@pytest.fixture(scope="module")
def base_summary(hostile: Path) -> dict[str, Any]:
    return build_summary(hostile, write=False)


def _status(result: dict[str, Any], metric: str) -> str:
    return next(m["status"] for m in result["metrics"] if m["metric"] == metric)


def test_compare_same_run_has_no_regression(base_summary: dict[str, Any]) -> None:
    r = compare_runs(base_summary, base_summary)
    assert not r["regressed"] and r["regressions"] == []
    assert _status(r, "answer.p95") == "same"


def test_compare_directions(base_summary: dict[str, Any]) -> None:
    b = copy.deepcopy(base_summary)
    b["latency"]["answer"]["p95"] *= 1.25
    b["latency"]["pdd"]["p50"] *= 1.05  # within tolerance
    b["latency"]["call"]["p90"] *= 0.5  # better
    b["latency"]["call"]["p99_9"] *= 2.0  # worse, but too few calls to judge a p99.9
    b["asr"] *= 0.8
    b["rate"]["achieved"] *= 1.5  # better: higher rate
    b["latency"]["bye"]["max"] *= 10  # max is shown, not judged
    r = compare_runs(base_summary, b, tolerance=0.10)
    assert r["regressed"]
    assert set(r["regressions"]) == {"answer.p95", "asr"}
    assert _status(r, "pdd.p50") == "same"
    assert _status(r, "call.p90") == "improvement"
    assert _status(r, "call.p99_9") == "too_few_samples"
    assert _status(r, "rate.achieved") == "improvement"
    assert _status(r, "bye.max") == "info"
    assert compare_runs(base_summary, b, tolerance=0.30)["regressions"] == []
    worse_rate = copy.deepcopy(base_summary)
    worse_rate["rate"]["achieved"] *= 0.5
    worse_rate["failed"]["rate"] = (base_summary["failed"]["rate"] or 0) + 0.05
    r2 = compare_runs(base_summary, worse_rate)
    assert set(r2["regressions"]) == {"rate.achieved", "failed.rate"}


def test_compare_noise_floor_and_missing(base_summary: dict[str, Any]) -> None:
    a = copy.deepcopy(base_summary)
    a["failed"]["rate"] = 0.0
    b = copy.deepcopy(a)
    b["failed"]["rate"] = 0.00001  # from zero, but below the 0.01-point floor
    del b["latency"]["setup"]
    r = compare_runs(a, b)
    assert _status(r, "failed.rate") == "same"
    assert _status(r, "setup.p95") == "missing"


def test_compare_floors_metrics_and_sample_sizes(base_summary: dict[str, Any]) -> None:
    a = copy.deepcopy(base_summary)
    b = copy.deepcopy(base_summary)
    a["latency"]["answer"]["p95"] = 4.999
    b["latency"]["answer"]["p95"] = 5.999  # +20%, but one millisecond: noise
    assert _status(compare_runs(a, b), "answer.p95") == "same"
    b["latency"]["answer"]["p95"] = 7.5
    assert _status(compare_runs(a, b), "answer.p95") == "regression"
    r = compare_runs(a, b, floors={"latency": 5.0})
    assert _status(r, "answer.p95") == "same" and r["floors"]["latency"] == 5.0
    # only what is asked is judged
    b["asr"] = (a["asr"] or 1.0) * 0.5
    r = compare_runs(a, b, metrics=["asr"])
    assert r["regressions"] == ["asr"] and _status(r, "answer.p95") == "info"
    with pytest.raises(CompareError, match=r"answr\.p95"):
        compare_runs(a, b, metrics=["answr.p95"])
    # sample sizes: p50 needs 20, p99 1,000, p99.9 10,000 (10 beyond the percentile)
    assert [min_samples(s) for s in ("p50", "p90", "p95", "p99", "p99_9")] == \
        [20, 100, 200, 1000, 10000]
    count = a["latency"]["answer"]["count"]
    r = compare_runs(a, b, tail_samples=count)  # p95 now needs 20x the calls
    assert _status(r, "answer.p95") == "too_few_samples"
    assert "answer.p95" not in r["regressions"]


@pytest.mark.parametrize(("text", "parsed"), [
    ("2ms", ("latency", 2.0)), ("0.5s", ("latency", 500.0)), ("0.5%", ("ratio", 0.005)),
    ("5/s", ("rate", 5.0)), ("3", ("count", 3.0))])
def test_parse_min_delta(text: str, parsed: tuple[str, float]) -> None:
    kind, value = parse_min_delta(text)
    assert kind == parsed[0] and value == pytest.approx(parsed[1])


def test_parse_min_delta_errors() -> None:
    for bad in ("fast", "-1ms", "ms", "1h"):
        with pytest.raises(CompareError):
            parse_min_delta(bad)


def test_compare_output_has_units(base_summary: dict[str, Any]) -> None:
    text = format_comparison(compare_runs(base_summary, base_summary))
    line = next(x for x in text.splitlines() if x.startswith("answer.p95 "))
    assert line.count(" ms") == 2
    assert next(x for x in text.splitlines() if x.startswith("asr ")).count(" %") == 2
    assert "calls/s" in next(x for x in text.splitlines() if x.startswith("rate.achieved"))


def test_compare_writes_files(base_summary: dict[str, Any], tmp_path: Path) -> None:
    r = compare_runs(base_summary, base_summary)
    j, h = write_comparison(r, tmp_path / "out")
    assert json.loads(j.read_text())["regressed"] is False
    html = h.read_text()
    assert "no regression" in html and not EXTERNAL.search(html) and "<script" not in html


@pytest.mark.parametrize(("text", "value"), [("10%", 0.1), ("0.25", 0.25), ("0%", 0.0)])
def test_parse_tolerance(text: str, value: float) -> None:
    assert parse_tolerance(text) == pytest.approx(value)


def test_parse_tolerance_errors() -> None:
    for bad in ("ten", "-5%", ""):
        with pytest.raises(ValueError):
            parse_tolerance(bad)


# ----------------------------------------------------------------------------- CLI


def test_cli_report_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    make_run(run, calls=300, rate=100.0, workers=2, allow_failures=0.05)
    assert main(["report", str(run), "--threshold", "asr>=0.5"]) == 0
    out = capsys.readouterr().out
    assert "PASS asr>=0.5" in out
    for name in ("summary.json", "report.html", "junit.xml"):
        assert (run / name).exists()
    assert main(["report", str(run), "--threshold", "answer.p95<1ms", "--threshold",
                 "setup.p95<1s", "-q"]) == 1  # setup: a mark the scenario names
    out = capsys.readouterr().out
    assert "FAIL answer.p95<1ms" in out and "PASS setup.p95<1s" in out
    assert main(["report", str(run), "--threshold", "answr.p95<1ms"]) == 2
    assert "unknown metric 'answr.p95'" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    with pytest.raises(SystemExit) as e:
        main(["report"])
    assert e.value.code == 2


def test_cli_compare_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make_run(a, calls=400, rate=100.0, workers=2, failures={"timeout": 0.01})
    make_run(b, calls=400, rate=100.0, workers=2, failures={"timeout": 0.20})
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(a), "--out", str(out)]) == 0
    assert (out / "compare.html").exists() and (out / "compare.json").exists()
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "--tolerance", "10%", "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert "REGRESSION" in text and "failed.rate" in text and "asr" in text
    assert json.loads((out / "compare.json").read_text())["regressed"] is True
    assert main(["compare", str(a), str(b), "--tolerance", "lots"]) == 2
    assert main(["compare", str(a), str(tmp_path / "none")]) == 2
    assert (b / "compare.json").exists() is False
