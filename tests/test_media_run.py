"""Whole runs with RTP: a media scenario against the embedded default UAS (echo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sipload.scenario.errors import ScenarioError
from sipload.scenario.loader import load_text
from tests.mediahelpers import media_call, read_records

ROOT = Path(__file__).resolve().parent.parent

SCENARIO = media_call("media-call", "{codec: PCMA, ptime: 20ms, play: tone}", pause="1s",
                      check="{min_packets: 30, max_loss: 1%, max_jitter: 30ms, min_mos: MOS}")


def run(tmp_path: Path, min_mos: str) -> list[dict[str, object]]:
    scenario = tmp_path / "media.yaml"
    scenario.write_text(SCENARIO.replace("MOS", min_mos))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SIPLOAD_COMPILE": "0"}
    subprocess.run([sys.executable, "-m", "sipload", "run", str(scenario), "--calls", "3",
                    "--rate", "10", "--out", str(out)], check=False, env=env, timeout=120,
                   capture_output=True)
    return read_records(out)


@pytest.mark.timeout(120)
def test_media_call_against_default_uas_echo(tmp_path: Path) -> None:
    rows = run(tmp_path, "4.0")
    assert len(rows) == 3
    for row in rows:
        assert row["result"] == "success", row["detail"]
        assert isinstance(row["media_sent"], float) and row["media_sent"] >= 45
        assert row["media_received"] >= row["media_sent"] - 3  # type: ignore[operator]
        assert row["media_lost"] == 0
        assert row["media_mos"] > 4.3  # type: ignore[operator]


@pytest.mark.timeout(120)
def test_failed_media_check_fails_the_call(tmp_path: Path) -> None:
    rows = run(tmp_path, "4.5")  # G.711 tops out at 4.41
    assert {r["failure"] for r in rows} == {"media_failed"}
    assert all("MOS" in str(r["detail"]) for r in rows)


def test_bad_media_config_names_the_place(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    text = SCENARIO.replace("play: tone", f"play: {bad}").replace("MOS", "4")
    with pytest.raises(ScenarioError, match="not a WAV file") as err:
        load_text(text, str(tmp_path / "s.yaml"))
    media_lines = [n for n, line in enumerate(text.splitlines(), 1) if line.startswith("media:")]
    assert media_lines == [err.value.line]
    with pytest.raises(ScenarioError, match="ptime"):
        load_text(SCENARIO.replace("20ms", "25ms").replace("MOS", "4"), "s.yaml")
    with pytest.raises(ScenarioError, match="media"):
        load_text(SCENARIO.replace("media: {codec: PCMA, ptime: 20ms, play: tone}\n", "")
                  .replace("MOS", "4"), "s.yaml")
