"""``sipload conformance``: run RFC conformance cases against a SIP target.

Exit status: 0 no case failed or errored; 1 a case failed or errored (or, with
``--strict``, warned: a SHOULD not followed); 2 a
usage or profile error; 3 the target did not answer the reachability probe
(or the tester could not bind its sockets).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from sipload.cli.run_cmd import UsageError, parse_target
from sipload.conformance.model import PACKS, CaseResult, Verdict
from sipload.conformance.profile import Profile, ProfileError, load_profile
from sipload.conformance.runner import (
    RunSetup,
    Unreachable,
    all_cases,
    default_packs,
    exit_status,
    run,
    select,
)
from sipload.exitcodes import EXIT_CANNOT_RUN, EXIT_OK, EXIT_USAGE
from sipload.transport.loop import new_event_loop

_MARK = {Verdict.PASS: "PASS", Verdict.WARN: "WARN", Verdict.FAIL: "FAIL", Verdict.ERROR: "ERROR",
         Verdict.INCONCLUSIVE: "INCONCL", Verdict.NOT_APPLICABLE: "N/A"}


def register(sub: Any) -> None:
    p = sub.add_parser("conformance", help="run RFC conformance cases against a SIP target",
                       description="Run RFC 3261/3262/3665/4028/4475 conformance cases "
                                   "against a SIP UAS, proxy, registrar or UAC.")
    p.add_argument("--target", help="HOST[:PORT] of the element under test (default port 5060)")
    p.add_argument("--transport", choices=("udp", "tcp", "tls"), default=None,
                   help="default: the profile's, else udp")
    p.add_argument("--profile", help="the target's profile (YAML); default: a plain UAS")
    p.add_argument("--pack", action="append", choices=PACKS, default=[],
                   help="run only this pack (repeatable)")
    p.add_argument("--only", action="append", default=[], metavar="ID",
                   help="run only this case ID (repeatable; a trailing * matches a prefix)")
    p.add_argument("--slow", action="store_true",
                   help="also run the slow cases (64*T1 waits), like 'slow: true'")
    p.add_argument("--listen", default="127.0.0.1:0",
                   help="the tester's own HOST:PORT (default 127.0.0.1, any port)")
    p.add_argument("--out", help="run directory (default reports/<timestamp>-conformance)")
    p.add_argument("--cert", help="the tester's TLS certificate (PEM), for --transport tls")
    p.add_argument("--key", help="the tester's TLS private key (PEM)")
    p.add_argument("--tls-insecure", action="store_true",
                   help="do not verify the target's TLS certificate")
    p.add_argument("--list", action="store_true",
                   help="list the cases (ID, RFC section, pack, purpose) and exit")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 on a warning too (a SHOULD not followed), not only on a "
                        "broken MUST")
    p.add_argument("--markdown", action="store_true",
                   help="with --list: the catalogue in Markdown, with every rule quoted")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=main)


def _list(profile: Profile | None, packs: list[str], only: list[str],
          as_markdown: bool = False) -> int:
    cases = select(all_cases(), packs=packs, only=only, slow=True)
    if as_markdown:
        from sipload.conformance.catalogue import markdown

        print(markdown(cases), end="")
        return EXIT_OK
    for c in cases:
        slow = " (slow)" if c.slow else ""
        print(f"{c.id:<18} {c.reference:<20} {c.pack:<11} {c.purpose}{slow}")
    print(f"{len(cases)} cases")
    return EXIT_OK


def main(args: argparse.Namespace) -> int:
    try:
        profile = load_profile(args.profile) if args.profile else Profile(file="<default>")
    except ProfileError as e:
        print(f"sipload conformance: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.list:
        return _list(profile, args.pack, args.only, args.markdown)
    try:
        if not args.target and set(profile.roles) != {"uac"}:
            raise UsageError("--target HOST[:PORT] is required (or --list)")
        target = parse_target(args.target) if args.target else profile.uac.listen
        lhost, _, lport = args.listen.rpartition(":")
        if not lhost or not lport.isdigit() or int(lport) > 65535:
            raise UsageError(f"--listen: expected HOST:PORT, got {args.listen!r}")
        listen = (lhost.strip("[]"), int(lport))
    except UsageError as e:
        print(f"sipload conformance: {e}", file=sys.stderr)
        return EXIT_USAGE
    profile.target = target
    transport = args.transport or profile.transport
    profile.transport = transport
    tls_server = None
    if transport == "tls":
        if not args.cert:
            print("sipload conformance: --transport tls needs --cert (and --key): the tester "
                  "listens for TLS too", file=sys.stderr)
            return EXIT_USAGE
        from sipload.transport.tls import server_context

        tls_server = server_context(args.cert, args.key)
    packs = args.pack or ([] if args.only else default_packs(profile))
    cases = select(all_cases(), packs=packs, only=args.only, slow=args.slow or profile.slow)
    if not cases:
        print("sipload conformance: no case matches --pack/--only", file=sys.stderr)
        return EXIT_USAGE

    from sipload.conformance.evidence import default_out_dir, run_document, write_evidence

    out_dir = args.out or str(default_out_dir())

    def show(r: CaseResult) -> None:
        if not args.quiet:
            level = f" [{r.rule.level.value} {r.rule.ref}]" if r.rule is not None else ""
            print(f"{_MARK[r.verdict]:<8} {r.case.id:<18} {r.case.reference:<20} {r.reason}"
                  f"{level}", flush=True)

    started = time.time()
    t0 = time.monotonic()
    loop = new_event_loop()
    try:
        results = loop.run_until_complete(
            run(cases, profile, RunSetup((transport, *target), listen, args.tls_insecure,
                                         tls_server), show))
    except Unreachable as e:
        print(f"sipload conformance: target unreachable: {e}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except OSError as e:
        print(f"sipload conformance: cannot bind the tester's sockets: {e}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    finally:
        loop.close()
    document = run_document(results, profile, target=f"{target[0]}:{target[1]}",
                            transport=transport, started=started,
                            duration=time.monotonic() - t0)
    paths = write_evidence(out_dir, document, results)
    c = document["counts"]
    print(f"{len(results)} cases: {c['pass']} passed, {c['warn']} warned, {c['fail']} failed, "
          f"{c['error']} errors, {c['inconclusive']} inconclusive, "
          f"{c['not_applicable']} not applicable")
    print(f"evidence: {', '.join(str(p) for p in paths)}")
    return exit_status(results, strict=args.strict)
