"""The traced wire messages of a run (``traces.arrows``), ready to show.

Theory of operation
===================

1. :func:`traced_keys` and :func:`load_traces` read ``traces.arrows`` batch by
   batch and keep only what is asked (the keys, or the rows of a few calls), so
   a run traced with ``--trace all`` is never held whole.
2. Message bytes are hostile.  :func:`show` turns them into text that is safe
   to print or to put in a page: UTF-8 where it decodes, ``\\xNN`` where it
   does not, and every control or bidirectional-override character (ESC, NUL,
   U+202E ...) written as an escape; CRLF line ends become plain newlines.
   HTML escaping stays the template's (Jinja2 autoescape).
3. :func:`cause` picks the message that made a call fail: the last response
   of 300 or more received for a rejected call, the last message received for
   an unexpected message or failed check, the last request sent for a call
   whose request went unanswered.  :func:`why` gives its first line with the
   Warning, Reason, Retry-After and Error-Info headers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from sipload.stats.rundir import TRACES

Key = tuple[int, int]  #: (worker, call_number)

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
                     "\u2060-\u2069\ufeff]")
_WHY = ("warning", "reason", "retry-after", "error-info")
_HEADER_RE = re.compile(rb"\r?\n([A-Za-z][A-Za-z0-9.!%*_+`'~-]*)[ \t]*:[ \t]*([^\r\n]*)")
_COMPACT = {b"i": b"call-id"}


@dataclass(frozen=True, slots=True)
class TracedMessage:
    """One traced message of a call."""

    seq: int  #: its place in the call's trace
    t: float  #: seconds on the worker's clock (as the call's record)
    ts: float  #: Unix time
    outgoing: bool  #: sent by sipload
    transport: str
    local: str  #: "host:port" ([v6]:port)
    remote: str
    length: int  #: full length (``data`` may be cut: the trace's byte cap)
    data: bytes

    @property
    def label(self) -> str:
        return label_of(self.data)

    @property
    def first_line(self) -> str:
        return show(self.data.split(b"\n", 1)[0].rstrip(b"\r"))

    @property
    def text(self) -> str:
        """The whole message, safe to show (rule 2), with a note if it was cut."""
        out = show(self.data)
        if self.length > len(self.data):
            out += f"\n[... {self.length - len(self.data)} more bytes not kept]"
        return out

    @property
    def status(self) -> int:
        """The status code of a response, 0 for a request."""
        line = self.data.split(b"\n", 1)[0]
        if line[:4].upper() == b"SIP/":
            parts = line.split(b" ", 2)
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1])
        return 0


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def show(data: bytes) -> str:
    """``data`` as text that is safe to print or place in a page (rule 2)."""
    text = data.decode("utf-8", "backslashreplace").replace("\r\n", "\n")
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                       else f"\\u{ord(m.group()):04x}", text)


def headers_of(data: bytes) -> list[tuple[str, str]]:
    """(lower-case name, value) of each header line, compact forms of interest expanded."""
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[: end + 2]
    out = []
    for m in _HEADER_RE.finditer(head):
        name = m.group(1).lower()
        out.append((_COMPACT.get(name, name).decode("ascii", "replace"),
                    show(m.group(2).strip())))
    return out


def label_of(data: bytes) -> str:
    """A ladder label: the method of a request, ``status CSeq-method`` of a response."""
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    parts = line.split(b" ")
    if line[:4].upper() == b"SIP/":
        status = show(parts[1][:3]) if len(parts) > 1 else "?"
        cseq = next((v for k, v in headers_of(data) if k == "cseq"), "")
        method = cseq.split()[-1] if cseq.split() else ""
        return f"{status} {method}".strip()
    return show(parts[0][:32]) or "?"


def cause(messages: list[TracedMessage], failure: str, end: float) -> TracedMessage | None:
    """The message that made the call fail (rule 3), or None."""
    upto = [m for m in messages if m.t <= end + 1e-6]
    if failure == "call_rejected":
        return next((m for m in reversed(upto) if not m.outgoing and m.status >= 300), None)
    if failure in ("unexpected_message", "check_failed"):
        return next((m for m in reversed(upto) if not m.outgoing), None)
    if failure in ("max_retransmissions", "transport_error"):
        return next((m for m in reversed(upto) if m.outgoing and not m.status), None)
    return None


def why(message: TracedMessage) -> str:
    """Its first line, with the headers that say why (rule 3)."""
    out = message.first_line
    for name, value in headers_of(message.data):
        if name in _WHY:
            out += f"; {name.title()}: {value}"
    return out


def _batches(path: Path) -> Iterable[pa.RecordBatch]:
    f = Path(path) / TRACES
    if not f.exists() or not f.stat().st_size:
        return
    with f.open("rb") as fh:
        try:
            reader = ipc.open_stream(fh)
            while True:
                try:
                    yield reader.read_next_batch()
                except StopIteration:
                    return
        except (pa.ArrowInvalid, OSError):
            return


def traced_keys(path: Path | str) -> dict[Key, str]:
    """(worker, call_number) -> first Call-ID of every traced call (rule 1)."""
    out: dict[Key, str] = {}
    for b in _batches(Path(path)):
        for w, n, c in zip(b.column("worker").to_pylist(), b.column("call_number").to_pylist(),
                           b.column("call_id").to_pylist(), strict=True):
            out.setdefault((int(w), int(n)), str(c))
    return out


@dataclass
class CallTrace:
    """The traced messages of one call."""

    messages: list[TracedMessage]
    dropped: int = 0  #: messages not kept (the trace's byte cap)


def _message(r: dict[str, object]) -> TracedMessage:
    return TracedMessage(
        seq=int(str(r["seq"])), t=float(str(r["t"])), ts=float(str(r["ts"])),
        outgoing=r["direction"] == "out", transport=str(r["transport"]),
        local=_hostport(str(r["local_host"]), int(str(r["local_port"]))),
        remote=_hostport(str(r["remote_host"]), int(str(r["remote_port"]))),
        length=int(str(r["length"])), data=bytes(r["data"]) if isinstance(
            r["data"], bytes | bytearray) else b"")


def _group(rows: Iterable[dict[str, object]],
           out: dict[Key, CallTrace]) -> None:
    for r in rows:
        key = (int(str(r["worker"])), int(str(r["call_number"])))
        trace = out.setdefault(key, CallTrace([]))
        trace.dropped = int(str(r["dropped"]))
        trace.messages.append(_message(r))


def load_traces(path: Path | str, keys: Iterable[Key]) -> dict[Key, CallTrace]:
    """The traces of the calls ``keys`` that have one, messages in order (rule 1)."""
    wanted = set(keys)
    out: dict[Key, CallTrace] = {}
    if not wanted:
        return out
    numbers = pa.array(sorted({n for _, n in wanted}), pa.int64())
    for b in _batches(Path(path)):
        mask = pc.is_in(b.column("call_number"), value_set=numbers)
        _group((r for r in b.filter(mask).to_pylist()
                if (int(r["worker"]), int(r["call_number"])) in wanted), out)
    for trace in out.values():
        trace.messages.sort(key=lambda m: m.seq)
    return out


def iter_traces(path: Path | str) -> Iterator[tuple[Key, CallTrace]]:
    """Every traced call in the order written, one batch of the file in memory at a time
    (a call's trace is written whole, in one batch)."""
    for b in _batches(Path(path)):
        calls: dict[Key, CallTrace] = {}
        _group(b.to_pylist(), calls)
        for key, trace in calls.items():
            trace.messages.sort(key=lambda m: m.seq)
            yield key, trace
