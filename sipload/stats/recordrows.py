"""A worker's call record as the coordinator takes it: checked, then made a table row.

Records cross from workers as msgpack maps (:meth:`CallRecord.to_dict
<sipload.stats.records.CallRecord.to_dict>`), and a worker's bytes are not trusted:
:func:`check_record` says what is wrong with one (None when nothing is), and only then
does :func:`record_row` turn it into a row of ``calls.arrows``
(:mod:`sipload.stats.rundir`).  The coordinator does both for every call of a run, so
this module is compiled by mypyc (``sipload/_native.py``): in Python the two took
about 70 µs of the coordinator's CPU per call, as much as a fifth of what the call
cost its worker.

The rules, in order:

1. A record is a map holding every key of :data:`_REQUIRED`, each of its kind:
   counts are non-negative integers, numbers are finite integers or floats (never
   booleans), texts are strings of at most :data:`MAX_TEXT` characters.
2. ``result`` is one of :class:`~sipload.stats.records.Result`'s values; ``codes`` a
   list of status codes (below 1000); ``messages`` a list of ``[time, direction,
   summary]``; ``marks`` a map of name to seconds; each at most :data:`MAX_ITEMS` long.
3. The optional keys (``worker``, ``call_id``, ``server``, ``failovers``, ``source``)
   are of their kind when present; ``media``, when present and not empty, is a map of
   name to number (names the table has no column for are ignored).
4. A row spells ``marks`` and ``messages`` as compact JSON, exactly what
   ``json.dumps(value, separators=(",", ":"))`` writes for a record rule 2 admits
   (tests/test_recordrows.py checks the two agree).
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from sipload.stats.records import Result

MAX_TEXT: Final = 4096
"""The longest failure text, detail or Call-ID a record may carry."""

MAX_ITEMS: Final = 10_000
"""The most codes, messages or marks one record may carry."""

#: The per-call media figures, one float64 column each (``media_<name>``; null for a
#: call without media).  The same names as ``sipload.media.call.FIELDS``.
MEDIA_FIELDS: Final[tuple[str, ...]] = (
    "sent", "received", "expected", "lost", "loss_rate", "duplicates", "out_of_order",
    "jitter_ms", "max_jitter_ms", "longest_gap_ms", "ssrc_changes", "pt_changes", "malformed",
    "foreign", "events", "r_factor", "mos", "remote_lost", "remote_fraction_lost",
    "remote_jitter_ms", "rtt_ms", "srtp", "srtp_auth_failures", "srtp_replay_failures",
)
MEDIA_COLUMNS: Final[tuple[str, ...]] = tuple(f"media_{name}" for name in MEDIA_FIELDS)

_RESULTS: Final = frozenset(r.value for r in Result)

_COUNT, _NUMBER, _TEXT, _INT = 0, 1, 2, 3
_REQUIRED: Final[tuple[tuple[str, int], ...]] = (
    ("call_number", _COUNT), ("intended_start", _NUMBER), ("actual_start", _NUMBER),
    ("end", _NUMBER), ("failure", _TEXT), ("detail", _TEXT), ("step", _INT),
    ("retransmissions", _COUNT),
)

_quote = json.encoder.encode_basestring_ascii  # json.dumps' own string quoting (C)


def is_number(v: object) -> bool:
    """A finite float, or an int (not a bool) that fits msgpack's 64 bits."""
    if isinstance(v, float):
        return math.isfinite(v)
    # msgpack's integers are 64-bit; a bigger one (from elsewhere) would not be a float
    return isinstance(v, int) and not isinstance(v, bool) and -(1 << 63) <= v < (1 << 64)


