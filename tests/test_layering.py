"""The functional core stays free of I/O: sip/, ua/, scenario/, stats/ and media/ import no
asyncio, socket, ssl, time or zmq (DESIGN.md), and imports point down only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).parent.parent / "sipload"
FORBIDDEN = {"asyncio", "socket", "ssl", "time", "zmq", "selectors", "threading", "random"}
PURE = ["sip", "ua", "scenario", "stats", "media"]
# What each layer may import from inside sipload (besides itself).
ALLOWED = {
    "sip": set(),
    "ua": {"sip"},
    "scenario": {"sip", "ua", "stats", "media"},
    "media": set(),
    "stats": {"sip"},
    "report": {"stats"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", PURE)
def test_pure_layers_do_no_io(layer: str) -> None:
    for path in (PKG / layer).rglob("*.py"):
        for name in _imports(path):
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_down(layer: str) -> None:
    for path in (PKG / layer).rglob("*.py"):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "sipload" or len(parts) < 2:
                continue
            target = parts[1]
            if target in (layer, "__init__"):
                continue
            assert target in ALLOWED[layer], f"{path.name} ({layer}) imports {name}"
