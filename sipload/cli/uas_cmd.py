"""``sipload uas``: serve a UAS scenario, or the default UAS, until Ctrl-C.

With no scenario it answers like the default UAS (INVITE 100/180/200, BYE,
INFO, UPDATE, OPTIONS 200; everything else gets the UA core's RFC answers).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from sipload.cli import flags, targets
from sipload.cli.run_cmd import TRANSPORTS, UsageError
from sipload.cluster.worker import engine_limits
from sipload.engine import Engine, EngineConfig
from sipload.exitcodes import EXIT_CANNOT_RUN, EXIT_OK, EXIT_USAGE
from sipload.scenario.loader import ScenarioError, load_file, warm_media
from sipload.stats import rundir
from sipload.stats.records import Result
from sipload.stats.rundir import RunWriter
from sipload.transport.loop import new_event_loop, tune_gc
from sipload.transport.tls import server_context


def register(sub: Any) -> None:
    p = sub.add_parser("uas", help="answer calls: a UAS scenario, or the default UAS")
    p.add_argument("scenario", nargs="?", help="a UAS scenario (default: the default UAS)")
    p.add_argument("--listen", default="127.0.0.1:5060",
                   help="HOST:PORT (default 127.0.0.1:5060), or ws://HOST:PORT/ or "
                        "wss://HOST:PORT/ for SIP over WebSocket")
    p.add_argument("--transport", choices=TRANSPORTS, default=None)
    p.add_argument("--cert", help="TLS certificate (PEM, with --transport tls or wss)")
    p.add_argument("--key", help="TLS private key (PEM)")
    p.add_argument("--duration", type=flags.duration,
                   help="stop after this long (e.g. 60s); default: until Ctrl-C")
    p.add_argument("--reuse-port", action="store_true", help="SO_REUSEPORT on the socket")
    p.add_argument("--srtp", choices=("sdes",), default="",
                   help="the default UAS answers RTP/SAVP offers with SRTP keyed by SDES "
                        "(RFC 4568 a=crypto) and echoes the media protected; RTP/AVP offers "
                        "are answered as before (a UAS scenario says 'srtp: sdes' in its "
                        "media instead)")
    p.add_argument("--out", help="write each call's record (with its media figures) to "
                                 "DIR/calls.arrows as calls end (a UAS scenario only)")
    flags.add_limits(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        listen = targets.parse(args.listen, "--listen")
        host, port = listen.hostport
        chosen = targets.transport_for(listen, args.transport, "--listen")
        program = load_file(args.scenario) if args.scenario else None
        for w in program.warnings if program is not None else ():
            print(w, file=sys.stderr)
        if program is not None and program.role != "uas":
            raise UsageError(f"{args.scenario}: a {program.role} scenario; use 'sipload run'")
        transport = chosen or (program.transport if program else "udp")
        tls = None
        if transport in ("tls", "wss"):
            if not args.cert:
                raise UsageError(f"--transport {transport} needs --cert (and --key)")
            tls = server_context(args.cert, args.key)
        duration = args.duration
        if args.out and program is None:
            raise UsageError("--out needs a UAS scenario (the default UAS keeps no records)")
        if args.srtp and program is not None:
            raise UsageError("--srtp is for the default UAS; in a scenario, give its media "
                             "'srtp: sdes'")
    except (ScenarioError, UsageError, targets.TargetError) as e:
        print(f"sipload uas: {e}", file=sys.stderr)
        return EXIT_USAGE
    # the closing line's figures, counted as records come: a UAS runs until stopped, so
    # its records are not kept (with --out they are written as they come)
    tally = {"calls": 0, "ok": 0, "streams": 0, "received": 0}
    writer = RunWriter(Path(args.out)) if args.out else None
    if writer is not None:
        rundir.warm()  # not on the first records, while calls are being answered

    def on_records(batch: list[dict[str, Any]]) -> None:
        tally["calls"] += len(batch)
        for r in batch:
            if r["result"] == Result.SUCCESS.value:
                tally["ok"] += 1
            media = r.get("media")
            if media:
                tally["streams"] += 1
                tally["received"] += int(media.get("received", 0))
        if writer is not None:
            writer.append_records(batch)

    warm_media(program)
    engine = Engine(EngineConfig(program=program, transport=transport, local_host=host,
                                 local_port=port, tls_server=tls, reuse_port=args.reuse_port,
                                 duration=duration, srtp=args.srtp,
                                 **engine_limits(flags.limits(args))),
                    on_records=on_records)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    tune_gc()

    async def main() -> int:
        try:
            bound = await engine.start()
        except OSError as e:
            print(f"sipload uas: cannot listen on {args.listen}: {e.strerror}", file=sys.stderr)
            return EXIT_CANNOT_RUN
        print(f"sipload uas: listening on {transport}:{bound[0]}:{bound[1]}"
              f" ({program.name if program else 'default UAS'}); Ctrl-C stops", flush=True)
        loop.add_signal_handler(signal.SIGINT, engine.abort)
        loop.add_signal_handler(signal.SIGTERM, engine.abort)
        await engine.run()
        return EXIT_OK

    try:
        code = loop.run_until_complete(main())
    finally:
        loop.close()
        asyncio.set_event_loop(None)
        if writer is not None:
            writer.close()
    if program is not None:
        streams = tally["streams"]
        print(f"sipload uas: {tally['calls']} calls, {tally['ok']} succeeded"
              + (f"; media: {streams} streams, {tally['received']} packets received"
                 if streams else ""))
    elif engine.responder is not None:
        r = engine.responder
        print(f"sipload uas: {r.calls} calls answered, {r.closed} ended by BYE, "
              f"{r.messages} other requests"
              + (f", {r.refused} SRTP offers refused (488)" if r.refused else ""))
    return code
