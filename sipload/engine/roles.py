"""Who drives a worker's user agent: the UA built for the run, and its scenario runner.

A scenario (UAC or UAS) is played by a :class:`~sipload.scenario.interpreter.Runner`;
without one the engine answers as :class:`~sipload.ua.responder.DefaultUAS` (with SRTP
where asked).  The UA advertises what the scenario allows and supports, and, where DNS
located the target, orders its servers (RFC 3263).  With several source addresses,
calls take them in turn (``RunContext.locals``).
"""

from __future__ import annotations

import os
import random
import secrets

from sipload.engine.config import EngineConfig
from sipload.engine.media import NO_MEDIA_PORT, WorkerMedia
from sipload.scenario.interpreter import RunContext, Runner
from sipload.scenario.model import Program
from sipload.sip.servers import ServerSet
from sipload.ua.agent import UAConfig, UserAgent
from sipload.ua.ids import IdGenerator
from sipload.ua.responder import DefaultUAS

DEFAULT_TARGET = ("127.0.0.1", 5060)
"""Where a scenario sends when the config names no target."""


def id_prefix(worker: int, pid: int, salt: int) -> str:
    """The prefix of every tag, branch and Call-ID a worker makes.

    Its parts are delimited (``w11-a`` and ``w1-1a`` differ where ``w11a`` was both
    worker 11 in PID 0xa and worker 1 in PID 0x1a), and ``salt`` (32 bits from the OS,
    not the run's seeded generator: a seed repeats a scenario's choices, not its ids)
    keeps two runs apart (two hosts' workers, or a run after a reboot, can share a worker
    number and a PID).
    The counter follows the ``x`` in decimal: no prefix ends where another's count begins.
    """
    return f"w{worker}-{pid:x}-{salt:08x}x"


def build_ua(cfg: EngineConfig, host: str, port: int, rng: random.Random) -> UserAgent:
    """The worker's UA, bound to ``host:port`` (its Via and Contact)."""
    prog = cfg.program
    ua_cfg = UAConfig(host=host, port=port, transport=cfg.transport, timers=cfg.timers,
                      user_agent="sipload", max_calls=cfg.max_dialogs)
    if prog is not None and prog.allow:
        ua_cfg.allow = prog.allow
    if prog is not None and prog.supported:
        ua_cfg.supported = prog.supported
    ua = UserAgent(ua_cfg, IdGenerator(id_prefix(cfg.worker, os.getpid(), secrets.randbits(32))))
    if cfg.servers:
        ua.set_servers(ServerSet(cfg.located, list(cfg.servers), rng.random))
    return ua


def build_runner(cfg: EngineConfig, program: Program, ua: UserAgent, host: str, port: int,
                 media: WorkerMedia | None, more: list[tuple[str, int]],
                 rng: random.Random) -> Runner:
    """The runner playing ``program`` on ``ua``; its calls are numbered from ``first_call``
    and, with source addresses (``more``: those beyond ``host:port``), take them in turn."""
    target = cfg.target or DEFAULT_TARGET
    media_port = media.port if media is not None else NO_MEDIA_PORT
    ctx = RunContext(host, port, target[0], target[1], cfg.transport,
                     worker=cfg.worker, media_ip=host, media_port=media_port)
    if cfg.sources:
        ports = media.ports[1:] if media is not None else [media_port] * len(more)
        ctx.locals = ((host, port, host, media_port), *(
            (h, p, h, mp) for (h, p), mp in zip(more, ports, strict=True)))
    runner = Runner(program, ua, ctx, rng, cfg.injection)
    runner.call_number_base = cfg.first_call
    if media is not None:
        media.attach(runner)
    return runner


def build_responder(cfg: EngineConfig, ua: UserAgent, host: str,
                    media: WorkerMedia | None) -> DefaultUAS:
    """The default UAS on ``ua``: echoes RTP, and answers SRTP offers where ``cfg.srtp``."""
    if media is None:
        return DefaultUAS(ua, media_ip=host, media_port=NO_MEDIA_PORT)
    echo = media.srtp_echo() if cfg.srtp else None
    return DefaultUAS(ua, media_ip=host, media_port=media.port,
                      secure=echo.answer if echo is not None else None,
                      release=echo.release if echo is not None else None)
