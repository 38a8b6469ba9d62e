"""SRTP (SDES, RFC 4568) in whole runs: sipload calling sipload, on sockets.

* Both suites, caller and an echoing UAS scenario with ``srtp: sdes``: every packet
  goes through libsrtp both ways, the figures are clean, the records say which suite.
* ``sipload run`` with no target: the embedded default UAS answers SRTP by itself.
* A key changed on the way (a relay of the test's own rewrites the answer's
  ``inline:`` key, as a broken SBC might): the caller counts every packet from the
  callee as an authentication failure, receives nothing, and its media check fails
  the call saying so; the callee, whose key arrived intact, is unharmed.
* Bad crypto in answers and in offers: each call fails with a reason naming what is
  wrong, the run goes on, nothing crashes.
"""

from __future__ import annotations

import base64
import json
import re
import select
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

from tests.bgproc import Background, run, sipload
from tests.mediahelpers import (
    CLEAN_AUDIO,
    answer_per_call,
    call_each_answer,
    media_answer,
    media_call,
    read_records,
)
from tests.peers import LOOPBACK, free_port
from tests.test_scenario_features import CALL

CALLER = media_call("srtp-call", "{codec: PCMU, play: tone, srtp: sdes SUITES}", pause="2s",
                    check=CLEAN_AUDIO)

ECHO_UAS = media_answer("srtp-echo", "{echo: true, srtp: sdes}")

SUITE_BITS = {"AES_CM_128_HMAC_SHA1_80": 80, "AES_CM_128_HMAC_SHA1_32": 32}


def _caller(tmp_path: Path, suites: str = "") -> Path:
    path = tmp_path / "caller.yaml"
    path.write_text(CALLER.replace(" SUITES", f", srtp_suites: [{suites}]" if suites else ""))
    return path


@pytest.mark.timeout(120)
@pytest.mark.parametrize("suite", list(SUITE_BITS))
def test_sipload_calls_sipload_over_srtp(tmp_path: Path, suite: str) -> None:
    uas_port = free_port("udp")
    (tmp_path / "uas.yaml").write_text(ECHO_UAS)
    out, uas_out = tmp_path / "run", tmp_path / "uas"
    with Background(sipload("uas", tmp_path / "uas.yaml", "--listen", f"127.0.0.1:{uas_port}",
                            "--out", uas_out), ready="listening on") as uas:
        done = run(sipload("run", _caller(tmp_path, suite), "--target",
                           f"127.0.0.1:{uas_port}", "--calls", 3, "--rate", 5, "--out", out,
                           "--quiet"), timeout=90)
        uas.stop()
    assert done.returncode == 0, done.stdout + done.stderr + uas.output
    calls, answered = read_records(out), read_records(uas_out)
    assert len(calls) == 3 and len(answered) == 3
    for row in calls + answered:
        assert row["result"] == "success", row["detail"]
        assert row["media_srtp"] == SUITE_BITS[suite]
        assert row["media_received"] >= 70, row  # 2 s of 20 ms packets
        assert row["media_lost"] == 0 and row["media_malformed"] == 0
        assert row["media_srtp_auth_failures"] == 0 and row["media_srtp_replay_failures"] == 0
        assert row["media_mos"] > 4.3
    media = json.loads((out / "summary.json").read_text())["media"]
    assert media["srtp"] == {"streams": 3, "suites": {s: 3 if s == suite else 0
                                                      for s in SUITE_BITS},
                             "auth_failures": 0, "replay_failures": 0}
    assert "SRTP 3 streams, 0 auth failures" in (out / "report.html").read_text() or \
        "media-srtp" in (out / "report.html").read_text()


