"""Real SIP peers for the tests and the benchmarks: SIPp, Kamailio, baresip on 127.0.0.1.

Test infrastructure, not a test module: it defines no tests and no pytest fixtures
(those live in conftest).  The benchmarks in ``bench/`` start their peers with it too
(one place that knows how to start, wait for and end each peer; ``bench/common.py``
puts the repository root on ``sys.path`` for them, since they run as scripts).
Import it as ``from tests.peers import ...``, like the other
test helpers. With ``tests/__init__.py`` present, pytest's default ``prepend`` import
mode puts the repository root on ``sys.path`` (the first directory above the package),
so this works with ``pytest`` and ``python -m pytest`` from any directory. Without
``tests/__init__.py`` it still works under ``python -m pytest`` run from the repository
root (the current directory is on ``sys.path`` and ``tests`` is a namespace package);
plain ``pytest`` would then only find the bare ``peers`` module. Nothing in the tests
hacks ``sys.path``.

Theory of operation
-------------------
1. Every peer runs under coreutils ``timeout -k 5 LIMIT`` in its own session, so a stuck
   peer ends by itself; ``stop()`` sends SIGTERM to that ``timeout`` process (which
   passes it on to the peer and, 5 s later, SIGKILLs it) and, if it has still not ended
   after 5 s, SIGKILLs the process group it leads. Processes are only ever signalled by
   the PID or process group this module created.
2. Every peer gets its own temporary work directory (stdout, stderr, SIPp error file,
   Kamailio run dir); nothing is written into the repository. The directory is removed
   on ``close()`` (end of the ``with`` block) unless the caller passed ``workdir``; the
   log texts stay readable afterwards for assertion messages.
3. A SIPp UAS is *ready* when a socket bound to its port (UDP state UNCONN, TCP state
   LISTEN) appears in ``/proc/net/udp`` / ``/proc/net/tcp`` *and* that socket's inode
   is held open by the ``timeout`` process or one of its descendants (``/proc/PID/fd``).
   Reading /proc is passive: unlike a probe ``bind()`` it can never steal the port from
   SIPp during start-up, and the ownership check ignores a stale process that happens
   to hold the port (SIPp then exits, which is reported with its output). SIPp binds
   its SIP socket before it starts any scenario, so the port being bound means the
   scenario will answer.
4. Kamailio is *ready* when it answers 200 to a raw OPTIONS datagram sent by
   ``sip_request()`` to ``sip:127.0.0.1:PORT`` (both configs in ``ci/kamailio`` answer
   OPTIONS without a user part themselves).
5. All traffic goes to 127.0.0.1. Ports come from ``free_port()``: random ports below
   the kernel's ephemeral range (so a peer's port is not handed to someone's outgoing
   socket meanwhile) that bind on both UDP and TCP, never the same one twice per process.

What bites
----------
- sipsak 0.9.8.1 truncates a 5-digit port in the Request-URI (``sip:127.0.0.1:25070``
  becomes ``sip:127.0.0.1:2507``); use it only with ports below 10000, or use SIPp.
- SIPp binds a control socket on 0.0.0.0 (default 8888, then upwards) and RTP echo
  ports from 6000 upwards; the helpers give each SIPp its own free control port.
- SIPp exits 0 on SIGTERM (it reports the calls so far): judge a UAC by ``wait()``, not
  a UAS by ``stop()``.

Typical use::

    with sipp_uas(uas_port) as uas, kamailio_proxy(uas_port) as proxy:
        with sipp_uac(proxy.address, calls=20, rate=10) as uac:
            assert uac.wait(60) == 0, uac.describe()
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import pytest

LOOPBACK = "127.0.0.1"
"""The only address peers listen on and send to."""

REPO_ROOT = Path(__file__).resolve().parent.parent
KAMAILIO_DIR = REPO_ROOT / "ci" / "kamailio"
PROXY_CFG = KAMAILIO_DIR / "proxy.cfg"
"""Record-routing stateful proxy; defines LISTEN_PORT, UAS_ADDR, CHILDREN."""
REGISTRAR_CFG = KAMAILIO_DIR / "registrar.cfg"
"""Digest-authenticating in-memory registrar and location proxy."""
RTPENGINE_CFG = KAMAILIO_DIR / "rtpengine.cfg"
"""Record-routing proxy that anchors the media in rtpengine (rtpengine_manage)."""
WEBSOCKET_CFG = KAMAILIO_DIR / "websocket.cfg"
TLS_CFG = KAMAILIO_DIR / "tls.cfg"
"""SIP over WebSocket in front of a UDP UAS; defines LISTEN_PORT, WS_PORT, UAS_ADDR."""
KAMAILIO_MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
SIPP_DIR = REPO_ROOT / "tests" / "sipp"
"""SIPp XML scenarios used by the tests."""

# Defaults baked into ci/kamailio/registrar.cfg (override with kamailio_registrar()).
REGISTRAR_REALM = "sipload.test"
REGISTRAR_USERS = {"alice": "alice-secret", "bob": "bob-secret"}
REGISTRAR_MIN_EXPIRES = 60

DEBIAN_PACKAGES = {"sipp": "sip-tester", "kamailio": "kamailio", "sipsak": "sipsak",
                   "tshark": "tshark", "tcpdump": "tcpdump", "baresip": "baresip",
                   "rtpengine": "rtpengine-daemon"}
"""Debian package that provides each peer binary (installed by ci/install-peers.sh)."""

SIPP_BUFF_SIZE = 4194304
"""SIPp's default 64 KB socket buffer drops datagrams near 2,000 calls/s."""

KILL_AFTER = 5.0
"""Seconds between SIGTERM and SIGKILL, for ``timeout -k`` and for ``stop()``."""

Proto = Literal["udp", "tcp", "both"]


class PeerError(RuntimeError):
    """A peer did not start, did not become ready, or did not finish in time."""


# --------------------------------------------------------------------------- binaries


def tshark_fields(pcap: Path, fields: list[str], display_filter: str = "",
                  options: tuple[str, ...] = ()) -> list[list[str]]:
    """Read ``pcap`` with tshark: one row per packet (matching ``display_filter``), the
    ``fields`` of each (``-T fields``; several values of one field joined by ``,``).

    Raises:
        AssertionError: tshark failed or reported an error reading the file.
    """
    cmd = [require("tshark"), "-n", "-r", str(pcap), "-T", "fields", "-E", "occurrence=a",
           "-E", "aggregator=,", *options]
    if display_filter:
        cmd += ["-Y", display_filter]
    for f in fields:
        cmd += ["-e", f]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"tshark: {done.stderr[-2000:]}"
    return [line.split("\t") for line in done.stdout.splitlines()]


