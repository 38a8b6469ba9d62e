"""Send DTMF in INFO requests inside a call: the how-to's INFO snippet, line by line.

    python3 docs/examples/info_dtmf.py --target 127.0.0.1:5060 --digits 123#

Places a call; once it is answered (and ACKed) it sends one INFO per digit with
``Content-Type: application/dtmf-relay`` and the body
``Signal=<digit>\\r\\nDuration=250\\r\\n`` (``call_build_info`` → set the body →
``call_send_request(did, info)``), waits for each answer, then hangs up.

Exit status: 0 every INFO got a 2xx, 1 the call or an INFO failed, 3 timeout.
"""

from __future__ import annotations

import sys

from _support import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    E,
    Waiter,
    hang_up,
    place_call,
    start,
    uac_arguments,
)

from sipload.runtime import UARuntime
from sipload.ua.events import Event

INFO_ANSWERS = frozenset({
    E.CALL_MESSAGE_ANSWERED, E.CALL_MESSAGE_REDIRECTED, E.CALL_MESSAGE_REQUESTFAILURE,
    E.CALL_MESSAGE_SERVERFAILURE, E.CALL_MESSAGE_GLOBALFAILURE, E.CALL_RELEASED,
})


def send_dtmf(rt: UARuntime, did: int, c: str) -> int:
    """The how-to's snippet; returns the INFO's tid (or a negative number)."""
    ua = rt.ua
    # i = eXosip_call_build_info (ctx, evt->did, &info);
    info = ua.call_build_info(did)
    # snprintf (dtmf_body, 999, "Signal=%c\r\nDuration=250\r\n", c);
    dtmf_body = f"Signal={c}\r\nDuration=250\r\n"
    # osip_message_set_content_type (info, "application/dtmf-relay");
    # osip_message_set_body (info, dtmf_body, strlen (dtmf_body));
    info.set_body(dtmf_body.encode(), "application/dtmf-relay")
    # i = eXosip_call_send_request (ctx, evt->did, info);
    return ua.call_send_request(did, info)


def main() -> int:
    p = uac_arguments(__doc__.splitlines()[0])
    p.add_argument("--digits", default="123#", help="the DTMF digits to send (default 123#)")
    args = p.parse_args()
    rt = start(args.listen, args.transport)
    waiter = Waiter(rt, args.timeout)
    try:
        answered = place_call(rt, args, waiter)
        if answered is None:
            return EXIT_TIMEOUT if waiter.left() <= 0 else EXIT_FAILED
        cid, did = answered.cid, answered.did
        failed = 0
        for c in args.digits:
            tid = send_dtmf(rt, did, c)
            print(f"INFO sent: Signal={c} tid={tid}", flush=True)

            def answer_to_info(e: Event, tid: int = tid) -> bool:
                return (e.tid == tid and e.type in INFO_ANSWERS) or (
                    e.cid == cid and e.type is E.CALL_RELEASED)

            ev = waiter.until(answer_to_info)
            if ev is None:
                print("timeout: the INFO was not answered")
                return EXIT_TIMEOUT
            if ev.type is E.CALL_RELEASED:
                print("the call ended before every digit was sent")
                return EXIT_FAILED
            print(f"INFO Signal={c} answered {ev.status}", flush=True)
            failed += not 200 <= ev.status < 300
        if not hang_up(rt, waiter, cid, did):
            return EXIT_TIMEOUT
        print(f"done: {len(args.digits)} INFO sent, {failed} failed")
        return EXIT_FAILED if failed else EXIT_OK
    finally:
        rt.close()


if __name__ == "__main__":
    sys.exit(main())
