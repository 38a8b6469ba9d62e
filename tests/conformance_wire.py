"""What a packet capture of a conformance run must show of the tester's own messages.

Test infrastructure (issue 16 §4): :func:`wire_problems` reads a whole run's capture
(:mod:`tests.capture`) beside its results and lists every place the tester broke §17
or let a case spill into another:

1. No ACK for a non-INVITE: every ACK the tester sends has an INVITE of the tester
   with its Call-ID and CSeq number (§17.1.2).
2. Every final response to an INVITE of the tester is ACKed (§17.1.1.3, §13.2.2.4),
   and every call answered 2xx sees a BYE (the case ends what it started).
3. Every request the tester sends over UDP is retransmitted on the §17 schedule
   (T1 doubling; capped at T2 for non-INVITE) and never after its final response
   (an INVITE: never after a provisional).  The one deliberate exception is the
   repeat of an INVITE answered non-2xx that UAS-INV-006 sends to probe the
   target's Completed state.
4. A case's ladder holds only its own Call-IDs, and no message the tester sends
   for a case comes after the next case has begun.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sipload.conformance.model import CaseResult
from tests.capture import Packet

_CALL_ID = re.compile(rb"(?im)^(?:call-id|i)[ \t]*:[ \t]*(\S+)")
_CSEQ = re.compile(rb"(?im)^cseq[ \t]*:[ \t]*(\d+)[ \t]*(?:\r?\n)?[ \t]+(\S+)")
_BRANCH = re.compile(rb"(?i)branch[ \t]*=[ \t]*([^;,\s]+)")
TOLERANCE, SLACK = 0.30, 0.08
RACE = 0.005
"""Seconds a retransmission may follow the answer it crossed (sent before it was read)."""


@dataclass(frozen=True, slots=True)
class Msg:
    time: float
    out: bool  #: sent by the tester
    method: str  #: request method, or the CSeq method of a response
    status: int  #: 0: a request
    call_id: str
    cseq: int
    branch: str


def messages(packets: Iterable[Packet], target_port: int) -> list[Msg]:
    """The SIP messages between the tester and the target, in capture order."""
    out: list[Msg] = []
    for p in packets:
        head = p.payload.partition(b"\r\n\r\n")[0]
        first = head.split(b"\r\n", 1)[0].decode("utf-8", "replace")
        cid, cseq, branch = _CALL_ID.search(head), _CSEQ.search(head), _BRANCH.search(head)
        if cid is None or cseq is None or not first.strip():
            continue
        status = 0
        if first.startswith("SIP/2.0 "):
            code = first.split(" ")[1] if len(first.split(" ")) > 1 else ""
            if not code.isdigit():
                continue
            status = int(code)
        method = first.split(" ", 1)[0] if not status else cseq.group(2).decode()
        out.append(Msg(p.time, p.dst[1] == target_port, method, status,
                       cid.group(1).decode("utf-8", "replace"), int(cseq.group(1)),
                       branch.group(1).decode("utf-8", "replace") if branch else ""))
    return out


def _schedule(times: Sequence[float], invite: bool, t1: float, t2: float) -> str | None:
    interval = t1
    for a, b in itertools.pairwise(times):
        expected = interval if invite else min(interval, t2)
        if abs((b - a) - expected) > max(TOLERANCE * expected, SLACK):
            gaps = ", ".join(f"{(y - x) * 1000:.0f}" for x, y in itertools.pairwise(times))
            return f"gaps {gaps} ms, not T1 doubling from {t1 * 1000:.0f} ms"
        interval *= 2
    return None


def wire_problems(packets: Iterable[Packet], target_port: int,
                  results: Sequence[CaseResult], t1: float = 0.5, t2: float = 4.0
                  ) -> list[str]:
    """Every breach of rules 1-4 (module docstring) in the capture; [] when none."""
    msgs = messages(packets, target_port)
    problems: list[str] = []
    by_call: dict[str, list[Msg]] = {}
    for m in msgs:
        by_call.setdefault(m.call_id, []).append(m)
    for call_id, ms in by_call.items():
        invites = {m.cseq for m in ms if m.out and m.status == 0 and m.method == "INVITE"}
        for m in ms:  # rule 1
            if m.out and m.method == "ACK" and m.cseq not in invites:
                problems.append(f"{call_id}: ACK {m.cseq} without an INVITE of that CSeq")
        invite_branches = {m.branch for m in ms if m.out and m.status == 0
                           and m.method == "INVITE"}
        finals = [m for m in ms if not m.out and m.method == "INVITE" and m.status >= 200
                  and (m.branch in invite_branches or not m.branch)]
        for f in finals:  # rule 2
            if not any(m.out and m.method == "ACK" and m.cseq == f.cseq and m.time >= f.time
                       for m in ms):
                problems.append(f"{call_id}: {f.status} to INVITE {f.cseq} never ACKed")
        if any(200 <= f.status < 300 for f in finals) and not any(
                m.method == "BYE" and m.status == 0 for m in ms):
            problems.append(f"{call_id}: a 2xx to INVITE and no BYE")
        sends: dict[tuple[str, str, int], list[Msg]] = {}
        for m in ms:
            if m.out and m.status == 0 and m.method != "ACK":
                sends.setdefault((m.branch, m.method, m.cseq), []).append(m)
        for (branch, method, cseq), copies in sends.items():  # rule 3
            answers = [m for m in ms if not m.out and m.status and m.branch == branch
                       and m.method == method and m.cseq == cseq]
            stop = [a.time for a in answers if a.status >= 200 or method == "INVITE"]
            final = [a.time for a in answers if a.status >= 200]
            probe = [c for c in copies if final and c.time > min(final)]
            if (len(probe) == 1 and method == "INVITE"
                    and all(a.status >= 300 for a in answers if a.status >= 200)):
                copies = [c for c in copies if c not in probe]  # UAS-INV-006's repeat
            late = [c for c in copies if stop and c.time > min(stop) + RACE]
            if late:
                problems.append(f"{call_id}: {method} {cseq} sent again "
                                f"{late[0].time - min(stop):.2f} s after it was answered")
            times = [c.time for c in copies if not stop or c.time <= min(stop) + RACE]
            why = _schedule(times, method == "INVITE", t1, t2)
            if why is not None:
                problems.append(f"{call_id}: {method} {cseq} retransmitted off §17: {why}")
    # rule 4
    owner: dict[str, str] = {}
    for r in results:
        for e in r.ladder:
            cid = _CALL_ID.search(e.text.encode())
            if cid is None:
                continue
            c = cid.group(1).decode()
            if owner.setdefault(c, r.case.id) != r.case.id:
                problems.append(f"{c}: in the ladders of {owner[c]} and {r.case.id}")
    spans: list[tuple[str, float, float]] = []
    for r in results:
        mine = [m.time for c, ms in by_call.items() if owner.get(c) == r.case.id
                for m in ms if m.out]
        if mine:
            spans.append((r.case.id, min(mine), max(mine)))
    for (a, _, a_end), (b, b_start, _) in itertools.pairwise(spans):
        if a_end > b_start:
            problems.append(f"{a} still sent {a_end - b_start:.2f} s after {b} began")
    return problems
