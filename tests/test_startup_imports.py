"""What a run imports before its first call (issue 13: a run's fixed cost).

A local worker (:mod:`sipload.cluster.child`) and the start of ``sipload run`` must not
import the report's libraries (pandas, matplotlib, jinja2): about a second of CPU per
process, before any call. A worker does not import numpy (media only), jsonschema (the
coordinator validated the scenario), pyarrow, rich or websockets (a ws/wss transport
only) either; the coordinator checks a valid scenario without jsonschema
(``sipload.scenario.quickcheck``) and imports pyarrow once its workers are spawned,
while they start (not before: it would delay them; not with the first records: mid-run).
A whole ``sipload run`` never imports pandas, report included (0.3 s of CPU:
summary.json, report.html and junit.xml are made with pyarrow and numpy; pyarrow is kept
from importing pandas itself, see ``sipload.stats.rundir.pyarrow_without_pandas``).
Neither a worker nor the start of a run imports pylibsrtp without SRTP (9 ms each;
``sipload.media.srtp`` imports it with the first stream). Each
check runs the path in a fresh interpreter and reads its ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BASIC = REPO / "scenarios" / "basic_call.yaml"

REPORT_ONLY = {"pandas", "matplotlib", "jinja2"}
NOT_IN_A_WORKER = REPORT_ONLY | {"numpy", "jsonschema", "pyarrow", "rich", "scipy",
                                 "cryptography", "multiprocess", "dill", "websockets",
                                 "pylibsrtp"}

WORKER = f"""
import json, sys
from sipload.cluster import child  # the process's entry module
from sipload.cluster.messages import Welcome
from sipload.cluster.worker import WorkerProcess, engine_config
from sipload.engine import Engine

plan = {{"scenario_text": open({str(BASIC)!r}).read(), "scenario_path": {str(BASIC)!r},
        "target": ["127.0.0.1", 5060], "transport": "udp", "rate": 10.0, "calls": 10}}
engine = Engine(engine_config(plan, Welcome(0, plan, 10.0, 10, 0)))
print(json.dumps(sorted(sys.modules)))
"""

RUN_START = f"""
import json, sys, tempfile
from pathlib import Path
from sipload.cli import build_parser
from sipload.cli import run_cmd
from sipload.cluster import run
from sipload.report.thresholds import parse_threshold
from sipload.scenario.loader import load_file
from sipload.stats.rundir import RunWriter

args = build_parser("run").parse_args(["run", {str(BASIC)!r}, "--calls", "10",
                                  "--threshold", "answer.p95<200ms"])
program = load_file(args.scenario)
for t in args.threshold:
    parse_threshold(t, marks=list(program.timer_names))
with tempfile.TemporaryDirectory() as d:
    RunWriter(Path(d))  # pyarrow comes after the workers are spawned (rundir.warm)
print(json.dumps(sorted(sys.modules)))
"""


WHOLE_RUN = f"""
import json, sys, tempfile
from sipload.cli import main
with tempfile.TemporaryDirectory() as d:
    code = main(["run", {str(BASIC)!r}, "--calls", "20", "--rate", "100", "--workers", "1",
                 "--out", d + "/run", "--quiet"])
    assert code == 0, code
print(json.dumps(sorted(sys.modules)))
"""


def imported(code: str) -> set[str]:
    """Top-level packages a fresh interpreter holds after running ``code``."""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return {name.split(".")[0] for name in json.loads(done.stdout.strip().splitlines()[-1])}


@pytest.mark.parametrize(("path", "code", "banned"), [
    ("worker", WORKER, NOT_IN_A_WORKER),
    ("sipload run start-up", RUN_START, REPORT_ONLY | {"numpy", "pyarrow", "websockets",
                                                      "jsonschema", "pylibsrtp"}),
], ids=["worker", "run"])
def test_start_up_imports_nothing_heavy(path: str, code: str, banned: set[str]) -> None:
    got = imported(code)
    assert "sipload" in got  # the probe ran the path
    assert not got & banned, f"the {path} imports {sorted(got & banned)}"


def test_a_whole_run_and_its_report_import_no_pandas() -> None:
    got = imported(WHOLE_RUN)
    assert {"matplotlib", "jinja2", "pyarrow"} <= got  # the probe made the report
    assert "pandas" not in got
    assert "websockets" not in got  # a UDP run: only a ws/wss transport imports it
    assert "jsonschema" not in got  # a valid scenario: only an error message needs it
    assert "rich" not in got  # not on a terminal: only the live panel needs it


def test_sipload_report_imports_no_pandas(tmp_path: Path) -> None:
    """``sipload report DIR`` makes the report as ``sipload run`` does, without pandas."""
    from sipload.report.synthetic import make_run

    run = tmp_path / "run"
    make_run(run, calls=50)
    got = imported("import json, sys\nfrom sipload.cli import main\n"
                   f"assert main(['report', {str(run)!r}, '--quiet']) == 0\n"
                   "print(json.dumps(sorted(sys.modules)))")
    assert (run / "report.html").stat().st_size > 10_000
    assert {"matplotlib", "jinja2", "pyarrow"} <= got
    assert "pandas" not in got


def test_the_probe_sees_a_heavy_import() -> None:
    """The check can fail: pyarrow imports pandas as it converts a column to numpy
    (what the report avoids), and notebooks' frames import it."""
    assert "pandas" in imported("import json, sys\nimport pyarrow as pa\n"
                                "pa.array([1.0]).to_numpy()\n"
                                "print(json.dumps(sorted(sys.modules)))")
    assert "pandas" in imported("import json, sys\nfrom sipload.report import load_run\n"
                                "from sipload.report.synthetic import make_run\n"
                                "import tempfile, pathlib\n"
                                "d = pathlib.Path(tempfile.mkdtemp()) / 'r'\n"
                                "make_run(d, calls=10)\nload_run(d)\n"
                                "print(json.dumps(sorted(sys.modules)))")
