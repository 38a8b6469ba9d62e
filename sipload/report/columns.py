"""Columns: a table as numpy arrays by name, the report's frames without pandas.

The summary and report.html need a few per-second series (sums over workers, a
row per snapshot); :class:`Columns` holds them as equal-length numpy arrays, so a
run's report does not import pandas (about 0.3 s of CPU, more than the analysis
itself).  ``len()`` is the number of rows; ``columns[name]`` an array.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


class Columns:
    """Equal-length numpy arrays by name, in insertion order."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, np.ndarray[Any, Any]] | None = None) -> None:
        self._data: dict[str, np.ndarray[Any, Any]] = dict(data or {})

    def __getitem__(self, name: str) -> np.ndarray[Any, Any]:
        return self._data[name]

    def __setitem__(self, name: str, values: np.ndarray[Any, Any]) -> None:
        self._data[name] = values

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def __len__(self) -> int:
        """Rows (0 without columns)."""
        return len(next(iter(self._data.values()))) if self._data else 0

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    @property
    def columns(self) -> list[str]:
        return list(self._data)

    def as_dict(self) -> dict[str, np.ndarray[Any, Any]]:
        """The columns (a new dict; the arrays are shared)."""
        return dict(self._data)


_NUMPY = {"int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
          "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
          "float": np.float32, "double": np.float64}
"""Arrow's primitive type names and their numpy types."""


def numbers(column: Any) -> np.ndarray[Any, Any]:
    """A numeric arrow column (Array or ChunkedArray) as a numpy array, read from its
    buffer; nulls become NaN (the array float64 then).  pyarrow's own ``to_numpy``
    imports pandas, 0.3 s, even for a float column without nulls."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_boolean(arr.type):
        arr = pc.cast(arr, pa.int8())
    if arr.null_count:
        arr = pc.fill_null(pc.cast(arr, pa.float64()), pa.scalar(float("nan"), pa.float64()))
    dtype = _NUMPY[str(arr.type)]
    if len(arr) == 0:
        return np.zeros(0, dtype)
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset *
                         np.dtype(dtype).itemsize)


def flags(column: Any) -> np.ndarray[Any, Any]:
    """A boolean arrow column as a numpy bool array (null: False)."""
    values = numbers(column)
    return np.nan_to_num(values, nan=0.0).astype(bool) if values.dtype.kind == "f" \
        else values.astype(bool)


def texts(column: Any) -> np.ndarray[Any, Any]:
    """A string arrow column as a numpy object array (str, None for null)."""
    values = column.to_pylist()
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
