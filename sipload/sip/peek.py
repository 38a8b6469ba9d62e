"""Cheap looks into raw message bytes, without parsing: what the shell needs per packet.

:func:`call_id_of` finds the Call-ID (long or compact form ``i``) so the shell
can file each datagram or stream message under its call before (or without)
the parser seeing it.  It never raises: bytes that hold no Call-ID give None.
"""

from __future__ import annotations

import re

_CALL_ID_RE = re.compile(rb"\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)


def call_id_of(data: bytes) -> str | None:
    """The first Call-ID value in the header section of ``data``, or None.

    Decoded as UTF-8 with surrogate escapes, stripped, as the parser gives it.
    Runs for every message a wire trace files, so the header section's end is not
    looked for first: the first match anywhere counts when no blank line comes
    before it (a scan of the bytes before the Call-ID only, not of the whole message).
    """
    m = _CALL_ID_RE.search(data)
    if m is None:
        return None
    if data.find(b"\r\n\r\n", 0, m.start() + 1) >= 0:
        return None  # the first match is in the body: the header section has none
    value = m.group(1).strip().decode("utf-8", "surrogateescape")
    return value or None
