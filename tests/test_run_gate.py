"""What a CI pipeline reads from real runs: exit codes, ``passed``, and a compare gate.

Each test runs ``sipload run`` as a user does (a subprocess, real sockets on
loopback, bounded in calls and time) and checks the exit code against
summary.json: 3 when nothing answers, 1 when calls fail (0 with ``--allow-failures``),
and ``sipload compare`` that passes two runs of the same setup and catches a UAS
40 ms slower.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.peers import free_port

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"


def sipload(*args: object, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "sipload", *(str(a) for a in args)],
                          cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def summary(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    return data


def pair(tmp: Path, name: str, uas_steps: str) -> Path:
    """A basic call (UAC) whose embedded counterpart runs ``uas_steps``."""
    folder = tmp / name
    folder.mkdir()
    (folder / "uas.yaml").write_text(f"name: {name}-uas\nrole: uas\nsteps:\n{uas_steps}")
    uac = (SCENARIOS / "basic_call.yaml").read_text().replace(
        "counterpart: basic_call_uas.yaml", "counterpart: uas.yaml")
    assert "counterpart: uas.yaml" in uac
    (folder / "uac.yaml").write_text(uac.replace("pause: 100ms", "pause: 10ms"))
    return folder / "uac.yaml"


ANSWER = """  - recv: INVITE
  - reply: 180
{pause}  - reply: 200
    body: {{sdp: answer}}
  - recv: ACK
  - recv: BYE
  - reply: 200
"""

BUSY = """  - recv: INVITE
  - reply: 486
"""


def test_nothing_listening_exits_3_and_passed_is_false(tmp_path: Path) -> None:
    out = tmp_path / "run"
    port = free_port("udp")
    r = sipload("run", SCENARIOS / "basic_call.yaml", "--target", f"127.0.0.1:{port}",
                "--calls", 5, "--rate", 50, "--workers", 1, "--out", out, "--quiet")
    assert r.returncode == 3, r.stderr
    s = summary(out)
    assert (s["exit_code"], s["passed"]) == (3, False)
    assert s["gate"]["verdict"] == "no_answer" and s["gate"]["answered"] == 0
    assert s["calls"]["failed"] == 5
    assert "no call got any answer" in r.stderr
    # sipload report says the same from the files
    assert sipload("report", out, "--quiet").returncode == 3


def test_failed_calls_exit_1_unless_allowed(tmp_path: Path) -> None:
    scenario = pair(tmp_path, "busy", BUSY)
    out = tmp_path / "strict"
    r = sipload("run", scenario, "--calls", 4, "--rate", 40, "--workers", 1, "--out", out,
                "--quiet")
    assert r.returncode == 1, r.stderr
    s = summary(out)
    assert s["calls"]["failed"] == 4 and s["failed"]["by_reason"] == {"call_rejected": 4}
    assert (s["gate"]["verdict"], s["exit_code"], s["passed"]) == ("failures", 1, False)
    assert "4 of 4 calls failed" in r.stderr
    out = tmp_path / "allowed"
    r = sipload("run", scenario, "--calls", 4, "--rate", 40, "--workers", 1, "--out", out,
                "--allow-failures", "100%", "--quiet")
    assert r.returncode == 0, r.stderr
    s = summary(out)
    assert (s["gate"]["verdict"], s["exit_code"], s["passed"]) == ("passed", 0, True)
    assert s["gate"]["allow_failures"] == 1.0
    assert sipload("run", scenario, "--calls", 1, "--allow-failures", "150%").returncode == 2


def test_compare_passes_the_same_setup_and_catches_a_40ms_slower_uas(tmp_path: Path
                                                                     ) -> None:
    fast = pair(tmp_path, "fast", ANSWER.format(pause=""))
    slow = pair(tmp_path, "slow", ANSWER.format(pause="  - pause: 40ms\n"))
    runs = {}
    for name, scenario in (("a", fast), ("a2", fast), ("b", slow)):
        runs[name] = tmp_path / f"run-{name}"
        r = sipload("run", scenario, "--calls", 200, "--rate", 100, "--workers", 1,
                    "--out", runs[name], "--quiet")
        assert r.returncode == 0, r.stderr
    gate = ("--tolerance", "50%", "--min-delta", "20ms", "--metric", "answer.p50",
            "--metric", "answer.p90", "--metric", "answer.p95", "--metric", "asr",
            "--metric", "failed.rate")
    same = sipload("compare", runs["a"], runs["a2"], *gate)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "no regression beyond tolerance" in same.stdout
    line = next(x for x in same.stdout.splitlines() if x.startswith("answer.p95 "))
    assert line.split()[-1] == "same" and line.count(" ms") == 2  # p95: 200 samples
    out = tmp_path / "cmp"
    slower = sipload("compare", runs["a"], runs["b"], *gate, "--out", out)
    assert slower.returncode == 1, slower.stdout + slower.stderr
    result = json.loads((out / "compare.json").read_text())
    assert {"answer.p50", "answer.p90", "answer.p95"} <= set(result["regressions"])
    assert not {"asr", "failed.rate"} & set(result["regressions"])
    p50 = next(m for m in result["metrics"] if m["metric"] == "answer.p50")
    assert p50["unit"] == "ms" and 35.0 < p50["b"] - p50["a"] < 80.0
    assert "REGRESSION" in (out / "compare.html").read_text()
    # nothing was written into either run
    assert not (runs["b"] / "compare.json").exists()
    assert not (runs["a"] / "compare.json").exists()
