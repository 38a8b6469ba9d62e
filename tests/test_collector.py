"""The coordinator's garbage collection (sipload.cluster.collector) and the program's
quick exit (sipload.cli.program): paused stretches nest and restore what they found,
the run inside them collects, a forked child collects as a new interpreter would and
finds the parent's objects frozen; ``python -m sipload report`` still prints all it
printed and exits with its code when it skips the interpreter's teardown."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sipload.cluster import collector
from sipload.report.synthetic import make_run

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def gc_state() -> Iterator[None]:
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_paused_nests_and_restores(gc_state: None) -> None:
    gc.enable()
    with collector.paused():
        assert not gc.isenabled()
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # only the outermost one restores
        with collector.collecting():
            assert gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_paused_keeps_collection_off_when_it_was(gc_state: None) -> None:
    gc.disable()
    with collector.paused(), collector.collecting():
        assert not gc.isenabled()  # as before the pause: off
    assert not gc.isenabled()


def test_paused_restores_after_an_error(gc_state: None) -> None:
    gc.enable()
    with pytest.raises(RuntimeError), collector.paused():
        raise RuntimeError("x")
    assert gc.isenabled()


def test_collecting_outside_a_pause_changes_nothing(gc_state: None) -> None:
    gc.disable()
    with collector.collecting():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_forked_child_collects_with_the_parent_frozen(gc_state: None) -> None:
    reader, writer = os.pipe()
    with collector.paused():
        pid = collector.fork_frozen()
        if pid == 0:  # the child: report and leave at once
            os.close(reader)
            os.write(writer, f"{int(gc.isenabled())} {gc.get_freeze_count()}".encode())
            os._exit(0)
        os.close(writer)
        assert gc.get_freeze_count() == 0  # the parent's objects collect as before
        assert not gc.isenabled()
    with os.fdopen(reader) as f:
        enabled, frozen = f.read().split()
    os.waitpid(pid, 0)
    assert enabled == "1"
    assert int(frozen) > 1000


def test_quick_exit_prints_everything_and_keeps_the_code(tmp_path: Path) -> None:
    run = tmp_path / "run"
    make_run(run, calls=200, rate=50.0, workers=1, failures={"timeout": 0.05})
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "sipload", "report", str(run)],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 1, out.stderr  # the failed calls fail the run
    lines = out.stdout.splitlines()  # a pipe: block-buffered until the exit flushes it
    assert lines[0].startswith("200 calls attempted")
    assert lines[-1].startswith("FAIL run:")
    assert (run / "report.html").read_text().rstrip().endswith("</html>")
    assert (run / "junit.xml").stat().st_size > 0


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("collector") / "run"
    make_run(run, calls=200, rate=50.0, workers=1)
    return run


def _watch_summary(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether automatic collection was on each time the summary was built: the
    analysis decodes each snapshot's histograms, every one a reference cycle of
    hdrh's holding ~190 KB (a 300,000-call report reached 1.8 GB instead of 0.5 GB
    with collection off)."""
    import sipload.report.summary as summary

    seen: list[bool] = []
    build = summary.build_summary

    def watched(*args: Any, **kwargs: Any) -> dict[str, Any]:
        seen.append(gc.isenabled())
        return build(*args, **kwargs)

    monkeypatch.setattr(summary, "build_summary", watched)
    return seen


def test_sipload_report_analyses_with_collection_on(
        synthetic: Path, monkeypatch: pytest.MonkeyPatch, gc_state: None) -> None:
    from sipload.cli import main

    seen = _watch_summary(monkeypatch)
    gc.enable()
    with collector.paused():  # as sipload.cli.program runs it
        assert main(["report", str(synthetic), "--quiet"]) == 0
    assert seen == [True]


def test_sipload_run_finishes_with_collection_on(
        synthetic: Path, monkeypatch: pytest.MonkeyPatch, gc_state: None) -> None:
    from sipload.cli import run_cmd

    seen = _watch_summary(monkeypatch)
    gc.enable()
    with collector.paused():
        assert run_cmd.finish(synthetic, {}, "", quiet=True) == 0
    assert seen == [True]


def test_collecting_freezes_what_the_pause_made(gc_state: None) -> None:
    gc.enable()
    before = gc.get_freeze_count()
    with collector.paused():
        kept = [[i] for i in range(1000)]  # tracked objects made while paused
        with collector.collecting():
            assert gc.get_freeze_count() >= before + len(kept)
        assert gc.get_freeze_count() >= before + len(kept)
    assert gc.get_freeze_count() == 0  # the outermost pause unfreezes
