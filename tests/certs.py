"""Throwaway certificates for TLS and WSS tests, made with ``cryptography``.

:func:`make_pki` writes ``ca.crt``, ``server.crt``/``.key`` (signed by the CA, for
localhost, 127.0.0.1 and ::1) and ``selfsigned.crt``/``.key`` into a folder.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))


def make_pki(d: Path) -> Path:
    """ca.crt, server.crt/key (signed by ca), selfsigned.crt/key in ``d``; returns ``d``."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("sipload test CA", ca_key, "sipload test CA", ca_key, ca=True)
    _write(d / "ca", ca, ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    _write(d / "server", _cert("localhost", key, "sipload test CA", ca_key, ca=False), key)
    own = ec.generate_private_key(ec.SECP256R1())
    _write(d / "selfsigned", _cert("localhost", own, "localhost", own, ca=False), own)
    return d
