"""``sipload run``: a load run over worker processes, ending in a report.

Loads and validates the scenario (and CSV) first: any error names the file,
line and column (or the flag) and nothing is sent.  Without ``--target`` it
starts its own UAS on loopback: the scenario's ``counterpart`` if it names
one, else the default UAS.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

from sipload import __version__
from sipload.cli import flags, sources, targets
from sipload.cluster import collector
from sipload.cluster.channel import ChannelError, Keys, is_loopback_host, is_loopback_url
from sipload.cluster.run import Child, EmbeddedUas, run_load, spawn_workers, stop_process
from sipload.exitcodes import EXIT_CANNOT_RUN, EXIT_USAGE
from sipload.report.thresholds import parse_allowance
from sipload.scenario.inject import Injection, load_injection
from sipload.scenario.loader import ScenarioError, load_file
from sipload.scenario.model import Program
from sipload.stats.rundir import RunWriter
from sipload.stats.traces import DEFAULT_LIMIT, MODES
from sipload.transport import CONNECTIONS
from sipload.transport.dns import Located, LocateError, locate, make_resolver, parse_wanted


class UsageError(Exception):
    """A bad flag value; the message names the flag."""


TRANSPORTS = ("udp", "tcp", "tls", "ws", "wss")


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run a load test (UAC scenario) and write a report")
    p.add_argument("scenario", help="the scenario file (YAML)")
    p.add_argument("--target", help="HOST[:PORT], or ws://HOST[:PORT][/PATH] or wss://... "
                                     "(SIP over WebSocket) to call; without it an embedded "
                                     "UAS answers")
    p.add_argument("--transport", choices=TRANSPORTS, default=None)
    p.add_argument("--dns-server", type=_dns_server, default=None, metavar="ADDRESS[:PORT]",
                   help="locate --target (RFC 3263 NAPTR/SRV/A) with this DNS server "
                        "instead of the system's")
    p.add_argument("--source-addresses", default=None, metavar="LIST",
                   help="spread calls over these local addresses, e.g. 127.0.0.2-127.0.0.40,"
                        " 127.0.1.0/28 or a comma list (each worker takes its own share)")
    p.add_argument("--rate", type=flags.positive_float, default=10.0,
                   help="calls per second (default 10)")
    limit = p.add_mutually_exclusive_group()
    limit.add_argument("--calls", type=flags.positive_int, help="how many calls in all")
    limit.add_argument("--duration", type=flags.duration,
                       help="how long to start calls (e.g. 30s, 5m)")
    p.add_argument("--concurrent", type=flags.positive_int, default=10_000,
                   help="most calls in progress at once (per run; starts beyond it are dropped"
                        " and counted)")
    p.add_argument("--workers", type=flags.positive_int, default=None,
                   help="worker processes (default: one per core; at most "
                        f"{flags.WORKERS_PER_CORE} per core unless --force-workers)")
    p.add_argument("--force-workers", action="store_true",
                   help="allow more than that many --workers")
    p.add_argument("--users", type=flags.positive_int, help="closed model: this many calls at once")
    p.add_argument("--arrival", choices=("uniform", "poisson"), default="uniform")
    p.add_argument("--rate-increase", type=flags.non_negative_float, default=0.0, metavar="D")
    p.add_argument("--rate-interval", type=flags.duration_or_zero, default=0.0, metavar="T")
    p.add_argument("--rate-max", type=flags.positive_float, default=None, metavar="M")
    p.add_argument("--inject", help="CSV file in SIPp -inf format")
    p.add_argument("--trace", choices=MODES, default="failed",
                   help="keep the wire messages of failed calls (default), all calls or none:"
                        " traces.arrows and messages.pcap in the run directory")
    p.add_argument("--trace-limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                   help=f"traced calls per failure reason per worker (default {DEFAULT_LIMIT})")
    p.add_argument("--out", help="run directory (default reports/<timestamp>-<scenario>/)")
    p.add_argument("--threshold", action="append", default=[], metavar="EXPR",
                   help="e.g. 'answer.p95<200ms', 'asr>=0.99', 'failed.rate<0.5%%'")
    p.add_argument("--allow-failures", type=_share, default=0.0, metavar="SHARE",
                   help="share of attempted calls that may fail before the run fails "
                        "(exit 1), e.g. 1%% or 0.01 (default 0: any failed call)")
    p.add_argument("--bind", default="tcp://127.0.0.1:0",
                   help="control channel address; beyond loopback --keys is required")
    p.add_argument("--keys", help="CurveZMQ key folder (sipload keys DIR)")
    p.add_argument("--local-workers", type=flags.non_negative_int, default=None,
                   help="start this many local workers (the rest connect remotely)")
    p.add_argument("--wait-workers", type=flags.duration, default=30.0, metavar="T",
                   help="how long to wait for all --workers to be ready before starting "
                        "with those that are (default 30s)")
    p.add_argument("--t1", type=flags.timer_t1, default=0.5,
                   help=f"SIP timer T1 (default 500ms, at most {flags.MAX_T1:g}s)")
    p.add_argument("--grace", type=flags.duration_or_zero, default=5.0,
                   help="how long calls in flight get on stop")
    p.add_argument("--seed", type=flags.seed, default=None)
    p.add_argument("--tls-insecure", action="store_true",
                   help="do not verify the TLS target's certificate or name (a warning in "
                        "the output and summary.json says so)")
    p.add_argument("--tls-ca", metavar="FILE",
                   help="TLS: trust only the CA (or self-signed) certificates in this PEM "
                        "file instead of the system's (verification stays on)")
    p.add_argument("--connections", choices=CONNECTIONS, default="shared",
                   help="TCP/TLS: one connection per worker and target, shared by its calls "
                        "(default), or one per call, closed when the call ends")
    p.add_argument("--tls-resumption", choices=("on", "off"), default="on",
                   help="TLS: offer the last session again on new connections (TLS 1.2 "
                        "tickets, TLS 1.3 PSK; default on)")
    p.add_argument("--quiet", action="store_true")
    flags.add_limits(p)
    p.set_defaults(func=run, plan_defaults={d: p.get_default(d) for d in _PLAN_KEYS})


def _share(text: str) -> float:
    try:
        return parse_allowance(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


_PLAN_KEYS = {"transport": "transport", "rate": "rate", "calls": "calls",
              "duration": "duration", "concurrent": "concurrent", "workers": "workers",
              "users": "users", "arrival": "arrival", "rate_increase": "rate_increase",
              "rate_interval": "rate_interval", "rate_max": "rate_max", "seed": "seed",
              "t1": "timers", "grace": "stop_grace", "tls_insecure": "tls_insecure",
              "connections": "connections", "tls_resumption": "tls_resumption",
              "allow_failures": "allow_failures", "threshold": "thresholds",
              "inject": "inject_path"}
"""Flag (argparse dest) -> the plan key its value goes to."""


def _defaulted(args: argparse.Namespace, program: Program) -> list[str]:
    """The plan keys whose value the user did not choose (flag left at its default;
    the report marks them as defaults)."""
    defaults: dict[str, Any] = getattr(args, "plan_defaults", {}) or {}
    out = [key for dest, key in _PLAN_KEYS.items()
           if dest in defaults and getattr(args, dest, None) == defaults[dest]]
    if "thresholds" in out and program.thresholds:
        out.remove("thresholds")  # the scenario's own
    if "inject_path" in out and program.inject:
        out.remove("inject_path")
    return out


def parse_target(text: str, flag: str = "--target") -> tuple[str, int]:
    """HOST[:PORT] (``[v6]:PORT`` too; the port 5060 by default) of ``flag``."""
    try:
        return targets.parse_hostport(text, flag)
    except targets.TargetError as e:
        raise UsageError(str(e)) from e


def needs_locating(target: str, dns_server: tuple[str, int] | None) -> bool:
    """Whether ``--target`` is found through DNS (RFC 3263): a sip:/sips: URI, a host name
    without a port, or any host name when ``--dns-server`` is given."""
    low = target.lower()
    if low.startswith(("sip:", "sips:")):
        return True
    if "://" in target:
        return False
    host, _ = targets.parse_hostport(target, "--target")
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        pass
    return dns_server is not None or ":" not in target


def _locate(args: argparse.Namespace) -> Located:
    """RFC 3263 for ``--target`` (with ``--dns-server``); raises LocateError or UsageError."""
    try:
        wanted = parse_wanted(args.target, args.transport)
    except ValueError as e:
        raise UsageError(f"--target: {e}") from e
    return locate(wanted, make_resolver(args.dns_server))


def _dns_server(text: str) -> tuple[str, int]:
    try:
        host, port = targets.parse_hostport(text, "--dns-server", 53)
        ipaddress.ip_address(host)
    except (targets.TargetError, ValueError) as e:
        raise argparse.ArgumentTypeError(f"expected ADDRESS[:PORT] (an IP address), "
                                         f"got {text!r}") from e
    return host, port


def _loopback_of(host: str) -> str:
    """The loopback address of ``host``'s family (an IPv6 target is called from ::1)."""
    return "::1" if ":" in host else "127.0.0.1"


