"""Each worker's share of ``--source-addresses`` (written into the run plan).

With at least as many addresses as workers, each worker has its own, dealt in turn
(worker ``w`` of ``W`` takes addresses ``w, w+W, w+2W ...``), so no two workers call
from one address; with fewer, workers share them round the list.  Inside a worker,
calls take the worker's addresses in turn (``RunContext.locals``).
"""

from __future__ import annotations


def split(addresses: list[str], workers: int) -> list[list[str]]:
    """Each worker's share: dealt in turn when there are enough, else shared round."""
    workers = max(workers, 1)
    if len(addresses) >= workers:
        return [addresses[w::workers] for w in range(workers)]
    return [[addresses[w % len(addresses)]] for w in range(workers)]


def share(shares: list[list[str]], worker: int) -> tuple[str, ...]:
    """Worker ``worker``'s share (a worker that joined later takes one round the list)."""
    if not shares:
        return ()
    return tuple(shares[worker % len(shares)])
