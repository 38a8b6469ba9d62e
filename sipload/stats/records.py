"""One record per call: what happened, when, and why it ended as it did.

Every call started ends as exactly one :class:`CallRecord`: a success, a
failure with a reason from :class:`Failure`, or "in flight when stopped".  The
record is plain data (lists, numbers, strings) so it crosses process
boundaries as msgpack without custom code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Result(StrEnum):
    SUCCESS = "success"
    FAILED = "failed"
    IN_FLIGHT = "in_flight_at_stop"
    LOST = "lost_with_worker"


class Failure(StrEnum):
    """Why a call failed: the taxonomy every record uses."""

    TIMEOUT = "timeout"  #: a recv step waited longer than its timeout
    UNEXPECTED = "unexpected_message"  #: a message the scenario did not expect at that point
    REJECTED = "call_rejected"  #: a final error response the scenario did not expect
    MAX_RETRANSMISSIONS = "max_retransmissions"  #: a transaction timer (B, F, H) expired
    CHECK_FAILED = "check_failed"  #: a check step or capture failed (detail: its name)
    TRANSPORT = "transport_error"
    CANNOT_SEND = "cannot_send"  #: the scenario asked for a message the call state forbids
    ABORTED = "aborted"  #: stopped by the user (Ctrl-C) after the grace period
    OVERLOAD = "generator_overload"  #: dropped at the concurrency cap / started too late
    MEDIA = "media_failed"  #: no usable media in the SDP, or a media check failed
    IN_FLIGHT = "in_flight_at_stop"


@dataclass(slots=True, init=False)
class CallRecord:
    """The life of one call, with every message and timing mark."""

    call_number: int
    intended_start: float  #: when the open model wanted the call to start
    actual_start: float = 0.0
    end: float = 0.0
    result: Result = Result.IN_FLIGHT
    failure: str = ""  #: a Failure value
    detail: str = ""  #: the status code, check name, or words saying more
    step: int = -1  #: the scenario step where it failed
    codes: list[int] = field(default_factory=list)  #: response codes received, in order
    messages: list[tuple[float, str, str]] = field(default_factory=list)
    #: (time, "out"|"in", first line summary such as "INVITE" or "180")
    retransmissions: int = 0
    marks: dict[str, float] = field(default_factory=dict)  #: timing mark name -> seconds
    worker: int = 0
    call_id: str = ""
    media: dict[str, float] = field(default_factory=dict)
    #: the call's RTP figures (sipload.media.call.FIELDS), empty for a call without media
    server: str = ""  #: located target (RFC 3263): the server its INVITE last went to
    failovers: int = 0  #: how many times its INVITE moved on to the next server
    source: str = ""  #: the local address it was placed from (--source-addresses), or ""

    def __init__(
        self,
        call_number: int,
        intended_start: float,
        actual_start: float = 0.0,
        end: float = 0.0,
        result: Result = Result.IN_FLIGHT,
        failure: str = "",
        detail: str = "",
        step: int = -1,
        codes: list[int] | None = None,
        messages: list[tuple[float, str, str]] | None = None,
        retransmissions: int = 0,
        marks: dict[str, float] | None = None,
        worker: int = 0,
        call_id: str = "",
        media: dict[str, float] | None = None,
        server: str = "",
        failovers: int = 0,
        source: str = "",
    ) -> None:
        self.call_number = call_number
        self.intended_start = intended_start
        self.actual_start = actual_start
        self.end = end
        self.result = result
        self.failure = failure
        self.detail = detail
        self.step = step
        self.codes = [] if codes is None else codes
        self.messages = [] if messages is None else messages
        self.retransmissions = retransmissions
        self.marks = {} if marks is None else marks
        self.worker = worker
        self.call_id = call_id
        self.media = {} if media is None else media
        self.server = server
        self.failovers = failovers
        self.source = source

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.actual_start)

    @property
    def lateness(self) -> float:
        return max(0.0, self.actual_start - self.intended_start)

    def fail(self, failure: Failure | str, detail: str, now: float, step: int = -1) -> None:
        """Mark the call failed (the first failure wins); ``failure`` is a
        :class:`Failure` or the reason of a scenario's ``fail:`` step."""
        if self.result == Result.FAILED:
            return
        self.result = Result.FAILED
        self.failure = failure.value if isinstance(failure, Failure) else failure
        self.detail = detail
        self.end = now
        self.step = step

    def to_dict(self) -> dict[str, Any]:
        return {
            "call_number": self.call_number, "intended_start": self.intended_start,
            "actual_start": self.actual_start, "end": self.end, "result": self.result.value,
            "failure": self.failure, "detail": self.detail, "step": self.step,
            "codes": list(self.codes), "messages": [list(m) for m in self.messages],
            "retransmissions": self.retransmissions, "marks": dict(self.marks),
            "worker": self.worker, "call_id": self.call_id, "media": dict(self.media),
            "server": self.server, "failovers": self.failovers, "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CallRecord:
        return cls(
            call_number=int(d["call_number"]), intended_start=float(d["intended_start"]),
            actual_start=float(d["actual_start"]), end=float(d["end"]),
            result=Result(d["result"]), failure=str(d["failure"]), detail=str(d["detail"]),
            step=int(d["step"]), codes=[int(c) for c in d["codes"]],
            messages=[(float(m[0]), str(m[1]), str(m[2])) for m in d["messages"]],
            retransmissions=int(d["retransmissions"]),
            marks={str(k): float(v) for k, v in d["marks"].items()},
            worker=int(d.get("worker", 0)), call_id=str(d.get("call_id", "")),
            media={str(k): float(v) for k, v in (d.get("media") or {}).items()},
            server=str(d.get("server", "")), failovers=int(d.get("failovers", 0)),
            source=str(d.get("source", "")),
        )
