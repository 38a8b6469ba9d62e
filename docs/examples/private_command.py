"""Send any request inside a call: the how-to's PRIVATECOMMAND snippet, line by line.

    python3 docs/examples/private_command.py --target 127.0.0.1:5060

Places a call; once it is answered (and ACKed) it builds a ``PRIVATECOMMAND``
inside the dialog (``call_build_request(did, "PRIVATECOMMAND")``), gives it the
body ``room=1;light=on\\r\\nroom=2;light=off\\r\\n`` typed
``application/antisip-domotic`` and the header ``P-MyCommand: option=value``,
sends it (``call_send_request``), prints the answer and hangs up.

The how-to sets ``P-MyCommand`` on ``invite`` (a slip: that INVITE is long
sent); here it goes on the PRIVATECOMMAND, as the text intends.  A UA that does
not know the method answers 405 or 501: ``answer_call.py`` allows it and
answers 200; sipload's default UAS answers 501 with its Allow list.

Exit status: 0 the request got a 2xx, 1 another answer (or the call failed),
3 timeout.
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


def send_private_command(rt: UARuntime, did: int) -> int:
    """The how-to's snippet; returns the request's tid."""
    ua = rt.ua
    # i = eXosip_call_build_request (ctx, evt->did, "PRIVATECOMMAND", &message);
    message = ua.call_build_request(did, "PRIVATECOMMAND")
    # snprintf (body, 999, "room=1;light=on\r\nroom=2;light=off\r\n");
    body = "room=1;light=on\r\nroom=2;light=off\r\n"
    # osip_message_set_content_type (message, "application/antisip-domotic");
    # osip_message_set_body (message, body, strlen (body));
    message.set_body(body.encode(), "application/antisip-domotic")
    # osip_message_set_header (message, "P-MyCommand", "option=value");
    message.set_header("P-MyCommand", "option=value")
    # i = eXosip_call_send_request (ctx, evt->did, message);
    return ua.call_send_request(did, message)


def main() -> int:
    p = uac_arguments(__doc__.splitlines()[0])
    args = p.parse_args()
    rt = start(args.listen, args.transport)
    waiter = Waiter(rt, args.timeout)
    try:
        answered = place_call(rt, args, waiter)
        if answered is None:
            return EXIT_TIMEOUT if waiter.left() <= 0 else EXIT_FAILED
        cid, did = answered.cid, answered.did
        tid = send_private_command(rt, did)
        print(f"PRIVATECOMMAND sent: tid={tid}", flush=True)
        ev = waiter.until(lambda e: (e.tid == tid and e.status >= 200) or (
            e.cid == cid and e.type is E.CALL_RELEASED))
        if ev is None:
            print("timeout: PRIVATECOMMAND not answered")
            return EXIT_TIMEOUT
        if ev.type is E.CALL_RELEASED:
            print("the call ended before PRIVATECOMMAND was answered")
            return EXIT_FAILED
        allow = ev.response.get("Allow") if ev.response is not None else None
        print(f"PRIVATECOMMAND answered {ev.status}" + (f" (Allow: {allow})" if allow else ""),
              flush=True)
        if not hang_up(rt, waiter, cid, did):
            return EXIT_TIMEOUT
        return EXIT_OK if 200 <= ev.status < 300 else EXIT_FAILED
    finally:
        rt.close()


if __name__ == "__main__":
    sys.exit(main())
