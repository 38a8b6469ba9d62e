"""SRTP with SDES keys, sans-IO: a=crypto lines, the offer/answer, libsrtp streams, two
media tables talking in memory (a caller and an echo), and the default UAS's SRTP echo.

The whole-run tests (sockets, a sipload UAS, a key changed on the way) are in
tests/test_srtp_run.py.
"""

from __future__ import annotations

import base64
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipload.media import sdes
from sipload.media.negotiate import MediaPlanError, StreamPlan, plan_stream
from sipload.media.rtp import build_rtp, parse_rtp
from sipload.media.srtp import SrtpStream
from sipload.media.srtpecho import SrtpEcho
from sipload.media.table import MediaSpec, MediaTable
from sipload.sip import sdp

KEY_A = bytes(range(30))
KEY_B = bytes(range(100, 130))
B64_A = base64.b64encode(KEY_A).decode()
B64_B = base64.b64encode(KEY_B).decode()
S80, S32 = "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"


# -- a=crypto lines (RFC 4568 §9.1) ------------------------------------------------------

def test_a_line_parses_with_lifetime_and_session_parameters() -> None:
    c = sdes.parse_crypto(f"1 {S80} inline:{B64_A}|2^20 WSH=64")
    assert (c.tag, c.suite, c.key, c.lifetime, c.mki, c.params) == (
        1, S80, KEY_A, "2^20", "", ("WSH=64",))
    assert sdes.usable(c, sdes.DEFAULT_SUITES).tag_bits == 80
    assert sdes.parse_crypto(c.value()).key == KEY_A  # what we write reads back
    mki = sdes.parse_crypto(f"7 {S32} inline:{B64_A}|1048576|1:4")
    assert (mki.lifetime, mki.mki) == ("1048576", "1:4")
    only_mki = sdes.parse_crypto(f"7 {S32} inline:{B64_A}|1:4")
    assert (only_mki.lifetime, only_mki.mki) == ("", "1:4")


@pytest.mark.parametrize(("value", "reason"), [
    ("", "needs '<tag> <suite> inline:<key>'"),
    (f"1 {S80}", "needs '<tag> <suite> inline:<key>'"),
    (f"x1 {S80} inline:{B64_A}", "tag 'x1' is not 1-9 digits"),
    (f"1234567890 {S80} inline:{B64_A}", "is not 1-9 digits"),
    (f"1 AES-CM inline:{B64_A}", "is not a suite name"),
    (f"1 {S80} key:{B64_A}", "is not 'inline:<key||salt>'"),
    (f"1 {S80} {B64_A}", "is not 'inline:<key||salt>'"),
    (f"1 {S80} inline:{B64_A};inline:{B64_B}", "several keys"),
    (f"1 {S80} inline:!!notbase64!!", "is not base64"),
    (f"1 {S80} inline:", "is not base64"),
    (f"1 {S80} inline:{B64_A}|soon", "neither a lifetime nor an MKI"),
    (f"1 {S80} inline:{B64_A}|1:x", "MKI '1:x'"),
    (f"1 {S80} inline:{B64_A}|2^20|1:4|9", "more than a lifetime and an MKI"),
])
def test_malformed_lines_say_what_is_wrong(value: str, reason: str) -> None:
    with pytest.raises(sdes.CryptoError, match=reason.replace("^", r"\^")
                       .replace("(", r"\(").replace("|", r"\|")):
        sdes.parse_crypto(value)


@pytest.mark.parametrize(("value", "reason"), [
    (f"1 AES_256_CM_HMAC_SHA1_80 inline:{B64_A}", "suite AES_256_CM_HMAC_SHA1_80 is not one"),
    (f"1 F8_128_HMAC_SHA1_80 inline:{B64_A}", "is not one sipload uses"),
    (f"1 {S80} inline:{base64.b64encode(bytes(20)).decode()}", "key is 20 bytes; the suite "
                                                               "needs 30"),
    (f"1 {S32} inline:{base64.b64encode(bytes(46)).decode()}", "key is 46 bytes"),
    (f"1 {S80} inline:{B64_A}|2^20|1:4", "has an MKI"),
    (f"1 {S80} inline:{B64_A} UNENCRYPTED_SRTP", "UNENCRYPTED_SRTP is not supported"),
    (f"1 {S80} inline:{B64_A} KDR=24", "KDR=24 is not supported"),
    (f"1 {S80} inline:{B64_A} FEC_ORDER=FEC_SRTP", "FEC_ORDER"),
])
def test_lines_sipload_cannot_use_say_why(value: str, reason: str) -> None:
    with pytest.raises(sdes.CryptoError, match=reason):
        sdes.usable(sdes.parse_crypto(value), sdes.DEFAULT_SUITES)


