"""Who drives a worker's user agent: the UA built for the run, and its scenario runner.

A scenario (UAC or UAS) is played by a :class:`~sipload.scenario.interpreter.Runner`;
without one the engine answers as :class:`~sipload.ua.responder.DefaultUAS` (with SRTP
where asked).  The UA advertises what the scenario allows and supports, and, where DNS
located the target, orders its servers (RFC 3263).  With several source addresses,
calls take them in turn (``RunContext.locals``).
"""

from __future__ import annotations

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


def id_prefix(worker: int, salt: int) -> str:
    """The prefix of every tag, branch and Call-ID a worker makes.

    The worker's number is delimited (``w1x...`` once came from both worker 1 in PID
    0x1a and worker 11 in PID 0xa, when the prefix was the number and the PID run
    together), and ``salt`` (32 bits from the OS, drawn per worker process, not from
    the run's seeded generator: a seed repeats a scenario's choices, not its ids) keeps
    apart the workers of two runs, or of two hosts, that share a number.  The counter
    follows the ``x`` in decimal, and no prefix holds another ``x``: no prefix ends where
    another's count begins.  12 characters for workers 0-9: each held call keeps a few
    ids, so each character costs memory per call.
    """
    return f"w{worker}-{salt:08x}x"


def build_ua(cfg: EngineConfig, host: str, port: int, rng: random.Random) -> UserAgent:
    """The worker's UA, bound to ``host:port`` (its Via and Contact)."""
    prog = cfg.program
    ua_cfg = UAConfig(host=host, port=port, transport=cfg.transport, timers=cfg.timers,
                      user_agent="sipload", max_calls=cfg.max_dialogs)
    if prog is not None and prog.allow:
        ua_cfg.allow = prog.allow
    if prog is not None and prog.supported:
        ua_cfg.supported = prog.supported
    ua = UserAgent(ua_cfg, IdGenerator(id_prefix(cfg.worker, secrets.randbits(32))))
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
