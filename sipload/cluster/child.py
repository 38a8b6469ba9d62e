"""A run's local child process (a worker, the embedded UAS), importing only what it runs.

The coordinator starts its children as plain processes of the same interpreter
(:func:`sipload.cluster.run.start_child`), not with multiprocessing's spawn: a
spawned child re-runs its parent's main module (``sipload.cli``, which reaches the
report's pandas, matplotlib and jinja2) and unpickles its target, about a second
of CPU per child before its first call.  This module imports only what the child
runs.  ``sipload run`` forks its early children instead (:mod:`sipload.cluster.forked`:
they skip the interpreter's start and the imports the coordinator has made); a forked
child runs the same :func:`run_role`, its orders coming on a pipe instead of stdin.

Theory of operation:

1. The command line names the role (``worker`` or ``uas``) and the coordinator's
   pid.  The child first asks to die with the coordinator
   (:func:`~sipload.cluster.lifeline.die_with_parent`): no load outlives it.
2. It imports what its role runs, then waits for its orders: the coordinator
   starts its children first thing and sets itself up (scenario, plan, control
   socket) while they import.  The orders come on stdin as one JSON object, read
   to its end: ``role`` and the role's own fields.  A worker's CurveZMQ keys
   travel this way: never on a command line or in a file.  Stdin closed without
   orders (the coordinator gave up: a bad flag, a scenario error) ends the child
   with status 3.
3. A worker runs :func:`~sipload.cluster.worker.worker_main` and ends with
   ``os._exit``: everything it owed has been sent and acknowledged by then, and
   tearing its heap down object by object costs about a second of CPU after a
   large run.
4. The embedded UAS writes one line to the pipe its orders name (``port_fd``),
   its port or why it could not bind, closes it, then answers until SIGTERM.
   Its stdout and stderr are the coordinator's, as a worker's are.
5. SIGINT is ignored (inherited from the coordinator across exec): a terminal's
   Ctrl-C goes to the whole process group, and only the coordinator decides what
   it means.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any, BinaryIO

from sipload.cluster.lifeline import die_with_parent
from sipload.exitcodes import EXIT_CANNOT_RUN


def run_worker(orders: dict[str, Any]) -> None:
    """A local worker: run it, then end at once (rule 3)."""
    from sipload.cluster.channel import WorkerAuth
    from sipload.cluster.worker import worker_main

    keys = orders.get("auth")
    auth = WorkerAuth(*(str(k).encode("ascii") for k in keys)) if keys else None
    code = worker_main(str(orders["url"]), local=True, auth=auth)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_uas(plan_uas: dict[str, Any], port_fd: int) -> None:
    """The embedded UAS: say the port (rule 4), answer until SIGTERM."""
    from sipload.cluster.worker import engine_limits
    from sipload.engine import Engine, EngineConfig
    from sipload.scenario.loader import load_text, warm_media
    from sipload.transport.loop import new_event_loop, tune_gc

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    tune_gc()

    def say(line: str) -> None:
        with os.fdopen(port_fd, "w") as pipe:
            pipe.write(line + "\n")

    try:
        text = plan_uas.get("scenario_text")
        # the coordinator loaded and checked the counterpart scenario
        program = (load_text(str(text), str(plan_uas.get("scenario_path")), checked=True)
                   if text else None)
        warm_media(program)
        tls = None
        if plan_uas.get("tls_cert") and plan_uas.get("tls_key"):
            from sipload.transport.selfsigned import server_context_from_pem
            tls = server_context_from_pem(str(plan_uas["tls_cert"]), str(plan_uas["tls_key"]))
        engine = Engine(EngineConfig(program=program, transport=str(plan_uas["transport"]),
                                     tls_server=tls,
                                     local_host=str(plan_uas.get("host", "127.0.0.1")),
                                     local_port=0, reuse_port=False,
                                     srtp=str(plan_uas.get("srtp") or ""),
                                     **engine_limits(plan_uas.get("limits"))))

        async def main() -> None:
            try:
                _, port = await engine.start()
            except OSError as e:
                say(f"embedded UAS cannot bind: {e}")
                return
            say(str(port))
            stop = asyncio.Event()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGINT, lambda: None)
            task = asyncio.create_task(engine.run())
            await stop.wait()
            engine.abort()
            await task

        loop.run_until_complete(main())
    finally:
        loop.close()


def prepare(role: str) -> None:
    """Import what ``role`` runs (rule 2): while the coordinator sets up, not after.
    Both roles run an engine, the worker module imports it and the scenario loader."""
    if role in ("worker", "uas"):
        import sipload.cluster.worker  # noqa: F401


def run_role(role: str, parent: int, orders_in: BinaryIO) -> None:
    """Rules 1-4: the child's life, its orders read from ``orders_in`` to their end
    (a started child's stdin, a forked child's pipe: :mod:`sipload.cluster.forked`)."""
    die_with_parent(parent)
    prepare(role)
    try:
        orders = json.loads(orders_in.read())
    except ValueError:  # no orders: the coordinator gave up, or died, before it gave them
        os._exit(EXIT_CANNOT_RUN)
    if orders["role"] == "worker":
        run_worker(orders)
    else:
        run_uas(orders["plan"], int(orders["port_fd"]))


def main() -> None:
    role = sys.argv[2] if len(sys.argv) > 2 else ""
    run_role(role, int(sys.argv[3]) if len(sys.argv) > 3 else os.getppid(), sys.stdin.buffer)


if __name__ == "__main__":
    main()
