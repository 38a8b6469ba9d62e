"""Selecting and running conformance cases against one target.

Theory of operation
===================

1. :func:`all_cases` is the catalogue, in pack order (``model.PACKS``);
   :func:`select` filters it by ``--pack``/``--only``
   and drops slow cases unless the profile says ``slow: true`` (or ``--only``
   names them).
2. Before any case, :func:`run` checks the target answers: an OPTIONS, then
   (if that gets nothing) an INVITE, which is cancelled or hung up at once.
   No answer at all is :class:`Unreachable` (exit status 3).  A profile whose
   only role is ``uac`` skips this: its target calls the tester; so does a run of
   transport cases alone (each opens its own connection and judges silence itself).
3. Each case first has its requirements checked against the profile (a
   requirement not claimed: ``not_applicable``, with the requirement named),
   then runs with its own ladder and a time budget scaled by the target's T1.
   A case that raises, or outruns its budget, is ``error``: the tester failed,
   not the target.  A ``fail`` that names no rule cites the case's first MUST.
4. :func:`exit_status`: 1 when a case failed or errored (or, with ``strict``,
   warned), else 0.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sipload.conformance.model import (
    PACKS,
    Case,
    CaseResult,
    Level,
    Outcome,
    Rule,
    Verdict,
)
from sipload.conformance.probe import Probe
from sipload.conformance.profile import Profile
from sipload.exitcodes import EXIT_FAILED, EXIT_OK
from sipload.transport import Peer

UAS_PACKS = ("sdp", "prack", "timer", "rtp", "robustness", "transport")
"""Packs judging the target as a UAS, run when the profile claims ``uas``."""


class Unreachable(Exception):
    """The target answered neither OPTIONS nor INVITE."""


def all_cases() -> list[Case]:
    """Every case, in pack order."""
    from sipload.conformance import (
        cases_dialog,
        cases_prack,
        cases_proxy,
        cases_registrar,
        cases_requests,
        cases_robust,
        cases_rtp,
        cases_sdp,
        cases_timer,
        cases_transport,
        cases_uac,
        cases_uas,
    )

    cases = [*cases_uas.CASES, *cases_dialog.CASES, *cases_requests.CASES, *cases_sdp.CASES,
             *cases_prack.CASES, *cases_timer.CASES, *cases_rtp.CASES,
             *cases_robust.cases(),
             *cases_transport.CASES,
             *cases_registrar.CASES, *cases_proxy.CASES, *cases_uac.CASES]
    order = {p: i for i, p in enumerate(PACKS)}
    return sorted(cases, key=lambda c: order[c.pack])


def select(cases: Iterable[Case], *, packs: Iterable[str] = (), only: Iterable[str] = (),
           slow: bool = False) -> list[Case]:
    """The cases to run (rule 1).  IDs in ``only`` may end in ``*`` (a prefix)."""
    wanted_packs = set(packs)
    patterns = list(only)

    def named(case: Case) -> bool:
        return any(case.id == p or (p.endswith("*") and case.id.startswith(p[:-1]))
                   for p in patterns)

    out: list[Case] = []
    for case in cases:
        if wanted_packs and case.pack not in wanted_packs:
            continue
        if patterns and not named(case):
            continue
        if case.slow and not slow and not (patterns and named(case)):
            continue
        out.append(case)
    return out


def default_packs(profile: Profile) -> list[str]:
    """The packs of the roles the profile claims (the UAS's own packs go with ``uas``)."""
    roles = set(profile.roles)
    return [p for p in PACKS if p in roles or (p in UAS_PACKS and "uas" in roles)]


def missing_requirement(case: Case, profile: Profile) -> str | None:
    for req in case.requires:
        if not profile.claims(req):
            kind, _, what = req.partition(":")
            words = {"role": "the role", "ext": "the extension", "set": "the setting",
                     "transport": "the transport"}[kind]
            return f"the profile does not claim {words} '{what}'"
    return None


def budget(case: Case, profile: Profile) -> float:
    scale = max(1.0, profile.t1 / 0.5)
    if case.slow:
        return 64 * profile.t1 * 1.5 + 20.0
    if case.pack == "uac":
        return case.budget + 2 * profile.uac.wait
    return case.budget * scale + 2 * profile.response_timeout


@dataclass(slots=True)
class RunSetup:
    """Where the tester talks to."""

    target: Peer
    listen: tuple[str, int] = ("127.0.0.1", 0)
    tls_insecure: bool = False
    tls_server: ssl.SSLContext | None = None  #: the tester's own TLS server context


async def check_reachable(probe: Probe, profile: Profile) -> str:
    """The method the target answers (rule 2).

    Raises:
        Unreachable: no answer to OPTIONS nor INVITE.
    """
    host, port = profile.target
    uri = profile.uri(profile.uas.uri) if "uas" in profile.roles else f"sip:{host}:{port}"
    probe.begin_case()
    ex = await probe.transact(probe.request("OPTIONS", uri), timeout=profile.response_timeout)
    if ex.final is not None:
        return "OPTIONS"
    if "uas" in profile.roles:
        inv = await probe.invite(uri, timeout=profile.response_timeout)
        answered = ex.final is not None or bool(inv.provisionals) or inv.final is not None
        await probe.finish(inv.request, inv)
        if answered:
            return "INVITE"
    raise Unreachable(f"no answer from {probe.target[0]}:{host}:{port} to OPTIONS"
                      + (" nor INVITE" if "uas" in profile.roles else ""))


async def run_case(case: Case, probe: Probe, profile: Profile) -> CaseResult:
    """Run one case with its own ladder and budget (rule 3)."""
    missing = missing_requirement(case, profile)
    if missing is not None:
        return CaseResult(case, Verdict.NOT_APPLICABLE, missing)
    probe.begin_case()
    started = time.monotonic()

    async def invoke() -> Outcome:
        if case.run is not None:
            return await case.run(probe, profile)
        from sipload.conformance.scenario_cases import run_scenario_case

        return await run_scenario_case(case, probe, profile)

    rule: Rule | None = None
    try:
        async with asyncio.timeout(budget(case, profile)):
            outcome = await invoke()
        verdict, reason, rule = outcome.verdict, outcome.reason, outcome.rule
        if verdict == Verdict.FAIL and rule is None:
            rule = next((r for r in case.rules if r.level == Level.MUST), None)
    except TimeoutError:
        verdict, reason = Verdict.ERROR, (
            f"the case ran past its budget of {budget(case, profile):.0f} s")
    except Exception as e:  # the tester's fault: recorded, never raised
        tb = traceback.extract_tb(e.__traceback__)
        where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
        verdict, reason = Verdict.ERROR, f"the tester failed: {type(e).__name__}: {e}{where}"
    finally:
        probe.divert_all = False
    return CaseResult(case, verdict, reason, time.monotonic() - started, probe.ladder(), rule)


async def run(cases: list[Case], profile: Profile, setup: RunSetup,
              on_result: Callable[[CaseResult], None] = lambda r: None) -> list[CaseResult]:
    """Run ``cases`` against the target; results in order.

    Raises:
        Unreachable: the reachability probe got no answer (rule 2).
        OSError: the tester's sockets cannot be bound.
    """
    listen = setup.listen
    uac_listen = profile.uac.listen
    needs_uac = any(c.pack == "uac" and missing_requirement(c, profile) is None for c in cases)
    if needs_uac and listen[1] == 0 and profile.roles == ("uac",):
        listen = uac_listen  # the target calls the tester's only socket
    probe = await Probe.open(setup.target, listen=listen, tls_insecure=setup.tls_insecure,
                             tls_server=setup.tls_server)
    results: list[CaseResult] = []
    try:
        if needs_uac and probe.local != uac_listen:
            await probe.listen(*uac_listen)
        if any(c.pack == "proxy" and missing_requirement(c, profile) is None for c in cases):
            await probe.listen(*profile.proxy.callee)
        if any(c.pack not in ("uac", "transport") and missing_requirement(c, profile) is None
               for c in cases):
            probe.alive_method = await check_reachable(probe, profile)
        for case in cases:
            result = await run_case(case, probe, profile)
            results.append(result)
            on_result(result)
    finally:
        await probe.close()
    return results


def exit_status(results: Iterable[CaseResult], strict: bool = False) -> int:
    """0, or 1 when a case failed or errored (or warned, when ``strict``)."""
    bad = {Verdict.FAIL, Verdict.ERROR} | ({Verdict.WARN} if strict else set())
    return EXIT_FAILED if any(r.verdict in bad for r in results) else EXIT_OK


def counts(results: Iterable[CaseResult]) -> dict[str, int]:
    out = {v.value: 0 for v in Verdict}
    for r in results:
        out[r.verdict.value] += 1
    return out
