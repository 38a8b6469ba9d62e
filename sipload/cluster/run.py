"""The coordinator's shell: ZeroMQ in, run directory and screen out.

:func:`run_load` binds the ROUTER, starts the local workers (and the embedded
UAS when there is no target), feeds every control message to the pure
:class:`Coordinator`, writes records and snapshots to the run directory as
they arrive (acknowledging records only once written), shows progress, and
handles Ctrl-C: the first stops new calls and gives calls in flight a grace
period, the second aborts at once, keeping what was received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sipload.cluster.channel import Keys, Router, WorkerAuth
from sipload.cluster.coordinator import Coordinator
from sipload.cluster.forked import ForkedChild, can_fork
from sipload.cluster.live import LiveView
from sipload.cluster.messages import Records, Snapshot
from sipload.stats import rundir
from sipload.stats.rundir import RunWriter


@dataclass(slots=True)
class RunOutcome:
    """How the coordinator ended: totals and why it stopped early, if it did."""

    totals: dict[str, int]
    ended: str = ""
    interrupted: bool = False
    aborted: bool = False
    workers: list[dict[str, Any]] = field(default_factory=list)


@contextlib.contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Processes started inside inherit SIGINT ignored (across exec, and Python keeps
    an ignored SIGINT): a terminal's Ctrl-C goes to the whole process group, and only
    the coordinator decides what it means; its children stop when it tells them."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to inherit
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


#: The child's command: this very sipload (its folder first on ``sys.path``, whatever
#: the working directory holds), then :func:`sipload.cluster.child.main`.
_CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); "
          "from sipload.cluster.child import main; main()")
_ROOT = str(Path(__file__).resolve().parent.parent.parent)


class Child:
    """A local child process of the run (a worker, the embedded UAS; see
    :mod:`sipload.cluster.child`), with the calls the coordinator makes on it."""

    def __init__(self, proc: subprocess.Popen[bytes] | ForkedChild, role: str = "") -> None:
        self.proc = proc
        self.pid = proc.pid
        self.role = role

    def give(self, orders: dict[str, Any]) -> None:
        """Send the child its orders (JSON on its stdin, closed after them)."""
        stdin = self.proc.stdin
        if stdin is None or stdin.closed:
            raise RuntimeError(f"child {self.pid}: orders already given")
        try:
            stdin.write(json.dumps({**orders, "role": self.role}).encode())
            stdin.close()
        except BrokenPipeError:  # it died at once: the caller finds out as it waits
            pass

    def cancel(self) -> None:
        """No orders after all: close its stdin, so it ends (status 3), and reap it."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        self.join(timeout=5)
        self.kill()
        self.join(timeout=2)

    def is_alive(self) -> bool:
        return self.proc.poll() is None

    def status(self) -> int | None:
        """Its exit status once it has ended (``-N``: killed by signal N), else None."""
        return self.proc.poll()

    def join(self, timeout: float | None = None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)

    def terminate(self) -> None:
        if self.is_alive():
            self.proc.terminate()

    def kill(self) -> None:
        if self.is_alive():
            self.proc.kill()


def exit_reason(status: int) -> str:
    """How a process ended, from its exit status (``-N``: killed by signal N)."""
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exited with status {status}"


def spawn_child(role: str, pass_fds: tuple[int, ...] = (), fork: bool = False) -> Child:
    """Start :mod:`sipload.cluster.child` as ``role``, without its orders yet: it
    imports what it runs while the caller sets up, then waits for :meth:`Child.give`
    (or :meth:`Child.cancel`).  It inherits SIGINT ignored.  ``fork``: fork this
    process instead of starting an interpreter, where it can (only while it has no
    threads, loop or ZeroMQ context: see :mod:`sipload.cluster.forked`)."""
    with _children_ignore_sigint():
        if fork and can_fork():
            return Child(ForkedChild(role), role)
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, _ROOT, role, str(os.getpid())],
                                stdin=subprocess.PIPE, pass_fds=pass_fds)
    return Child(proc, role)


