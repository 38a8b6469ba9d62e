"""SSL contexts for SIP over TLS (RFC 3261 §26.2, RFC 5630).

Verification is on by default: a client context checks the server's chain and
host name against the system's CAs, or only against ``cafile`` when one is
given.  ``insecure=True`` turns both checks off, for load tests against a
PBX with a self-signed certificate; say so in the run's metadata.
"""

from __future__ import annotations

import ssl
from os import PathLike

StrPath = str | PathLike[str]


def client_context(
    *,
    insecure: bool = False,
    cafile: StrPath | None = None,
    cadata: str | None = None,
    certfile: StrPath | None = None,
    keyfile: StrPath | None = None,
) -> ssl.SSLContext:
    """A context for outgoing TLS connections.

    Args:
        insecure: accept any certificate and any host name (self-signed targets).
        cafile: trust only the CAs in this PEM file instead of the system's.
        cadata: trust only these PEM certificates (text) instead of the system's.
        certfile: our client certificate chain (PEM), for mutual TLS.
        keyfile: its private key, when not inside ``certfile``.

    Returns:
        A TLS 1.2+ client context.

    Raises:
        OSError, ssl.SSLError: a file is missing or not valid PEM.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile, cadata=cadata)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if certfile is not None:
        ctx.load_cert_chain(certfile, keyfile)
    return ctx


def server_context(
    certfile: StrPath,
    keyfile: StrPath | None = None,
    *,
    cafile: StrPath | None = None,
    require_client_cert: bool = False,
) -> ssl.SSLContext:
    """A context for a TLS listener.

    Args:
        certfile: our certificate chain (PEM), leaf first.
        keyfile: its private key, when not inside ``certfile``.
        cafile: CAs to check client certificates against.
        require_client_cert: refuse clients without a certificate signed by ``cafile``.

    Returns:
        A TLS 1.2+ server context.

    Raises:
        OSError, ssl.SSLError: a file is missing or not valid PEM, or the key
            does not match the certificate.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile, keyfile)
    if cafile is not None:
        ctx.load_verify_locations(cafile)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
