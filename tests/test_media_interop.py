"""RTP against a real peer: SIPp's built-in UAS with -rtp_echo returns our packets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mediahelpers import media_call, read_records
from tests.peers import free_port, sipp_uas

ROOT = Path(__file__).resolve().parent.parent

SCENARIO = media_call("media-vs-sipp", "{codec: PCMU, play: tone}", pause="1s",
                      check="{min_packets: 40, max_loss: 0, min_mos: 4.3}")


@pytest.mark.peer
@pytest.mark.timeout(120)
def test_sipp_rtp_echo_returns_every_packet(tmp_path: Path) -> None:
    port = free_port("udp")
    media_port = free_port("udp")
    scenario = tmp_path / "media.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SIPLOAD_COMPILE": "0"}
    with sipp_uas(port, extra_args=["-rtp_echo", "-mp", str(media_port)]):
        subprocess.run([sys.executable, "-m", "sipload", "run", str(scenario), "--target",
                        f"127.0.0.1:{port}", "--calls", "4", "--rate", "10", "--out", str(out)],
                       check=False, env=env, timeout=90, capture_output=True)
    rows = read_records(out)
    assert len(rows) == 4
    for row in rows:
        assert row["result"] == "success", row["detail"]
        # SIPp echoes from one port for every call: only our SSRC tells the calls apart
        assert row["media_sent"] >= 45
        assert row["media_received"] >= row["media_sent"] - 3
        assert row["media_ssrc_changes"] == 0 and row["media_foreign"] == 0
