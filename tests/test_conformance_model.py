"""Conformance mode without real peers: profiles, judging, evidence files, the CLI.

Everything here is pure or runs on 127.0.0.1 against nothing (the unreachable
target) in well under a second per test.
"""

from __future__ import annotations

import ast
import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sipload.cli import main as cli_main
from sipload.conformance.cases_robust import in_pack, index, parse_expect, rewrite_via
from sipload.conformance.evidence import junit_cases
from sipload.conformance.judge import (
    earlier_step,
    expected_intervals,
    intervals_to_observe,
    judge_schedule,
)
from sipload.conformance.model import (
    PACKS,
    Case,
    CaseResult,
    LadderEntry,
    Level,
    Verdict,
    broke,
    must,
    should,
)
from sipload.conformance.profile import ProfileError, load_profile, load_profile_text
from sipload.conformance.runner import all_cases, default_packs, exit_status, select
from sipload.report.conformance_html import render
from sipload.report.junit import junit_element
from sipload.scenario.loader import load_text
from sipload.sip.message import Request
from tests.peers import REPO_ROOT

PROFILES = REPO_ROOT / "scenarios" / "conformance" / "profiles"
PACKAGE_DATA = REPO_ROOT / "sipload" / "conformance" / "data"
TEST_DATA = REPO_ROOT / "tests" / "data" / "rfc4475"


# --------------------------------------------------------------------------- profiles


@pytest.mark.parametrize("path", sorted(PROFILES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_profiles_load(path: Path) -> None:
    profile = load_profile(path)
    assert profile.roles


@pytest.mark.parametrize(("text", "where", "words"), [
    ("roles: [uas]\nextensions: [100rel, tmer]\n", (2, 22), "did you mean 'timer'"),
    ("roles: [uas]\ntimers: {t1: fast}\n", (2, 14), "duration"),
    ("roles: [uas]\nuas:\n  uri: http://x\n", (3, 8), "sip: or sips:"),
    ("roles: [uas]\nuas:\n  ringing: true\n", (3, 3), "unknown key 'ringing'"),
    ("name: x\n", (1, 1), "roles"),
    ("roles: [uas]\nproxy: {callee: nowhere}\n", (2, 17), "HOST:PORT"),
    ("roles: [registrar]\nextensions: [digest]\n", (2, 13), "credentials"),
    ("roles: [uas]\ntimers: {t1: 4s, t2: 1s}\n", (2, 9), "below t1"),
    ("roles: [uas\n", (2, 1), "not valid YAML"),
])
def test_profile_errors_name_file_line_column(text: str, where: tuple[int, int],
                                              words: str) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile_text(text, "p.yaml")
    e = info.value
    assert (e.line, e.column) == where, str(e)
    assert words in e.message
    assert str(e).startswith(f"p.yaml:{where[0]}:{where[1]}: ")


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("4s", 4.0), ("1m", 60.0), ("1.5m", 90.0), ("2", 2.0), ("0.25", 0.25)])
def test_profiles_and_scenarios_share_one_duration_grammar(text: str, seconds: float) -> None:
    profile = load_profile_text(f"roles: [uas]\nresponse_timeout: {text}\n", "p.yaml")
    assert profile.response_timeout == pytest.approx(seconds)
    program = load_text(f"steps:\n  - send: OPTIONS\n  - recv: 200\n    timeout: {text}\n")
    assert program.steps[1].timeout == pytest.approx(seconds)  # type: ignore[attr-defined]


def test_conformance_modules_import_no_circle() -> None:
    pkg = REPO_ROOT / "sipload" / "conformance"
    graph: dict[str, set[str]] = {}
    for path in pkg.glob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[:2] == ["sipload", "conformance"] and len(parts) > 2:
                    deps.add(parts[2])
        graph[path.stem] = deps
    done: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, f"import circle: {' -> '.join((*trail, name))}"
        if name in done:
            return
        for dep in graph.get(name, ()):
            visit(dep, (*trail, name))
        done.add(name)

    for name in graph:
        visit(name, ())


