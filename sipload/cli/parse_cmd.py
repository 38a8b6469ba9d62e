"""``sipload parse``: a SIP message linter.

Each file (``-`` for stdin) holds one message or a TCP-style stream of several.
Per message it prints valid, or invalid with the reason and the status a UAS
would answer; ``--json`` prints one JSON object per line instead.
Exit 0 when all are valid, 1 when any is invalid, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sipload.sip.checks import verdict
from sipload.sip.errors import ParseError
from sipload.sip.message import Request
from sipload.sip.parser import StreamFramer, check_syntax, parse_message


def register(sub: Any) -> None:
    p = sub.add_parser("parse", help="check SIP messages: valid, or why not and what a UAS answers")
    p.add_argument("files", nargs="+", metavar="FILE", help="message file(s); - reads stdin")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.set_defaults(func=run)


def split_messages(data: bytes) -> list[bytes]:
    """One datagram, or a stream of several messages framed by Content-Length."""
    framer = StreamFramer()
    try:
        parts = framer.feed(data)
    except ParseError:
        return [data]
    if len(parts) <= 1 or framer.buffered:
        return [data]
    return parts


def describe(data: bytes, file: str, index: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "file": file, "index": index, "valid": False, "kind": None, "method": None,
        "status": None, "call_id": None, "reason": None, "status_code": None,
    }
    try:
        msg = parse_message(data)
    except ParseError as e:
        head = data.lstrip(b"\r\n")[:4].upper()
        out["kind"] = "response" if head == b"SIP/" else "request"
        if out["kind"] == "request":
            first = data.lstrip(b"\r\n").split(b" ", 1)[0].decode("utf-8", "replace")
            out["method"] = first if first.isalpha() and len(first) < 40 else None
        out["reason"] = e.reason
        out["status_code"] = None if out["kind"] == "response" else e.status
        return out
    if isinstance(msg, Request):
        out["kind"], out["method"] = "request", msg.method
    else:
        out["kind"], out["status"] = "response", msg.status
    cid = msg.get("call-id")
    out["call_id"] = cid
    try:
        check_syntax(msg)
    except ParseError as e:
        out["reason"] = e.reason
        out["status_code"] = e.status if out["kind"] == "request" else None
        return out
    out["valid"] = True
    action, status, reason = verdict(data)
    if action != "accept":
        out["reason"] = reason
        out["status_code"] = status
        out["uas_action"] = action
    else:
        out["uas_action"] = "accept"
    return out


def run(args: argparse.Namespace) -> int:
    any_invalid = False
    for file in args.files:
        try:
            data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
        except OSError as e:
            print(f"sipload parse: {file}: {e.strerror}", file=sys.stderr)
            return 2
        for i, part in enumerate(split_messages(data)):
            info = describe(part, file, i)
            any_invalid |= not info["valid"]
            if args.json:
                print(json.dumps(info, ensure_ascii=False))
            else:
                what = info["method"] or info["status"] or "?"
                if info["valid"]:
                    tail = ""
                    if info.get("uas_action") not in (None, "accept"):
                        code = info["status_code"]
                        tail = f" (a UAS would {info['uas_action']}"
                        tail += f" with {code}" if code else ""
                        tail += f": {info['reason']})"
                    print(f"{file}#{i}: valid {info['kind']} {what}{tail}")
                else:
                    code = info["status_code"]
                    answer = f"; a UAS answers {code}" if code else "; a UAC discards it"
                    print(f"{file}#{i}: invalid {info['kind']} {what}: {info['reason']}{answer}")
    return 1 if any_invalid else 0
