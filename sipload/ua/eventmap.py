"""Which event a final or provisional status becomes, as tables indexed by status class.

eXosip2 names an event by what the response answered (the call's INVITE, a request
inside a call, a request outside any call) and by its class (1xx ... 6xx).
"""

from __future__ import annotations

from typing import Final

from sipload.ua.events import EventType as E

__all__ = ["call_failure_event", "message_event"]

#: A final non-2xx answer to the INVITE that opened a call, by class (3 ... 6).
CALL_FAILURE: Final = (E.CALL_REDIRECTED, E.CALL_REDIRECTED, E.CALL_REDIRECTED,
                       E.CALL_REDIRECTED, E.CALL_REQUESTFAILURE, E.CALL_SERVERFAILURE,
                       E.CALL_GLOBALFAILURE)
#: Any answer to a request inside a call, by class (1 ... 6).
IN_CALL: Final = (E.CALL_MESSAGE_PROCEEDING, E.CALL_MESSAGE_PROCEEDING,
                  E.CALL_MESSAGE_ANSWERED, E.CALL_MESSAGE_REDIRECTED,
                  E.CALL_MESSAGE_REQUESTFAILURE, E.CALL_MESSAGE_SERVERFAILURE,
                  E.CALL_MESSAGE_GLOBALFAILURE)
#: Any answer to a request outside any call, by class (1 ... 6).
OUT_OF_CALL: Final = (E.MESSAGE_PROCEEDING, E.MESSAGE_PROCEEDING, E.MESSAGE_ANSWERED,
                      E.MESSAGE_REDIRECTED, E.MESSAGE_REQUESTFAILURE,
                      E.MESSAGE_SERVERFAILURE, E.MESSAGE_GLOBALFAILURE)


def _class(status: int) -> int:
    c = status // 100
    return 6 if c > 6 else (0 if c < 0 else c)


def call_failure_event(status: int) -> E:
    """The event for a 300-699 answer to a call's INVITE."""
    return CALL_FAILURE[_class(status)]


def message_event(status: int, in_call: bool) -> E:
    """The event for an answer to a request of ours other than a call's INVITE."""
    return (IN_CALL if in_call else OUT_OF_CALL)[_class(status)]
