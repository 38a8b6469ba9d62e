"""The run directory: the files a run leaves, written as it goes.

Layout (all in ``reports/<timestamp>-<scenario>/`` by default)::

    plan.json         the run plan, the exact command, versions, scenario hash
    calls.arrows      one row per call (Arrow IPC stream: appended batch by batch,
                      readable up to the last whole batch even after a crash)
    intervals.jsonl   one snapshot per worker per second (counts, rates, health,
                      latency histograms that merge by addition)
    events.jsonl      workers joining, lost, stopping; thresholds breached
    traces.arrows     the wire messages of traced calls (``--trace``), one row per
                      message with its bytes, stamps and addresses (Arrow IPC stream)
    messages.pcap     the same messages as UDP/TCP packets over IPv4/IPv6 (stats.pcap)
    scenario.yaml     the scenario as it ran
    summary.json      written at the end
    report.html, junit.xml   made by sipload.report from the files above

Times in records and snapshots are seconds since the run started.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Collection, Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sipload.stats.pcap import PcapWriter
from sipload.stats.recordrows import MEDIA_COLUMNS, MEDIA_FIELDS, record_row
from sipload.stats.records import CallRecord

if TYPE_CHECKING:  # pyarrow is imported by warm() or the first batch, not at import
    import pyarrow as pa
    import pyarrow.ipc as ipc

CALLS = "calls.arrows"
INTERVALS = "intervals.jsonl"
EVENTS = "events.jsonl"
PLAN = "plan.json"
SUMMARY = "summary.json"
TRACES = "traces.arrows"
PCAP = "messages.pcap"



def warm() -> None:
    """Import pyarrow and build the schemas now.

    Lazily on the first batch, the import (0.1-0.3 s of CPU) lands in the middle of a
    run: in ``sipload uas --out`` it stalled the loop while calls were answered (a BYE's
    200 left 250 ms late); in the coordinator it takes a core from the workers.  Both
    call this before any call, while nothing is measured."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    pyarrow_without_pandas()
    trace_schema()
    # one record through the writer's own path
    row = record_row(CallRecord(0, 0.0).to_dict())
    with ipc.new_stream(pa.BufferOutputStream(), call_schema()) as w:
        w.write_batch(_batch([row], call_schema()))


def pyarrow_without_pandas() -> None:
    """Keep pyarrow from importing pandas in this process until something needs it.

    pyarrow looks for pandas the first time it converts Python values (``pa.array``,
    a compute function's scalar argument): importing it costs 0.3 s of CPU, which a
    run's writer and its report never need.  pyarrow looks once: with ``pandas``
    unimportable for that one conversion, it takes pandas as absent and converts
    without it; what needs pandas later (``to_pandas``, :func:`pyarrow_with_pandas`,
    which :mod:`sipload.report.data` calls as it imports pandas) makes it look again.
    Nothing is done when pandas is imported already."""
    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    sys.modules["pandas"] = None  # type: ignore[assignment]  # the look finds no pandas
    try:
        pa.array([0], pa.int64())
    except (ImportError, AttributeError):  # pyarrow raises as it looks (its version)
        pass
    finally:
        del sys.modules["pandas"]


def pyarrow_with_pandas() -> None:
    """Tell pyarrow pandas is there after :func:`pyarrow_without_pandas` (call after
    importing pandas: pyarrow's own pandas conversions are on again)."""
    import pyarrow as pa

    shim = getattr(pa.lib, "_pandas_api", None)
    if shim is not None and getattr(shim, "_pd", None) is None:
        shim.pd  # noqa: B018  # pyarrow's shim imports pandas on this property's read


@cache
def call_schema() -> pa.Schema:
    """The columns of ``calls.arrows``."""
    import pyarrow as pa

    return pa.schema([
        ("worker", pa.int32()), ("call_number", pa.int64()), ("intended_start", pa.float64()),
        ("actual_start", pa.float64()), ("end", pa.float64()), ("result", pa.string()),
        ("failure", pa.string()), ("detail", pa.string()), ("step", pa.int32()),
        ("codes", pa.string()), ("retransmissions", pa.int32()), ("call_id", pa.string()),
        ("marks", pa.string()), ("messages", pa.string()),
        *[(column, pa.float64()) for column in MEDIA_COLUMNS],
        ("server", pa.string()), ("failovers", pa.int32()), ("source", pa.string()),
    ])