def test_profile_claims_and_uris() -> None:
    p = load_profile_text("roles: [uas, registrar]\nextensions: [timer]\n"
                          "uas: {ringing_uri: 'sip:ring@{target}'}\n")
    p.target = ("127.0.0.1", 5099)
    assert p.claims("role:uas") and not p.claims("role:proxy")
    assert p.claims("ext:timer") and not p.claims("ext:100rel")
    assert p.claims("set:uas.ringing_uri") and not p.claims("set:uas.busy_uri")
    assert p.uri(p.uas.ringing_uri) == "sip:ring@127.0.0.1:5099"
    assert default_packs(p) == ["uas", "sdp", "prack", "timer", "rtp", "robustness", "transport",
                                "registrar"]


# --------------------------------------------------------------------------- catalogue


def test_case_ids_are_unique_and_cite_a_section() -> None:
    cases = all_cases()
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))
    assert all(c.rfc and c.section and c.purpose for c in cases)
    assert {c.pack for c in cases} == set(PACKS)
    assert all(c.run is not None or c.scenario for c in cases)


def test_every_case_cites_the_rfc_sentences_it_enforces() -> None:
    # issue 16 §1: each check names its RFC sentence and level; a MAY is never judged
    for case in all_cases():
        assert case.rules, case.id
        for rule in case.rules:
            assert rule.level in (Level.MUST, Level.SHOULD), case.id
            assert rule.ref.startswith("RFC ") and len(rule.text) > 20, case.id
            assert rule.level.value in rule.text or "(informational)" in rule.text \
                or rule.ref.startswith(("RFC 3261 §9.2", "RFC 3262 §3", "RFC 3261 §22.2",
                                        "RFC 3261 §10.3 step 3-4", "RFC 3261 §13.3.1.4")), (
                    case.id, rule)


def test_verdicts_by_level_and_strict_exit() -> None:
    should_rule = should("RFC 3261 §8.2.2.1", "it SHOULD reject the request with a 416")
    must_rule = must("RFC 3261 §8.2.1", "it MUST generate a 405")
    assert broke(should_rule, "404").verdict == Verdict.WARN
    assert broke(must_rule, "200").verdict == Verdict.FAIL
    warned = CaseResult(Case("X-1", "3261", "8", "p", "uas"), Verdict.WARN, "r",
                        rule=should_rule)
    passed_ = CaseResult(Case("X-2", "3261", "8", "p", "uas"), Verdict.PASS, "r")
    assert exit_status([warned, passed_]) == 0
    assert exit_status([warned, passed_], strict=True) == 1
    doc = warned.to_dict()
    assert doc["verdict"] == "warn" and doc["level"] == "SHOULD"
    assert doc["rule"]["text"].startswith("it SHOULD")
    junit = ET.tostring(junit_element(junit_cases([warned])), encoding="unicode")
    assert "<failure" not in junit and "WARNING: r" in junit and "SHOULD" in junit


def test_section_8_2_order() -> None:
    assert earlier_step(404, "require") is not None  # the Request-URI comes before Require
    assert earlier_step(401, "uri") is not None  # authentication first
    assert earlier_step(501, "require", skip=("method",)) is None
    assert earlier_step(420, "uri") is None  # Require comes after the Request-URI


def test_slow_cases_are_left_out_unless_asked() -> None:
    cases = all_cases()
    assert "UAS-INV-005" not in [c.id for c in select(cases)]
    assert "UAS-INV-005" in [c.id for c in select(cases, slow=True)]
    assert [c.id for c in select(cases, only=["UAS-INV-005"])] == ["UAS-INV-005"]
    assert {c.pack for c in select(cases, packs=["proxy"])} == {"proxy"}
    assert all(c.id.startswith("ROB-") for c in select(cases, only=["ROB-*"]))


def test_robustness_pack_covers_every_invalid_message() -> None:
    entries = index()
    ids = {c.id for c in all_cases() if c.pack == "robustness"}
    invalid = {f"ROB-{e['name']}" for e in entries if not e["valid"]}
    assert invalid <= ids
    assert len(invalid) == 19
    assert "ROB-zeromf" not in ids  # role-dependent: UAS-REQ-002 and PRX-005 judge it
    assert all(in_pack(e) for e in entries if f"ROB-{e['name']}" in ids)


