"""``sipload worker`` (a remote worker) and ``sipload keys`` (CurveZMQ key pairs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sipload.cluster.channel import make_keys
from sipload.cluster.worker import worker_main


def register(sub: Any) -> None:
    p = sub.add_parser("worker", help="join a run as a worker: --connect tcp://HOST:PORT")
    p.add_argument("--connect", required=True, help="the coordinator, tcp://HOST:PORT")
    p.add_argument("--keys", help="CurveZMQ key folder (from sipload keys), needed beyond "
                                  "loopback")
    p.set_defaults(func=run_worker)
    k = sub.add_parser("keys", help="make CurveZMQ key pairs for remote workers")
    k.add_argument("folder", help="where to write server.key*, worker.key*, authorized/")
    k.set_defaults(func=run_keys)


def run_worker(args: argparse.Namespace) -> int:
    if args.keys and not (Path(args.keys) / "worker.key_secret").exists():
        print(f"sipload worker: --keys: {args.keys} has no worker.key_secret", file=sys.stderr)
        return 2
    return worker_main(args.connect, args.keys)


def run_keys(args: argparse.Namespace) -> int:
    keys = make_keys(Path(args.folder))
    print(f"server key pair: {keys.server_public} (+ _secret), keep on the coordinator")
    print(f"worker key pair: {keys.worker_secret} and worker.key, copy to each worker host")
    print(f"authorized workers: {keys.authorized}/ (add more *.key files to allow more)")
    return 0
