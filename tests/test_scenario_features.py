"""What a scenario can say, one feature at a time (two UAs in memory, fake clock)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sipload.scenario.interpreter import RunContext, Runner
from sipload.scenario.loader import load_file, load_text
from sipload.scenario.messages import sample_pause
from sipload.scenario.model import PauseStep
from sipload.sip.parser import parse_message
from sipload.stats.records import CallRecord, Failure, Result
from tests.scenario_pair import ScenarioPair, program

UAS_ANSWER = """
role: uas
steps:
  - recv: INVITE
  - reply: 180
  - reply: 200
    body: {sdp: answer}
  - recv: ACK
  - recv: BYE
  - reply: 200
"""

CALL = """
  - send: INVITE
    body: {sdp: offer}
  - recv: 100
    optional: true
  - recv: 180
    optional: true
  - recv: 200
  - send: ACK
"""


def pair(uac: str, uas: str = UAS_ANSWER, calls: int = 1, **kw: object) -> ScenarioPair:
    sp = ScenarioPair(program(uac), program(uas), **kw)
    sp.run(calls=calls)
    return sp


def sent(sp: ScenarioPair, who: str, start: bytes) -> list[bytes]:
    return [d for s, d in sp.pair.wire if s == who and d.startswith(start)]


def one(records: list[CallRecord]) -> CallRecord:
    assert len(records) == 1, records
    return records[0]


def ok(records: list[CallRecord]) -> None:
    assert records and all(r.result == Result.SUCCESS for r in records), [
        (r.failure, r.detail, r.step) for r in records]


# ---------------------------------------------------------------------- sending


def test_any_request_with_header_and_body_overrides() -> None:
    sp = pair("role: uac\nsteps:\n" + CALL + """
  - send: XCUSTOM
    headers:
      User-Agent: custom-agent/1
      Max-Forwards: null
      X-Multi: [one, two]
      X-Number: 7
    content_type: text/plain;charset=utf-8
    body: "raw body ${call_number}"
  - recv: 200
  - send: BYE
  - recv: 200