def _check_flags(args: argparse.Namespace) -> None:
    """What argparse's per-flag types cannot see: flags checked against each other."""
    if args.calls is None and args.duration is None:
        raise UsageError("give --calls N or --duration T (every run is bounded)")
    if args.workers is not None and args.workers > flags.max_workers() and not (
            args.force_workers):
        raise UsageError(f"--workers: {args.workers} is more than {flags.WORKERS_PER_CORE} "
                         f"per core ({flags.max_workers()} here); add --force-workers to mean it")
    if args.local_workers is not None and args.workers is not None and (
            args.local_workers > args.workers):
        raise UsageError("--local-workers: must be at most --workers")
    if args.trace_limit < 0:
        raise UsageError("--trace-limit: must be 0 or more")
    if args.rate_max is not None and args.rate_max < args.rate:
        raise UsageError("--rate-max: must be at least --rate")
    if args.rate_increase and args.rate_interval <= 0:
        raise UsageError("--rate-interval: needed (and positive) with --rate-increase")
    remote = (args.workers or 1) - (args.local_workers if args.local_workers is not None
                                    else (args.workers or 1))
    if remote > 0 and not args.keys:
        raise UsageError("--local-workers below --workers: the workers that connect need "
                         "--keys (CurveZMQ, even on loopback); see sipload keys")
    if not is_loopback_url(args.bind) and not args.keys:
        raise UsageError("--bind beyond loopback needs --keys (CurveZMQ); see sipload keys")