def test_a_suite_left_out_by_the_scenario_is_not_used() -> None:
    line = sdes.parse_crypto(f"1 {S80} inline:{B64_A}")
    with pytest.raises(sdes.CryptoError, match=r"not one sipload uses \(AES_CM_128_HMAC_SHA1_32\)"):
        sdes.usable(line, (S32,))


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789 :|;^=_+/AES_CMinlH\x00\t")), max_size=80)
       | st.text(max_size=60))
def test_any_line_parses_or_raises_crypto_error(value: str) -> None:
    """The fuzz invariant: a far end's a=crypto value never raises anything else."""
    try:
        crypto = sdes.parse_crypto(value)
    except sdes.CryptoError:
        return
    try:
        sdes.usable(crypto, sdes.DEFAULT_SUITES)
    except sdes.CryptoError:
        pass


# -- offer and answer ------------------------------------------------------------------

def _offer(lines: list[str], proto: str = sdes.SAVP, port: int = 40000) -> sdp.SessionDescription:
    desc = sdp.build_audio_offer("127.0.0.1", port, session_id=1, codecs=("PCMU",), proto=proto)
    desc.media[0].attributes += [("crypto", v) for v in lines]
    return desc


def test_the_answer_takes_the_offerers_first_usable_line() -> None:
    offered = [f"1 AES_256_CM_HMAC_SHA1_80 inline:{B64_A}",  # unknown to us: skipped
               f"2 {S32} inline:{B64_A}", f"3 {S80} inline:{B64_B}"]
    chosen = sdes.choose(offered, sdes.DEFAULT_SUITES)
    assert (chosen.tag, chosen.suite, chosen.key) == (2, S32, KEY_A)
    assert sdes.choose(offered, (S80,)).tag == 3
    with pytest.raises(sdes.CryptoError, match=r"no usable a=crypto in the offer: .*AES_256"):
        sdes.choose(offered[:1], sdes.DEFAULT_SUITES)
    with pytest.raises(sdes.CryptoError, match="has no a=crypto line"):
        sdes.choose([], sdes.DEFAULT_SUITES)
    with pytest.raises(sdes.CryptoError, match="a=crypto:1 repeats a tag"):
        sdes.choose([f"1 AES_256_CM_HMAC_SHA1_80 inline:{B64_A}", f"1 {S80} inline:{B64_A}"],
                    sdes.DEFAULT_SUITES)


def test_plans_of_both_sides_carry_mirrored_keys() -> None:
    """The caller offers both suites; the answerer keys tag 1; each side's plan sends
    with its own key and receives with the other's."""
    offer = _offer([f"1 {S80} inline:{B64_A}", f"2 {S32} inline:{B64_A}"])
    answer = sdp.build_answer(offer, address="127.0.0.1", port=40002, session_id=2,
                              protos=(sdes.SAVP,))
    sdes.with_crypto(answer.media[0], [sdes.Crypto(1, S80, KEY_B)])
    caller = plan_stream(offer, answer, remote_is_answer=True)
    callee = plan_stream(answer, offer, remote_is_answer=False)
    assert caller.srtp is not None and callee.srtp is not None
    assert (caller.srtp.suite, caller.srtp.local, caller.srtp.remote) == (S80, KEY_A, KEY_B)
    assert (callee.srtp.local, callee.srtp.remote) == (KEY_B, KEY_A)


@pytest.mark.parametrize(("answer_lines", "proto", "reason"), [
    ([], sdes.SAVP, "SRTP: the RTP/SAVP answer has no a=crypto line"),
    ([f"9 {S80} inline:{B64_B}"], sdes.SAVP, "tag 9 is not one we offered"),
    ([f"1 {S32} inline:{B64_B}"], sdes.SAVP, "is AES_CM_128_HMAC_SHA1_32; our line 1 offered"),
    ([f"1 {S80} inline:{B64_B}", f"2 {S32} inline:{B64_B}"], sdes.SAVP, "allows one"),
    ([f"1 {S80} inline:AAAA"], sdes.SAVP, "key is 3 bytes"),
    ([f"1 {S80} inline:{B64_B}|2^20|1:4"], sdes.SAVP, "has an MKI"),
    ([f"1 {S80} inline:%%%"], sdes.SAVP, "is not base64"),
    ([], sdes.AVP, "the far end answered RTP/AVP where ours is RTP/SAVP (it did not take SRTP)"),
])
def test_answers_that_cannot_key_the_stream_fail_the_plan(answer_lines: list[str], proto: str,
                                                         reason: str) -> None:
    offer = _offer([f"1 {S80} inline:{B64_A}", f"2 {S32} inline:{B64_A}"])
    answer = sdp.build_answer(offer, address="127.0.0.1", port=40002, session_id=2,
                              protos=(sdes.SAVP,))
    answer.media[0].proto = proto
    answer.media[0].attributes += [("crypto", v) for v in answer_lines]
    with pytest.raises(MediaPlanError, match=reason.replace("(", r"\(").replace(")", r"\)")
                       .replace("^", r"\^").replace("|", r"\|")):
        plan_stream(offer, answer, remote_is_answer=True)


