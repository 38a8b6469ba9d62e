"""``sipload run`` end to end over worker processes: accounting, a worker killed,
Ctrl-C once and twice, and no worker left.

Each test runs the real CLI (``python -m sipload run``) in its own session on
loopback (the embedded UAS answers), reads the run directory it writes, and
ends only the processes it started: the coordinator's process group (the
coordinator, its spawned workers and the embedded UAS), by its id.  Every wait
is bounded.  The identity checked everywhere::

    attempted = succeeded + failed + in_flight_at_stop + lost_with_worker
    rows in calls.arrows = attempted - lost_with_worker, call numbers unique
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sipload.stats.rundir import EVENTS, INTERVALS, read_calls, read_jsonl
from tests.bgproc import Background, sipload

REPO = Path(__file__).resolve().parent.parent
BASIC = REPO / "scenarios" / "basic_call.yaml"
UAS_COUNTERPART = REPO / "scenarios" / "basic_call_uas.yaml"


# --------------------------------------------------------------------------- helpers


class Run:
    """One ``sipload run`` in the background, in its own session (process group)."""

    def __init__(self, tmp: Path, *args: object) -> None:
        self.dir = tmp / "run"
        self._out = (tmp / "stdout.txt").open("w")
        self._err = (tmp / "stderr.txt").open("w")
        self.tmp = tmp
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sipload", "run", *(str(a) for a in args),
             "--out", str(self.dir)],
            cwd=REPO, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL,
            start_new_session=True)
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"sipload run still running after {timeout} s\n{self.describe()}")
        self._out.close()
        self._err.close()
        return code

    def kill(self) -> None:
        """SIGKILL the whole process group this test started (if still there)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._out.close()
        self._err.close()

    def ctrl_c(self) -> None:
        """What a terminal's Ctrl-C does: SIGINT to the foreground process group."""
        os.killpg(self.pid, signal.SIGINT)

    @property
    def stdout(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return (self.tmp / "stdout.txt").read_text(errors="replace")

    @property
    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return (self.tmp / "stderr.txt").read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        return read_jsonl(self.dir, EVENTS)

    def intervals(self) -> list[dict[str, Any]]:
        return read_jsonl(self.dir, INTERVALS)

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.dir / "summary.json").read_text())
        return data

    def rows(self) -> pa.Table:
        return read_calls(self.dir)

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = check()
            if got:
                return got
            if self.proc.poll() is not None:
                pytest.fail(f"sipload run ended before {what}\n{self.describe()}")
            time.sleep(0.05)
        pytest.fail(f"no {what} within {timeout} s\n{self.describe()}")

    def wait_event(self, name: str, timeout: float, n: int = 1) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.wait_for(
            f"{n} {name} event(s)",
            lambda: [e for e in self.events() if e.get("event") == name][:n]
            if len([e for e in self.events() if e.get("event") == name]) >= n else None,
            timeout)
        return found

    def wait_calls(self, worker: int, started: int, timeout: float) -> None:
        """Until worker ``worker``'s snapshots count ``started`` starts."""
        self.wait_for(f"{started} calls started by worker {worker}", lambda: sum(
            int(s.get("started", 0)) for s in self.intervals()
            if s.get("worker") == worker) >= started, timeout)

    def describe(self) -> str:
        events = (self.dir / EVENTS).read_text() if (self.dir / EVENTS).exists() else ""
        return (f"exit {self.proc.poll()}\n--- stdout ---\n{self.stdout[-3000:]}\n"
                f"--- stderr ---\n{self.stderr[-3000:]}\n--- events ---\n{events[-3000:]}")


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    started: list[Run] = []

    def start(*args: object) -> Run:
        d = tmp_path / f"r{len(started)}"
        d.mkdir()
        r = Run(d, *args)
        started.append(r)
        return r

    yield start
    for r in started:
        if r.proc.poll() is None:
            r.kill()


def worker_pids(run: Run) -> dict[int, int]:
    """Worker id -> pid, from worker_joined events; each is checked to be a child
    of the coordinator this test started (so only our own processes are signalled)."""
    out = {}
    for e in run.events():
        if e.get("event") == "worker_joined":
            pid = int(e["pid"])
            status = Path(f"/proc/{pid}/status").read_text()
            ppid = int(next(x for x in status.splitlines() if x.startswith("PPid:")).split()[1])
            assert ppid == run.pid, f"worker {e['worker']} (pid {pid}) is not our child"
            out[int(e["worker"])] = pid
    return out


