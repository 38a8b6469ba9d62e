"""``sipload parse``: output, JSON fields and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sipload.cli import main

TORTURE = Path(__file__).parent / "data" / "rfc4475"


def test_valid_file_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", str(TORTURE / "wsinv.dat")]) == 0
    assert "valid request INVITE" in capsys.readouterr().out


def test_invalid_file_exits_1_and_names_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", str(TORTURE / "badvers.dat"), str(TORTURE / "esc01.dat")]) == 1
    out = capsys.readouterr().out
    assert "invalid request" in out and "505" in out


def test_json_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", "--json", str(TORTURE / "insuf.dat"), str(TORTURE / "bigcode.dat")]) == 1
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[0]["valid"] is True and lines[0]["status_code"] == 400
    assert lines[0]["kind"] == "request" and lines[0]["method"] == "INVITE"
    assert lines[1]["valid"] is False and lines[1]["kind"] == "response"
    for key in ("file", "index", "valid", "kind", "method", "status", "call_id", "reason",
                "status_code"):
        assert key in lines[0]


def test_stream_of_several_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = (TORTURE / "esc01.dat").read_bytes()
    f = tmp_path / "stream.sip"
    f.write_bytes(one + one)
    assert main(["parse", "--json", str(f)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(x)["index"] for x in lines] == [0, 1]


def test_stdin_and_usage_errors() -> None:
    data = (TORTURE / "wsinv.dat").read_bytes()
    r = subprocess.run([sys.executable, "-m", "sipload", "parse", "-"], input=data,
                       capture_output=True, check=False)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "sipload", "parse"], capture_output=True,
                       check=False)
    assert r.returncode == 2
    r = subprocess.run([sys.executable, "-m", "sipload", "parse", "/nonexistent/x"],
                       capture_output=True, check=False)
    assert r.returncode == 2
