"""Library scenarios against real SIPp on 127.0.0.1, through the asyncio engine.

sipload places calls against ``sipp -sn uas`` and against SIPp XML peers in
``tests/sipp/``; SIPp's built-in uac calls ``sipload uas``.  SIPp's own
built-in scenarios, imported at test time, run against SIPp too.  In CI
(``CI=true``) a missing sipp fails these tests instead of skipping them.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sipload.engine import Engine, EngineConfig
from sipload.scenario.loader import load_file, load_text
from sipload.scenario.model import Program
from sipload.scenario.sipp_import import import_sipp
from tests.peers import REPO_ROOT, free_port, require, sipp_uac, sipp_uas

pytestmark = pytest.mark.peer
SCENARIOS = REPO_ROOT / "scenarios"


def _place_calls(program: Program, port: int, calls: int = 3,
                 rate: float = 20.0) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    engine = Engine(EngineConfig(program=program, target=("127.0.0.1", port), calls=calls,
                                 rate=rate, local_port=0, seed=1),
                    on_records=records.extend)
    asyncio.run(asyncio.wait_for(engine.run(), 90))
    return records


def _assert_success(records: list[dict[str, Any]], calls: int, why: str) -> None:
    assert len(records) == calls, why
    bad = [(r["failure"], r["detail"], r["step"]) for r in records if r["result"] != "success"]
    assert not bad, f"{bad}\n{why}"


def _builtin(name: str) -> bytes:
    r = subprocess.run([require("sipp"), "-sd", name], capture_output=True, timeout=30,
                       check=False)
    assert r.returncode in (0, 99), r.stderr  # sipp -sd exits 99 after dumping
    assert b"<scenario" in r.stdout
    return r.stdout


@pytest.mark.parametrize(("scenario", "peer"), [
    ("basic_call.yaml", None),
    ("info_dtmf.yaml", "uas_info.xml"),
    ("busy.yaml", "uas_busy.xml"),
    ("cancel_ringing.yaml", "uas_ring_cancel.xml"),
    ("no_answer.yaml", "uas_ring_cancel.xml"),
    ("reinvite_hold.yaml", "uas_reinvite.xml"),
    ("update.yaml", "uas_update.xml"),
    ("private_command.yaml", "uas_private.xml"),
    ("options_ping.yaml", "uas_options.xml"),
    ("message.yaml", "uas_message.xml"),
])
def test_library_scenario_against_sipp(scenario: str, peer: str | None) -> None:
    require("sipp")
    port = free_port("udp")
    with sipp_uas(port, scenario_file=peer, trace_msg=True, limit=120) as uas:
        records = _place_calls(load_file(SCENARIOS / scenario), port)
        _assert_success(records, 3, uas.describe() + uas.errors)


def test_refer_against_sipp() -> None:
    """scenarios/refer.yaml (the transferor) against SIPp as the transferee: SIPp checks
    the REFER's Refer-To and that each NOTIFY got its 200; sipload checks the 202 and the
    two NOTIFYs' sipfrag bodies, Event and Subscription-State.  Both sides must succeed
    for every call (SIPp exits 0 after its 3 calls only if all of them passed)."""
    require("sipp")
    port = free_port("udp")
    with sipp_uas(port, scenario_file="uas_refer.xml", extra_args=["-m", "3"],
                  trace_msg=True, limit=120) as uas:
        records = _place_calls(load_file(SCENARIOS / "refer.yaml"), port)
        sipp_code = uas.wait(60)
        why = uas.describe() + uas.errors + uas.messages
    _assert_success(records, 3, why)
    assert sipp_code == 0, why
    assert all(r["marks"].get("refer", -1.0) >= 0.0 for r in records), records
    assert "REFER sip:sipp@" in uas.messages and "SIP/2.0 202 Accepted" in uas.messages


@pytest.mark.parametrize("name", ["uac", "regexp"])
def test_imported_sipp_uac_against_sipp_uas(name: str) -> None:
    require("sipp")
    program = load_text(import_sipp(_builtin(name), f"{name}.xml").yaml, f"{name}.yaml")
    port = free_port("udp")
    with sipp_uas(port, trace_msg=True, limit=120) as uas:
        records = _place_calls(program, port)
        _assert_success(records, 3, uas.describe())
    assert all("rtd1" in r["marks"] for r in records)


def _sipload_uas(scenario: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipload", "uas", str(scenario), "--listen", f"127.0.0.1:{port}",
         *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening on" in line, line + proc.stderr.read() if proc.stderr else line
    return proc


def _stop(proc: subprocess.Popen[str], wait: bool = False) -> str:
    if not wait:
        proc.terminate()
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return out + err


@pytest.mark.parametrize("uas", ["basic_call_uas.yaml", "imported-sipp-uas"])
def test_sipp_uac_against_sipload_uas(uas: str, tmp_path: Path) -> None:
    require("sipp")
    imported = uas == "imported-sipp-uas"
    if imported:  # it keeps each call 4 s after the BYE: let it run out on its own
        scenario = tmp_path / "uas.yaml"
        scenario.write_text(import_sipp(_builtin("uas"), "uas.xml").yaml)
    else:
        scenario = SCENARIOS / uas
    port = free_port("udp")
    proc = _sipload_uas(scenario, port, *(["--duration", "6s"] if imported else []))
    try:
        with sipp_uac(f"127.0.0.1:{port}", calls=5, rate=20, trace_msg=True) as uac:
            code = uac.wait(60)
            why = uac.describe() + uac.errors
    finally:
        out = _stop(proc, wait=imported)
    assert code == 0, why + out
    assert "5 calls, 5 succeeded" in out, out


def test_sipload_run_cli_against_sipp_uas(tmp_path: Path) -> None:
    require("sipp")
    port = free_port("udp")
    with sipp_uas(port, limit=120) as uas:
        r = subprocess.run(
            [sys.executable, "-m", "sipload", "run", str(SCENARIOS / "basic_call.yaml"),
             "--target", f"127.0.0.1:{port}", "--calls", "5", "--rate", "20", "--workers", "1",
             "--out", str(tmp_path / "run"), "--quiet"],
            capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, check=False)
        why = r.stdout + r.stderr + uas.describe()
    assert r.returncode == 0, why
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["calls"]["succeeded"] == 5, summary["calls"]
