"""Scenario mistakes that used to validate silently, and the steps that replace hacks.

Errors and warnings name file:line:col; the ``fail:`` step, the DTMF gap, the
retransmissions a record carries and response codes counted when they arrive run on
two in-memory UAs with a fake clock.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from sipload.cli import main
from sipload.scenario.loader import ScenarioError, load_text
from sipload.stats.records import Result
from tests.scenario_pair import SCENARIOS, ScenarioPair, program
from tests.test_scenario_features import CALL, UAS_ANSWER, one, pair
from tests.uapair import taking


def _error(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_text(text, "s.yaml")
    return info.value


# ---------------------------------------------------------------------- durations


@pytest.mark.parametrize(("text", "where"), [
    ("steps:\n  - send: INVITE\n  - pause: 3000\n", (3, 12)),
    ("steps:\n  - send: INVITE\n  - pause: '250'\n", (3, 12)),
    ("steps:\n  - pause: {uniform: [1, 500]}\n", (2, 26)),
    ("steps:\n  - send: INVITE\n  - recv: 200\n    timeout: 5000\n", (4, 14)),
    ("recv_timeout: 32000\nsteps:\n  - send: INVITE\n", (1, 15)),
    ("steps:\n  - dtmf: '1'\n    duration: 250\n", (3, 15)),
])
def test_a_bare_number_of_100_or_more_needs_a_unit(text: str, where: tuple[int, int]) -> None:
    e = _error(text)
    assert (e.line, e.column) == where, e
    assert "no unit" in e.message and "ms" in e.message and "SIPp" in e.message


def test_small_bare_numbers_and_units_stay_valid() -> None:
    prog = load_text("steps:\n  - send: INVITE\n  - pause: 3\n  - pause: 3000ms\n"
                     "  - pause: 99\n  - pause: 120s\n")
    assert [s.a for s in prog.steps[1:]] == [3.0, 3.0, 99.0, 120.0]  # type: ignore[union-attr]


# ---------------------------------------------------------------------- methods


def test_a_misspelt_method_warns_with_file_line_col_and_the_nearest() -> None:
    prog = load_text("steps:\n  - send: INVITE\n  - recv: 200\n  - send: INVTE\n", "s.yaml")
    assert len(prog.warnings) == 1
    w = prog.warnings[0]
    assert w.startswith("s.yaml:4:11: warning: ") and "INVTE" in w
    assert "did you mean 'INVITE'?" in w and "methods: [INVTE]" in w
    prog = load_text("role: uas\nsteps:\n  - recv: INVITE\n  - reply: 200\n"
                     "  - recv: BYEE\n", "u.yaml")
    assert [w.split(": warning")[0] for w in prog.warnings] == ["u.yaml:5:11"]


def test_declared_and_known_methods_do_not_warn() -> None:
    prog = load_text("methods: [PRIVATECOMMAND]\nsteps:\n  - send: INVITE\n"
                     "  - recv: 200\n  - send: PRIVATECOMMAND\n  - send: MESSAGE\n")
    assert prog.warnings == () and prog.methods == ("PRIVATECOMMAND",)
    prog = load_text("role: uas\nallow: [INVITE, ACK, BYE, PRIVATECOMMAND]\nsteps:\n"
                     "  - recv: PRIVATECOMMAND\n  - reply: 200\n")
    assert prog.warnings == ()


def test_the_library_loads_without_a_warning() -> None:
    for path in sorted(SCENARIOS.glob("*.yaml")):
        prog = load_text(path.read_text(encoding="utf-8"), str(path))
        assert prog.warnings == (), prog.warnings


def test_validate_prints_warnings_and_still_exits_0(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    f = tmp_path / "typo.yaml"
    f.write_text("steps:\n  - send: INVITE\n  - recv: 200\n  - send: INVTE\n")
    assert main(["validate", str(f)]) == 0
    out = capsys.readouterr()
    assert f"{f}:4:11: warning: send: INVTE" in out.err
    assert "1 warning(s)" in out.out


# ---------------------------------------------------------------------- timers, reachability


def test_stop_timer_without_start_timer_is_an_error() -> None:
    e = _error("steps:\n  - send: INVITE\n    start_timer: setup\n  - recv: 200\n"
               "    stop_timer: setpu\n")
    assert (e.line, e.column) == (5, 17)
    assert "stop_timer 'setpu' has no start_timer" in e.message
    assert "did you mean 'setup'?" in e.message


def test_steps_after_an_unconditional_goto_warn() -> None:
    prog = load_text("steps:\n  - send: INVITE\n  - recv: 200\n  - goto: end\n"
                     "  - send: BYE\n  - recv: 200\n  - label: end\n", "s.yaml")
    assert len(prog.warnings) == 1  # one warning for the run of two steps
    assert prog.warnings[0].startswith("s.yaml:5:5: warning: this 'send' step can never run")
    assert "unconditional 'goto'" in prog.warnings[0]


def test_steps_a_jump_reaches_do_not_warn() -> None:
    prog = load_text("steps:\n  - send: INVITE\n  - recv: 200\n    on: {486: busy}\n"
                     "  - send: ACK\n  - goto: end\n  - label: busy\n  - nop:\n"
                     "  - label: end\n  - goto: end2\n    when: {var: call_id, equals: x}\n"
                     "  - send: BYE\n  - label: end2\n")
    assert prog.warnings == ()


def test_steps_after_fail_warn() -> None:
    prog = load_text("steps:\n  - send: INVITE\n  - fail: gave_up\n  - send: BYE\n", "s.yaml")
    assert len(prog.warnings) == 1 and "follows a 'fail'" in prog.warnings[0]


# ---------------------------------------------------------------------- YAML


@pytest.mark.parametrize(("text", "hint"), [
    ("steps:\n  - send: INVITE\n    body: a: b\n", "needs quotes"),
    ("steps:\n\t- send: INVITE\n", "tab"),
    ("steps:\n  - send: INVITE\n   recv: 200\n", "indented"),
    ("name: 'abc\nsteps: []\n", "never closed"),
])
def test_yaml_mistakes_say_what_to_fix(text: str, hint: str) -> None:
    e = _error(text)
    assert e.line >= 1 and e.message.startswith("not valid YAML: ")
    assert hint in e.message and "the parser says" in e.message


# ---------------------------------------------------------------------- fail:


def test_fail_step_fails_the_call_with_its_reason_and_tears_it_down() -> None:
    sp = pair("steps:" + CALL
              + "  - fail: no_early_media\n    detail: 'answered on ${call_number}'\n")
    rec = one(sp.records)
    assert rec.result == Result.FAILED
    assert (rec.failure, rec.detail, rec.step) == ("no_early_media", "answered on 0", 6)
    assert [d[:4] for s, d in sp.pair.wire if s == "alice"][-1] == b"BYE "  # torn down
    assert rec.marks.get("answer") is not None


def test_fail_step_in_a_branch_only() -> None:
    uac = ("steps:" + CALL + "  - goto: bad\n    when: {var: call_number, equals: '1'}\n"
           "  - send: BYE\n  - recv: 200\n  - goto: end\n  - label: bad\n"
           "  - fail: odd_call\n  - label: end\n")
    sp = pair(uac, calls=2)
    by_number = {r.call_number: r for r in sp.records}
    assert by_number[0].result == Result.SUCCESS
    assert (by_number[1].result, by_number[1].failure) == (Result.FAILED, "odd_call")


def test_fail_reason_must_be_a_word() -> None:
    e = _error("steps:\n  - fail: 'two words'\n")
    assert e.line == 2


# ---------------------------------------------------------------------- dtmf


def _info_times(text: str) -> list[float]:
    uas = UAS_ANSWER.replace("  - recv: BYE\n", "  - recv: INFO\n  - reply: 200\n"
                             "  - recv: INFO\n  - reply: 200\n  - recv: INFO\n"
                             "  - reply: 200\n  - recv: BYE\n")
    sp = pair("steps:" + CALL + text + "  - send: BYE\n  - recv: 200\n", uas)
    rec = one(sp.records)
    assert rec.result == Result.SUCCESS, (rec.failure, rec.detail)
    return [t for t, d, label in rec.messages if d == "out" and label == "INFO"]


def test_dtmf_digits_are_spaced_by_duration_plus_50ms_by_default() -> None:
    times = _info_times("  - dtmf: '12#'\n")
    assert len(times) == 3
    gaps = [b - a for a, b in pairwise(times)]
    assert gaps == pytest.approx([0.300, 0.300], abs=1e-6)
    times = _info_times("  - dtmf: '12#'\n    duration: 100ms\n")
    assert [b - a for a, b in pairwise(times)] == \
        pytest.approx([0.150, 0.150], abs=1e-6)


def test_dtmf_gap_is_configurable() -> None:
    times = _info_times("  - dtmf: '12#'\n    gap: 1s\n")
    assert [b - a for a, b in pairwise(times)] == \
        pytest.approx([1.0, 1.0], abs=1e-6)


# ---------------------------------------------------------------------- retransmissions


def test_a_records_retransmissions_are_each_in_its_ladder() -> None:
    """The callee never sees the BYE: every retransmission the UA makes while the
    scenario waits is counted in the record and is a message of its own."""
    uac = "steps:" + CALL + "  - send: BYE\n  - recv: 200\n    timeout: 10s\n"
    sp = ScenarioPair(program(uac), program(UAS_ANSWER))
    byes: list[bytes] = []

    sp.pair.drop_to_bob = taking(b"BYE", byes)
    sp.run(calls=1, until=12.0)
    rec = one(sp.records)
    assert (rec.result, rec.failure) == (Result.FAILED, "timeout")
    re_sent = [(t, label) for t, d, label in rec.messages if d == "re"]
    bye_at = next(t for t, d, label in rec.messages if d == "out" and label == "BYE")
    # Timer E (RFC 3261 §17.1.2.2): 0.5, 1, 2, 4 s apart, so 4 within the 10 s wait
    assert [label for _, label in re_sent] == ["BYE"] * 4
    assert [round(t - bye_at, 3) for t, _ in re_sent] == [0.5, 1.5, 3.5, 7.5]
    assert rec.retransmissions == 4
    # the UA goes on until Timer F, after the record (the run's total counts those);
    # the failed call's teardown sent no second BYE
    assert len(byes) == 1 + sp.pair.alice.retransmissions and len(set(byes)) == 1
    assert [m[0] for m in rec.messages] == sorted(m[0] for m in rec.messages)
    assert "bye" not in rec.marks  # a retransmission is not an answer


def test_codes_are_counted_when_they_arrive() -> None:
    sp = pair("steps:" + CALL + "  - send: BYE\n  - recv: 200\n", calls=2)
    assert all(r.result == Result.SUCCESS for r in sp.records)
    got = sp.uac.take_codes()
    assert got == {"100": 2, "180": 2, "200": 4}
    assert sp.uac.take_codes() == {}
