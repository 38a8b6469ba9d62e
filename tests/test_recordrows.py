"""A worker's record checked and made a row (sipload.stats.recordrows, compiled).

The rows' JSON cells must be what ``json.dumps`` writes (the report reads them with
``json.loads``, and older run directories hold ``json.dumps``' spelling); a record the
check admits must never make ``record_row`` raise (the coordinator would die of a
worker's bytes); and everything the check refused before it moved here it still refuses.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from sipload.stats.recordrows import (
    MAX_TEXT,
    MEDIA_COLUMNS,
    MEDIA_FIELDS,
    check_record,
    marks_json,
    messages_json,
    record_row,
)
from sipload.stats.records import CallRecord, Failure

_texts = st.text(max_size=30)  # any code point: quotes, controls, non-ASCII, surrogates
_numbers = st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                     st.integers(-(1 << 63), (1 << 64) - 1))
_messages = st.lists(st.tuples(_numbers, _texts, _texts).map(list), max_size=6)
_marks = st.dictionaries(_texts, _numbers, max_size=6)


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _record(**change: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "call_number": 7, "intended_start": 1.0, "actual_start": 1.25, "end": 2,
        "result": "failed", "failure": "timeout", "detail": "step 4", "step": 4,
        "codes": [100, 180, 200], "messages": [[1.0, "out", "INVITE"], [1.1, "in", "200"]],
        "retransmissions": 0, "marks": {"answer": 0.1, "ring": 0}, "worker": 2,
        "call_id": "w2-1a-0x7@sipload"}
    r.update(change)
    return {k: v for k, v in r.items() if v is not None}


@given(_marks)
def test_marks_spelled_as_json_dumps(marks: dict[str, Any]) -> None:
    assert marks_json(marks) == _compact(marks)
    assert json.loads(marks_json(marks)) == marks


@given(_messages)
def test_messages_spelled_as_json_dumps(messages: list[Any]) -> None:
    assert messages_json(messages) == _compact(messages)
    assert messages_json([tuple(m) for m in messages]) == _compact(messages)


@settings(max_examples=200)
@given(_marks, _messages, st.lists(st.integers(100, 999), max_size=5), _numbers,
       st.dictionaries(st.sampled_from(MEDIA_FIELDS), _numbers, max_size=4))
def test_what_the_check_admits_makes_a_row(marks: dict[str, Any], messages: list[Any],
                                           codes: list[int], start: float,
                                           media: dict[str, Any]) -> None:
    """Through msgpack as a worker sends it: admitted, then a row that holds it all."""
    sent = _record(marks=marks, messages=messages, codes=codes, intended_start=start,
                   media=media)
    r = msgpack.unpackb(msgpack.packb(sent, use_bin_type=True), raw=False)
    assert check_record(r) is None
    row = record_row(r)
    assert json.loads(row["marks"]) == marks and json.loads(row["messages"]) == messages
    assert row["codes"] == ",".join(str(c) for c in codes)
    assert row["intended_start"] == float(start) and isinstance(row["end"], float)
    for name, column in zip(MEDIA_FIELDS, MEDIA_COLUMNS, strict=True):
        assert row[column] == (float(media[name]) if name in media else None)


def test_a_call_records_own_dict_is_admitted() -> None:
    rec = CallRecord(3, 0.5, 0.5, 1.5, worker=1, call_id="c@h")
    rec.codes.extend([180, 486])
    rec.messages.append((0.5, "out", "INVITE"))
    rec.marks["ring"] = 0.2
    rec.fail(Failure.REJECTED, "486 Busy Here", 1.5, 3)
    d = rec.to_dict()
    assert check_record(d) is None
    row = record_row(d)
    assert row["result"] == "failed" and row["failure"] == "call_rejected"
    assert row["marks"] == '{"ring":0.2}' and row["messages"] == '[[0.5,"out","INVITE"]]'
    assert row["codes"] == "180,486" and row["media_mos"] is None


def test_every_fault_is_named() -> None:
    bad: list[tuple[object, str]] = [
        ("not a map", "a record is a map"),
        ([1, 2], "a record is a map"),
        (_record(call_number=None), "record without call_number"),
        (_record(call_number=-1), "record call_number: bad value"),
        (_record(call_number=True), "record call_number: bad value"),
        (_record(intended_start="1.0"), "record intended_start: bad value"),
        (_record(end=math.inf), "record end: bad value"),
        (_record(actual_start=1 << 70), "record actual_start: bad value"),
        (_record(detail="x" * (MAX_TEXT + 1)), "record detail: bad value"),
        (_record(step=1.5), "record step: bad value"),
        (_record(result="great"), "record result: 'great' is not a result"),
        (_record(result=None), "record result: 'None' is not a result"),
        (_record(codes=["200"]), "record codes"),
        (_record(codes=[1000]), "record codes"),
        (_record(codes="200"), "record codes"),
        (_record(messages=[[1.0, "out"]]), "record messages"),
        (_record(messages=[[float("nan"), "out", "x"]]), "record messages"),
        (_record(messages=[["1", "out", "x"]]), "record messages"),
        (_record(messages=[[1.0, "out", 3]]), "record messages"),
        (_record(marks={"a": float("nan")}), "record marks"),
        (_record(marks={"a": "1"}), "record marks"),
        (_record(marks={"a": False}), "record marks"),
        (_record(marks=[["a", 1.0]]), "record marks"),
        (_record(worker=-2), "record worker or call_id"),
        (_record(call_id=5), "record worker or call_id"),
        (_record(server=None, failovers=-1), "record server or failovers"),
        (_record(source=b"10.0.0.1"), "record source"),
        (_record(media={"mos": "4.1"}), "record media"),
        (_record(media={"mos": float("nan")}), "record media"),
        (_record(media=[1, 2]), "record media"),
    ]
    for r, why in bad:
        found = check_record(r)
        assert found is not None and found.startswith(why), (r, found)


def test_optional_keys_may_be_absent() -> None:
    r = _record(worker=None, call_id=None)
    assert check_record(r) is None
    row = record_row(r)
    assert (row["worker"], row["call_id"], row["server"], row["failovers"], row["source"]) \
        == (0, "", "", 0, "")
    assert all(row[c] is None for c in MEDIA_COLUMNS)


def test_batches_without_media_are_written_as_the_rows_say(tmp_path: Path) -> None:
    """A batch of records none of which carries media has its media columns written as
    nulls without reading the rows; a batch where one does is read row by row.  Either
    way calls.arrows holds what the rows say (compared with pyarrow's from_pylist)."""
    import pyarrow as pa

    from sipload.stats.recordrows import MEDIA_COLUMNS, record_row
    from sipload.stats.rundir import RunWriter, call_schema, read_calls

    plain = [CallRecord(i, 0.1 * i).to_dict() for i in range(3)]
    with_media = [CallRecord(10 + i, 1.0 + i).to_dict() for i in range(3)]
    with_media[1]["media"] = {"sent": 50, "received": 49, "mos": 4.2}
    writer = RunWriter(tmp_path)
    writer.append_records(plain)
    writer.append_records(with_media)
    writer.close()
    got = read_calls(tmp_path)
    want = pa.Table.from_pylist([record_row(r) for r in plain + with_media],
                                schema=call_schema())
    assert got.equals(want)
    assert got.column("media_sent").to_pylist() == [None] * 4 + [50.0, None]
    assert all(got.column(c).null_count >= 5 for c in MEDIA_COLUMNS)


def test_the_media_columns_are_the_media_figures() -> None:
    """stats and media may each import only sip (tests/test_layering.py), so the names of
    a call's media figures are written twice: the record's columns and what
    CallMedia.figures() gives must stay the same list, in the same order."""
    from sipload.media.call import FIELDS

    assert MEDIA_FIELDS == FIELDS
