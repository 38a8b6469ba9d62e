"""Typed control messages between the coordinator and its workers, as msgpack.

Each message is a frozen dataclass; on the wire it is a msgpack map with a
``"type"`` key.  :func:`decode` refuses anything malformed with
:class:`ProtocolError`, so a confused or hostile peer cannot crash either side.

Worker → coordinator: Hello, Ready, Heartbeat, Records, Snapshot, Done, Failed, Released.
Coordinator → worker: Welcome, Go, SetShare, Release, Stop, Ack, Bye.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import msgpack

PROTOCOL = 3
"""2: Release/Released (a worker joining a running run); 3: Records.packed (records
packed one by one by the worker, concatenated)"""


def extra_numbers(calls: int, worker: int) -> int:
    """The first call number worker ``worker`` gives calls taken over from lost
    workers, in a run of ``calls`` calls: its own block above everyone's ranges
    (a worker never takes over more than ``calls`` calls).  Here, not in the
    coordinator's module, which a worker then need not import."""
    return calls * (worker + 1)


class ProtocolError(Exception):
    """A control message that cannot be decoded or is of an unknown type."""


@dataclass(frozen=True, slots=True)
class Hello:
    version: str
    pid: int
    host: str
    protocol: int = PROTOCOL
    build: str = ""  #: how the hot path runs: compiled (mypyc) or pure Python


@dataclass(frozen=True, slots=True)
class Welcome:
    """The worker's id, the scenario and its share of the run."""

    worker: int
    plan: dict[str, Any]  #: scenario text and name, target, transport, timers, limits
    rate: float
    calls: int | None
    first_call: int
    users: int | None = None


@dataclass(frozen=True, slots=True)
class Ready:
    worker: int
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class Go:
    pass


@dataclass(frozen=True, slots=True)
class Heartbeat:
    worker: int
    t: float
    active: int
    started: int
    cpu: float
    loop_lag_ms: float


@dataclass(frozen=True, slots=True)
class Records:
    worker: int
    seq: int
    records: list[dict[str, Any]]
    #: calls the worker had started when it sent the batch (every record is one of them;
    #: a heartbeat's count can be older than the records that follow it)
    started: int = 0
    #: wire traces of calls (stats.traces.TraceKeeper.export), written beside the records
    traces: list[dict[str, Any]] = field(default_factory=list)
    #: more records, each a msgpack map, concatenated (:func:`pack_record`): a worker packs
    #: them a few at a time between call starts, not a second's worth at once.
    #: :func:`decode` unpacks them into ``records`` (after those), so a decoded Records
    #: has ``packed`` empty.
    packed: bytes = b""


@dataclass(frozen=True, slots=True)
class Snapshot:
    worker: int
    snapshot: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Done:
    worker: int
    started: int
    succeeded: int
    failed: int
    in_flight: int
    records_sent: int
    retransmissions: int


@dataclass(frozen=True, slots=True)
class Failed:
    worker: int
    reason: str


@dataclass(frozen=True, slots=True)
class SetShare:
    rate: float
    extra_calls: int = 0


@dataclass(frozen=True, slots=True)
class Release:
    """Give back up to ``calls`` of the calls not yet started (for a joining worker);
    the worker answers :class:`Released` with how many it gave back."""

    calls: int


@dataclass(frozen=True, slots=True)
class Released:
    worker: int
    calls: int  #: calls given back: never started, and never will be by this worker


@dataclass(frozen=True, slots=True)
class Stop:
    grace: float = 5.0
    abort: bool = False


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int


@dataclass(frozen=True, slots=True)
class Bye:
    reason: str = ""


Message = (Hello | Welcome | Ready | Go | Heartbeat | Records | Snapshot | Done | Failed
           | SetShare | Release | Released | Stop | Ack | Bye)
_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in (
    Hello, Welcome, Ready, Go, Heartbeat, Records, Snapshot, Done, Failed, SetShare, Release,
    Released, Stop, Ack, Bye)}
_FIELDS: dict[str, frozenset[str]] = {
    name: frozenset(f.name for f in fields(cls)) for name, cls in _TYPES.items()}


def _accepted(hint: Any) -> tuple[type, ...]:
    """The runtime types a field's annotation admits (int is fine where float is)."""
    out: list[type] = []
    union = get_origin(hint) in (Union, UnionType)
    for arg in get_args(hint) if union else (hint,):
        origin = get_origin(arg) or arg
        if arg is type(None):
            out.append(type(None))
        elif origin is float:
            out.extend((float, int))
        elif isinstance(origin, type):
            out.append(origin)
    return tuple(out)


_CHECKS: dict[str, dict[str, tuple[type, ...]]] = {
    name: {k: _accepted(v) for k, v in get_type_hints(cls).items()}
    for name, cls in _TYPES.items()
}


_ORDER: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in _TYPES.values()}


def encode(msg: Message) -> bytes:
    # a shallow map: field values are plain msgpack types already (dataclasses.asdict
    # would deep-copy every record of a batch: 30x slower, a stall in the worker's loop)
    data = {name: getattr(msg, name) for name in _ORDER[type(msg)]}
    data["type"] = type(msg).__name__
    out = msgpack.packb(data, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


def pack_record(record: dict[str, Any]) -> bytes:
    """One record as it goes into :attr:`Records.packed`."""
    out = msgpack.packb(record, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


def _unpack_records(packed: bytes) -> list[dict[str, Any]]:
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=len(packed))
    unpacker.feed(packed)
    out: list[dict[str, Any]] = []
    for obj in unpacker:
        if not isinstance(obj, dict):
            raise ProtocolError("Records.packed: a record is a map")
        out.append(obj)
    if unpacker.tell() != len(packed):
        raise ProtocolError("Records.packed: a record is cut short")
    return out


def decode(data: bytes) -> Message:
    """Decode one message; raises ProtocolError for anything else."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several exception types for bad input
        raise ProtocolError(f"undecodable message: {e}") from e
    if not isinstance(obj, dict):
        raise ProtocolError("a message is a map")
    name = obj.pop("type", None)
    cls = _TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {name!r}")
    if set(obj) != _FIELDS[str(name)] and not set(obj) <= _FIELDS[str(name)]:
        raise ProtocolError(f"unexpected fields in {name}")
    checks = _CHECKS[str(name)]
    for key, value in obj.items():
        allowed = checks[key]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ProtocolError(f"{name}.{key}: wrong type {type(value).__name__}")
    if cls is Records and obj.get("packed"):
        try:
            unpacked = _unpack_records(obj.pop("packed"))
        except ProtocolError:
            raise
        except Exception as e:  # truncated or malformed msgpack
            raise ProtocolError(f"Records.packed: {e}") from e
        obj["records"] = [*obj.get("records", []), *unpacked]
    try:
        msg: Message = cls(**obj)
    except TypeError as e:
        raise ProtocolError(f"bad {name}: {e}") from e
    return msg

