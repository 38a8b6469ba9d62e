"""The audio SIPp scenarios play, as samples sipload can play (``sipload import-sipp``).

Sans-IO: bytes in, samples out; the command line reads and writes the files.

* ``play_pcap_audio`` replays the RTP packets of a capture.  :func:`capture_audio`
  takes the capture's UDP payloads, keeps the RTP packets (RFC 3550 §5.1, parsed
  with every length checked), picks the G.711 stream (payload type 0 PCMU or 8
  PCMA) with the most packets, orders it by sequence number (extended over
  wraps, RFC 3550 A.1), places each payload at its RTP timestamp (a gap is
  silence, a repeated timestamp counted once) and decodes it to 16-bit samples.
  RFC 4733 telephone-events in the capture (a dynamic payload type, 4-byte
  payloads with an event code 0-15, as SIPp's ``dtmf_2833_*.pcap``) become the
  digits they press, one per event (its RTP timestamp).
* ``rtp_stream`` sends a file's bytes as G.711 payloads: a WAV whose format is
  A-law (6) or mu-law (7), or a raw file.  :func:`g711_file_audio` decodes it; a
  PCM or float WAV (which sipload can play as it is) gives None.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from sipload.media import g711
from sipload.media.dtmf import EVENT_NAMES
from sipload.media.errors import MediaConfigError, MediaParseError
from sipload.media.rtp import is_rtcp, parse_rtp

CODEC_OF_PT = {0: "PCMU", 8: "PCMA"}
MAX_SECONDS = 600
"""The longest audio taken from one capture or file (a bound on a hostile file)."""
MAX_SAMPLES = MAX_SECONDS * g711.CLOCK_RATE


@dataclass
class CaptureAudio:
    """What a capture holds, as sipload can play it."""

    codec: str  #: "PCMU" or "PCMA"; "" when the capture holds no G.711 stream
    samples: g711.Samples | None  #: the stream's audio at 8 kHz, None without one
    digits: str  #: RFC 4733 events, in order ("" without any)
    packets: int  #: RTP packets of the chosen audio stream
    streams: int  #: RTP streams (SSRCs) in the capture
    ignored: int  #: datagrams that were not RTP


def capture_audio(payloads: Iterable[bytes]) -> CaptureAudio:
    """The G.711 audio and the RFC 4733 digits of a capture's UDP payloads."""
    streams: dict[tuple[int, int], list[tuple[int, int, bytes]]] = {}
    ignored = 0
    for data in payloads:
        if is_rtcp(data):
            ignored += 1
            continue
        try:
            h = parse_rtp(data)
        except MediaParseError:
            ignored += 1
            continue
        streams.setdefault((h.ssrc, h.payload_type), []).append(
            (h.seq, h.timestamp, data[h.payload_start:h.payload_end]))
    ssrcs = {ssrc for ssrc, _ in streams}
    audio = [(len(p), key) for key, p in streams.items() if key[1] in CODEC_OF_PT]
    digits = _digits(streams)
    if not audio:
        return CaptureAudio("", None, digits, 0, len(ssrcs), ignored)
    _, key = max(audio)
    codec = CODEC_OF_PT[key[1]]
    packets = _in_order(streams[key])
    return CaptureAudio(codec, _place(packets, codec), digits, len(packets), len(ssrcs),
                        ignored)


def _in_order(packets: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
    """Sorted by extended sequence number (arrival order unwraps the 16-bit numbers)."""
    out: list[tuple[int, int, bytes]] = []
    cycles = 0
    last = -1
    for seq, ts, payload in packets:
        if last >= 0 and seq < last and last - seq > 0x8000:
            cycles += 0x10000
        elif last >= 0 and seq > last and seq - last > 0x8000:
            seq -= 0x10000  # a late packet from before the wrap
        last = seq & 0xFFFF
        out.append((cycles + seq, ts, payload))
    out.sort(key=lambda p: p[0])
    return out


def _place(packets: list[tuple[int, int, bytes]], codec: str) -> g711.Samples:
    """Each payload at its RTP timestamp (relative to the first, over 32-bit wraps)."""
    first = packets[0][1]
    spans: list[tuple[int, bytes]] = []
    end = 0
    for _, ts, payload in packets:
        at = (ts - first) & 0xFFFFFFFF
        if at >= MAX_SAMPLES or not payload:
            continue
        take = payload[:MAX_SAMPLES - at]
        spans.append((at, take))
        end = max(end, at + len(take))
    out: g711.Samples = np.zeros(end, dtype=np.int16)
    for at, payload in spans:
        out[at:at + len(payload)] = g711.decode(payload, codec)
    return out


def _digits(streams: dict[tuple[int, int], list[tuple[int, int, bytes]]]) -> str:
    """One digit per RFC 4733 event (distinct timestamp) of the event-looking streams."""
    events: list[tuple[int, int, str]] = []  # (first seq, timestamp, digit)
    for (_, pt), packets in streams.items():
        if pt < 96 or not all(len(p) == 4 and p[0] in EVENT_NAMES for _, _, p in packets):
            continue
        seen: dict[int, tuple[int, str]] = {}
        for seq, ts, payload in _in_order(packets):
            if ts not in seen:
                seen[ts] = (seq, EVENT_NAMES[payload[0]])
        events.extend((seq, ts, digit) for ts, (seq, digit) in seen.items())
    return "".join(d for _, _, d in sorted(events))


def g711_file_audio(data: bytes, codec: str, name: str) -> g711.Samples | None:
    """The samples of a file SIPp's ``rtp_stream`` sends as ``codec`` payloads.

    Returns:
        The decoded samples of an A-law/mu-law WAV or a raw file; None for a PCM or
        float WAV (sipload plays it as it is).

    Raises:
        MediaConfigError: an empty file, a WAV without a data chunk, or a WAV whose
            format is neither PCM nor G.711.
    """
    if not data:
        raise MediaConfigError(f"{name}: the audio file is empty")
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        fmt, body = _wav_chunks(data, name)
        if fmt in (1, 3, 0xFFFE):
            return None
        if fmt not in (6, 7):
            raise MediaConfigError(f"{name}: WAV format {fmt} is neither PCM nor G.711")
        codec = "PCMA" if fmt == 6 else "PCMU"
    else:
        body = data
    samples: g711.Samples = g711.decode(body[:MAX_SAMPLES], codec)
    return samples


def _wav_chunks(data: bytes, name: str) -> tuple[int, bytes]:
    """(format tag, data chunk) of a RIFF/WAVE file."""
    fmt = -1
    at = 12
    while at + 8 <= len(data):
        tag, size = data[at:at + 4], struct.unpack_from("<I", data, at + 4)[0]
        body = data[at + 8:at + 8 + size]
        if tag == b"fmt " and len(body) >= 2:
            fmt = struct.unpack_from("<H", body, 0)[0]
        elif tag == b"data":
            if fmt < 0:
                raise MediaConfigError(f"{name}: the WAV file has no fmt chunk before its data")
            return fmt, body
        at += 8 + size + (size & 1)
    raise MediaConfigError(f"{name}: the WAV file has no data chunk")