# -- libsrtp streams ---------------------------------------------------------------------

def _rtp(seq: int, ssrc: int = 0x1234) -> bytes:
    return build_rtp(0, seq, seq * 160, ssrc, bytes(range(160)))


@pytest.mark.parametrize(("suite", "tag_bytes"), [(S80, 10), (S32, 4)])
def test_protect_and_unprotect_both_suites(suite: str, tag_bytes: int) -> None:
    alice = SrtpStream(sdes.Keys(suite, KEY_A, KEY_B, 1))
    bob = SrtpStream(sdes.Keys(suite, KEY_B, KEY_A, 1))
    for seq in range(50):
        plain = _rtp(seq)
        sealed = alice.protect(plain)
        assert sealed is not None and len(sealed) == len(plain) + tag_bytes
        assert sealed[:12] == plain[:12] and sealed[12:172] != plain[12:]  # payload encrypted
        assert bob.unprotect(sealed) == plain
    report = b"\x80\xc9\x00\x01" + (0x1234).to_bytes(4, "big")
    sealed_rtcp = bob.protect_rtcp(report)
    assert sealed_rtcp is not None and sealed_rtcp != report
    assert alice.unprotect_rtcp(sealed_rtcp) == report
    assert (bob.auth_failures, bob.replay_failures, bob.malformed) == (0, 0, 0)


def test_refusals_are_counted_by_kind_and_never_raise() -> None:
    alice = SrtpStream(sdes.Keys(S80, KEY_A, KEY_B, 1))
    bob = SrtpStream(sdes.Keys(S80, KEY_B, KEY_A, 1))
    wrong = SrtpStream(sdes.Keys(S80, KEY_B, KEY_B, 1))  # receives with a wrong key
    sealed = [alice.protect(_rtp(seq)) for seq in range(10)]
    assert all(s is not None for s in sealed)
    for s in sealed:
        assert s is not None and wrong.unprotect(s) is None
    assert wrong.auth_failures == 10
    assert bob.unprotect(sealed[3] or b"") is not None
    assert bob.unprotect(sealed[3] or b"") is None  # the same index again
    assert bob.replay_failures == 1
    flipped = bytearray(sealed[4] or b"")
    flipped[30] ^= 1
    assert bob.unprotect(bytes(flipped)) is None and bob.auth_failures == 1
    for junk in (b"", b"\x80", b"\x80\x00\x00\x01", bytes(2000), b"\x90" + bytes(40)):
        assert bob.unprotect(junk) is None
        assert bob.unprotect_rtcp(junk) is None
    assert bob.malformed + bob.auth_failures + bob.replay_failures == 1 + 1 + 10
    assert alice.protect(bytes(1600)) is None and alice.protect_failures == 1


def test_a_key_of_the_wrong_length_is_refused_when_the_stream_is_made() -> None:
    with pytest.raises(ValueError, match="at least 30"):
        SrtpStream(sdes.Keys(S80, bytes(10), KEY_A, 1))
    with pytest.raises(ValueError, match="unknown SRTP suite"):
        SrtpStream(sdes.Keys("NULL", KEY_A, KEY_A, 1))


# -- two media tables in memory: a caller and an echo ---------------------------------------

CALLER = ("127.0.0.1", 40000)
ECHO = ("127.0.0.1", 40002)


def _table(seed: int) -> MediaTable:
    bits = itertools.count(seed)
    return MediaTable(0.0, 0.0, lambda: next(bits), f"t{seed}@test", grid=0.02)