def is_count(v: object) -> bool:
    """A non-negative int (not a bool)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def is_text(v: object) -> bool:
    """A str of at most MAX_TEXT characters."""
    return isinstance(v, str) and len(v) <= MAX_TEXT


def _fits(kind: int, v: object) -> bool:
    if kind == _COUNT:
        return is_count(v)
    if kind == _NUMBER:
        return is_number(v)
    if kind == _TEXT:
        return is_text(v)
    return isinstance(v, int) and not isinstance(v, bool)


def check_record(r: object) -> str | None:
    """None when ``r`` is a whole, well-typed call record (rules 1-3); else what is not."""
    if not isinstance(r, dict):
        return "a record is a map"
    for key, kind in _REQUIRED:
        if key not in r:
            return f"record without {key}"
        if not _fits(kind, r[key]):
            return f"record {key}: bad value {str(r[key])[:40]!r}"
    if r.get("result") not in _RESULTS:
        return f"record result: {str(r.get('result'))[:40]!r} is not a result"
    codes = r.get("codes")
    if not isinstance(codes, list) or len(codes) > MAX_ITEMS:
        return "record codes: not a list of status codes"
    for c in codes:
        if not is_count(c) or c >= 1000:
            return "record codes: not a list of status codes"
    messages = r.get("messages")
    if not isinstance(messages, list) or len(messages) > MAX_ITEMS:
        return "record messages: not a list of [time, direction, summary]"
    for m in messages:
        if not isinstance(m, (list, tuple)) or len(m) != 3 or not is_number(m[0]) \
                or not is_text(m[1]) or not is_text(m[2]):
            return "record messages: not a list of [time, direction, summary]"
    marks = r.get("marks")
    if not isinstance(marks, dict) or len(marks) > MAX_ITEMS:
        return "record marks: not a map of name to seconds"
    for k, v in marks.items():
        if not is_text(k) or not is_number(v):
            return "record marks: not a map of name to seconds"
    if not is_count(r.get("worker", 0)) or not is_text(r.get("call_id", "")):
        return "record worker or call_id: bad value"
    if not is_text(r.get("server", "")) or not is_count(r.get("failovers", 0)):
        return "record server or failovers: bad value"
    if not is_text(r.get("source", "")):
        return "record source: bad value"
    media = r.get("media")
    if media:
        if not isinstance(media, dict) or len(media) > MAX_ITEMS:
            return "record media: not a map of name to number"
        for k, v in media.items():
            if not isinstance(k, str) or not is_number(v):
                return "record media: not a map of name to number"
    return None


def _json_number(v: object) -> str:
    """What ``json.dumps`` writes for a finite int or float (rule 4)."""
    if isinstance(v, float):
        return float.__repr__(v)
    assert isinstance(v, int)
    return int.__repr__(v)


def marks_json(marks: dict[str, Any]) -> str:
    """``json.dumps(marks, separators=(",", ":"))`` for a map of text to numbers."""
    if not marks:
        return "{}"
    return "{" + ",".join([_quote(k) + ":" + _json_number(v) for k, v in marks.items()]) + "}"


def messages_json(messages: list[Any]) -> str:
    """``json.dumps(messages, separators=(",", ":"))`` for ``[time, direction, summary]``s."""
    if not messages:
        return "[]"
    return "[" + ",".join([
        "[" + _json_number(m[0]) + "," + _quote(m[1]) + "," + _quote(m[2]) + "]"
        for m in messages]) + "]"


_NO_MEDIA: Final[dict[str, float | None]] = dict.fromkeys(MEDIA_COLUMNS)


def _media_cells(media: dict[str, Any]) -> dict[str, float | None]:
    if not media:
        return _NO_MEDIA  # most calls: spread into the row, never changed
    return {column: (float(media[name]) if name in media else None)
            for name, column in zip(MEDIA_FIELDS, MEDIA_COLUMNS, strict=True)}


def record_row(r: dict[str, Any]) -> dict[str, Any]:
    """A record (as :meth:`CallRecord.to_dict` gives it, or as :func:`check_record`
    admits it) as a table row."""
    row: dict[str, Any] = {
        "worker": int(r.get("worker", 0)), "call_number": int(r["call_number"]),
        "intended_start": float(r["intended_start"]), "actual_start": float(r["actual_start"]),
        "end": float(r["end"]), "result": str(r["result"]), "failure": str(r["failure"]),
        "detail": str(r["detail"]), "step": int(r["step"]),
        "codes": ",".join([str(c) for c in r["codes"]]),
        "retransmissions": int(r["retransmissions"]), "call_id": str(r.get("call_id", "")),
        "marks": marks_json(r["marks"]),
        "messages": messages_json(r["messages"]),
    }
    row.update(_media_cells(r.get("media") or {}))
    row["server"] = str(r.get("server", ""))
    row["failovers"] = int(r.get("failovers", 0))
    row["source"] = str(r.get("source", ""))
    return row