def which(binary: str) -> str | None:
    """The path of a peer binary, or None (``/usr/sbin`` is searched too: Debian installs
    kamailio there, which a non-root PATH may lack)."""
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")


def require(binary: str) -> str:
    """Return the path of a peer binary, or end the test when it is missing.

    Args:
        binary: program name looked up on PATH (``sipp``, ``kamailio``, ``sipsak``...).

    Returns:
        The absolute path of the program.

    Raises:
        pytest.fail.Exception: the program is missing and ``CI`` is ``true`` (in CI the
            peers are installed by ``ci/install-peers.sh``, so missing is a failure).
        pytest.skip.Exception: the program is missing elsewhere; the message names the
            Debian package to install.
    """
    path = which(binary)
    if path is not None:
        return path
    package = DEBIAN_PACKAGES.get(binary, binary)
    message = (
        f"{binary!r} not found on PATH: install the Debian package {package!r} "
        f"(apt-get install {package}, or run ci/install-peers.sh)"
    )
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(message + " [CI=true: missing peers fail instead of skipping]")
    pytest.skip(message)


SIPP_SHARE = Path("/usr/share/sip-tester")
"""Where the Debian package sip-tester puts SIPp's captures (g711a.pcap, dtmf_2833_*.pcap)."""


def sipp_capture(name: str) -> Path:
    """One of the RTP captures SIPp ships for ``play_pcap_audio`` (fails in CI if missing)."""
    require("sipp")
    path = SIPP_SHARE / name
    if not path.is_file():
        message = f"{path} is missing: install the Debian package 'sip-tester'"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(message + " [CI=true: missing peers fail instead of skipping]")
        pytest.skip(message)
    return path


# --------------------------------------------------------------------------- ports

_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int, proto: Proto, host: str) -> bool:
    kinds = {"udp": [socket.SOCK_DGRAM], "tcp": [socket.SOCK_STREAM]}.get(
        proto, [socket.SOCK_DGRAM, socket.SOCK_STREAM]
    )
    with contextlib.ExitStack() as stack:
        for kind in kinds:
            sock = stack.enter_context(socket.socket(socket.AF_INET, kind))
            if kind == socket.SOCK_STREAM:
                # servers (Kamailio, SIPp) set SO_REUSEADDR: TIME_WAIT must not count
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_port(proto: Proto = "both", *, host: str = LOOPBACK) -> int:
    """Return a port that is currently free on ``host`` for ``proto``.

    Args:
        proto: ``"udp"``, ``"tcp"`` or ``"both"`` (free for UDP and TCP alike, what a
            Kamailio listening on udp+tcp needs).
        host: address to check; ``0.0.0.0`` for sockets that bind the wildcard.

    Returns:
        A port in 20000..32767 (outside the kernel's ephemeral range when it can be),
        never one already returned in this process.

    Raises:
        PeerError: no free port found after many tries.
    """
    low_eph, high_eph = _ephemeral_range()
    candidates = [p for p in range(20000, 32768) if not low_eph <= p <= high_eph]
    if not candidates:
        candidates = list(range(20000, 32768))
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.choice(candidates)
        if port in _handed_out:
            continue
        if _bindable(port, proto, host):
            _handed_out.add(port)
            return port
    raise PeerError(f"no free {proto} port on {host}")


def free_udp_port() -> int:
    """A free UDP port on 127.0.0.1 (see ``free_port``)."""
    return free_port("udp")


def free_tcp_port() -> int:
    """A free TCP port on 127.0.0.1 (see ``free_port``)."""
    return free_port("tcp")


# --------------------------------------------------------------------------- /proc


def _proc_sockets(proto: Literal["udp", "tcp"], host: str, port: int) -> set[str]:
    """Inodes of sockets bound to host:port (UDP) or listening there (TCP)."""
    wanted_state = "07" if proto == "udp" else "0A"  # UNCONN / LISTEN
    wanted_ips = {socket.inet_aton(host), socket.inet_aton("0.0.0.0")}
    inodes: set[str] = set()
    try:
        lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
    except OSError:
        return inodes
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[3] != wanted_state:
            continue
        ip_hex, port_hex = fields[1].split(":")
        if int(port_hex, 16) != port:
            continue
        # /proc prints the address as a native-endian 32-bit word
        ip = int(ip_hex, 16).to_bytes(4, sys.byteorder)
        if ip in wanted_ips:
            inodes.add(fields[9])
    return inodes


def _descendants(pid: int) -> set[int]:
    """``pid`` and every process below it (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(children.get(current, ()))
    return found


def _socket_inodes_of(pids: set[int]) -> set[str]:
    inodes: set[str] = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            entries = list(fd_dir.iterdir())
        except OSError:
            continue
        for fd in entries:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def port_bound_by(pid: int, port: int, proto: Literal["udp", "tcp"] = "udp") -> bool:
    """True when ``pid`` or a descendant holds a socket bound (UDP) or listening (TCP)
    on 127.0.0.1:``port`` (or the wildcard address)."""
    bound = _proc_sockets(proto, LOOPBACK, port)
    return bool(bound) and bool(bound & _socket_inodes_of(_descendants(pid)))


# --------------------------------------------------------------------------- raw SIP


@dataclass(frozen=True)
class SipReply:
    """A final response received by ``sip_request``."""

    status: int
    """Status code, e.g. 200."""
    reason: str
    """Reason phrase."""
    headers: tuple[tuple[str, str], ...]
    """(name, value) in message order, one entry per header line."""
    raw: bytes
    """The whole datagram."""

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive; long names only)."""
        return [value for key, value in self.headers if key.lower() == name.lower()]


def _parse_reply(data: bytes) -> SipReply | None:
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit():
        return None
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    return SipReply(int(parts[1]), parts[2] if len(parts) > 2 else "", tuple(headers), data)


