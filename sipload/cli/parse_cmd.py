"""``sipload parse``: a SIP message linter.

Each file (``-`` for stdin) holds one message (a datagram) or a TCP-style
stream of several (``--stream`` makes it one even for a single message: then
every message must hold all its Content-Length bytes).  Per message it prints
valid, or invalid with the reason and the status a UAS would answer; a valid
message that a UAS still refuses by policy gets that answer beside it.  What
"valid" means is :mod:`sipload.sip.lint`'s rule.  ``--json`` prints one JSON
object per line instead.  Exit 0 when all are valid, 1 when any is invalid,
2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sipload.exitcodes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from sipload.sip.errors import ParseError
from sipload.sip.lint import lint
from sipload.sip.message import Request
from sipload.sip.parser import StreamFramer


def register(sub: Any) -> None:
    p = sub.add_parser("parse", help="check SIP messages: valid, or why not and what a UAS answers")
    p.add_argument("files", nargs="+", metavar="FILE", help="message file(s); - reads stdin")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.add_argument("--stream", action="store_true",
                   help="the file is a TCP/TLS stream (bytes missing at its end make the last "
                        "message incomplete), even with one message")
    p.set_defaults(func=run)


def split_messages(data: bytes, *, stream: bool = False) -> list[tuple[bytes, bool]]:
    """The messages of a file, each with True when it is judged as a datagram.

    One message is a datagram (its trailing bytes are the datagram's, RFC 3261
    §18.3) unless ``stream``.  Two or more framed by Content-Length are a stream:
    bytes left after the last whole one are an incomplete message."""
    framer = StreamFramer(max_message=1 << 24)  # a file, not a peer: 16 MiB
    try:
        parts = framer.feed(data)
    except ParseError:  # not framable: one message (the parser says what is wrong)
        return [(data, not stream)]
    if not stream and len(parts) <= 1:
        return [(data, True)]
    if not parts:
        return [(data, False)]
    out = [(p, False) for p in parts]
    rest = data[len(data) - framer.buffered:] if framer.buffered else b""
    if rest.strip(b"\r\n"):
        out.append((rest, False))  # what the stream held of a message it never finished
    return out


def describe(data: bytes, file: str, index: int, *, datagram: bool = True) -> dict[str, Any]:
    verdict = lint(data, datagram=datagram)
    msg = verdict.message
    out: dict[str, Any] = {
        "file": file, "index": index, "valid": verdict.valid, "kind": verdict.kind,
        "method": None, "status": None, "call_id": None, "reason": verdict.reason or None,
        "status_code": verdict.status, "uas_action": verdict.action,
    }
    if isinstance(msg, Request):
        out["method"] = msg.method
    elif msg is not None:
        out["status"] = msg.status
    elif verdict.kind == "request":
        first = data.lstrip(b"\r\n").split(b" ", 1)[0].decode("utf-8", "replace")
        out["method"] = first if first.isalpha() and len(first) < 40 else None
    if msg is not None:
        out["call_id"] = msg.get("call-id")
    return out


def run(args: argparse.Namespace) -> int:
    any_invalid = False
    for file in args.files:
        try:
            data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
        except OSError as e:
            print(f"sipload parse: {file}: {e.strerror}", file=sys.stderr)
            return EXIT_USAGE
        for i, (part, datagram) in enumerate(split_messages(data, stream=args.stream)):
            info = describe(part, file, i, datagram=datagram)
            any_invalid |= not info["valid"]
            if args.json:
                print(json.dumps(info, ensure_ascii=False))
            else:
                print(_line(info))
    return EXIT_FAILED if any_invalid else EXIT_OK


def _line(info: dict[str, Any]) -> str:
    what = info["method"] or info["status"] or "?"
    head = f"{info['file']}#{info['index']}: "
    code = info["status_code"]
    if info["valid"]:
        tail = ""
        if info["uas_action"] != "accept":
            tail = f" (a UAS would {info['uas_action']}"
            tail += f" with {code}" if code else ""
            tail += f": {info['reason']})"
        return f"{head}valid {info['kind']} {what}{tail}"
    answer = f"; a UAS answers {code}" if code else "; a UA discards it"
    return f"{head}invalid {info['kind']} {what}: {info['reason']}{answer}"
