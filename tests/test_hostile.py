"""Hostile peers and hostile input (issue 17): what a peer or a file may take.

* TCP: a message past the size limit is answered 413 (513 for a header section
  with no end) and its connection closed, with the listener's memory measured;
  past ``--max-connections`` a new connection's request gets 503 + Retry-After;
  an idle connection is closed; ``--max-dialogs`` answers a new INVITE 503.
* The control plane: a peer without the run's keys never gets the plan; a worker
  that has keys but lies is checked against what it was given, and a bad message
  never ends the run (the pure coordinator, and a real run with a fake worker
  speaking the protocol).
* Files: YAML alias bombs, deep nesting, huge files; regexes that can backtrack
  without bound.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
import zmq.auth

from sipload.cluster.coordinator import Coordinator
from sipload.cluster.messages import (
    PROTOCOL,
    Done,
    Heartbeat,
    Hello,
    Ready,
    Records,
    Snapshot,
    Welcome,
)
from sipload.scenario.loader import ScenarioError, load_file, load_text
from sipload.scenario.regexcheck import RegexTooSlow, check_regex
from sipload.sip.errors import ParseError
from sipload.sip.parser import StreamFramer
from sipload.stats.rundir import EVENTS, read_calls, read_jsonl
from sipload.ua.agent import UAConfig, UserAgent
from tests.peers import free_port
from tests.test_transport import pki  # noqa: F401  (the test PKI fixture)

REPO = Path(__file__).resolve().parent.parent
BASIC = REPO / "scenarios" / "basic_call.yaml"

HEAD = (b"INVITE sip:a@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP 127.0.0.1:5;branch=z9hG4bKhostile\r\n"
        b"From: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\n"
        b"Call-ID: hostile-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n")


def options(n: int) -> bytes:
    return (f"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP 127.0.0.1:5;branch=z9hG4bKopt{n}\r\n"
            f"From: <sip:b@127.0.0.1>;tag=o{n}\r\nTo: <sip:a@127.0.0.1>\r\n"
            f"Call-ID: opt-{n}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def first_line(sock: socket.socket, timeout: float = 3.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


# --------------------------------------------------------------------------- the framer


def test_framer_refuses_a_declared_body_past_the_limit_before_buffering_it() -> None:
    framer = StreamFramer(max_message=4096)
    with pytest.raises(ParseError) as e:
        framer.feed(HEAD + b"Content-Length: 2147483648\r\n\r\n" + b"x" * 1000)
    assert e.value.status == 413
    assert framer.buffered == 0 and framer.refused.startswith(b"INVITE ")
    assert framer.refused.endswith(b"\r\n\r\n")  # the header section, not the body


def test_framer_refuses_headers_without_end_and_absurd_lengths() -> None:
    framer = StreamFramer(max_message=4096)
    with pytest.raises(ParseError) as e:
        for _ in range(100):
            framer.feed(b"X-Junk: " + b"y" * 100 + b"\r\n")
    assert e.value.status == 513 and framer.buffered == 0
    framer = StreamFramer()
    with pytest.raises(ParseError) as e:  # 60,000 digits: no int() of it
        framer.feed(HEAD + b"Content-Length: " + b"9" * 60_000 + b"\r\n\r\n")
    assert e.value.status in (413, 513)
    framer = StreamFramer(max_message=4096)
    whole = HEAD + b"Content-Length: 10\r\n\r\n0123456789"
    assert framer.feed(whole) == [whole]  # under the limit: framed as before


# --------------------------------------------------------------------------- a real TCP UAS


@pytest.fixture
def uas_tcp(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[int, int]]:
    """``sipload uas --transport tcp`` with the test's extra flags; (port, pid)."""
    port = free_port("tcp")
    extra: list[str] = list(getattr(request, "param", []))
    errors = tmp_path / "uas.err"
    with errors.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sipload", "uas", "--transport", "tcp", "--listen",
             f"127.0.0.1:{port}", "--duration", "60s", *extra],
            stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "listening on ..."
        assert "listening" in line, errors.read_text()
        yield port, proc.pid
        assert proc.poll() is None, "the UAS died: " + errors.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_stream_past_the_size_limit_gets_413_and_memory_stays_flat(
        uas_tcp: tuple[int, int]) -> None:
    port, pid = uas_tcp
    before = rss_kib(pid)
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(HEAD + b"Content-Length: 2147483648\r\n\r\n")
        chunk = b"x" * 65536
        try:
            for _ in range(512):  # up to 32 MiB; the UAS closes long before
                c.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        answer = first_line(c)
    assert answer.startswith(b"SIP/2.0 413 "), answer[:80]
    assert b"Call-ID: hostile-1" in answer
    assert sent < 16 * 1024 * 1024, f"{sent} bytes accepted past the limit"
    grown = rss_kib(pid) - before
    assert grown < 8 * 1024, f"the listener grew {grown} KiB"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:  # still serving
        c.sendall(options(1))
        assert first_line(c).startswith(b"SIP/2.0 200 ")


