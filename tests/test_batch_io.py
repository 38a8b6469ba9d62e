"""Batched UDP socket calls (sipload.transport.batch): the C helper and the Python fallback.

Every behaviour is checked on both implementations.  The C helper is the one the
build made; in a pure checkout it is compiled here from its source (a few seconds),
so both paths are always tested where a C compiler exists (under CI=true a missing
compiler fails the tests).
"""

from __future__ import annotations

import errno
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from sipload.transport import batch

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "sipload" / "transport" / "_mmsg.c"


def _build(tmp: Path) -> ModuleType:
    """Compile _mmsg.c with setuptools into ``tmp`` and load it."""
    script = (
        "import sys\n"
        "from setuptools import Extension, setup\n"
        f"setup(name='m', ext_modules=[Extension('_mmsg', [{str(SOURCE)!r}])],\n"
        f"      script_args=['build_ext', '--build-lib', {str(tmp)!r},\n"
        f"                   '--build-temp', {str(tmp / 'obj')!r}])\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, cwd=tmp,
                   timeout=120)
    built = next(tmp.glob("_mmsg*.so"))
    spec = importlib.util.spec_from_file_location("sipload.transport._mmsg", built)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def native_module(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    try:
        from sipload.transport import _mmsg  # type: ignore[attr-defined,unused-ignore]

        module: ModuleType = _mmsg
        if getattr(module, "API", None) == batch.NATIVE_API:
            return module  # else a build older than its source: compile the source here
    except ImportError:
        pass
    if not sys.platform.startswith("linux"):
        pytest.skip("sendmmsg/recvmmsg are Linux's")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no C compiler to build the sendmmsg helper")
        pytest.skip("no C compiler")
    return _build(tmp_path_factory.mktemp("mmsg"))


@pytest.fixture(params=["native", "python"])
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "native":
        module = request.getfixturevalue("native_module")
        assert module.API == batch.NATIVE_API
        monkeypatch.setattr(batch, "_native", module)
    else:
        monkeypatch.setattr(batch, "_native", None)
    return str(request.param)


def _pair(host: str = "127.0.0.1") -> Iterator[tuple[socket.socket, socket.socket]]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    a = socket.socket(family, socket.SOCK_DGRAM)
    b = socket.socket(family, socket.SOCK_DGRAM)
    for s in (a, b):
        s.bind((host, 0))
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    yield from _pair()


def _addr(s: socket.socket) -> tuple[str, int]:
    host, port = s.getsockname()[:2]
    return str(host), int(port)


def test_many_datagrams_in_order_with_source_and_stamps(
        impl: str, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    assert batch.enable_stamps(b)
    packets = [i.to_bytes(4, "big") * (1 + i % 50) for i in range(700)]  # over 2 chunks
    before = time.monotonic()
    result = batch.send_batch(a, packets, [_addr(b)] * len(packets))
    assert (result.sent, result.failed, result.unsent, result.errno) == (700, 0, 0, 0)
    got, err = batch.recv_batch(b, limit=10_000, bufsize=2048, stamps=True)
    after = time.monotonic()
    assert err == 0
    assert [d for d, _, _ in got] == packets
    assert {src for _, src, _ in got} == {_addr(a)}
    stamps = [s for _, _, s in got]
    assert stamps == sorted(stamps)
    # kernel stamps: when each reached the socket, within the send window
    assert before - 0.001 <= stamps[0] and stamps[-1] <= after + 0.001
    assert batch.recv_batch(b)[0] == []  # drained


def test_limit_and_truncation(impl: str, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    packets = [bytes([i]) * 100 for i in range(10)]
    assert batch.send_batch(a, packets, [_addr(b)] * 10).sent == 10
    first, _ = batch.recv_batch(b, limit=4, bufsize=2048, stamps=False)
    assert [d for d, _, _ in first] == packets[:4]
    rest, _ = batch.recv_batch(b, limit=100, bufsize=10, stamps=False)
    assert [d for d, _, _ in rest] == [p[:10] for p in packets[4:]]  # cut to bufsize


def test_several_destinations_and_sources(impl: str) -> None:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        a, b, c = socks
        dests = [_addr(b), _addr(c)] * 50
        packets = [bytes([i % 256]) * 20 for i in range(100)]
        assert batch.send_batch(a, packets, dests).sent == 100
        assert batch.send_batch(c, [b"from-c"], [_addr(b)]).sent == 1
        got_b, _ = batch.recv_batch(b)
        got_c, _ = batch.recv_batch(c)
        assert [d for d, _, _ in got_b] == [*packets[0::2], b"from-c"]
        assert [d for d, _, _ in got_c] == packets[1::2]
        assert [src for _, src, _ in got_b] == [_addr(a)] * 50 + [_addr(c)]
    finally:
        for s in socks:
            s.close()


def test_a_refused_datagram_is_skipped_and_counted(
        impl: str, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    packets = [b"one", b"x" * 70_000, b"three"]  # the middle one is too large for UDP
    result = batch.send_batch(a, packets, [_addr(b)] * 3)
    assert (result.sent, result.failed, result.unsent) == (2, 1, 0)
    assert result.errno == errno.EMSGSIZE
    assert [d for d, _, _ in batch.recv_batch(b)[0]] == [b"one", b"three"]


def test_send_until_stops_at_the_first_refused_datagram(
        impl: str, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    dest = [_addr(b)] * 5
    packets = [b"zero", b"one", b"x" * 70_000, b"three", b"four"]  # [2] is too large
    sent, err = batch.send_until(a, packets, dest)
    # sendmmsg keeps only the count once one went (the C helper then says 0: unknown)
    assert (sent, err) == (2, 0 if impl == "native" else errno.EMSGSIZE)
    assert batch.send_until(a, packets, dest, 2) == (0, errno.EMSGSIZE)  # first: known
    assert [d for d, _, _ in batch.recv_batch(b)[0]] == [b"zero", b"one"]  # nothing after
    assert batch.send_until(a, packets, dest, 3) == (2, 0)  # from start on, all sent
    assert [d for d, _, _ in batch.recv_batch(b)[0]] == [b"three", b"four"]
    assert batch.send_until(a, packets, dest, 5) == (0, 0)
    many = [i.to_bytes(2, "big") for i in range(600)]  # over two chunks of 256
    assert batch.send_until(a, many, [_addr(b)] * 600, 1) == (599, 0)
    assert [d for d, _, _ in batch.recv_batch(b, limit=1000)[0]] == many[1:]
    with pytest.raises(ValueError):
        batch.send_until(a, packets, dest, 6)
    with pytest.raises(ValueError):
        batch.send_until(a, packets, dest[:4])


def test_ipv6(impl: str) -> None:
    try:
        gen = _pair("::1")
        a, b = next(gen)
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        assert batch.send_batch(a, [b"v6"] * 3, [_addr(b)] * 3).sent == 3
        got, _ = batch.recv_batch(b)
        assert [d for d, _, _ in got] == [b"v6"] * 3
        assert got[0][1] == _addr(a)
    finally:
        gen.close()


def test_length_mismatch_is_an_error(impl: str, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    with pytest.raises(ValueError):
        batch.send_batch(a, [b"x", b"y"], [_addr(b)])


def test_native_rejects_bad_destinations(native_module: ModuleType,
                                         monkeypatch: pytest.MonkeyPatch,
                                         pair: tuple[socket.socket, socket.socket]) -> None:
    monkeypatch.setattr(batch, "_native", native_module)
    a, _ = pair
    with pytest.raises(ValueError, match="not an IP address"):
        batch.send_batch(a, [b"x"], [("localhost", 9)])
    with pytest.raises(TypeError):
        batch.send_batch(a, [b"x"], ["127.0.0.1:9"])  # type: ignore[list-item]
    with pytest.raises(OverflowError):
        batch.send_batch(a, [b"x"], [("127.0.0.1", 70000)])


def test_a_queued_socket_error_ends_the_read(impl: str) -> None:
    """An ICMP port-unreachable queued on a connected socket comes back as errno."""
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        dead.bind(("127.0.0.1", 0))
        port = _addr(dead)[1]
        dead.close()
        a.bind(("127.0.0.1", 0))
        a.connect(("127.0.0.1", port))
        a.setblocking(False)
        a.send(b"nobody home")
        deadline = time.monotonic() + 2
        err = 0
        while not err and time.monotonic() < deadline:
            got, err = batch.recv_batch(a)
            assert got == []
            time.sleep(0.01)
        assert err == errno.ECONNREFUSED
    finally:
        a.close()


def test_fallback_selected_by_environment() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SIPLOAD_BATCH": "python"}
    out = subprocess.run(
        [sys.executable, "-c", "from sipload.transport import batch; print(batch.IMPLEMENTATION)"],
        env=env, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "python"