def sip_request(
    port: int,
    method: str = "OPTIONS",
    *,
    request_uri: str | None = None,
    to_uri: str | None = None,
    from_uri: str = f"sip:probe@{LOOPBACK}",
    headers: Sequence[str] = (),
    timeout: float = 1.0,
) -> SipReply | None:
    """Send one request over UDP to 127.0.0.1:``port`` and return its final response.

    A minimal probe for test set-up (readiness checks, expecting a 401/404...), not a
    user agent: it retransmits every 250 ms, ignores provisional responses, and ACKs a
    non-2xx final response to an INVITE. Don't use it where an INVITE would be answered
    2xx (it would not ACK or BYE that call).

    Args:
        port: destination port on 127.0.0.1.
        method: request method.
        request_uri: defaults to ``sip:127.0.0.1:PORT``.
        to_uri: defaults to ``request_uri``.
        from_uri: From URI (a tag is added).
        headers: extra header lines, e.g. ``"Contact: <sip:alice@127.0.0.1:5099>"``.
        timeout: seconds to wait for a final response.

    Returns:
        The first final (>= 200) response with the request's Call-ID, or None on
        timeout or when nothing listens (ICMP port unreachable).
    """
    ruri = request_uri or f"sip:{LOOPBACK}:{port}"
    call_id = f"{secrets.token_hex(8)}@{LOOPBACK}"
    branch = f"z9hG4bK-{secrets.token_hex(8)}"
    from_tag = secrets.token_hex(4)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        local_port = sock.getsockname()[1]
        via = f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch={branch};rport"
        contact_given = any(h.lower().startswith("contact:") for h in headers)
        contact = [] if contact_given else [f"Contact: <sip:probe@{LOOPBACK}:{local_port}>"]

        def build(request_method: str, cseq_method: str, to_header: str) -> bytes:
            lines = [
                f"{request_method} {ruri} SIP/2.0",
                via,
                "Max-Forwards: 70",
                f"From: <{from_uri}>;tag={from_tag}",
                f"To: {to_header}",
                f"Call-ID: {call_id}",
                f"CSeq: 1 {cseq_method}",
                *contact,
                *headers,
                "User-Agent: sipload-tests-peers-probe",
                "Content-Length: 0",
                "",
                "",
            ]
            return "\r\n".join(lines).encode()

        request = build(method, method, f"<{to_uri or ruri}>")
        deadline = time.monotonic() + timeout
        next_send = 0.0
        while (now := time.monotonic()) < deadline:
            if now >= next_send:
                try:
                    sock.sendto(request, (LOOPBACK, port))
                except OSError:
                    return None
                next_send = now + 0.25
            sock.settimeout(max(0.001, min(next_send, deadline) - now))
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:  # ICMP port unreachable surfaces as ConnectionRefusedError
                return None
            reply = _parse_reply(data)
            if reply is None or reply.header("Call-ID") != call_id or reply.status < 200:
                continue
            if method == "INVITE" and reply.status >= 300:
                ack = build("ACK", "ACK", reply.header("To") or f"<{to_uri or ruri}>")
                with contextlib.suppress(OSError):
                    sock.sendto(ack, (LOOPBACK, port))
            return reply
    return None


def options_ping(port: int, timeout: float = 0.5) -> int | None:
    """Status code of an OPTIONS to ``sip:127.0.0.1:PORT``, or None without answer."""
    reply = sip_request(port, "OPTIONS", timeout=timeout)
    return None if reply is None else reply.status


# --------------------------------------------------------------------------- processes


