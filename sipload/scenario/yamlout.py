"""Writing a scenario as readable YAML (for the SIPp importer).

Every string is double-quoted, so no value changes type when read back; a
string spanning lines (a message body) is written one line per source line
with YAML's escaped line breaks, so ``\\r\\n`` stays exact and the body stays
readable.  Mappings keep their order.
"""

from __future__ import annotations

import re
from typing import Any

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_RESERVED = frozenset({"true", "false", "null", "yes", "no", "y", "n", "~"})
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\r": "\\r", "\n": "\\n", "\t": "\\t",
            "\x85": "\\N", "\u2028": "\\L", "\u2029": "\\P", "\ufeff": "\\ufeff"}


def quote(text: str) -> str:
    """``text`` as the inside of a YAML double-quoted scalar."""
    out = []
    for ch in text:
        esc = _ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def scalar(value: Any, indent: int) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    pieces = text.splitlines(keepends=True)
    if len(pieces) <= 1:
        return f'"{quote(text)}"'
    pad = " " * indent
    lines = []
    for i, piece in enumerate(pieces):
        q = quote(piece)
        if i and q[:1] in (" ", "\t"):
            q = "\\x20" + q[1:] if q[0] == " " else "\\t" + q[1:]
        lines.append(q)
    return '"' + ("\\\n" + pad).join(lines) + '"'


def key(k: Any) -> str:
    if isinstance(k, bool) or k is None:
        return f'"{k}"'
    if isinstance(k, int):
        return str(k)
    s = str(k)
    if _PLAIN_KEY.fullmatch(s) and s.lower() not in _RESERVED:
        return s
    return f'"{quote(s)}"'


def _is_scalar(v: Any) -> bool:
    return not isinstance(v, dict | list)


def _mapping(d: dict[Any, Any], indent: int, out: list[str]) -> None:
    pad = " " * indent
    for k, v in d.items():
        if isinstance(v, dict):
            if not v:
                out.append(f"{pad}{key(k)}: {{}}")
            elif all(_is_scalar(x) for x in v.values()) and len(v) <= 2 and all(
                    "\n" not in str(x) for x in v.values()):
                inner = ", ".join(f"{key(a)}: {scalar(b, 0)}" for a, b in v.items())
                out.append(f"{pad}{key(k)}: {{{inner}}}")
            else:
                out.append(f"{pad}{key(k)}:")
                _mapping(v, indent + 2, out)
        elif isinstance(v, list):
            if not v:
                out.append(f"{pad}{key(k)}: []")
            elif all(_is_scalar(x) for x in v):
                out.append(f"{pad}{key(k)}: [{', '.join(scalar(x, 0) for x in v)}]")
            else:
                out.append(f"{pad}{key(k)}:")
                for item in v:
                    _item(item, indent + 2, out)
        else:
            out.append(f"{pad}{key(k)}: {scalar(v, indent + 2)}")


def _item(item: Any, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(item, dict) and item:
        lines: list[str] = []
        _mapping(item, indent + 2, lines)
        lines[0] = pad + "- " + lines[0][indent + 2:]
        out.extend(lines)
    else:
        out.append(f"{pad}- {scalar(item, indent + 2)}")


def dump_scenario(data: dict[str, Any], comments: list[str] | None = None) -> str:
    """The scenario ``data`` as YAML text, with ``comments`` as a leading comment block."""
    out = [f"# {' '.join(c.splitlines())}".rstrip() for c in comments or []]
    _mapping(data, 0, out)
    return "\n".join(out) + "\n"