@cache
def trace_schema() -> pa.Schema:
    """The columns of ``traces.arrows``."""
    import pyarrow as pa

    return pa.schema([
        ("worker", pa.int32()), ("call_number", pa.int64()), ("call_id", pa.string()),
        ("seq", pa.int32()),  # the message's place in its call's trace, from 0
        ("t", pa.float64()),  # seconds on the worker's clock, as the call's record
        ("ts", pa.float64()),  # Unix time
        ("direction", pa.string()), ("transport", pa.string()),
        ("local_host", pa.string()), ("local_port", pa.int32()),
        ("remote_host", pa.string()), ("remote_port", pa.int32()),
        ("length", pa.int32()),  # the message's full length; data may hold fewer bytes
        ("data", pa.binary()),
        ("dropped", pa.int32()),  # messages of the call not kept (the trace's byte cap)
    ])


def __getattr__(name: str) -> Any:
    """``CALL_SCHEMA`` and ``TRACE_SCHEMA``, made on first use (PEP 562)."""
    if name == "CALL_SCHEMA":
        return call_schema()
    if name == "TRACE_SCHEMA":
        return trace_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def trace_rows(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """A trace (as stats.traces.TraceKeeper.export gives it) as table rows.

    Raises:
        ValueError, TypeError, KeyError, IndexError: a malformed trace.
    """
    worker, number = int(trace["worker"]), int(trace["call_number"])
    call_id, dropped, epoch = str(trace["call_id"]), int(trace["dropped"]), float(trace["epoch"])
    rows = []
    for i, m in enumerate(trace["messages"]):
        t, direction, transport, lhost, lport, rhost, rport, length, data = m
        if not isinstance(data, bytes) or direction not in ("in", "out"):
            raise ValueError("malformed traced message")
        rows.append({
            "worker": worker, "call_number": number, "call_id": call_id, "seq": i,
            "t": float(t), "ts": epoch + float(t), "direction": direction,
            "transport": str(transport), "local_host": str(lhost), "local_port": int(lport),
            "remote_host": str(rhost), "remote_port": int(rport), "length": int(length),
            "data": data, "dropped": dropped,
        })
    return rows


class RunWriter:
    """Appends to a run directory as records and snapshots arrive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._calls_file = (path / CALLS).open("wb")
        self._calls: ipc.RecordBatchStreamWriter | None = None  # at the first batch
        self._intervals = (path / INTERVALS).open("a", encoding="utf-8")
        self._events = (path / EVENTS).open("a", encoding="utf-8")
        self.rows = 0
        self._traces: ipc.RecordBatchStreamWriter | None = None
        self._traces_file: Any = None
        self._pcap_file: Any = None
        self._pcap: PcapWriter | None = None
        self.traced_calls = 0
        self.bad_traces = 0  #: traces that did not have the expected shape (not written)

    def write_json(self, name: str, data: Any) -> None:
        tmp = self.path / (name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        tmp.replace(self.path / name)

    def write_text(self, name: str, text: str) -> None:
        (self.path / name).write_text(text, encoding="utf-8")

    def append_records(self, records: Iterable[dict[str, Any]]) -> int:
        records = list(records)
        rows = [record_row(r) for r in records]
        if not rows:
            return 0
        # most runs carry no media: their media columns are written as nulls at once
        media = any(r.get("media") for r in records)
        self._open_calls().write_batch(
            _batch(rows, call_schema(), () if media else _MEDIA_COLUMN_SET))
        self._calls_file.flush()
        self.rows += len(rows)
        return len(rows)

    def _open_calls(self) -> ipc.RecordBatchStreamWriter:
        if self._calls is None:
            import pyarrow.ipc as ipc

            self._calls = ipc.new_stream(self._calls_file, call_schema())
        return self._calls

    def open_traces(self) -> None:
        """Create ``traces.arrows`` and ``messages.pcap`` (empty until traces come)."""
        if self._traces is not None:
            return
        import pyarrow.ipc as ipc

        self._traces_file = (self.path / TRACES).open("wb")
        self._traces = ipc.new_stream(self._traces_file, trace_schema())
        self._pcap_file = (self.path / PCAP).open("wb")
        self._pcap = PcapWriter(self._pcap_file)
        self._pcap.write_header()
        self._pcap_file.flush()

    def append_traces(self, traces: Iterable[dict[str, Any]]) -> int:
        """Write traced calls to ``traces.arrows`` and ``messages.pcap``; returns rows."""
        rows: list[dict[str, Any]] = []
        for trace in traces:
            try:
                one = trace_rows(trace)
            except (ValueError, TypeError, KeyError, IndexError):
                self.bad_traces += 1
                continue
            rows.extend(one)
            self.traced_calls += 1
        if not rows:
            return 0
        self.open_traces()
        assert self._traces is not None and self._pcap is not None
        self._traces.write_batch(_batch(rows, trace_schema()))
        self._traces_file.flush()
        for r in rows:
            local, remote = (r["local_host"], r["local_port"]), (r["remote_host"],
                                                                   r["remote_port"])
            src, dst = (local, remote) if r["direction"] == "out" else (remote, local)
            self._pcap.message(r["ts"], r["transport"], src, dst, r["data"], r["length"])
        self._pcap_file.flush()
        return len(rows)

    def append_interval(self, snapshot: dict[str, Any]) -> None:
        self._intervals.write(json.dumps(snapshot, separators=(",", ":")) + "\n")
        self._intervals.flush()

    def append_event(self, event: dict[str, Any]) -> None:
        self._events.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._events.flush()

    def close(self) -> None:
        self._open_calls().close()  # a run without records still gets its schema
        self._calls_file.close()
        if self._traces is not None:
            self._traces.close()
            self._traces_file.close()
            self._pcap_file.close()
        self._intervals.close()
        self._events.close()


_MEDIA_COLUMN_SET: frozenset[str] = frozenset(MEDIA_COLUMNS)


def _batch(rows: list[dict[str, Any]], schema: pa.Schema,
           nulls: Collection[str] = ()) -> pa.RecordBatch:
    """Rows (dicts holding every column of ``schema``) as one batch, built column by
    column: ``RecordBatch.from_pylist`` takes about 90 µs per call record (40 columns,
    most of them null), this about 5, and the coordinator writes one per call.  The
    columns of ``nulls`` are null in every row (the caller knows): written as such
    without reading the rows (24 media columns of a run without media: 2.5 µs a row)."""
    import pyarrow as pa

    n = len(rows)
    return pa.RecordBatch.from_arrays(
        [pa.nulls(n, f.type) if f.name in nulls else pa.array([r[f.name] for r in rows],
                                                                type=f.type)
         for f in schema], schema=schema)


def _read_stream(f: Path, schema: pa.Schema) -> pa.Table:
    """Every whole batch of an Arrow IPC stream file (a truncated tail is ignored)."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

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
    batches = [_with_all_columns(b, schema) for b in batches]
    return pa.Table.from_batches(batches, schema=schema)


def read_calls(path: Path) -> pa.Table:
    """Every whole batch of ``calls.arrows`` (a truncated tail is ignored)."""
    return _read_stream(path / CALLS, call_schema())


def read_traces(path: Path) -> pa.Table:
    """Every whole batch of ``traces.arrows``; an empty table if the run kept none."""
    return _read_stream(path / TRACES, trace_schema())


def _with_all_columns(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A batch written before a column existed gets it, all null."""
    if batch.schema.equals(schema):
        return batch
    import pyarrow as pa

    columns = []
    for f in schema:
        index = batch.schema.get_field_index(f.name)
        columns.append(batch.column(index) if index >= 0 else pa.nulls(batch.num_rows, f.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


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
        media = {name: row[column] for name, column in zip(MEDIA_FIELDS, MEDIA_COLUMNS,
                                                            strict=True)
                 if row.get(column) is not None}
        out.append(CallRecord.from_dict({
            **row, "codes": [int(c) for c in row["codes"].split(",") if c],
            "marks": json.loads(row["marks"]), "messages": json.loads(row["messages"]),
            "media": media,
        }))
    return out
