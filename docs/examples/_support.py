"""Plumbing shared by the examples: flags, event printing, bounded waits.

Nothing here is part of the eXosip2 mapping; each example keeps the lines that
translate the how-to in its own file.  Run the examples from the repository
root (``python3 docs/examples/initiate_call.py --help``); this module is found
beside them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from sipload.runtime import UARuntime
from sipload.sip.errors import LocalProtocolError
from sipload.ua.agent import DEFAULT_ALLOW, UAConfig
from sipload.ua.events import Event, EventType

E = EventType

DEFAULT_ALLOW_PLUS = (*DEFAULT_ALLOW, "PRIVATECOMMAND")
"""What the answering examples allow: the UA's methods and the how-to's private one."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3

CALL_FAILURES = frozenset({
    E.CALL_REDIRECTED, E.CALL_REQUESTFAILURE, E.CALL_SERVERFAILURE, E.CALL_GLOBALFAILURE,
    E.CALL_NOANSWER, E.TRANSPORT_ERROR,
})
"""Events that end an outgoing call before it is answered."""

SEED_SDP = (
    "v=0\r\n"
    "o=jack 0 0 IN IP4 %s\r\n"
    "s=conversation\r\n"
    "c=IN IP4 %s\r\n"
    "t=0 0\r\n"
    "m=audio %s RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-11\r\n"
)
"""The how-to's audio offer.  The excerpt in the how-to starts at ``o=``; the
full libeXosip2 example (and RFC 8866) also has ``v=0`` and ``s=``, kept here
so the body is a valid SDP."""


def hostport(text: str, default_port: int = 5060) -> tuple[str, int]:
    """``HOST[:PORT]`` (an IPv6 literal in brackets) as (host, port)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = text.partition(":")
    try:
        number = int(port) if port else default_port
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}") from None
    if not 0 <= number < 65536:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}")
    return host, number


def uac_arguments(description: str) -> argparse.ArgumentParser:
    """The flags every calling example takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--target", type=hostport, default=("127.0.0.1", 5060),
                   help="HOST:PORT to call (default 127.0.0.1:5060)")
    p.add_argument("--listen", type=hostport, default=("127.0.0.1", 0),
                   help="local HOST:PORT (default 127.0.0.1, any port)")
    p.add_argument("--user", default="bob", help="user part of the callee's URI")
    p.add_argument("--from-user", default="jack", help="user part of our URI")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="give up after this many seconds (default 10)")
    p.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    return p


def start(listen: tuple[str, int], transport: str = "udp", *,
          allow: tuple[str, ...] | None = None) -> UARuntime:
    """A blocking runtime on ``listen`` (eXosip_init + eXosip_listen_addr)."""
    config = UAConfig(host=listen[0], port=listen[1], transport=transport,
                      user_agent="sipload-example")
    if allow is not None:
        config.allow = allow
    return UARuntime.start_sync(config)


def uri(user: str, host: str, port: int, transport: str = "udp") -> str:
    tp = "" if transport == "udp" else f";transport={transport}"
    return f"sip:{user}@{host}:{port}{tp}"


def describe(ev: Event) -> str:
    """One line per event: type, ids, status or method, reason, the user's reference."""
    parts = [f"event {ev.type.value}", f"cid={ev.cid}", f"did={ev.did}", f"tid={ev.tid}"]
    if ev.response is not None:
        parts.append(f"status={ev.status} {ev.response.reason}")
    elif ev.request is not None:
        parts.append(f"method={ev.method}")
    if ev.reference is not None:
        parts.append(f"reference={ev.reference!r}")
    if ev.reason:
        parts.append(f"reason={ev.reason!r}")
    return " ".join(parts)


class Waiter:
    """Bounded waits on one runtime: every event is printed as it comes."""

    def __init__(self, rt: UARuntime, timeout: float) -> None:
        self.rt = rt
        self.deadline = time.monotonic() + timeout

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def next(self, limit: float | None = None) -> Event | None:
        """The next event, or None once ``limit`` (or the overall deadline) passed."""
        wait = self.left() if limit is None else min(limit, self.left())
        ev = self.rt.event_wait(max(wait, 0.0))
        if ev is not None:
            print(describe(ev), flush=True)
        return ev

    def until(self, done: Callable[[Event], bool]) -> Event | None:
        """Events until ``done(event)`` says so; None when the deadline passes."""
        while self.left() > 0:
            ev = self.next()
            if ev is not None and done(ev):
                return ev
        return None


def place_call(rt: UARuntime, args: argparse.Namespace, waiter: Waiter,
               reference: object = None) -> Event | None:
    """INVITE with the seed's SDP; returns CALL_ANSWERED (ACK sent) or None (printed why)."""
    ua = rt.ua
    host, port = args.target
    invite = ua.call_build_initial_invite(
        f"<{uri(args.user, host, port, args.transport)}>",
        f"<{uri(args.from_user, rt.address[1], rt.address[2], args.transport)}>",
        None, "This is a call for a conversation")
    localip = ua.guess_localip(4)
    invite.set_body((SEED_SDP % (localip, localip, 10500)).encode(), "application/sdp")
    cid = ua.call_send_initial_invite(invite)
    if reference is not None:
        ua.call_set_reference(cid, reference)
    print(f"INVITE sent: cid={cid}", flush=True)
    ev = waiter.until(lambda e: e.cid == cid and (
        e.type is E.CALL_ANSWERED or e.type in CALL_FAILURES or e.type is E.CALL_RELEASED))
    if ev is None:
        print("no answer before the timeout")
        return None
    if ev.type is not E.CALL_ANSWERED:
        print(f"call failed: {ev.status or ev.reason or ev.type.value}")
        return None
    ua.call_send_ack(ev.did)
    print(f"ACK sent: did={ev.did}", flush=True)
    return ev


def hang_up(rt: UARuntime, waiter: Waiter, cid: int, did: int) -> bool:
    """eXosip_call_terminate, then wait for the call to be released."""
    try:
        rt.ua.call_terminate(cid, did)
    except LocalProtocolError as e:  # the call is already gone (the peer hung up)
        print(f"terminate: {e}")
        return True
    print(f"terminate: cid={cid} did={did}", flush=True)
    return waiter.until(lambda e: e.cid == cid and e.type is E.CALL_RELEASED) is not None
