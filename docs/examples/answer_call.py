"""Answer a call: the how-to's second snippet, line by line.

    python3 docs/examples/answer_call.py --listen 127.0.0.1:5060

On each ``CALL_INVITE`` it sends 180 Ringing (``call_send_answer(tid, 180)``),
then, ``--answer-after`` seconds later (and once a reliable 180 is PRACKed),
builds the 200 (``call_build_answer``) and completes it with an SDP answer to
the offer (the how-to's ``sdp_complete_200ok``).  The how-to's error paths:
when the answer cannot be built it sends 400, when no SDP answer can be made
(no offer, a bad one, no common codec) it sends 415.  ``--status 486`` answers
with that final status instead.

Inside a call it prints and answers (200) what arrives: INFO, PRIVATECOMMAND
(with its ``P-MyCommand`` header and body), UPDATE, re-INVITE.  With
``--hangup-after`` it ends the call itself (BYE from the callee) that long
after the ACK.  It stops after ``--calls`` calls have ended, or at
``--timeout``.

Exit status: 0 when ``--calls`` calls ended, 3 on timeout.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

from _support import DEFAULT_ALLOW_PLUS, EXIT_OK, EXIT_TIMEOUT, E, Waiter, hostport, start

from sipload.runtime import UARuntime
from sipload.sip import sdp
from sipload.sip.errors import LocalProtocolError
from sipload.sip.message import Request, Response
from sipload.ua.events import Event


@dataclass
class Incoming:
    """An incoming call not answered finally yet."""

    tid: int
    did: int
    offer: bytes
    answer_at: float
    prack_wanted: bool


def sdp_complete_200ok(did: int, answer: Response, offer: bytes, localip: str) -> int:
    """The how-to leaves this to the program: an SDP answer to ``offer``; 0 on success."""
    try:
        sd = sdp.build_answer(sdp.parse_sdp(offer), address=localip, port=20000 + 2 * did,
                              session_id=did)
    except sdp.SdpError:
        return -1
    # osip_message_set_body (answer, tmp, strlen (tmp));
    # osip_message_set_content_type (answer, "application/sdp");
    answer.set_body(sd.to_bytes(), "application/sdp")
    return 0


def answer_200(rt: UARuntime, call: Incoming) -> None:
    """The how-to's answer, line by line (with the two error paths)."""
    ua = rt.ua
    tid, did = call.tid, call.did
    # i = eXosip_call_build_answer (ctx, evt->tid, 200, &answer);
    try:
        answer: Response | None = ua.call_build_answer(tid, 200)
    except LocalProtocolError:
        answer = None
    # if (i != 0) eXosip_call_send_answer (ctx, evt->tid, 400, NULL);
    if answer is None:
        ua.call_send_answer(tid, 400, None)
        print(f"answered 400: tid={tid}", flush=True)
        return
    # i = sdp_complete_200ok (evt->did, answer);
    i = sdp_complete_200ok(did, answer, call.offer, ua.guess_localip(4))
    # if (i != 0) { osip_message_free (answer); eXosip_call_send_answer (..., 415, NULL); }
    if i != 0:
        answer = None
        ua.call_send_answer(tid, 415, None)
        print(f"answered 415: no SDP answer to the offer (tid={tid})", flush=True)
        return
    # eXosip_call_send_answer (ctx, evt->tid, 200, answer);
    ua.call_send_answer(tid, 200, answer)
    print(f"answered 200 with SDP: tid={tid} did={did}", flush=True)


def show_request(req: Request) -> None:
    line = f"{req.method} received"
    for name in ("P-MyCommand", "Content-Type"):
        value = req.get(name)
        if value is not None:
            line += f" {name}: {value}"
    print(line, flush=True)
    if req.body:
        print(f"  body: {req.body!r}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", type=hostport, default=("127.0.0.1", 5060),
                   help="HOST:PORT to listen on (default 127.0.0.1:5060)")
    p.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    p.add_argument("--calls", type=int, default=1, help="stop after this many calls ended")
    p.add_argument("--answer-after", type=float, default=0.0,
                   help="seconds between the 180 and the final answer (default 0)")
    p.add_argument("--status", type=int, default=200,
                   help="final answer: 200 (default, with SDP) or an error status")
    p.add_argument("--hangup-after", type=float, default=None,
                   help="send BYE ourselves this many seconds after the ACK")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="give up after this many seconds (default 30)")
    args = p.parse_args()

    rt = start(args.listen, args.transport, allow=DEFAULT_ALLOW_PLUS)
    try:
        print(f"listening on {rt.address[0]}:{rt.address[1]}:{rt.address[2]}", flush=True)
        return serve(rt, args)
    finally:
        rt.close()


