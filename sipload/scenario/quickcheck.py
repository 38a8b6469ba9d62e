"""A quick JSON Schema check for the scenario's schema: passes what is valid, without jsonschema.

Importing ``jsonschema`` (with ``referencing``, ``rpds``, ``attrs`` and its format
checkers) costs a ``sipload run`` about 0.1 s of CPU before its first call, to find
nothing wrong in a scenario that is fine.  :func:`quick_valid` decides the common
case itself: it knows the keywords the scenario's schema uses
(:mod:`sipload.scenario.schema`), with Draft 2020-12's meaning, and answers

* ``True``: the instance is valid, as jsonschema would find it;
* ``False``: it is not (jsonschema is then asked, for its best error message);
* ``None``: it cannot tell (a keyword it does not know, a float where an integer
  is wanted, ``enum`` or ``uniqueItems`` over non-strings): ask jsonschema.

So an answer of True is the only one that skips jsonschema, and it is given only
when every keyword met was checked exactly.  ``tests/test_scenario_quickcheck.py``
holds it to jsonschema's verdict over every shipped scenario, its steps and
mutated copies of them.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

#: Keywords that say nothing about validity.
ANNOTATIONS = frozenset({"description", "title", "$schema", "$comment", "default",
                         "examples", "deprecated", "readOnly", "writeOnly"})

#: Keywords checked here (and the annotations); any other makes the answer None.
KNOWN = ANNOTATIONS | {"type", "properties", "additionalProperties", "required", "enum",
                       "pattern", "minimum", "maximum", "minItems", "maxItems",
                       "minProperties", "maxProperties", "uniqueItems", "items", "oneOf"}


@lru_cache(maxsize=256)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _type_ok(instance: Any, name: str) -> bool | None:
    if name == "object":
        return isinstance(instance, dict)
    if name == "array":
        return isinstance(instance, list)
    if name == "string":
        return isinstance(instance, str)
    if name == "boolean":
        return isinstance(instance, bool)
    if name == "null":
        return instance is None
    if name == "number":
        return _is_number(instance)
    if name == "integer":
        if isinstance(instance, float):
            return None  # 1.0 is an integer to JSON Schema: let jsonschema say
        return isinstance(instance, int) and not isinstance(instance, bool)
    return None


def _and(a: bool | None, b: bool | None) -> bool | None:
    """Both valid: False if either is surely not, None if either is unsure."""
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def quick_valid(instance: Any, schema: Any) -> bool | None:
    """Whether ``instance`` is valid against ``schema`` (see the module docstring)."""
    if schema is True:
        return True
    if schema is False:
        return False
    if not isinstance(schema, dict) or not schema.keys() <= KNOWN:
        return None
    verdict: bool | None = True
    if "type" in schema:
        names = schema["type"]
        if isinstance(names, str):
            ok = _type_ok(instance, names)
        elif isinstance(names, list):
            ok = False
            for name in names:
                one = _type_ok(instance, str(name))
                if one:
                    ok = True
                    break
                if one is None:
                    ok = None
        else:
            return None
        if ok is False:
            return False
        verdict = _and(verdict, ok)
    if "enum" in schema:
        values = schema["enum"]
        if not isinstance(values, list):
            return None
        strings = [v for v in values if isinstance(v, str)]
        if isinstance(instance, str):
            if instance not in strings:  # a string equals only a string
                return False
        elif len(strings) == len(values):
            return False  # nothing but strings to equal
        else:
            return None  # 1 == 1.0 but not True to JSON Schema: let jsonschema say
    if "pattern" in schema and isinstance(instance, str) and \
            _pattern(str(schema["pattern"])).search(instance) is None:
        return False
    if _is_number(instance):
        if "minimum" in schema and instance < schema["minimum"]:
            return False
        if "maximum" in schema and instance > schema["maximum"]:
            return False
    if isinstance(instance, list):
        verdict = _and(verdict, _array(instance, schema))
    if isinstance(instance, dict):
        verdict = _and(verdict, _object(instance, schema))
    if verdict is False:
        return False
    if "oneOf" in schema:
        subs = schema["oneOf"]
        if not isinstance(subs, list):
            return None
        found = 0
        for sub in subs:
            one = quick_valid(instance, sub)
            if one is None:
                return None
            found += one
        if found != 1:
            return False
    return verdict


def _array(instance: list[Any], schema: dict[str, Any]) -> bool | None:
    if len(instance) < schema.get("minItems", 0):
        return False
    if "maxItems" in schema and len(instance) > schema["maxItems"]:
        return False
    verdict: bool | None = True
    if schema.get("uniqueItems") is True:
        if not all(isinstance(v, str) for v in instance):
            verdict = None
        elif len(set(instance)) != len(instance):
            return False
    if "items" in schema:
        items = schema["items"]
        if isinstance(items, list):
            return None
        for v in instance:
            one = quick_valid(v, items)
            if one is False:
                return False
            verdict = _and(verdict, one)
    return verdict


def _object(instance: dict[Any, Any], schema: dict[str, Any]) -> bool | None:
    if len(instance) < schema.get("minProperties", 0):
        return False
    if "maxProperties" in schema and len(instance) > schema["maxProperties"]:
        return False
    for key in schema.get("required", ()):
        if key not in instance:
            return False
    props: dict[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    verdict: bool | None = True
    for key, value in instance.items():
        if key in props:
            one = quick_valid(value, props[key])
        elif extra is True:
            continue
        else:
            one = quick_valid(value, extra)
        if one is False:
            return False
        verdict = _and(verdict, one)
    return verdict