""", UAS_ANSWER.replace("  - recv: BYE", "  - recv: XCUSTOM\n  - reply: 200\n"
                        "  - recv: BYE") + "allow: [XCUSTOM]\n")
    ok(sp.records)
    ok(sp.uas_records)
    (msg,) = sent(sp, "alice", b"XCUSTOM ")
    req = parse_message(msg)
    assert req.get("user-agent") == "custom-agent/1" and not req.has("max-forwards")
    assert req.get_all("x-multi") == ["one", "two"] and req.get("x-number") == "7"
    assert req.get("content-type") == "text/plain;charset=utf-8" and req.body == b"raw body 0"


def test_raw_sdp_body_and_sdp_by_name() -> None:
    raw = "v=0\\r\\no=x 1 1 IN IP4 ${media_ip}\\r\\ns=-\\r\\nc=IN IP4 ${media_ip}\\r\\n" \
          "t=0 0\\r\\nm=audio ${media_port} RTP/AVP 0\\r\\n"
    sp = pair(f'role: uac\nsteps:\n  - send: INVITE\n    body: "{raw}"\n  - recv: 200\n'
              "  - send: ACK\n  - send: BYE\n  - recv: 200\n")
    ok(sp.records)
    invite = parse_message(sent(sp, "alice", b"INVITE ")[0])
    assert invite.get("content-type") == "application/sdp"
    assert invite.body.startswith(b"v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\n")
    answer = parse_message(sent(sp, "bob", b"SIP/2.0 200")[0])
    assert b"m=audio 6000 RTP/AVP 0" in answer.body  # answered to the raw offer's codec


# ---------------------------------------------------------------------- receiving


@pytest.mark.parametrize("spec", ["[180, 183]", "180-189", "1xx", "180"])
def test_recv_a_code_a_set_a_range_a_class(spec: str) -> None:
    sp = pair(f"role: uac\nsteps:\n  - send: INVITE\n  - recv: 100\n    optional: true\n"
              f"  - recv: {spec}\n  - recv: 2xx\n  - send: ACK\n  - send: BYE\n  - recv: 200\n")
    ok(sp.records)


def test_recv_branches_on_code() -> None:
    uac = ("role: uac\nsteps:\n  - send: INVITE\n  - recv: 200\n    on: {486: busy, 4xx: other}\n"
           "  - send: ACK\n  - send: BYE\n  - recv: 200\n  - goto: end\n"
           "  - label: busy\n  - set: {outcome: busy}\n  - goto: end\n"
           "  - label: other\n  - set: {outcome: other}\n  - label: end\n")
    for code, outcome in ((486, "busy"), (404, "other")):
        sp = pair(uac, f"role: uas\nsteps:\n  - recv: INVITE\n  - reply: {code}\n")
        rec = one(sp.records)
        assert rec.result == Result.SUCCESS and rec.codes[-1] == code, outcome


def test_recv_timeout_fails_and_tears_the_call_down_with_cancel() -> None:
    sp = pair("role: uac\nsteps:\n  - send: INVITE\n  - recv: 180\n  - recv: 200\n"
              "    timeout: 2s\n",
              "role: uas\nsteps:\n  - recv: INVITE\n  - reply: 180\n  - recv: CANCEL\n")
    rec = one(sp.records)
    assert (rec.result, rec.failure, rec.detail, rec.step) == (
        Result.FAILED, Failure.TIMEOUT.value, "waiting for 200", 3)
    assert sent(sp, "alice", b"CANCEL ")
    ok(sp.uas_records)
    assert sp.pair.alice.call_count() == 0 and sp.pair.bob.call_count() == 0


def test_optional_recv_with_timeout_goes_on() -> None:
    sp = pair("role: uac\nsteps:\n  - send: OPTIONS\n  - recv: 200\n"
              "  - recv: 180\n    optional: true\n    timeout: 1s\n  - nop: null\n",
              "role: uas\nsteps:\n  - recv: OPTIONS\n  - reply: 200\n")
    ok(sp.records)


def test_recv_a_request_and_reply_any_status_headers_body() -> None:
    sp = pair("role: uac\nsteps:\n  - send: MESSAGE\n    body: ping\n  - recv: 202\n"
              "    check:\n      - {name: x-reply, header: X-Reply, equals: pong}\n"
              "      - {name: body, body: true, matches: '^pong 0$'}\n",
              "role: uas\nsteps:\n  - recv: MESSAGE\n  - reply: 202\n    reason: Taken\n"
              "    headers: {X-Reply: pong}\n    content_type: text/plain\n"
              "    body: 'pong ${call_number}'\n")
    ok(sp.records)
    (resp,) = sent(sp, "bob", b"SIP/2.0 202")
    assert resp.startswith(b"SIP/2.0 202 Taken\r\n")


def test_unexpected_message_fails_with_the_reason_and_cleans_up() -> None:
    sp = pair("role: uac\nsteps:\n  - send: INVITE\n  - recv: 183\n  - recv: 200\n"
              "  - send: ACK\n  - send: BYE\n  - recv: 200\n")
    rec = one(sp.records)
    assert (rec.failure, rec.detail, rec.step) == (Failure.UNEXPECTED.value,
                                                   "200 (expected 183)", 2)
    assert sent(sp, "alice", b"ACK ") and sent(sp, "alice", b"BYE ")  # torn down by state
    ok(sp.uas_records)
    assert sp.pair.alice.call_count() == 0 and sp.pair.bob.call_count() == 0


def test_rejection_is_call_rejected() -> None:
    sp = pair("role: uac\nsteps:\n  - send: INVITE\n  - recv: 200\n",
              "role: uas\nsteps:\n  - recv: INVITE\n  - reply: 503\n")
    rec = one(sp.records)
    assert (rec.failure, rec.detail) == (Failure.REJECTED.value,
                                         "503 Service Unavailable (expected 200)")


def test_rejection_detail_names_the_reason_phrase_and_why_headers() -> None:
    sp = pair("role: uac\nsteps:\n  - send: INVITE\n  - recv: 200\n",
              "role: uas\nsteps:\n  - recv: INVITE\n  - reply: 503\n    reason: Overloaded\n"
              "    headers:\n      Warning: '399 pbx \"<script>too busy\"'\n"
              "      Reason: 'Q.850;cause=34'\n      Retry-After: '30'\n")
    rec = one(sp.records)
    assert rec.detail == ('503 Overloaded; Warning: 399 pbx "<script>too busy"; '
                          "Reason: Q.850;cause=34; Retry-After: 30 (expected 200)")


def test_no_answer_at_all_is_max_retransmissions() -> None:
    sp = ScenarioPair(program("role: uac\nsteps:\n  - send: INVITE\n  - recv: 200\n"
                              "    timeout: 60s\n"), program(UAS_ANSWER))
    sp.pair.drop_to_bob = lambda data: True
    sp.run(calls=1)
    rec = one(sp.records)
    assert rec.failure == Failure.MAX_RETRANSMISSIONS.value and "timer B" in rec.detail
    assert rec.end == pytest.approx(32.0, abs=0.1)


def test_cannot_send_what_the_state_forbids() -> None:
    sp = pair("role: uac\nsteps:\n  - send: OPTIONS\n  - recv: 200\n  - send: ACK\n",
              "role: uas\nsteps:\n  - recv: OPTIONS\n  - reply: 200\n")
    rec = one(sp.records)
    assert rec.failure == Failure.CANNOT_SEND.value and rec.detail.startswith("ACK:")


def test_uas_check_failure_names_the_check_and_declines() -> None:
    sp = pair("role: uac\nsteps:\n  - send: INVITE\n  - recv: 200\n",
              "role: uas\nsteps:\n  - recv: INVITE\n    check:\n"
              "      - {name: wants-subject, header: Subject, present: true}\n  - reply: 200\n")
    uas = one(sp.uas_records)
    assert (uas.failure, uas.detail) == (Failure.CHECK_FAILED.value, "wants-subject")
    assert sent(sp, "bob", b"SIP/2.0 603")  # terminate while incoming: decline
    assert one(sp.records).detail == "603 Decline (expected 200)"


def test_peer_hangs_up_during_a_pause() -> None:
    sp = pair("role: uac\nsteps:\n" + CALL + "  - pause: 5s\n  - send: BYE\n  - recv: 200\n",
              UAS_ANSWER.replace("  - recv: BYE\n  - reply: 200\n", "  - send: BYE\n"
                                 "  - recv: 200\n"))
    rec = one(sp.records)
    assert rec.failure == Failure.UNEXPECTED.value
    assert rec.detail in ("BYE (expected 200)", "BYE: the call already ended (BYE received)")


# ---------------------------------------------------------------------- pauses


def test_pause_uniform_is_drawn_between_its_bounds() -> None:
    sp = pair("role: uac\nsteps:\n" + CALL + "  - pause:\n      uniform: [1s, 2s]\n"
              "  - send: BYE\n  - recv: 200\n", calls=3)
    ok(sp.records)
    for rec in sp.records:
        ack = next(t for t, d, lb in rec.messages if d == "out" and lb == "ACK")
        bye = next(t for t, d, lb in rec.messages if d == "out" and lb == "BYE")
        assert 1.0 <= bye - ack <= 2.0


class _Rng:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[float, ...]]] = []

    def uniform(self, a: float, b: float, /) -> float:
        self.calls.append(("uniform", (a, b)))
        return a

    def gauss(self, mu: float, sigma: float, /) -> float:
        self.calls.append(("gauss", (mu, sigma)))
        return -1.0

    def lognormvariate(self, mu: float, sigma: float, /) -> float:
        self.calls.append(("lognorm", (mu, sigma)))
        return 0.5

    def expovariate(self, lambd: float, /) -> float:
        self.calls.append(("expo", (lambd,)))
        return 0.25

    def randrange(self, stop: int, /) -> int:
        return 0


def test_pause_distributions() -> None:
    rng = _Rng()
    assert sample_pause(PauseStep(1, distribution="fixed", a=0.3), rng) == 0.3
    assert sample_pause(PauseStep(1, distribution="normal", a=1, b=2), rng) == 0.0  # clipped
    assert sample_pause(PauseStep(1, distribution="exponential", a=2.0), rng) == 0.25
    assert sample_pause(PauseStep(1, distribution="lognormal", a=1.0, b=0.5), rng) == 0.5
    name, (mu, sigma) = rng.calls[-1]
    assert name == "lognorm" and sigma == pytest.approx(0.4724, abs=1e-4)
    assert mu == pytest.approx(-0.1116, abs=1e-4)  # so that the pause's mean is 1 s
    assert ("expo", (0.5,)) in rng.calls
    prog = load_text("steps:\n  - pause: {lognormal: {mean: 2s, stddev: 500ms}}\n"
                     "  - pause: {exponential: 100ms}\n  - pause: {normal: {mean: 1s, "
                     "stddev: 10ms}}\n  - pause: 1.5m\n")
    assert [(s.distribution, s.a, s.b) for s in prog.steps if isinstance(s, PauseStep)] == [
        ("lognormal", 2.0, 0.5), ("exponential", 0.1, 0.0), ("normal", 1.0, 0.01),
        ("fixed", 90.0, 0.0)]


# ---------------------------------------------------------------------- control flow


def test_bounded_loop_with_goto_max_and_when() -> None:
    sp = pair("role: uac\nsteps:\n  - label: top\n  - send: OPTIONS\n  - recv: 200\n"
              "  - goto: top\n    max: 3\n  - set: {mode: fast}\n"
              "  - goto: skip\n    when: {var: mode, equals: slow}\n"
              "  - send: OPTIONS\n  - recv: 200\n  - label: skip\n"
              "  - goto: end\n    when: {var: mode, matches: '^f'}\n"
              "  - send: OPTIONS\n  - recv: 200\n  - label: end\n",
              "role: uas\nsteps:\n  - recv: OPTIONS\n  - reply: 200\n")
    ok(sp.records)
    assert len(sent(sp, "alice", b"OPTIONS ")) == 5  # 1 + 3 loops, +1 (not skipped)


def test_timing_marks_named_and_automatic() -> None:
    sp = pair("role: uac\nsteps:\n  - nop: null\n    start_timer: setup\n" + CALL
              + "  - pause: 1s\n    \n  - nop: null\n    stop_timer: setup\n"
              "  - send: BYE\n    start_timer: hangup\n  - recv: 200\n    stop_timer: hangup\n")
    rec = one(sp.records)
    ok([rec])
    assert rec.marks["setup"] == pytest.approx(1.0, abs=0.01)
    assert set(rec.marks) >= {"setup", "hangup", "first_provisional", "pdd", "answer", "bye",
                              "call"}


# ---------------------------------------------------------------------- captures, checks, vars


def test_captures_from_header_body_and_uri_feed_later_messages() -> None:
    sp = pair("role: uac\nsteps:\n  - send: INVITE\n    request_uri: 'sip:room42@${target}'\n"
              "    body: {sdp: offer}\n  - recv: 180\n    optional: true\n  - recv: 200\n"
              "    capture:\n"
              "      - {var: tag, header: To, regex: 'tag=([^;>]+)', required: true}\n"
              "      - {var: origin, body: true, regex: '(?m)^o=(\\S+)'}\n"
              "      - {var: absent, header: X-None, regex: '.*'}\n"
              "  - send: ACK\n  - send: BYE\n    headers:\n      X-Tag: '${tag}'\n"
              "      X-Origin: '${origin}'\n      X-Absent: '[${absent}]'\n  - recv: 200\n",
              UAS_ANSWER.replace("  - recv: INVITE\n", "  - recv: INVITE\n    capture:\n"
                                 "      - {var: room, uri: true, regex: 'sip:room([0-9]+)@'}\n")
              .replace("  - reply: 180\n", "  - reply: 180\n    headers: {X-Room: '${room}'}\n"))
    ok(sp.records)
    bye = parse_message(sent(sp, "alice", b"BYE ")[0])
    assert bye.get("x-tag") == bye.to_tag and bye.get("x-origin") == "sipload"
    assert bye.get("x-absent") == "[]"
    assert b"X-Room: 42\r\n" in sent(sp, "bob", b"SIP/2.0 180")[0]


def test_required_capture_and_checks_fail_with_their_names() -> None:
    base = "role: uac\nsteps:\n  - send: OPTIONS\n  - recv: 200\n"
    uas = "role: uas\nsteps:\n  - recv: OPTIONS\n  - reply: 200\n    body: hello\n"
    cases = {
        "    capture: [{var: x, header: X-None, regex: '.', required: true}]\n": "capture x",
        "    check: [{name: no-allow, header: Allow, absent: true}]\n": "no-allow",
        "    check: [{name: agent, header: Server, matches: '^nothing'}]\n": "agent",
        "    check: [{name: body-is, body: true, equals: 'bye'}]\n": "body-is",
        "    check: [{header: X-Missing, present: true}]\n": "X-Missing",
    }
    for extra, name in cases.items():
        rec = one(pair(base + extra, uas).records)
        assert (rec.failure, rec.detail) == (Failure.CHECK_FAILED.value, name), extra
    ok(pair(base + "    check:\n      - {name: body, body: true, present: true}\n"
            "      - {name: server, header: Server, equals: sipload}\n", uas).records)


def test_keywords_in_headers_uri_and_body() -> None:
    sp = pair("role: uac\nsteps:\n  - send: OPTIONS\n    headers:\n"
              "      X-Where: '${local_host}:${local_port} ${remote_host}:${remote_port}'\n"
              "      X-Target: '${target} ${transport} ${service} ${call_number}'\n"
              "  - recv: 200\n  - send: MESSAGE\n    request_uri: 'sip:${service}@${target}'\n"
              "    headers:\n      X-Prev-Branch: '${branch}'\n      X-Prev-CSeq: '${cseq}'\n"
              "      X-Call-ID: '${call_id}'\n      X-Last: '${last_status} ${last_method}'\n"
              "      X-Server: '${last.Server}'\n"
              "    body: 'worker ${worker} pid ${pid} media ${media_ip}:${media_port}'\n"
              "  - recv: 200\n",
              "role: uas\nsteps:\n  - recv: OPTIONS\n  - reply: 200\n  - recv: MESSAGE\n"
              "  - reply: 200\n")
    ok(sp.records)
    opt = parse_message(sent(sp, "alice", b"OPTIONS ")[0])
    msg = parse_message(sent(sp, "alice", b"MESSAGE ")[0])
    assert opt.get("x-where") == "127.0.0.1:5071 127.0.0.1:5072"
    assert opt.get("x-target") == "127.0.0.1:5072 udp bob 0"
    assert msg.uri_text == "sip:bob@127.0.0.1:5072"
    assert msg.get("x-prev-branch") == opt.via.branch
    assert msg.get("x-prev-cseq") == str(opt.cseq.seq)
    assert msg.get("x-call-id") == opt.call_id  # the first Call-ID the call used
    assert msg.get("x-last") == "200 OPTIONS" and msg.get("x-server") == "sipload"
    assert msg.body.startswith(b"worker 0 pid ") and msg.body.endswith(b" media 127.0.0.1:6000")


def test_dialog_tags_and_last_headers() -> None:
    sp = pair("role: uac\nsteps:\n" + CALL + "  - send: INFO\n    headers:\n"
              "      X-Tags: '${local_tag}/${remote_tag}'\n  - recv: 200\n  - send: BYE\n"
              "  - recv: 200\n",
              UAS_ANSWER.replace("  - recv: BYE", "  - recv: INFO\n  - reply: 200\n"
                                 "  - recv: BYE"))
    ok(sp.records)
    info = parse_message(sent(sp, "alice", b"INFO ")[0])
    assert info.get("x-tags") == f"{info.from_tag}/{info.to_tag}"


@pytest.mark.parametrize("order", ["SEQUENTIAL", "RANDOM", "USER"])
def test_csv_injection_fields(order: str, tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text(f"{order}\n# users\nalice;1;\nbob;2;\ncarol;3;\n")
    (tmp_path / "uac.yaml").write_text(
        "inject: rows.csv\nvariables: {field1: default}\nsteps:\n  - send: OPTIONS\n"
        "    headers: {X-User: '${field0}-${field1}'}\n  - recv: 200\n")
    prog = load_file(tmp_path / "uac.yaml")
    assert prog.injection is not None and prog.injection.order == order
    sp = ScenarioPair(prog, program("role: uas\nsteps:\n  - recv: OPTIONS\n  - reply: 200\n"))
    sp.run(calls=4)
    ok(sp.records)
    users = [parse_message(d).get("x-user") for d in sent(sp, "alice", b"OPTIONS ")]
    rows = ["alice-1", "bob-2", "carol-3"]
    if order == "RANDOM":
        assert set(users) <= set(rows)
    elif order == "SEQUENTIAL":
        assert users == rows + rows[:1]
    else:  # USER: a call placed by no user gets no row (SIPp: user 0), only defaults
        assert users == ["-default"] * 4


def test_csv_injection_user_order_one_row_per_user(tmp_path: Path) -> None:
    """SIPp's USER order: the row is the user's, whatever the call's number."""
    (tmp_path / "rows.csv").write_text("USER\nalice;1\nbob;2\ncarol;3\n")
    (tmp_path / "uac.yaml").write_text(
        "inject: rows.csv\nsteps:\n  - send: OPTIONS\n"
        "    headers: {X-User: '${field0}-${field1}'}\n  - recv: 200\n")
    sp = ScenarioPair(load_file(tmp_path / "uac.yaml"),
                      program("role: uas\nsteps:\n  - recv: OPTIONS\n  - reply: 200\n"))
    for number, user in enumerate([2, 0, 2, 1, 1]):
        sp.uac.start_call(number, sp.pair.now, sp.pair.now, user)
    sp.pump()
    ok(sp.records)
    users = [parse_message(d).get("x-user") for d in sent(sp, "alice", b"OPTIONS ")]
    assert users == ["carol-3", "alice-1", "carol-3", "bob-2", "bob-2"]


