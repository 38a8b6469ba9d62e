"""sipload run's forked children (sipload.cluster.forked): what Child asks of them.

A forked child waits for its orders on a pipe and ends with status 3 when the pipe
closes without any (the coordinator gave up); a child forked later does not hold the
order pipe of one forked before it (else that one would wait for ever); ``wait``
times out like ``subprocess.Popen.wait``; a child's error ends the child, never the
test process it was forked from.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from sipload.cluster.forked import ForkedChild, can_fork
from sipload.cluster.run import Child
from sipload.exitcodes import EXIT_CANNOT_RUN

pytestmark = pytest.mark.skipif(not can_fork(), reason="forked children are Linux's")


def test_a_forked_child_without_orders_ends_with_status_3() -> None:
    me = os.getpid()
    child = Child(ForkedChild("worker"), "worker")
    assert child.is_alive() and child.pid != me
    with pytest.raises(subprocess.TimeoutExpired):
        child.proc.wait(0.2)  # waiting for its orders
    t0 = time.monotonic()
    child.cancel()
    assert not child.is_alive()
    assert child.proc.poll() == EXIT_CANNOT_RUN
    assert time.monotonic() - t0 < 5
    assert os.getpid() == me


def test_a_later_child_does_not_hold_an_earlier_ones_orders() -> None:
    first = Child(ForkedChild("worker"), "worker")
    second = Child(ForkedChild("worker"), "worker")
    try:
        assert first.proc.stdin is not None
        first.proc.stdin.close()  # no orders: it ends at once, though the second lives
        first.join(timeout=10)
        assert first.proc.poll() == EXIT_CANNOT_RUN
        assert second.is_alive()
    finally:
        second.cancel()
        first.kill()
    assert second.proc.poll() == EXIT_CANNOT_RUN


def test_bad_orders_end_the_child_not_this_process() -> None:
    me = os.getpid()
    child = Child(ForkedChild("worker"), "worker")
    child.give({"url": "not a url", "auth": None})  # the worker cannot connect: it fails
    child.join(timeout=30)
    assert not child.is_alive() and child.proc.poll() not in (None, 0)
    assert os.getpid() == me


def test_kill_ends_a_child_that_waits() -> None:
    child = Child(ForkedChild("worker"), "worker")
    child.kill()
    child.join(timeout=5)
    assert not child.is_alive()
    assert child.proc.poll() == -9
    if child.proc.stdin is not None:
        child.proc.stdin.close()
