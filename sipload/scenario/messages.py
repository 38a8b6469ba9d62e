"""What a step does to one message: overrides, SDP, captures, checks, marks.

Pure functions over a message and a call's values; the interpreter decides
when to call them.  Building follows the eXosip way: the user agent builds a
default message, the step sets, adds or removes headers and sets the body.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

from sipload.scenario.calls import Leg, Rng
from sipload.scenario.model import Body, Capture, Check, HeaderSpec, PauseStep
from sipload.sip import sdp
from sipload.sip.message import Message, Request
from sipload.stats.records import CallRecord, Result


def apply_overrides(msg: Message, headers: tuple[HeaderSpec, ...], body: bytes | None,
                    content_type: str | None, values: Mapping[str, str]) -> None:
    """Set, add or remove the step's headers; set its body (``None``: leave it)."""
    for name, vals in headers:
        if vals is None:
            msg.remove_header(name)
            continue
        rendered = [v.render(values) for v in vals]
        msg.set_header(name, rendered[0])
        for extra in rendered[1:]:
            msg.add_header(name, extra)
    if body is not None:
        msg.set_body(body, content_type)
    elif content_type is not None:
        msg.set_header("Content-Type", content_type)


def body_bytes(body: Body, leg: Leg, values: Mapping[str, str], ip: str, port: int,
               session_id: int, content_type: str | None,
               media: MediaSdp | None = None) -> tuple[bytes, str]:
    """The bytes and Content-Type of a step's body (an SDP by name, or text)."""
    if body.sdp:
        if media is not None:
            return media_sdp_body(leg, body.sdp, ip, port, session_id, media), \
                content_type or "application/sdp"
        return sdp_body(leg, body.sdp, ip, port, session_id), content_type or "application/sdp"
    text = body.text.render(values) if body.text is not None else ""
    ctype = content_type or ("application/sdp" if text.startswith("v=0") else "text/plain")
    return text.encode("utf-8"), ctype


def sdp_body(leg: Leg, kind: str, ip: str, port: int, session_id: int) -> bytes:
    """An offer, an answer to the leg's last remote SDP, or a hold/resume re-offer."""
    current = leg.local_sdp
    desc: sdp.SessionDescription
    if kind == "answer" and leg.remote_sdp:
        try:
            desc = sdp.build_answer(sdp.parse_sdp(leg.remote_sdp), address=ip, port=port,
                                    session_id=session_id,
                                    version=current.origin.sess_version + 1 if current else 0)
        except sdp.SdpError:
            desc = sdp.build_audio_offer(ip, port, session_id=session_id)
    elif kind in ("hold", "inactive") and current is not None:
        desc = sdp.hold(current, inactive=kind == "inactive")
    elif kind == "resume" and current is not None:
        desc = sdp.resume(current)
    elif kind == "offer" and current is not None:
        desc = sdp.bump_version(current)
    else:
        base, data = _default_offer_parts(ip, port, session_id)
        leg.sent_default_offer(base, session_id)
        return data
    leg.local_sdp = desc
    return desc.to_bytes()


class MediaSdp:
    """What a leg with RTP puts in its SDP: codecs, ptime, RTP/AVP or RTP/SAVP, and
    what ``announce`` adds (the SSRC; SRTP's a=crypto lines, given whether the
    description answers an offer)."""

    __slots__ = ("announce", "codecs", "proto", "ptime_ms")

    def __init__(self, codecs: tuple[str, ...], ptime_ms: int,
                 announce: Callable[[sdp.SessionDescription, bool], sdp.SessionDescription],
                 proto: str = "RTP/AVP") -> None:
        self.codecs = codecs
        self.ptime_ms = ptime_ms
        self.announce = announce
        self.proto = proto


def media_sdp_body(leg: Leg, kind: str, ip: str, port: int, session_id: int,
                   media: MediaSdp) -> bytes:
    """Like :func:`sdp_body` for a leg with RTP: its codecs, ptime and profile, its SSRC
    (and SRTP keys)."""
    current = leg.local_sdp
    desc: sdp.SessionDescription
    answering = kind == "answer" and bool(leg.remote_sdp)
    if answering:
        desc = sdp.build_answer(sdp.parse_sdp(leg.remote_sdp), address=ip, port=port,
                                session_id=session_id, supported=media.codecs,
                                ptime=media.ptime_ms, protos=(media.proto,),
                                version=current.origin.sess_version + 1 if current else 0)
    elif kind in ("hold", "inactive") and current is not None:
        desc = sdp.hold(current, inactive=kind == "inactive")
    elif kind == "resume" and current is not None:
        desc = sdp.resume(current)
    elif kind == "offer" and current is not None:
        desc = sdp.bump_version(current)
    else:
        desc = sdp.build_audio_offer(ip, port, session_id=session_id, codecs=media.codecs,
                                     ptime=media.ptime_ms, proto=media.proto)
    desc = media.announce(desc, answering)
    leg.local_sdp = desc
    return desc.to_bytes()


class _OfferTemplate:
    """The default audio offer for one address, serialized once.

    Calls differ only in the o= session id, so the bytes are spliced around it
    and the description's parts are shared: every SDP operation that derives a
    new description (hold, resume, bump_version) copies before it changes.
    """

    __slots__ = ("base", "prefix", "suffix")

    def __init__(self, ip: str, port: int) -> None:
        self.base = sdp.build_audio_offer(ip, port, session_id=0, username="sipload")
        text = self.base.to_bytes()
        marker = b"\r\no=sipload 0 0 "
        head, found, tail = text.partition(marker)
        if not found:  # cannot happen for this builder; fail loudly in tests if it does
            raise AssertionError("default offer without its o= line")
        self.prefix = head + b"\r\no=sipload "
        self.suffix = b" 0 " + tail


