"""Terminate a call: the how-to's ``eXosip_call_terminate (ctx, cid, did)``.

    python3 docs/examples/terminate_call.py --target 127.0.0.1:5060 --at ringing

Places a call and ends it with ``call_terminate(cid, did)`` at the moment
``--at`` names; the UA picks the request from the call's state:

* ``calling``: at once, before any response.  RFC 3261 §9.1 forbids a CANCEL
  before a provisional response ("you can't stop a call where no 100 Trying has
  been received"): the UA holds it and sends the CANCEL when one arrives;
* ``ringing`` (default): on the first 180 (or 183): a CANCEL, answered 200 by
  the callee, whose INVITE then ends with 487;
* ``answered``: after the 2xx and our ACK: a BYE.

Use ``answer_call.py --answer-after 2`` as the callee to see the CANCEL win the
race against the 200; if the 200 crosses the CANCEL the UA ACKs it and sends BYE.

Exit status: 0 the call ended, 1 it failed otherwise, 3 timeout.
"""

from __future__ import annotations

import sys

from _support import (
    CALL_FAILURES,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    SEED_SDP,
    E,
    Waiter,
    start,
    uac_arguments,
    uri,
)

from sipload.ua.events import Event
from sipload.ua.state import CallState

WHAT_TERMINATE_SENDS = {
    CallState.CALLING: "CANCEL, once a provisional response arrives",
    CallState.PROCEEDING: "CANCEL",
    CallState.CONFIRMED: "BYE",
}


def main() -> int:
    p = uac_arguments(__doc__.splitlines()[0])
    p.add_argument("--at", choices=("calling", "ringing", "answered"), default="ringing",
                   help="when to terminate (default ringing)")
    args = p.parse_args()
    rt = start(args.listen, args.transport)
    ua = rt.ua
    waiter = Waiter(rt, args.timeout)
    try:
        invite = ua.call_build_initial_invite(
            f"<{uri(args.user, args.target[0], args.target[1], args.transport)}>",
            f"<{uri(args.from_user, rt.address[1], rt.address[2], args.transport)}>")
        localip = ua.guess_localip(4)
        invite.set_body((SEED_SDP % (localip, localip, 10500)).encode(), "application/sdp")
        cid = ua.call_send_initial_invite(invite)
        print(f"INVITE sent: cid={cid}", flush=True)
        did = 0
        if args.at != "calling":
            wanted = {"ringing": (E.CALL_RINGING,), "answered": (E.CALL_ANSWERED,)}[args.at]
            ev = waiter.until(lambda e: e.cid == cid and (
                e.type in wanted or e.type in CALL_FAILURES or e.type is E.CALL_RELEASED
                or (e.type is E.CALL_PROCEEDING and e.status > 100 and args.at == "ringing")))
            if ev is None:
                print("timeout before the call could be terminated")
                return EXIT_TIMEOUT
            if ev.type in CALL_FAILURES or ev.type is E.CALL_RELEASED:
                print(f"call failed before terminate: {ev.status or ev.reason}")
                return EXIT_FAILED
            did = ev.did
            if ev.type is E.CALL_ANSWERED:
                ua.call_send_ack(did)
                print(f"ACK sent: did={did}", flush=True)
        state = ua.call_state(cid)
        assert state is not None
        print(f"call state {state.name}: terminate sends "
              f"{WHAT_TERMINATE_SENDS.get(state, 'nothing')}", flush=True)
        # eXosip_call_terminate (ctx, cid, did);
        ua.call_terminate(cid, did)
        statuses: list[int] = []

        def done(e: Event) -> bool:
            if e.cid == cid and e.status >= 200:
                statuses.append(e.status)
            return e.cid == cid and e.type is E.CALL_RELEASED

        end = waiter.until(done)
        if end is None:
            print("timeout: the call did not end")
            return EXIT_TIMEOUT
        print(f"call ended: {end.reason} (final statuses seen: {statuses})")
        return EXIT_OK
    finally:
        rt.close()


if __name__ == "__main__":
    sys.exit(main())
