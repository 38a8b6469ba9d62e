"""Initiate a call: the first snippet of the libeXosip2 how-to, line by line.

    python3 docs/examples/initiate_call.py --target 127.0.0.1:5060

Builds the default INVITE (``call_build_initial_invite``), adds
``Supported: 100rel`` and the how-to's SDP offer built from ``guess_localip``,
sends it (``call_send_initial_invite`` → cid) and attaches a reference to the
call (``call_set_reference``).  Then it prints every event: a reliable 180 is
PRACKed by the UA, the 2xx is ACKed, the call is held ``--hold`` seconds and
ended with ``call_terminate`` (BYE) unless the callee hangs up first.  With
``--username``/``--password`` a 401/407 challenge is answered
(``add_authentication_info``).

Exit status: 0 the call was answered and ended, 1 it failed (the final status
is printed), 3 nothing conclusive before ``--timeout``.
"""

from __future__ import annotations

import argparse
import sys

from _support import (
    CALL_FAILURES,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    SEED_SDP,
    E,
    Waiter,
    hang_up,
    start,
    uac_arguments,
    uri,
)

from sipload.runtime import UARuntime


def main() -> int:
    p = uac_arguments(__doc__.splitlines()[0])
    p.add_argument("--hold", type=float, default=0.2,
                   help="seconds between the ACK and our BYE (default 0.2)")
    p.add_argument("--username", help="digest user name for a 401/407 challenge")
    p.add_argument("--password", default="", help="digest password")
    p.add_argument("--rtp-port", default="10500", help="the audio port in the offer")
    args = p.parse_args()

    rt = start(args.listen, args.transport)
    try:
        return call(rt, args)
    finally:
        rt.close()


def call(rt: UARuntime, args: argparse.Namespace) -> int:
    ua = rt.ua
    waiter = Waiter(rt, args.timeout)
    if args.username:
        ua.add_authentication_info(args.username, args.username, args.password, "")
    to = f"<{uri(args.user, args.target[0], args.target[1], args.transport)}>"
    from_ = f"<{uri(args.from_user, rt.address[1], rt.address[2], args.transport)}>"
    reference = {"example": "initiate_call"}

    # ---- the how-to, line by line ---------------------------------------------
    # i = eXosip_call_build_initial_invite (ctx, &invite, to, from, NULL, subject);
    invite = ua.call_build_initial_invite(
        to, from_, None,  # optional route header
        "This is a call for a conversation")
    # osip_message_set_supported (invite, "100rel");
    invite.set_header("Supported", "100rel")
    # eXosip_guess_localip (ctx, AF_INET, localip, 128);
    localip = ua.guess_localip(4)  # 4: AF_INET
    # snprintf (tmp, 4096, "o=jack 0 0 IN IP4 %s\r\n" ..., localip, localip, port);
    tmp = SEED_SDP % (localip, localip, args.rtp_port)
    # osip_message_set_body (...); osip_message_set_content_type (invite, "application/sdp");
    invite.set_body(tmp.encode(), "application/sdp")
    # cid = eXosip_call_send_initial_invite (ctx, invite);
    cid = ua.call_send_initial_invite(invite)
    # if (cid > 0) eXosip_call_set_reference (ctx, cid, reference);
    if cid > 0:
        ua.call_set_reference(cid, reference)
    # ----------------------------------------------------------------------------
    print(f"INVITE sent: cid={cid} Supported: 100rel, SDP offer from {localip}", flush=True)

    while True:
        ev = waiter.until(lambda e: e.cid == cid)
        if ev is None:
            print("timeout: no final answer; terminating the call")
            ua.call_terminate(cid)  # CANCEL (or, once a 100 comes, CANCEL then)
            Waiter(rt, 0.5).until(lambda e: e.cid == cid and e.type is E.CALL_RELEASED)
            return EXIT_TIMEOUT
        if ev.type in (E.CALL_RINGING, E.CALL_PROCEEDING):
            resp = ev.response
            if resp is not None and "100rel" in resp.require:
                print(f"reliable provisional {ev.status} RSeq={resp.rseq}: PRACK sent by the UA",
                      flush=True)
        elif ev.type is E.CALL_ANSWERED:
            assert ev.response is not None
            print(f"answered: {ev.status} reference={ev.reference!r}", flush=True)
            ua.call_send_ack(ev.did)
            print(f"ACK sent: did={ev.did}", flush=True)
            break
        elif ev.type in CALL_FAILURES:
            print(f"call failed: {ev.status or ev.reason}")
            return EXIT_FAILED
        elif ev.type is E.CALL_RELEASED:
            print(f"call released: {ev.reason}")
            return EXIT_FAILED
    did = ev.did

    # hold the call; the callee may hang up first (BYE from the callee)
    hold = Waiter(rt, min(args.hold, waiter.left()))
    closed = hold.until(lambda e: e.cid == cid and e.type in (E.CALL_CLOSED, E.CALL_RELEASED))
    if closed is not None:
        print("the callee hung up (BYE received, 200 sent by the UA)")
        return EXIT_OK
    if not hang_up(rt, waiter, cid, did):
        print("timeout: the BYE was not answered")
        return EXIT_TIMEOUT
    print("call ended")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