def start_child(orders: dict[str, Any], pass_fds: tuple[int, ...] = ()) -> Child:
    """Start :mod:`sipload.cluster.child` with ``orders`` (JSON on its stdin: keys
    are never on a command line or in a file); it inherits SIGINT ignored."""
    child = spawn_child(str(orders["role"]), pass_fds)
    child.give(orders)
    return child


def spawn_workers(n: int, fork: bool = False) -> list[Child]:
    """``n`` local workers, started now, given their orders by :func:`run_load`
    (``fork``: see :func:`spawn_child`)."""
    return [spawn_child("worker", fork=fork) for _ in range(n)]


def _order_workers(url: str, children: list[Child], auths: list[WorkerAuth | None]) -> None:
    """Each local worker's orders: the control URL and its CurveZMQ keys (handed over
    its stdin: never on a command line or in a file)."""
    for child, auth in zip(children, auths, strict=True):
        child.give({"url": url,
                    "auth": None if auth is None else
                    [auth.public.decode(), auth.secret.decode(), auth.server_public.decode()]})


async def run_load(
    plan: dict[str, Any], writer: RunWriter, *, workers: int, local_workers: int | None = None,
    bind: str = "tcp://127.0.0.1:0", keys: Keys | None = None, quiet: bool = False,
    lost_after: float = 3.0, start_timeout: float = 30.0, max_time: float | None = None,
    spawned: list[Child] | None = None,
) -> RunOutcome:
    """Run one load test to the end; the run directory is written as it goes.

    ``spawned``: local workers started already (:func:`spawn_workers`, as many as
    ``local_workers``), waiting for their orders; else they are started here."""
    try:
        router = Router(bind, keys)
    except BaseException:
        for child in spawned or []:
            child.cancel()
        raise
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    coord = Coordinator(plan, workers, float(plan["rate"]), plan.get("calls"),
                        users=plan.get("users"), lost_after=lost_after,
                        start_timeout=start_timeout, version=str(plan.get("version", "")),
                        created=0.0, rate_max=plan.get("rate_max"),
                        rate_increase=float(plan.get("rate_increase") or 0.0),
                        rate_interval=float(plan.get("rate_interval") or 0.0))
    plan["control_url"] = router.url
    plan["start_timeout"] = start_timeout  # how long a worker may wait for Go
    writer.append_event({"t": 0.0, "event": "coordinator_listening", "url": router.url})
    n_local = workers if local_workers is None else local_workers
    procs = spawned if spawned is not None else spawn_workers(n_local)
    _order_workers(router.url, procs, [router.local_auth() for _ in procs])
    rundir.warm()  # while the workers start, not mid-run with the first records
    view = LiveView(plan, quiet=quiet)
    interrupts = 0
    outcome = RunOutcome({})

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    handled = 0
    ended: set[int] = set()  #: pids of the local workers seen to have ended
    host = socket.gethostname()  #: what a local worker says in its Hello
    deadline = None if max_time is None else t0 + max_time
    abort_deadline: float | None = None
    events_written = 0
    try:
        view.start()
        while True:
            now = loop.time() - t0
            if interrupts > handled:
                handled = interrupts
                if handled == 1:
                    outcome.interrupted = True
                    grace = float(plan.get("stop_grace", 5.0))
                    view.note(f"stopping: calls in flight get {grace:g} s (Ctrl-C again aborts)")
                    for ident, msg in coord.stop(now, grace):
                        await router.send(ident, msg)
                else:
                    outcome.aborted = True
                    view.note("aborting")
                    for ident, msg in coord.stop(now, 0.0, abort=True):
                        await router.send(ident, msg)
                    abort_deadline = now + 3.0
            if deadline is not None and loop.time() > deadline and not coord.stopping:
                for ident, msg in coord.stop(now, float(plan.get("stop_grace", 5.0))):
                    await router.send(ident, msg)
            if await router.poll(200):
                for _ in range(500):
                    ident, raw = await router.recv()
                    now = loop.time() - t0
                    admitted = coord.admit(ident, raw, now)  # None: dropped, logged, counted
                    if admitted is None:
                        if not await router.poll(0):
                            break
                        continue
                    msg = admitted
                    if isinstance(msg, Records):
                        writer.append_traces(msg.traces)
                        writer.append_records(msg.records)
                        view.records(msg.records)
                    elif isinstance(msg, Snapshot):
                        writer.append_interval(msg.snapshot)
                        view.snapshot(msg.snapshot)
                    for dest, reply in coord.on_message(ident, msg, now):
                        await router.send(dest, reply)
                    if not await router.poll(0):
                        break
            now = loop.time() - t0
            for p in procs:  # a local worker that ended: no need to wait out its silence
                status = p.status() if p.pid not in ended else None
                if status is not None:
                    ended.add(p.pid)
                    coord.on_exit(host, p.pid, exit_reason(status), now)
            for r in await router.refusals():
                coord.on_refused(now, r["host"], r["reason"], r["key"])
            for dest, reply in coord.tick(now):
                await router.send(dest, reply)
            for ev in coord.events[events_written:]:
                writer.append_event(ev)
                view.note_event(ev)
            events_written = len(coord.events)
            view.workers(coord)
            if coord.finished:
                break
            if abort_deadline is not None and now > abort_deadline:
                break
            if not coord.went and now > start_timeout and not coord.workers:
                coord.ended = "no worker connected"
                break
    finally:
        view.stop()
        for p in procs:
            p.join(timeout=5)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(timeout=2)
        malformed = router.malformed
        router.close()
        # only now: a Ctrl-C while the workers end is counted, not a KeyboardInterrupt
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
    outcome.totals = {**coord.totals(), "malformed_messages": malformed}
    outcome.ended = coord.ended
    outcome.workers = [
        {"worker": w.worker, "host": w.host, "pid": w.pid, "lost": w.lost, "started": w.started,
         "records": w.records, "address": w.address} for w in coord.workers.values()]
    writer.append_event({"t": loop.time() - t0, "event": "run_end", **outcome.totals,
                         "ended": outcome.ended, "interrupted": outcome.interrupted,
                         "aborted": outcome.aborted})
    return outcome


