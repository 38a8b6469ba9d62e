"""``sipload import-sipp`` and SIPp's RTP: ``rtp_stream``, ``play_pcap_audio``, ``-rtp_echo``.

The captures are SIPp's own (``g711a.pcap``, ``dtmf_2833_*.pcap`` from the Debian
package); the audio written from a capture is checked against the payloads tshark
reads from it; imported scenarios run against a real sipload UAS.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from sipload.media import g711, source
from sipload.media.sippaudio import capture_audio, g711_file_audio
from sipload.scenario.loader import load_text
from sipload.scenario.sipp_import import import_sipp
from sipload.stats.pcap import PcapError, read_udp
from tests.mediahelpers import ulaw_wav
from tests.peers import SIPP_DIR, require, sipp_capture
from tests.test_run_gate import summary

ROOT = Path(__file__).resolve().parent.parent


def sipload(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "sipload", *(str(a) for a in args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)


def read_wav(path: Path) -> g711.Samples:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        samples: g711.Samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return samples


def tshark_payloads(pcap: Path, port: int) -> list[bytes]:
    """The RTP payloads of a capture as tshark decodes them (a reader not ours)."""
    r = subprocess.run([require("tshark"), "-r", str(pcap), "-d", f"udp.port=={port},rtp",
                        "-T", "fields", "-e", "rtp.payload"], capture_output=True, text=True,
                       timeout=60, check=True)
    return [bytes.fromhex(line.replace(":", "")) for line in r.stdout.split() if line]


UAC = (SIPP_DIR / "media_uac_rtp_stream.xml").read_text()


def pcap_uac(folder: Path) -> Path:
    """SIPp's rtp_stream UAC, playing SIPp's g711a.pcap and then the digit 1 instead."""
    shutil.copy(sipp_capture("g711a.pcap"), folder / "g711a.pcap")
    shutil.copy(sipp_capture("dtmf_2833_1.pcap"), folder / "dtmf_2833_1.pcap")
    text = UAC.replace('<exec rtp_stream="tone.ulaw.wav,-1,0"/>',
                       '<exec play_pcap_audio="g711a.pcap"/>')
    text = text.replace('<exec rtp_stream="pause"/>', '<exec play_pcap_audio="dtmf_2833_1.pcap"/>')
    assert "g711a.pcap" in text and "dtmf_2833_1" in text
    xml = folder / "uac_pcap.xml"
    xml.write_text(text)
    return xml


def test_sipp_capture_read_like_tshark() -> None:
    pcap = sipp_capture("g711a.pcap")
    capture = read_udp(pcap.read_bytes())
    assert capture.skipped == 0 and capture.packets == len(capture.datagrams) == 236
    ports = {d.dport for d in capture.datagrams}
    assert ports == {2006}
    audio = capture_audio(d.payload for d in capture.datagrams)
    assert (audio.codec, audio.packets, audio.streams, audio.digits) == ("PCMA", 236, 1, "")
    theirs = tshark_payloads(pcap, 2006)
    assert audio.samples is not None
    assert np.array_equal(audio.samples, g711.decode(b"".join(theirs), "PCMA"))
    for name, digit in (("dtmf_2833_1.pcap", "1"), ("dtmf_2833_pound.pcap", "#"),
                        ("dtmf_2833_star.pcap", "*")):
        events = capture_audio(d.payload for d in read_udp(sipp_capture(name).read_bytes())
                               .datagrams)
        assert (events.digits, events.samples) == (digit, None), name


def test_hostile_captures_raise_only_pcap_error() -> None:
    good = sipp_capture("g711a.pcap").read_bytes()
    rng = random.Random(7)
    for _ in range(300):
        data = bytearray(good[:rng.randrange(0, 3000)])
        for _ in range(rng.randrange(0, 8)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            capture = read_udp(bytes(data))
        except PcapError:
            continue
        capture_audio(d.payload for d in capture.datagrams)  # never raises
    with pytest.raises(PcapError, match="not a capture"):
        read_udp(b"<?xml version='1.0'?>")


def test_play_pcap_audio_becomes_a_wav_and_a_dtmf_step(tmp_path: Path) -> None:
    xml = pcap_uac(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    r = sipload("import-sipp", xml, "-o", out / "uac.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "plays from the answer to the end of the call" in r.stderr
    text = (out / "uac.yaml").read_text()
    prog = load_text(text, str(out / "uac.yaml"))
    assert "media:\n  codec: \"PCMA\"\n  ptime: \"20ms\"\n  play: \"uac.g711a.wav\"" in text
    assert '- dtmf: "1"\n    mode: "rfc4733"' in text
    assert 'body: {sdp: "offer"}' in text and "m=audio" not in text
    wav = read_wav(out / "uac.g711a.wav")
    assert np.array_equal(wav, g711.decode(b"".join(tshark_payloads(xml.parent / "g711a.pcap",
                                                                    2006)), "PCMA"))
    assert prog.media and prog.media[0][1].samples is not None
    # the imported scenario runs: its audio flows to sipload's UAS and back (echo)
    r = sipload("run", out / "uac.yaml", "--calls", 2, "--rate", 5, "--out", tmp_path / "run",
                "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    media = summary(tmp_path / "run")["media"]
    assert media["streams"] == 2 and media["received"] >= 2 * 60 and media["lost"] == 0
    assert media["events"] >= 2 * 3  # the digit 1 as RFC 4733 packets, echoed


def test_rtp_stream_ulaw_wav_becomes_a_pcm_wav(tmp_path: Path) -> None:
    ulaw_wav(tmp_path / "tone.ulaw.wav")
    xml = tmp_path / "uac.xml"
    xml.write_text(UAC)
    r = sipload("import-sipp", xml, "-o", tmp_path / "uac.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert 'rtp_stream="pause" is not translated' in r.stderr
    text = (tmp_path / "uac.yaml").read_text()
    assert 'media:\n  codec: "PCMU"' in text and 'play: "uac.tone.ulaw.wav"' in text
    expected = g711.decode(g711.encode(source.tone_samples(440), "PCMU"), "PCMU")
    assert np.array_equal(read_wav(tmp_path / "uac.tone.ulaw.wav"), expected)
    # a PCM WAV plays as it is: named relative to the output
    pcm = tmp_path / "audio" / "hello.wav"
    pcm.parent.mkdir()
    with wave.open(str(pcm), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(struct.pack("<160h", *range(160)))
    xml.write_text(UAC.replace("tone.ulaw.wav,-1,0", "audio/hello.wav,3,8"))
    (tmp_path / "out").mkdir()
    r = sipload("import-sipp", xml, "-o", tmp_path / "out" / "uac.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "loops 3 times in SIPp" in r.stderr
    text = (tmp_path / "out" / "uac.yaml").read_text()
    assert 'codec: "PCMA"' in text and 'play: "../audio/hello.wav"' in text
    # a missing file is a warning with its line, and the rest still imports
    xml.write_text(UAC.replace("tone.ulaw.wav", "missing.wav"))
    r = sipload("import-sipp", xml, cwd=tmp_path)
    assert r.returncode == 0 and "media:" not in r.stdout
    assert f"{xml}:64: warning: rtp_stream=\"missing.wav\": cannot read" in r.stderr


def test_rtp_echo_uas_echoes_a_sipload_caller(tmp_path: Path) -> None:
    r = subprocess.run([require("sipp"), "-sd", "uas"], capture_output=True, timeout=30,
                       check=False)
    (tmp_path / "uas.xml").write_bytes(r.stdout)
    r2 = sipload("import-sipp", tmp_path / "uas.xml", "--rtp-echo", "-o",
                 tmp_path / "uas.yaml", cwd=tmp_path)
    assert r2.returncode == 0, r2.stderr
    text = (tmp_path / "uas.yaml").read_text()
    assert "media: {echo: true}" in text and 'body: {sdp: "answer"}' in text
    uac = (ROOT / "scenarios" / "media_call.yaml").read_text().replace(
        "counterpart: media_call_uas.yaml", "counterpart: uas.yaml").replace(
        "pause: 3s", "pause: 1500ms").replace("min_packets: 100", "min_packets: 50")
    assert "counterpart: uas.yaml" in uac
    (tmp_path / "uac.yaml").write_text(uac)
    r3 = sipload("run", tmp_path / "uac.yaml", "--calls", 2, "--rate", 5, "--out",
                 tmp_path / "run", "--quiet", cwd=tmp_path)
    assert r3.returncode == 0, r3.stdout + r3.stderr
    s = summary(tmp_path / "run")
    assert s["calls"]["succeeded"] == 2
    media = s["media"]
    assert media["received"] >= media["sent"] - 2 * 3 and media["lost"] == 0
    assert json.dumps(media)


def test_translation_without_a_resolver_names_what_it_left_out() -> None:
    data = UAC.replace('<exec rtp_stream="pause"/>', '<exec play_pcap_audio="x.pcap"/>'
                       '<exec play_pcap_video="v.pcap"/>').encode()
    result = import_sipp(data, "uac.xml")
    assert result.data["media"] == {"codec": "PCMU", "ptime": "20ms", "play": "tone.ulaw.wav"}
    texts = [t for _, t in result.warnings]
    assert any("read by `sipload import-sipp`" in t for t in texts)
    assert any("play_pcap_video" in t for t in texts)
    # no RTP action and no -rtp_echo: no media, the SDP text kept
    plain = import_sipp(UAC.replace('<exec rtp_stream="tone.ulaw.wav,-1,0"/>', "").encode(),
                        "uac.xml")
    assert "media" not in plain.data
    assert any(isinstance(s.get("body"), str) and "m=audio" in s["body"]
               for s in plain.data["steps"])


def test_g711_files() -> None:
    raw = g711.encode(source.tone_samples(), "PCMA")
    assert np.array_equal(g711_file_audio(raw, "PCMA", "x.al"), g711.decode(raw, "PCMA"))
    with pytest.raises(Exception, match="no data chunk"):
        g711_file_audio(b"RIFF\0\0\0\0WAVEfmt \x02\0\0\0\x07\0", "PCMU", "x.wav")
