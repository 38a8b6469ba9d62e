"""The exit codes of every ``sipload`` command, defined once (the README's Exit codes table)."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
"""Success: every threshold met, every message valid, no conformance case failed."""
EXIT_FAILED: Final = 1
"""A check failed: a threshold, an invalid message, a conformance case, a regression
(``sipload trace``: no call matched)."""
EXIT_USAGE: Final = 2
"""Usage or input error (scenario, flag, CSV, profile): nothing was sent."""
EXIT_CANNOT_RUN: Final = 3
"""The run could not run (target unreachable, no worker, no socket)."""