def run_with_remote_worker(run: Run, keys: Path) -> int:
    """A remote worker (``sipload worker --connect``, in its own session) joins ``run``'s
    coordinator; both must end with 0 (bounded; the worker is ended on the way out if
    not); the worker's pid."""
    url = next(e["url"] for e in run.events() if e["event"] == "coordinator_listening")
    with Background(sipload("worker", "--connect", url, "--keys", keys)) as worker:
        assert worker.proc is not None
        assert run.wait(60) == 0, run.describe()
        assert worker.wait(20) == 0, worker.output
        return worker.proc.pid


def check_accounting(run: Run) -> tuple[dict[str, int], pa.Table]:
    """The summary's identity, rows = attempted - lost, call numbers unique."""
    calls = run.summary()["calls"]
    parts = ("succeeded", "failed", "in_flight_at_stop", "lost_with_worker")
    assert calls["attempted"] == sum(calls[k] for k in parts), calls
    table = run.rows()
    assert table.num_rows == calls["attempted"] - calls["lost_with_worker"], calls
    numbers = collections.Counter(table.column("call_number").to_pylist())
    dups = {n: c for n, c in numbers.items() if c > 1}
    assert not dups, f"call numbers recorded more than once: {list(dups)[:10]}"
    results = collections.Counter(table.column("result").to_pylist())
    assert results.get("success", 0) == calls["succeeded"]
    assert results.get("failed", 0) == calls["failed"]
    assert results.get("in_flight_at_stop", 0) == calls["in_flight_at_stop"]
    return calls, table


def by_worker(table: pa.Table) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = collections.defaultdict(list)
    for row in table.select(["worker", "call_number", "actual_start", "end", "result",
                             "failure"]).to_pylist():
        out[int(row["worker"])].append(row)
    return out


def long_call(tmp: Path, pause: str) -> Path:
    """basic_call with another pause between ACK and BYE (and its embedded UAS)."""
    text = BASIC.read_text().replace("pause: 100ms", f"pause: {pause}")
    assert f"pause: {pause}" in text
    (tmp / "basic_call_uas.yaml").write_text(UAS_COUNTERPART.read_text())
    path = tmp / "long_call.yaml"
    path.write_text(text.replace("name: basic-call", "name: long-call"))
    return path


# --------------------------------------------------------------------------- tests


def test_accounting_end_to_end(runs: Callable[..., Run]) -> None:
    run = runs(BASIC, "--calls", 300, "--rate", 150, "--workers", 2)
    assert run.wait(60) == 0, run.describe()
    calls, table = check_accounting(run)
    assert calls["attempted"] == 300, calls
    assert calls["succeeded"] == 300, (calls, run.describe())
    assert calls["lost_with_worker"] == 0
    assert sorted(table.column("call_number").to_pylist()) == list(range(300))
    rows = by_worker(table)
    assert sorted(rows) == [0, 1]
    for w, first in ((0, 0), (1, 150)):  # each worker its own contiguous range
        assert sorted(r["call_number"] for r in rows[w]) == list(range(first, first + 150))
    kinds = collections.Counter(e["event"] for e in run.events())
    assert kinds["worker_joined"] == 2 and kinds["go"] == 1 and kinds["worker_done"] == 2
    assert kinds["run_end"] == 1 and not kinds["worker_lost"]
    assert "calls: attempted 300 succeeded 300" in run.stdout
    # each worker says how its hot path runs, as this process would run it
    from sipload import _native

    builds = {e["build"] for e in run.events() if e["event"] == "worker_joined"}
    assert builds == {_native.describe()}, builds


def test_worker_killed_mid_run(runs: Callable[..., Run]) -> None:
    run = runs(BASIC, "--calls", 800, "--rate", 100, "--workers", 2, "--quiet")
    run.wait_event("go", 30)
    run.wait_calls(1, 60, 15)  # worker 1 has been running for a while
    pids = worker_pids(run)
    assert sorted(pids) == [0, 1]
    os.kill(pids[1], signal.SIGKILL)
    assert run.wait(40) == 0, run.describe()

    events = run.events()
    lost = [e for e in events if e["event"] == "worker_lost"]
    assert len(lost) == 1 and lost[0]["worker"] == 1, events
    ev = lost[0]
    assert ev["reason"] == "killed by SIGKILL"  # its process seen to end: no 3 s wait
    assert ev["calls_lost"] == ev["started"] - ev["records"] >= 0
    calls, table = check_accounting(run)
    assert calls["lost_with_worker"] == ev["calls_lost"], (calls, ev)
    rows = by_worker(table)
    # every record the coordinator received (and acknowledged) from the dead worker
    assert len(rows[1]) == ev["records"], (len(rows[1]), ev)
    assert all(r["result"] != "lost_with_worker" for r in rows[1])
    # ... including those of every snapshot it sent (records go before their snapshot)
    snaps = [s for s in run.intervals() if s["worker"] == 1]
    assert snaps and len(rows[1]) >= sum(s["succeeded"] + s["failed"] for s in snaps)
    end = next(e for e in events if e["event"] == "run_end")
    assert end["lost_workers"] == 1 and end["lost_with_worker"] == ev["calls_lost"]
    assert not end["ended"]
    # the survivor finished, with the calls the lost worker had not started: every
    # one of the 800 calls is accounted for, and the calls it took over have numbers
    # of their own (above the run's 0..799, none reused)
    done = [e for e in events if e["event"] == "worker_done"]
    assert [d["worker"] for d in done] == [0]
    assert calls["attempted"] == 800, calls
    assert len(rows[0]) == done[0]["records"] == 400 + (400 - ev["started"]), (done, ev)
    own = sorted(r["call_number"] for r in rows[0] if r["call_number"] < 400)
    assert own == list(range(400))
    taken = sorted(r["call_number"] for r in rows[0] if r["call_number"] >= 400)
    assert taken == list(range(800, 800 + 400 - ev["started"]))  # extra_numbers(800, 0)
    assert all(400 <= r["call_number"] < 800 for r in rows[1])


