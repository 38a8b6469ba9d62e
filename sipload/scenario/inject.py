"""CSV injection files in SIPp's ``-inf`` format.

The first line says how rows are handed to calls: ``SEQUENTIAL`` (call n takes
row n mod rows), ``RANDOM`` (a row drawn per call) or ``USER`` (one row per user,
as SIPp's ``-users``: user k of the closed model takes row k for every call it
places, so the file needs at least as many rows as users; a call without a user
gets no fields, as in SIPp).  Each further line is a row of fields
separated by ``;``, available to templates as ``${field0}``, ``${field1}`` ...
Blank lines and lines starting with ``#`` or ``//`` are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sipload.scenario.errors import ScenarioError

ORDERS = ("SEQUENTIAL", "RANDOM", "USER")


@dataclass(frozen=True, slots=True)
class Injection:
    path: str
    order: str
    rows: tuple[tuple[str, ...], ...]

    @property
    def fields(self) -> int:
        return max((len(r) for r in self.rows), default=0)

    def row_for(self, call_number: int, draw: int = 0,
                user: int | None = None) -> dict[str, str]:
        """The fields of the row call ``call_number`` uses.

        ``draw`` picks the row for RANDOM; ``user`` (0-based, the closed model's user
        placing the call) for USER, where a call without a user gets no row."""
        if not self.rows:
            return {}
        if self.order == "USER":
            if user is None:
                return {}
            index = user
        else:
            index = draw if self.order == "RANDOM" else call_number
        row = self.rows[index % len(self.rows)]
        return {f"field{i}": v for i, v in enumerate(row)}


def parse_injection(text: str, file: str = "<csv>") -> Injection:
    lines = text.splitlines()
    order = ""
    rows: list[tuple[str, ...]] = []
    for n, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith(("#", "//")):
            continue
        if not order:
            word = line.strip().split(",")[0].split(" ")[0].upper()
            if word not in ORDERS:
                raise ScenarioError(file, n, 1, f"first line must be one of {', '.join(ORDERS)}"
                                    f", not {line.strip()[:30]!r}")
            order = word
            continue
        fields = line.split(";")
        if fields and fields[-1] == "":
            fields = fields[:-1]
        rows.append(tuple(fields))
    if not order:
        raise ScenarioError(file, 1, 1, "empty injection file")
    if not rows:
        raise ScenarioError(file, len(lines) or 1, 1, "no data rows after the order line")
    width = len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            raise ScenarioError(file, _row_line(lines, i), 1,
                                f"row has {len(r)} fields; the first row has {width}")
    return Injection(file, order, tuple(rows))


def _row_line(lines: list[str], row_index: int) -> int:
    seen = -1
    for n, raw in enumerate(lines, start=1):
        if not raw.strip() or raw.lstrip().startswith(("#", "//")):
            continue
        seen += 1
        if seen == row_index + 1:
            return n
    return 1


def load_injection(path: str | Path) -> Injection:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(str(p), 1, 1, f"cannot read: {e.strerror}") from e
    return parse_injection(text, str(p))
