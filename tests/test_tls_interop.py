"""TLS at load against a real peer: Kamailio's tls module in front of a UDP UAS.

sipload run --transport tls → Kamailio (ci/kamailio/tls.cfg, one TLS worker process)
→ sipload uas over UDP, and back.  Kamailio holds a certificate the test makes:

* ``--tls-ca`` with that certificate, ``--connections per-call``: every call succeeds on
  a connection of its own (opened = handshakes = calls), the sessions offered are
  resumed by Kamailio (OpenSSL's tickets; with one worker process its ticket key is
  the same for every connection), no TLS failure;
* ``--connections shared``: one connection, one handshake, for all the calls;
* neither ``--tls-ca`` nor ``--tls-insecure``: the certificate does not verify, every
  call fails with a TLS reason and the failures add up to the connections opened.

Needs Kamailio with kamailio-tls-modules: fails under CI=true when missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sipload.transport.selfsigned import loopback_certificate
from tests.bgproc import Background
from tests.bgproc import sipload as sipload_argv
from tests.peers import free_port, kamailio_tls
from tests.test_run_gate import SCENARIOS, sipload, summary

BASIC = SCENARIOS / "basic_call.yaml"
CALLS = 20


def _run(tmp_path: Path, name: str, port: int, *flags: object) -> tuple[Any, dict[str, Any]]:
    out = tmp_path / name
    r = sipload("run", BASIC, "--transport", "tls", "--target", f"127.0.0.1:{port}",
                "--calls", CALLS, "--rate", 20, "--workers", 1, "--out", out, "--quiet",
                *flags)
    return r, summary(out)


def test_tls_at_load_through_kamailio(tmp_path: Path) -> None:
    cert, key = loopback_certificate()
    (tmp_path / "kam.crt").write_text(cert)
    (tmp_path / "kam.key").write_text(key)
    uas_port = free_port("udp")
    with Background(sipload_argv("uas", "--listen", f"127.0.0.1:{uas_port}"),
                    ready="listening on", ready_timeout=30), \
            kamailio_tls(uas_port, tmp_path / "kam.crt", tmp_path / "kam.key",
                         children=1) as kam:
        per_call = _run(tmp_path, "per-call", kam.tls_port, "--tls-ca", tmp_path / "kam.crt",
                        "--connections", "per-call")
        shared = _run(tmp_path, "shared", kam.tls_port, "--tls-ca", tmp_path / "kam.crt")
        refused = _run(tmp_path, "refused", kam.tls_port, "--connections", "per-call")
        log = kam.log[-3000:]

    r, s = per_call
    assert r.returncode == 0, r.stdout + r.stderr + log
    assert s["calls"]["succeeded"] == CALLS
    c = s["connections"]
    assert c["mode"] == "per-call" and c["opened"] == CALLS
    tls = c["tls"]
    assert tls["verified"] is True and tls["handshakes"] == CALLS
    assert tls["failures"]["count"] == 0
    assert tls["offered"] >= 1 and tls["resumed"] == tls["offered"], tls
    assert tls["handshake_ms"]["count"] == CALLS

    r, s = shared
    assert r.returncode == 0, r.stdout + r.stderr + log
    assert s["calls"]["succeeded"] == CALLS
    assert s["connections"]["opened"] == 1 and s["connections"]["tls"]["handshakes"] == 1

    r, s = refused
    assert r.returncode == 3, r.stdout + r.stderr
    assert s["calls"]["failed"] == CALLS
    tls = s["connections"]["tls"]
    assert tls["failures"]["by_reason"] == {"cert_verify_failed": CALLS}
    assert s["connections"]["opened"] == CALLS and tls["handshakes"] == 0