# ---------------------------------------------------------------------- dialogs and legs


def test_terminate_is_state_aware() -> None:
    sp = pair("role: uac\nsteps:\n" + CALL + "  - terminate: true\n")
    ok(sp.records)
    assert sent(sp, "alice", b"BYE ")  # confirmed: BYE
    sp = pair("role: uac\nsteps:\n  - send: INVITE\n  - recv: 603\n",
              "role: uas\nsteps:\n  - recv: INVITE\n  - terminate: true\n")
    ok(sp.records)
    ok(sp.uas_records)  # incoming: declined with 603


def test_register_then_wait_for_a_call() -> None:
    sp = pair("role: uac\nsteps:\n  - send: REGISTER\n    leg: reg\n  - recv: 200\n    leg: reg\n"
              "  - recv: INVITE\n  - reply: 180\n  - reply: 200\n    body: {sdp: answer}\n"
              "  - recv: ACK\n  - recv: BYE\n  - reply: 200\n",
              "role: uas\nsteps:\n  - recv: REGISTER\n  - reply: 200\n"
              "    headers: {Contact: '${last.Contact};expires=60'}\n"
              "  - send: INVITE\n    leg: call\n    to: 'sip:alice@${remote_host}:${remote_port}'\n"
              "    body: {sdp: offer}\n  - recv: 180\n    leg: call\n    optional: true\n"
              "  - recv: 200\n    leg: call\n  - send: ACK\n    leg: call\n"
              "  - send: BYE\n    leg: call\n  - recv: 200\n    leg: call\n", calls=2)
    ok(sp.records)
    ok(sp.uas_records)
    assert len(sp.uas_records) == 2


