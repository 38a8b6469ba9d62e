"""Typed, bounded values for every numeric flag of every sub-command.

Each function here is an argparse ``type=``: it turns the text of one flag into
its value or raises :class:`argparse.ArgumentTypeError` with what was expected,
so argparse refuses the flag (one line, exit 2) before anything runs.  Numbers
are finite (``nan`` and ``inf`` are refused everywhere) and inside the range
the flag makes sense in; durations accept ``500ms``, ``2s``, ``1m`` or seconds.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from typing import Any

from sipload.scenario.loader import parse_duration
from sipload.transport.stream import IDLE_TIMEOUT, MAX_MESSAGE

WORKERS_PER_CORE = 4
"""``--workers`` above this many per core needs ``--force-workers``."""

MAX_T1 = 60.0
"""The largest ``--t1`` accepted (seconds); RFC 3261 suggests 500 ms."""


def _finite(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _int(text: str, what: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def positive_float(text: str) -> float:
    """A finite number > 0 (a rate)."""
    value = _finite(text, "a positive number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _finite(text, "a number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number > 0."""
    value = _int(text, "a whole number > 0")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number >= 0."""
    value = _int(text, "a whole number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def seed(text: str) -> int:
    """Any whole number (a random seed)."""
    return _int(text, "a whole number")


def _duration(text: str, *, low: float, allow_zero: bool, high: float | None) -> float:
    try:
        value = parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 500ms, 30s or 5m, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite duration, got {text!r}")
    if value < low or (value == low and not allow_zero):
        raise argparse.ArgumentTypeError(
            f"must be {'>=' if allow_zero else '>'} {low:g} s, got {text!r}")
    if high is not None and value > high:
        raise argparse.ArgumentTypeError(f"must be at most {high:g} s, got {text!r}")
    return value


def duration(text: str) -> float:
    """A duration > 0 (``--duration``, ``--idle-timeout``)."""
    return _duration(text, low=0.0, allow_zero=False, high=None)


def duration_or_zero(text: str) -> float:
    """A duration >= 0 (``--grace``, ``--rate-interval``)."""
    return _duration(text, low=0.0, allow_zero=True, high=None)


def timer_t1(text: str) -> float:
    """SIP timer T1: > 0 and at most :data:`MAX_T1`."""
    return _duration(text, low=0.0, allow_zero=False, high=MAX_T1)


def port(text: str) -> int:
    """A TCP/UDP port, 0 (any) to 65535."""
    value = _int(text, "a port number")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {text!r}")
    return value


def byte_size(low: int, high: int) -> Callable[[str], int]:
    """A size in bytes (``65536``, ``64k``, ``1m``) between ``low`` and ``high``."""

    def parse(text: str) -> int:
        t = text.strip().lower().removesuffix("b").removesuffix("i")
        scale = 1
        if t[-1:] in ("k", "m"):
            scale = 1024 if t[-1] == "k" else 1024 * 1024
            t = t[:-1]
        value = _int(t, "a size such as 65536, 64k or 1m") * scale
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high} bytes, "
                                             f"got {text!r}")
        return value

    return parse


def max_workers() -> int:
    """The most ``--workers`` accepted without ``--force-workers``."""
    return WORKERS_PER_CORE * (os.cpu_count() or 1)


MAX_MESSAGE_CAP = 16 * 1024 * 1024
"""The largest ``--max-message`` accepted."""


def add_limits(p: argparse.ArgumentParser) -> None:
    """The flags that bound what peers may take (``run`` and ``uas``)."""
    p.add_argument("--max-message", type=byte_size(1024, MAX_MESSAGE_CAP), default=MAX_MESSAGE,
                   metavar="BYTES", help="largest SIP message on TCP/TLS (default 64k); "
                   "larger ones get 413 and the connection is closed")
    p.add_argument("--max-connections", type=non_negative_int, default=0, metavar="N",
                   help="most TCP/TLS connections accepted at once; beyond, 503 with "
                        "Retry-After (default 0: no cap)")
    p.add_argument("--idle-timeout", type=duration_or_zero, default=IDLE_TIMEOUT, metavar="T",
                   help=f"close a TCP/TLS connection idle this long (default {IDLE_TIMEOUT:g}s;"
                        " 0: never)")
    p.add_argument("--max-dialogs", type=non_negative_int, default=0, metavar="N",
                   help="most incoming calls at once; beyond, a new INVITE gets 503 with "
                        "Retry-After (default 0: no cap)")


def limits(args: argparse.Namespace) -> dict[str, Any]:
    """The limit flags as a plain map (it travels in the run plan)."""
    return {"max_message": args.max_message, "max_connections": args.max_connections,
            "idle_timeout": args.idle_timeout, "max_dialogs": args.max_dialogs}

