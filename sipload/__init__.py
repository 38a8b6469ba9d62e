"""sipload: a multiprocess SIP load generator and conformance tester."""

from pathlib import Path

from sipload._native import guard

__version__ = "0.1.0"

guard(Path(__file__).parent)
