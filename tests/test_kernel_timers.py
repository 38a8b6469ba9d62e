"""Tests of :mod:`tests.kernel_timers`, the capture tests' reader of the kernel's late timers.

Its parsing is fed a recorded trace; its handling of tracefs runs on a folder laid out
like tracefs (settings changed, then put back; a failure halfway; mounting where nothing
is mounted), and once on the real kernel, which CI (root) must be able to trace.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import kernel_timers
from tests.kernel_timers import LATE, LateTimers

TRACE = (Path(__file__).parent / "data" / "hrtimer_trace.txt").read_text()
"""One timer 50 µs late (on time), one re-armed and then 0.3 ms late after its last due
time, expiries with no start seen, a realtime timer (another clock's base), a timer
started and never run, and one exactly :data:`LATE` late."""


def _flat(late: list[tuple[float, float]]) -> list[float]:
    return [x for pair in late for x in pair]


def test_a_recorded_trace_gives_the_late_expiries_by_their_due_time() -> None:
    t = LateTimers()
    t._read(TRACE)
    assert t.expiries == 6
    assert _flat(t.late) == pytest.approx([2.0, 0.0003, 5.0, LATE])


def test_held_asks_for_a_late_due_time_after_since_and_by_until() -> None:
    t = LateTimers()
    t._read(TRACE)
    assert t.held(1.9, 2.1)
    assert t.held(1.99, 2.0)  # due exactly at the interval's end
    assert not t.held(2.0, 2.1)  # due exactly at its start: the gap before owns it
    assert not t.held(1.0, 1.99)
    assert not t.held(2.5, 4.9)
    assert t.held(2.5, 5.0)


def test_an_empty_trace_holds_nothing() -> None:
    t = LateTimers()
    t._read("")
    assert t.late == [] and t.expiries == 0 and not t.held(0.0, 1e9)


SETTINGS = {"tracing_on": "1\n", "trace_clock": "[local] global counter uptime perf mono\n",
            "buffer_size_kb": "1408\n", "set_event": "sched:sched_switch\nirq:irq_handler_entry\n",
            "trace": "# tracer: nop\n"}


def _tracefs(root: Path) -> Path:
    root.mkdir(exist_ok=True)
    for name, value in SETTINGS.items():
        (root / name).write_text(value)
    return root


def _settings(root: Path) -> dict[str, str]:
    return {name: (root / name).read_text() for name in SETTINGS if name != "trace"}


def test_open_sets_the_trace_up_and_close_reads_it_and_puts_everything_back(
        tmp_path: Path) -> None:
    root = _tracefs(tmp_path / "tracing")
    before = _settings(root)
    t = LateTimers(root, buffer_kb=999).start()
    assert t.ok
    assert (root / "tracing_on").read_text() == "1"
    assert (root / "trace_clock").read_text() == "mono"
    assert (root / "buffer_size_kb").read_text() == "999"
    assert (root / "set_event").read_text() == kernel_timers.EVENTS
    assert (root / "trace").read_text() == ""
    (root / "trace").write_text(TRACE)  # what the kernel recorded meanwhile
    t.stop()
    assert t.ok and _flat(t.late) == pytest.approx([2.0, 0.0003, 5.0, LATE])
    after = _settings(root)
    assert after["tracing_on"].strip() == "1"
    assert after["trace_clock"].strip() == "local"  # the one that was selected
    assert after["buffer_size_kb"].strip() == "1408"
    assert after["set_event"] == before["set_event"]


def test_a_kernel_without_the_mono_clock_is_not_traced_and_nothing_changes(
        tmp_path: Path) -> None:
    root = _tracefs(tmp_path / "tracing")
    (root / "trace_clock").write_text("[local] global\n")
    before = _settings(root)
    with LateTimers(root) as t:
        pass
    assert not t.ok and t.late == [] and not t.held(0.0, 1e9)
    assert _settings(root) == before


def test_a_failure_halfway_through_the_set_up_puts_back_what_was_changed(
        tmp_path: Path) -> None:
    root = _tracefs(tmp_path / "tracing")
    (root / "trace").unlink()
    (root / "trace").mkdir()  # clearing the buffer fails, after four settings changed
    with LateTimers(root, buffer_kb=999) as t:
        assert not t.ok
    after = _settings(root)
    assert after["tracing_on"].strip() == "1"
    assert after["trace_clock"].strip() == "local"
    assert after["buffer_size_kb"].strip() == "1408"
    assert after["set_event"] == SETTINGS["set_event"]


def test_no_tracefs_at_all_is_not_traced(tmp_path: Path) -> None:
    with LateTimers(tmp_path / "absent") as t:
        pass
    assert not t.ok


def test_an_empty_mount_point_is_mounted_for_the_trace_and_unmounted_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "tracing"
    root.mkdir()
    calls: list[list[str]] = []

    def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        calls.append(argv)
        if argv[0] == "mount":
            _tracefs(Path(argv[-1]))
        else:
            for f in root.iterdir():
                f.unlink()
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(subprocess, "run", run)
    with LateTimers(root) as t:
        assert t.ok
    assert calls == [["mount", "-t", "tracefs", "nodev", str(root)], ["umount", str(root)]]
    assert not any(root.iterdir())
    calls.clear()
    _tracefs(root)  # mounted already: used as it is, left mounted
    with LateTimers(root) as t:
        assert t.ok
    assert calls == [] and (root / "trace_clock").exists()


def _tracefs_mounted() -> bool:
    with open("/proc/mounts") as f:
        return any(line.split()[1] == str(kernel_timers.TRACEFS) for line in f)


def test_the_real_kernel_is_traced_and_left_as_it_was() -> None:
    """On this machine's kernel: timers are seen expiring, and the mount and the settings
    are as they were after.  CI runs as root, where the capture tests need the trace."""
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("tracing the kernel needs root")
    mounted = _tracefs_mounted()
    clock = (kernel_timers.TRACEFS / "trace_clock").read_text() if mounted else None
    with LateTimers() as t:
        for _ in range(20):
            subprocess.run(["sleep", "0.001"], check=True)
    assert t.ok, "tracefs could not be traced (capture tests excuse nothing without it)"
    assert t.expiries > 0
    assert _tracefs_mounted() == mounted
    if mounted:
        assert (kernel_timers.TRACEFS / "trace_clock").read_text() == clock
