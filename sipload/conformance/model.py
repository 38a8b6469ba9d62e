"""The conformance case model: what a case is, what it concluded, and the evidence.

A :class:`Case` has a stable ID (``UAS-INV-001``), the RFC and section it
checks, a one-line purpose, the pack it belongs to, the requirements a profile
must claim for it to apply, and the :class:`Rule` s it enforces: each one RFC
sentence, quoted, with its requirement level (RFC 2119: MUST, SHOULD; a MAY is
never judged).  The rules are the target's own obligations (a UAS's, a
proxy's, a registrar's, a UAC's), never another role's.

Running a case gives a :class:`CaseResult`: one of six :class:`Verdict` values,
the reason in words, the rule broken (if any), how long it took, and the
message ladder (every datagram or stream message sent and received, with its
time, first line and full text).

Verdicts, and who is to blame for each:

* ``pass`` -- the target did what the RFC asks.
* ``warn`` -- the target did not do what a SHOULD asks (:func:`broke` on a
  SHOULD rule).  Listed and counted, never a failure (unless ``--strict``).
* ``fail`` -- the target broke a MUST (:func:`broke` on a MUST rule).  Silence
  where a MUST demands an answer is a failure too.
* ``inconclusive`` -- the target did something the RFC allows that prevents
  judging (it answered before the tester could CANCEL, it never rang).
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

PACKS = ("uas", "sdp", "prack", "timer", "rtp", "robustness", "transport", "registrar", "proxy",
         "uac")
"""Every pack, in the order cases run."""

DEFAULT_PACKS = PACKS
"""Packs run when none is named (the profile's roles still decide what applies)."""


class Verdict(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"
    NOT_APPLICABLE = "not_applicable"


class Level(StrEnum):
    """Requirement levels (RFC 2119) a check can enforce."""

    MUST = "MUST"
    SHOULD = "SHOULD"


@dataclass(frozen=True, slots=True)
class Rule:
    """One RFC sentence a check enforces.

    Attributes:
        level: MUST (broken: ``fail``) or SHOULD (not followed: ``warn``).
        ref: where the sentence is, e.g. ``RFC 3261 §8.2.1``.
        text: the sentence, quoted from the RFC (shortened only with "...").
    """

    level: Level
    ref: str
    text: str

    def __str__(self) -> str:
        return f'{self.level.value} ({self.ref}): "{self.text}"'

    def to_dict(self) -> dict[str, str]:
        return {"level": self.level.value, "ref": self.ref, "text": self.text}


def must(ref: str, text: str) -> Rule:
    return Rule(Level.MUST, ref, text)


def should(ref: str, text: str) -> Rule:
    return Rule(Level.SHOULD, ref, text)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a case function concludes (``rule``: the one broken, for fail and warn)."""

    verdict: Verdict
    reason: str
    rule: Rule | None = None


def passed(reason: str = "") -> Outcome:
    return Outcome(Verdict.PASS, reason)


def broke(rule: Rule, reason: str) -> Outcome:
    """The target broke ``rule``: ``fail`` for a MUST, ``warn`` for a SHOULD."""
    return Outcome(Verdict.FAIL if rule.level == Level.MUST else Verdict.WARN, reason, rule)


def failed(reason: str) -> Outcome:
    """A MUST broken; the case's first MUST rule is cited (use :func:`broke` to cite
    another)."""
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
        pack: one of :data:`PACKS`.
        requires: what the profile must claim: a role (``role:uas``), an extension
            (``ext:100rel``) or a profile setting (``set:uas.ringing_uri``).
        run: the case function (Python cases) -- None for scenario cases.
        scenario: the scenario file under ``scenarios/conformance/`` (scenario cases).
        slow: waits for a long timer (64*T1); runs only when the profile says ``slow: true``.
        budget: seconds the case may take at T1 = 500 ms (scaled with the profile's T1).
        rules: the RFC sentences the case enforces, its main MUST first.
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
    rules: tuple[Rule, ...] = ()

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
    rule: Rule | None = None  #: the rule broken (fail, warn)

    @property
    def level(self) -> str:
        """The level of the rule broken (``MUST``, ``SHOULD``), or ``""``."""
        return self.rule.level.value if self.rule is not None else ""

    def to_dict(self) -> dict[str, Any]:
        c = self.case
        return {
            "id": c.id, "rfc": c.rfc, "section": c.section, "reference": c.reference,
            "purpose": c.purpose, "pack": c.pack, "requires": list(c.requires),
            "rules": [r.to_dict() for r in c.rules],
            "verdict": self.verdict.value, "reason": self.reason,
            "level": self.level,
            "rule": self.rule.to_dict() if self.rule is not None else None,
            "duration": round(self.duration, 6),
            "ladder": [e.to_dict() for e in self.ladder],
        }