def _check_connections(args: argparse.Namespace, transport: str) -> None:
    """``--connections per-call`` needs TCP or TLS; ``--tls-insecure`` is said out loud."""
    if args.connections == "per-call" and transport not in ("tcp", "tls"):
        raise UsageError(f"--connections per-call: for tcp or tls, not {transport}")
    if args.tls_insecure and transport in ("tls", "wss"):  # even with --quiet
        print(f"sipload run: warning: --tls-insecure: the {transport} target's certificate "
              "and name are not verified", file=sys.stderr)


def _sources(args: argparse.Namespace, target: tuple[str, int] | None,
             workers: int) -> list[str]:
    """``--source-addresses`` parsed and checked (empty without the flag)."""
    if args.source_addresses is None:
        return []
    found = sources.parse(args.source_addresses)
    sources.check(found, target[0] if target else "127.0.0.1")
    return found


def _read_tls_ca(path: str) -> str:
    """The PEM certificates of ``--tls-ca`` as text (checked: ssl must load them)."""
    import ssl

    try:
        text = Path(path).read_text(encoding="ascii")
        ssl.create_default_context(cadata=text)
    except (OSError, UnicodeDecodeError, ssl.SSLError, ValueError) as e:
        raise UsageError(f"--tls-ca {path}: not a readable PEM certificate file ({e})") from e
    return text