@pytest.mark.parametrize("group", [True, False], ids=["terminal", "coordinator-only"])
def test_ctrl_c_once_stops_new_calls_and_ends_after_grace(
        runs: Callable[..., Run], tmp_path: Path, group: bool) -> None:
    grace = 1.0
    scenario = long_call(tmp_path, "{uniform: [300ms, 4s]}")
    run = runs(scenario, "--duration", "30s", "--rate", 60, "--workers", 2,
               "--grace", f"{grace:g}s")
    run.wait_event("go", 30)
    run.wait_calls(0, 30, 15)
    run.wait_calls(1, 30, 15)
    run.ctrl_c() if group else os.kill(run.pid, signal.SIGINT)
    assert run.wait(20) == 0, run.describe()
    assert f"calls in flight get {grace:g} s" in run.stdout + run.stderr

    events = run.events()
    kinds = collections.Counter(e["event"] for e in events)
    assert kinds["stop"] == 1 and kinds["worker_done"] == 2, events
    assert not kinds["worker_lost"], "a worker died of the Ctrl-C"
    stop = next(e for e in events if e["event"] == "stop")
    assert stop["grace"] == grace and stop["abort"] is False
    end = next(e for e in events if e["event"] == "run_end")
    assert end["interrupted"] is True and end["aborted"] is False and not end["ended"]
    # by the coordinator's own clock (report rendering after run_end does not count)
    assert grace - 0.1 <= end["t"] - stop["t"] < grace + 2.0, (stop, end)

    calls, table = check_accounting(run)
    assert calls["lost_with_worker"] == 0
    assert calls["in_flight_at_stop"] > 0 and calls["succeeded"] > 0, calls
    for w, rows in by_worker(table).items():
        inflight = [r for r in rows if r["result"] == "in_flight_at_stop"]
        assert inflight, f"worker {w} had no call in flight at the stop"
        assert {r["failure"] for r in inflight} == {"in_flight_at_stop"}
        stopped = min(r["end"] for r in inflight)  # the worker's stop + grace
        assert max(r["end"] for r in inflight) - stopped < 0.2
        # no call started after the stop; calls that finished did so in the grace
        assert max(r["actual_start"] for r in rows) <= stopped - grace + 0.05
        assert all(r["end"] <= stopped + 0.05 for r in rows)


def test_ctrl_c_twice_aborts_at_once(runs: Callable[..., Run], tmp_path: Path) -> None:
    scenario = long_call(tmp_path, "30s")
    run = runs(scenario, "--duration", "30s", "--rate", 60, "--workers", 2, "--grace", "20s")
    run.wait_event("go", 30)
    run.wait_calls(0, 25, 15)
    run.wait_calls(1, 25, 15)
    run.ctrl_c()
    run.wait_event("stop", 5)
    run.ctrl_c()
    assert run.wait(20) == 1, run.describe()  # aborted: no verdict

    events = run.events()
    stops = [e for e in events if e["event"] == "stop"]
    assert [s["abort"] for s in stops] == [False, True]
    end_t = next(e for e in events if e["event"] == "run_end")["t"]
    # by the coordinator's clock (not the report's rendering): at once, not after grace 20 s
    assert end_t - stops[1]["t"] < 2.0, "the second Ctrl-C did not abort at once"
    assert not [e for e in events if e["event"] == "worker_lost"]
    end = next(e for e in events if e["event"] == "run_end")
    assert end["interrupted"] is True and end["aborted"] is True
    calls, table = check_accounting(run)
    assert calls["attempted"] >= 50 and calls["in_flight_at_stop"] == calls["attempted"]
    assert set(table.column("failure").to_pylist()) == {"aborted"}
    summary = run.summary()
    assert (summary["gate"]["verdict"], summary["exit_code"], summary["passed"]) == (
        "aborted", 1, False)
    assert (run.dir / "report.html").exists()