def test_package_data_is_a_byte_exact_copy() -> None:
    for src in sorted(TEST_DATA.iterdir()):
        copy = PACKAGE_DATA / src.name
        assert copy.read_bytes() == src.read_bytes(), src.name
    for e in index():
        data = (PACKAGE_DATA / e["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == e["sha256"], e["name"]
    attrs = (REPO_ROOT / ".gitattributes").read_text()
    assert "sipload/conformance/data/*.dat binary" in attrs


@pytest.mark.parametrize(("text", "allowed", "refused"), [
    ("reject-400", [400, None], [200, 404]),
    ("reject-416-or-404", [416, 404, None], [400]),
    ("reject-error", [400, 503, 606, None], [200]),
    ("reject-400-or-liberal-accept", [400, 200, 486, None], []),
    ("discard", [None], [400, 200]),
    ("accept-or-reject-400", [200, 400], []),
])
def test_expectations(text: str, allowed: list[int | None], refused: list[int]) -> None:
    e = parse_expect(text)
    assert all(e.allows(s) for s in allowed)
    assert not any(e.allows(s) for s in refused)


class _FakeProbe:
    local = ("127.0.0.1", 4321)
    target = ("udp", "127.0.0.1", 5060)
    n = 0

    def tag(self) -> str:
        self.n += 1
        return f"t{self.n}"


def test_via_rewrite_touches_only_the_top_via() -> None:
    raw = (TEST_DATA / "mismatch01.dat").read_bytes()
    out = rewrite_via(raw, _FakeProbe())  # type: ignore[arg-type]
    assert b"Via: SIP/2.0/UDP 127.0.0.1:4321;branch=z9hG4bKkdjuw.t1\r\n" in out
    assert out.replace(b"127.0.0.1:4321", b"host.example.com").replace(b".t1", b"") == raw
    bare = (TEST_DATA / "badbranch.dat").read_bytes()
    out = rewrite_via(bare, _FakeProbe())  # type: ignore[arg-type]
    assert b"Via: SIP/2.0/UDP 127.0.0.1:4321;branch=z9hG4bK\r\n" in out  # its defect kept


# --------------------------------------------------------------------------- judging


def test_schedule_judging() -> None:
    assert expected_intervals(0.5, 4.0, 5) == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert expected_intervals(0.5, None, 4) == [0.5, 1.0, 2.0, 4.0]
    assert intervals_to_observe(0.5, 4.0) == 4
    assert intervals_to_observe(0.1, 0.4) == 4  # 100, 200, 400, 400 ms
    assert intervals_to_observe(0.5, 4.0, horizon=100) == 5
    ok, table = judge_schedule([0.0, 0.51, 1.5, 3.52], [0.5, 1.0, 2.0])
    assert ok, table
    ok, table = judge_schedule([0.0, 0.5, 1.0, 1.5], [0.5, 1.0, 2.0])
    assert not ok and "✗" in table


# --------------------------------------------------------------------------- evidence


def _result(verdict: Verdict, text: str = "<script>alert(1)</script>\x00") -> CaseResult:
    case = Case("UAS-X-001", "3261", "8.2.1", "purpose & <b>", "uas")
    ladder = [LadderEntry(0.001, "out", "udp:127.0.0.1:5060", "INVITE sip:x SIP/2.0", text),
              LadderEntry(0.002, "in", "udp:127.0.0.1:5060", "SIP/2.0 200 <OK>", text)]
    return CaseResult(case, verdict, f"reason {text}", 0.5, ladder)


def test_junit_maps_verdicts_and_escapes() -> None:
    results = [_result(v) for v in Verdict]
    root = junit_element(junit_cases(results))
    xml = ET.tostring(root, encoding="unicode")
    back = ET.fromstring(xml)
    cases = back.findall(".//testcase")
    assert len(cases) == 6
    assert back.get("tests") == "6" and back.get("failures") == "1"
    assert back.get("errors") == "1" and back.get("skipped") == "2"
    assert cases[0].get("classname") == "uas"
    assert cases[0].get("name") == "UAS-X-001 [RFC 3261 §8.2.1]"
    props = {p.get("name"): p.get("value") for p in cases[0].findall(".//property")}
    assert props["section"] == "8.2.1" and props["verdict"] == "pass"
    assert "<script>" not in xml


def test_html_escapes_everything_from_the_wire() -> None:
    doc = {"target": "127.0.0.1:5060<i>", "transport": "udp", "version": "0",
           "started": "now", "duration": 1.0, "counts": {"pass": 1},
           "profile": {"name": "<b>p</b>", "roles": ["uas"], "extensions": []},
           "cases": [_result(Verdict.FAIL).to_dict()]}
    page = render(doc)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>p</b>" not in page and "<i>" not in page
    assert "http://" not in page and "https://" not in page


# --------------------------------------------------------------------------- CLI


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["conformance", "--list"]) == 0
    out = capsys.readouterr().out
    assert "UAS-INV-004" in out and "RFC 3261 §13.3.1.4" in out and "(slow)" in out
    assert "ROB-badinv01" in out and "REG-005" in out and "PRX-003" in out
    assert "UAC-INV-002" in out


def test_cli_usage_and_profile_errors(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("roles: [uas]\nextensions: [nope]\n")
    assert cli_main(["conformance", "--target", "127.0.0.1:5", "--profile", str(bad)]) == 2
    assert f"{bad}:2:" in capsys.readouterr().err
    assert cli_main(["conformance"]) == 2
    assert cli_main(["conformance", "--target", "127.0.0.1:5", "--only", "NOPE-1"]) == 2


def test_cli_unreachable_target_exits_3(tmp_path: Path) -> None:
    from tests.peers import free_port

    prof = tmp_path / "p.yaml"
    prof.write_text("roles: [uas]\nresponse_timeout: 300ms\n")
    port = free_port("udp")
    code = cli_main(["conformance", "--target", f"127.0.0.1:{port}", "--profile", str(prof),
                     "--only", "UAS-REQ-001", "--out", str(tmp_path / "out")])
    assert code == 3
    assert not (tmp_path / "out" / "conformance.json").exists()


def test_cli_uac_profile_needs_no_target(tmp_path: Path) -> None:
    from tests.peers import free_port

    port = free_port("udp")
    prof = tmp_path / "p.yaml"
    prof.write_text(f"roles: [uac]\nuac: {{listen: '127.0.0.1:{port}', wait: 200ms}}\n")
    out = tmp_path / "out"
    code = cli_main(["conformance", "--profile", str(prof), "--only", "UAC-INV-001",
                     "--out", str(out), "--quiet"])
    assert code == 0
    doc = json.loads((out / "conformance.json").read_text())
    assert doc["cases"][0]["verdict"] == "inconclusive"
    assert (out / "junit.xml").exists() and (out / "conformance.html").exists()


def test_echo_allows_received_and_rport_but_nothing_else_in_the_top_via() -> None:
    from sipload.conformance.judge import echo_problems
    from sipload.sip.build import make_response, stamp_source
    from sipload.sip.parser import parse_message

    raw = (b"OPTIONS sip:b@127.0.0.1 SIP/2.0\r\n"
           b"Via: SIP/2.0/UDP 10.0.0.1:5071;branch=z9hG4bKe1;rport\r\n"
           b"Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKe0\r\n"
           b"From: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: e\r\nCSeq: 1 OPTIONS\r\n"
           b"Content-Length: 0\r\n\r\n")
    req = parse_message(raw)
    stamped = parse_message(raw)
    assert isinstance(req, Request) and isinstance(stamped, Request)
    stamp_source(stamped, "127.0.0.1", 5099)
    assert echo_problems(req, make_response(stamped, 200, to_tag="t")) == []
    changed = make_response(stamped, 200, to_tag="t")
    changed.replace_first("via", "SIP/2.0/UDP 10.0.0.1:5071;branch=z9hG4bKother")
    assert echo_problems(req, changed) == ["Via not copied unchanged"]
    dropped = make_response(req, 200, to_tag="t")
    dropped.set_header("Via", "SIP/2.0/UDP 10.0.0.1:5071;branch=z9hG4bKe1;rport")
    assert echo_problems(req, dropped) == ["Via not copied unchanged"]


def test_catalogue_size_and_document() -> None:
    # issue 16 §5: at least 120 cases; docs/conformance-catalogue.md is the generated
    # catalogue (`sipload conformance --list --markdown`), kept in step with the code
    from collections import Counter

    from sipload.conformance.catalogue import markdown

    cases = all_cases()
    assert len(cases) >= 120
    assert Counter(c.pack for c in cases) == {
        "uas": 27, "sdp": 3, "prack": 9, "timer": 8, "rtp": 4, "robustness": 42,
        "transport": 8, "registrar": 10, "proxy": 6, "uac": 5}
    doc = (REPO_ROOT / "docs" / "conformance-catalogue.md").read_text()
    assert doc == markdown(cases), ("docs/conformance-catalogue.md is stale: regenerate it "
                                    "with `sipload conformance --list --markdown`")
