"""How a user agent presents itself and what it accepts: :class:`UAConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field

from sipload.sip.transaction import TimerConfig

DEFAULT_ALLOW = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE", "PRACK",
                 "REFER", "NOTIFY", "MESSAGE", "SUBSCRIBE")


@dataclass(slots=True)
class UAConfig:
    """How a user agent presents itself and what it accepts."""

    host: str = "127.0.0.1"  #: the address written in Via and Contact
    port: int = 5060
    transport: str = "udp"  #: default transport for requests: udp, tcp, tls, ws or wss
    user: str = "sipload"  #: user part of our Contact
    user_agent: str = "sipload"
    timers: TimerConfig = field(default_factory=TimerConfig)
    allow: tuple[str, ...] = DEFAULT_ALLOW
    supported: tuple[str, ...] = ("100rel", "timer", "replaces")
    accept: tuple[str, ...] = ("application/sdp", "application/dtmf-relay",
                               "application/dtmf", "message/sipfrag", "text/plain",
                               "application/antisip-domotic")
    send_100: bool = True  #: answer each new INVITE with 100 Trying at once
    auto_ack: bool = False  #: send the ACK for a 2xx without waiting for call_send_ack
    answer_options: bool = True  #: answer OPTIONS outside calls with 200 + Allow
    use_100rel: bool = True  #: send 1xx reliably when the INVITE supports 100rel
    session_expires: int | None = None  #: ask for / offer this session interval (RFC 4028)
    min_se: int = 90  #: the smallest session interval we accept (422 below it)
    max_calls: int = 0  #: calls at once before a new INVITE gets 503 + Retry-After (0: no cap)
    retry_after: int = 5  #: the Retry-After of that 503, in seconds
