"""Errors of the media core, split by who is at fault.

* :class:`MediaParseError`: the peer sent a datagram that is not valid RTP or RTCP
  (too short, wrong version, a padding or CSRC count that points outside the
  packet ...).  The shell counts it as malformed and drops the datagram.
* :class:`MediaConfigError`: the user's media configuration cannot be used (an
  unreadable or unsupported WAV file, an unknown codec, a ptime off the grid).
  It is raised while a scenario is loaded, before anything is sent.
"""

from __future__ import annotations


class MediaError(Exception):
    """Base class of every error raised by :mod:`sipload.media`."""


class MediaParseError(MediaError):
    """A received datagram is not valid RTP/RTCP.

    Attributes:
        reason: one short line saying what is wrong (also the counter's key).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __reduce__(self) -> tuple[type[MediaParseError], tuple[str]]:
        return (MediaParseError, (self.reason,))


class MediaConfigError(MediaError):
    """The media configuration (codec, ptime, play source) cannot be used."""
