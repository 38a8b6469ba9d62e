"""Type stub of the C helper ``_mmsg.c`` (see :mod:`sipload.transport.batch`)."""

from collections.abc import Sequence

API: int

def send(fd: int, packets: Sequence[bytes], dests: Sequence[tuple[str, int]], /) -> tuple[
    int, int, int]: ...
def recv(fd: int, limit: int, bufsize: int, want_stamps: bool = ..., /) -> tuple[
    list[tuple[bytes, tuple[str, int], float]], int]: ...
