"""Media against real peers: SIPp's rtp_stream, baresip, and Kamailio with rtpengine.

Each test places a few short calls and reads sipload's per-call records
(``calls.arrows``): the figures must show that audio arrived from the peer (packets,
loss 0 on loopback, a high MOS), not merely that the SIP dialogue succeeded.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pyarrow.ipc as ipc
import pytest

from sipload.media import g711, source
from tests.bgproc import Background, sipload
from tests.peers import free_port, sipp_uac

ROOT = Path(__file__).resolve().parent.parent
ECHO_UAS = ROOT / "scenarios" / "media_call_uas.yaml"


def read_records(out: Path) -> list[dict[str, Any]]:
    with (out / "calls.arrows").open("rb") as f:
        rows: list[dict[str, Any]] = ipc.open_stream(f).read_all().to_pylist()
    return rows


def ulaw_wav(path: Path, frequency: int = 440) -> int:
    """Write one second of a tone as a G.711 u-law WAV (format 7); returns its payload bytes."""
    data = g711.encode(source.tone_samples(frequency), "PCMU")
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return len(data)


@pytest.mark.peer
@pytest.mark.timeout(120)
def test_sipp_rtp_stream_reaches_sipload_uas(tmp_path: Path) -> None:
    """SIPp places 3 overlapping calls, each playing a u-law WAV with rtp_stream for 1.5 s
    from ONE port for all calls (no a=ssrc): sipload's echoing UAS attributes every
    packet to its call (by the SSRC it latched) with no loss and a MOS above 4.3."""
    port = free_port("udp")
    out = tmp_path / "uas"
    sipp_dir = tmp_path / "sipp"
    sipp_dir.mkdir()
    ulaw_wav(sipp_dir / "tone.ulaw.wav")
    with Background(sipload("uas", ECHO_UAS, "--listen", f"127.0.0.1:{port}", "--out", out),
                    ready="listening on") as uas:
        uac = sipp_uac(f"127.0.0.1:{port}", "media_uac_rtp_stream.xml", calls=3, rate=5,
                       extra_args=["-mp", str(free_port("udp"))], workdir=sipp_dir, limit=40)
        with uac:
            code = uac.wait(45)
        assert code == 0, uac.describe()
        uas.stop()
    assert "3 calls, 3 succeeded" in uas.output, uas.output
    rows = read_records(out)
    assert len(rows) == 3
    for row in rows:
        assert row["result"] == "success", row["detail"]
        # 1.5 s of 20 ms packets: 75, one either way for where the pause falls
        assert 70 <= row["media_received"] <= 77, row
        assert row["media_lost"] == 0 and row["media_malformed"] == 0
        assert row["media_ssrc_changes"] == 0 and row["media_foreign"] == 0
        assert row["media_sent"] == row["media_received"]  # every packet echoed
        assert row["media_mos"] > 4.3
