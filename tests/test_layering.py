"""Imports point down only, between every part of sipload, and never go round in a circle.

The functional core (sip/, ua/, scenario/, stats/, media/) imports no socket, event
loop, clock, process or randomness (:data:`FORBIDDEN`): it is fed bytes, stamps and
``now``. :data:`ALLOWED` says which other parts of sipload each part (a package, or a
module directly under sipload/) may import; every part is listed, so a new one must say
where it stands. Inside the shell layers, the modules that decide policy
(:data:`SANS_IO_MODULES`: pacing, when an engine's run ends, what it hands over, the
coordinator's decisions and checks, the share of source addresses, conformance judging,
thresholds) do no I/O either; the engine's modules are used from outside only through
``sipload.engine``. Nothing may import itself back through other modules: the test walks
every module's imports (function-level ones too) and fails on a circle, naming it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).parent.parent / "sipload"
# Sockets, event loops, clocks, processes and signals: what a sans-IO module never imports.
FORBIDDEN = {"asyncio", "socket", "ssl", "time", "datetime", "zmq", "selectors", "select",
             "threading", "multiprocessing", "subprocess", "signal", "random", "uvloop",
             "websockets", "dns"}
PURE = ["sip", "ua", "scenario", "stats", "media"]
SANS_IO_MODULES = ["pacing", "engine/stopping", "engine/output", "cluster/coordinator",
                   "cluster/checks", "cluster/messages", "cluster/sources", "conformance/judge",
                   "report/thresholds"]
# What each part may import from inside sipload (besides itself).  Read it bottom-up:
# sip is the ground floor; cli, the top, may use everything.
ALLOWED: dict[str, set[str]] = {
    "_native": set(),
    "exitcodes": set(),
    "sip": set(),
    "media": {"sip"},
    "mediapump": {"media", "stats", "transport"},
    "pacing": set(),
    "pump": {"sip", "ua", "transport"},
    "stats": {"sip"},
    "ua": {"sip"},
    "transport": {"sip"},
    "scenario": {"sip", "ua", "stats", "media"},
    "report": {"stats", "exitcodes"},
    "runtime": {"sip", "ua", "transport", "pump"},
    "engine": {"sip", "ua", "stats", "scenario", "transport", "pacing", "media", "mediapump",
               "pump"},
    "conformance": {"exitcodes", "sip", "ua", "stats", "media", "scenario", "transport",
                    "runtime", "report"},
    "cluster": {"_native", "exitcodes", "sip", "stats", "scenario", "transport", "pacing",
                "engine"},
    "cli": {"_native", "exitcodes", "sip", "ua", "stats", "media", "scenario", "transport",
            "pacing", "runtime", "engine", "report", "conformance", "cluster"},
    "__main__": {"cli"},
    "__init__": {"_native"},
}


def _parts() -> list[str]:
    """Every package and top-level module of sipload, by the name ALLOWED uses."""
    names = {p.stem for p in PKG.glob("*.py")}
    names |= {p.parent.name for p in PKG.glob("*/__init__.py")}
    names |= {p.name for p in PKG.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    return sorted(names)


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """The modules ``path`` imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                names.add(sub if sub in MODULES else node.module)
    return names


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_part_has_a_place() -> None:
    assert sorted(ALLOWED) == _parts(), "add the new part of sipload to ALLOWED"


def test_the_layers_themselves_do_not_go_round() -> None:
    assert _cycle({k: sorted(v) for k, v in ALLOWED.items()}) == []


@pytest.mark.parametrize("layer", PURE)
def test_pure_layers_do_no_io(layer: str) -> None:
    for path in (PKG / layer).rglob("*.py"):
        for name in _imports(path):
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


@pytest.mark.parametrize("module", SANS_IO_MODULES)
def test_policy_modules_of_the_shell_do_no_io(module: str) -> None:
    path = PKG / f"{module}.py"
    for name in _imports(path):
        assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_down(layer: str) -> None:
    for module, path in MODULES.items():
        if _part(module) != layer:
            continue
        for name in _imports(path):
            if name.split(".")[0] != "sipload" or name == "sipload":
                continue
            target = _part(name)
            if target == layer:
                continue
            assert target in ALLOWED[layer], f"{module} ({layer}) imports {name}"


