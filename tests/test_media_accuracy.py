"""Media figures against known impairments: a relay of the test's own drops a known
share of the echoed packets (seeded) and delays the rest by a known random amount.

sipload's loss must equal the relay's count of drops (within the packets in flight
when the call hangs up) and its jitter the RFC 3550 jitter computed from the relay's
own send times (within 25 %).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bgproc import Background, run, sipload
from tests.impairment import ImpairmentRelay
from tests.mediahelpers import answer_with, media_call, read_records
from tests.peers import free_port

UAS = answer_with("answer-to-relay", "v=0\no=relay 1 1 IN IP4 127.0.0.1\ns=-\n"
                  "c=IN IP4 127.0.0.1\nt=0 0\nm=audio RELAY_PORT RTP/AVP 0\n"
                  "a=rtpmap:0 PCMU/8000\na=ptime:20")

UAC = media_call("media-through-impairment", "{codec: PCMU, play: tone}", pause="3s",
                 provisional=False)

LOSS = 0.1
MAX_DELAY = 0.04
PTIME = 0.02


@pytest.mark.timeout(120)
def test_loss_and_jitter_match_the_relay(tmp_path: Path) -> None:
    uas_port = free_port("udp")
    out = tmp_path / "run"
    (tmp_path / "uac.yaml").write_text(UAC)
    with ImpairmentRelay(loss=LOSS, max_delay=MAX_DELAY, seed=12) as relay:
        (tmp_path / "uas.yaml").write_text(UAS.replace("RELAY_PORT", str(relay.port)))
        with Background(sipload("uas", tmp_path / "uas.yaml", "--listen",
                                f"127.0.0.1:{uas_port}"), ready="listening on"):
            done = run(sipload("run", tmp_path / "uac.yaml", "--target",
                               f"127.0.0.1:{uas_port}", "--calls", 2, "--rate", 2, "--out", out,
                               "--quiet"), timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not relay.errors, relay.errors
    rows = sorted(read_records(out), key=lambda r: r["call_number"])
    streams = relay.in_order()
    assert len(rows) == 2 and len(streams) == 2
    in_flight = int(MAX_DELAY / PTIME) + 2  # held by the relay, or on the way, at BYE
    for row, stream in zip(rows, streams, strict=True):
        assert row["result"] == "success", row["detail"]
        sent = int(row["media_sent"])
        assert sent >= 140  # 3 s of 20 ms packets
        assert len(stream.sent) + len(stream.dropped) >= sent - in_flight
        # the seeded draw dropped about LOSS of them: the impairment really happened
        assert 0.04 < len(stream.dropped) / sent < 0.2, (len(stream.dropped), sent)
        assert abs(row["media_lost"] - len(stream.dropped)) <= in_flight, (
            row["media_lost"], stream.dropped)
        reference = stream.jitter_ms(int(row["media_received"]))
        assert reference > 5.0  # U(0, 40 ms) delays: about 13 ms
        assert abs(row["media_jitter_ms"] - reference) <= 0.25 * reference, (
            row["media_jitter_ms"], reference)
        assert row["media_out_of_order"] > 0  # delays up to 2 ptimes reorder packets
        assert row["media_mos"] < 4.0  # 10 % random loss costs G.711 about 27 R points
        print(f"call {row['call_number']}: sent {sent}, relay dropped {len(stream.dropped)}, "
              f"sipload lost {row['media_lost']:.0f}; jitter sipload "
              f"{row['media_jitter_ms']:.2f} ms, relay {reference:.2f} ms; "
              f"MOS {row['media_mos']:.2f}")
