"""A throwaway certificate for a TLS listener on loopback (the embedded UAS of a run).

``sipload run --transport tls`` without ``--target`` calls its own UAS over TLS.
That UAS needs a certificate, and the workers must be able to check it without
turning verification off: :func:`loopback_certificate` makes a fresh EC P-256 key
and a self-signed certificate for ``127.0.0.1``, ``::1`` and ``localhost``, valid
for a day, held in memory only.  The UAS loads it (written to a private temporary
file for the moment ``ssl`` needs a path, then removed); the workers trust exactly
that certificate (``cadata``) and check the host name as usual.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile


def loopback_certificate() -> tuple[str, str]:
    """A fresh self-signed (certificate, private key), both PEM text, for loopback."""
    # here, not above: every worker imports this module, few runs need a certificate
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sipload embedded UAS")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
                x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode("ascii")
    return cert_pem, key_pem


def server_context_from_pem(cert_pem: str, key_pem: str) -> ssl.SSLContext:
    """A TLS 1.2+ server context holding a PEM certificate and key given as text."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    fd, path = tempfile.mkstemp(prefix="sipload-uas-", suffix=".pem")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(cert_pem + key_pem)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)
    return ctx
