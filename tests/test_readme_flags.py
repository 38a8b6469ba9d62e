"""The README documents every flag of every sub-command, ``sipload run``'s usage block
lists exactly the flags ``sipload run --help`` does, and scenarios/README.md (the
scenario reference) names every key the scenario schema accepts."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from sipload.cli import build_parser

README = (Path(__file__).parent.parent / "README.md").read_text()
# Flags parsed but acted on by nothing: documenting one would promise what does not happen
# (empty: --abort-on-fail, which nothing read, was removed).
UNDOCUMENTED: set[tuple[str, str]] = set()


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _long_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings
            if o.startswith("--") and o != "--help"}


def _mentioned(flag: str, text: str) -> bool:
    return re.search(re.escape(flag) + r"(?![\w-])", text) is not None


def test_every_flag_of_every_command_is_in_the_readme() -> None:
    missing = sorted(f"sipload {name} {flag}" for name, parser in _commands().items()
                     for flag in _long_flags(parser)
                     if (name, flag) not in UNDOCUMENTED and not _mentioned(flag, README))
    assert missing == [], f"README never mentions {missing}"


def test_the_run_usage_block_is_the_run_help() -> None:
    section = README[README.index("## Load runs: `sipload run`"):]
    block = section[section.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    listed = set(re.findall(r"--[a-z0-9][a-z0-9-]*", block))
    flags = _long_flags(_commands()["run"]) - {f for n, f in UNDOCUMENTED if n == "run"}
    assert sorted(flags - listed) == [], "sipload run's usage block in README lacks these"
    assert sorted(listed - flags) == [], "README's usage block lists flags run does not take"


def test_undocumented_flags_still_exist() -> None:
    commands = _commands()
    for name, flag in UNDOCUMENTED:
        assert flag in _long_flags(commands[name]), f"drop {name} {flag} from UNDOCUMENTED"


def test_every_scenario_key_is_in_the_scenario_reference() -> None:
    """Each key the scenario schema accepts is named in scenarios/README.md."""
    from sipload.scenario import schema

    reference = (Path(__file__).parent.parent / "scenarios" / "README.md").read_text()
    keys: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict):
                keys.update(props)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema.SCHEMA)
    missing = sorted(k for k in keys if not re.search(rf"(?<![\w-]){re.escape(k)}(?![\w-])",
                                                      reference))
    assert missing == [], f"scenarios/README.md never names these scenario keys: {missing}"