def _run_pair(caller_keys: sdes.Keys, echo_keys: sdes.Keys, seconds: float = 1.0,
              tamper: bool = False) -> tuple[dict[str, float], dict[str, float], list[bytes]]:
    """A caller playing a tone to an echo for ``seconds``; what each side's figures say,
    and the datagrams the caller sent."""
    caller, echo = _table(100), _table(900)
    caller.start(1, MediaSpec(srtp="sdes"), StreamPlan("PCMU", 0, -1, ECHO, True, True, 20,
                                                       srtp=caller_keys), 0.0)
    echo.start(1, MediaSpec(echo=True, srtp="sdes"),
               StreamPlan("PCMU", 0, -1, CALLER, True, True, 20, srtp=echo_keys), 0.0)
    wire: list[bytes] = []
    now = 0.0
    while now < seconds:
        now += 0.02
        for tick in caller.due(now):
            for packet in tick.packets:
                wire.append(packet)
                if tamper:
                    packet = packet[:-1] + bytes([packet[-1] ^ 0xFF])
                back: list[bytes] = []
                echo.on_rtp_batch([(packet, CALLER, now)], 0.0, back, [])
                caller.on_rtp_batch([(b, ECHO, now + 0.001) for b in back], 0.0, [], [])
        for packet, dest in caller.rtcp_due(now):
            assert dest == (ECHO[0], ECHO[1] + 1)
            echo.on_rtcp(packet, (CALLER[0], CALLER[1] + 1), now)
        for packet, _ in echo.rtcp_due(now):
            caller.on_rtcp(packet, (ECHO[0], ECHO[1] + 1), now)
    return caller.stop(1, now) or {}, echo.stop(1, now) or {}, wire


@pytest.mark.parametrize("suite", [S80, S32])
def test_a_protected_call_through_an_echo_has_clean_figures(suite: str) -> None:
    got, echoed, wire = _run_pair(sdes.Keys(suite, KEY_A, KEY_B, 1),
                                  sdes.Keys(suite, KEY_B, KEY_A, 1), seconds=6.0)
    n = len(wire)  # 6 s of 20 ms packets, give or take the tick at 0
    assert 299 <= n <= 301 and all(len(p) == 172 + (10 if suite == S80 else 4) for p in wire)
    assert all(parse_rtp(p).payload_size > 160 for p in wire)  # the tag rides at the end
    assert got["sent"] == n and got["received"] == n and got["lost"] == 0
    assert got["srtp"] == (80 if suite == S80 else 32)
    assert got["srtp_auth_failures"] == 0 and got["srtp_replay_failures"] == 0
    assert got["mos"] > 4.3 and got["malformed"] == 0
    assert echoed["received"] == n and echoed["srtp_auth_failures"] == 0
    # SRTCP went both ways (the first report is due at 5 s): the caller got a round trip
    assert got["remote_lost"] == 0 and got["rtt_ms"] >= 0


def test_a_wrong_key_is_counted_as_auth_failures_and_nothing_is_received() -> None:
    """The echo believes the caller's key is KEY_B: every packet fails authentication
    there, nothing is echoed, nothing is received; no exception anywhere."""
    got, echoed, wire = _run_pair(sdes.Keys(S80, KEY_A, KEY_B, 1),
                                  sdes.Keys(S80, KEY_B, KEY_B, 1))
    assert echoed["srtp_auth_failures"] == len(wire) and echoed["received"] == 0
    assert got["received"] == 0 and got["sent"] == len(wire)


def test_a_changed_byte_fails_authentication() -> None:
    _, echoed, wire = _run_pair(sdes.Keys(S32, KEY_A, KEY_B, 1),
                                sdes.Keys(S32, KEY_B, KEY_A, 1), tamper=True)
    assert echoed["srtp_auth_failures"] == len(wire) and echoed["received"] == 0


def test_a_re_key_keeps_the_counts_and_uses_the_new_keys() -> None:
    table = _table(5)
    spec = MediaSpec(srtp="sdes")
    table.start(1, spec, StreamPlan("PCMU", 0, -1, ECHO, True, True, 20,
                                    srtp=sdes.Keys(S80, KEY_A, KEY_B, 1)), 0.0)
    media = table.calls[1]
    first = media.srtp
    assert first is not None and media.out is not None and media.out.protect is not None
    table.on_rtp(_rtp(1), ECHO, 0.0)  # plain RTP into an SRTP stream: refused
    table.update(1, StreamPlan("PCMU", 0, -1, ECHO, True, True, 20,
                               srtp=sdes.Keys(S80, KEY_A, KEY_B, 1)), 1.0)
    assert media.srtp is first  # the same keys: the same stream
    table.update(1, StreamPlan("PCMU", 0, -1, ECHO, True, True, 20,
                               srtp=sdes.Keys(S32, KEY_B, KEY_A, 2)), 2.0)
    assert media.srtp is not first and media.srtp is not None
    assert media.srtp.suite == S32
    peer = SrtpStream(sdes.Keys(S32, KEY_A, KEY_B, 2))
    assert table.on_rtp(peer.protect(_rtp(5)) or b"", ECHO, 2.0) is None
    figures = media.figures()
    assert figures["received"] == 1 and figures["srtp"] == 32
    assert figures["srtp_auth_failures"] + figures["malformed"] == 1  # the plain packet
    table.update(1, StreamPlan("PCMU", 0, -1, ECHO, True, True, 20), 3.0)
    assert media.srtp is None and media.out.protect is None


