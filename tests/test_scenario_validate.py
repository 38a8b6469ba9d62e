"""Scenario validation: every error names file, line and column; ``sipload validate``
and ``sipload schema``."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from sipload.cli import main
from sipload.scenario.loader import ScenarioError, _Loader, load_file, load_text
from sipload.scenario.schema import SCHEMA
from tests.scenario_pair import SCENARIOS


def _error(text: str, file: str = "s.yaml") -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_text(text, file)
    return info.value


def test_unknown_key_suggests_the_nearest_valid_one() -> None:
    e = _error("steps:\n  - send: INVITE\n    bodyy: hello\n")
    assert (e.line, e.column) == (3, 5)
    assert "unknown key 'bodyy'" in e.message and "did you mean 'body'?" in e.message
    assert str(e).startswith("s.yaml:3:5: ")
    e = _error("name: x\nstep:\n  - send: INVITE\n")
    assert (e.line, e.column) == (2, 1) and "did you mean 'steps'?" in e.message


def test_unknown_step_kind_suggests_one() -> None:
    e = _error("steps:\n  - sned: INVITE\n")
    assert (e.line, e.column) == (2, 5) and "did you mean 'send'?" in e.message


def test_wrong_type_is_located() -> None:
    e = _error("steps:\n  - send: INVITE\n  - recv: 200\n    timeout: soon\n")
    assert e.line == 4 and "timeout" in e.message
    e = _error("steps:\n  - reply: ok\n", "u.yaml")
    assert e.line == 2 and "reply" in e.message
    e = _error("recv_timeout: [1]\nsteps:\n  - send: INVITE\n")
    assert (e.line, e.column) == (1, 15)


def test_jump_to_a_missing_label() -> None:
    e = _error("steps:\n  - send: INVITE\n  - recv: 200\n    on: {486: busyy}\n"
               "  - label: busy\n")
    assert e.line == 4 and "no label 'busyy'" in e.message and "'busy'" in e.message
    e = _error("steps:\n  - goto: nowhere\n  - label: end\n")
    assert (e.line, e.column) == (2, 11) and "no label 'nowhere'" in e.message


def test_unbounded_loop_is_refused() -> None:
    e = _error("steps:\n  - label: top\n  - send: OPTIONS\n  - recv: 200\n  - goto: top\n")
    assert e.line == 5 and "loop" in e.message and "max" in e.message
    load_text("steps:\n  - label: top\n  - send: OPTIONS\n  - recv: 200\n"
              "  - goto: top\n    max: 3\n")
    e = _error("steps:\n  - label: top\n  - recv: 200\n    on_timeout: top\n")
    assert e.line == 4 and "forward" in e.message


def test_unknown_variable_is_located_with_a_suggestion() -> None:
    e = _error("steps:\n  - send: INVITE\n    headers:\n      X-N: ${call_numbr}\n")
    assert e.line == 4 and "unknown variable '${call_numbr}'" in e.message
    assert "did you mean 'call_number'?" in e.message
    load_text("steps:\n  - send: INVITE\n    headers:\n      X-Last: ${last.Subject}\n")


def test_captured_and_set_variables_are_known() -> None:
    load_text("steps:\n  - send: INVITE\n  - recv: 200\n    capture:\n"
              "      - {var: tag, header: To, regex: 'tag=(.*)'}\n"
              "  - set: {copy: '${tag}'}\n  - send: BYE\n    headers: {X-T: '${copy}'}\n")


def test_bad_csv_injection_file_is_located(tmp_path: Path) -> None:
    csv = tmp_path / "users.csv"
    csv.write_text("SEQUENTIAL\nalice;secret\nbob;secret;extra\n")
    scen = tmp_path / "s.yaml"
    scen.write_text("inject: users.csv\nsteps:\n  - send: REGISTER\n"
                    "    headers: {X-User: '${field0}'}\n")
    with pytest.raises(ScenarioError) as info:
        load_file(scen)
    e = info.value
    assert e.file == str(csv) and (e.line, e.column) == (3, 1) and "fields" in e.message
    csv.write_text("SOMETIMES\nalice;secret\n")
    with pytest.raises(ScenarioError) as info:
        load_file(scen)
    assert (info.value.line, info.value.column) == (1, 1)
    assert "SEQUENTIAL" in info.value.message
    csv.write_text("RANDOM\nalice;secret\n")
    scen.write_text("inject: users.csv\nsteps:\n  - send: REGISTER\n"
                    "    headers: {X-User: '${field2}'}\n")
    with pytest.raises(ScenarioError) as info:
        load_file(scen)
    assert info.value.file == str(scen) and info.value.line == 4
    assert "field2" in info.value.message
    scen.write_text("inject: missing.csv\nsteps:\n  - send: REGISTER\n")
    with pytest.raises(ScenarioError) as info:
        load_file(scen)
    assert (info.value.line, info.value.column) == (1, 9)


def test_yaml_syntax_error_location() -> None:
    e = _error("steps:\n  - send: INVITE\n    headers: {X: 1\n  - recv: 200\n")
    assert e.line in (3, 4) and e.message.startswith("not valid YAML:")
    e = _error("steps:\n  - send: INVITE\n   - recv: 200\n")
    assert e.line == 3 and e.message.startswith("not valid YAML:")


def test_yaml_is_loaded_safely() -> None:
    e = _error("steps: !!python/object/apply:os.system ['true']\n")
    assert e.message.startswith("not valid YAML:")


def test_other_semantic_errors() -> None:
    assert "twice" in _error("steps:\n  - label: a\n  - label: a\n").message
    assert "401 or 407" in _error("steps:\n  - recv: INVITE\n  - reply: 200\n"
                                  "    challenge: true\n").message
    assert "bad regular expression" in _error(
        "steps:\n  - recv: 200\n    check: [{header: To, matches: '('}]\n").message
    assert "one 'header'" in _error("steps:\n  - recv: 200\n    check: [{present: true}]\n"
                                    ).message
    assert "only a request" in _error("steps:\n  - recv: 200\n    authenticate: true\n"
                                      ).message


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.name)
def test_library_scenarios_match_the_json_schema(path: Path) -> None:
    data = yaml.load(path.read_text(), Loader=_Loader)  # YAML 1.2 booleans: 'on' is a key
    jsonschema.Draft202012Validator(SCHEMA).validate(data)


def test_validate_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = [str(p) for p in sorted(SCENARIOS.glob("*.yaml"))]
    assert main(["validate", *good]) == 0
    out = capsys.readouterr().out
    assert "basic_call.yaml: ok" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  - send: INVITE\n    bodyy: x\n")
    assert main(["validate", good[0], str(bad), good[1]]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"{bad}:3:5: unknown key 'bodyy' in a send step; did you mean 'body'?"


def test_schema_cli_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(SCHEMA))
    jsonschema.Draft202012Validator.check_schema(printed)
