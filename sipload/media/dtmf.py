"""RFC 4733 telephone-event payloads (DTMF in the RTP stream).

Payload (RFC 4733 §2.3)::

     0                   1                   2                   3
    |     event     |E|R| volume    |          duration             |

* event: 0-9 are the digits, 10 is ``*``, 11 is ``#``, 12-15 are A-D (§3.2);
* E: set on the final packets of an event (sent three times, §2.5.1.4);
* volume: power level in -dBm0, 0-63;
* duration: in timestamp units since the event's start (the RTP timestamp of every
  packet of one event is the event's start, §2.5.1.2).

:func:`event_packets` lays out one digit as the payloads to send on a stream's
ptime grid; :class:`sipload.media.schedule.OutStream` sends them in place of audio.
"""

from __future__ import annotations

import struct

from sipload.media.errors import MediaParseError

EVENT_CODES: dict[str, int] = {
    **{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15,
}
EVENT_NAMES: dict[int, str] = {code: name for name, code in EVENT_CODES.items()}
_PAYLOAD = struct.Struct("!BBH")
#: Default volume of generated events, -dBm0 (RFC 4733 §2.3.4 suggests 0-63).
DEFAULT_VOLUME = 10
#: How many times the final (E bit) packet is sent (RFC 4733 §2.5.1.4).
END_REPEATS = 3


class TelephoneEvent:
    """One decoded RFC 4733 payload.

    Attributes:
        event: the event code (0-255; 0-15 are DTMF).
        end: the E bit.
        volume: -dBm0, 0-63.
        duration: timestamp units since the event's start.
    """

    __slots__ = ("duration", "end", "event", "volume")

    def __init__(self, event: int, end: bool, volume: int, duration: int) -> None:
        self.event = event
        self.end = end
        self.volume = volume
        self.duration = duration

    @property
    def digit(self) -> str | None:
        """The DTMF key of a code 0-15, else None."""
        return EVENT_NAMES.get(self.event)


def encode_event(event: int, end: bool, volume: int, duration: int) -> bytes:
    """The 4-byte telephone-event payload."""
    if not 0 <= event <= 255 or not 0 <= volume <= 63 or not 0 <= duration <= 0xFFFF:
        raise ValueError("event 0-255, volume 0-63, duration 0-65535")
    return _PAYLOAD.pack(event, (0x80 if end else 0) | volume, duration)


def parse_event(payload: bytes) -> TelephoneEvent:
    """Decode a telephone-event payload (its first 4 bytes; RFC 4733 allows redundancy).

    Raises:
        MediaParseError: fewer than 4 bytes.
    """
    if len(payload) < 4:
        raise MediaParseError("short-event")
    event, flags, duration = _PAYLOAD.unpack_from(payload, 0)
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


def digit_code(key: str) -> int:
    """The event code of a DTMF key (``0-9 * # A-D``); ValueError otherwise."""
    code = EVENT_CODES.get(key.upper())
    if code is None:
        raise ValueError(f"{key!r} is not a DTMF key (0-9 * # A-D)")
    return code


def event_packets(key: str, duration_units: int, ptime_units: int,
                  volume: int = DEFAULT_VOLUME) -> list[tuple[bytes, bool]]:
    """The payloads that carry one key, one per ptime, each with its marker bit.

    The first packet has the marker bit; durations grow by one ptime per packet
    until ``duration_units``; the final packet (E bit) is sent
    :data:`END_REPEATS` times with the same duration (RFC 4733 §2.5.1.4).

    Args:
        key: a DTMF key.
        duration_units: the event's length in timestamp units (8 per ms at 8 kHz).
        ptime_units: the packet interval in timestamp units.
        volume: -dBm0.
    """
    code = digit_code(key)
    if ptime_units <= 0:
        raise ValueError("ptime must be positive")
    duration_units = max(min(duration_units, 0xFFFF), ptime_units)
    out: list[tuple[bytes, bool]] = []
    elapsed = ptime_units
    while elapsed < duration_units:
        out.append((encode_event(code, False, volume, elapsed), not out))
        elapsed += ptime_units
    final = encode_event(code, True, volume, duration_units)
    for _ in range(END_REPEATS):
        out.append((final, not out))
    return out
