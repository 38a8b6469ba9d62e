"""A runner keeps nothing of a call once it ended (two UAs in memory, fake clock).

A load run's memory must not grow with the calls it has finished: each call's
instance, legs, record and messages go when it ends.  Runs without RTP are the
common case; the offer/answer bookkeeping of media must not hold their calls.
"""

from __future__ import annotations

import gc

from sipload.scenario.calls import CallInstance
from tests.scenario_pair import ScenarioPair, program

LATE_OFFER_UAC = """
role: uac
steps:
  - send: INVITE
  - recv: 200
  - send: ACK
    body: {sdp: answer}
  - send: BYE
  - recv: 200
"""

LATE_OFFER_UAS = """
role: uas
steps:
  - recv: INVITE
  - reply: 200
    body: {sdp: offer}
  - recv: ACK
  - recv: BYE
  - reply: 200
"""


BUSY_UAS = "role: uas\nsteps:\n  - recv: INVITE\n  - reply: 486\n"
SILENT_UAS = "role: uas\nsteps:\n  - recv: INVITE\n  - pause: 100s\n"


def live_instances() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, CallInstance))


def run(uac: str, uas: str, calls: int) -> ScenarioPair:
    sp = ScenarioPair(program(uac), program(uas))
    sp.run(calls=calls)
    assert [r.result.value for r in sp.records] == ["success"] * calls
    assert [r.result.value for r in sp.uas_records] == ["success"] * calls
    return sp


def test_ended_calls_without_rtp_leave_nothing_behind() -> None:
    before = live_instances()
    # early offer (the answer comes in the 200: the UAC completes the exchange) and
    # late offer (the answer comes in the ACK: the UAS completes it)
    for uac, uas in (("basic_call.yaml", "basic_call_uas.yaml"),
                     (LATE_OFFER_UAC, LATE_OFFER_UAS)):
        sp = run(uac, uas, calls=20)
        assert not sp.uac.media.pending and not sp.uas.media.pending
        assert sp.uac.active == 0 and sp.uas.active == 0
        assert live_instances() == before, "ended calls are still held"


def test_failed_calls_leave_nothing_behind_once_their_timers_ran() -> None:
    before = live_instances()
    for uas, failure in ((BUSY_UAS, "call_rejected"), (SILENT_UAS, "timeout")):
        sp = ScenarioPair(program("basic_call.yaml"), program(uas))
        sp.run(calls=5, until=300.0)
        assert [(r.result.value, r.failure) for r in sp.records] == [("failed", failure)] * 5
        p = sp.pair
        p.now += 100.0  # past every transaction's last timer (64*T1)
        for ua in (p.alice, p.bob):
            ua.handle_timers(p.now)
        sp.uac.handle_timers(p.now)
        sp.uas.handle_timers(p.now)
        sp.pump()
        assert sp.uac.active == 0 and sp.uas.active == 0
        index = sp.uac.index
        assert not (index.by_cid or index.by_rid or index.by_tid or index.by_callid)
        assert not (p.alice.state.tx or p.alice.state.calls)
        assert not (p.bob.state.tx or p.bob.state.calls)
        assert live_instances() == before, "ended calls are still held"
