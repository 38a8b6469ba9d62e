"""Type stub of the C helper ``_peek.c`` (see :mod:`sipload.sip.peek`)."""

API: int

def call_id(data: bytes, /) -> str | None: ...
