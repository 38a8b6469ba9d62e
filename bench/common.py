"""What the SIPp benchmarks share besides the peers: CPU and memory readings, a UAC
run's figures, SIPp's uac and uas as they run them, the one rate search.

Used by ``ua_bench.py`` and ``cluster_bench.py``, which run as scripts from the
repository root (``python3 bench/ua_bench.py``).  Their peers (SIPp, Kamailio) come
from ``tests/peers.py``, the one module that starts, waits for and ends them for the
tests too; importing this module puts the repository root on ``sys.path`` so that
``from tests.peers import ...`` works from a script.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: bench/ is on sys.path, the root is not
    sys.path.insert(0, str(REPO))

from tests.peers import SippProcess, free_udp_port, sipp_uac, sipp_uas, stat_int  # noqa: E402


def children_cpu() -> float:
    """User + system CPU seconds of the children waited for so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def rss_kib(pid: int) -> int:
    """The resident set of process ``pid`` in KiB (0 when it cannot be read)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def uas_for(workdir: Path, name: str, limit: float,
            scenario: Path | None = None) -> SippProcess:
    """``sipp -sn uas`` (or ``-sf scenario``) on a free port with a per-second stat file;
    tests/peers.py starts it, waits until it holds its port, and ends it."""
    return sipp_uas(free_udp_port(), scenario, limit=limit, workdir=workdir / name, stat=True)


@dataclass
class Run:
    """One UAC run: what it did and what it cost."""

    who: str
    calls: int
    rate: float
    completed: int = 0
    failed: int = 0
    retrans_uac: int = 0
    retrans_uas: int = 0
    late: int | None = None
    throughput: float = 0.0
    wall_s: float = 0.0
    cpu_total_s: float = 0.0  #: every process of the command, start-up (and report) included
    cpu_loop_s: float | None = None  #: the calling phase only (in-process figures)
    cpu_coord_s: float | None = None  #: sipload run: the coordinator's calling phase
    generator_limited: bool | None = None
    loop_lag_max_ms: float | None = None
    ok_exit: bool = True
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def retransmissions(self) -> int:
        return self.retrans_uac + self.retrans_uas

    def per_call(self, seconds: float | None) -> float | None:
        """Microseconds of ``seconds`` (of CPU) per completed call."""
        return None if seconds is None else 1e6 * seconds / max(self.completed, 1)

    @property
    def us_per_call(self) -> float:
        """The whole command's CPU per completed call, µs."""
        return 1e6 * self.cpu_total_s / max(self.completed, 1)

    def sustained(self, tolerance: float = 0.0) -> bool:
        """No failed call (or at most ``tolerance`` of them), no retransmission, and
        a throughput of at least 90% of the rate."""
        if tolerance:
            return (self.failed <= tolerance * self.calls and self.retransmissions == 0
                    and self.completed >= self.calls - self.failed
                    and self.throughput >= 0.9 * self.rate)
        return (self.ok_exit and self.failed == 0 and self.completed == self.calls
                and self.retransmissions == 0 and self.throughput >= 0.9 * self.rate)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(retransmissions=self.retransmissions, sustained=self.sustained(),
                 us_per_call_total=self.per_call(self.cpu_total_s),
                 us_per_call_loop=self.per_call(self.cpu_loop_s),
                 us_per_call_coordinator=self.per_call(self.cpu_coord_s))
        return d


def run_sipp_uac(target: str, uas: SippProcess, workdir: Path, calls: int, rate: float,
                 who: str = "SIPp uac") -> Run:
    """``sipp -sn uac`` placing ``calls`` at ``rate`` to ``target`` (which reaches ``uas``,
    directly or through a proxy): its figures, the UAS's retransmissions meanwhile."""
    limit = calls / rate + 60
    uac = sipp_uac(target, calls=calls, rate=rate, limit=limit, stat=True,
                   workdir=workdir / f"uac_{calls}_{rate:g}_{time.monotonic_ns()}")
    before = uas.retransmissions_after(0)
    cpu0 = children_cpu()
    t0 = time.monotonic()
    with uac:
        code = uac.wait(limit + 15)
        wall = time.monotonic() - t0
        cpu = children_cpu() - cpu0
        st = uac.stat()
    run = Run(who, calls, rate, completed=stat_int(st, "SuccessfulCall(C)"),
              failed=stat_int(st, "FailedCall(C)"),
              retrans_uac=stat_int(st, "Retransmissions(C)"),
              throughput=float(st.get("CallRate(C)", "0") or 0), wall_s=wall,
              cpu_total_s=cpu, ok_exit=code == 0,
              reasons={} if code == 0 else {f"sipp exit {code}": 1})
    run.failed = max(run.failed, calls - run.completed)
    run.retrans_uas = uas.retransmissions_after(time.time()) - before
    return run


