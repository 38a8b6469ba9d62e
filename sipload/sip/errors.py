"""Errors of the SIP core, split by who is at fault.

* :class:`ParseError` (a remote protocol error): the peer sent bytes that are not
  SIP, or SIP that breaks a rule.  It carries the status code a UAS should answer
  (400, 416, 505 ...) so that the caller can respond without re-deriving it.  For
  responses there is nobody to answer; the caller drops the message.
* :class:`LocalProtocolError`: the caller misused the API (asked for a header that
  cannot be built, answered a transaction twice, ...).

Timeouts and transport failures are events, never exceptions.
"""

from __future__ import annotations


class SipError(Exception):
    """Base class of every error raised by :mod:`sipload.sip`."""


class ParseError(SipError):
    """The peer sent something we cannot accept.

    Attributes:
        reason: one line saying what is wrong, fit for a log or a Warning header.
        status: the status code a UAS answers to a request that fails this way.
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class LocalProtocolError(SipError):
    """The caller used the API in a way the protocol does not allow."""
