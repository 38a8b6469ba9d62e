"""sipload.scenario.quickcheck agrees with jsonschema wherever it answers, and answers
True for the shipped scenarios (so loading them does not import jsonschema)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sipload.scenario.quickcheck import quick_valid
from sipload.scenario.schema import SCHEMA, STEP_KINDS
from sipload.scenario.yamlsource import SafeLoader12

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((REPO / "scenarios").rglob("*.yaml"))
TOP = {"type": "object",
       "properties": {k: v for k, v in SCHEMA["properties"].items() if k != "steps"}}
ODD_VALUES: list[Any] = ["x", "", "INVITE", "1s", "200ms", 0, 1, -1, 7, 1.5, 2.0, -0.5,
                         True, False, None, [], ["x"], [1, 1], ["a", "a"], {}, {"x": 1},
                         10**9]


def _load(path: Path) -> dict[str, Any]:
    """The scenario as the loader reads it (YAML 1.2: 'on' is a string)."""
    import yaml

    doc: dict[str, Any] = yaml.load(path.read_text(), Loader=SafeLoader12)
    return doc


def _parts(doc: dict[str, Any]) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(instance, schema) as the loader checks them: the top level without its steps,
    then each step against its kind's schema."""
    yield {k: v for k, v in doc.items() if k != "steps"}, TOP
    for step in doc.get("steps") or []:
        if isinstance(step, dict):
            for kind in step:
                if kind in STEP_KINDS:
                    yield step, STEP_KINDS[kind]
                    break


def _mutations(value: Any) -> Iterator[Any]:
    """Copies of ``value`` with one thing changed: a leaf replaced by an odd value,
    a key removed, an unknown key added, an item dropped."""
    if isinstance(value, dict):
        yield {**value, "no_such_key": 1}
        for key in value:
            yield {k: v for k, v in value.items() if k != key}
            for odd in ODD_VALUES:
                yield {**value, key: odd}
            for sub in _mutations(value[key]):
                yield {**value, key: sub}
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield value[:i] + value[i + 1:]
            for odd in ODD_VALUES[:8]:
                yield [*value[:i], odd, *value[i + 1:]]
            for sub in _mutations(item):
                yield [*value[:i], sub, *value[i + 1:]]


def _agrees(instance: Any, schema: dict[str, Any]) -> bool | None:
    quick = quick_valid(instance, schema)
    truth = jsonschema.Draft202012Validator(schema).is_valid(instance)
    assert quick is None or quick == truth, (instance, quick, truth)
    return quick


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_scenarios_pass_without_jsonschema(path: Path) -> None:
    doc = _load(path)
    for instance, schema in _parts(doc):
        assert _agrees(instance, schema) is True, instance


@pytest.mark.parametrize("path", SCENARIOS[:12], ids=lambda p: p.name)
def test_mutated_scenarios_agree_with_jsonschema(path: Path) -> None:
    doc = _load(path)
    answered = refused = 0
    for instance, schema in _parts(doc):
        for mutated in _mutations(copy.deepcopy(instance)):
            quick = _agrees(mutated, schema)
            answered += quick is not None
            refused += quick is False
    assert answered and refused  # the mutations reached both verdicts


@pytest.mark.parametrize(("instance", "schema", "expected"), [
    (1.0, {"type": "integer"}, None),
    (True, {"type": "integer"}, False),
    (True, {"type": "number"}, False),
    (1, {"enum": [1, 2]}, None),
    ("a", {"enum": ["a", 1]}, True),
    ("b", {"enum": ["a", 1]}, False),
    (["a"], {"enum": ["a", "b"]}, False),
    ("x", {"format": "email"}, None),
    ("ab", {"pattern": "b"}, True),
    ("ab", {"pattern": "^b"}, False),
    ({"a": 1}, {"additionalProperties": False, "properties": {"b": {}}}, False),
    ({"b": 1}, {"additionalProperties": False, "properties": {"b": {}}}, True),
    (3, {"oneOf": [{"type": "integer"}, {"minimum": 0}]}, False),
    (-3, {"oneOf": [{"type": "integer"}, {"minimum": 0}]}, True),
    (["a", "a"], {"uniqueItems": True}, False),
    ([1, True], {"uniqueItems": True}, None),
    ([1, 2], {"items": {"type": "integer"}, "maxItems": 1}, False),
])
def test_keywords(instance: Any, schema: dict[str, Any], expected: bool | None) -> None:
    assert _agrees(instance, schema) is expected
