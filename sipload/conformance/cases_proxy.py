"""stub."""

from sipload.conformance.model import Case

CASES: list[Case] = []
