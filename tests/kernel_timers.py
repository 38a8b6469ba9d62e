"""When the machine held its timers late, from the kernel's own trace, for the capture tests.

Test infrastructure, not a test module.  On a shared virtual machine the host now and
then leaves an idle virtual CPU halted past its next timer (0.2-2.5 ms seen here, in
bursts, during its busy spells): a call start due then leaves late however the generator
is written.  A capture test of the generator's own precision leaves those starts out,
and says how many it left out.

Theory of operation
-------------------
1. :class:`LateTimers` traces the kernel's high-resolution timers while it is open
   (``timer:hrtimer_start`` and ``timer:hrtimer_expire_entry`` through tracefs, on
   ``CLOCK_MONOTONIC``): each start event says when a timer is due, each expiry when
   the kernel ran it.  An expiry :data:`LATE` or more after its due time is a moment the
   machine held that CPU: nothing in the guest ran there, the kernel's own timer
   handler included.  The trace is passive (no process wakes to watch), so it does not
   change what it watches, as a watching process did (bench/README.md).
2. The generator's own start timer is one of these timers, so a start held up this way
   shows as a late expiry between the start before it and its own leaving.  A
   generator that asks to be woken late (a coarse tick) is not excused: its timer
   expires on time, at the late instant it asked for.
3. :meth:`LateTimers.held` answers whether a late expiry was due within an interval
   (``CLOCK_MONOTONIC`` seconds; :attr:`LateTimers.offset` turns a capture's
   ``CLOCK_REALTIME`` stamps into them).
4. On a fresh machine tracefs is not mounted: :class:`LateTimers` mounts it for the
   while it is open (root only) and unmounts it when it closes.  Where tracefs cannot
   be had or written (no root), :attr:`LateTimers.ok` is false and nothing is excused;
   the settings it changed are put back when it closes.
"""

from __future__ import annotations

import bisect
import re
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

TRACEFS = Path("/sys/kernel/tracing")

LATE = 0.0001
"""An expiry this many seconds after its due time or more is a hold-off: half the
uniform test's bound."""

EVENTS = "timer:hrtimer_start timer:hrtimer_expire_entry"

_START = re.compile(r"hrtimer_start: hrtimer=(\S+) .*?expires=(\d+)")
_EXPIRY = re.compile(r"hrtimer_expire_entry: hrtimer=(\S+) .*?now=(\d+)")


class LateTimers:
    """The kernel's late timer expiries while open (see the module docstring)."""

    def __init__(self, root: Path = TRACEFS, buffer_kb: int = 20_000) -> None:
        self.root = root
        self.buffer_kb = buffer_kb
        self.ok = False  #: the trace ran
        self.offset = 0.0  #: CLOCK_REALTIME - CLOCK_MONOTONIC, seconds
        self.late: list[tuple[float, float]] = []  #: (due, how late), seconds, by due
        self.expiries = 0  #: timer expiries seen in all
        self._dues: list[float] = []
        self._saved: dict[str, str] = {}
        self._mounted = False  #: tracefs was mounted here, to be unmounted at the close

    def _mount(self) -> None:
        """Mount tracefs at :attr:`root` where it is an empty mount point (a fresh
        machine mounts none): a CI run would otherwise trace nothing."""
        if not self.root.is_dir() or any(self.root.iterdir()):
            return
        done = subprocess.run(["mount", "-t", "tracefs", "nodev", str(self.root)],
                              capture_output=True, check=False)
        self._mounted = done.returncode == 0

    def _unmount(self) -> None:
        if self._mounted:
            subprocess.run(["umount", str(self.root)], capture_output=True, check=False)
            self._mounted = False

    def _write(self, name: str, value: str) -> None:
        (self.root / name).write_text(value)

    def start(self) -> Self:
        try:
            self._mount()
            if "mono" not in (self.root / "trace_clock").read_text():
                self._restore()
                return self
            for name in ("tracing_on", "trace_clock", "buffer_size_kb"):
                value = (self.root / name).read_text().strip()
                if name == "trace_clock":  # "local [global] mono ...": the one in brackets
                    value = value.split("[", 1)[1].split("]", 1)[0]
                self._saved[name] = value
            self._saved["set_event"] = (self.root / "set_event").read_text()
            self._write("tracing_on", "0")
            self._write("trace_clock", "mono")
            self._write("buffer_size_kb", str(self.buffer_kb))
            self._write("set_event", EVENTS)
            self._write("trace", "")
            self._write("tracing_on", "1")
        except (OSError, IndexError):
            self._restore()
            return self
        self.offset = (time.time_ns() - time.monotonic_ns()) / 1e9
        self.ok = True
        return self

    def stop(self) -> None:
        """Stop tracing and read what the kernel ran late."""
        if not self.ok:
            return
        try:
            self._write("tracing_on", "0")
            text = (self.root / "trace").read_text(errors="replace")
        except OSError:
            self.ok = False
            return
        finally:
            self._restore()
        self._read(text)

    def _restore(self) -> None:
        """Put back the settings :meth:`start` changed, and unmount what it mounted."""
        saved, self._saved = self._saved, {}
        for name in ("tracing_on", "set_event", "trace_clock", "buffer_size_kb"):
            if name not in saved:
                continue
            try:
                if name == "set_event":
                    self._write("set_event", "")
                    for line in saved[name].splitlines():
                        with (self.root / "set_event").open("a") as f:
                            f.write(line + "\n")
                else:
                    self._write(name, saved[name])
            except OSError:
                pass
        self._unmount()

    def _read(self, text: str) -> None:
        due: dict[str, int] = {}
        late: list[tuple[float, float]] = []
        for line in text.splitlines():
            if "hrtimer_start:" in line:
                m = _START.search(line)
                if m:
                    due[m.group(1)] = int(m.group(2))
                continue
            m = _EXPIRY.search(line)
            if m is None:
                continue
            self.expiries += 1
            when = due.pop(m.group(1), None)
            if when is None:
                continue
            lag = int(m.group(2)) - when
            if LATE * 1e9 <= lag < 10**9:  # the same clock base (a realtime timer's differ)
                late.append((when / 1e9, lag / 1e9))
        self.late = sorted(late)
        self._dues = [d for d, _ in self.late]

    def held(self, since: float, until: float) -> bool:
        """Whether a timer due after ``since`` and by ``until`` (``CLOCK_MONOTONIC``
        seconds) expired :data:`LATE` or more late."""
        i = bisect.bisect_right(self._dues, since)
        return i < len(self._dues) and self._dues[i] <= until

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
