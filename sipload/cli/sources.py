"""``--source-addresses``: the local addresses calls are spread over, checked and shared out.

PBXs and SBCs often limit calls per source address; calling from many addresses
shows what the system does with each.  The flag takes a comma list of items, each an
address (``127.0.0.2``, ``::1``), an inclusive range (``127.0.0.2-127.0.0.40``) or a
network (``127.0.1.0/28``: its host addresses).  Before anything is sent, every
address is checked: it parses, all are of one family (and the target's), there are
at most :data:`MAX_SOURCES`, and each can be bound here (it is one of this host's:
on Linux all of 127.0.0.0/8 is, without aliases).  Any failure is one line naming
the flag.

The run plan carries each worker's share (:func:`sipload.cluster.sources.split`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

from sipload.cluster.sources import split

__all__ = ["FLAG", "MAX_SOURCES", "SourceError", "check", "parse", "split"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_SOURCES = 1024
"""The most addresses accepted: each needs sockets in every worker that uses it."""

FLAG = "--source-addresses"


class SourceError(ValueError):
    """A bad ``--source-addresses``; the message names the flag."""


def _address(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        raise SourceError(f"{FLAG}: {text.strip()!r} is not an IP address") from None


def _expand(item: str) -> Iterator[IPAddress]:
    """The addresses of one item: an address, a range A-B, or a network a/len."""
    if "/" in item:
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise SourceError(f"{FLAG}: {item!r} is not a network such as "
                              "127.0.1.0/28") from None
        if net.num_addresses > 4 * MAX_SOURCES:
            raise SourceError(f"{FLAG}: {item} has {net.num_addresses} addresses; at most "
                              f"{MAX_SOURCES} are taken")
        yield from net.hosts()
        return
    # a range: "A-B" (an IPv6 address has no '-', so the split is safe)
    if "-" in item:
        first_text, _, last_text = item.partition("-")
        first, last = _address(first_text), _address(last_text)
        if first.version != last.version:
            raise SourceError(f"{FLAG}: {item!r} mixes IPv4 and IPv6")
        if int(last) < int(first):
            raise SourceError(f"{FLAG}: {item!r} ends before it starts")
        if int(last) - int(first) >= MAX_SOURCES:
            raise SourceError(f"{FLAG}: {item!r} has {int(last) - int(first) + 1} addresses;"
                              f" at most {MAX_SOURCES}")
        for n in range(int(first), int(last) + 1):
            yield ipaddress.ip_address(n) if first.version == 4 else ipaddress.IPv6Address(n)
        return
    yield _address(item)


def parse(text: str) -> list[str]:
    """The addresses ``text`` names, in order, each once.

    Raises:
        SourceError: an item that is not an address, range or network, an empty
            list, IPv4 mixed with IPv6, or more than :data:`MAX_SOURCES` addresses.
    """
    items = [i.strip() for i in text.split(",")]
    if not text.strip() or any(not i for i in items):
        raise SourceError(f"{FLAG}: expected addresses, ranges (127.0.0.2-127.0.0.40) or "
                          f"networks (127.0.1.0/28) separated by commas, got {text!r}")
    seen: dict[IPAddress, None] = {}
    for item in items:
        for addr in _expand(item):
            seen[addr] = None
            if len(seen) > MAX_SOURCES:
                raise SourceError(f"{FLAG}: more than {MAX_SOURCES} addresses")
    if not seen:
        raise SourceError(f"{FLAG}: {text!r} names no address")
    versions = {a.version for a in seen}
    if len(versions) > 1:
        raise SourceError(f"{FLAG}: mixes IPv4 and IPv6 addresses; use one family")
    return [str(a) for a in seen]


def check(addresses: list[str], target_host: str | None) -> None:
    """Each address is of the target's family and can be bound on this host.

    Raises:
        SourceError: naming the first address that is not.
    """
    version = ipaddress.ip_address(addresses[0]).version
    if target_host is not None:
        target: int
        try:
            target = ipaddress.ip_address(target_host.strip("[]")).version
        except ValueError:
            target = 0  # a name: its family is known once resolved
        if target and target != version:
            raise SourceError(f"{FLAG}: IPv{version} addresses cannot reach the IPv{target} "
                              f"target {target_host}")
    family = socket.AF_INET6 if version == 6 else socket.AF_INET
    for addr in addresses:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            try:
                s.bind((addr, 0))
            except OSError as e:
                raise SourceError(
                    f"{FLAG}: cannot bind {addr} ({e.strerror or e}): not an address of "
                    "this host (add it to an interface, or use 127.0.0.0/8 on loopback)"
                ) from None