def test_the_engine_is_used_through_its_face() -> None:
    """Outside sipload/engine/, only ``sipload.engine`` itself is imported (Engine,
    EngineConfig); inside, the shell is the top: only the package's face imports it."""
    for module, path in MODULES.items():
        for name in _imports(path):
            if not name.startswith("sipload.engine."):
                continue
            if _part(module) != "engine":
                raise AssertionError(f"{module} imports {name}: use sipload.engine")
            if name == "sipload.engine.shell":
                assert module == "sipload.engine", f"{module} imports the engine's shell"


def _cycle(graph: dict[str, list[str]]) -> list[str]:
    """One circle in ``graph`` as [a, b, ..., a], or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_no_module_imports_itself_back() -> None:
    graph = {m: sorted(n for n in _imports(p) if n in MODULES and n != m)
             for m, p in MODULES.items()}
    circle = _cycle(graph)
    assert circle == [], "import circle: " + " -> ".join(circle)


def test_the_circle_finder_finds_circles() -> None:
    assert _cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert _cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) == []


def _readme_rows(heading: str) -> dict[str, str]:
    """The ``| `module` | holds |`` rows of the README table under ``heading``."""
    readme = (PKG.parent / "README.md").read_text()
    section = readme[readme.index(heading):]
    section = section[:section.find("\n## ", 1) % (len(section) + 1)]
    rows = re.findall(r"^\| `([^`]+\.py)` \| (.*) \|$", section, re.M)
    return {name: text.replace("\\|", "|") for name, text in rows}


def _summary(path: Path) -> str | None:
    """A module docstring's first paragraph on one line, RST roles as Markdown code."""
    doc = ast.get_docstring(ast.parse(path.read_text()))
    if not doc:
        return None
    first = " ".join(doc.strip().split("\n\n")[0].split())
    return re.sub(r":\w+:`~?(?:[\w.]+\.)?(\w+)`", r"`\1`", first).replace("``", "`")


def test_every_module_says_what_it_owns() -> None:
    bare = [str(p.relative_to(PKG)) for p in sorted(PKG.rglob("*.py")) if not _summary(p)]
    assert bare == [], f"modules without a docstring: {bare}"


def test_the_readme_lists_every_module() -> None:
    rows = _readme_rows("## Layout")
    modules = {str(p.relative_to(PKG)): p for p in sorted(PKG.rglob("*.py"))}
    missing = sorted(set(modules) - set(rows))
    assert missing == [], f"README's Layout table lacks {missing}"
    gone = sorted(set(rows) - set(modules))
    assert gone == [], f"README's Layout table lists modules that are gone: {gone}"
    stale = [f"{name}: README says {rows[name]!r}, the docstring {_summary(path)!r}"
             for name, path in modules.items() if rows[name] != _summary(path)]
    assert stale == [], "README's Layout rows are not their docstrings' first lines:\n" + \
        "\n".join(stale)


def test_the_readme_lists_every_module_of_the_sip_core() -> None:
    rows = _readme_rows("## The SIP core")
    modules = {p.name for p in (PKG / "sip").glob("*.py") if p.name != "__init__.py"}
    assert sorted(modules - set(rows)) == [], "README's SIP core table lacks a module"
    assert sorted(set(rows) - modules) == [], "README's SIP core table lists a gone module"


def test_exit_codes_are_named_not_written() -> None:
    """Every exit status comes from sipload/exitcodes.py: no ``sys.exit(3)``,
    ``os._exit(3)``, ``SystemExit(2)`` or ``parser.exit(2)`` with a bare number."""
    written = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if name in {"exit", "_exit", "SystemExit"} and isinstance(arg, ast.Constant) \
                    and isinstance(arg.value, int):
                written.append(f"{module}:{node.lineno}")
    assert written == [], f"exit codes written as numbers (use sipload.exitcodes): {written}"