@pytest.mark.parametrize("uas_tcp", [["--max-connections", "2", "--idle-timeout", "30s"]],
                         indirect=True)
def test_connections_past_the_cap_get_503_with_retry_after(uas_tcp: tuple[int, int]) -> None:
    port, _ = uas_tcp
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    try:
        for i, c in enumerate(held):
            c.sendall(options(10 + i))
            assert first_line(c).startswith(b"SIP/2.0 200 ")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
            extra.sendall(options(20))
            answer = first_line(extra)
            assert answer.startswith(b"SIP/2.0 503 "), answer[:80]
            assert b"Retry-After: " in answer
            extra.settimeout(3)
            assert extra.recv(100) == b""  # and closed
    finally:
        for c in held:
            c.close()
    time.sleep(0.3)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:  # room again
        c.sendall(options(30))
        assert first_line(c).startswith(b"SIP/2.0 200 ")


@pytest.mark.parametrize("uas_tcp", [["--idle-timeout", "500ms"]], indirect=True)
def test_an_idle_connection_is_closed(uas_tcp: tuple[int, int]) -> None:
    port, _ = uas_tcp
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        t0 = time.monotonic()
        c.settimeout(5)
        assert c.recv(100) == b""
        assert time.monotonic() - t0 < 3.0


def test_max_dialogs_answers_a_new_invite_503_with_retry_after() -> None:
    ua = UserAgent(UAConfig(host="127.0.0.1", port=5060, max_calls=1))
    peer = ("udp", "127.0.0.1", 5070)
    for n in (1, 2):
        invite = (f"INVITE sip:a@127.0.0.1 SIP/2.0\r\n"
                  f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKmd{n}\r\n"
                  f"From: <sip:b@127.0.0.1>;tag=f{n}\r\nTo: <sip:a@127.0.0.1>\r\n"
                  f"Call-ID: md-{n}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
                  f"Contact: <sip:b@127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n").encode()
        ua.receive(invite, peer, 0.0)
    out = [data for data, _ in ua.outgoing()]
    second = [d for d in out if b"Call-ID: md-2" in d]
    assert len(second) == 1 and second[0].startswith(b"SIP/2.0 503 ")
    assert b"Retry-After: 5" in second[0]
    assert all(not d.startswith(b"SIP/2.0 503") for d in out if b"md-1" in d)
    assert ua.refused_busy == 1


# --------------------------------------------------------------------------- the coordinator


def _coordinator(calls: int | None = 100) -> tuple[Coordinator, bytes]:
    c = Coordinator({"scenario_text": "x"}, 1, 10.0, calls)
    ident = b"w0"
    out = c.on_message(ident, Hello("1", 1, "h"), 0.0)
    assert isinstance(out[0][1], Welcome)
    return c, ident


def _record(n: int, **change: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "call_number": n, "intended_start": 1.0, "actual_start": 1.0, "end": 2.0,
        "result": "success", "failure": "", "detail": "", "step": 3, "codes": [200],
        "messages": [[1.0, "sent", "INVITE"]], "retransmissions": 0, "marks": {"answer": 0.1},
        "worker": 0, "call_id": "c"}
    r.update(change)
    return {k: v for k, v in r.items() if v is not None}