def _tail(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else "[...]\n" + text[-limit:]


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


class _PeerProcess:
    """A program run under ``timeout -k 5 LIMIT`` in its own session and work dir."""

    name = "peer"
    _log_files: Mapping[str, str] = {"stdout": "stdout.log", "stderr": "stderr.log"}

    def __init__(self, *, limit: float, workdir: Path | None) -> None:
        self.limit = limit
        self._own_workdir = workdir is None
        self._made_workdir = False
        # a temporary work dir is only made by start(), so an unstarted peer leaks nothing
        self.workdir = Path(workdir) if workdir is not None else Path("/nonexistent")
        self._proc: subprocess.Popen[bytes] | None = None
        self._cache: dict[str, str] | None = None
        self._command: list[str] = []

    # subclasses fill these
    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _after_start(self) -> None:
        """Block until the peer is ready; raise PeerError otherwise."""

    def _wait_until(self, ready: Callable[[], bool], timeout: float, interval: float,
                    exited: str, not_ready: str) -> None:
        """Poll ``ready`` every ``interval`` seconds until it holds.

        Raises:
            PeerError: ``exited`` when the process ends first, ``not_ready`` (then
                "within TIMEOUT s") after ``timeout`` seconds; either with its output.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise PeerError(f"{exited}\n{self.describe()}")
            if ready():
                return
            time.sleep(interval)
        raise PeerError(f"{not_ready} within {timeout} s\n{self.describe()}")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Self:
        """Start the process (and wait until it is ready, for servers).

        Raises:
            PeerError: it exited or did not become ready; the message has its output.
                The peer is then already closed (``describe()`` still works), since a
                ``with`` statement whose ``__enter__`` raises never calls ``__exit__``.
        """
        if self._proc is not None or self._cache is not None:
            raise PeerError(f"{self.name} already started")
        if self._own_workdir:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"sipload-{self.name}-"))
            self._made_workdir = True
        else:
            self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            argv = self._argv()
            self._command = ["timeout", "-k", f"{KILL_AFTER:g}", f"{self.limit:.3f}", *argv]
            with (
                open(self.workdir / self._log_files["stdout"], "wb") as out,
                open(self.workdir / self._log_files["stderr"], "wb") as err,
            ):
                self._proc = subprocess.Popen(
                    self._command,
                    cwd=self.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            self._after_start()
        except BaseException:
            self.close()
            raise
        return self

    @property
    def pid(self) -> int:
        """PID of the ``timeout`` wrapper (also the process group id)."""
        if self._proc is None:
            raise PeerError(f"{self.name} not started")
        return self._proc.pid

    def program_pid(self) -> int | None:
        """PID of the peer program itself (the ``timeout`` wrapper's child), or None."""
        below = sorted(_descendants(self.pid) - {self.pid})
        return below[0] if below else None

    @property
    def returncode(self) -> int | None:
        """Exit code once ended (124: hit ``limit``; 137: killed), else None."""
        return None if self._proc is None else self._proc.poll()

    @property
    def timed_out(self) -> bool:
        """True when ``timeout`` ended the process because ``limit`` passed."""
        return self.returncode in (124, 137)

    def running(self) -> bool:
        """True between ``start()`` and the process's end."""
        return self._proc is not None and self._proc.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end and return its exit code.

        Args:
            timeout: seconds; default ``limit`` plus the kill grace.

        Raises:
            PeerError: still running after ``timeout`` (it is stopped first).
        """
        if self._proc is None:
            raise PeerError(f"{self.name} not started")
        try:
            return self._proc.wait(self.limit + 2 * KILL_AFTER if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise PeerError(
                f"{self.name} still running after {timeout} s; stopped\n{self.describe()}"
            ) from None

    def stop(self, grace: float = KILL_AFTER) -> int | None:
        """End the process: SIGTERM by PID, then SIGKILL its process group.

        Returns:
            Its exit code, or None when it was never started.
        """
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)  # timeout forwards it to the peer
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(grace)
        return proc.returncode

    def close(self) -> None:
        """Stop, keep the logs in memory, and remove a work dir this object made."""
        self.stop()
        if self._cache is None:
            self._cache = {key: _read(self.workdir / name) for key, name in self._log_files.items()}
            if self._made_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ logs
    def _log(self, key: str) -> str:
        if self._cache is not None:
            return self._cache.get(key, "")
        return _read(self.workdir / self._log_files[key])

    @property
    def stdout(self) -> str:
        return self._log("stdout")

    @property
    def stderr(self) -> str:
        return self._log("stderr")

    @property
    def command(self) -> str:
        """The command line, for messages."""
        return " ".join(self._command)

    def describe(self) -> str:
        """Command, exit code and log tails: use as an assertion message."""
        parts = [f"$ {self.command}", f"exit code: {self.returncode}"]
        if self.timed_out:
            parts.append(f"(ended by timeout after {self.limit:g} s)")
        for key in self._log_files:
            text = self._log(key).strip()
            if text:
                parts.append(f"--- {self.name} {key} ---\n{_tail(text)}")
        return "\n".join(parts)


class SippProcess(_PeerProcess):
    """One SIPp run. Use ``sipp_uas()`` / ``sipp_uac()`` to build the usual ones.

    Unless already in ``args``, SIPp gets ``-i 127.0.0.1 -nostdin -buff_size 4194304
    -cp FREE_PORT -trace_err -error_file WORKDIR/errors.log``. The ``with`` statement
    starts it (and, when ``ready_port`` is given, waits until SIPp holds that port; see
    the module docstring) and stops it at the end.

    Args:
        args: SIPp arguments (scenario, remote host, -p, -m, -r...).
        limit: seconds before ``timeout`` ends SIPp.
        workdir: where logs go (default: a temporary dir removed by ``close()``).
        ready_port: SIP port SIPp binds; ``start()`` waits until it is bound.
        ready_transport: ``"udp"`` or ``"tcp"`` (for ``-t t1``/``tn``).
        ready_timeout: seconds ``start()`` waits for ``ready_port``.
        buff_size: ``-buff_size`` value, None to leave SIPp's default.
        trace_msg: also pass ``-trace_msg`` (every message, see ``messages``).
        stat: also pass ``-trace_stat -stf WORKDIR/stat.csv -fd 1`` (one line of counters
            a second, see ``stat()``; the benchmarks read retransmissions from it).
    """

    name = "sipp"
    _log_files: Mapping[str, str] = {
        "stdout": "stdout.log",
        "stderr": "stderr.log",
        "errors": "errors.log",
        "messages": "messages.log",
    }

    def __init__(
        self,
        args: Sequence[str],
        *,
        limit: float = 120.0,
        workdir: Path | None = None,
        ready_port: int | None = None,
        ready_transport: Literal["udp", "tcp"] = "udp",
        ready_timeout: float = 10.0,
        buff_size: int | None = SIPP_BUFF_SIZE,
        trace_msg: bool = False,
        stat: bool = False,
    ) -> None:
        super().__init__(limit=limit, workdir=workdir)
        self.stat_enabled = stat
        self.port = ready_port  #: the SIP port a server listens on (None for a client)
        self.args = [str(a) for a in args]
        self.ready_port = ready_port
        self.ready_transport: Literal["udp", "tcp"] = ready_transport
        self.ready_timeout = ready_timeout
        self.buff_size = buff_size
        self.trace_msg = trace_msg

    def _argv(self) -> list[str]:
        args = list(self.args)
        have = set(args)
        argv = [require("sipp"), *args]
        if "-i" not in have:
            argv += ["-i", LOOPBACK]
        if "-nostdin" not in have:
            argv.append("-nostdin")
        if self.buff_size is not None and "-buff_size" not in have:
            argv += ["-buff_size", str(self.buff_size)]
        if "-cp" not in have:
            argv += ["-cp", str(free_port("udp", host="0.0.0.0"))]
        if "-error_file" not in have:
            argv += ["-trace_err", "-error_file", str(self.workdir / "errors.log")]
        if self.trace_msg and "-message_file" not in have:
            argv += ["-trace_msg", "-message_file", str(self.workdir / "messages.log")]
        if self.stat_enabled and "-stf" not in have:
            argv += ["-trace_stat", "-stf", str(self.stat_file), "-fd", "1"]
        return argv

    @property
    def stat_file(self) -> Path:
        """Where ``stat=True`` makes SIPp write its counters."""
        return self.workdir / "stat.csv"

    def stat(self) -> dict[str, str]:
        """SIPp's latest counters ({} before the first line; see ``read_stat``)."""
        return read_stat(self.stat_file)

    def retransmissions_after(self, t_end: float, wait: float = 2.5) -> int:
        """The cumulative ``Retransmissions(C)`` on a stat line written at or after Unix
        time ``t_end`` (or the latest line, after ``wait`` seconds)."""
        deadline = time.monotonic() + wait
        while True:
            stat = self.stat()
            if stat_time(stat) >= t_end or time.monotonic() > deadline:
                return stat_int(stat, "Retransmissions(C)")
            time.sleep(0.1)

    def quiesce(self, max_wait: float, still: float = 2.0) -> None:
        """Return once SIPp has stopped retransmitting (its counter still for ``still``
        seconds), or after ``max_wait`` seconds."""
        deadline = time.monotonic() + max_wait
        last = self.retransmissions_after(time.time())
        since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            value = self.retransmissions_after(time.time())
            if value != last:
                last, since = value, time.monotonic()
            elif time.monotonic() - since >= still:
                return

    def _after_start(self) -> None:
        if self.ready_port is None:
            return
        port, transport = self.ready_port, self.ready_transport
        self._wait_until(lambda: port_bound_by(self.pid, port, transport), self.ready_timeout,
                         0.02, f"sipp exited before binding port {port}",
                         f"sipp did not bind {transport} port {port}")

    @property
    def errors(self) -> str:
        """Text of SIPp's ``-error_file`` (unexpected messages, failures)."""
        return self._log("errors")

    @property
    def messages(self) -> str:
        """Text of the ``-trace_msg`` message log (empty unless ``trace_msg``)."""
        return self._log("messages")


def read_stat(path: Path) -> dict[str, str]:
    """The last line of a SIPp ``-trace_stat`` file as {column: value} ({} if none)."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    return dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))


def stat_int(stat: Mapping[str, str], key: str) -> int:
    """A counter of a stat line (0 when absent or not a number)."""
    try:
        return int(float(stat.get(key, "0") or 0))
    except ValueError:
        return 0


def stat_time(stat: Mapping[str, str]) -> float:
    """CurrentTime of a stat line as Unix seconds (its third tab-separated field)."""
    try:
        return float(stat.get("CurrentTime", "").split("\t")[-1])
    except ValueError:
        return 0.0


def _scenario_args(scenario_file: str | Path | None, builtin: str) -> list[str]:
    if scenario_file is None:
        return ["-sn", builtin]
    path = Path(scenario_file)
    if not path.is_absolute() and not path.exists():
        path = SIPP_DIR / path
    return ["-sf", str(path.resolve())]


def _transport_kind(transport: str) -> Literal["udp", "tcp"]:
    return "tcp" if transport.startswith("t") else "udp"


def sipp_uas(
    port: int,
    scenario_file: str | Path | None = None,
    builtin: str = "uas",
    extra_args: Sequence[str] = (),
    *,
    transport: str = "u1",
    limit: float = 300.0,
    **kwargs: Any,
) -> SippProcess:
    """A SIPp server on 127.0.0.1:``port`` (not started: use ``with`` or ``start()``).

    Args:
        port: SIP port to listen on.
        scenario_file: XML scenario (absolute, relative to cwd, or a name in
            ``tests/sipp/``); default: the built-in ``builtin`` scenario.
        builtin: built-in scenario name for ``-sn``.
        extra_args: more SIPp arguments.
        transport: SIPp ``-t`` mode (``u1``, ``un``, ``t1``, ``tn``).
        limit: seconds before ``timeout`` ends it.
        kwargs: passed to ``SippProcess`` (``workdir``, ``trace_msg``...).
    """
    args = [
        *_scenario_args(scenario_file, builtin),
        "-p",
        str(port),
        "-t",
        transport,
        *extra_args,
    ]
    return SippProcess(
        args,
        limit=limit,
        ready_port=port,
        ready_transport=_transport_kind(transport),
        **kwargs,
    )


def sipp_uac(
    target: str,
    scenario_file: str | Path | None = None,
    builtin: str = "uac",
    extra_args: Sequence[str] = (),
    *,
    calls: int = 1,
    rate: float = 10.0,
    port: int | None = None,
    transport: str = "u1",
    service: str | None = None,
    limit: float | None = None,
    **kwargs: Any,
) -> SippProcess:
    """A SIPp client placing ``calls`` calls at ``rate`` calls/s to ``target``.

    Not started: use ``with`` or ``start()``, then ``wait()`` for the exit code (0 when
    every call succeeded, 1 when any failed).

    Args:
        target: ``host:port`` of the peer (127.0.0.1 only).
        scenario_file: XML scenario (see ``sipp_uas``); default the built-in one.
        builtin: built-in scenario name for ``-sn``.
        extra_args: more SIPp arguments (``-key``, ``-au``, ``-ap``, ``-d``...).
        calls: ``-m``, number of calls before SIPp exits.
        rate: ``-r``, calls per second.
        port: local SIP port (default: a free one, never 5060).
        transport: SIPp ``-t`` mode.
        service: ``-s``, user part of the Request-URI.
        limit: seconds before ``timeout`` ends it (default 30 + 2 x calls/rate).
        kwargs: passed to ``SippProcess``.
    """
    if not target.startswith(LOOPBACK):
        raise ValueError(f"SIPp targets must be on {LOOPBACK}, got {target!r}")
    local = port if port is not None else free_port(_transport_kind(transport))
    args = [
        target,
        *_scenario_args(scenario_file, builtin),
        "-m",
        str(calls),
        "-r",
        f"{rate:g}",
        "-p",
        str(local),
        "-t",
        transport,
    ]
    if service is not None:
        args += ["-s", service]
    args += list(extra_args)
    if limit is None:
        limit = 30.0 + 2.0 * calls / max(rate, 0.001)
    return SippProcess(args, limit=limit, **kwargs)


class KamailioProcess(_PeerProcess):
    """A Kamailio on 127.0.0.1:``port`` (udp+tcp) from a config in ``ci/kamailio``.

    Runs ``kamailio -f CFG -DD -E -m SHM -M PKG -Y WORKDIR/run -A LISTEN_PORT=PORT
    -A NAME=VALUE...`` under ``timeout``; ``start()`` (or ``with``) returns once it
    answers OPTIONS with 200 and raises ``PeerError`` with its log otherwise.

    Args:
        cfg: config file; it must take ``LISTEN_PORT`` and answer OPTIONS to itself.
        port: listen port (default: free for both UDP and TCP).
        defines: preprocessor values: ``True`` gives ``-A NAME`` (a flag), anything else
            ``-A NAME=VALUE`` with the value's text, unquoted (the configs read strings
            with ``$def(NAME)``).
        children: UDP/TCP worker count (the ``CHILDREN`` define).
        shm_mb: ``-m`` shared memory; 256 is plenty for functional tests, use 4096 for
            load above ~2,000 calls/s.
        pkg_mb: ``-M`` private memory per process.
        limit: seconds before ``timeout`` ends it.
        start_timeout: seconds to wait for the 200 to OPTIONS.
        workdir: where logs and the run dir go (default: a temporary dir).
        extra_args: more kamailio arguments.
    """

    name = "kamailio"
    ws_port = 0  #: the WebSocket port (kamailio_websocket() only)
    tls_port = 0  #: the TLS port (kamailio_tls() only)

    def __init__(
        self,
        cfg: str | Path = PROXY_CFG,
        *,
        port: int | None = None,
        defines: Mapping[str, str | int | bool] | None = None,
        children: int | None = None,
        shm_mb: int = 256,
        pkg_mb: int = 16,
        limit: float = 600.0,
        start_timeout: float = 15.0,
        workdir: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(limit=limit, workdir=workdir)
        self.cfg = Path(cfg).resolve()
        self.port = port if port is not None else free_port("both")
        self.defines: dict[str, str | int | bool] = {"LISTEN_PORT": self.port}
        if children is not None:
            self.defines["CHILDREN"] = children
        self.defines.update(defines or {})
        self.shm_mb = shm_mb
        self.pkg_mb = pkg_mb
        self.start_timeout = start_timeout
        self.extra_args = list(extra_args)

    def _argv(self) -> list[str]:
        rundir = self.workdir / "run"
        rundir.mkdir(exist_ok=True)
        argv = [
            require("kamailio"),
            "-f",
            str(self.cfg),
            "-DD",
            "-E",
            "-m",
            str(self.shm_mb),
            "-M",
            str(self.pkg_mb),
            "-Y",
            str(rundir),
        ]
        for name, value in self.defines.items():
            if value is True:
                argv += ["-A", name]
            elif value is not False:
                argv += ["-A", f"{name}={value}"]
        return argv + self.extra_args

    def _after_start(self) -> None:
        self._wait_until(lambda: options_ping(self.port, timeout=0.25) == 200,
                         self.start_timeout, 0.05, "kamailio exited during start-up",
                         f"kamailio did not answer OPTIONS on {LOOPBACK}:{self.port}")

    @property
    def log(self) -> str:
        """Kamailio's log (it logs to stderr with ``-E``)."""
        return self.stderr

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, e.g. as a SIPp target."""
        return f"{LOOPBACK}:{self.port}"


def kamailio_proxy(
    uas_port: int | None = None,
    *,
    uas_addr: str | None = None,
    port: int | None = None,
    **kwargs: Any,
) -> KamailioProcess:
    """``ci/kamailio/proxy.cfg``: record-routing proxy forwarding to a UAS.

    Args:
        uas_port: the UAS listens on 127.0.0.1:``uas_port``, or
        uas_addr: the UAS as ``host:port`` (on 127.0.0.1).
        port: the proxy's own port (default: a free one).
        kwargs: passed to ``KamailioProcess``.
    """
    if uas_addr is None:
        if uas_port is None:
            raise ValueError("give uas_port or uas_addr")
        uas_addr = f"{LOOPBACK}:{uas_port}"
    defines: dict[str, str | int | bool] = dict(kwargs.pop("defines", None) or {})
    defines["UAS_ADDR"] = uas_addr
    return KamailioProcess(PROXY_CFG, port=port, defines=defines, **kwargs)


def kamailio_websocket(uas_port: int, *, ws_port: int | None = None,
                       **kwargs: Any) -> KamailioProcess:
    """``ci/kamailio/websocket.cfg``: SIP over WebSocket on ``ws_port`` relayed to a UDP
    UAS on 127.0.0.1:``uas_port`` (the ``.ws_port`` attribute of the result).

    Needs Kamailio's websocket module (Debian ``kamailio-websocket-modules``): missing,
    the test fails under CI=true and skips elsewhere, like a missing binary.
    """
    _require_kamailio_module("websocket.so", "kamailio-websocket-modules")
    ws = ws_port if ws_port is not None else free_port("tcp")
    defines: dict[str, str | int | bool] = dict(kwargs.pop("defines", None) or {})
    defines["UAS_ADDR"] = f"{LOOPBACK}:{uas_port}"
    defines["WS_PORT"] = ws
    proc = KamailioProcess(WEBSOCKET_CFG, port=kwargs.pop("port", None) or free_port("udp"),
                           defines=defines, **kwargs)
    proc.ws_port = ws
    return proc


def _require_kamailio_module(module: str, package: str) -> None:
    """Kamailio and its ``module``: missing, fail under CI=true, skip elsewhere."""
    require("kamailio")
    modules = [KAMAILIO_MODULES, *Path("/usr/lib").glob("*/kamailio/modules")]
    if not any((d / module).exists() for d in modules):
        message = (f"Kamailio's {module} not found: install the Debian package "
                   f"'{package}' (or run ci/install-peers.sh)")
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(message + " [CI=true: missing peers fail instead of skipping]")
        pytest.skip(message)


def kamailio_tls(uas_port: int, cert: Path, key: Path, *, tls_port: int | None = None,
                 **kwargs: Any) -> KamailioProcess:
    """``ci/kamailio/tls.cfg``: SIP over TLS on ``tls_port`` (certificate ``cert``, key
    ``key``, PEM files) relayed to a UDP UAS on 127.0.0.1:``uas_port`` (the ``.tls_port``
    attribute of the result).

    Needs Kamailio's tls module (Debian ``kamailio-tls-modules``): missing, the test
    fails under CI=true and skips elsewhere, like a missing binary.
    """
    _require_kamailio_module("tls.so", "kamailio-tls-modules")
    port = tls_port if tls_port is not None else free_port("tcp")
    defines: dict[str, str | int | bool] = dict(kwargs.pop("defines", None) or {})
    defines.update({"UAS_ADDR": f"{LOOPBACK}:{uas_port}", "TLS_PORT": port,
                    "TLS_CERT": f'"{cert}"', "TLS_KEY": f'"{key}"'})
    proc = KamailioProcess(TLS_CFG, port=kwargs.pop("port", None) or free_port("udp"),
                           defines=defines, **kwargs)
    proc.tls_port = port
    return proc


def kamailio_registrar(
    *,
    port: int | None = None,
    passwords: Mapping[str, str] | None = None,
    realm: str | None = None,
    min_expires: int | None = None,
    max_expires: int | None = None,
    invite_auth: bool = False,
    qop: bool = True,
    **kwargs: Any,
) -> KamailioProcess:
    """``ci/kamailio/registrar.cfg``: digest registrar that routes to registered users.

    Args:
        port: its port (default: a free one).
        passwords: new passwords for ``"alice"`` / ``"bob"`` (defaults in
            ``REGISTRAR_USERS``); other names are not accepted.
        realm: digest realm (default ``REGISTRAR_REALM``).
        min_expires: below it REGISTER gets 423 (default ``REGISTRAR_MIN_EXPIRES``).
        max_expires: above it expires is lowered (default 3600).
        invite_auth: also challenge initial INVITEs with 407.
        qop: challenge with ``qop="auth"`` (else no qop).
        kwargs: passed to ``KamailioProcess``.
    """
    defines: dict[str, str | int | bool] = dict(kwargs.pop("defines", None) or {})
    for user, password in (passwords or {}).items():
        if user not in REGISTRAR_USERS:
            raise ValueError(f"registrar.cfg knows only {sorted(REGISTRAR_USERS)}")
        defines[f"{user.upper()}_PASSWORD"] = password
    if realm is not None:
        defines["REALM"] = realm
    if min_expires is not None:
        defines["MIN_EXPIRES"] = min_expires
    if max_expires is not None:
        defines["MAX_EXPIRES"] = max_expires
    if invite_auth:
        defines["WITH_INVITE_AUTH"] = True
    if not qop:
        defines["WITH_NO_QOP"] = True
    return KamailioProcess(REGISTRAR_CFG, port=port, defines=defines, **kwargs)


def kamailio_rtpengine(
    uas_port: int,
    rtpengine: RtpengineProcess,
    *,
    port: int | None = None,
    **kwargs: Any,
) -> KamailioProcess:
    """``ci/kamailio/rtpengine.cfg``: a proxy to 127.0.0.1:``uas_port`` whose calls' media
    ``rtpengine`` relays (every SDP rewritten to rtpengine's address and ports).

    Args:
        uas_port: the UAS listens on 127.0.0.1:``uas_port``.
        rtpengine: a started :class:`RtpengineProcess` (its ng control socket).
        port: the proxy's own port (default: a free one).
        kwargs: passed to ``KamailioProcess``.
    """
    defines: dict[str, str | int | bool] = dict(kwargs.pop("defines", None) or {})
    defines["UAS_ADDR"] = f"{LOOPBACK}:{uas_port}"
    defines["RTPENGINE_SOCK"] = f'"udp:{LOOPBACK}:{rtpengine.ng_port}"'
    return KamailioProcess(RTPENGINE_CFG, port=port, defines=defines, **kwargs)


class RtpengineProcess(_PeerProcess):
    """rtpengine (Debian ``rtpengine-daemon``) relaying RTP in userspace on 127.0.0.1.

    Runs ``rtpengine --config-file=none --foreground --table=-1 --interface=127.0.0.1
    --listen-ng=127.0.0.1:NG --port-min=LOW --port-max=HIGH --log-stderr`` (no kernel
    module, no systemd); ``start()`` returns once the ng control protocol answers a
    ``ping`` with ``pong``.  :meth:`ng` sends any ng command (bencoded dictionary).

    Args:
        ports: how many media ports it may use (from a free base port upwards).
        limit: seconds before ``timeout`` ends it.
        start_timeout: seconds to wait for the pong.
        workdir: where logs go (default: a temporary dir).
    """

    name = "rtpengine"

    def __init__(self, *, ports: int = 64, limit: float = 300.0, start_timeout: float = 15.0,
                 workdir: Path | None = None) -> None:
        super().__init__(limit=limit, workdir=workdir)
        self.ng_port = free_port("udp")
        low = free_port("udp")
        self.port_min = low - low % 2
        self.port_max = self.port_min + ports - 1
        self.start_timeout = start_timeout

    def _argv(self) -> list[str]:
        # --config-file=none: Debian's /etc/rtpengine/rtpengine.conf opens fixed CLI and
        # HTTP ports (2224, 2225), so a second rtpengine beside this one (another test,
        # another checkout) could not start
        return [require("rtpengine"), "--config-file=none", "--foreground", "--table=-1",
                f"--interface={LOOPBACK}", f"--listen-ng={LOOPBACK}:{self.ng_port}",
                f"--port-min={self.port_min}", f"--port-max={self.port_max}",
                "--log-stderr", "--log-level=5", f"--pidfile={self.workdir / 'rtpengine.pid'}"]

    def ng(self, command: dict[str, Any], timeout: float = 1.0) -> dict[str, Any]:
        """Send one ng command (e.g. ``{"command": "ping"}``); returns the decoded reply.

        Raises:
            PeerError: no reply within ``timeout``.
        """
        cookie = secrets.token_hex(6).encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(cookie + b" " + _bencode(command), (LOOPBACK, self.ng_port))
            try:
                data = s.recv(65535)
            except OSError as e:
                raise PeerError(f"rtpengine ng: no answer to {command}: {e}") from None
        head, _, body = data.partition(b" ")
        if head != cookie:
            raise PeerError(f"rtpengine ng: reply for another cookie: {data[:80]!r}")
        reply, _ = _bdecode(body, 0)
        if not isinstance(reply, dict):
            raise PeerError(f"rtpengine ng: not a dictionary: {data[:80]!r}")
        return reply

    def _after_start(self) -> None:
        self._wait_until(self._pongs, self.start_timeout, 0.05,
                         "rtpengine exited during start-up",
                         f"rtpengine did not answer ping on {LOOPBACK}:{self.ng_port}")

    def _pongs(self) -> bool:
        try:
            return self.ng({"command": "ping"}, timeout=0.25).get("result") == "pong"
        except PeerError:
            return False

    def owns(self, port: int) -> bool:
        """True when ``port`` is one of rtpengine's media ports."""
        return self.port_min <= port <= self.port_max


def _bencode(value: Any) -> bytes:
    if isinstance(value, dict):
        return b"d" + b"".join(_bencode(str(k)) + _bencode(v) for k, v in sorted(value.items())) \
            + b"e"
    if isinstance(value, list):
        return b"l" + b"".join(_bencode(v) for v in value) + b"e"
    if isinstance(value, int):
        return b"i%de" % value
    raw = value if isinstance(value, bytes) else str(value).encode()
    return b"%d:%s" % (len(raw), raw)


def _bdecode(data: bytes, i: int) -> tuple[Any, int]:
    """One bencoded value at ``data[i:]`` (strings as text); returns it and where it ends."""
    kind = data[i:i + 1]
    if kind == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if kind in (b"l", b"d"):
        items: list[Any] = []
        i += 1
        while data[i:i + 1] != b"e":
            item, i = _bdecode(data, i)
            items.append(item)
        if kind == b"l":
            return items, i + 1
        return dict(zip(items[::2], items[1::2], strict=True)), i + 1
    colon = data.index(b":", i)
    size = int(data[i:colon])
    return data[colon + 1:colon + 1 + size].decode(errors="replace"), colon + 1 + size


BARESIP_DIR = REPO_ROOT / "ci" / "baresip"


class BaresipProcess(_PeerProcess):
    """baresip 1.0 auto-answering on 127.0.0.1:``port`` (UDP and TCP), no sound device.

    The config is ``ci/baresip`` with its ``SIP_PORT``, ``RTP_PORTS`` and
    ``AUDIO_SOURCE`` filled in, written to the work dir; ``start()`` returns once
    baresip prints ``baresip is ready.``.  It answers every call to
    ``sip:uas@127.0.0.1:PORT`` with G.711 and a 440 Hz tone (rings first, then
    auto-answers), or with ``audio_file`` (a 16-bit PCM WAV, looped by baresip's
    ``aufile`` module) as its source.  ``mediaenc`` (e.g. ``srtp-mand``) loads the
    ``srtp`` module and sets the account's media encryption: SRTP keyed with SDES.
    """

    name = "baresip"

    def __init__(self, *, port: int | None = None, limit: float = 300.0,
                 start_timeout: float = 15.0, workdir: Path | None = None,
                 audio_file: Path | None = None, mediaenc: str = "") -> None:
        super().__init__(limit=limit, workdir=workdir)
        self.port = port if port is not None else free_port("both")
        self.start_timeout = start_timeout
        self.audio_file = audio_file
        self.mediaenc = mediaenc

    def _argv(self) -> list[str]:
        conf = self.workdir / "conf"
        conf.mkdir(exist_ok=True)
        rtp = free_port("udp")
        rtp = rtp - rtp % 2
        for name in ("config", "accounts"):
            text = (BARESIP_DIR / name).read_text()
            text = text.replace("SIP_PORT", str(self.port))
            text = text.replace("RTP_PORTS", f"{rtp}-{rtp + 19}")
            text = text.replace("AUDIO_SOURCE", "ausine,440" if self.audio_file is None
                                else f"aufile,{Path(self.audio_file).resolve()}")
            if self.mediaenc and name == "config":  # SRTP: the srtp module (SDES)
                text = text.replace("module\t\t\tg711.so", "module\t\t\tg711.so\n"
                                    "module\t\t\tsrtp.so")
            elif self.mediaenc:
                text = text.replace(";answermode=auto",
                                    f";answermode=auto;mediaenc={self.mediaenc}")
            (conf / name).write_text(text)
        return [require("baresip"), "-f", str(conf)]

    def _after_start(self) -> None:
        self._wait_until(lambda: "baresip is ready." in self.stdout + self.stderr,
                         self.start_timeout, 0.05, "baresip exited during start-up",
                         "baresip did not get ready")

    @property
    def uri(self) -> str:
        return f"sip:uas@{LOOPBACK}:{self.port}"


class LoopbackServer:
    """A toy endpoint on 127.0.0.1 in threads, UDP or (``tcp=True``) TCP: binds ``port``
    (a free one if None) on entering ``with``, and hands each datagram to
    :meth:`_datagram`, whose answer goes back to the sender, or each accepted connection
    to :meth:`_connection` in a thread of its own.  By itself a silent sink; subclasses
    answer.  Every socket wait is 0.1 s, so leaving ``with`` ends the threads."""

    def __init__(self, port: int | None = None, *, tcp: bool = False) -> None:
        self.tcp = tcp
        self.port = port if port is not None else free_port("tcp" if tcp else "udp")
        self._sock = socket.socket(socket.AF_INET,
                                   socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept if tcp else self._serve,
                                          daemon=True)]

    def __enter__(self) -> Self:
        if self.tcp:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOOPBACK, self.port))
        if self.tcp:
            self._sock.listen(64)
        self._sock.settimeout(0.1)
        self._threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in list(self._threads):
            t.join(5)
        self._sock.close()

    def _datagram(self, data: bytes, peer: tuple[str, int]) -> bytes | None:
        """The answer to one datagram (None: none)."""
        return None

    def _connection(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        """Serve one accepted connection (closed on return)."""
        for _ in self._chunks(conn):
            pass

    def _chunks(self, conn: socket.socket) -> Iterator[bytes]:
        """What arrives on ``conn``, read by read, until it closes, fails or we stop."""
        conn.settimeout(0.1)
        while not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            yield chunk

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            answer = self._datagram(data, peer)
            if answer is not None:
                with contextlib.suppress(OSError):
                    self._sock.sendto(answer, peer)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve_connection, args=(conn, peer), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve_connection(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        with conn:
            self._connection(conn, peer)


_ECHO = re.compile(rb"(?im)^(via|v|from|f|to|t|call-id|i|cseq)[ \t]*:.*$")


def _echoed(head: bytes) -> bytes:
    """The Via, From, To, Call-ID and CSeq lines of a message head, as a naive UAS
    copies them into its 200."""
    return b"\r\n".join(m.group(0).rstrip(b"\r") for m in _ECHO.finditer(head))


class NaiveTcpUas(LoopbackServer):
    """A deliberately wrong SIP-over-TCP server on 127.0.0.1 (a breaking target).

    It has the classic stream bugs the conformance ``transport`` pack catches: each
    ``recv()`` is taken as exactly one message (a read that does not start with a
    request line is dropped, a second message in the same read is ignored, a body
    still on its way is never waited for), its 200 answers carry no Content-Length,
    and a request whose Via names another port than the connection's is answered on
    a new connection to that port, as over UDP.  It answers every request 200 OK.
    Runs in a thread; use ``with``.
    """

    _REQUEST = re.compile(rb"^([A-Z]+) \S+ SIP/2\.0\r\n")
    _SENT_BY = re.compile(rb"(?im)^(?:via|v)[ \t]*:[ \t]*SIP/2\.0/TCP[ \t]+([^;:\s]+):(\d+)")

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port, tcp=True)

    def _connection(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        for chunk in self._chunks(conn):
            if self._REQUEST.match(chunk) is None:
                continue  # "not a message": dropped
            head = chunk.split(b"\r\n\r\n", 1)[0]
            answer = b"SIP/2.0 200 OK\r\n" + _echoed(head) + b"\r\n\r\n"
            sent_by = self._SENT_BY.search(head)
            if sent_by is not None and int(sent_by.group(2)) != peer[1]:
                with contextlib.suppress(OSError), socket.create_connection(
                        (sent_by.group(1).decode(), int(sent_by.group(2))), 1.0) as out:
                    out.sendall(answer)
                continue
            with contextlib.suppress(OSError):
                conn.sendall(answer)


class NaiveUdpUas(LoopbackServer):
    """A deliberately wrong SIP-over-UDP endpoint on 127.0.0.1 (a breaking target): it
    answers every datagram 200 OK with the datagram's Via, From, To, Call-ID and CSeq
    copied, requests and responses alike (RFC 3261 §18.1.2: a response whose Via is not
    the receiver's MUST be discarded).  Runs in a thread; use ``with``."""

    def _datagram(self, data: bytes, peer: tuple[str, int]) -> bytes | None:
        head = data.split(b"\r\n\r\n", 1)[0]
        return b"SIP/2.0 200 OK\r\n" + _echoed(head) + b"\r\nContent-Length: 0\r\n\r\n"
