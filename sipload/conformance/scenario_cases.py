"""Cases written as scenarios: plain flows run by the scenario interpreter.

A scenario case is a UAC scenario under ``scenarios/conformance/`` run for one
call on the tester's UA (:meth:`~sipload.conformance.probe.Probe.run_scenario`).
Its :class:`~sipload.stats.records.CallRecord` gives the verdict: success is
``pass``; a failure is ``fail`` with the record's reason, except a timeout or a
transport error at the very first message (nothing came back at all), which is
``inconclusive``: the target may not serve that request, and silence alone does
not say which rule it broke.

The scenario files are found in the installed package
(``sipload/conformance/scenarios``, where the wheel build puts
``scenarios/conformance``) or, in a source checkout, in
``scenarios/conformance`` at the repository root.
"""

from __future__ import annotations

from pathlib import Path

from sipload.conformance.model import Case, Outcome, failed, inconclusive, passed
from sipload.conformance.probe import Probe
from sipload.conformance.profile import Profile
from sipload.scenario.loader import ScenarioError, load_file
from sipload.stats.records import Failure, Result

_HERE = Path(__file__).resolve().parent

TARGET_OF = {"uas_busy.yaml": "busy_uri"}
"""Which profile URI (of its ``uas:`` section) a scenario calls; default ``uri``."""


def scenario_dir() -> Path:
    """Where the conformance scenarios are (see the module docstring)."""
    for candidate in (_HERE / "scenarios", _HERE.parent.parent / "scenarios" / "conformance"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the conformance scenarios are not installed "
                            "(scenarios/conformance or sipload/conformance/scenarios)")


async def run_scenario_case(case: Case, probe: Probe, profile: Profile) -> Outcome:
    path = scenario_dir() / case.scenario
    try:
        program = load_file(path)
    except ScenarioError as e:
        raise RuntimeError(f"the case's scenario does not load: {e}") from e
    uri = profile.uri(getattr(profile.uas, TARGET_OF.get(case.scenario, "uri")))
    record = await probe.run_scenario(program, uri, timeout=case.budget,
                                      username=profile.username, password=profile.password)
    if record.result == Result.SUCCESS:
        codes = " ".join(str(c) for c in record.codes)
        return passed(f"the flow completed (responses: {codes})")
    got_any = any(direction == "in" for _, direction, _ in record.messages)
    reason = f"{record.failure}: {record.detail}" if record.detail else record.failure
    if record.step >= 0:
        reason += f" (scenario step {record.step + 1})"
    if not got_any and record.failure in (Failure.TIMEOUT.value, Failure.TRANSPORT.value,
                                          Failure.MAX_RETRANSMISSIONS.value):
        return inconclusive(f"no answer to the first request: {reason}")
    return failed(reason)
