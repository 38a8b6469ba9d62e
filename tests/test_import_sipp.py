"""``sipload import-sipp``: SIPp XML to sipload YAML.

SIPp's own built-in scenarios are taken from ``sipp -sd NAME`` at test time
(their text is not kept here); each translation must validate, and the
imported UACs run against the imported UASs in memory.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sipload.cli import main
from sipload.scenario.loader import ScenarioError, load_text
from sipload.scenario.model import Program, RecvStep, SendStep
from sipload.scenario.sipp_import import import_sipp, sipp_regex
from sipload.scenario.yamlout import dump_scenario
from sipload.stats.records import Result
from tests.peers import SIPP_DIR, require
from tests.scenario_pair import ScenarioPair

BUILTINS = ("uac", "uas", "regexp", "branchc", "branchs")
_cache: dict[str, bytes] = {}


def builtin(name: str) -> bytes:
    if name not in _cache:
        r = subprocess.run([require("sipp"), "-sd", name], capture_output=True, timeout=30,
                           check=False)
        assert r.returncode in (0, 99), r.stderr  # sipp -sd exits 99 after dumping
        assert b"<scenario" in r.stdout
        _cache[name] = r.stdout
    return _cache[name]


def imported(name: str) -> Program:
    result = import_sipp(builtin(name), f"{name}.xml")
    return load_text(result.yaml, f"{name}.yaml")


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_scenarios_import_and_validate(name: str) -> None:
    result = import_sipp(builtin(name), f"{name}.xml")
    prog = load_text(result.yaml, f"{name}.yaml")
    assert prog.role == ("uas" if name in ("uas", "branchs") else "uac")
    assert result.yaml.startswith(f"# Imported from {name}.xml")


def test_imported_uac_keeps_only_what_the_ua_does_not_build() -> None:
    prog = imported("uac")
    invite = prog.steps[1]
    assert isinstance(invite, SendStep) and invite.method == "INVITE"
    names = [h for h, _ in invite.headers]
    assert names == ["Subject"]  # Via, From, To, Call-ID, CSeq, Contact ... are the UA's
    assert invite.body is not None and invite.body.text is not None
    body = invite.body.text.render({"local_host": "10.0.0.1", "media_port": "6000",
                                    "local_ip_type": "4", "media_ip_type": "4",
                                    "media_ip": "10.0.0.1"})
    assert body.startswith("v=0\r\no=user1 53655765 2353687637 IN IP4 10.0.0.1\r\n")
    assert body.endswith("a=rtpmap:0 PCMU/8000\r\n")
    assert invite.to is not None and invite.to.render(
        {"service": "s", "remote_host": "h", "remote_port": "1"}) == "s <sip:s@h:1>"
    recvs = [s for s in prog.steps if isinstance(s, RecvStep)]
    assert [(m.text, s.optional) for s in recvs for m in s.matchers][:4] == [
        ("100", True), ("180", True), ("183", True), ("200", False)]
    assert prog.steps[0].start_timer == "rtd1"  # SIPp's rtd starts with the call


def test_imported_uac_against_imported_uas_in_memory() -> None:
    sp = ScenarioPair(imported("uac"), imported("uas"))
    sp.run(calls=3)
    assert [r.result for r in sp.records] == [Result.SUCCESS] * 3, [
        (r.failure, r.detail) for r in sp.records]
    assert [r.result for r in sp.uas_records] == [Result.SUCCESS] * 3
    assert all("rtd1" in r.marks for r in sp.records)
    (bye,) = [d for s, d in sp.pair.wire if s == "alice" and d.startswith(b"BYE")][:1]
    assert b"Subject: Performance Test\r\n" in bye


def test_imported_regexp_captures_and_sends_them() -> None:
    sp = ScenarioPair(imported("regexp"), imported("uas"))
    sp.run(calls=1)
    assert sp.records[0].result == Result.SUCCESS, sp.records[0].detail
    (ack,) = [d for s, d in sp.pair.wire if s == "alice" and d.startswith(b"ACK")]
    assert b"retrievedIp: 127.0.0.1:50" in ack
    assert b"retrievedSdpOrigin-username: user1\r\n" in ack
    assert b"retrievedSdpOrigin-session-id: 53655765\r\n" in ack
    assert b"retrievedContact: <sip:bob@127.0.0.1:5072>\r\n" in ack  # the UA's Contact
    assert sp.records[0].marks["rtd1"] == pytest.approx(1.0, abs=0.01)


def test_imported_branch_scenarios_take_their_branches() -> None:
    sp = ScenarioPair(imported("branchc"), imported("branchs"))
    sp.run(calls=3)
    by_number = {r.call_number: r for r in sp.records}
    # call 2 registers as ua2: the UAS rings and answers; the others get 403, after which
    # SIPp's branchc still sends a BYE, which a real UA cannot: the record says so
    assert by_number[2].result == Result.SUCCESS, by_number[2].detail
    for n in (0, 1):
        assert by_number[n].failure == "unexpected_message"
        assert by_number[n].detail.startswith("BYE: the call already ended")
        assert 403 in by_number[n].codes
    invites = [d for s, d in sp.pair.wire if s == "alice" and d.startswith(b"INVITE")]
    assert invites[0].startswith(b"INVITE sip:ua2@CA.cym.com SIP/2.0")
    assert b"Route: <sip:127.0.0.1:5072;lr>" in invites[0]
    regs = [d for s, d in sp.pair.wire if s == "alice" and d.startswith(b"REGISTER")]
    assert regs[0].startswith(b"REGISTER sip:CA.cym.com SIP/2.0") and b"Expires: 300" in regs[0]


def test_untranslatable_parts_are_named_with_their_xml_line() -> None:
    data = (SIPP_DIR / "import_features.xml").read_bytes()
    result = import_sipp(data, "import_features.xml")
    warned = {line: text for line, text in result.warnings}
    assert "[unknown_keyword]" in warned[15]
    assert 'ignoresdp="true"' in warned[20]
    assert "<exec>" in warned[23] and "executed" in warned[23]
    assert "<log>" in warned[24]
    assert "weibull" in warned[30]
    assert "lost" in warned[49]
    assert "3PCC" in warned[55]
    assert "loop bounded" in warned[52]
    prog = load_text(result.yaml, "import_features.yaml")
    recv = next(s for s in prog.steps if isinstance(s, RecvStep))
    assert recv.timeout == 2.0 and recv.on_timeout > 0 and recv.stop_timer == "rtd_setup"
    assert [c.var for c in recv.captures] == ["all", "methods"]
    assert [c.group for c in recv.captures] == [0, 1]
    assert "${field0}" in result.yaml and "field0: \"\"" in result.yaml


def test_not_well_formed_xml_is_located() -> None:
    with pytest.raises(ScenarioError) as info:
        import_sipp(b"<scenario>\n  <send>\n</scenario>\n", "bad.xml")
    e = info.value
    assert e.file == "bad.xml" and e.line == 3 and "not well-formed" in e.message


def test_entities_are_refused() -> None:
    xml = (b'<?xml version="1.0"?>\n<!DOCTYPE scenario [\n<!ENTITY x "boom">\n]>\n'
           b"<scenario><nop/></scenario>\n")
    with pytest.raises(ScenarioError, match="entity"):
        import_sipp(xml, "ent.xml")
    external = (b'<?xml version="1.0"?>\n<!DOCTYPE scenario [\n'
                b'<!ENTITY x SYSTEM "file:///etc/passwd">\n]>\n<scenario>&x;</scenario>\n')
    with pytest.raises(ScenarioError):
        import_sipp(external, "ext.xml")


def test_posix_classes_become_python_ones() -> None:
    assert sipp_regex("o=([[:alnum:]]*) [[:digit:]]+") == "o=([a-zA-Z0-9]*) [0-9]+"


def test_yaml_writer_round_trips_exact_strings() -> None:
    data = {"name": "x: y # z", "steps": [
        {"send": "MESSAGE", "body": "line one\r\n  indented\r\n\ttab \"q\" \\ end\r\n"},
        {"recv": 200, "on": {486: "5"}}, {"label": "5"}]}
    prog = load_text(dump_scenario(data, ["a comment", "two\nlines"]))
    send = prog.steps[0]
    assert isinstance(send, SendStep) and send.body is not None and send.body.text is not None
    assert send.body.text.render({}) == data["steps"][0]["body"]  # type: ignore[index]
    assert prog.name == "x: y # z"


def test_import_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    xml = tmp_path / "uac.xml"
    xml.write_bytes(builtin("uac"))
    out = tmp_path / "uac.yaml"
    assert main(["import-sipp", str(xml), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{xml}:88: warning: a pause without milliseconds" in err
    assert main(["validate", str(out)]) == 0
    capsys.readouterr()
    assert main(["import-sipp", str(SIPP_DIR / "import_features.xml")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("# Imported from")
    assert "import_features.xml:23: warning: <exec>" in captured.err
    bad = tmp_path / "bad.xml"
    bad.write_text("<scenario>\n<recv response='200'>\n</scenario>")
    assert main(["import-sipp", str(bad)]) == 2
    assert f"{bad}:3:" in capsys.readouterr().err


@pytest.mark.parametrize(("uac", "xml"), [
    ("info_dtmf.yaml", "uas_info.xml"), ("busy.yaml", "uas_busy.xml"),
    ("cancel_ringing.yaml", "uas_ring_cancel.xml"), ("no_answer.yaml", "uas_ring_cancel.xml"),
    ("reinvite_hold.yaml", "uas_reinvite.xml"), ("update.yaml", "uas_update.xml"),
    ("private_command.yaml", "uas_private.xml"), ("options_ping.yaml", "uas_options.xml"),
    ("message.yaml", "uas_message.xml"),
])
def test_imported_sipp_peers_serve_the_library_in_memory(uac: str, xml: str) -> None:
    """The SIPp UAS scenarios the SIPp tests use, imported, answer our library UACs."""
    from tests.scenario_pair import program

    result = import_sipp((SIPP_DIR / xml).read_bytes(), xml)
    sp = ScenarioPair(program(uac), load_text(result.yaml, xml))
    sp.run(calls=2)
    for rec in sp.records + sp.uas_records:
        assert rec.result == Result.SUCCESS, (rec.failure, rec.detail, result.yaml)
    assert len(sp.uas_records) == 2


def test_hand_made_digest_answer_becomes_the_uas_own() -> None:
    """A SIPp UAC answering 401 by hand: credentials move to credentials:, the ACK and the
    re-sent INVITE go (the UA does both), and the call passes a challenging UAS."""
    from tests.scenario_pair import program

    result = import_sipp((SIPP_DIR / "uac_auth.xml").read_bytes(), "uac_auth.xml")
    assert result.data["credentials"] == {"username": "alice", "password": "secret"}
    assert [line for line, _ in result.warnings] == [21, 22, 35]
    prog = load_text(result.yaml, "uac_auth.yaml")
    assert [s.method for s in prog.steps if isinstance(s, SendStep)] == ["INVITE", "ACK", "BYE"]
    sp = ScenarioPair(prog, program("digest_uas.yaml"))
    sp.run(calls=2)
    for rec in sp.records + sp.uas_records:
        assert rec.result == Result.SUCCESS, (rec.failure, rec.detail)
