"""SRTP (SDES) against real peers: rtpengine bridging SRTP and RTP under Kamailio, and
baresip with its srtp module.

* Kamailio (``ci/kamailio/rtpengine.cfg`` with ``OFFER_FLAGS``) hands every SDP to
  rtpengine.  With ``RTP/AVP`` an SRTP offer from sipload reaches the callee as plain
  RTP and rtpengine answers the caller with RTP/SAVP and a key of its own; with
  ``RTP/SAVP`` a plain offer reaches an SRTP callee with rtpengine's twelve a=crypto
  lines (AEAD GCM, AES-256 and -192 first: sipload declines those line by line and
  takes tag 7, AES_CM_128_HMAC_SHA1_80).  rtpengine
  decrypts one leg and encrypts the other: had sipload's SRTP been wrong anywhere,
  nothing would arrive.
* baresip (``mediaenc=srtp-mand``) auto-answers sipload's SRTP offer and plays a 600 Hz
  WAV: sipload's recording of the decrypted audio is that tone.

Peers missing under CI=true fail these tests (tests/peers.py ``require``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.ipc as ipc
import pytest

from tests.bgproc import Background, run, sipload
from tests.mediahelpers import (
    CLEAN_AUDIO,
    TO_PEER,
    dominant_hz,
    media_answer,
    media_call,
    pcm_wav,
    read_records,
)
from tests.peers import BaresipProcess, RtpengineProcess, free_port, kamailio_rtpengine, require

CALL = media_call("srtp-call", "{codec: PCMU, play: tone MEDIA}", pause="2s",
                  check=CLEAN_AUDIO, header=TO_PEER)

ECHO = media_answer("echo", "{echo: true MEDIA}")

SRTP = ", srtp: sdes"


def _answers(out: Path) -> list[str]:
    """The SDP bodies of the 200s the caller received (its wire traces)."""
    with (out / "traces.arrows").open("rb") as f:
        traces: list[dict[str, Any]] = ipc.open_stream(f).read_all().to_pylist()
    return [bytes(t["data"]).decode().split("\r\n\r\n", 1)[1] for t in traces
            if t["direction"] == "in" and bytes(t["data"]).startswith(b"SIP/2.0 200")
            and b"application/sdp" in bytes(t["data"])]


def _audio(body: str) -> tuple[int, str, list[str]]:
    """The m=audio port and profile of an SDP body, and its a=crypto values."""
    port, proto = -1, ""
    crypto: list[str] = []
    for line in body.splitlines():
        if line.startswith("m=audio "):
            port, proto = int(line.split()[1]), line.split()[2]
        elif line.startswith("a=crypto:"):
            crypto.append(line[9:])
    return port, proto, crypto


@pytest.mark.peer
@pytest.mark.timeout(150)
@pytest.mark.parametrize(("caller_srtp", "flags"), [(True, "RTP/AVP"), (False, "RTP/SAVP")],
                         ids=["srtp-caller-rtp-callee", "rtp-caller-srtp-callee"])
def test_rtpengine_bridges_srtp_and_rtp(tmp_path: Path, caller_srtp: bool, flags: str) -> None:
    """sipload -> Kamailio + rtpengine -> sipload uas (echo), SRTP on one side only:
    both sides get every packet (loss 0, MOS > 4.3), the SRTP side counts no auth or
    replay failure, and rtpengine relayed what both received."""
    require("kamailio")
    uas_port = free_port("udp")
    (tmp_path / "call.yaml").write_text(CALL.replace(" MEDIA", SRTP if caller_srtp else ""))
    (tmp_path / "echo.yaml").write_text(ECHO.replace(" MEDIA", "" if caller_srtp else SRTP))
    out, uas_out = tmp_path / "run", tmp_path / "uas"
    with (
        RtpengineProcess() as relay,
        Background(sipload("uas", tmp_path / "echo.yaml", "--listen", f"127.0.0.1:{uas_port}",
                           "--out", uas_out), ready="listening on") as uas,
        kamailio_rtpengine(uas_port, relay, defines={"OFFER_FLAGS": f'"{flags}"'}) as proxy,
    ):
        done = run(sipload("run", tmp_path / "call.yaml", "--target", proxy.address,
                           "--calls", 3, "--rate", 5, "--trace", "all", "--out", out, "--quiet"),
                   timeout=90)
        totals = relay.ng({"command": "statistics"})["statistics"]["totalstatistics"]
        uas.stop()
        log = relay.describe() + proxy.describe() + uas.output
    calls, answered = read_records(out), read_records(uas_out)
    assert done.returncode == 0, (done.stdout + done.stderr + log + "\n"
                                  + "\n".join(f"{r['result']} {r['detail']} {r}"
                                               for r in calls + answered))
    assert len(calls) == 3 and len(answered) == 3
    srtp_rows, rtp_rows = (calls, answered) if caller_srtp else (answered, calls)
    for row in calls + answered:
        assert row["result"] == "success", row["detail"]
        assert row["media_received"] >= 70, row  # 2 s of 20 ms packets, less a slow start
        assert row["media_lost"] == 0 and row["media_malformed"] == 0
        # the caller's check asked 4.3 after 2 s; at the call's end a jitter spike of a
        # loaded host (two pure-Python siploads, Kamailio, rtpengine on 2 cores) can
        # cost a little: 4.07 was seen once at load 7
        assert row["media_mos"] > 4.0
    for row in srtp_rows:  # rtpengine answers our first line; its offers list _80 first
        assert row["media_srtp"] == 80, row
        assert row["media_srtp_auth_failures"] == 0 and row["media_srtp_replay_failures"] == 0
    for row in rtp_rows:
        assert row["media_srtp"] == 0, row
    # what the caller was answered: rtpengine's port, with its own key when SRTP
    answers = _answers(out)
    assert len(answers) == 3
    for body in answers:
        port, proto, crypto = _audio(body)
        assert relay.owns(port), (port, body)
        if caller_srtp:
            assert proto == "RTP/SAVP" and len(crypto) == 1, body
            assert crypto[0].split()[1] == "AES_CM_128_HMAC_SHA1_80", body  # our first line
        else:
            assert proto == "RTP/AVP" and not crypto, body
    media = json.loads((out / "summary.json").read_text())["media"]
    assert media["srtp"]["streams"] == (3 if caller_srtp else 0)
    relayed = int(totals["relayedpackets_user"]) + int(totals["relayedpackets_kernel"])
    received = sum(int(r["media_received"]) for r in calls + answered)
    # rtpengine relayed what both received, and a little more: RTCP BYEs and the packets
    # still on their way when each side stopped (more with SRTP on a loaded host)
    assert received <= relayed <= received * 1.1, (relayed, received)
    print(f"rtpengine ({flags} towards the callee) relayed {relayed} packets; sipload "
          f"received {received}")


@pytest.mark.peer
@pytest.mark.timeout(150)
@pytest.mark.parametrize("suite", ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"])
def test_baresip_answers_srtp_and_its_audio_decrypts(tmp_path: Path, suite: str) -> None:
    """baresip (srtp module, SRTP mandatory) answers sipload's offer of one suite and
    plays a 600 Hz WAV; every SRTP packet authenticates (loss 0, MOS > 4.3) and the
    audio sipload recorded after decrypting is baresip's 600 Hz."""
    require("baresip")
    wav = tmp_path / "source.wav"
    pcm_wav(wav, 600, seconds=4)
    record = tmp_path / "rec"
    (tmp_path / "call.yaml").write_text(CALL.replace(
        " MEDIA", f", record: {record}, srtp: sdes, srtp_suites: [{suite}]"))
    out = tmp_path / "run"
    with BaresipProcess(audio_file=wav, mediaenc="srtp-mand") as b:
        done = run(sipload("run", tmp_path / "call.yaml", "--target", f"127.0.0.1:{b.port}",
                           "--calls", 2, "--rate", 2, "--trace", "all", "--out", out,
                           "--quiet"), timeout=90)
        log = b.describe()
    assert done.returncode == 0, done.stdout + done.stderr + log
    assert f"SRTP is Enabled (cryptosuite={suite})" in log, log
    rows = read_records(out)
    assert len(rows) == 2
    for row in rows:
        assert row["result"] == "success", row["detail"]
        assert row["media_srtp"] == (80 if suite.endswith("_80") else 32)
        assert row["media_received"] >= 70 and row["media_lost"] == 0, row
        assert row["media_mos"] > 4.3 and row["media_srtp_replay_failures"] == 0
        # baresip sends one RTCP APP "PING" in the clear as its stream opens: refused
        # (it does not authenticate) when it reaches the call, stray before
        assert row["media_srtp_auth_failures"] <= 1, row
    for body in _answers(out):
        _, proto, crypto = _audio(body)
        assert proto == "RTP/SAVP" and len(crypto) == 1 and crypto[0].split()[1] == suite
    recordings = sorted(record.glob("*.wav"))
    assert len(recordings) == 2, recordings
    for path in recordings:
        assert abs(dominant_hz(path) - 600) < 5, path
