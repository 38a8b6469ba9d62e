"""Faults and bad input (issue 17): the coordinator killed, every bad flag, key files.

* ``kill -9`` of ``sipload run``: every process of the run (found by its session:
  the run starts in its own) is gone within 2.5 s — local workers, the embedded
  UAS — and ``sipload report`` marks the run
  incomplete, never passed.  A worker on its own (``sipload worker``) stops too.
* Every bad numeric flag of every sub-command is refused before anything runs:
  exit 2, one line naming the flag, no run directory.
* ``sipload keys``: 0700 folders whatever the umask, no secret overwritten
  without ``--force``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sipload.stats.rundir import EVENTS, read_jsonl
from tests.peers import free_port

REPO = Path(__file__).resolve().parent.parent
BASIC = REPO / "scenarios" / "basic_call.yaml"


def session_pids(sid: int) -> set[int]:
    """Every live process whose session id is ``sid`` (zombies excluded)."""
    out: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            out.add(int(entry))
    return out


def wait_event(run_dir: Path, kind: str, proc: subprocess.Popen[bytes],
               timeout: float = 60) -> dict[str, object]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (run_dir / EVENTS).exists():
            for ev in read_jsonl(run_dir, EVENTS):
                if ev.get("event") == kind:
                    return ev
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before {kind}"
        time.sleep(0.1)
    raise AssertionError(f"no {kind} event in {timeout} s")


def killall_session(sid: int) -> None:
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_killing_the_coordinator_leaves_nothing_of_the_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipload", "run", str(BASIC), "--quiet", "--rate", "20",
         "--duration", "60s", "--workers", "2", "--out", str(run_dir)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    sid = proc.pid
    try:
        wait_event(run_dir, "go", proc)
        time.sleep(1.0)  # calls under way
        before = session_pids(sid)
        # the coordinator, two workers and the embedded UAS
        assert len(before) >= 4, before
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        deadline = time.monotonic() + 2.5
        left = session_pids(sid)
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = session_pids(sid)
        names = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in left
                 if Path(f"/proc/{p}/cmdline").exists()}
        assert not left, f"still running 2.5 s after the coordinator died: {names}"
    finally:
        killall_session(sid)
    rows_then = (run_dir / "calls.arrows").stat().st_size
    time.sleep(1.0)
    assert (run_dir / "calls.arrows").stat().st_size == rows_then  # nothing more written
    r = subprocess.run([sys.executable, "-m", "sipload", "report", str(run_dir), "--quiet",
                        "--threshold", "asr>=0"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["complete"] is False and summary["passed"] is False
    assert "run_end" in summary["incomplete_reason"]
    # incomplete: the run could not run to its end (exit 3, as sipload run says when a
    # run cannot complete), and the gate says so
    assert r.returncode == 3 and "INCOMPLETE: " in r.stdout
    assert (summary["exit_code"], summary["gate"]["verdict"]) == (3, "incomplete")


def test_a_worker_stops_when_its_coordinator_is_killed(tmp_path: Path) -> None:
    """The control channel's deadline, for workers the kernel does not watch."""
    keys = tmp_path / "keys"
    subprocess.run([sys.executable, "-m", "sipload", "keys", str(keys)], check=True,
                   capture_output=True, timeout=60)
    run_dir = tmp_path / "run"
    port = free_port("udp")
    uas = subprocess.Popen(  # a target that outlives the coordinator
        [sys.executable, "-m", "sipload", "uas", "--listen", f"127.0.0.1:{port}",
         "--duration", "60s"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, start_new_session=True)
    assert uas.stdout is not None and "listening" in uas.stdout.readline()
    coord = subprocess.Popen(
        [sys.executable, "-m", "sipload", "run", str(BASIC), "--quiet", "--rate", "20",
         "--duration", "60s", "--workers", "1", "--local-workers", "0", "--keys", str(keys),
         "--target", f"127.0.0.1:{port}", "--out", str(run_dir)], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    worker = None
    try:
        url = str(wait_event(run_dir, "coordinator_listening", coord)["url"])
        worker = subprocess.Popen(
            [sys.executable, "-m", "sipload", "worker", "--connect", url, "--keys", str(keys)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        wait_event(run_dir, "go", coord)
        time.sleep(1.0)
        os.kill(coord.pid, signal.SIGKILL)
        coord.wait(5)
        t0 = time.monotonic()
        _, err = worker.communicate(timeout=10)
        took = time.monotonic() - t0
        assert worker.returncode == 3 and "lost" in err, err
        assert took < 2.5, f"the worker took {took:.1f} s to stop"
    finally:
        killall_session(coord.pid)
        killall_session(uas.pid)
        uas.communicate()
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.communicate()


def test_a_target_that_goes_away_does_not_kill_the_workers(tmp_path: Path) -> None:
    """ICMP port unreachable from a target that died: the calls fail, the worker lives
    (uvloop crashed when the UA sent again from inside its error callback)."""
    port = free_port("udp")
    uas = subprocess.Popen(
        [sys.executable, "-m", "sipload", "uas", "--listen", f"127.0.0.1:{port}",
         "--duration", "2s"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, start_new_session=True)
    try:
        assert uas.stdout is not None and "listening" in uas.stdout.readline()
        r = subprocess.run(
            [sys.executable, "-m", "sipload", "run", str(BASIC), "--quiet", "--rate", "20",
             "--duration", "5s", "--workers", "1", "--target", f"127.0.0.1:{port}",
             "--out", str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True,
            timeout=90)
    finally:
        killall_session(uas.pid)
        uas.communicate()
    events = read_jsonl(tmp_path / "run", EVENTS)
    assert not [e for e in events if e["event"] == "worker_lost"], r.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["complete"] is True and summary["calls"]["lost_with_worker"] == 0
    assert summary["failed"]["by_reason"].get("transport_error", 0) > 0


# --------------------------------------------------------------------------- flags

S = str(BASIC)
BAD_FLAGS = [
    ["run", S, "--calls", "2", "--t1", "0"],
    ["run", S, "--calls", "2", "--t1", "-1s"],
    ["run", S, "--calls", "2", "--t1", "nan"],
    ["run", S, "--calls", "2", "--t1", "2m"],
    ["run", S, "--calls", "2", "--rate", "nan"],
    ["run", S, "--calls", "2", "--rate", "inf"],
    ["run", S, "--calls", "2", "--rate", "0"],
    ["run", S, "--calls", "2", "--grace", "-1"],
    ["run", S, "--calls", "2", "--grace", "inf"],
    ["run", S, "--calls", "2", "--workers", "500"],
    ["run", S, "--calls", "2", "--workers", "0"],
    ["run", S, "--calls", "0"],
    ["run", S, "--calls", "1.5"],
    ["run", S, "--duration", "nan"],
    ["run", S, "--duration", "inf"],
    ["run", S, "--duration", "0"],
    ["run", S, "--calls", "2", "--concurrent", "-5"],
    ["run", S, "--calls", "2", "--users", "0"],
    ["run", S, "--calls", "2", "--rate-increase", "nan"],
    ["run", S, "--calls", "2", "--rate-increase", "-1"],
    ["run", S, "--calls", "2", "--rate-interval", "-1s"],
    ["run", S, "--calls", "2", "--rate-max", "inf"],
    ["run", S, "--calls", "2", "--rate", "10", "--rate-max", "5"],
    ["run", S, "--calls", "2", "--local-workers", "-1"],
    ["run", S, "--calls", "2", "--workers", "2", "--local-workers", "1"],
    ["run", S, "--calls", "2", "--seed", "x"],
    ["run", S, "--calls", "2", "--target", "127.0.0.1:99999"],
    ["run", S, "--calls", "2", "--max-message", "10"],
    ["run", S, "--calls", "2", "--max-message", "1g"],
    ["run", S, "--calls", "2", "--max-connections", "-1"],
    ["run", S, "--calls", "2", "--max-dialogs", "-1"],
    ["run", S, "--calls", "2", "--idle-timeout", "nan"],
    ["uas", "--listen", "127.0.0.1:70000"],
    ["uas", "--duration", "nan"],
    ["uas", "--duration", "-5s"],
    ["uas", "--max-connections", "x"],
    ["compare", "a", "b", "--tolerance", "nan"],
    ["compare", "a", "b", "--tolerance", "inf"],
    ["conformance", "--listen", "127.0.0.1:99999", "--target", "127.0.0.1:5"],
]


@pytest.mark.parametrize("argv", BAD_FLAGS, ids=[" ".join(a[2:] if a[0] == "run" else a)
                                                 for a in BAD_FLAGS])
def test_a_bad_flag_is_refused_before_anything_runs(argv: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    extra = ["--out", str(out)] if argv[0] == "run" else []
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "sipload", *argv, *extra], cwd=tmp_path,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr[-500:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    flag = next(a for a in argv if a.startswith("--"))
    if argv[0] != "run" or flag not in ("--calls", "--duration"):
        flags = [a for a in argv if a.startswith("--")]
        assert any(f in lines[0] for f in flags), lines[0]
    assert not out.exists() and not (tmp_path / "reports").exists()
    assert time.monotonic() - t0 < 15


def test_many_workers_are_allowed_when_forced(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "sipload", "run", S, "--calls", "1",
                        "--workers", "500", "--force-workers", "--quiet", "--out",
                        str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr  # --calls 1 caps it at one worker anyway


# --------------------------------------------------------------------------- keys


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_keys_folders_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    folder = tmp_path / "k" / "keys"
    r = subprocess.run(f"umask {umask:03o}; exec {sys.executable} -m sipload keys {folder}",
                       shell=True, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (folder.stat().st_mode & 0o777) == 0o700
    assert ((folder / "authorized").stat().st_mode & 0o777) == 0o700
    for secret in folder.glob("*.key_secret"):
        assert (secret.stat().st_mode & 0o777) == 0o600
    secret = (folder / "server.key_secret").read_bytes()
    again = subprocess.run([sys.executable, "-m", "sipload", "keys", str(folder)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "--force" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert (folder / "server.key_secret").read_bytes() == secret
    forced = subprocess.run([sys.executable, "-m", "sipload", "keys", str(folder), "--force"],
                            capture_output=True, text=True, timeout=60)
    assert forced.returncode == 0 and (folder / "server.key_secret").read_bytes() != secret
