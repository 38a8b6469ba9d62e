"""The default UAS: answers what a test target is expected to answer.

Used when a load run has no ``--target`` and its scenario names no UAS
counterpart, and by ``sipload uas`` without a scenario: INVITE gets 100 (from
the UA), 180 then 200 with an SDP answer; re-INVITE and UPDATE get 200 (with
SDP when offered); BYE, INFO, OPTIONS, NOTIFY, MESSAGE, REFER inside a call get
200 (202 for REFER); OPTIONS and MESSAGE outside calls get 200.  Anything else
gets the UA core's RFC answers (405/501 with Allow, 481, 420, 416 ...).

With ``secure`` (the engine's SRTP echo: ``sipload uas --srtp sdes``) an RTP/SAVP
offer is answered with RTP/SAVP and a=crypto by that hook, which also starts the
call's protected echo; an SRTP offer it cannot key gets 488 with the reason in a
Warning header (RFC 3261 §20.43).  ``release`` is told when a call is gone.
"""

from __future__ import annotations

from collections.abc import Callable

from sipload.sip import sdp
from sipload.sip.errors import LocalProtocolError
from sipload.ua.agent import UserAgent
from sipload.ua.events import Event, EventType

E = EventType


class DefaultUAS:
    """Answers calls on a :class:`UserAgent`; counts what it did."""

    def __init__(self, ua: UserAgent, media_ip: str = "127.0.0.1", media_port: int = 6000,
                 ring: bool = True,
                 secure: Callable[[int, sdp.SessionDescription, sdp.SessionDescription, float],
                                  sdp.SessionDescription | str] | None = None,
                 release: Callable[[int, float], None] | None = None) -> None:
        self.ua = ua
        self.media_ip = media_ip
        self.media_port = media_port
        self.ring = ring
        self.secure = secure
        self.release = release
        self.refused = 0  #: SRTP offers answered 488 (``secure`` could not key them)
        self.calls = 0
        self.answered = 0
        self.closed = 0
        self.messages = 0
        self._session = 0
        self._origins: dict[int, tuple[int, int]] = {}  #: cid -> (o= session id, version)

    def _answer_sdp(self, cid: int, offer: bytes, now: float = 0.0) -> bytes | str:
        """An answer (or offer) for call ``cid``: a new call gets a new o= session id;
        later SDP of the same call keeps it and increments the version by one
        (RFC 3264 §8).  A string: why ``secure`` could not key an SRTP offer (488)."""
        if cid in self._origins:
            session, version = self._origins[cid]
            version += 1
        else:
            self._session += 1
            session, version = self._session, 0
        self._origins[cid] = (session, version)
        if offer:
            try:
                parsed = sdp.parse_sdp(offer)
                if self.secure is None:
                    return sdp.build_answer(parsed, address=self.media_ip,
                                            port=self.media_port, session_id=session,
                                            version=version).to_bytes()
                desc = sdp.build_answer(parsed, address=self.media_ip, port=self.media_port,
                                        session_id=session, version=version,
                                        protos=("RTP/AVP", "RTP/SAVP"))
                keyed = self.secure(cid, parsed, desc, now)
                return keyed if isinstance(keyed, str) else keyed.to_bytes()
            except sdp.SdpError:
                pass
        return sdp.build_audio_offer(self.media_ip, self.media_port, session_id=session,
                                     version=version).to_bytes()

    def on_event(self, ev: Event, now: float) -> None:
        ua = self.ua
        try:
            if ev.type == E.CALL_INVITE or ev.type == E.CALL_REINVITE:
                req = ev.request
                assert req is not None
                if ev.type == E.CALL_INVITE:
                    self.calls += 1
                    if self.ring:
                        ua.call_send_answer(ev.tid, 180, None, now)
                body = self._answer_sdp(ev.cid, req.body, now)
                if isinstance(body, str):
                    self._refuse(ev.tid, body, now)
                    return
                answer = ua.call_build_answer(ev.tid, 200)
                answer.set_body(body, "application/sdp")
                ua.call_send_answer(ev.tid, 200, answer, now)
                self.answered += ev.type == E.CALL_INVITE
            elif ev.type == E.CALL_MESSAGE_NEW:
                req = ev.request
                assert req is not None
                self.messages += 1
                status = 202 if req.method == "REFER" else 200
                answer = ua.call_build_answer(ev.tid, status)
                if req.method == "UPDATE" and req.body:
                    body = self._answer_sdp(ev.cid, req.body, now)
                    if isinstance(body, str):
                        self._refuse(ev.tid, body, now)
                        return
                    answer.set_body(body, "application/sdp")
                ua.call_send_answer(ev.tid, status, answer, now)
            elif ev.type == E.MESSAGE_NEW:
                req = ev.request
                assert req is not None
                self.messages += 1
                if req.method != "OPTIONS" or not ua.config.answer_options:
                    ua.message_send_answer(ev.tid, 200, None, now)
            elif ev.type == E.CALL_CLOSED:
                self.closed += 1
            elif ev.type == E.CALL_RELEASED:
                self._origins.pop(ev.cid, None)
                if self.release is not None:
                    self.release(ev.cid, now)
        except LocalProtocolError:
            pass  # the transaction is gone (e.g. CANCEL raced the answer): nothing to do

    def _refuse(self, tid: int, why: str, now: float) -> None:
        """488 to an SRTP offer we cannot key, saying why in a Warning (code 399)."""
        self.refused += 1
        answer = self.ua.call_build_answer(tid, 488)
        text = "".join(c for c in why if c >= " " and c not in '"\\')[:200]
        answer.set_header("Warning", f'399 sipload "{text}"')
        self.ua.call_send_answer(tid, 488, answer, now)
