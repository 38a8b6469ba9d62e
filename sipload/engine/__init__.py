"""A worker's engine: the asyncio shell that runs a scenario's calls on one user agent.

:class:`Engine` (:mod:`.shell`) is the thin shell and the worker's controls; what it
assembles lives in small modules, each owning one thing:

* :mod:`.config`: :class:`EngineConfig`, what one engine does, and the sinks' types;
* :mod:`.sockets`: the SIP sockets (TLS contexts, the listening address);
* :mod:`.roles`: who drives the UA (the scenario's runner or the default UAS);
* :mod:`.running`: the run on its pump: the pump's hooks, snapshots, the end;
* :mod:`.starts`: starting a UAC's calls on time (admission, precise timer, paced GC);
* :mod:`.stopping`: when the run ends (stop request, grace, abort; sans-IO);
* :mod:`.output`: the records, traces and snapshots handed to the sinks;
* :mod:`.wiretrace`: the wire traces of a UAC run (the pump's tap);
* :mod:`.media`: the worker's RTP/RTCP pair tied to the runner's calls.

Bytes move through the one :class:`~sipload.pump.Pump`, shared with
:class:`~sipload.runtime.UARuntime`.
"""

from __future__ import annotations

from sipload.engine.config import EngineConfig
from sipload.engine.shell import Engine
from sipload.stats.interval import Snapshot

__all__ = ["Engine", "EngineConfig", "Snapshot"]
