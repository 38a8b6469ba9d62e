"""Cheap looks into raw message bytes, without parsing: what the shell needs per packet.

:func:`call_id_of` finds the Call-ID (long or compact form ``i``) so the shell
can file each datagram or stream message under its call before (or without)
the parser seeing it.  It never raises: bytes that hold no Call-ID give None.

The wire trace asks it for every message a worker reads or writes, so where the C
helper ``sipload.sip._peek`` is built (with the compiled hot path, by
``hatch_build.py``) it does the search in one pass of C; elsewhere, or when the helper
is of another API version, the regular expression below (its definition) runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: The C helper's API version this module speaks.
NATIVE_API = 1

_CALL_ID_RE = re.compile(rb"\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)


def _load_native() -> Callable[[bytes], str | None] | None:
    try:
        from sipload.sip import _peek  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    if getattr(_peek, "API", None) != NATIVE_API:
        return None
    found: Callable[[bytes], str | None] = _peek.call_id
    return found


#: The C helper's ``call_id``, or None (then :func:`python_call_id_of` runs).
_native_call_id = _load_native()
#: "native" when the C helper finds Call-IDs, "python" otherwise.
IMPLEMENTATION = "native" if _native_call_id is not None else "python"


def call_id_of(data: bytes) -> str | None:
    """The first Call-ID value in the header section of ``data``, or None.

    Decoded as UTF-8 with surrogate escapes, stripped, as the parser gives it
    (:func:`python_call_id_of` is the definition; the C helper gives the same).
    """
    native = _native_call_id
    if native is not None:
        return native(data)
    return python_call_id_of(data)


def python_call_id_of(data: bytes) -> str | None:
    """:func:`call_id_of` with the regular expression (the definition, and the fallback).

    The header section's end is not looked for first: the first match anywhere counts
    when no blank line comes before it (a scan of the bytes before the Call-ID only,
    not of the whole message).
    """
    m = _CALL_ID_RE.search(data)
    if m is None:
        return None
    if data.find(b"\r\n\r\n", 0, m.start() + 1) >= 0:
        return None  # the first match is in the body: the header section has none
    value = m.group(1).strip().decode("utf-8", "surrogateescape")
    return value or None
