"""The run directory: the files a run leaves, written as it goes.

Layout (all in ``reports/<timestamp>-<scenario>/`` by default)::

    plan.json         the run plan, the exact command, versions, scenario hash
    calls.arrows      one row per call (Arrow IPC stream: appended batch by batch,
                      readable up to the last whole batch even after a crash)
    intervals.jsonl   one snapshot per worker per second (counts, rates, health,
                      latency histograms that merge by addition)
    events.jsonl      workers joining, lost, stopping; thresholds breached
    scenario.yaml     the scenario as it ran
    summary.json      written at the end
    report.html, junit.xml   made by sipload.report from the files above

Times in records and snapshots are seconds since the run started.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from sipload.stats.records import CallRecord

CALLS = "calls.arrows"
INTERVALS = "intervals.jsonl"
EVENTS = "events.jsonl"
PLAN = "plan.json"
SUMMARY = "summary.json"

CALL_SCHEMA = pa.schema([
    ("worker", pa.int32()), ("call_number", pa.int64()), ("intended_start", pa.float64()),
    ("actual_start", pa.float64()), ("end", pa.float64()), ("result", pa.string()),
    ("failure", pa.string()), ("detail", pa.string()), ("step", pa.int32()),
    ("codes", pa.string()), ("retransmissions", pa.int32()), ("call_id", pa.string()),
    ("marks", pa.string()), ("messages", pa.string()),
])


def record_row(r: dict[str, Any]) -> dict[str, Any]:
    """A record (as :meth:`CallRecord.to_dict` gives it) as a table row."""
    return {
        "worker": int(r.get("worker", 0)), "call_number": int(r["call_number"]),
        "intended_start": float(r["intended_start"]), "actual_start": float(r["actual_start"]),
        "end": float(r["end"]), "result": str(r["result"]), "failure": str(r["failure"]),
        "detail": str(r["detail"]), "step": int(r["step"]),
        "codes": ",".join(str(c) for c in r["codes"]),
        "retransmissions": int(r["retransmissions"]), "call_id": str(r.get("call_id", "")),
        "marks": json.dumps(r["marks"], separators=(",", ":")),
        "messages": json.dumps(r["messages"], separators=(",", ":")),
    }


class RunWriter:
    """Appends to a run directory as records and snapshots arrive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._calls_file = (path / CALLS).open("wb")
        self._calls = ipc.new_stream(self._calls_file, CALL_SCHEMA)
        self._intervals = (path / INTERVALS).open("a", encoding="utf-8")
        self._events = (path / EVENTS).open("a", encoding="utf-8")
        self.rows = 0

    def write_json(self, name: str, data: Any) -> None:
        tmp = self.path / (name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        tmp.replace(self.path / name)

    def write_text(self, name: str, text: str) -> None:
        (self.path / name).write_text(text, encoding="utf-8")

    def append_records(self, records: Iterable[dict[str, Any]]) -> int:
        rows = [record_row(r) for r in records]
        if not rows:
            return 0
        batch = pa.RecordBatch.from_pylist(rows, schema=CALL_SCHEMA)
        self._calls.write_batch(batch)
        self._calls_file.flush()
        self.rows += len(rows)
        return len(rows)

    def append_interval(self, snapshot: dict[str, Any]) -> None:
        self._intervals.write(json.dumps(snapshot, separators=(",", ":")) + "\n")
        self._intervals.flush()

    def append_event(self, event: dict[str, Any]) -> None:
        self._events.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._events.flush()

    def close(self) -> None:
        self._calls.close()
        self._calls_file.close()
        self._intervals.close()
        self._events.close()


def read_calls(path: Path) -> pa.Table:
    """Every whole batch of ``calls.arrows`` (a truncated tail is ignored)."""
    f = path / CALLS
    batches: list[pa.RecordBatch] = []
    if f.exists() and f.stat().st_size:
        with f.open("rb") as fh:
            try:
                reader = ipc.open_stream(fh)
                while True:
                    try:
                        batches.append(reader.read_next_batch())
                    except StopIteration:
                        break
            except (pa.ArrowInvalid, OSError):
                pass
    return pa.Table.from_batches(batches, schema=CALL_SCHEMA)


def read_jsonl(path: Path, name: str) -> list[dict[str, Any]]:
    f = path / name
    out: list[dict[str, Any]] = []
    if not f.exists():
        return out
    for line in f.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash
    return out


def records_from_table(table: pa.Table) -> list[CallRecord]:
    out: list[CallRecord] = []
    for row in table.to_pylist():
        out.append(CallRecord.from_dict({
            **row, "codes": [int(c) for c in row["codes"].split(",") if c],
            "marks": json.loads(row["marks"]), "messages": json.loads(row["messages"]),
        }))
    return out
