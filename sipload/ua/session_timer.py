"""Session timers (RFC 4028): what to ask for, what to answer, who refreshes.

Pure functions over messages; the user agent keeps one :class:`SessionTimer`
per dialog and acts when it fires: the refresher re-INVITEs (or UPDATEs) at
half the interval; the other side sends BYE when no refresh came by the
interval minus min(32 s, interval/3) (§10).  A request whose Session-Expires
is below our Min-SE gets 422 with our Min-SE (§8.1); a UAC that gets a 422
retries with the larger interval (§7.4).
"""

from __future__ import annotations

from dataclasses import dataclass

from sipload.sip.checks import Rejection
from sipload.sip.errors import ParseError
from sipload.sip.message import Request, Response

MIN_MIN_SE = 90
"""RFC 4028 §4: Min-SE may not be below 90 seconds."""


@dataclass(slots=True)
class SessionTimer:
    """A dialog's session interval and whether this side refreshes it."""

    interval: int
    refresher_is_us: bool
    deadline: float = 0.0

    def arm(self, now: float) -> None:
        if self.refresher_is_us:
            self.deadline = now + self.interval / 2.0
        else:
            self.deadline = now + self.interval - min(32.0, self.interval / 3.0)


def _interval(msg: Request | Response) -> tuple[int, str | None] | None:
    try:
        se = msg.session_expires
    except ParseError:
        return None
    if se is None or not se.value.isdigit():
        return None
    refresher = se.params.get("refresher")
    return int(se.value), (refresher.lower() if refresher else None)


def offer(req: Request, interval: int, min_se: int) -> None:
    """Ask for a session timer in an INVITE or UPDATE we send (§7.1)."""
    req.set_header("Session-Expires", str(max(interval, min_se)))
    if min_se != MIN_MIN_SE:
        req.set_header("Min-SE", str(min_se))


def check_request(req: Request, min_se: int) -> Rejection | None:
    """422 for a Session-Expires below our Min-SE (§8.1)."""
    got = _interval(req)
    if got is not None and got[0] < min_se:
        return Rejection(422, "Session Interval Too Small", (("Min-SE", str(min_se)),))
    return None


def answer(req: Request, resp: Response, local_interval: int | None) -> SessionTimer | None:
    """Add Session-Expires to our 2xx and say who refreshes (§9)."""
    got = _interval(req)
    if got is None and local_interval is None:
        return None
    uac_supports = "timer" in req.supported if req.has("supported") else False
    interval = got[0] if got is not None else int(local_interval or 1800)
    if got is not None and local_interval is not None:
        interval = min(interval, local_interval) if local_interval >= MIN_MIN_SE else interval
    refresher = got[1] if got is not None and got[1] else ("uac" if uac_supports else "uas")
    if not uac_supports:
        refresher = "uas"
    resp.set_header("Session-Expires", f"{interval};refresher={refresher}")
    if uac_supports:
        resp.add_header("Require", "timer")
    return SessionTimer(interval, refresher == "uas")


def from_2xx(resp: Response) -> SessionTimer | None:
    """The session timer a 2xx to our INVITE/UPDATE set up (§7.2)."""
    got = _interval(resp)
    if got is None:
        return None
    interval, refresher = got
    return SessionTimer(interval, refresher != "uas")


def retry_interval(resp: Response, asked: int) -> int | None:
    """The interval to retry with after a 422, or None if it cannot help (§7.4)."""
    try:
        v = resp.min_se
    except ParseError:
        return None
    if v is None or v <= asked:
        return None
    return v
