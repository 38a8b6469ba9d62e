"""The robustness pack: RFC 4475 torture messages sent raw, one case each.

The messages and their index ship in ``sipload/conformance/data/`` (byte-exact
copies of ``tests/data/rfc4475/``).  The pack sends every message RFC 4475
calls invalid (§3.1.2) and every semantically wrong one whose expected handling
does not depend on the element's role (§3.2, §3.3), once, as bytes.

Judging (``expect`` in ``index.json``): the target may answer as the entry
says (``reject-400``, ``reject-416-or-404``, ``reject-error`` = any 4xx-6xx,
``liberal-accept`` = any answer) or drop the message; ``discard`` means no
answer at all.  In every case the target must still answer afterwards (an
OPTIONS, or the INVITE the reachability probe found it answers), or the case
fails: the message broke it.

One change is made to each request before it is sent: the top Via's transport
and sent-by become the tester's own, or the target would answer to
``192.0.2.x:5060`` (RFC 3261 §18.2.2) and the tester could not see the answer.
No message's defect lies in that field; the ladder shows the bytes as sent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sipload.conformance.ladder import call_id_of
from sipload.conformance.model import Case, Outcome, failed, passed
from sipload.conformance.probe import Exchange, Probe
from sipload.conformance.profile import Profile
from sipload.conformance.steps import uas_uri
from sipload.sip.errors import ParseError
from sipload.sip.message import Message, Request, Response
from sipload.sip.parser import parse_message

_ROLE_SPECIFIC = ("uas-", "proxy-", "registrar-", "non-registrar-")
_VIA = re.compile(rb"(?im)^((?:via|v)[ \t]*:[ \t]*SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*)"
                  rb"([A-Za-z]+)([ \t]+)([^;,\s]+)")
_BRANCH = re.compile(rb"(?i)branch[ \t]*=[ \t]*z9hG4bK[^;,\s]+")


def _data(name: str) -> bytes:
    return resources.files("sipload.conformance").joinpath("data", name).read_bytes()


def index() -> list[dict[str, Any]]:
    """The entries of ``data/index.json``."""
    entries: list[dict[str, Any]] = json.loads(_data("index.json"))
    return entries


def in_pack(entry: dict[str, Any]) -> bool:
    """Invalid messages, and wrong ones whose handling does not depend on the role."""
    expect = str(entry["expect"])
    if any(part.strip().startswith(_ROLE_SPECIFIC) for part in expect.split(";")):
        return False
    if not entry["valid"]:
        return True
    return expect.startswith(("reject", "discard", "accept-or-reject"))


@dataclass(frozen=True, slots=True)
class Expectation:
    discard: bool  #: no answer is the only right outcome
    any_answer: bool  #: any final answer is acceptable
    statuses: frozenset[int]  #: acceptable final statuses (when not any_answer)
    text: str

    def allows(self, status: int | None) -> bool:
        if status is None:
            return True  # dropping is always allowed
        if self.discard:
            return False
        return self.any_answer or status in self.statuses


def parse_expect(text: str) -> Expectation:
    """``reject-400-or-liberal-accept`` and its kin, as an :class:`Expectation`."""
    if text.strip() == "discard":
        return Expectation(True, False, frozenset(), text)
    statuses: set[int] = set()
    any_answer = False
    body = text.strip()
    if body.startswith("accept"):
        any_answer = True
    body = body.removeprefix("reject-")
    for alt in body.split("-or-"):
        alt = alt.strip()
        if alt.isdigit():
            statuses.add(int(alt))
        elif alt == "error":
            statuses.update(range(400, 700))
        else:  # liberal-accept, ignore-date, accept
            any_answer = True
    return Expectation(False, any_answer, frozenset(statuses), text)


def rewrite_via(data: bytes, probe: Probe) -> bytes:
    """The message with its top Via's transport and sent-by made the tester's.

    A branch longer than the bare magic cookie also gets a unique suffix: RFC 4475
    reuses branches across messages (``z9hG4bKkdjuw`` in several), and a target
    that rightly matches them as retransmissions of one transaction (§17.2.3)
    would answer the next message with the previous one's response.
    """
    host, port = probe.local
    sent_by = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}").encode()
    transport = probe.target[0].upper().encode()
    m = _VIA.search(data)
    if m is None:
        return data
    end = data.find(b"\r\n", m.end())
    end = len(data) if end < 0 else end
    rest = _BRANCH.sub(lambda b: b.group(0) + b"." + probe.tag().encode(), data[m.end():end],
                       count=1)
    return data[:m.start()] + m.group(1) + transport + m.group(3) + sent_by + rest + data[end:]


def _case_for(entry: dict[str, Any]) -> Case:
    name = str(entry["name"])
    expectation = parse_expect(str(entry["expect"]))

    async def run(probe: Probe, profile: Profile) -> Outcome:
        raw = _data(str(entry["file"]))
        is_request = not raw.lstrip(b"\r\n").upper().startswith(b"SIP/")
        data = rewrite_via(raw, probe) if is_request else raw
        call_id = call_id_of(data)
        branch_m = _BRANCH.search(data)
        branch = branch_m.group(0).split(b"=", 1)[1].strip().decode() if branch_m else None
        probe.divert_all = True  # answers may lack a Call-ID (insuf): match by branch too

        def answer(m: Message) -> bool:
            if not isinstance(m, Response) or m.status < 200:
                return False
            if branch is not None and m.via.branch == branch:
                return True
            return call_id is not None and m.call_id == call_id

        sent = probe.send_raw(data)
        window = min(profile.response_timeout, 2.0)
        final: Response | None = None
        final_at = 0.0
        got = await probe.expect(answer, window)
        if got is not None:
            assert isinstance(got.msg, Response)
            final, final_at = got.msg, got.at
        if final is not None and is_request:
            try:
                req = parse_message(data)
            except ParseError:
                req = None
            if isinstance(req, Request):
                await probe.finish(req, Exchange(req, sent, final, final_at))
        uri = uas_uri(profile)
        alive = await probe.alive(uri, timeout=max(profile.response_timeout, 2.0))
        said = f"{final.status} {final.reason}" if final is not None else "no answer"
        if not alive:
            return failed(f"the target stopped answering after this message ({said})")
        status = final.status if final is not None else None
        if not expectation.allows(status):
            return failed(f"answered {said}; RFC 4475 expects {expectation.text}")
        return passed(f"{said} (expected {expectation.text}); still alive")

    what = str(entry.get("what", ""))
    if len(what) > 110:
        what = what[:107].rsplit(" ", 1)[0] + "..."
    return Case(f"ROB-{name}", "4475", str(entry["section"]),
                f"{what} — expect {entry['expect']}, and the target survives",
                "robustness", ("role:uas",), run, budget=15.0)


def cases() -> list[Case]:
    """One case per message in the pack, in the RFC's order."""
    return [_case_for(e) for e in index() if in_pack(e)]