def test_a_reply_after_prack_answers_the_invite() -> None:
    sp = pair("role: uac\nsteps:\n  - send: INVITE\n    headers: {Require: 100rel}\n"
              "  - recv: 183\n  - recv: 200\n  - send: ACK\n  - send: BYE\n  - recv: 200\n",
              "role: uas\nsteps:\n  - recv: INVITE\n  - reply: 183\n  - recv: PRACK\n"
              "  - reply: 200\n  - recv: ACK\n  - recv: BYE\n  - reply: 200\n")
    ok(sp.records)
    ok(sp.uas_records)


def test_stop_all_records_calls_in_flight_and_tears_them_down() -> None:
    sp = ScenarioPair(program("role: uac\nsteps:\n  - send: INVITE\n  - recv: 200\n"
                              "    timeout: 60s\n"),
                      program("role: uas\nsteps:\n  - recv: INVITE\n  - reply: 180\n"
                              "  - recv: CANCEL\n    timeout: 60s\n"))
    for n in range(3):
        sp.uac.start_call(n, 0.0, 0.0)
    sp.pump()
    sp.uac.stop_all(1.0)
    recs = sp.uac.finished()
    assert [r.result for r in recs] == [Result.IN_FLIGHT] * 3
    sp.pump()
    assert len(sent(sp, "alice", b"CANCEL ")) == 3