@pytest.mark.timeout(120)
def test_the_embedded_default_uas_answers_srtp(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run(sipload("run", _caller(tmp_path), "--calls", 2, "--rate", 5, "--out", out),
               timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SRTP 2 streams, 0 auth failures, 0 replays" in done.stdout
    for row in read_records(out):
        assert row["result"] == "success", row["detail"]
        assert row["media_srtp"] == 80 and row["media_received"] >= 70  # the first suite


class KeyChangingRelay:
    """A UDP relay in front of a SIP UAS that changes every ``inline:`` key in the
    responses it passes back (same length, so Content-Length stays right).

    Requests from the caller go on to the UAS from the relay's port; the UAS answers
    there (rport), and the relay returns the answers to the caller.  ACK and BYE go
    to the UAS's Contact directly, as they would past a stateless SBC.
    """

    KEY = re.compile(rb"inline:([A-Za-z0-9+/]{40})")

    def __init__(self, uas_port: int) -> None:
        self.uas = (LOOPBACK, uas_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        self.caller: tuple[str, int] | None = None
        self.changed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _wrong(self, m: re.Match[bytes]) -> bytes:
        key = base64.b64decode(m.group(1))
        self.changed += 1
        return b"inline:" + base64.b64encode(bytes(b ^ 0x5A for b in key))

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            data, addr = self.sock.recvfrom(65535)
            if addr == self.uas:
                if self.caller is not None:
                    self.sock.sendto(self.KEY.sub(self._wrong, data), self.caller)
            else:
                self.caller = addr
                self.sock.sendto(data, self.uas)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.mark.timeout(120)
def test_a_wrong_key_is_counted_and_fails_the_media_check(tmp_path: Path) -> None:
    uas_port = free_port("udp")
    (tmp_path / "uas.yaml").write_text(ECHO_UAS)
    out, uas_out = tmp_path / "run", tmp_path / "uas"
    with (Background(sipload("uas", tmp_path / "uas.yaml", "--listen",
                             f"127.0.0.1:{uas_port}", "--out", uas_out),
                     ready="listening on") as uas,
          KeyChangingRelay(uas_port) as relay):
        done = run(sipload("run", _caller(tmp_path), "--target", f"127.0.0.1:{relay.port}",
                           "--calls", 2, "--rate", 5, "--out", out, "--quiet"), timeout=90)
        uas.stop()
    assert relay.changed >= 2, "the relay changed no key"
    assert done.returncode == 1, done.stdout + done.stderr  # failed calls fail the run
    calls = read_records(out)
    assert len(calls) == 2
    for row in calls:
        assert row["failure"] == "media_failed", row
        # every packet the echo returned failed authentication here; none was received
        assert row["media_received"] == 0 and row["media_srtp_auth_failures"] >= 60, row
        # "<check name>: media: 0 packets received < 60 (packets refused: N failed SRTP ..."
        assert "media: 0 packets received < 60 (packets refused: " in row["detail"], row
        assert row["detail"].endswith(" failed SRTP authentication)"), row["detail"]
    for row in read_records(uas_out):  # the callee got the caller's key intact
        assert row["result"] == "success", row["detail"]
        assert row["media_received"] >= 70 and row["media_srtp_auth_failures"] == 0
    media = json.loads((out / "summary.json").read_text())["media"]
    assert media["srtp"]["auth_failures"] == sum(r["media_srtp_auth_failures"] for r in calls)
    assert media["received"] == 0


B64_30 = base64.b64encode(bytes(range(30))).decode()
B64_20 = base64.b64encode(bytes(20)).decode()

#: answers to our SRTP offer (tag 1 = _80, tag 2 = _32) that cannot key the stream
BAD_ANSWERS = {
    "no a=crypto": ("", "the RTP/SAVP answer has no a=crypto line"),
    "tag not offered": (f"a=crypto:9 AES_CM_128_HMAC_SHA1_80 inline:{B64_30}",
                        "tag 9 is not one we offered"),
    "suite changed": (f"a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:{B64_30}",
                      "our line 1 offered AES_CM_128_HMAC_SHA1_80"),
    "short key": (f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{B64_20}",
                  "key is 20 bytes; the suite needs 30"),
    "unknown suite": (f"a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:{B64_30}",
                      "suite AES_256_CM_HMAC_SHA1_80 is not one sipload uses"),
    "garbage": ("a=crypto:one two", "needs '<tag> <suite> inline:<key>'"),
    "plain RTP": ("", "answered RTP/AVP where ours is RTP/SAVP (it did not take SRTP)"),
}


def _answers_per_call(port: int) -> str:
    """A UAS that answers call N (its X-Case header) with the N-th of BAD_ANSWERS."""
    answers = []
    for name, (line, _) in BAD_ANSWERS.items():
        proto = "RTP/AVP" if name == "plain RTP" else "RTP/SAVP"
        answers.append("\n".join(["v=0", "o=peer 1 1 IN IP4 127.0.0.1", "s=-",
                                  "c=IN IP4 127.0.0.1", "t=0 0", f"m=audio {port} {proto} 0",
                                  "a=rtpmap:0 PCMU/8000", *([line] if line else [])]))
    return answer_per_call("bad-srtp-answers", answers)


@pytest.mark.timeout(120)
def test_answers_with_unusable_crypto_fail_each_call_with_the_reason(tmp_path: Path) -> None:
    caller = CALLER.replace(" SUITES", "").replace("pause: 2s", "pause: 200ms")
    done, rows = call_each_answer(tmp_path, _answers_per_call(free_port("udp")), caller,
                                  len(BAD_ANSWERS))
    assert done.returncode == 1, done.stdout + done.stderr
    assert len(rows) == len(BAD_ANSWERS)
    for (case, (_, reason)), row in zip(BAD_ANSWERS.items(), rows, strict=True):
        print(f"{case}: {row['detail']}")
        assert row["failure"] == "media_failed", (case, row)
        assert row["detail"].startswith("media: ") and reason in row["detail"], (case, row)
    # every call was still torn down: the callee got its ACK and BYE
    answered = read_records(tmp_path / "uas")
    assert len(answered) == len(BAD_ANSWERS)
    assert all(r["result"] == "success" for r in answered), [r["detail"] for r in answered]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["calls"]["failed"] == len(BAD_ANSWERS)


#: offers an SRTP UAS cannot key: (a=crypto line, what the reason says)
BAD_OFFERS = {
    "no a=crypto": ("", "has no a=crypto line"),
    "short key": (f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{B64_20}", "key is 20 bytes"),
    "unknown suite": (f"a=crypto:1 NULL_HMAC_SHA1_80 inline:{B64_30}",
                      "suite NULL_HMAC_SHA1_80 is not one sipload uses"),
    "not base64": ("a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:@@@@", "is not base64"),
    "unencrypted": (f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{B64_30} UNENCRYPTED_SRTP",
                    "UNENCRYPTED_SRTP is not supported"),
}


def _offers_per_call(expect: str) -> str:
    """A caller (no media of its own) that offers call N the N-th of BAD_OFFERS."""
    steps = ["name: bad-srtp-offers", "role: uac", "steps:"]
    for n in range(len(BAD_OFFERS)):
        steps += [f"  - goto: case{n}", f"    when: {{var: call_number, equals: '{n}'}}"]
    steps.append("  - fail: unknown_case")
    for n, (line, _) in enumerate(BAD_OFFERS.values()):
        sdp = ["v=0", "o=caller 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
               "m=audio 40000 RTP/SAVP 0", "a=rtpmap:0 PCMU/8000", *([line] if line else [])]
        steps += [f"  - label: case{n}", "  - send: INVITE", "    content_type: application/sdp",
                  "    body: |", *("      " + s for s in sdp), "  - goto: sent"]
    steps += ["  - label: sent", "  - recv: 100", "    optional: true", "  - recv: 180",
              "    optional: true", *expect.splitlines()]
    return "\n".join(steps) + "\n"


@pytest.mark.timeout(120)
def test_offers_with_unusable_crypto_are_refused_with_the_reason(tmp_path: Path) -> None:
    """The default UAS with --srtp answers each 488 with the reason in a Warning; a UAS
    scenario with srtp: sdes rejects the stream (port 0) and fails its call saying why."""
    warning = ["  - recv: 488", "    check:", "      - header: Warning",
               "        matches: '^399 sipload \"SRTP: '"]
    (tmp_path / "to_default.yaml").write_text(_offers_per_call("\n".join(warning)))
    port = free_port("udp")
    out = tmp_path / "default"
    with Background(sipload("uas", "--listen", f"127.0.0.1:{port}", "--srtp", "sdes"),
                    ready="listening on") as uas:
        done = run(sipload("run", tmp_path / "to_default.yaml", "--target", f"127.0.0.1:{port}",
                           "--calls", len(BAD_OFFERS), "--rate", 10, "--workers", 1,
                           "--trace", "all", "--out", out, "--quiet"), timeout=60)
        uas.stop()
    assert done.returncode == 0, done.stdout + done.stderr + uas.output
    assert f"{len(BAD_OFFERS)} SRTP offers refused (488)" in uas.output, uas.output
    import pyarrow.ipc as ipc

    with (out / "traces.arrows").open("rb") as f:
        traces = ipc.open_stream(f).read_all().to_pylist()
    warnings = sorted(
        (int(t["call_number"]), w.group(1).decode()) for t in traces
        if (w := re.search(rb"\r\nWarning: (.*)\r\n", bytes(t["data"]))) is not None)
    assert len(warnings) == len(BAD_OFFERS), warnings
    for (_, reason), (_, warned) in zip(BAD_OFFERS.values(), warnings, strict=True):
        assert reason in warned, warned

    answered = ["  - recv: 200", "  - send: ACK", "  - send: BYE", "  - recv: 200"]
    (tmp_path / "to_scenario.yaml").write_text(_offers_per_call("\n".join(answered)))
    (tmp_path / "uas.yaml").write_text(ECHO_UAS)
    port = free_port("udp")
    uas_out = tmp_path / "uas"
    with Background(sipload("uas", tmp_path / "uas.yaml", "--listen", f"127.0.0.1:{port}",
                            "--out", uas_out), ready="listening on") as uas:
        done = run(sipload("run", tmp_path / "to_scenario.yaml", "--target",
                           f"127.0.0.1:{port}", "--calls", len(BAD_OFFERS), "--rate", 10,
                           "--workers", 1, "--out", tmp_path / "scenario", "--quiet"),
                   timeout=60)
        uas.stop()
    rows = sorted(read_records(uas_out), key=lambda r: r["call_id"])
    assert len(rows) == len(BAD_OFFERS), done.stdout + done.stderr + uas.output
    details = sorted(r["detail"] for r in rows)
    for row in rows:
        assert row["failure"] == "media_failed", row
        assert row["detail"].startswith("media: SRTP: "), row["detail"]
    for _, reason in BAD_OFFERS.values():
        assert any(reason in d for d in details), (reason, details)


HOLD_CALLER = """
name: srtp-hold
role: uac
media: {codec: PCMU, play: tone, srtp: sdes}
steps:""" + CALL + """  - pause: 1s
  - send: INVITE
    body: {sdp: hold}
  - recv: 100
    optional: true
  - recv: 200
  - send: ACK
  - pause: 500ms
  - send: INVITE
    body: {sdp: resume}
  - recv: 100
    optional: true
  - recv: 200
  - send: ACK
  - pause: 1s
  - check:
      - media: {min_packets: 80}
  - send: BYE
  - recv: 200
"""

HOLD_ECHO = """
name: srtp-hold-echo
role: uas
media: {echo: true, srtp: sdes}
steps:
  - recv: INVITE
  - reply: 200
    body: {sdp: answer}
  - recv: ACK
  - recv: INVITE
  - reply: 200
    body: {sdp: answer}
  - recv: ACK
  - recv: INVITE
  - reply: 200
    body: {sdp: answer}
  - recv: ACK
  - recv: BYE
  - reply: 200
"""


@pytest.mark.timeout(120)
def test_hold_and_resume_keep_the_keys_and_the_stream(tmp_path: Path) -> None:
    """Re-INVITEs (hold, resume) re-offer the same a=crypto lines and keys; the answers
    keep theirs: the stream goes on under the same SRTP contexts, no packet refused."""
    import pyarrow.ipc as ipc

    uas_port = free_port("udp")
    (tmp_path / "uac.yaml").write_text(HOLD_CALLER)
    (tmp_path / "uas.yaml").write_text(HOLD_ECHO)
    out, uas_out = tmp_path / "run", tmp_path / "uas"
    with Background(sipload("uas", tmp_path / "uas.yaml", "--listen", f"127.0.0.1:{uas_port}",
                            "--out", uas_out), ready="listening on") as uas:
        done = run(sipload("run", tmp_path / "uac.yaml", "--target", f"127.0.0.1:{uas_port}",
                           "--calls", 2, "--rate", 5, "--trace", "all", "--out", out,
                           "--quiet"), timeout=90)
        uas.stop()
    assert done.returncode == 0, done.stdout + done.stderr + uas.output
    for row in read_records(out) + read_records(uas_out):
        assert row["result"] == "success", row["detail"]
        assert row["media_srtp"] == 80 and row["media_srtp_auth_failures"] == 0, row
        assert row["media_srtp_replay_failures"] == 0 and row["media_malformed"] == 0, row
    with (out / "traces.arrows").open("rb") as f:
        traces = ipc.open_stream(f).read_all().to_pylist()
    by_call: dict[int, dict[str, list[list[bytes]]]] = {}
    for t in traces:
        data = bytes(t["data"])
        lines = re.findall(rb"a=crypto:[^\r]*", data)
        if not lines:
            continue
        side = "offers" if data.startswith(b"INVITE") else "answers"
        by_call.setdefault(int(t["call_number"]), {}).setdefault(side, []).append(lines)
    assert len(by_call) == 2
    for call in by_call.values():
        assert len(call["offers"]) == 3 and len(call["answers"]) >= 3, call
        assert all(o == call["offers"][0] for o in call["offers"]), call["offers"]
        assert all(a == call["answers"][0] for a in call["answers"]), call["answers"]