def serve(rt: UARuntime, args: argparse.Namespace) -> int:
    ua = rt.ua
    waiter = Waiter(rt, args.timeout)
    pending: dict[int, Incoming] = {}  # cid -> not yet answered
    hangups: dict[int, tuple[float, int]] = {}  # cid -> (when, did)
    ended = 0
    while ended < args.calls:
        now = time.monotonic()
        for cid, call in list(pending.items()):
            if call.answer_at <= now and not call.prack_wanted:
                del pending[cid]
                try:
                    if args.status == 200:
                        answer_200(rt, call)
                    else:
                        ua.call_send_answer(call.tid, args.status, None)
                        print(f"answered {args.status}: tid={call.tid}", flush=True)
                except LocalProtocolError as e:
                    print(f"cannot answer: {e}", flush=True)
        for cid, (when, did) in list(hangups.items()):
            if when <= now:
                del hangups[cid]
                try:
                    ua.call_terminate(cid, did)
                    print(f"terminate (callee hangs up): cid={cid} did={did}", flush=True)
                except LocalProtocolError as e:
                    print(f"cannot terminate: {e}", flush=True)
        dues = [c.answer_at for c in pending.values() if not c.prack_wanted]
        dues += [w for w, _ in hangups.values()]
        if waiter.left() <= 0:
            print(f"timeout after {ended} calls")
            return EXIT_TIMEOUT
        ev = waiter.next(max(0.0, min(dues) - now) if dues else None)
        if ev is None:
            continue
        try:
            handle(rt, ev, pending, hangups, args)
        except LocalProtocolError as e:
            # eXosip would return an error code: e.g. a CANCEL that came before we
            # took the CALL_INVITE ended the transaction already (487 sent by the UA)
            print(f"cannot act on {ev.type.value}: {e}", flush=True)
        if ev.type is E.CALL_RELEASED:
            pending.pop(ev.cid, None)
            hangups.pop(ev.cid, None)
            ended += 1
    print(f"done: {ended} calls")
    return EXIT_OK


def handle(rt: UARuntime, ev: Event, pending: dict[int, Incoming],
           hangups: dict[int, tuple[float, int]], args: argparse.Namespace) -> None:
    ua = rt.ua
    req = ev.request
    if ev.type is E.CALL_INVITE:
        assert req is not None
        # eXosip_call_send_answer (ctx, evt->tid, 180, NULL);
        ua.call_send_answer(ev.tid, 180, None)
        reliable = "100rel" in req.require or (
            ua.config.use_100rel and "100rel" in req.supported)
        print(f"180 sent{' reliably (Require: 100rel)' if reliable else ''}: tid={ev.tid}",
              flush=True)
        pending[ev.cid] = Incoming(ev.tid, ev.did, req.body,
                                   time.monotonic() + args.answer_after, reliable)
    elif ev.type is E.CALL_MESSAGE_NEW:
        assert req is not None
        show_request(req)
        if req.method == "PRACK":  # the UA answered it: the 200 may go now
            call = pending.get(ev.cid)
            if call is not None:
                call.prack_wanted = False
            return
        ua.call_send_answer(ev.tid, 200, None)
        print(f"answered {req.method} with 200", flush=True)
    elif ev.type is E.CALL_REINVITE:
        assert req is not None
        answer_200(rt, Incoming(ev.tid, ev.did, req.body, 0.0, False))
    elif ev.type is E.CALL_ACK and args.hangup_after is not None:
        hangups[ev.cid] = (time.monotonic() + args.hangup_after, ev.did)
    elif ev.type is E.CALL_CANCELLED:
        pending.pop(ev.cid, None)
        print("the caller cancelled: 487 sent by the UA", flush=True)
    elif ev.type is E.CALL_CLOSED:
        print("the caller hung up: 200 sent by the UA", flush=True)


if __name__ == "__main__":
    sys.exit(main())