class EmbeddedUas:
    """The embedded UAS's process, started early (:meth:`spawn`), then told what to
    answer (:meth:`start`: returns its port)."""

    def __init__(self, fork: bool = False) -> None:
        reader, writer = os.pipe()
        try:
            self.child = spawn_child("uas", (writer,), fork=fork)
        except BaseException:
            os.close(reader)
            raise
        finally:
            os.close(writer)  # the child's copy (the same number there) stays open
        self.reader = reader
        self.port_fd = writer  #: its number in the child, named in the orders

    def start(self, plan_uas: dict[str, Any], timeout: float = 20.0) -> tuple[Child, int]:
        """Give the orders, wait for the port; raises RuntimeError if it does not start."""
        p = self.child
        p.give({"plan": plan_uas, "port_fd": self.port_fd})
        try:
            with os.fdopen(self.reader, "rb") as pipe:
                ready, _, _ = select.select([pipe], [], [], timeout)
                if not ready:
                    raise TimeoutError(f"no port in {timeout:g} s")
                line = pipe.readline().decode(errors="replace").strip()
            if not line:
                raise EOFError("the embedded UAS ended before it said its port")
        except Exception as e:  # timeout, or the child died
            p.kill()
            p.join(2)
            raise RuntimeError("the embedded UAS did not start") from e
        if not line.isdigit():
            p.join(timeout=2)
            raise RuntimeError(line)
        return p, int(line)

    def cancel(self) -> None:
        """Not needed after all: it ends without orders."""
        with contextlib.suppress(OSError):
            os.close(self.reader)
        self.child.cancel()


def start_embedded_uas(plan_uas: dict[str, Any], timeout: float = 20.0) -> tuple[Child, int]:
    """Start the embedded UAS in its own process; returns (process, port)."""
    return EmbeddedUas().start(plan_uas, timeout)


def stop_process(p: Child | None, timeout: float = 5.0) -> None:
    if p is None or not p.is_alive():
        return
    p.terminate()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join(2)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def eprint(*args: object) -> None:
    print(*args, file=sys.stderr)