def _check_user_rows(users: int | None, injection: Injection) -> None:
    """USER order is SIPp's ``-users`` file: one row per user of the closed model."""
    rows = len(injection.rows)
    if users is None:
        raise UsageError(f"--users: {injection.path} is in USER order (one row per user, as "
                         f"SIPp's -users): give --users N with N at most {rows}")
    if users > rows:
        raise UsageError(f"--users: {users} users, but {injection.path} (USER order) has "
                         f"only {rows} rows, one per user")


def _run_dir(args: argparse.Namespace, program: Program) -> Path:
    if args.out:
        return Path(args.out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", program.name)[:60]
    return Path("reports") / f"{stamp}-{safe}"


def _versions() -> dict[str, str]:
    import platform

    import zmq

    out = {"sipload": __version__, "python": platform.python_version(),
           "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version()}
    # the workers' loop is uvloop's when it imports (sipload.transport.loop); its own
    # __version__ says which (3 ms; importlib.metadata's lookup costs a run 25 ms of CPU)
    try:
        import uvloop
    except ImportError:
        out["loop"] = "asyncio"
    else:
        out["uvloop"] = str(getattr(uvloop, "__version__", ""))
    return out


def build_plan(args: argparse.Namespace, program: Program, injection: Injection | None,
               target: tuple[str, int] | None, workers: int) -> dict[str, Any]:
    transport = args.transport or program.transport
    return {
        "version": __version__,
        "versions": _versions(),
        "command": "sipload " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "scenario_path": program.path, "scenario_name": program.name,
        "scenario_digest": program.digest,
        "scenario_text": Path(program.path).read_text(encoding="utf-8"),
        "marks": list(program.timer_names),
        "target": list(target) if target else None,
        "target_text": f"{target[0]}:{target[1]}" if target else "",
        "transport": transport, "rate": args.rate, "calls": args.calls,
        "duration": args.duration,
        "concurrent": max(1, args.concurrent // workers), "users": args.users,
        "arrival": args.arrival, "rate_increase": args.rate_increase,
        "rate_interval": args.rate_interval,
        "rate_max": args.rate_max, "seed": args.seed,
        "inject_path": injection.path if injection else None,
        "inject_text": Path(injection.path).read_text(encoding="utf-8") if injection else None,
        "timers": {"t1": args.t1, "t2": max(4.0, args.t1), "t4": 5.0},
        "workers": workers, "stop_grace": args.grace,
        "start_timeout": args.wait_workers,
        "thresholds": list(program.thresholds) + list(args.threshold),
        "allow_failures": args.allow_failures,
        "defaults": _defaulted(args, program),
        "tls_insecure": bool(args.tls_insecure),
        "connections": args.connections, "tls_resumption": args.tls_resumption,
        "trace": args.trace, "trace_limit": args.trace_limit,
        # a loopback target is called from loopback; any other from the address each
        # worker's host routes to it by (the worker picks it: "" here)
        "local_host": _loopback_of(target[0] if target else "127.0.0.1")
        if target is None or is_loopback_host(target[0]) else "",
        "embedded_uas": target is None,
        "limits": flags.limits(args),
    }


def _worker_counts(args: argparse.Namespace) -> tuple[int, int]:
    """(workers, local workers) of the run, from its flags."""
    workers = args.workers or os.cpu_count() or 1
    if args.calls is not None:
        workers = min(workers, args.calls)
    if args.users is not None:
        workers = min(workers, args.users)  # each worker places calls for one user or more
    return workers, workers if args.local_workers is None else args.local_workers


class _Early:
    """The run's local processes, started before anything else (their interpreters
    import while the coordinator loads the scenario and binds its socket), handed
    over as the run needs them; what is left at the end is cancelled."""

    def __init__(self, args: argparse.Namespace) -> None:
        # forked, not started anew: this process has no thread, loop or ZeroMQ context
        # yet, and has imported most of what they import (sipload.cluster.forked)
        self.workers: list[Child] | None = spawn_workers(_worker_counts(args)[1], fork=True)
        self.uas: EmbeddedUas | None = EmbeddedUas(fork=True) if not args.target else None

    def take_workers(self) -> list[Child] | None:
        workers, self.workers = self.workers, None
        return workers

    def take_uas(self) -> EmbeddedUas:
        uas, self.uas = self.uas, None
        return uas if uas is not None else EmbeddedUas()

    def cancel(self) -> None:
        for child in self.take_workers() or []:
            child.cancel()
        if self.uas is not None:
            self.take_uas().cancel()


def run(args: argparse.Namespace) -> int:
    try:
        _check_flags(args)
    except UsageError as e:
        print(f"sipload run: {e}", file=sys.stderr)
        return EXIT_USAGE
    with collector.paused():  # bounded work but for the run itself (see collector)
        early = _Early(args)
        try:
            return _run(args, early)
        finally:
            early.cancel()


def _run(args: argparse.Namespace, early: _Early) -> int:
    try:
        injection = load_injection(args.inject) if args.inject else None
        program = load_file(args.scenario, csv_fields=injection.fields if injection else 0)
        if program.inject and injection is None:
            injection = load_injection(Path(program.path).parent / program.inject)
            program = load_file(args.scenario, csv_fields=injection.fields)
        for w in program.warnings:
            print(w, file=sys.stderr)
        if program.role != "uac":
            raise UsageError(f"{args.scenario}: a {program.role} scenario; run it with "
                             "'sipload uas'")
        if injection is not None and injection.order == "USER":
            _check_user_rows(args.users, injection)
        ws_path = "/"
        target = None
        located: Located | None = None
        if args.target and needs_locating(args.target, args.dns_server):
            located = _locate(args)
            first = located.servers[0]
            args.transport = args.transport or first.transport
            target = (first.address, first.port)  # for the plan's local address; see below
        elif args.target:
            parsed = targets.parse(args.target)
            args.transport = targets.transport_for(parsed, args.transport)
            target, ws_path = parsed.hostport, parsed.path
        workers, _ = _worker_counts(args)
        from sipload.report.thresholds import ThresholdError, parse_threshold

        marks = list(program.timer_names)
        thresholds = list(program.thresholds) + list(args.threshold)
        for t in thresholds:
            try:
                parse_threshold(t, marks=marks)
            except ThresholdError as e:
                raise UsageError(f"--threshold {t!r}: {e}") from e
        keys = Keys(Path(args.keys)) if args.keys else None
        _check_connections(args, args.transport or program.transport)
        source_list = _sources(args, target, workers)
        tls_ca = _read_tls_ca(args.tls_ca) if args.tls_ca else ""
    except ScenarioError as e:
        print(f"sipload run: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, targets.TargetError, sources.SourceError) as e:
        print(f"sipload run: {e}", file=sys.stderr)
        return EXIT_USAGE
    except LocateError as e:
        print(f"sipload run: --target {args.target}: {e} (nothing was sent)", file=sys.stderr)
        return EXIT_CANNOT_RUN
    run_dir = _run_dir(args, program)
    uas_proc = None
    cert = key = ""
    if target is None:
        counterpart = None
        if program.counterpart:
            cp = Path(program.path).parent / program.counterpart
            try:
                counterpart = load_file(cp)
            except ScenarioError as e:
                print(f"sipload run: counterpart: {e}", file=sys.stderr)
                return EXIT_USAGE
        transport = args.transport or program.transport
        if transport in ("tls", "wss"):  # a throwaway certificate the workers are told to trust
            from sipload.transport.selfsigned import loopback_certificate
            cert, key = loopback_certificate()
        try:
            uas_proc, port = early.take_uas().start({
                "scenario_text": Path(counterpart.path).read_text(encoding="utf-8")
                if counterpart else None,
                "scenario_path": counterpart.path if counterpart else None,
                "transport": transport, "host": "127.0.0.1", "limits": flags.limits(args),
                "tls_cert": cert, "tls_key": key,
                # the default UAS answers SRTP when the scenario offers it
                "srtp": "sdes" if any(spec.srtp for _, spec in program.media) else ""})
        except RuntimeError as e:
            print(f"sipload run: {e}", file=sys.stderr)
            return EXIT_CANNOT_RUN
        target = ("127.0.0.1", port)
    plan = build_plan(args, program, injection, target, workers)
    plan["embedded_uas"] = uas_proc is not None
    if cert:
        plan["tls_cadata"] = cert  # public: the workers check the UAS against it
    elif tls_ca:
        plan["tls_cadata"] = tls_ca  # --tls-ca: the workers trust these certificates only
    plan["ws_path"] = ws_path
    if source_list:
        plan["source_addresses"] = source_list
        plan["source_shares"] = sources.split(source_list, workers)
    if located is not None:
        name = parse_wanted(args.target).host
        plan["target"] = [name, 0]  # the Request-URI names the host; the UA picks servers
        plan["target_text"] = args.target
        plan["located"] = {
            "name": name, "steps": located.steps, "skipped": located.skipped,
            "servers": [[s.transport, s.address, s.port, s.priority, s.weight, s.name, s.rank]
                        for s in located.servers]}
        if not args.quiet:
            print(f"sipload run: {args.target} located: " + ", ".join(
                f"{s.label()} (priority {s.priority}, weight {s.weight})"
                for s in located.servers), file=sys.stderr)
    writer = RunWriter(run_dir)
    if args.trace != "none":
        writer.open_traces()
    writer.write_text("scenario.yaml", plan["scenario_text"])
    writer.write_json("plan.json", {k: v for k, v in plan.items()
                                    if k not in ("scenario_text", "inject_text", "tls_cadata")})
    try:
        with collector.collecting():
            outcome = asyncio.run(run_load(
                plan, writer, workers=workers, local_workers=args.local_workers,
                bind=args.bind, keys=keys, quiet=args.quiet,
                start_timeout=float(plan["start_timeout"]), spawned=early.take_workers()))
    except ChannelError as e:
        print(f"sipload run: {e}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    finally:
        # the run is over: a late Ctrl-C (the second one of an abort, say) must not
        # cost the summary of what was received; it is honoured again after that
        previous = _ignore_sigint()
        writer.close()
        stop_process(uas_proc)
    return finish(run_dir, plan, outcome.ended, quiet=args.quiet, sigint=previous)


def _ignore_sigint() -> Any:
    try:
        return signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        return None


def finish(run_dir: Path, plan: dict[str, Any], ended: str, *, quiet: bool = False,
           sigint: Any = None) -> int:
    """Write summary.json, report.html and junit.xml; print where; pick the exit code.

    ``sigint``: the SIGINT handler to restore once summary.json is written."""
    from sipload.report import build_summary, write_junit, write_report
    from sipload.report.connections import detail_lines

    with collector.collecting():  # the analysis decodes every snapshot's histograms,
        # each a reference cycle of hdrh's holding ~190 KB: they must be collected as it goes
        summary = build_summary(run_dir, thresholds=list(plan.get("thresholds") or []),
                                command=str(plan.get("command", "")))
    if sigint is not None:
        signal.signal(signal.SIGINT, sigint)
    html = write_report(run_dir)
    junit = write_junit(run_dir, summary)
    calls = summary.get("calls", {})
    if not quiet:
        print(f"calls: attempted {calls.get('attempted')} succeeded {calls.get('succeeded')} "
              f"failed {calls.get('failed')} in flight at stop {calls.get('in_flight_at_stop')}"
              f" lost with a worker {calls.get('lost_with_worker')}")
        for line in detail_lines(summary):
            print(line)
    print(f"run directory: {run_dir}")
    print(f"junit: {junit}")
    print(f"report: {html}")
    gate = summary["gate"]
    if ended:
        print(f"sipload run: the run could not complete: {ended}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    for v in summary.get("thresholds", []):
        if not v.get("passed", True):
            print(f"sipload run: threshold FAILED: {v['message']}", file=sys.stderr)
    if gate["verdict"] != "passed":
        print(f"sipload run: {gate['message']}", file=sys.stderr)
    code: int = summary["exit_code"]
    return code