def test_no_worker_left_ends_the_run(runs: Callable[..., Run]) -> None:
    run = runs(BASIC, "--duration", "60s", "--rate", 40, "--workers", 2, "--quiet")
    run.wait_event("go", 30)
    run.wait_calls(0, 20, 15)
    run.wait_calls(1, 20, 15)
    for pid in worker_pids(run).values():
        os.kill(pid, signal.SIGKILL)
    assert run.wait(30) == 3, run.describe()
    assert "could not complete: no worker left" in run.stderr, run.describe()
    events = run.events()
    assert sorted(e["worker"] for e in events if e["event"] == "worker_lost") == [0, 1]
    end = next(e for e in events if e["event"] == "run_end")
    assert "no worker left" in end["ended"] and end["lost_workers"] == 2
    calls, _ = check_accounting(run)
    assert calls["lost_with_worker"] == end["lost_with_worker"]


def test_a_worker_joining_mid_run_takes_a_share_of_what_is_left(
        runs: Callable[..., Run], tmp_path: Path) -> None:
    """A remote worker (``sipload worker``) connecting after Go: the running worker
    gives it some of its unstarted calls, it runs them at its share of the rate,
    and every one of the run's calls is made once, numbered without collision."""
    from sipload.cluster.channel import make_keys

    total = 1500

    keys = make_keys(tmp_path / "keys").folder
    # 15 s of calls: a joiner on a loaded 2-core host took 5 s to say Hello, after a
    # 6 s run had started every call
    run = runs(BASIC, "--calls", total, "--rate", 100, "--workers", 1, "--keys", keys, "--quiet")
    run.wait_event("go", 30)
    run.wait_calls(0, 50, 15)
    joiner = run_with_remote_worker(run, keys)
    events = run.events()
    joined = [e for e in events if e["event"] == "worker_joined" and e.get("mid_run")]
    assert [(e["worker"], e["pid"]) for e in joined] == [(1, joiner)], events
    released = [e for e in events if e["event"] == "calls_released"]
    assert [(e["worker"], e["to"]) for e in released] == [(0, 1)]
    given = released[0]["calls"]
    assert given == joined[0]["calls"] > 0
    calls, table = check_accounting(run)
    assert calls["attempted"] == calls["succeeded"] == total, calls
    rows = by_worker(table)
    assert len(rows[1]) == given and len(rows[0]) == total - given
    # worker 0 made the start of its own range; the joiner numbers its calls in its own
    # block, extra_numbers(total, 1) = 2 * total on
    assert sorted(r["call_number"] for r in rows[0]) == list(range(total - given))
    assert sorted(r["call_number"] for r in rows[1]) == list(range(2 * total, 2 * total + given))
    # from the joiner's Go, the two shared the rate
    shares = [e for e in events if e["event"] == "worker_go"]
    assert [e["worker"] for e in shares] == [1]


def test_no_call_starts_before_go(runs: Callable[..., Run], tmp_path: Path) -> None:
    """A local worker Ready while the run waits for a remote one starts no call until Go
    (its engine is bound and its pump runs, but nothing is released), and the two
    workers' uniform schedules then interleave 1/R apart (worker 1 starts 1/R after Go)."""
    from sipload.cluster.channel import make_keys

    keys = make_keys(tmp_path / "keys").folder
    run = runs(BASIC, "--calls", 8, "--rate", 10, "--workers", 2, "--local-workers", 1,
               "--keys", keys, "--trace", "all", "--quiet")
    run.wait_event("worker_joined", 30)
    time.sleep(1.5)  # worker 0 is Ready and waiting: before the fix it was calling already
    run_with_remote_worker(run, keys)
    import pyarrow.ipc as ipc

    with (run.dir / "traces.arrows").open("rb") as f:
        rows = ipc.open_stream(f).read_all().to_pylist()
    invites = sorted((row["ts"], row["worker"]) for row in rows
                     if row["direction"] == "out" and bytes(row["data"]).startswith(b"INVITE "))
    assert len(invites) == 8
    first = {w: min(t for t, x in invites if x == w) for w in (0, 1)}
    # worker 1 starts 0.1 s after Go; worker 0 at Go, not 1.5 s and more before it
    assert 0.0 < first[1] - first[0] < 0.3, (first, invites)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(invites)]
    assert all(0.03 < g < 0.17 for g in gaps), gaps
