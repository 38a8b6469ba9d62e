"""The conformance case model: what a case is, what it concluded, and the evidence.

A :class:`Case` has a stable ID (``UAS-INV-001``), the RFC and section it
checks, a one-line purpose, the pack it belongs to and the requirements a
profile must claim for it to apply.  Running it gives a :class:`CaseResult`:
one of five :class:`Verdict` values, the reason in words, how long it took, and
the message ladder (every datagram or stream message sent and received, with
its time, first line and full text).

Verdicts, and who is to blame for each:

* ``pass`` -- the target did what the RFC asks.
* ``fail`` -- the target did something the RFC forbids (or not what it demands).
* ``inconclusive`` -- the target did something that prevents judging (it
  answered before the tester could CANCEL, it does not serve the method at all).
* ``error`` -- the tester itself failed (an exception, a socket it could not bind).
* ``not_applicable`` -- the profile does not claim what the case needs.  Never
  counted as a pass.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sipload.conformance.ladder import LadderEntry
from sipload.conformance.probe import Probe
from sipload.conformance.profile import Profile

PACKS = ("uas", "robustness", "registrar", "proxy", "uac")
"""Every pack, in the order cases run."""

DEFAULT_PACKS = PACKS
"""Packs run when none is named (the profile's roles still decide what applies)."""


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"
    NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a case function concludes."""

    verdict: Verdict
    reason: str


def passed(reason: str = "") -> Outcome:
    return Outcome(Verdict.PASS, reason)


def failed(reason: str) -> Outcome:
    return Outcome(Verdict.FAIL, reason)


def inconclusive(reason: str) -> Outcome:
    return Outcome(Verdict.INCONCLUSIVE, reason)


def not_applicable(reason: str) -> Outcome:
    return Outcome(Verdict.NOT_APPLICABLE, reason)


CaseFunc = Callable[[Probe, Profile], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class Case:
    """One conformance case (see the module docstring).

    Attributes:
        id: stable identifier, e.g. ``UAS-INV-004``; never reused for another check.
        rfc: the RFC number, e.g. ``"3261"``.
        section: the section, e.g. ``"13.3.1.4"``.
        purpose: one line saying what is checked (and, where it matters, for which role).
        pack: ``uas``, ``robustness``, ``registrar``, ``proxy`` or ``uac``.
        requires: what the profile must claim: a role (``role:uas``), an extension
            (``ext:100rel``) or a profile setting (``set:uas.ringing_uri``).
        run: the case function (Python cases) -- None for scenario cases.
        scenario: the scenario file under ``scenarios/conformance/`` (scenario cases).
        slow: waits for a long timer (64*T1); runs only when the profile says ``slow: true``.
        budget: seconds the case may take at T1 = 500 ms (scaled with the profile's T1).
    """

    id: str
    rfc: str
    section: str
    purpose: str
    pack: str
    requires: tuple[str, ...] = ()
    run: CaseFunc | None = None
    scenario: str = ""
    slow: bool = False
    budget: float = 20.0

    @property
    def reference(self) -> str:
        """``RFC 3261 §13.3.1.4``."""
        return f"RFC {self.rfc} §{self.section}"


@dataclass(slots=True)
class CaseResult:
    """A case and its verdict, with the evidence."""

    case: Case
    verdict: Verdict
    reason: str
    duration: float = 0.0
    ladder: list[LadderEntry] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        c = self.case
        return {
            "id": c.id, "rfc": c.rfc, "section": c.section, "reference": c.reference,
            "purpose": c.purpose, "pack": c.pack, "requires": list(c.requires),
            "verdict": self.verdict.value, "reason": self.reason,
            "duration": round(self.duration, 6),
            "ladder": [e.to_dict() for e in self.ladder],
        }
