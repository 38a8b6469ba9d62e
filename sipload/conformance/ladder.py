"""The message ladder of a conformance case: one entry per message on the wire.

Also the few things read from raw bytes without a full parse (the start line,
the Call-ID), because a ladder must show torture messages no parser accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sipload.transport import Peer


@dataclass(slots=True)
class LadderEntry:
    """One message on the wire, as the tester saw it."""

    t: float  #: seconds since the case started
    direction: str  #: "out" (sent by the tester) or "in"
    peer: str  #: "udp:127.0.0.1:5060": where it went to or came from
    first_line: str  #: the start line, or a note for bytes that are not SIP
    text: str  #: the whole message as text (undecodable bytes replaced)

    def to_dict(self) -> dict[str, Any]:
        return {"t": round(self.t, 6), "dir": self.direction, "peer": self.peer,
                "first_line": self.first_line, "text": self.text}



def describe(peer: Peer) -> str:
    kind, host, port = peer
    return f"{kind}:{host}:{port}"


def first_line(data: bytes) -> str:
    head = data.lstrip(b"\r\n").split(b"\r\n", 1)[0]
    text = head.decode("utf-8", "replace")
    return text[:200] if text.strip() else f"({len(data)} bytes, no start line)"


def call_id_of(data: bytes) -> str | None:
    """The Call-ID of raw bytes, found without a full parse (None when absent)."""
    end = data.find(b"\r\n\r\n")
    for line in (data if end < 0 else data[:end]).split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() in (b"call-id", b"i"):
            return value.strip().decode("utf-8", "replace")
    return None
