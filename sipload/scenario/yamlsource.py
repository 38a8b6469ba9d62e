"""YAML read with positions, and the one duration grammar, for scenarios and profiles.

Both the scenario loader and the conformance profile loader read YAML through
here, so both see the same booleans (YAML 1.2: ``on``/``off``/``yes``/``no``
stay strings; ``on:`` is a recv step's key), report a syntax error at the same
``line:column``, and accept the same durations.

A duration is seconds as a number, or a string: a number followed by ``ms``
(milliseconds), ``s`` (seconds), ``m`` (minutes) or nothing (seconds), e.g.
``500ms``, ``2s``, ``1.5m``, ``4``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml

DURATION_PATTERN = r"^[0-9]+(\.[0-9]+)?(ms|s|m)?$"
"""The grammar of a duration string (also the scenario schema's pattern)."""

_DURATION = re.compile(DURATION_PATTERN)
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}

Path_ = tuple[str | int, ...]


class SafeLoader12(yaml.SafeLoader):
    """PyYAML's safe loader, with YAML 1.2 booleans (only true/false)."""


SafeLoader12.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SafeLoader12.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def parse_duration(value: Any) -> float:
    """A duration (see the module docstring) in seconds.

    Raises:
        ValueError: ``value`` is not a duration (negative numbers included).
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value!r}")
        return float(value)
    text = str(value).strip()
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(f"not a duration: {text!r} (e.g. 500ms, 2s, 1.5m)")
    number = text[:len(text) - len(m.group(2) or "")]
    return float(number) * _UNIT[m.group(2)]


def compose(text: str, error: Callable[[int, int, str], Exception]) -> tuple[
        yaml.Node | None, Any]:
    """Parse ``text``: (the node tree with positions, the plain data built from it).

    Args:
        error: makes the exception to raise from (line, column, message), 1-based.

    Raises:
        whatever ``error`` makes: the text is not YAML.
    """
    try:
        loader = SafeLoader12(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise error(line, col, f"not valid YAML: {e.problem or e.context}") from e
    except yaml.YAMLError as e:
        raise error(1, 1, f"not valid YAML: {e}") from e
    return node, data


def position(node: yaml.Node) -> tuple[int, int]:
    """The 1-based (line, column) where ``node`` starts."""
    return node.start_mark.line + 1, node.start_mark.column + 1


class Marks:
    """Line and column (1-based) of every node, by its path in the document."""

    def __init__(self) -> None:
        self.at: dict[Path_, tuple[int, int]] = {}
        self.key_at: dict[Path_, tuple[int, int]] = {}

    def collect(self, node: yaml.Node, path: Path_ = ()) -> None:
        self.at[path] = position(node)
        if isinstance(node, yaml.MappingNode):
            for knode, vnode in node.value:
                key = str(knode.value)
                self.key_at[(*path, key)] = position(knode)
                self.collect(vnode, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.collect(item, (*path, i))

    def find(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """Where ``path`` is (its key's position when ``key``), else its nearest parent."""
        where = (self.key_at.get(path) if key else None) or self.at.get(path)
        p = path
        while where is None and p:
            p = p[:-1]
            where = self.at.get(p)
        return where or (1, 1)
