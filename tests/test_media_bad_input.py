"""Bad media input from a peer, end to end: counted in the call's record, never a crash.

A sipload UAS answers with an SDP written by the test.  In the first test it points
the caller's RTP at a socket of the test that plays a hostile far end: a valid stream
interleaved with malformed RTP (short, wrong version, padding lies, a CSRC count or
header extension beyond the packet) and malformed RTCP, plus packets of the same
stream from an address the SDP never named.  In the second, the answers leave no
usable stream (no m= line, a rejected or non-audio one, SRTP, only unknown codecs),
and a caller that asked for media fails with ``media_failed`` and a clear reason.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from sipload.media.rtp import build_rtp
from tests.bgproc import Background, sipload
from tests.impairment import _even_pair
from tests.mediahelpers import (
    answer_per_call,
    answer_with,
    call_each_answer,
    media_call,
    read_records,
)
from tests.peers import LOOPBACK, free_port

ANSWER_UAS = answer_with("answer-as-told", "ANSWER")

CALLER = media_call("caller-with-media", "{codec: PCMU, play: tone}", pause="PAUSE",
                    check="{min_packets: 40}", provisional=False)


def _sdp(port: int, mline: str = "m=audio {port} RTP/AVP 0\na=rtpmap:0 PCMU/8000") -> str:
    return ("v=0\no=peer 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
            + mline.format(port=port))


def _answer(port: int, mline: str = "m=audio {port} RTP/AVP 0\na=rtpmap:0 PCMU/8000") -> str:
    """The SDP, indented as ANSWER_UAS's body."""
    return _sdp(port, mline).replace("\n", "\n      ")


def _malformed_rtp(seq: int) -> list[bytes]:
    good = build_rtp(0, seq, seq * 160, 0xBADBAD, bytes(160))
    wrong_version = bytes([0x40]) + good[1:]
    padding_lie = bytes([good[0] | 0x20]) + good[1:-1] + bytes([200])
    csrc_beyond = bytes([0x8F]) + good[1:12] + bytes(8)  # 15 CSRCs announced, 2 present
    extension_beyond = bytes([0x90]) + good[1:12] + b"\xbe\xde\x00\x40" + bytes(8)
    return [b"\x80\x00\x01", wrong_version, padding_lie, csrc_beyond, extension_beyond]


def _malformed_rtcp() -> list[bytes]:
    receiver_report = struct.pack("!BBHI", 0x80, 201, 1, 0xBADBAD)
    return [b"\x81\xc9", bytes([0x40]) + receiver_report[1:],
            struct.pack("!BBHI", 0x80, 201, 40, 0xBADBAD)]  # length beyond the datagram