def test_the_coordinator_believes_nothing_beyond_what_it_assigned() -> None:
    c, ident = _coordinator(100)
    c.on_message(ident, Ready(0, "127.0.0.1", 1), 1.0)
    assert c.admit(ident, Heartbeat(0, 1.0, 0, 10**12, 0.1, 1.0), 2.0) is None
    assert c.admit(ident, Heartbeat(7, 1.0, 0, 5, 0.1, 1.0), 2.0) is None  # not its id
    bad = [_record(1, call_number=None), _record(2, result="great"), _record(500),
           _record(3, codes=["x"]), "not a map", _record(4, marks={"a": float("nan")}),
           _record(5, media={"mos": "x"})]  # once admitted, then fatal to the writer
    msg = c.admit(ident, Records(0, 1, [_record(0), *bad], 2), 2.0)
    assert isinstance(msg, Records) and [r["call_number"] for r in msg.records] == [0]
    c.on_message(ident, msg, 2.0)
    assert c.admit(ident, Snapshot(0, {"worker": 0, "started": "many"}), 2.0) is None
    # a Done that claims more calls than it reported: the rest are lost with it
    done = c.admit(ident, Done(0, 3, 1, 0, 0, 1, 0), 3.0)
    assert done is not None
    c.on_message(ident, done, 3.0)
    t = c.totals()
    assert t["started"] == 3 and t["records"] == 1 and t["lost_with_worker"] == 2
    assert c.rejected == {"Heartbeat": 2, "record": 7, "Snapshot": 1}
    assert any(e["event"] == "message_rejected" for e in c.events)
    events = len(c.events)
    for _ in range(1000):  # a peer that never said Hello: counted, logged a few times
        assert c.admit(b"stranger", Heartbeat(0, 1.0, 0, 1, 0.1, 1.0), 4.0) is None
    assert c.rejected["Heartbeat"] == 1002 and len(c.events) - events <= 10


def test_a_duration_run_bounds_started_by_the_rate() -> None:
    c, ident = _coordinator(None)
    c.on_message(ident, Ready(0, "127.0.0.1", 1), 0.0)
    assert c.went
    assert c.admit(ident, Heartbeat(0, 1.0, 0, 50, 0.1, 1.0), 10.0) is not None
    assert c.admit(ident, Heartbeat(0, 1.0, 0, 10**6, 0.1, 1.0), 10.0) is None


class FakeWorker:
    """Speaks the control protocol over ZeroMQ, with or without CurveZMQ keys."""

    def __init__(self, url: str, keys: Path | None = None) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            pub, sec = zmq.auth.load_certificate(str(keys / "worker.key_secret"))
            server, _ = zmq.auth.load_certificate(str(keys / "server.key"))
            self.sock.curve_publickey, self.sock.curve_secretkey = pub, sec
            self.sock.curve_serverkey = server
        self.sock.connect(url)

    def send(self, **msg: Any) -> None:
        self.sock.send(msgpack.packb(msg, use_bin_type=True))

    def recv(self, timeout: float) -> dict[str, Any] | None:
        if not self.sock.poll(int(timeout * 1000)):
            return None
        out = msgpack.unpackb(self.sock.recv(), raw=False)
        assert isinstance(out, dict)
        return out

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def _listening_url(run_dir: Path, proc: subprocess.Popen[str], timeout: float = 30) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (run_dir / EVENTS).exists():
            for ev in read_jsonl(run_dir, EVENTS):
                if ev.get("event") == "coordinator_listening":
                    return str(ev["url"])
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.1)
    raise AssertionError("the coordinator never listened")


def _run(tmp: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sipload", "run", str(BASIC), "--quiet", "--out",
         str(tmp / "run"), *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True)