def test_runner_api_with_a_plain_random() -> None:
    """The engine's surface: Runner(program, ua, ctx, rng, injection)."""
    sp = ScenarioPair(program("basic_call.yaml"), program("basic_call_uas.yaml"))
    runner = Runner(program("basic_call.yaml"), sp.pair.alice,
                    RunContext("127.0.0.1", 5071, "127.0.0.1", 5072), random.Random(3))
    assert runner.active == 0 and runner.next_deadline() is None and runner.finished() == []


def test_per_call_credentials_from_csv(tmp_path: Path) -> None:
    """Each call registers as its CSV row's user; the UA picks credentials by From user."""
    (tmp_path / "users.csv").write_text("SEQUENTIAL\nalice;alice-pw\nbob;bob-pw\n")
    (tmp_path / "uac.yaml").write_text(
        "inject: users.csv\nfrom: 'sip:${field0}@${local_host}'\n"
        "credentials: {username: '${field0}', password: '${field1}'}\n"
        "steps:\n  - send: REGISTER\n  - recv: 200\n")
    (tmp_path / "uas.yaml").write_text(
        "role: uas\ninject: users.csv\n"
        "credentials: {username: '${field0}', password: '${field1}', realm: test}\n"
        "steps:\n  - recv: REGISTER\n  - reply: 401\n    challenge: true\n"
        "  - recv: REGISTER\n    authenticate: true\n  - reply: 200\n")
    sp = ScenarioPair(load_file(tmp_path / "uac.yaml"), load_file(tmp_path / "uas.yaml"))
    sp.run(calls=2)
    ok(sp.records)
    ok(sp.uas_records)
    auth = [parse_message(d).get("authorization") or ""
            for d in sent(sp, "alice", b"REGISTER ")]
    assert [a.split('username="')[1].split('"')[0] for a in auth if a] == ["alice", "bob"]


