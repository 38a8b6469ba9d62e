"""A worker says what went wrong with itself: a held event loop (a late heartbeat, every
thread's stack when it is held past STALL_DUMP) and a task of its own that failed (the
load aborted, the coordinator told).  In-process, with a fake channel and engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from sipload.cluster import worker as worker_mod
from sipload.cluster.messages import Heartbeat, Message
from sipload.cluster.worker import WorkerProcess


class FakeDealer:
    def __init__(self) -> None:
        self.sent: list[tuple[float, Message]] = []

    async def send(self, msg: Message) -> None:
        self.sent.append((time.monotonic(), msg))


class FakeCounts:
    started = 7


class FakeEngine:
    active = 3
    counts = FakeCounts()
    starter = None

    def __init__(self) -> None:
        self.aborted = 0

    def now(self) -> float:
        return 1.5

    def abort(self) -> None:
        self.aborted += 1


def _worker() -> tuple[WorkerProcess, FakeDealer, FakeEngine]:
    proc = WorkerProcess("tcp://127.0.0.1:1")
    dealer, engine = FakeDealer(), FakeEngine()
    proc.dealer = dealer  # type: ignore[assignment]
    proc.engine = engine  # type: ignore[assignment]
    proc.worker = 4
    return proc, dealer, engine


def _beat(proc: WorkerProcess, seconds: float, hold_at: float | None = None,
          hold: Callable[[], None] | None = None) -> None:
    """Run the worker's heartbeat for ``seconds``; ``hold`` runs in the loop ``hold_at``
    seconds in (holding it)."""

    async def main() -> None:
        beat = asyncio.create_task(proc._heartbeat())
        if hold is not None and hold_at is not None:
            asyncio.get_running_loop().call_later(hold_at, hold)
        await asyncio.sleep(seconds)
        beat.cancel()
        await asyncio.gather(beat, return_exceptions=True)

    asyncio.run(main())


def test_a_held_loop_is_reported_with_every_threads_stack(
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_mod, "HEARTBEAT_EVERY", 0.2)
    monkeypatch.setattr(worker_mod, "HEARTBEAT_LATE", 0.3)
    monkeypatch.setattr(worker_mod, "STALL_DUMP", 0.6)
    proc, dealer, _ = _worker()

    def hold_the_loop() -> None:
        time.sleep(1.0)  # the loop does not turn: no heartbeat for 1 s

    _beat(proc, 0.8, hold_at=0.3, hold=hold_the_loop)
    err = capfd.readouterr().err
    # faulthandler's C thread wrote the stacks while the loop was held, naming where
    assert "Timeout (0:00:00.600000)!" in err, err
    assert "in hold_the_loop" in err, err
    late = [x for x in err.splitlines() if "heartbeat" in x and "late" in x]
    assert len(late) == 1 and late[0].startswith("sipload worker 4: a heartbeat "), err
    beats = [m for _, m in dealer.sent]
    assert beats and all(isinstance(m, Heartbeat) and m.worker == 4 and m.started == 7
                         for m in beats)
    # a loop that turns is not reported, and the dump is disarmed with the heartbeat
    time.sleep(0.8)
    assert "Timeout" not in capfd.readouterr().err


def test_a_heartbeat_on_time_says_nothing(capfd: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_mod, "HEARTBEAT_EVERY", 0.05)
    monkeypatch.setattr(worker_mod, "STALL_DUMP", 0.5)
    proc, dealer, _ = _worker()

    _beat(proc, 0.7)  # past STALL_DUMP: re-armed at each beat, never fired
    assert len(dealer.sent) >= 5
    assert capfd.readouterr().err == ""


def test_a_failing_task_of_the_worker_aborts_the_load_and_says_why(
        capfd: pytest.CaptureFixture[str]) -> None:
    proc, _, engine = _worker()

    async def broken() -> None:
        await asyncio.sleep(0)
        raise ValueError("a record that does not pack")

    async def fine() -> None:
        await asyncio.sleep(0)

    async def main() -> None:
        ok = proc._task(fine(), "control")
        bad = proc._task(broken(), "sending records")
        await asyncio.gather(ok, bad, return_exceptions=True)
        await asyncio.sleep(0)  # the done callbacks

    asyncio.run(main())
    assert engine.aborted == 1
    assert proc.failure == "sending records: ValueError('a record that does not pack')"
    err = capfd.readouterr().err
    assert "sipload worker 4: sending records failed; aborting" in err
    assert "ValueError: a record that does not pack" in err  # the traceback


def test_cancelled_tasks_are_not_failures(capfd: pytest.CaptureFixture[str],
                                          caplog: pytest.LogCaptureFixture) -> None:
    proc, _, engine = _worker()

    async def main() -> None:
        task: asyncio.Task[Any] = proc._task(asyncio.sleep(10), "heartbeat")
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert engine.aborted == 0 and proc.failure == ""
    # the callback did not raise either (asyncio would log "Exception in callback")
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    assert capfd.readouterr().err == ""


def test_a_blocked_channel_is_told_from_a_held_loop(capfd: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_mod, "HEARTBEAT_EVERY", 0.1)
    monkeypatch.setattr(worker_mod, "HEARTBEAT_LATE", 0.3)
    monkeypatch.setattr(worker_mod, "STALL_DUMP", 5.0)
    proc, dealer, _ = _worker()
    blocked = asyncio.Event()

    async def send(msg: Message) -> None:
        if not blocked.is_set():  # the first heartbeat waits 0.5 s for the channel
            blocked.set()
            await asyncio.sleep(0.5)
        dealer.sent.append((time.monotonic(), msg))

    proc.dealer.send = send  # type: ignore[union-attr,method-assign]

    _beat(proc, 0.8)
    err = capfd.readouterr().err
    assert "sipload worker 4: a heartbeat took 0.5 s to hand to ZeroMQ" in err, err
    assert "late" not in err and "Timeout" not in err, err  # the loop itself turned
    assert len(dealer.sent) >= 2
