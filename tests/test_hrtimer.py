"""The precise timer (sipload.transport.hrtimer) through the C helper and without it.

The C helper (``_mmsg.c``: ``timer_set``, ``timer_ack``) is the one the build made;
in a pure checkout it is compiled here from its source (tests/test_batch_io.py's
fixture), so both paths are tested wherever a C compiler exists.
"""

from __future__ import annotations

import asyncio
import sys
import time
from types import ModuleType

import pytest

from sipload.transport import hrtimer
from tests.test_batch_io import native_module  # noqa: F401 - the C helper's fixture

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd")


@pytest.fixture(params=["native", "python"])
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "native":
        module: ModuleType = request.getfixturevalue("native_module")
        assert module.API == hrtimer.NATIVE_API
        monkeypatch.setattr(hrtimer, "_native", module)
    else:
        monkeypatch.setattr(hrtimer, "_native", None)
    return str(request.param)


def _fires(deadlines: list[float], disarm_last: bool = False,
           wait: float = 0.3) -> list[float]:
    """Arm a timer for each deadline in turn (each replaces the last); the times
    (monotonic) at which the callback ran within ``wait`` seconds."""
    loop = asyncio.new_event_loop()
    fired: list[float] = []
    try:
        timer = hrtimer.precise_timer(loop, lambda: fired.append(time.monotonic()))
        assert timer is not None
        assert timer._native is hrtimer._native  # the case asked for, compiled or not
        for when in deadlines:
            timer.arm(when)
        if disarm_last:
            timer.disarm()
        loop.run_until_complete(asyncio.sleep(wait))
        timer.close()
    finally:
        loop.close()
    return fired


def test_fires_once_never_before_its_deadline(impl: str) -> None:
    when = time.monotonic() + 0.05
    fired = _fires([when])
    assert len(fired) == 1 and fired[0] >= when


def test_a_new_deadline_replaces_the_armed_one(impl: str) -> None:
    now = time.monotonic()
    fired = _fires([now + 0.02, now + 0.12])
    assert len(fired) == 1 and fired[0] >= now + 0.12


def test_a_past_deadline_fires_at_once(impl: str) -> None:
    now = time.monotonic()
    fired = _fires([now - 5.0], wait=0.1)
    assert len(fired) == 1 and fired[0] - now < 0.09


def test_disarmed_it_does_not_fire(impl: str) -> None:
    assert _fires([time.monotonic() + 0.02], disarm_last=True, wait=0.1) == []


def test_the_build_arms_timers_in_c(native_module: ModuleType) -> None:  # noqa: F811
    """A compiled build has the helper's timer functions (a pure build compiles it here)."""
    assert callable(native_module.timer_set) and callable(native_module.timer_ack)
    if hrtimer.IMPLEMENTATION == "native":
        assert hrtimer._native is not None


def test_loop_setting_takes_the_precise_timer_away(monkeypatch: pytest.MonkeyPatch) -> None:
    """``SIPLOAD_TIMER=loop``: no precise timer, the caller keeps the loop's (the timing
    tests' control, tests/test_timing.py)."""
    loop = asyncio.new_event_loop()
    try:
        monkeypatch.setenv("SIPLOAD_TIMER", "loop")
        assert hrtimer.precise_timer(loop, lambda: None) is None
        monkeypatch.delenv("SIPLOAD_TIMER")
        timer = hrtimer.precise_timer(loop, lambda: None)
        assert timer is not None
        timer.close()
    finally:
        loop.close()
