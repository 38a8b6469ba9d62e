"""Network namespaces for the tests: a private LAN of "hosts" on one machine.

Test infrastructure, not a test module.  :class:`Lan` creates, for one test,
one network namespace per host name plus a hub namespace holding a Linux
bridge, and joins each host to the bridge with a veth pair.  Every host gets an
address in a private /24 that exists only inside these namespaces (the root
namespace never sees it, so no traffic can leave them), and its own loopback.

Theory of operation
-------------------
1. Names are unique per test run: ``slt<pid>x<hex>-<host>`` (at most 15
   characters for interfaces, which are named after the host index only).
2. Both ends of each veth pair are created directly inside their namespaces
   (``ip link add ... netns A type veth peer name ... netns B``), so nothing
   is ever added to the root namespace, even for a moment.
3. Teardown always runs (``with Lan(...)``, also on failure and on a failed
   set-up): each namespace is deleted, which destroys its veth ends.  Processes
   a test started inside a namespace are the test's to end, before teardown.
4. Namespaces left behind by a test run that died (its pid in the name no
   longer alive) are deleted when the next :class:`Lan` starts.
5. :func:`require_netns` skips a test when namespaces cannot be made here,
   except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import pytest

PREFIX = "slt"
_NAME = re.compile(rf"^{PREFIX}(\d+)x[0-9a-f]+-")


class NetnsError(RuntimeError):
    """A namespace, link or address could not be set up."""


def _ip(*args: str, check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    ip = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin") or "ip"
    proc = subprocess.run([ip, *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
    if check and proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if shutil.which("ip") is None and shutil.which("ip", path="/usr/sbin:/sbin") is None:
        return "the ip command (iproute2) is missing"
    probe = f"{PREFIX}{os.getpid()}x{secrets.token_hex(3)}-probe"
    try:
        made = _ip("netns", "add", probe, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"ip netns add failed: {e}"
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()} (root or CAP_SYS_ADMIN needed)"
    _ip("netns", "del", probe, check=False)
    return None


def require_netns() -> None:
    """Skip the test when namespaces cannot be made, unless ``CI=true`` (then fail)."""
    why = unavailable()
    if why is None:
        return
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"network namespaces unavailable: {why} [CI=true: a failure]")
    pytest.skip(f"network namespaces unavailable: {why}")


def sweep_stale() -> list[str]:
    """Delete namespaces of this helper whose creating process is gone."""
    listing = _ip("netns", "list", check=False).stdout
    removed = []
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NAME.match(name)
        if m is None:
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or _alive(pid):
            continue
        if _ip("netns", "del", name, check=False).returncode == 0:
            removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True, slots=True)
class Host:
    """One namespace of a :class:`Lan`: its name, its address on the LAN."""

    name: str
    ns: str
    address: str

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this namespace (``ip netns exec NS ...``)."""
        ip = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin") or "ip"
        return [ip, "netns", "exec", self.ns, *(str(a) for a in argv)]


class Lan:
    """Hosts in their own namespaces, on one bridge, in a private /24.

    Args:
        hosts: host names (short words: ``coord``, ``w1``...), in address order:
            the first gets ``.1``, the next ``.2`` ...
        subnet: the first three octets; default a random ``10.X.Y`` network.
    """

    def __init__(self, hosts: Sequence[str], *, subnet: str | None = None) -> None:
        if not hosts or len(set(hosts)) != len(hosts) or len(hosts) > 200:
            raise ValueError("give distinct host names (1 to 200)")
        for h in hosts:
            if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", h):
                raise ValueError(f"host name {h!r}: 1-8 lowercase letters and digits")
        self.tag = f"{PREFIX}{os.getpid()}x{secrets.token_hex(2)}"
        if subnet is None:
            subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250) + 1}"
        self.subnet = subnet
        self.hub = f"{self.tag}-hub"
        self.hosts: dict[str, Host] = {
            h: Host(h, f"{self.tag}-{h}", f"{subnet}.{i + 1}") for i, h in enumerate(hosts)}
        self._made: list[str] = []

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    @property
    def namespaces(self) -> list[str]:
        """The namespaces made so far (hub first)."""
        return list(self._made)

    def _add_ns(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._made.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")

    def start(self) -> Self:
        sweep_stale()
        try:
            self._add_ns(self.hub)
            _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.hub, "link", "set", "br0", "up")
            for i, host in enumerate(self.hosts.values()):
                self._add_ns(host.ns)
                # one end in the host (eth0), the other in the hub (p<i>)
                _ip("link", "add", "eth0", "netns", host.ns, "type", "veth",
                    "peer", "name", f"p{i}", "netns", self.hub)
                _ip("-n", self.hub, "link", "set", f"p{i}", "master", "br0")
                _ip("-n", self.hub, "link", "set", f"p{i}", "up")
                _ip("-n", host.ns, "addr", "add", f"{host.address}/24", "dev", "eth0")
                _ip("-n", host.ns, "link", "set", "eth0", "up")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> list[str]:
        """Delete every namespace made (errors are collected, not raised)."""
        errors = []
        for ns in reversed(self._made):
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                done = _ip("netns", "del", ns, check=False)
                if done.returncode != 0:
                    errors.append(f"{ns}: {done.stderr.strip()}")
        self._made.clear()
        return errors

    def exists(self) -> list[str]:
        """Which of this LAN's namespaces still exist (for teardown checks)."""
        listing = _ip("netns", "list", check=False).stdout
        names = {line.split()[0] for line in listing.splitlines() if line.split()}
        return sorted(n for n in names if n.startswith(self.tag + "-"))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
