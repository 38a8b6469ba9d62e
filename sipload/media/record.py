"""Received audio of one call as 8 kHz samples, placed by RTP timestamp (for ``record:``).

Each payload is decoded and written at its timestamp's offset from the first
packet, so a lost packet leaves silence of its length and a late one still lands
in its place; a source change (new SSRC) appends after what is there.  At most
:data:`MAX_SECONDS` are kept per call.  The shell writes the result as a WAV file.
"""

from __future__ import annotations

from sipload.media import g711

MAX_SECONDS = 600


class Recorder:
    """Collects one call's received audio."""

    def __init__(self, codec: str, clock_rate: int = 8000) -> None:
        self.codec = codec
        self.clock_rate = clock_rate
        self._chunks: list[tuple[int, bytes]] = []
        self._ssrc = -1
        self._base_ts = 0
        self._offset = 0
        self._end = 0

    def add(self, ssrc: int, timestamp: int, payload: bytes) -> None:
        """Place one audio payload (G.711 bytes of the call's codec)."""
        if ssrc != self._ssrc:
            self._ssrc = ssrc
            self._base_ts = timestamp
            self._offset = self._end
        position = self._offset + ((timestamp - self._base_ts) & 0xFFFFFFFF)
        if position >= MAX_SECONDS * self.clock_rate or position < self._offset:
            return
        self._chunks.append((position, payload))
        self._end = max(self._end, position + len(payload))

    def samples(self) -> g711.Samples:
        """All audio so far as 16-bit samples (silence where nothing arrived)."""
        import numpy as np

        out = np.zeros(self._end, dtype=np.int16)
        for position, payload in self._chunks:
            decoded = g711.decode(payload, self.codec)
            out[position:position + len(decoded)] = decoded
        return out