_OFFERS: dict[tuple[str, int], _OfferTemplate] = {}


def default_offer(ip: str, port: int, session_id: int) -> tuple[sdp.SessionDescription, bytes]:
    """The same as ``build_audio_offer(ip, port, session_id=..., username="sipload")``
    and its bytes, at a fraction of the cost (one per call of most scenarios)."""
    base, data = _default_offer_parts(ip, port, session_id)
    return (base, data) if session_id < 0 else (sdp.with_session_id(base, session_id), data)


def _default_offer_parts(ip: str, port: int, session_id: int
                         ) -> tuple[sdp.SessionDescription, bytes]:
    """The shared default offer for ``ip``/``port`` (session id 0) and the bytes of it
    under ``session_id``; for a negative id, the description the error comes from."""
    if session_id < 0:  # to_bytes refuses it, with the error a user should see
        desc = sdp.build_audio_offer(ip, port, session_id=session_id, username="sipload")
        return desc, desc.to_bytes()
    template = _OFFERS.get((ip, port))
    if template is None:
        if len(_OFFERS) >= 256:
            _OFFERS.clear()
        template = _OfferTemplate(ip, port)
        _OFFERS[(ip, port)] = template
    return template.base, template.prefix + str(session_id).encode() + template.suffix


def text_of(msg: Message, header: str, body: bool, uri: bool = False,
            message: bool = False) -> str | None:
    """The text a capture or check looks at (None: the header is absent)."""
    if body:
        return msg.body.decode("utf-8", "replace")
    if message:
        return msg.to_bytes().decode("utf-8", "replace")
    if uri:
        return msg.uri_text if isinstance(msg, Request) else None
    values = msg.get_all(header)
    return ", ".join(values) if values else None


def run_captures(captures: tuple[Capture, ...], msg: Message,
                 variables: dict[str, str]) -> str | None:
    """Store each capture; the name of the first required one that found nothing."""
    for c in captures:
        text = text_of(msg, c.header, c.body, c.uri, c.message)
        m = c.regex.search(text) if text is not None else None
        if m is None:
            if c.required:
                return f"capture {c.var}"
            variables.setdefault(c.var, "")
            continue
        group = c.group if c.group >= 0 else (1 if c.regex.groups else 0)
        variables[c.var] = m.group(group) or ""
    return None


def failed_check(checks: tuple[Check, ...], msg: Message,
                 values: Mapping[str, str]) -> str | None:
    """The name of the first check ``msg`` fails, or None."""
    for c in checks:
        text = text_of(msg, c.header, c.body, c.uri, c.message)
        ok = True
        if c.present is not None:
            ok = (text is not None and (text != "" or not c.body)) == c.present
        if ok and c.matches is not None:
            ok = text is not None and c.matches.search(text) is not None
        if ok and c.equals is not None:
            ok = text == c.equals.render(values)
        if not ok:
            return c.name
    return None


def sample_pause(step: PauseStep, rng: Rng) -> float:
    """A pause's length in seconds, drawn from its distribution (never negative)."""
    d = step.distribution
    if d == "fixed":
        value = step.a
    elif d == "uniform":
        value = rng.uniform(step.a, step.b)
    elif d == "normal":
        value = rng.gauss(step.a, step.b)
    elif d == "exponential":
        value = rng.expovariate(1.0 / step.a) if step.a > 0 else 0.0
    else:  # lognormal, given by the mean and standard deviation of the pause itself
        mean, sd = step.a, step.b
        if mean <= 0:
            return 0.0
        sigma2 = math.log(1 + (sd * sd) / (mean * mean))
        value = rng.lognormvariate(math.log(mean) - sigma2 / 2, math.sqrt(sigma2))
    return max(0.0, value)


_FIRST_PROVISIONAL = re.compile(r"^1[0-9][0-9] INVITE$")


def automatic_marks(rec: CallRecord) -> None:
    """Marks every call gets from its message log (seconds, never negative).

    The log's times are the socket stamps the shell gave (see
    :meth:`Sender.stamp_sent`), so a mark is what the wire saw.

    ``first_provisional``: first INVITE to its first 1xx; ``pdd``: to 180/183;
    ``answer``: to its 2xx; ``bye``: first BYE to its final answer; ``call``:
    the whole call, for successful calls.
    """
    invite_at: float | None = None
    bye_at: float | None = None
    marks = rec.marks
    for t, direction, label in rec.messages:
        if direction == "re":  # a retransmission: the first sending counts
            continue
        if direction == "out":
            if label == "INVITE" and invite_at is None:
                invite_at = t
            elif label == "BYE" and bye_at is None:
                bye_at = t
            continue
        if invite_at is not None:
            if "first_provisional" not in marks and _FIRST_PROVISIONAL.match(label):
                marks["first_provisional"] = max(0.0, t - invite_at)
            if "pdd" not in marks and label in ("180 INVITE", "183 INVITE"):
                marks["pdd"] = max(0.0, t - invite_at)
            if "answer" not in marks and label.startswith("2") and label.endswith(" INVITE"):
                marks["answer"] = max(0.0, t - invite_at)
        if bye_at is not None and "bye" not in marks and label.endswith(" BYE") \
                and label[0] in "23456":
            marks["bye"] = max(0.0, t - bye_at)
    if rec.result == Result.SUCCESS:
        marks["call"] = max(0.0, rec.end - rec.actual_start)
