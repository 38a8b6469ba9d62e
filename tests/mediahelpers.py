"""What the media tests share: a caller's media scenario, a run's call records, WAV
files to play and the tone of a recorded one.

Every end-to-end media test places the same call (INVITE with an SDP offer, the 200,
ACK, RTP for a while, BYE); they differ in the codec and source, how long the call
holds, the media check and whether provisional responses may come first.
"""

from __future__ import annotations

import struct
import subprocess
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.ipc as ipc

from sipload.media import g711, source
from tests.bgproc import Background, run, sipload
from tests.peers import free_port

PROVISIONAL = """  - recv: 100
    optional: true
  - recv: 180
    optional: true
"""


CLEAN_AUDIO = "{min_packets: 60, max_loss: 0, min_mos: 4.3}"
"""The media check of a call holding 1.5 s or more on loopback: at least 60 packets, none
lost, a clean MOS."""

TO_PEER = 'to: "sip:uas@${remote_host}:${remote_port}"\n'
"""A header line for peers that answer only a request URI with a user part."""


def media_call(name: str, media: str, *, pause: str, check: str | None = None,
               provisional: bool = True, header: str = "", timeout: str | None = None) -> str:
    """A UAC scenario: INVITE offering ``media`` (a flow map such as ``{codec: PCMU,
    play: tone}``), the 200 (after optional 100 and 180 where ``provisional``), ACK,
    ``pause``, the ``check`` media map if any, then BYE; ``header`` goes before the
    steps (thresholds, :data:`TO_PEER`, say); ``timeout``: how long each 200 may take."""
    checked = f"  - check:\n      - media: {check}\n" if check else ""
    ok = "  - recv: 200\n" + (f"    timeout: {timeout}\n" if timeout else "")
    return (f"name: {name}\nrole: uac\nmedia: {media}\n{header}steps:\n"
            "  - send: INVITE\n    body: {sdp: offer}\n"
            + (PROVISIONAL if provisional else "")
            + f"{ok}  - send: ACK\n  - pause: {pause}\n{checked}"
            f"  - send: BYE\n{ok}")


def media_answer(name: str, media: str) -> str:
    """A UAS scenario answering with ``media`` (a flow map): 180, 200 with the SDP answer,
    then ACK and the caller's BYE."""
    return (f"name: {name}\nrole: uas\nmedia: {media}\nsteps:\n  - recv: INVITE\n"
            "  - reply: 180\n  - reply: 200\n    body: {sdp: answer}\n" + _HANG_UP)


def _sdp_reply(sdp: str) -> list[str]:
    """A 200 carrying ``sdp`` as written (a step's lines)."""
    return ["  - reply: 200", "    content_type: application/sdp", "    body: |",
            *("      " + line for line in sdp.splitlines())]


_HANG_UP = "  - recv: ACK\n  - recv: BYE\n  - reply: 200\n"


def answer_with(name: str, sdp: str) -> str:
    """A UAS scenario answering every INVITE with a 200 carrying ``sdp`` as written."""
    steps = [f"name: {name}", "role: uas", "steps:", "  - recv: INVITE", *_sdp_reply(sdp)]
    return "\n".join(steps) + "\n" + _HANG_UP


def answer_per_call(name: str, answers: list[str]) -> str:
    """A UAS scenario answering call N (the number in its ``X-Case`` header) with a 200
    carrying the N-th SDP of ``answers``; unknown cases fail."""
    steps = [f"name: {name}", "role: uas", "steps:", "  - recv: INVITE",
             "    capture: [{var: case, header: X-Case, regex: '(\\d+)'}]"]
    for n in range(len(answers)):
        steps += [f"  - goto: case{n}", f"    when: {{var: case, equals: '{n}'}}"]
    steps.append("  - fail: unknown_case")
    for n, sdp in enumerate(answers):
        steps += [f"  - label: case{n}", *_sdp_reply(sdp), "  - goto: answered"]
    steps.append("  - label: answered")
    return "\n".join(steps) + "\n" + _HANG_UP


def call_each_answer(tmp: Path, uas: str, caller: str, calls: int
                     ) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """``calls`` calls of the ``caller`` scenario (call N sends ``X-Case: N``) to a
    ``sipload uas`` playing ``uas`` (an :func:`answer_per_call`); the run (in ``tmp/run``,
    the UAS's in ``tmp/uas``), and its records in call order."""
    port = free_port("udp")
    (tmp / "uas.yaml").write_text(uas)
    case = "    body: {sdp: offer}\n    headers: {X-Case: '${call_number}'}"
    (tmp / "uac.yaml").write_text(caller.replace("    body: {sdp: offer}", case))
    out = tmp / "run"
    with Background(sipload("uas", tmp / "uas.yaml", "--listen", f"127.0.0.1:{port}",
                            "--out", tmp / "uas"), ready="listening on") as running:
        done = run(sipload("run", tmp / "uac.yaml", "--target", f"127.0.0.1:{port}",
                           "--calls", calls, "--rate", 10, "--workers", 1, "--out", out,
                           "--quiet"), timeout=60)
        running.stop()
    return done, sorted(read_records(out), key=lambda r: int(r["call_number"]))


def read_records(out: Path) -> list[dict[str, Any]]:
    """The call records of the run directory ``out`` (``calls.arrows``), as dicts."""
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


def pcm_wav(path: Path, frequency: int, seconds: int, rate: int = 48000,
            channels: int = 2) -> None:
    """A 16-bit PCM WAV of a sine (baresip's aufile wants its own rate and channels)."""
    t = np.arange(rate * seconds) / rate
    samples = np.round(8000 * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(samples, channels).tobytes())


def dominant_hz(path: Path) -> float:
    """The strongest frequency of a recorded call (8 kHz mono WAV)."""
    with wave.open(str(path), "rb") as w:
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1.0 / rate)[int(np.argmax(spectrum))])
