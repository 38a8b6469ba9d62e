"""TLS (and TCP) at load: ``--connections per-call|shared``, resumption, TLS failures.

A UAC engine calls sipload's default UAS (an engine too), both in this process on
loopback; the UAS counts the connections it accepted.  Each test can fail:

* per-call opens exactly one connection per call (N accepts for N calls) and closes
  each when its call is over (none left open at the UAS); shared opens one per worker;
* with resumption, every per-call handshake after the first ones is resumed (the
  connection's ``session_reused``); without it, none is;
* a certificate the UAC does not trust fails every call with a TLS reason
  (``cert_verify_failed``), and the failure counts add up to the calls; the same run
  with ``tls_insecure`` succeeds;
* ``sipload run --connections per-call`` end to end: summary.json's ``connections``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from sipload.engine import Engine, EngineConfig
from sipload.report.summary import validate_summary
from sipload.scenario.loader import load_file
from sipload.stats.connintervals import ConnectionTotals
from sipload.transport.selfsigned import loopback_certificate, server_context_from_pem
from sipload.transport.tlsclient import failure_reason
from tests.test_run_gate import SCENARIOS, sipload, summary

BASIC = SCENARIOS / "basic_call.yaml"


class Outcome:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.snapshots: list[dict[str, Any]] = []
        self.accepted = 0
        self.left_open = 0
        self.totals = ConnectionTotals()


def _run(transport: str, connections: str, calls: int, *, trusted: bool = True,
         insecure: bool = False, resume: bool = True, rate: float = 100.0,
         users: int | None = None) -> Outcome:
    cert, key = loopback_certificate()
    other, _ = loopback_certificate()  # what the UAC trusts when it should not trust the UAS
    out = Outcome()

    async def go() -> None:
        tls = server_context_from_pem(cert, key) if transport == "tls" else None
        uas = Engine(EngineConfig(program=None, transport=transport, tls_server=tls))
        host, port = await uas.start()
        serving = asyncio.ensure_future(uas.run())
        uac = Engine(EngineConfig(
            program=load_file(BASIC), target=(host, port), transport=transport,
            calls=calls, rate=rate, seed=1, connections=connections, users=users,
            tls_cadata=cert if trusted else other, tls_insecure=insecure, tls_resume=resume,
            snapshot_every=0.2),
            on_records=out.records.extend,
            on_snapshot=lambda s: out.snapshots.append(s.to_dict()))
        try:
            await asyncio.wait_for(uac.run(), 60)
            await asyncio.sleep(0.3)  # the last per-call connections' closes reach the UAS
            assert uas.transports is not None
            out.accepted, out.left_open = uas.transports.connection_counts(transport)
        finally:
            uas.abort()
            await asyncio.wait_for(serving, 10)

    asyncio.run(go())
    for snap in out.snapshots:
        if snap.get("connections"):
            out.totals.add(snap["connections"])
    return out


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_per_call_opens_one_connection_per_call(transport: str) -> None:
    out = _run(transport, "per-call", 12)
    assert len(out.records) == 12
    assert all(r["result"] == "success" for r in out.records), out.records[0]
    assert out.accepted == 12  # counted where they arrive, not where they are opened
    assert out.totals.opened == 12
    assert out.left_open == 0  # each closed when its call was over


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_shared_opens_one_connection_per_worker(transport: str) -> None:
    out = _run(transport, "shared", 12)
    assert all(r["result"] == "success" for r in out.records)
    assert out.accepted == 1 and out.totals.opened == 1
    if transport == "tls":
        assert out.totals.handshakes == 1 and out.totals.resumed == 0


def test_per_call_tls_resumes_sessions() -> None:
    # one call at a time (closed model, 1 user): every call after the first starts once a
    # session is known, so exactly 19 offer one, and the server resumes each
    out = _run("tls", "per-call", 20, rate=50.0, users=1)
    t = out.totals
    assert t.handshakes == 20 and not t.failures
    assert t.offered == 19 and t.resumed == 19, (t.offered, t.resumed)
    hs = t.handshake_ms()
    assert hs is not None and hs["count"] == 20 and 0 < hs["p50"] < 1000


def test_per_call_tls_without_resumption_resumes_nothing() -> None:
    out = _run("tls", "per-call", 10, resume=False)
    assert out.totals.handshakes == 10
    assert out.totals.offered == 0 and out.totals.resumed == 0


def test_untrusted_certificate_fails_each_call_with_a_tls_reason() -> None:
    out = _run("tls", "per-call", 8, trusted=False)
    assert len(out.records) == 8
    assert {r["result"] for r in out.records} == {"failed"}
    assert {r["failure"] for r in out.records} == {"transport_error"}
    assert all("tls: cert verify failed" in r["detail"] for r in out.records), out.records[0]
    assert out.totals.failures == {"cert_verify_failed": 8}  # one per call: they add up
    assert out.totals.handshakes == 0 and out.accepted == 0


def test_untrusted_certificate_with_tls_insecure_succeeds() -> None:
    out = _run("tls", "per-call", 8, trusted=False, insecure=True)
    assert [r["result"] for r in out.records] == ["success"] * 8
    assert out.totals.handshakes == 8 and not out.totals.failures


def test_failure_reasons() -> None:
    import ssl

    assert failure_reason(ssl.SSLCertVerificationError("x")) == "cert_verify_failed"
    assert failure_reason(ConnectionResetError()) == "connection_reset"
    assert failure_reason(ConnectionRefusedError()) == "connection_refused"
    assert failure_reason(ConnectionAbortedError(
        "SSL handshake is taking longer than 10.0 seconds: aborting the connection")) \
        == "handshake_timeout"
    assert failure_reason(TimeoutError()) == "connect_timeout"


def test_run_per_call_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = sipload("run", BASIC, "--workers", 1, "--calls", 10, "--rate", 50, "--transport",
                "tls", "--connections", "per-call", "--users", 1, "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    s = summary(out)
    validate_summary(s)
    c = s["connections"]
    assert c["mode"] == "per-call" and c["opened"] == 10
    assert c["tls"]["handshakes"] == 10
    assert c["tls"]["resumed"] == c["tls"]["offered"] == 9  # one call at a time: all but the first
    assert c["tls"]["verified"] is True
    assert "connections: per-call tls, opened 10" in r.stdout
    assert "| conns 10, tls 10 handshakes" in r.stdout  # the live line's last word
    assert 'id="tls-handshakes">10<' in (out / "report.html").read_text()


def test_per_call_needs_a_stream_transport(tmp_path: Path) -> None:
    r = sipload("run", BASIC, "--calls", 1, "--transport", "udp", "--connections",
                "per-call", "--out", tmp_path / "x")
    assert r.returncode == 2 and "--connections per-call: for tcp or tls" in r.stderr
    assert not (tmp_path / "x").exists()  # nothing was run


@pytest.mark.parametrize(("behaviour", "reason"), [("silent", "handshake_timeout"),
                                                   ("close", "connection_reset")])
def test_tls_failure_reasons_at_the_socket(behaviour: str, reason: str) -> None:
    """A server that takes the TCP connection and then says nothing (or closes at once):
    the TLS connect fails with that reason, counted, and reported for the call only."""
    from sipload.transport import TransportSet
    from sipload.transport.tlsclient import load_context

    async def go() -> tuple[list[tuple[Any, str, str]], dict[str, int]]:
        held: list[asyncio.StreamWriter] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if behaviour == "close":
                writer.transport.abort()  # RST before any byte of the handshake
                return
            held.append(writer)  # silent: the handshake never gets an answer

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        errors: list[tuple[Any, str, str]] = []
        tp = TransportSet(lambda *_: None, lambda p, r: errors.append((p, "", r)),
                          tls_client_context=load_context(), connect_timeout=0.5,
                          connections="per-call",
                          on_call_error=lambda p, c, r: errors.append((p, c, r)))
        msg = (b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nCall-ID: one@test\r\n"
               b"Content-Length: 0\r\n\r\n")
        tp.send(msg, ("tls", "127.0.0.1", port))
        for _ in range(300):
            await asyncio.sleep(0.01)
            if errors:
                break
        figures = tp.take_connection_figures()
        await tp.close()
        for writer in held:
            writer.transport.abort()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0)
        assert figures is not None
        return errors, figures.failures

    errors, failures = asyncio.run(go())
    assert failures == {reason: 1}
    assert len(errors) == 1 and errors[0][1] == "one@test"  # the call's, not the peer's
    assert reason.replace("_", " ") in errors[0][2]


def test_tls_ca_must_be_a_pem_file(tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    for path in (tmp_path / "bad.pem", tmp_path / "missing.pem"):
        r = sipload("run", BASIC, "--calls", 1, "--transport", "tls", "--target",
                    "127.0.0.1:5061", "--tls-ca", path, "--out", tmp_path / "x")
        assert r.returncode == 2 and f"--tls-ca {path}: not a readable PEM" in r.stderr
        assert not (tmp_path / "x").exists()  # nothing was run
