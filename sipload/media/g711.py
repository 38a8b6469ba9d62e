"""G.711 µ-law (PCMU) and A-law (PCMA) by lookup tables.

Why tables: ``audioop`` left the standard library in Python 3.13, and the PyPI
ports of it (``audioop-lts``) cover only 3.13+.  G.711 is two small mappings, so
the tables are computed here once, vectorised with numpy, from the segment rules
of ITU-T G.711 (the same arithmetic as the reference ``g711.c`` that ``audioop``
used; the tests compare all 65,536 inputs with ``audioop`` where it exists):

* encoding: a 65,536-entry table indexed by the 16-bit sample (as unsigned);
* decoding: a 256-entry table of 16-bit samples.

Payload type numbers are the static ones of RFC 3551 §6: PCMU 0, PCMA 8, 8 kHz.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where a table is built: not by every worker
    import numpy as np
    import numpy.typing as npt

    Samples = npt.NDArray[np.int16]

CLOCK_RATE = 8000
#: Codec name (as in SDP rtpmap) -> static payload type (RFC 3551 Table 4).
PAYLOAD_TYPES: dict[str, int] = {"PCMU": 0, "PCMA": 8}
#: The byte of digital silence (a zero sample) of each law.
SILENCE: dict[str, int] = {"PCMU": 0xFF, "PCMA": 0xD5}

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159
_ULAW_SEG_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _all_samples() -> npt.NDArray[np.int32]:
    import numpy as np

    return np.arange(-32768, 32768, dtype=np.int32)


def _ulaw_encode_all() -> npt.NDArray[np.uint8]:
    import numpy as np

    pcm = _all_samples() >> 2                      # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(np.array(_ULAW_SEG_END, dtype=np.int32), mag, side="left")
    code = (seg << 4) | ((mag >> (seg + 1)) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return _by_unsigned((code ^ mask).astype(np.uint8))


def _alaw_encode_all() -> npt.NDArray[np.uint8]:
    import numpy as np

    pcm = _all_samples() >> 3                      # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(np.array(_ALAW_SEG_END, dtype=np.int32), mag, side="left")
    shift = np.where(seg < 2, 1, seg)
    code = (seg << 4) | ((mag >> shift) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return _by_unsigned((code ^ mask).astype(np.uint8))


def _by_unsigned(table_by_signed: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Reorder a table indexed from -32768 into one indexed by the sample's unsigned view."""
    import numpy as np

    return np.concatenate((table_by_signed[32768:], table_by_signed[:32768]))


def _ulaw_decode_all() -> Samples:
    import numpy as np

    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def _alaw_decode_all() -> Samples:
    import numpy as np

    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


@cache
def encode_table(codec: str) -> npt.NDArray[np.uint8]:
    """The 65,536-entry encoding table of ``codec`` ("PCMU" or "PCMA")."""
    if codec == "PCMU":
        return _ulaw_encode_all()
    if codec == "PCMA":
        return _alaw_encode_all()
    raise ValueError(f"unknown G.711 codec {codec!r} (PCMU or PCMA)")


@cache
def decode_table(codec: str) -> Samples:
    """The 256-entry decoding table of ``codec`` ("PCMU" or "PCMA")."""
    if codec == "PCMU":
        return _ulaw_decode_all()
    if codec == "PCMA":
        return _alaw_decode_all()
    raise ValueError(f"unknown G.711 codec {codec!r} (PCMU or PCMA)")


def encode(samples: Samples, codec: str) -> bytes:
    """Encode 16-bit linear samples (8 kHz) into G.711 bytes, one per sample."""
    import numpy as np

    table = encode_table(codec)
    return bytes(table[np.asarray(samples, dtype=np.int16).view(np.uint16)])


def decode(payload: bytes, codec: str) -> Samples:
    """Decode G.711 bytes into 16-bit linear samples, one per byte."""
    import numpy as np

    table = decode_table(codec)
    return table[np.frombuffer(payload, dtype=np.uint8)]