@pytest.mark.timeout(120)
def test_malformed_media_and_strangers_are_counted_in_the_record(tmp_path: Path) -> None:
    peer, peer_rtcp = _even_pair()
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind((LOOPBACK, 0))
    uas_port = free_port("udp")
    (tmp_path / "uas.yaml").write_text(ANSWER_UAS.replace("ANSWER",
                                                          _answer(peer.getsockname()[1])))
    (tmp_path / "uac.yaml").write_text(CALLER.replace("PAUSE", "2s"))
    out = tmp_path / "run"
    valid = malformed = foreign = unattributable = 0
    try:
        with Background(sipload("uas", tmp_path / "uas.yaml", "--listen",
                                f"127.0.0.1:{uas_port}"), ready="listening on"):
            caller = subprocess.Popen(sipload(
                "run", tmp_path / "uac.yaml", "--target", f"127.0.0.1:{uas_port}",
                "--calls", 1, "--workers", 1, "--out", out, "--quiet"),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                peer.settimeout(15)
                _, worker = peer.recvfrom(2048)  # sipload's RTP: where to send ours
                worker_rtcp = (worker[0], worker[1] + 1)
                bad_rtcp = _malformed_rtcp()
                for seq in range(60):
                    peer.sendto(build_rtp(0, seq, seq * 160, 0xBADBAD, bytes(160)), worker)
                    valid += 1
                    if seq % 5 == 4:
                        for packet in _malformed_rtp(seq):
                            peer.sendto(packet, worker)
                            malformed += 1
                    if seq % 10 == 9:
                        peer_rtcp.sendto(bad_rtcp[(seq // 10) % len(bad_rtcp)], worker_rtcp)
                        malformed += 1
                        # the call's stream from an address its SDP never named
                        stranger.sendto(build_rtp(0, 1000 + seq, 0, 0xBADBAD, bytes(160)),
                                        worker)
                        foreign += 1
                        # and a stream nobody announced: no call's, dropped by the worker
                        stranger.sendto(build_rtp(0, seq, 0, 0x5757, bytes(160)), worker)
                        unattributable += 1
                    time.sleep(0.02)
                output, _ = caller.communicate(timeout=60)
            finally:
                if caller.poll() is None:
                    caller.kill()
                    caller.wait(5)
    finally:
        for s in (peer, peer_rtcp, stranger):
            s.close()
    assert caller.returncode == 0, output
    (row,) = read_records(out)
    assert row["result"] == "success", row["detail"]
    assert row["media_received"] == valid
    assert row["media_lost"] == 0
    assert row["media_malformed"] == malformed == 66
    assert row["media_foreign"] == foreign == 6
    assert row["media_ssrc_changes"] == 0
    # packets of no call cannot be in a record: the workers count them for the summary
    media = json.loads((out / "summary.json").read_text())["media"]
    assert media["stray"] == unattributable == 6
    assert media["malformed"] == malformed and media["foreign"] == foreign
    page = (out / "report.html").read_text()
    assert '<th>stray (no call)</th><td class="n">6</td>' in page


SDP_ANSWERS = {
    "no m= line": "",
    "rejected": "m=audio 0 RTP/AVP 0",
    "video only": "m=video {port} RTP/AVP 96\na=rtpmap:96 VP8/90000",
    "SRTP": "m=audio {port} RTP/SAVP 0\na=rtpmap:0 PCMU/8000",
    "unknown codecs": "m=audio {port} RTP/AVP 18 98\na=rtpmap:18 G729/8000\n"
                      "a=rtpmap:98 opus/48000/2",
}


def _answer_per_call(port: int) -> str:
    """A UAS that answers call N (its X-Case header) with the N-th of SDP_ANSWERS."""
    return answer_per_call("bad-answers", [_sdp(port, m) for m in SDP_ANSWERS.values()])


@pytest.mark.timeout(120)
def test_an_answer_without_a_usable_stream_fails_the_call(tmp_path: Path) -> None:
    done, rows = call_each_answer(tmp_path, _answer_per_call(free_port("udp")),
                                  CALLER.replace("PAUSE", "200ms"), len(SDP_ANSWERS))
    assert done.returncode == 1, done.stdout + done.stderr  # failed calls fail the run
    assert len(rows) == len(SDP_ANSWERS)
    for case, row in zip(SDP_ANSWERS, rows, strict=True):
        assert row["result"] == "failed" and row["failure"] == "media_failed", (case, row)
        assert row["detail"].startswith("media: "), (case, row["detail"])
        print(f"{case}: {row['detail']}")
    # each names what is wrong with the answer
    reasons = ["no m= line", "rejected (port 0)", "m=video is not audio",
               "answered RTP/SAVP where ours is RTP/AVP", "offered: G729, opus"]
    for reason, row in zip(reasons, rows, strict=True):
        assert reason in row["detail"], row["detail"]
    # every call was torn down properly: the callee got its ACK and BYE
    answered = read_records(tmp_path / "uas")
    assert len(answered) == len(SDP_ANSWERS)
    assert all(r["result"] == "success" for r in answered), [r["detail"] for r in answered]
