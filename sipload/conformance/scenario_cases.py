"""Cases written as scenarios: plain flows run by the scenario interpreter.

A scenario case is a UAC scenario under ``scenarios/conformance/`` run for one
call on the tester's UA (:meth:`~sipload.conformance.probe.Probe.run_scenario`).
Its :class:`~sipload.stats.records.CallRecord` gives the verdict: success is
``pass``; a failure is ``fail`` with the record's reason and the case's first
MUST.  Silence is judged like everywhere else: a first INVITE that gets no
response at all within the profile's ``response_timeout`` breaks the MUST to
answer it (RFC 3261 §17.2.1), so it fails too.

Each scenario case runs on a runtime of its own (its own socket, bound for
the case and closed after it): whatever the scenario's call leaves behind
(a transaction still retransmitting, a late response) ends with the case and
never reaches the next case's ladder.

The scenario files are found in the installed package
(``sipload/conformance/scenarios``, where the wheel build puts
``scenarios/conformance``) or, in a source checkout, in
``scenarios/conformance`` at the repository root.
"""

from __future__ import annotations

from pathlib import Path

from sipload.conformance.model import Case, Outcome, failed, passed
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
                                      username=profile.username, password=profile.password,
                                      first_answer=profile.response_timeout)
    if record.result == Result.SUCCESS:
        codes = " ".join(str(c) for c in record.codes)
        return passed(f"the flow completed (responses: {codes})")
    got_any = any(direction == "in" for _, direction, _ in record.messages)
    reason = f"{record.failure}: {record.detail}" if record.detail else record.failure
    if record.step >= 0:
        reason += f" (scenario step {record.step + 1})"
    if not got_any and record.failure in (Failure.TIMEOUT.value, Failure.TRANSPORT.value,
                                          Failure.MAX_RETRANSMISSIONS.value):
        return failed(f"no answer at all to the first request: {reason}")
    return failed(reason)