def _finish(proc: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        raise AssertionError("the run did not end: " + err[-2000:]) from None
    return proc.returncode, err


@contextmanager
def _run_with_fake_worker(tmp: Path, *args: str, keys: Path | None = None
                          ) -> Iterator[tuple[subprocess.Popen[str], FakeWorker]]:
    """:func:`_run` (given ``--keys`` when there are ``keys``) and a :class:`FakeWorker`
    (with those keys) connected to its coordinator; on leaving, the fake is closed and
    the run's group killed if still up."""
    proc = _run(tmp, *args, *(["--keys", str(keys)] if keys is not None else []))
    fake = None
    try:
        fake = FakeWorker(_listening_url(tmp / "run", proc), keys)
        yield proc, fake
    finally:
        if fake is not None:
            fake.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_peer_without_the_runs_keys_never_sees_the_plan(tmp_path: Path) -> None:
    # loopback, no keys: what any local process could do
    with _run_with_fake_worker(tmp_path, "--calls", "40", "--rate", "40",
                               "--workers", "1") as (proc, fake):
        fake.send(type="Hello", version="x", pid=1, host="evil", protocol=PROTOCOL, build="")
        assert fake.recv(3.0) is None  # no Welcome: the handshake never completes
        code, err = _finish(proc)
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["calls"]["attempted"] == 40 and summary["calls"]["succeeded"] == 40


def test_a_lying_worker_with_keys_cannot_crash_or_skew_the_run(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    subprocess.run([sys.executable, "-m", "sipload", "keys", str(keys)], check=True,
                   capture_output=True)
    with _run_with_fake_worker(tmp_path, "--calls", "60", "--rate", "30", "--workers", "2",
                               "--local-workers", "1", keys=keys) as (proc, fake):
        fake.send(type="Hello", version="x", pid=1, host="fake", protocol=PROTOCOL, build="")
        welcome = fake.recv(10.0)
        assert welcome is not None and welcome["type"] == "Welcome", welcome
        w, first, calls = welcome["worker"], welcome["first_call"], welcome["calls"]
        fake.send(type="Ready", worker=w, address="127.0.0.1", port=9)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait for Go
            m = fake.recv(0.5)
            if m is not None and m["type"] == "Go":
                break
        good = _record(first, worker=w)
        fake.send(type="Heartbeat", worker=w, t=1.0, active=0, started=10**12, cpu=0.0,
                  loop_lag_ms=0.0)
        fake.send(type="Records", worker=w, seq=1, started=1, records=[
            {"x": 1}, _record(first + 1, call_number=None), _record(10**9), good])
        fake.send(type="Snapshot", worker=w, snapshot={"worker": w, "histograms": b"\x00"})
        fake.send(type="Heartbeat", worker=w + 5, t=1.0, active=0, started=1, cpu=0.0,
                  loop_lag_ms=0.0)
        fake.sock.send(b"\xc1 not msgpack")
        fake.send(type="Done", worker=w, started=1, succeeded=1, failed=0, in_flight=0,
                  records_sent=1, retransmissions=0)
        code, err = _finish(proc)
    run = tmp_path / "run"
    assert code == 0, err
    assert calls == 30
    events = read_jsonl(run, EVENTS)
    rejected = [e for e in events if e["event"] == "message_rejected"]
    assert {e["type"] for e in rejected} >= {"Heartbeat", "record", "Snapshot"}
    end = next(e for e in events if e["event"] == "run_end")
    assert end["rejected_messages"] >= 5 and end["malformed_messages"] >= 1
    summary = json.loads((run / "summary.json").read_text())
    c = summary["calls"]
    assert c["attempted"] == (c["succeeded"] + c["failed"] + c["in_flight_at_stop"]
                              + c["lost_with_worker"])
    # the real worker's 30 calls plus the fake's one believable record, nothing more
    assert c["attempted"] == 31, c
    rows = read_calls(run)
    assert rows.num_rows == 31 and len(set(rows.column("call_number").to_pylist())) == 31


# --------------------------------------------------------------------------- files


def test_yaml_alias_bomb_is_refused_fast_with_a_position(tmp_path: Path) -> None:
    lines = ["name: bomb", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for n in "bcdefghi":
        lines.append(f"{n}: &{n} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = n
    lines.append("steps:\n  - send: INVITE")
    t0 = time.monotonic()
    with pytest.raises(ScenarioError, match="alias") as e:
        load_text("\n".join(lines) + "\n", "bomb.yaml")
    assert time.monotonic() - t0 < 5.0
    assert str(e.value).startswith("bomb.yaml:")


def test_deep_nesting_and_huge_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="nested deeper"):
        load_text("name: x\nsteps: " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml")
    big = tmp_path / "big.yaml"
    with big.open("w") as f:
        f.write("name: big\nsteps:\n" + "  - send: OPTIONS\n" * 200_000)
    t0 = time.monotonic()
    with pytest.raises(ScenarioError, match="larger than"):
        load_file(big)
    assert time.monotonic() - t0 < 2.0
    r = subprocess.run([sys.executable, "-m", "sipload", "conformance", "--profile", str(big),
                        "--target", "127.0.0.1:9", "--list"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "larger than" in r.stderr


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(a*)*b", r"(\w+\s?)+$", r"(a|aa)+$",
                                     r"(.*a){20}", r"((a+)b?)+", r"(x+x+)+y", r"(\d+)*$"])
def test_regexes_that_backtrack_without_bound_are_refused(pattern: str) -> None:
    with pytest.raises(RegexTooSlow):
        check_regex(pattern)


@pytest.mark.parametrize("pattern", [r"tag=([^;]+)", r"(?:[^;]+;)*", r"(\d{1,3}\.){3}\d{1,3}",
                                     r'"(?:[^"\\]|\\.)*"', r"(GET|POST)+", r"(ab)+", r".*x.*",
                                     r"<sip:([^@>]+)@", r"(a++)+", r"(?>a+)+",
                                     r"([a-z]+,)*[a-z]+", r"(\S+)\s+(\S+)"])
def test_ordinary_regexes_pass(pattern: str) -> None:
    check_regex(pattern)


def test_validate_names_the_regex_and_its_position(tmp_path: Path) -> None:
    text = BASIC.read_text()
    marker = "steps:\n"
    assert marker in text
    bad = tmp_path / "rx.yaml"
    bad.write_text(text.replace(marker, marker + "  - recv: 200\n    optional: true\n"
                                "    capture:\n      - {var: x, header: To, "
                                "regex: '(a+)+$'}\n", 1))
    r = subprocess.run([sys.executable, "-m", "sipload", "validate", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.startswith(f"{bad}:") and "(a+)+$" in r.stderr
    assert "exponential" in r.stderr and len(r.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- out of descriptors


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_out_of_descriptors_the_listener_stays_quiet_and_recovers(tmp_path: Path,
                                                                  loop: str) -> None:
    env = dict(os.environ)
    if loop == "asyncio":  # the loop sipload falls back to without uvloop
        blocker = tmp_path / "no_uvloop" / "uvloop"
        blocker.mkdir(parents=True)
        (blocker / "__init__.py").write_text("raise ImportError('asyncio loop for this test')\n")
        env["PYTHONPATH"] = os.pathsep.join([str(blocker.parent), env.get("PYTHONPATH", "")])
    port = free_port("tcp")
    errors = tmp_path / "uas.err"
    with errors.open("w") as err:
        proc = subprocess.Popen(
            f"ulimit -n 40; exec {sys.executable} -m sipload uas --transport tcp "
            f"--listen 127.0.0.1:{port} --duration 60s", shell=True, env=env, cwd=REPO,
            stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
    held: list[socket.socket] = []
    try:
        assert proc.stdout is not None and "listening" in proc.stdout.readline()
        end = time.monotonic() + 3.0
        connects = 0
        while time.monotonic() < end:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=0.5)
            except OSError:
                continue
            connects += 1
            if len(held) < 80:
                held.append(s)  # more than the UAS has descriptors for
            else:
                s.close()
        for s in held:
            s.close()
        held.clear()
        time.sleep(1.5)  # the loop's retry, once descriptors are free
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(options(40))
            assert first_line(c, 5.0).startswith(b"SIP/2.0 200 ")
        assert proc.poll() is None
    finally:
        for s in held:
            s.close()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    log = errors.read_text()
    assert connects > 100
    assert len(log.splitlines()) <= 2, log[:2000]  # one line per 10 s at most
    assert "Traceback" not in log


def test_tls_stream_past_the_size_limit_gets_413(pki: Path) -> None:  # noqa: F811
    """The same limit on TLS (in process: a listener and a raw TLS client)."""
    import asyncio
    import ssl

    from sipload.transport import StreamLimits, TransportSet
    from sipload.transport.tls import server_context

    async def main() -> bytes:
        got: list[bytes] = []
        t = TransportSet(lambda data, peer: got.append(data), lambda peer, why: None,
                         stream_limits=StreamLimits(max_message=4096))
        _, port = await t.listen("tls", "127.0.0.1", 0, ssl_context=server_context(
            pki / "server.crt", pki / "server.key"))
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                       server_hostname="localhost")
        writer.write(HEAD + b"Content-Length: 100000\r\n\r\n" + b"x" * 8192)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 5)
        rest = await asyncio.wait_for(reader.read(4096), 5)  # closed after it
        writer.close()
        await t.close()
        assert not got and rest == b""
        return answer

    answer = asyncio.run(main())
    assert answer.startswith(b"SIP/2.0 413 ")
