"""The peer harness itself: tests/peers.py, ci/kamailio/*.cfg and tests/sipp/*.xml.

These prove that the real peers the other tests rely on start, become ready, carry
calls and end; they test no sipload code.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.peers import (
    REGISTRAR_REALM,
    REGISTRAR_USERS,
    KamailioProcess,
    PeerError,
    free_port,
    kamailio_proxy,
    kamailio_registrar,
    read_stat,
    require,
    sip_request,
    sipp_uac,
    sipp_uas,
    stat_int,
    stat_time,
)

ALICE = REGISTRAR_USERS["alice"]


# --------------------------------------------------------------------------- require


def test_require_returns_the_path_of_an_installed_program() -> None:
    assert Path(require("sh")).is_file()


def test_missing_binary_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-such-sip-peer-binary"):
        require("no-such-sip-peer-binary")


def test_missing_binary_skips_outside_ci_naming_the_debian_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.skip.Exception, match="sip-tester"):
        require("sipp")


# --------------------------------------------------------------------------- ports


def test_free_port_is_bindable_for_udp_and_tcp_and_never_repeats() -> None:
    ports = [free_port("both") for _ in range(20)]
    assert len(set(ports)) == len(ports)
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", ports[0]))


# --------------------------------------------------------------------------- SIPp + proxy


@pytest.mark.peer
@pytest.mark.parametrize("transport", ["u1", "t1"], ids=["udp", "tcp"])
def test_sipp_uac_through_kamailio_proxy_to_sipp_uas(transport: str) -> None:
    require("sipp")
    require("kamailio")
    uas_port = free_port("both")
    with (
        sipp_uas(uas_port, transport=transport) as uas,
        kamailio_proxy(uas_port) as proxy,
        sipp_uac(proxy.address, calls=20, rate=10, transport=transport) as uac,
    ):
        code = uac.wait(60)
        assert code == 0, f"{uac.describe()}\n{uas.describe()}\n{proxy.describe()}"
    assert "Successful call" in uac.stdout


@pytest.mark.peer
def test_sipp_stat_files_count_calls_and_retransmissions() -> None:
    """What the benchmarks read (bench/ua_bench.py, bench/cluster_bench.py)."""
    require("sipp")
    with sipp_uas(free_port("udp"), stat=True) as uas:
        uac = sipp_uac(f"127.0.0.1:{uas.port}", calls=5, rate=50, stat=True)
        with uac:
            assert uac.wait(60) == 0, uac.describe()
            stat = uac.stat()
            pid = uac.program_pid()
        assert stat_int(stat, "SuccessfulCall(C)") == 5, stat
        assert stat_int(stat, "FailedCall(C)") == 0 and pid is None  # ended: no child left
        assert uas.retransmissions_after(0) == 0
        assert uas.program_pid() is not None


def test_read_stat_takes_the_last_line(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    assert read_stat(path) == {}
    path.write_text("CurrentTime;SuccessfulCall(C);\n"
                    "2026-12-05\t12:00:00.000\t1780000000.5;3;\n"
                    "2026-12-05\t12:00:01.000\t1780000001.5;7;\n")
    stat = read_stat(path)
    assert stat_int(stat, "SuccessfulCall(C)") == 7 and stat_int(stat, "nothing") == 0
    assert stat_time(stat) == 1780000001.5


@pytest.mark.peer
def test_sipp_uas_start_reports_a_port_taken_by_someone_else() -> None:
    require("sipp")
    port = free_port("udp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        uas = sipp_uas(port)
        with pytest.raises(PeerError, match="exited before binding"):
            uas.start()
    assert uas.returncode not in (None, 0)
    assert "bind" in uas.describe().lower()


@pytest.mark.peer
def test_kamailio_that_cannot_start_raises_with_its_log(tmp_path: Path) -> None:
    require("kamailio")
    cfg = tmp_path / "broken.cfg"
    cfg.write_text("#!KAMAILIO\nlisten=udp:127.0.0.1:LISTEN_PORT\nno_such_parameter=1\n")
    kamailio = KamailioProcess(cfg, start_timeout=10)
    with pytest.raises(PeerError, match=r"exited during start-up(.|\n)*unknown config variable"):
        kamailio.start()
    assert kamailio.returncode not in (None, 0)
    assert not kamailio.workdir.exists()  # closed: temporary work dir removed


# --------------------------------------------------------------------------- registrar


@pytest.mark.peer
def test_registrar_challenges_register_then_accepts_the_digest() -> None:
    require("sipp")
    require("kamailio")
    with kamailio_registrar() as registrar:
        aor = f"sip:alice@{registrar.address}"
        reply = sip_request(registrar.port, "REGISTER", to_uri=aor, from_uri=aor)
        assert reply is not None, registrar.describe()
        assert reply.status == 401
        challenge = reply.header("WWW-Authenticate") or ""
        assert challenge.startswith("Digest ")
        assert f'realm="{REGISTRAR_REALM}"' in challenge

        # 401 -> 200 with two contacts -> 423 (Min-Expires) -> Contact: * -> 200, no contact
        with sipp_uac(
            registrar.address,
            "register_auth.xml",
            service="alice",
            extra_args=["-au", "alice", "-ap", ALICE],
        ) as uac:
            assert uac.wait(30) == 0, f"{uac.describe()}\n{registrar.describe()}"


@pytest.mark.peer
def test_registrar_forbids_a_wrong_password() -> None:
    require("sipp")
    require("kamailio")
    with (
        kamailio_registrar() as registrar,
        sipp_uac(
            registrar.address,
            "register_contact.xml",
            service="alice",
            extra_args=["-au", "alice", "-ap", "not-" + ALICE, "-key", "contact_port", "9"],
        ) as uac,
    ):
        assert uac.wait(30) == 1, uac.describe()
        assert "403 Forbidden" in uac.errors, uac.describe()


@pytest.mark.peer
def test_registrar_routes_calls_to_the_registered_contact() -> None:
    require("sipp")
    require("kamailio")
    uas_port = free_port("udp")
    with (
        sipp_uas(uas_port) as uas,
        kamailio_registrar() as registrar,
    ):
        unknown = f"sip:nobody@{registrar.address}"
        reply = sip_request(registrar.port, "INVITE", request_uri=unknown)
        assert reply is not None and reply.status == 404, registrar.describe()

        with sipp_uac(
            registrar.address,
            "register_contact.xml",
            service="alice",
            extra_args=["-au", "alice", "-ap", ALICE, "-key", "contact_port", str(uas_port)],
        ) as register:
            assert register.wait(30) == 0, register.describe()

        with sipp_uac(registrar.address, calls=5, rate=10, service="alice") as uac:
            code = uac.wait(60)
            assert code == 0, f"{uac.describe()}\n{uas.describe()}\n{registrar.describe()}"


@pytest.mark.peer
def test_registrar_defines_reach_kamailio() -> None:
    """-A flags (WITH_INVITE_AUTH, WITH_NO_QOP) and values (REALM) change its behaviour."""
    require("kamailio")
    with kamailio_registrar(invite_auth=True, qop=False, realm="other.test") as registrar:
        alice = f"sip:alice@{registrar.address}"
        reply = sip_request(registrar.port, "INVITE", request_uri=alice, from_uri=alice)
        assert reply is not None and reply.status == 407, registrar.describe()
        challenge = reply.header("Proxy-Authenticate") or ""
        assert 'realm="other.test"' in challenge
        assert "qop" not in challenge
