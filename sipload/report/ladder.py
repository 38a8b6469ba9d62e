"""Ladder diagrams (message sequence charts) of sampled calls, as SVG geometry.

The template draws each ladder as inline SVG: two lifelines (sipload and the
peer) and one arrow per message with its label and time; every retransmission the
UA made (direction ``re`` in the record) is its own arrow, marked as such.  A call
the run traced (``--trace``) is drawn from its wire messages (retransmissions, 100
Trying and ACKs included): each arrow links to the message's full text, placed
under the diagram, and the message that made the call fail is marked and named.
Every label, detail, call-id and message text comes from the wire or the record,
so it is only ever placed in the page through Jinja2 with autoescape on, as text
content, never as markup (and message text is first made printable:
:func:`sipload.report.wire.show`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sipload.report.analysis import CallSample
from sipload.report.wire import cause, why
from sipload.stats.msround import fmt_ms

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
    anchor: str = ""  #: id of the message's full text in the page ("" if not traced)
    cause: bool = False  #: the message that made the call fail


@dataclass(frozen=True, slots=True)
class WireText:
    """One traced message's full text, under its ladder."""

    anchor: str
    head: str  #: "+12.345 ms out UDP 127.0.0.1:5060 -> 127.0.0.1:5080 (512 bytes)"
    text: str  #: made printable (wire.show); escaped by the template
    cause: bool


@dataclass(frozen=True, slots=True)
class Ladder:
    """One sampled call, ready to draw."""

    call: CallSample
    arrows: tuple[Arrow, ...]
    height: int
    cut: int  #: messages not drawn
    wire: tuple[WireText, ...] = ()  #: full texts of the traced messages
    cause: str = ""  #: the message that made the call fail, with why (traced calls)
    dropped: int = 0  #: traced messages not kept (the trace's byte cap)
    width: int = WIDTH
    left_x: int = LEFT_X
    right_x: int = RIGHT_X


def ladder(call: CallSample) -> Ladder:
    """Lay out one call's messages top to bottom in time order."""
    if call.trace is not None and call.trace.messages:
        return _wire_ladder(call)
    msgs = sorted(call.messages, key=lambda m: m[0])
    shown = msgs[:MAX_MESSAGES]
    seen: set[tuple[str, str]] = set()
    arrows: list[Arrow] = []
    for i, (t, direction, label) in enumerate(shown):
        out = direction in ("out", "re")
        key = ("out" if out else direction, label)
        arrows.append(Arrow(
            y=TOP + i * STEP, x1=LEFT_X if out else RIGHT_X, x2=RIGHT_X if out else LEFT_X,
            label=label, time=f"+{fmt_ms(t * 1000.0)} ms", outgoing=out,
            repeat=direction == "re" or key in seen))
        seen.add(key)
    height = TOP + max(len(arrows), 1) * STEP + 10
    return Ladder(call=call, arrows=tuple(arrows), height=height,
                  cut=len(msgs) - len(shown))


def ladders(samples: list[CallSample]) -> list[Ladder]:
    return [ladder(s) for s in samples]


def _wire_ladder(call: CallSample) -> Ladder:
    """The ladder of a traced call: one arrow per wire message, each with its text."""
    assert call.trace is not None
    msgs = call.trace.messages
    culprit = cause(msgs, call.failure, call.end)
    prefix = f"m{call.worker}-{call.call_number}-"
    seen: set[tuple[bool, str]] = set()
    arrows: list[Arrow] = []
    texts: list[WireText] = []
    for i, m in enumerate(msgs):
        label = m.label
        key = (m.outgoing, label)
        time = f"+{fmt_ms((m.t - call.start) * 1000.0)} ms"
        anchor = f"{prefix}{i}"
        is_cause = m is culprit
        if i < MAX_MESSAGES:
            arrows.append(Arrow(
                y=TOP + i * STEP, x1=LEFT_X if m.outgoing else RIGHT_X,
                x2=RIGHT_X if m.outgoing else LEFT_X, label=label, time=time,
                outgoing=m.outgoing, repeat=key in seen, anchor=anchor, cause=is_cause))
        seen.add(key)
        src, dst = (m.local, m.remote) if m.outgoing else (m.remote, m.local)
        head = (f"{time} {'sent' if m.outgoing else 'received'} {m.transport.upper()} "
                f"{src} \u2192 {dst} ({m.length} bytes)")
        texts.append(WireText(anchor, head, m.text, is_cause))
    height = TOP + max(len(arrows), 1) * STEP + 10
    return Ladder(call=call, arrows=tuple(arrows), height=height, cut=len(msgs) - len(arrows),
                  wire=tuple(texts), cause=why(culprit) if culprit is not None else "",
                  dropped=call.trace.dropped)
