"""Helpers the SIPp-based benchmarks share: free ports, /proc readings, SIPp stat files.

Used by ``ua_bench.py`` and ``cluster_bench.py`` (run as scripts from the repository
root: ``python3 bench/ua_bench.py``).
"""

from __future__ import annotations

import resource
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_udp_port() -> int:
    """A UDP port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def udp_bound(port: int) -> bool:
    """True when some socket is bound to UDP ``port`` (read from /proc/net/udp)."""
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "07" and int(fields[1].split(":")[1], 16) == port:
            return True
    return False


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def read_stat(path: Path) -> dict[str, str]:
    """The last line of a SIPp ``-trace_stat`` file as {column: value} ({} if none)."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    return dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))


def stat_int(stat: dict[str, str], key: str) -> int:
    try:
        return int(float(stat.get(key, "0") or 0))
    except ValueError:
        return 0


def stat_time(stat: dict[str, str]) -> float:
    """CurrentTime of a stat line as epoch seconds (its third tab-separated field)."""
    try:
        return float(stat.get("CurrentTime", "").split("\t")[-1])
    except ValueError:
        return 0.0
