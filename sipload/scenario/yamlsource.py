"""YAML read with positions, and the one duration grammar, for scenarios and profiles.

Both the scenario loader and the conformance profile loader read YAML through
here, so both see the same booleans (YAML 1.2: ``on``/``off``/``yes``/``no``
stay strings; ``on:`` is a recv step's key), report a syntax error at the same
``line:column``, and accept the same durations.

Limits (a scenario or profile may come from anyone): a source over
:data:`MAX_SOURCE_BYTES`, nesting deeper than :data:`MAX_DEPTH`, or more than
:data:`MAX_NODES` nodes once aliases are expanded (a "billion laughs" alias
bomb) is refused with a position, before anything walks the document.

A duration is seconds as a number, or a string: a number followed by ``ms``
(milliseconds), ``s`` (seconds), ``m`` (minutes) or nothing (seconds), e.g.
``500ms``, ``2s``, ``1.5m``, ``4``.

A YAML syntax error says what to fix first (:data:`YAML_HINTS`: an indentation, a
value that needs quotes, a tab ...), then the parser's own words.

:class:`SourceError` is what both loaders' errors are: ``file:line:col: message``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

MAX_SOURCE_BYTES = 1024 * 1024
"""The largest scenario or profile accepted (the largest shipped is ~2 KB)."""

MAX_DEPTH = 64
"""The deepest nesting of lists and maps accepted."""

MAX_NODES = 100_000
"""The most nodes a document may have with every alias expanded."""



class SourceError(Exception):
    """A file that cannot be used, with where the problem is (1-based line, column).

    The base of :class:`~sipload.scenario.errors.ScenarioError` and the conformance
    ``ProfileError``: both print as ``file:line:col: message``.
    """

    def __init__(self, file: str, line: int, column: int, message: str) -> None:
        super().__init__(f"{file}:{line}:{column}: {message}")
        self.file = file
        self.line = line
        self.column = column
        self.message = message


DURATION_PATTERN = r"^[0-9]+(\.[0-9]+)?(ms|s|m)?$"
"""The grammar of a duration string (also the scenario schema's pattern)."""

_DURATION = re.compile(DURATION_PATTERN)
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}

Path_ = tuple[str | int, ...]

YAML_HINTS: tuple[tuple[str, str], ...] = (
    ("mapping values are not allowed here",
     "a ':' YAML did not expect: this line is indented deeper than the key above it, "
     "or a value holds ': ' and needs quotes"),
    ("could not find expected ':'",
     "a line that is not 'key: value' inside a mapping: a missing ':', or an indentation "
     "that does not line up with the keys above"),
    ("did not find expected key",
     "this line's indentation does not match the keys of its mapping: line it up with "
     "them (or with the '-' of its list item)"),
    ("did not find expected '-' indicator",
     "a list item that does not line up with the items above it: align its '-'"),
    ("expected <block end>, but found",
     "this line is indented less (or more) than the block it belongs to: line it up"),
    ("found character '\\t' that cannot start any token",
     "a tab: YAML indents with spaces only"),
    ("found unexpected end of stream",
     "a quote or bracket that is never closed"),
    ("found undefined alias", "a '*name' alias with no '&name' anchor: quote a value "
                              "that starts with '*'"),
    ("found character '@' that cannot start any token",
     "a value starting with '@': quote it"),
    ("found character '`' that cannot start any token",
     "a value starting with '`': quote it"),
)
"""The parser's words for common YAML mistakes, and what to fix."""


def yaml_message(e: yaml.MarkedYAMLError) -> str:
    """What to fix for a YAML syntax error, then the parser's own words."""
    words = " ".join(str(x) for x in (e.context, e.problem) if x)
    for needle, hint in YAML_HINTS:
        if needle in words:
            return f"not valid YAML: {hint} (the parser says: {e.problem or e.context})"
    return f"not valid YAML: {e.problem or e.context}"


class SafeLoader12(yaml.SafeLoader):
    """PyYAML's safe loader, with YAML 1.2 booleans (only true/false), that refuses
    nesting deeper than :data:`MAX_DEPTH` as it composes (before Python's recursion
    limit would)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels",
                    self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(root: yaml.Node) -> tuple[int, yaml.Node | None]:
    """Nodes in the document with every alias expanded, counting up to just past
    :data:`MAX_NODES` (and the node where it went past)."""
    count = 0
    stack = [root]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_NODES:
            return count, node
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.append(k)
                stack.append(v)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return count, None


def read_source(path: str | Path, error: Callable[[int, int, str], Exception]) -> str:
    """A scenario or profile file's text, refused past :data:`MAX_SOURCE_BYTES`.

    Raises:
        whatever ``error`` makes: unreadable, not UTF-8, or too large.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SOURCE_BYTES + 1)
    except OSError as e:
        raise error(1, 1, f"cannot read: {e.strerror or e}") from e
    if len(data) > MAX_SOURCE_BYTES:
        raise error(1, 1, f"larger than {MAX_SOURCE_BYTES // 1024} KiB: not read (a scenario "
                    "or profile is a few KB)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(1, 1, f"not UTF-8 text: {e.reason}") from e


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
    if len(text) > MAX_SOURCE_BYTES:
        raise error(1, 1, f"larger than {MAX_SOURCE_BYTES // 1024} KiB: not parsed")
    try:
        loader = SafeLoader12(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _, where = _expanded_size(node)
                if where is not None:
                    line, col = position(where)
                    raise error(line, col, f"more than {MAX_NODES} nodes with its aliases "
                                "expanded (an alias bomb?)")
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise error(line, col, yaml_message(e)) from e
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