def test_the_peers_session_refresh_is_answered_without_the_scenario() -> None:
    """bob grants a 90 s session and refreshes it itself (RFC 4028); alice's scenario,
    pausing 100 s, never mentions it and still succeeds."""
    sp = pair("role: uac\nsteps:\n" + CALL + "  - pause: 100s\n  - send: BYE\n  - recv: 200\n",
              UAS_ANSWER.replace("  - recv: BYE\n", "  - recv: BYE\n    timeout: 200s\n"),
              session_expires=90)
    ok(sp.records)
    ok(sp.uas_records)
    refreshes = [d for s, d in sp.pair.wire if s == "bob" and
                 (d.startswith(b"INVITE ") or d.startswith(b"UPDATE "))]
    assert refreshes  # the first at 45 s
    assert any("session refresh" in label for _, _, label in sp.records[0].messages)


@pytest.mark.parametrize("ip", ["127.0.0.1", "::1", "192.0.2.10"])
@pytest.mark.parametrize("session_id", [0, 1, 4711, 2**62 + 3])
def test_default_offer_is_the_built_offer(ip: str, session_id: int) -> None:
    """The spliced per-call offer is byte for byte what the SDP builder makes."""
    from sipload.scenario.messages import default_offer
    from sipload.sip import sdp

    built = sdp.build_audio_offer(ip, 6000, session_id=session_id, username="sipload")
    desc, data = default_offer(ip, 6000, session_id)
    assert data == built.to_bytes()
    assert desc.to_bytes() == data
    assert sdp.parse_sdp(data).origin.sess_id == session_id
    # deriving from it (hold) leaves the shared template alone
    held = sdp.hold(desc)
    assert held.media_direction(0) == "sendonly"
    assert desc.media_direction(0) == "sendrecv"
    assert default_offer(ip, 6000, session_id)[1] == data
