"""``sipload worker`` (a remote worker) and ``sipload keys`` (CurveZMQ key pairs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sipload.cli import flags
from sipload.cluster.channel import KeysExist, make_keys
from sipload.cluster.worker import worker_main
from sipload.exitcodes import EXIT_CANNOT_RUN, EXIT_OK, EXIT_USAGE


def register(sub: Any) -> None:
    p = sub.add_parser("worker", help="join a run as a worker: --connect tcp://HOST:PORT")
    p.add_argument("--connect", required=True, help="the coordinator, tcp://HOST:PORT")
    p.add_argument("--keys", help="CurveZMQ key folder (from sipload keys), needed beyond "
                                  "loopback")
    p.add_argument("--wait", type=flags.duration, default=30.0, metavar="T",
                   help="how long to wait for the coordinator's welcome (default 30s; "
                        "longer where workers may start before it, as in a cluster)")
    p.set_defaults(func=run_worker)
    k = sub.add_parser("keys", help="make CurveZMQ key pairs for remote workers")
    k.add_argument("folder", help="where to write server.key*, worker.key*, authorized/ "
                                  "(made 0700)")
    k.add_argument("--force", action="store_true",
                   help="replace existing key pairs (their workers are then refused)")
    k.add_argument("--if-missing", action="store_true",
                   help="keep the key pairs already in FOLDER, if both are there (make "
                        "them once, as a container's first step does)")
    k.set_defaults(func=run_keys)


def run_worker(args: argparse.Namespace) -> int:
    if args.keys and not (Path(args.keys) / "worker.key_secret").exists():
        print(f"sipload worker: --keys: {args.keys} has no worker.key_secret", file=sys.stderr)
        return EXIT_USAGE
    return worker_main(args.connect, args.keys, wait=args.wait)


def run_keys(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    if args.if_missing and all((folder / f).exists() for f in (
            "server.key", "server.key_secret", "worker.key", "worker.key_secret")):
        print(f"sipload keys: {folder} has its key pairs already; kept")
        return EXIT_OK
    try:
        keys = make_keys(Path(args.folder), force=args.force)
    except KeysExist as e:
        print(f"sipload keys: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"sipload keys: cannot write {args.folder}: {e.strerror}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    print(f"server key pair: {keys.server_public} (+ _secret), keep on the coordinator")
    print(f"worker key pair: {keys.worker_secret} and worker.key, copy to each worker host")
    print(f"authorized workers: {keys.authorized}/ (add more *.key files to allow more)")
    return EXIT_OK
