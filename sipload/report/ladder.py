"""Ladder diagrams (message sequence charts) of sampled calls, as SVG geometry.

The template draws each ladder as inline SVG: two lifelines (sipload and the
peer) and one arrow per message with its label and time; every retransmission the
UA made (direction ``re`` in the record) is its own arrow, marked as such.  Every
label, detail and call-id comes from the wire or the record, so it is only ever placed in the
page through Jinja2 with autoescape on, as SVG ``<text>`` content, never as
markup.
"""

from __future__ import annotations

from dataclasses import dataclass

from sipload.report.analysis import CallSample

LEFT_X = 150
RIGHT_X = 590
WIDTH = 740
TOP = 50
STEP = 30
MAX_MESSAGES = 60
"""Longer calls show their first MAX_MESSAGES messages and say how many were cut."""


@dataclass(frozen=True, slots=True)
class Arrow:
    """One message on the ladder."""

    y: int  #: vertical position
    x1: int  #: where the arrow starts (the sender's lifeline)
    x2: int  #: where it ends (the receiver's lifeline)
    label: str  #: "INVITE", "180 INVITE" ... (from the record, escaped when drawn)
    time: str  #: "+12.345 ms" after the call's start
    outgoing: bool  #: sent by sipload
    repeat: bool  #: a retransmission by the UA (direction ``re``), or the same direction
    #: and label as an earlier message (the peer retransmitting)


@dataclass(frozen=True, slots=True)
class Ladder:
    """One sampled call, ready to draw."""

    call: CallSample
    arrows: tuple[Arrow, ...]
    height: int
    cut: int  #: messages not drawn
    width: int = WIDTH
    left_x: int = LEFT_X
    right_x: int = RIGHT_X


def ladder(call: CallSample) -> Ladder:
    """Lay out one call's messages top to bottom in time order."""
    msgs = sorted(call.messages, key=lambda m: m[0])
    shown = msgs[:MAX_MESSAGES]
    seen: set[tuple[str, str]] = set()
    arrows: list[Arrow] = []
    for i, (t, direction, label) in enumerate(shown):
        out = direction in ("out", "re")
        key = ("out" if out else direction, label)
        arrows.append(Arrow(
            y=TOP + i * STEP, x1=LEFT_X if out else RIGHT_X, x2=RIGHT_X if out else LEFT_X,
            label=label, time=f"+{t * 1000.0:.3f} ms", outgoing=out,
            repeat=direction == "re" or key in seen))
        seen.add(key)
    height = TOP + max(len(arrows), 1) * STEP + 10
    return Ladder(call=call, arrows=tuple(arrows), height=height,
                  cut=len(msgs) - len(shown))


def ladders(samples: list[CallSample]) -> list[Ladder]:
    return [ladder(s) for s in samples]