@dataclass
class Step:
    """One step of a rate search: did the rate hold, what to show, and the step's run."""

    ok: bool
    shown: dict[str, Any] = field(default_factory=dict)  #: extra fields of the step's row
    run: Any = None  #: the caller's object for the step (kept for the best and first bad)


def rate_search(step: Callable[[float, int], Step], *, label: str, start: float,
                maximum: float, calls: int, step_seconds: float, budget: float,
                after_failure: Callable[[float], None] | None = None, pause: float = 0.0,
                note: Callable[[str], None] | None = None) -> tuple[dict[str, Any], Any, Any]:
    """The highest rate at which ``step`` holds: double from ``start`` until a step
    fails (or ``maximum``), then bisect until the bounds are within 10% (or 25 calls/s),
    within ``budget`` seconds.

    Args:
        step: runs ``calls`` calls at a rate; says whether the rate held.
        label: names the search in the notes.
        start, maximum: the first rate, and the most tried.
        calls, step_seconds: a step places at least ``calls`` calls and at least
            ``step_seconds`` seconds of them.
        budget: seconds for the whole search (a step started goes to its end).
        after_failure: called after a failed step with the seconds left (to let the
            peers settle: a failed step leaves 2xx retransmitted for up to 32 s).
        pause: seconds between steps.
        note: where a line per step goes.

    Returns:
        A summary for JSON: ``max_rate`` (0: none held), ``first_failing`` (None: none
        failed), ``steps`` (rate, calls, ok and the step's shown fields) and
        ``budget_spent``; then the ``run`` of the best step and of the lowest failing one
        (None when there is none).
    """
    good, bad = 0.0, None
    best: Any = None
    failing: Any = None
    rate = float(start)
    steps: list[dict[str, Any]] = []
    end = time.monotonic() + budget
    while time.monotonic() < end:
        n = max(calls, int(rate * step_seconds))
        result = step(rate, n)
        steps.append({"rate": rate, "calls": n, "ok": result.ok, **result.shown})
        if note is not None:
            shown = ", ".join(f"{k} {v}" for k, v in result.shown.items() if v is not None)
            note(f"search {label}: {rate:.0f}/s x {n} -> {'ok' if result.ok else 'no'}"
                 + (f" ({shown})" if shown else ""))
        if result.ok:
            good, best = rate, result.run
        else:
            bad, failing = rate, result.run  # bisecting: each failure is below the last
            if after_failure is not None:
                after_failure(max(0.0, end - time.monotonic()))
        if bad is None:
            if rate >= maximum:
                break
            rate = min(rate * 2, maximum)
        else:
            if bad - good <= max(0.1 * good, 25.0):
                break
            rate = (good + bad) / 2
        if pause:
            time.sleep(pause)
    summary = {"max_rate": good, "first_failing": bad, "steps": steps,
               "budget_spent": time.monotonic() >= end}
    return summary, best, failing


def capacity_verdict(ours: dict[str, Any], theirs: dict[str, Any],
                     within: float = 0.10) -> dict[str, Any]:
    """Whether the capacity ``ours`` found is within ``within`` of ``theirs`` (each a
    :func:`rate_search` summary), judged on what the searches showed, not on their
    point figures alone.

    A search shows its capacity lies in [``max_rate``, ``first_failing``) (no failing
    step: at least ``max_rate``).  The ratio of the two capacities then lies between
    ours' lowest over theirs' highest and ours' highest over theirs' lowest.
    ``verdict`` is ``"met"`` when even the lowest ratio is at least 1 - ``within``,
    ``"missed"`` when even the highest is below it, and ``"undecided"`` when the
    searches' bounds straddle it (the budget ran out before they were narrow enough).
    """
    lo_o, hi_o = float(ours["max_rate"]), ours.get("first_failing")
    lo_t, hi_t = float(theirs["max_rate"]), theirs.get("first_failing")
    point = lo_o / lo_t if lo_t else None
    low = lo_o / float(hi_t) if hi_t else 0.0
    high = (float(hi_o) / lo_t if hi_o is not None else float("inf")) if lo_t else float("inf")
    floor = 1.0 - within
    verdict = "met" if low >= floor else "missed" if high < floor else "undecided"
    return {"ratio": point, "ratio_low": low,
            "ratio_high": None if high == float("inf") else high, "verdict": verdict}
