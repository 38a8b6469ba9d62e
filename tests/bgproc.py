"""Background processes for the example and interop tests (sipload programs).

Test infrastructure, not a test module.  A :class:`Background` runs one command
in its own session with stdout and stderr collected by a reader thread; tests
wait (bounded) for a line, then run their client and read both outputs.  Only
the process (group) started here is ever signalled, by its PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "docs" / "examples"


def example(name: str, *args: object) -> list[str]:
    """The argv that runs ``docs/examples/NAME`` with this interpreter."""
    return [sys.executable, str(EXAMPLES / name), *(str(a) for a in args)]


def sipload(*args: object) -> list[str]:
    """The argv that runs the ``sipload`` CLI with this interpreter."""
    return [sys.executable, "-m", "sipload", *(str(a) for a in args)]


def run(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run to completion (bounded); stdout and stderr captured as text."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          cwd=REPO_ROOT, check=False)


class Background:
    """One command running in the background (start with ``with``)."""

    def __init__(self, argv: Sequence[str], *, ready: str | None = None,
                 ready_timeout: float = 10.0) -> None:
        self.argv = list(argv)
        self.ready = ready
        self.ready_timeout = ready_timeout
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> Self:
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=REPO_ROOT, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if self.ready is not None and not self.wait_for(self.ready, self.ready_timeout):
            self.stop()
            raise RuntimeError(f"{self.argv} did not print {self.ready!r}:\n{self.output}")
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "".join(self._lines)

    def wait_for(self, text: str, timeout: float) -> bool:
        """True once ``text`` appears in the output; False after ``timeout`` s or exit."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                if text in "".join(self._lines):
                    return True
                left = end - time.monotonic()
                if left <= 0 or (self.proc is not None and self.proc.poll() is not None
                                 and not (self._reader and self._reader.is_alive())):
                    return False
                self._cond.wait(min(left, 0.1))

    def wait(self, timeout: float) -> int:
        """The exit code once it ends by itself (raises TimeoutExpired after ``timeout``)."""
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self._finish()
        return code

    def _finish(self) -> None:
        if self._reader is not None:
            self._reader.join(5)
        if self.proc is not None and self.proc.stdout is not None and (
                self._reader is None or not self._reader.is_alive()):
            self.proc.stdout.close()

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGINT (Ctrl-C), then SIGKILL to its process group after ``grace`` s."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self._finish()
        return proc.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