# -- the default UAS's SRTP echo ---------------------------------------------------------------

def _echo() -> tuple[SrtpEcho, MediaTable]:
    table = _table(50)
    return SrtpEcho(table), table


def test_the_default_uas_keys_an_srtp_offer_and_echoes_protected() -> None:
    echo, table = _echo()
    offer = _offer([f"5 {S32} inline:{B64_A}"])
    answer = sdp.build_answer(offer, address="127.0.0.1", port=40002, session_id=2,
                              protos=(sdes.AVP, sdes.SAVP))
    keyed = echo.answer(7, offer, answer, 0.0)
    assert isinstance(keyed, sdp.SessionDescription)
    lines = sdes.crypto_lines(keyed.media[0])
    assert len(lines) == 1 and lines[0].startswith(f"5 {S32} inline:")
    theirs = sdes.parse_crypto(lines[0]).key
    caller = SrtpStream(sdes.Keys(S32, KEY_A, theirs, 5))
    back = table.on_rtp(caller.protect(_rtp(1)) or b"", CALLER, 0.0)
    assert back is not None and caller.unprotect(back) == _rtp(1)
    echo.release(7, 1.0)
    assert 7 not in table.calls


def test_the_default_uas_leaves_plain_offers_alone_and_refuses_bad_crypto() -> None:
    echo, table = _echo()
    plain = _offer([], proto=sdes.AVP)
    answer = sdp.build_answer(plain, address="127.0.0.1", port=40002, session_id=2,
                              protos=(sdes.AVP, sdes.SAVP))
    assert echo.answer(1, plain, answer, 0.0) is answer and not table.calls
    for bad, reason in ((f"1 {S80} inline:AAAA", "key is 3 bytes"),
                        (f"1 NULL_CIPHER inline:{B64_A}", "suite NULL_CIPHER is not one"),
                        ("1 garbage", "needs '<tag> <suite> inline:<key>'")):
        offer = _offer([bad])
        answer = sdp.build_answer(offer, address="127.0.0.1", port=40002, session_id=2,
                                  protos=(sdes.AVP, sdes.SAVP))
        why = echo.answer(2, offer, answer, 0.0)
        assert isinstance(why, str) and why.startswith("SRTP: ") and reason in why, why
    assert echo.refused == 3 and not table.calls


# -- the scenario's media: section -------------------------------------------------------------

def test_srtp_per_scenario_and_per_leg() -> None:
    from sipload.scenario.loader import load_text

    text = """
name: legs
role: uac
media:
  codec: PCMU
  srtp: sdes
  srtp_suites: [AES_CM_128_HMAC_SHA1_32]
  legs:
    plain: {srtp_suites: [AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32]}
steps:
  - send: INVITE
    body: {sdp: offer}
  - recv: 200
"""
    program = load_text(text, "legs.yaml")
    main, leg = program.media_for("main"), program.media_for("plain")
    assert main is not None and leg is not None
    assert (main.srtp, main.suites, main.proto) == ("sdes", (S32,), "RTP/SAVP")
    assert (leg.srtp, leg.suites) == ("sdes", (S80, S32))


@pytest.mark.parametrize(("media", "line", "reason"), [
    ("{srtp: dtls}", 4, "srtp"),
    ("{srtp: sdes, srtp_suites: [AES_256_CM_HMAC_SHA1_80]}", 4, "srtp_suites"),
    ("{srtp_suites: [AES_CM_128_HMAC_SHA1_32]}", 4, "srtp_suites needs 'srtp: sdes'"),
    ("{srtp: sdes, srtp_suites: []}", 4, "srtp_suites"),
])
def test_bad_srtp_settings_name_the_place(media: str, line: int, reason: str) -> None:
    from sipload.scenario.errors import ScenarioError
    from sipload.scenario.loader import load_text

    text = (f"name: bad\nrole: uac\n\nmedia: {media}\nsteps:\n  - send: INVITE\n"
            "    body: {sdp: offer}\n")
    with pytest.raises(ScenarioError, match=reason) as err:
        load_text(text, "bad.yaml")
    assert err.value.line == line, str(err.value)
    print(err.value)
