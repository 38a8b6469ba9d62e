"""Media against real peers: SIPp's rtp_stream, baresip, and Kamailio with rtpengine.

Each test places a few short calls and reads sipload's per-call records
(``calls.arrows``): the figures must show that audio arrived from the peer (packets,
loss 0 on loopback, a high MOS), not merely that the SIP dialogue succeeded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.ipc as ipc
import pytest

from tests.bgproc import Background, run, sipload
from tests.mediahelpers import (
    CLEAN_AUDIO,
    TO_PEER,
    dominant_hz,
    media_call,
    pcm_wav,
    read_records,
    ulaw_wav,
)
from tests.peers import (
    BaresipProcess,
    RtpengineProcess,
    free_port,
    kamailio_rtpengine,
    require,
    sipp_uac,
)

ROOT = Path(__file__).resolve().parent.parent
ECHO_UAS = ROOT / "scenarios" / "media_call_uas.yaml"


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


BARESIP_CALL = media_call("media-vs-baresip", "{codec: PCMU, play: tone, record: RECORD}",
                          pause="1500ms", check=CLEAN_AUDIO, header=TO_PEER)


@pytest.mark.peer
@pytest.mark.timeout(120)
def test_baresip_file_source_reaches_sipload(tmp_path: Path) -> None:
    """baresip auto-answers playing a 600 Hz WAV (aufile); sipload calls it playing its
    1004 Hz tone: every packet arrives (loss 0, MOS > 4.3), and the audio sipload
    recorded is baresip's 600 Hz, not an echo of its own tone."""
    require("baresip")
    wav = tmp_path / "source.wav"
    pcm_wav(wav, 600, seconds=4)  # aufile ends the call at the end of the file
    record = tmp_path / "rec"
    scenario = tmp_path / "call.yaml"
    scenario.write_text(BARESIP_CALL.replace("RECORD", str(record)))
    out = tmp_path / "run"
    with BaresipProcess(audio_file=wav) as b:
        done = run(sipload("run", scenario, "--target", f"127.0.0.1:{b.port}", "--calls", 2,
                           "--rate", 2, "--out", out, "--quiet"), timeout=90)
        log = b.describe()
    assert done.returncode == 0, done.stdout + done.stderr + log
    rows = read_records(out)
    assert len(rows) == 2
    for row in rows:
        assert row["result"] == "success", row["detail"]
        assert row["media_received"] >= 70, row  # 1.5 s of 20 ms packets
        assert row["media_lost"] == 0 and row["media_malformed"] == 0
        assert row["media_foreign"] == 0 and row["media_ssrc_changes"] == 0
        assert row["media_mos"] > 4.3
    recordings = sorted(record.glob("*.wav"))
    assert len(recordings) == 2, recordings
    for path in recordings:
        assert abs(dominant_hz(path) - 600) < 5, path


RTPENGINE_CALL = media_call("media-via-rtpengine", "{codec: PCMU, play: tone}",
                            pause="1500ms", check=CLEAN_AUDIO)


def _sdp_audio(body: str) -> tuple[str, int]:
    """The connection address and audio port of an SDP body."""
    address = ""
    port = -1
    for line in body.splitlines():
        if line.startswith("c=IN IP4 "):
            address = line.split()[2]
        elif line.startswith("m=audio "):
            port = int(line.split()[1])
    return address, port


@pytest.mark.peer
@pytest.mark.timeout(120)
def test_media_anchored_by_kamailio_and_rtpengine(tmp_path: Path) -> None:
    """sipload -> Kamailio (rtpengine_manage) -> sipload uas (echo): the SDP answer the
    caller sees carries rtpengine's address and port, not the callee's; every packet
    goes through rtpengine both ways (its relayed-packet count is the sum of what
    both sipload sides received), with loss 0 and a MOS above 4.3 on both sides."""
    require("kamailio")
    uas_port = free_port("udp")
    uas_out = tmp_path / "uas"
    scenario = tmp_path / "call.yaml"
    scenario.write_text(RTPENGINE_CALL)
    out = tmp_path / "run"
    with (
        RtpengineProcess() as relay,
        Background(sipload("uas", ECHO_UAS, "--listen", f"127.0.0.1:{uas_port}", "--out",
                           uas_out), ready="listening on") as uas,
        kamailio_rtpengine(uas_port, relay) as proxy,
    ):
        done = run(sipload("run", scenario, "--target", proxy.address, "--calls", 3,
                           "--rate", 5, "--trace", "all", "--out", out, "--quiet"), timeout=90)
        totals = relay.ng({"command": "statistics"})["statistics"]["totalstatistics"]
        uas.stop()
        log = relay.describe() + proxy.describe()
    assert done.returncode == 0, done.stdout + done.stderr + log
    calls = read_records(out)
    answered = read_records(uas_out)
    assert len(calls) == 3 and len(answered) == 3
    # the answers the caller got point at rtpengine; the offers the callee got too
    with (out / "traces.arrows").open("rb") as f:
        traces = ipc.open_stream(f).read_all().to_pylist()
    answers = [_sdp_audio(bytes(t["data"]).decode().split("\r\n\r\n", 1)[1]) for t in traces
               if t["direction"] == "in" and bytes(t["data"]).startswith(b"SIP/2.0 200")
               and b"application/sdp" in bytes(t["data"])]
    assert len(answers) == 3
    for address, port in answers:
        assert address == "127.0.0.1" and relay.owns(port), (address, port, relay.port_min)
    for row in calls + answered:
        assert row["result"] == "success", row["detail"]
        assert row["media_received"] >= 70, row
        assert row["media_lost"] == 0 and row["media_malformed"] == 0
        assert row["media_foreign"] == 0
        assert row["media_mos"] > 4.3
    # the run's summary says the same: 3 streams, every packet received, a clean MOS
    media = json.loads((out / "summary.json").read_text())["media"]
    assert media["streams"] == 3 and media["lost"] == 0 and media["loss_rate"] == 0
    assert media["received"] == sum(int(r["media_received"]) for r in calls)
    assert media["mos"]["p5"] > 4.3
    relayed = int(totals["relayedpackets_user"]) + int(totals["relayedpackets_kernel"])
    received = sum(int(r["media_received"]) for r in calls + answered)
    # rtpengine relayed what both sides received (RTCP BYEs and in-flight packets aside)
    assert received <= relayed <= received + 20, (relayed, received)
    print(f"rtpengine relayed {relayed} packets; sipload received {received}")
