"""What a stream plays, computed once: a tone, silence, or a WAV file at 8 kHz.

A source becomes a list of encoded payloads, one per packet interval, that a
stream loops over; every stream playing the same thing shares the same list
(:func:`payload_frames` is cached by its arguments), so a thousand calls cost the
memory of one.

WAV files are read with ``scipy.io.wavfile`` (integer PCM of 8-32 bits and 32/64-bit
float, plain or WAVE_FORMAT_EXTENSIBLE, any rate and channel count) and resampled
to 8 kHz with ``scipy.signal.resample_poly`` (a polyphase filter with its own
anti-aliasing low-pass), channels mixed to mono.  Why scipy: both are well kept,
and ``wave`` in Python 3.11 refuses float and extensible files.  A file that is
not a WAV scipy can read gives a :class:`MediaConfigError` naming it.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from functools import cache

from sipload.media import g711
from sipload.media.errors import MediaConfigError

SAMPLE_RATE = g711.CLOCK_RATE
#: The default tone: 1004 Hz (the telephony test tone, off the 8 kHz sampling grid)
#: at -10 dBm0; one second of it loops without a click.
TONE_HZ = 1004
TONE_DBM0 = -10.0
#: A full-scale 16-bit sine is +3.17 dBm0 for G.711 (ITU-T G.711 Table 5/6).
_FULL_SCALE_DBM0 = 3.17


def tone_samples(frequency: int = TONE_HZ, level_dbm0: float = TONE_DBM0) -> g711.Samples:
    """One second of a sine at ``frequency`` Hz (an integer, so the second loops cleanly)."""
    import numpy as np

    if not 0 < frequency < SAMPLE_RATE // 2:
        raise MediaConfigError(f"tone frequency {frequency} Hz must be between 1 and 3999")
    amplitude = 32767.0 * 10.0 ** ((level_dbm0 - _FULL_SCALE_DBM0) / 20.0)
    t = np.arange(SAMPLE_RATE, dtype=np.float64) / SAMPLE_RATE
    out: g711.Samples = np.round(amplitude * np.sin(2.0 * math.pi * frequency * t)).astype(
        np.int16)
    return out


def silence_samples() -> g711.Samples:
    """One packet's worth is enough; the frames helper loops it."""
    import numpy as np

    return np.zeros(SAMPLE_RATE // 50, dtype=np.int16)


def wav_samples(data: bytes, name: str) -> g711.Samples:
    """Decode a WAV file's bytes to 8 kHz mono 16-bit samples.

    Args:
        data: the file's contents.
        name: the file's name, for error messages.

    Raises:
        MediaConfigError: not a WAV file that can be read, or one with no samples.
    """
    import numpy as np
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    if not data:
        raise MediaConfigError(f"{name}: the WAV file is empty")
    if data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        raise MediaConfigError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rate, raw = wavfile.read(io.BytesIO(data))
    except (ValueError, EOFError, OSError, IndexError, TypeError, struct.error) as exc:
        raise MediaConfigError(f"{name}: cannot read this WAV file ({exc}); "
                               "use integer PCM or float samples") from None
    samples = np.asarray(raw)
    if samples.size == 0:
        raise MediaConfigError(f"{name}: the WAV file holds no samples")
    if samples.dtype == np.uint8:
        mono = (samples.astype(np.float64) - 128.0) / 128.0
    elif samples.dtype.kind == "i":
        mono = samples.astype(np.float64) / float(2 ** (8 * samples.dtype.itemsize - 1))
    elif samples.dtype.kind == "f":
        mono = samples.astype(np.float64)
    else:
        raise MediaConfigError(f"{name}: unsupported sample type {samples.dtype}")
    if mono.ndim == 2:
        mono = mono.mean(axis=1)
    if rate <= 0:
        raise MediaConfigError(f"{name}: sample rate {rate} is not positive")
    if rate != SAMPLE_RATE:
        g = math.gcd(int(rate), SAMPLE_RATE)
        mono = resample_poly(mono, SAMPLE_RATE // g, int(rate) // g)
    out: g711.Samples = np.clip(np.round(mono * 32767.0), -32768, 32767).astype(np.int16)
    if out.size == 0:
        raise MediaConfigError(f"{name}: the WAV file is too short to play")
    return out


def encode_frames(samples: g711.Samples, codec: str, samples_per_packet: int) -> tuple[bytes, ...]:
    """Encode samples and cut them into payloads; the last one is padded with silence."""
    import numpy as np

    if samples_per_packet <= 0:
        raise MediaConfigError("packet size must be positive")
    pad = -len(samples) % samples_per_packet
    if pad:
        samples = np.concatenate((samples, np.zeros(pad, dtype=np.int16)))
    encoded = g711.encode(samples, codec)
    return tuple(encoded[i:i + samples_per_packet]
                 for i in range(0, len(encoded), samples_per_packet))


@cache
def tone_frames(codec: str, samples_per_packet: int, frequency: int = TONE_HZ) -> tuple[bytes, ...]:
    return encode_frames(tone_samples(frequency), codec, samples_per_packet)


@cache
def silence_frames(codec: str, samples_per_packet: int) -> tuple[bytes, ...]:
    return (bytes((g711.SILENCE[codec],)) * samples_per_packet,)


def wav_frames(samples: g711.Samples, codec: str, samples_per_packet: int) -> tuple[bytes, ...]:
    """Frames of decoded WAV samples (cache the result per file where it is loaded)."""
    return encode_frames(samples, codec, samples_per_packet)
