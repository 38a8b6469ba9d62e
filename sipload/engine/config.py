"""What one engine does (:class:`EngineConfig`) and where its output goes (the sinks).

Plain data: the cluster's worker builds one from the run plan and its share, the
embedded UAS and the tests build theirs directly.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sipload.scenario.inject import Injection
from sipload.scenario.model import Program
from sipload.sip.servers import Server
from sipload.sip.transaction import TimerConfig
from sipload.stats.interval import Snapshot
from sipload.stats.traces import DEFAULT_LIMIT
from sipload.transport import StreamLimits

RecordSink = Callable[[list[dict[str, Any]]], None]
"""Gets each batch of call records (plain dicts, as the run directory stores them)."""
TraceSink = Callable[[list[dict[str, Any]]], None]
"""Gets each batch of kept wire traces (before the records of their calls)."""
SnapshotSink = Callable[[Snapshot], None]
"""Gets each interval snapshot (one a second)."""


@dataclass(slots=True)
class EngineConfig:
    """What one engine does: its role, where it sends, how fast, for how long."""

    program: Program | None  #: None: the default UAS
    target: tuple[str, int] | None = None
    transport: str = "udp"
    local_host: str = "127.0.0.1"
    local_port: int = 0
    rate: float = 10.0
    calls: int | None = None
    duration: float | None = None
    concurrent: int = 10_000
    users: int | None = None  #: closed model: this many calls at once, each followed by the next
    first_user: int = 0  #: the run-wide number of this worker's first user (USER-order CSV rows)
    arrival: str = "uniform"
    #: seconds after calling begins that this worker's schedule starts: worker k of a uniform
    #: run at R calls/s starts at k/R, so the workers' calls interleave 1/R apart on the wire
    phase: float = 0.0
    rate_increase: float = 0.0
    rate_interval: float = 0.0
    rate_max: float | None = None
    first_call: int = 0
    injection: Injection | None = None
    worker: int = 0
    seed: int | None = None
    timers: TimerConfig = field(default_factory=TimerConfig)
    reuse_port: bool = False
    tls_insecure: bool = False
    tls_resume: bool = True  #: offer the last TLS session again (per-call connections)
    connections: str = "shared"  #: TCP/TLS: "shared" (one per target) or "per-call"
    tls_cadata: str | None = None  #: trust only these PEM certificates (the embedded UAS's)
    tls_server: ssl.SSLContext | None = None
    snapshot_every: float = 1.0
    stop_grace: float = 5.0
    stream_limits: StreamLimits = field(default_factory=StreamLimits)
    max_dialogs: int = 0  #: calls answered at once before a new INVITE gets 503 (0: no cap)
    trace: str = "none"  #: keep the wire messages of "failed", "all" or "none" of the calls
    trace_limit: int = DEFAULT_LIMIT  #: traced calls per failure reason ("failed")
    ws_path: str = "/"  #: the request path of WebSocket upgrades (ws, wss)
    located: str = ""  #: the target name located by DNS (RFC 3263), "" for none
    servers: tuple[Server, ...] = ()  #: what DNS found for it (sipload.transport.dns)
    #: this worker's share of --source-addresses: calls spread over them in turn
    #: (local_host is the first; none or one: every call from local_host)
    sources: tuple[str, ...] = ()
    srtp: str = ""  #: the default UAS answers RTP/SAVP offers with SRTP ("sdes"), or not ("")
