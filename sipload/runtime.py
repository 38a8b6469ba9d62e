"""Run one :class:`~sipload.ua.agent.UserAgent` on sockets: the UA's imperative shell.

:class:`UARuntime` binds a :class:`~sipload.transport.TransportSet`, creates the
UA with the bound address, and pumps bytes and timers between them on one
event loop, like aioquic's ``QuicConnectionProtocol``.  Programs use it one of
two ways:

* **Blocking**, like libeXosip2: ``rt = UARuntime.start_sync(config)`` makes
  its own loop; the program calls ``rt.ua``'s API directly, then
  ``rt.event_wait(timeout)`` sends what those calls queued and runs the loop
  until an event arrives or the timeout passes.
* **async**: ``rt = await UARuntime.start(config)`` on the running loop; after
  API calls, ``rt.flush()``; events come from ``await rt.next_event(timeout)``
  or ``async for event in rt.events()``.

Theory of operation
===================

1. The shell only moves bytes and re-arms one timer, through the one
   :class:`~sipload.pump.Pump` the engine uses too: it writes ``ua.outgoing()``,
   re-arms one ``loop.call_at`` at ``ua.next_deadline()``, and moves the UA's events
   to the runtime's queue, waking a waiter (read the pump's rules there).
2. The pump runs after every received message, every timer and every transport
   error, and at the start of :meth:`event_wait`/:meth:`next_event` — so API
   calls made between two waits are flushed by the next wait.  Async programs
   that do not wait right away call :meth:`flush` themselves.
3. Time is ``time.monotonic()`` seconds (the epoch of ``loop.time()``; the pump's
   ``t0`` is 0).  A received message goes into the UA with its receive stamp from
   the transports (the kernel's, for UDP), so its event's ``time`` is when it
   reached the socket, not when the loop got to it.  ``ua.now`` is set to
   ``time.monotonic()`` when control returns to the program, so API calls made
   without ``now`` use a fresh time.
4. The UA is created after the socket is bound, with ``config.port`` set to
   the bound port (port 0 asks for an ephemeral one): the UA writes it into
   Via and Contact.
5. Transport failures become ``ua.transport_error(peer, now, reason)``; the UA
   turns them into events.  Nothing here raises for the network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType

from sipload.pump import Pump
from sipload.transport import Peer, TransportSet
from sipload.transport.loop import new_event_loop
from sipload.ua.agent import UAConfig, UserAgent
from sipload.ua.events import Event
from sipload.ua.ids import IdGenerator

UAFactory = Callable[[UAConfig, IdGenerator], UserAgent]


class UARuntime:
    """A user agent bound to sockets on one event loop (see the module docstring).

    Make one with :meth:`start_sync` or :meth:`start`, not with the constructor.

    Attributes:
        address: the bound (transport, host, port) the UA listens on.
        transports: the sockets, to listen on more addresses or send raw bytes.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        owns_loop: bool,
        tls_client_context: ssl.SSLContext | None = None,
    ) -> None:
        self._loop = loop
        self._owns_loop = owns_loop
        self.transports = TransportSet(
            self._on_message, self._on_error, tls_client_context=tls_client_context, loop=loop,
            on_batch=self._on_batch,
        )
        self._ua: UserAgent | None = None
        self._events: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._pump: Pump | None = None
        self._closed = False
        self.address: Peer = ("", "", 0)

    # ================================================================ starting

    @classmethod
    def start_sync(
        cls,
        config: UAConfig,
        *,
        ids: IdGenerator | None = None,
        tls_context: ssl.SSLContext | None = None,
        tls_client_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        ua_factory: UAFactory = UserAgent,
    ) -> UARuntime:
        """Bind per ``config`` on a new loop of its own, and create the UA.

        Args:
            config: the UA's configuration; ``transport``, ``host`` and ``port``
                say where to listen (port 0: ephemeral, and the UA gets the real one).
            ids: the id generator (default: a random prefix).
            tls_context: the server context, required when ``config.transport`` is tls.
            tls_client_context: the context for outgoing TLS (default: verifying).
            reuse_port: bind with ``SO_REUSEPORT``.
            ua_factory: makes the UA from the final config (tests pass a fake).

        Returns:
            The runtime; the program uses :attr:`ua`, :meth:`event_wait`, :meth:`close`.

        Raises:
            OSError: the address cannot be bound.
            ValueError: TLS without ``tls_context``, or an unknown transport.
        """
        loop = new_event_loop()
        rt = cls(loop, owns_loop=True, tls_client_context=tls_client_context)
        try:
            loop.run_until_complete(rt._open(config, ids, tls_context, reuse_port, ua_factory))
        except BaseException:
            loop.run_until_complete(rt.transports.close())
            loop.close()
            raise
        return rt

    @classmethod
    async def start(
        cls,
        config: UAConfig,
        *,
        ids: IdGenerator | None = None,
        tls_context: ssl.SSLContext | None = None,
        tls_client_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        ua_factory: UAFactory = UserAgent,
    ) -> UARuntime:
        """Like :meth:`start_sync`, on the running loop (close with :meth:`aclose`)."""
        rt = cls(asyncio.get_running_loop(), owns_loop=False,
                 tls_client_context=tls_client_context)
        try:
            await rt._open(config, ids, tls_context, reuse_port, ua_factory)
        except BaseException:
            await rt.transports.close()
            raise
        return rt

    async def _open(
        self,
        config: UAConfig,
        ids: IdGenerator | None,
        tls_context: ssl.SSLContext | None,
        reuse_port: bool,
        ua_factory: UAFactory,
    ) -> None:
        host, port = await self.transports.listen(
            config.transport, config.host, config.port,
            ssl_context=tls_context, reuse_port=reuse_port,
        )
        config = dataclasses.replace(config, port=port)
        self._ua = ua_factory(config, ids or IdGenerator(secrets.token_hex(4)))
        self._ua.now = time.monotonic()
        self._pump = Pump(self._loop, self.transports, self._ua, self._events.append,
                          after=self._wake_if_events)
        self.address = (config.transport, host, port)

    # ================================================================ the program's side

    @property
    def ua(self) -> UserAgent:
        """The user agent: call its API between waits."""
        if self._ua is None:
            raise RuntimeError("the runtime is not started")
        return self._ua

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def event_wait(self, timeout: float) -> Event | None:
        """Flush, then run the loop until an event arrives or ``timeout`` seconds pass.

        Like ``eXosip_event_wait``: what API calls queued since the last wait is
        sent first; a timeout of 0 polls the sockets once.

        Returns:
            The oldest event, or None when the timeout passed without one.

        Raises:
            RuntimeError: the runtime was made with :meth:`start` (use
                :meth:`next_event`), or is closed.
        """
        if not self._owns_loop:
            raise RuntimeError("event_wait() is for start_sync(); await next_event() instead")
        if self._closed:
            raise RuntimeError("the runtime is closed")
        return self._loop.run_until_complete(self.next_event(timeout))

    async def next_event(self, timeout: float | None = None) -> Event | None:
        """Flush, then wait for the next event (None: wait until one comes or close).

        One consumer at a time: events go to whoever waits, in order.

        Returns:
            The oldest event, or None on timeout or when the runtime closes.
        """
        self.flush()
        if not self._events and not self._closed:
            waiter = self._loop.create_future()
            self._waiter = waiter
            try:
                if timeout is None:
                    await waiter
                elif timeout <= 0:
                    # Poll: the first turn selects ready sockets, whose callbacks
                    # run after this task's step; the second sees their events.
                    await asyncio.sleep(0)
                    await asyncio.sleep(0)
                else:
                    async with asyncio.timeout(timeout):
                        await waiter
            except TimeoutError:
                pass
            finally:
                self._waiter = None
        if self._ua is not None:
            self._ua.now = time.monotonic()
        return self._events.popleft() if self._events else None

    async def events(self) -> AsyncIterator[Event]:
        """Every event, as it comes, until the runtime is closed."""
        while not self._closed:
            event = await self.next_event()
            if event is not None:
                yield event

    @property
    def timer_at(self) -> float | None:
        """When the one timer is armed for (monotonic seconds), or None."""
        return self._pump.armed if self._pump is not None else None

    def flush(self) -> None:
        """Send what the UA queued, re-arm its timer, collect its events."""
        if self._pump is not None and not self._closed:
            self._pump.flush()

    # ================================================================ the network's side

    def _on_message(self, data: bytes, peer: Peer, stamp: float) -> None:
        if self._pump is not None:  # else just bound, no UA yet: the sender retransmits
            self._pump.receive(data, peer, stamp)

    def _on_batch(self, batch: list[tuple[bytes, Peer, float]]) -> None:
        if self._pump is not None:  # one UDP read: answered in one flush
            self._pump.receive_batch(batch)

    def _on_error(self, peer: Peer, reason: str) -> None:
        if self._pump is not None:
            self._pump.error(peer, reason)

    def _wake_if_events(self) -> None:
        if self._events:
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ================================================================ closing

    async def aclose(self) -> None:
        """Stop the timer and close every socket (events not taken are dropped)."""
        if self._closed:
            return
        self._closed = True
        if self._pump is not None:
            self._pump.close()
        self._wake()
        await self.transports.close()

    def close(self) -> None:
        """Close the sockets and the runtime's own loop (for :meth:`start_sync`)."""
        if not self._owns_loop:
            raise RuntimeError("close() is for start_sync(); await aclose() instead")
        if self._loop.is_closed():
            return
        try:
            self._loop.run_until_complete(self.aclose())
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            if tasks:
                self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        finally:
            self._loop.close()

    def __enter__(self) -> UARuntime:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> UARuntime:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
