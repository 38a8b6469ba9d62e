"""SIPp's RTP in an imported scenario: ``rtp_stream``, ``play_pcap_audio``, ``-rtp_echo``.

Theory of operation
===================

1. ``<exec rtp_stream="FILE[,LOOPS[,PT]]"/>`` becomes the scenario's ``media:``:
   the codec from the payload type (0 PCMU, the default, or 8 PCMA) and
   ``play:`` the file.  SIPp sends the file's bytes as payloads (an A-law or
   mu-law WAV, or raw G.711); the command line's resolver turns such a file into
   a 16-bit WAV beside the YAML (a PCM WAV is played as it is).
2. ``<exec play_pcap_audio="FILE"/>`` replays a capture's RTP: the resolver reads
   the capture; its G.711 stream becomes the played WAV (codec from its payload
   type) and its RFC 4733 events a ``dtmf:`` step with ``mode: rfc4733`` where
   the action stood.
3. SIPp's ``-rtp_echo`` (``import-sipp --rtp-echo``) becomes ``media: {echo: true}``.
4. With ``media:``, the SDP bodies written in the XML (whose ``[media_port]``
   would name a port nobody listens on) are built by sipload instead: a request
   carries an offer, an ACK or a response an answer; they hold the worker's RTP
   port and the call's SSRC.
5. What cannot be kept is a warning with its XML line: a second, different audio
   source (the first plays for the whole call), a loop count other than -1
   (sipload loops until the call ends), ``rtp_stream`` pause/resume, a payload
   type other than 0 or 8, video, and media started at an action rather than at
   the answer.  Nothing in the XML is executed, and no file is read here: the
   resolver (the command line) does that.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CODECS = {0: "PCMU", 8: "PCMA"}


@dataclass(frozen=True)
class AudioSource:
    """A file an imported scenario plays, as the XML names it."""

    kind: str  #: "rtp_stream" or "play_pcap_audio"
    path: str  #: as written in the XML
    codec: str  #: from rtp_stream's payload type ("PCMU" when not given)
    line: int  #: the XML line of the action


@dataclass
class Resolved:
    """What the resolver made of an :class:`AudioSource`."""

    play: str = ""  #: the file to put in ``play:`` ("": no audio to play)
    codec: str = ""  #: the codec the file holds ("": keep the source's)
    digits: str = ""  #: RFC 4733 digits found in a capture
    warning: str = ""  #: what could not be kept, or why the file was not usable


Resolver = Callable[[AudioSource], Resolved]
Warn = Callable[[int, str], None]

_SDP = re.compile(r"^\s*v=0", re.MULTILINE)


class SippMedia:
    """Collects a SIPp scenario's RTP actions and writes its ``media:`` (see above)."""

    def __init__(self, warn: Warn, resolve: Resolver | None, rtp_echo: bool) -> None:
        self.warn = warn
        self.resolve = resolve
        self.rtp_echo = rtp_echo
        self.play = ""
        self.codec = ""
        self.kind = ""

    def action(self, attrs: dict[str, str], line: int) -> dict[str, Any] | None:
        """An ``<exec>`` with an RTP attribute; returns a step to add there, if any.

        Returns None too when ``attrs`` holds no RTP attribute (the caller warns).
        """
        if "rtp_stream" in attrs:
            return self.rtp_stream(attrs["rtp_stream"], line)
        if "play_pcap_audio" in attrs:
            return self.source(AudioSource("play_pcap_audio", attrs["play_pcap_audio"].strip(),
                                           "", line))
        for attr in ("play_pcap_video", "play_pcap_image"):
            if attr in attrs:
                self.warn(line, f"{attr}: video is not translated (sipload sends audio)")
        return None

    @staticmethod
    def handles(attrs: dict[str, str]) -> bool:
        return any(a in attrs for a in ("rtp_stream", "play_pcap_audio", "play_pcap_video",
                                        "play_pcap_image"))

    def rtp_stream(self, value: str, line: int) -> dict[str, Any] | None:
        parts = [p.strip() for p in value.split(",")]
        if parts[0] in ("pause", "resume") and len(parts) == 1:
            self.warn(line, f"rtp_stream=\"{parts[0]}\" is not translated: sipload's stream "
                            "runs from the answer to the end of the call (hold pauses it)")
            return None
        if not parts[0]:
            self.warn(line, "rtp_stream without a file is not translated")
            return None
        if len(parts) > 1 and parts[1] not in ("-1", ""):
            self.warn(line, f"rtp_stream loops {parts[1]} times in SIPp; sipload loops it "
                            "until the call ends")
        codec = "PCMU"
        if len(parts) > 2 and parts[2]:
            pt = int(parts[2]) if parts[2].isdigit() else -1
            if pt not in CODECS:
                self.warn(line, f"rtp_stream payload type {parts[2]}: sipload sends PCMU (0) "
                                "or PCMA (8); PCMU is used")
            else:
                codec = CODECS[pt]
        return self.source(AudioSource("rtp_stream", parts[0], codec, line))

    def source(self, src: AudioSource) -> dict[str, Any] | None:
        if self.resolve is None:
            got = Resolved(play=src.path) if src.kind == "rtp_stream" else Resolved(
                warning="the capture is read by `sipload import-sipp`; left out")
        else:
            got = self.resolve(src)
        if got.warning:
            self.warn(src.line, f"{src.kind}=\"{src.path}\": {got.warning}")
        step: dict[str, Any] | None = None
        if got.digits:
            step = {"dtmf": got.digits, "mode": "rfc4733"}
            self.codec = self.codec or src.codec or "PCMU"
        if got.play:
            if self.play and self.play != got.play:
                self.warn(src.line, f"{src.kind}=\"{src.path}\": a second audio source; the "
                                    f"first ({self.play}) plays for the whole call")
            elif not self.play:
                self.play, self.kind = got.play, src.kind
                self.codec = got.codec or src.codec or "PCMU"
                self.warn(src.line, f"{src.kind}=\"{src.path}\": plays from the answer to "
                                    "the end of the call (looped), not from this action")
        return step

    def finish(self, data: dict[str, Any], steps: list[dict[str, Any]], role: str) -> None:
        """Add ``media:`` to the scenario when it has any, and build its SDP bodies."""
        media: dict[str, Any] = {}
        if self.rtp_echo and not self.play:
            media = {"echo": True}
            if role != "uas":
                self.warn(0, "-rtp_echo on a UAC: sipload's caller echoes too (it plays "
                             "nothing of its own)")
        elif self.play or self.codec:
            media = {"codec": self.codec or "PCMU", "ptime": "20ms",
                     "play": self.play or "silence"}
            if self.rtp_echo:
                self.warn(0, "-rtp_echo with an audio source: the source plays, nothing is "
                             "echoed")
        if not media:
            return
        steps_value = data.pop("steps", steps)
        data["media"] = media  # before the steps, as a scenario is written by hand
        data["steps"] = steps_value
        built = 0
        for step in steps:
            body = step.get("body")
            if isinstance(body, str) and _SDP.search(body):
                offer = "send" in step and step["send"] != "ACK"
                step["body"] = {"sdp": "offer" if offer else "answer"}
                built += 1
        if built:
            what = "the media: codec, " if "codec" in media else ""
            self.warn(0, f"{built} SDP bodies are built by sipload ({what}its RTP port, the "
                         "call's SSRC), not taken from the XML")
