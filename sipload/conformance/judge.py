"""Pure judging helpers shared by the case modules: schedules, headers, challenges.

Nothing here sends or waits; each function takes what was seen and says what
is wrong with it (a reason string) or returns None when it is right.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from sipload.sip.digest import DigestError, is_supported_algorithm, parse_challenges
from sipload.sip.errors import ParseError
from sipload.sip.message import Request, Response

TOLERANCE = 0.30
"""Relative tolerance on a retransmission interval."""
SLACK = 0.060
"""Absolute tolerance (seconds): scheduling and loopback jitter of both sides."""


def expected_intervals(t1: float, t2: float | None, count: int) -> list[float]:
    """T1, 2*T1, 4*T1 ... capped at T2 when given (``count`` of them)."""
    out: list[float] = []
    interval = t1
    for _ in range(count):
        out.append(interval if t2 is None else min(interval, t2))
        interval *= 2
    return out


def intervals_to_observe(t1: float, t2: float | None, horizon: float = 10.0,
                         least: int = 3) -> int:
    """How many intervals to watch: up to two at the T2 cap, within ``horizon`` seconds
    (and 64*T1, when the sender gives up), but at least ``least``."""
    horizon = min(horizon, 0.75 * 64 * t1)
    total, n, capped = 0.0, 0, 0
    for e in expected_intervals(t1, t2, 64):
        if n >= least and (total + e > horizon or capped >= 2):
            break
        total += e
        n += 1
        capped += t2 is not None and e >= t2
    return n


def within(measured: float, expected: float) -> bool:
    return abs(measured - expected) <= max(TOLERANCE * expected, SLACK)


def judge_schedule(times: Sequence[float], expected: Sequence[float]) -> tuple[bool, str]:
    """Compare the gaps between ``times`` with ``expected``; (ok, table in words)."""
    gaps = [b - a for a, b in itertools.pairwise(times)]
    parts = []
    ok = True
    for i, (g, e) in enumerate(zip(gaps, expected, strict=False)):
        good = within(g, e)
        ok = ok and good
        parts.append(f"#{i + 1} {g * 1000:.0f} ms (expected {e * 1000:.0f}){'' if good else ' ✗'}")
    return ok, "; ".join(parts)


def _via_key(value: str, top: bool) -> str:
    """A Via as compared; the server transport may add received and fill rport in
    the top one (RFC 3261 §18.2.1, RFC 3581 §4)."""
    if not top:
        return value.strip()
    head, _, params = value.strip().partition(";")
    kept = [p for p in params.split(";") if p and
            p.partition("=")[0].strip().lower() not in ("received", "rport")]
    return ";".join([" ".join(head.split()), *kept])


def _vias_echoed(req: Request, resp: Response) -> bool:
    ours, theirs = req.values("via"), resp.values("via")
    if len(ours) != len(theirs):
        return False
    return all(_via_key(a, i == 0) == _via_key(b, i == 0)
               for i, (a, b) in enumerate(zip(ours, theirs, strict=True)))


def echo_problems(req: Request, resp: Response) -> list[str]:
    """What ``resp`` gets wrong of the fields §8.2.6.2 copies from ``req``."""
    out: list[str] = []
    try:
        if not _vias_echoed(req, resp):
            out.append("Via not copied unchanged")
        if resp.call_id != req.call_id:
            out.append(f"Call-ID {resp.call_id!r} is not the request's")
        if resp.cseq.seq != req.cseq.seq or resp.cseq.method != req.cseq.method:
            out.append(f"CSeq '{resp.cseq.seq} {resp.cseq.method}' is not the request's "
                       f"'{req.cseq.seq} {req.cseq.method}'")
        if resp.from_tag != req.from_tag or str(resp.from_.uri) != str(req.from_.uri):
            out.append("From not copied (URI or tag differs)")
        if str(resp.to.uri) != str(req.to.uri):
            out.append("To URI differs from the request's")
        if resp.status > 100 and req.to_tag is None and not resp.to_tag:
            out.append(f"{resp.status} without a To tag")
    except ParseError as e:
        out.append(f"unparsable header: {e.reason}")
    return out


def challenge_problems(resp: Response, algorithms: Sequence[str]) -> tuple[list[str], str]:
    """What is wrong with a 401/407's digest challenge; (problems, summary of it).

    Checks (RFC 3261 §22.4, RFC 7616 §3.3, RFC 8760 §2): the header is there and
    parses; realm and nonce are not empty; the algorithm, when given, is one the
    tester implements and one the profile claims; qop is offered and includes
    ``auth``.
    """
    name = "www-authenticate" if resp.status == 401 else "proxy-authenticate"
    values = resp.get_all(name)
    if not values:
        return [f"{resp.status} without {name.title()}"], ""
    problems: list[str] = []
    challenges = []
    for value in values:
        try:
            challenges.extend(parse_challenges(value))
        except DigestError as e:
            problems.append(f"malformed challenge: {e}")
    if not challenges:
        return problems or ["no Digest challenge"], ""
    c = challenges[0]
    summary = (f"realm={c.realm!r} algorithm={c.effective_algorithm} "
               f"qop={','.join(c.qop) or '-'} nonce={len(c.nonce)} chars")
    if not c.realm:
        problems.append("empty realm")
    if not c.nonce:
        problems.append("empty nonce")
    if not is_supported_algorithm(c.algorithm):
        problems.append(f"unknown algorithm {c.algorithm!r}")
    elif c.effective_algorithm not in algorithms:
        problems.append(f"algorithm {c.effective_algorithm} is not one the profile claims "
                        f"({', '.join(algorithms)})")
    if not c.qop:
        problems.append("no qop (RFC 7616 §3.3: qop MUST be used)")
    elif "auth" not in c.qop and "auth-int" not in c.qop:
        problems.append(f"qop {c.qop} offers neither auth nor auth-int")
    return problems, summary


# --------------------------------------------------------------------------- §8.2 order

UAS_STEPS = ("auth", "method", "uri", "merged", "require", "content")
"""The order of a UAS's checks (RFC 3261 §8.2: "UASs SHOULD process the requests in
the order of the steps that follow in this section (that is, starting with
authentication, then inspecting the method, the header fields, and so on")."""

_STEP_ANSWERS: dict[str, tuple[tuple[int, ...], str]] = {
    "auth": ((401, 407), "authentication (§8.2, §22)"),
    "method": ((405, 501), "method inspection (§8.2.1)"),
    "uri": ((403, 404, 416), "To and Request-URI (§8.2.2.1)"),
    "merged": ((482,), "merged requests (§8.2.2.2)"),
    "require": ((420,), "Require (§8.2.2.3)"),
    "content": ((415,), "content processing (§8.2.3)"),
}


def earlier_step(status: int, step: str, skip: tuple[str, ...] = ()) -> str | None:
    """The §8.2 step before ``step`` that ``status`` answers, in words (else None).

    An answer right at an earlier step is right: a 404 for a Request-URI the
    target does not serve comes before Require or the body are looked at.
    ``skip`` names steps that cannot apply (the method of an INVITE).
    """
    for name in UAS_STEPS[:UAS_STEPS.index(step)]:
        statuses, words = _STEP_ANSWERS[name]
        if name not in skip and status in statuses:
            return words
    return None
