"""How timing values are kept and shown: milliseconds at microsecond resolution.

Marks are taken from socket stamps with nanosecond resolution and held in
seconds; histograms count whole microseconds.  Everything a user reads (the
live line and panel, ``summary.json``, ``report.html``, ``sipload trace``,
``load_run``'s ``mark_ms.*`` columns) is in milliseconds with three decimals
(0.284 ms), never an integer of milliseconds.  Floating-point noise (a mark of
3e-10 ms, -0.0, 0.28400000000000003) is rounded away: every value shown is a
whole number of microseconds and never negative.
"""

from __future__ import annotations

DECIMALS = 3
"""Digits after the point of a value in milliseconds (one microsecond)."""


def ms(value: float) -> float:
    """``value`` (a duration in ms) rounded to the microsecond, never below 0.

    NaN stays NaN (the summary turns it into null)."""
    r = round(value, DECIMALS)
    return 0.0 if r <= 0.0 else r


def seconds_to_ms(value: float) -> float:
    """A duration in seconds as :func:`ms` milliseconds."""
    return ms(value * 1000.0)


def fmt_ms(value: float, *, grouped: bool = False) -> str:
    """``0.284``: :func:`ms` with exactly three decimals (``1,234.500`` when grouped)."""
    v = ms(value)
    return f"{v:,.{DECIMALS}f}" if grouped else f"{v:.{DECIMALS}f}"
