"""Run a UAC scenario against a UAS scenario on two in-memory user agents."""

from __future__ import annotations

import random
from pathlib import Path

from sipload.scenario.interpreter import RunContext, Runner
from sipload.scenario.loader import load_file, load_text
from sipload.scenario.model import Program
from sipload.stats.records import CallRecord
from tests.uapair import Pair

SCENARIOS = Path(__file__).parent.parent / "scenarios"


def program(name_or_text: str) -> Program:
    if "\n" in name_or_text:
        return load_text(name_or_text)
    return load_file(SCENARIOS / name_or_text)


class ScenarioPair:
    """alice runs the UAC program, bob the UAS program; a fake clock drives both."""

    def __init__(self, uac: Program, uas: Program, **bob_config: object) -> None:
        self.pair = Pair(**bob_config)
        a, b = self.pair.alice, self.pair.bob
        self.uac = Runner(uac, a, RunContext("127.0.0.1", 5071, "127.0.0.1", 5072,
                                             service="bob"), random.Random(1))
        self.uas = Runner(uas, b, RunContext("127.0.0.1", 5072, "127.0.0.1", 5071),
                          random.Random(2))
        self.records: list[CallRecord] = []
        self.uas_records: list[CallRecord] = []

    def pump(self) -> None:
        p = self.pair
        for _ in range(50):
            moved = p.transfer()
            n = 0
            while (e := p.alice.next_event()) is not None:
                self.uac.on_event(e, p.now)
                n += 1
            while (e := p.bob.next_event()) is not None:
                self.uas.on_event(e, p.now)
                n += 1
            if not moved and not n:
                break
        self.records.extend(self.uac.finished())
        self.uas_records.extend(self.uas.finished())

    def run(self, calls: int = 1, until: float = 120.0, step: float = 0.05) -> None:
        p = self.pair
        for n in range(calls):
            self.uac.start_call(n, p.now, p.now)
        self.pump()
        while p.now < until and (self.uac.active or self.uas.active):
            deadlines = [d for d in (p.alice.next_deadline(), p.bob.next_deadline(),
                                     self.uac.next_deadline(), self.uas.next_deadline())
                         if d is not None]
            nxt = min(deadlines) if deadlines else p.now + step
            p.now = max(p.now + 1e-6, min(nxt, until))
            p.alice.handle_timers(p.now)
            p.bob.handle_timers(p.now)
            self.uac.handle_timers(p.now)
            self.uas.handle_timers(p.now)
            self.pump()
