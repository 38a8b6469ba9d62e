"""The mypyc-compiled hot path: CI runs compiled code, and a stale build never runs.

``sipload._native.guard`` decides at import whether the compiled modules may be
used.  These tests run it in child processes over copies of the package, so the
checkout itself is never edited.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sipload
from sipload import _native

ROOT = Path(sipload.__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
PROBE = (
    "import sipload._native as n, sipload.sip.parser as p, sipload.ua.agent as a;"
    "print(n.compiled(), p.__file__.endswith('.py'), a.__file__.endswith('.py'));"
    "print(n.describe())"
)


def probe(root: Path, **env: str) -> list[str]:
    environment = {k: v for k, v in os.environ.items() if k != "SIPLOAD_PURE"}
    environment.update(env, PYTHONPATH=str(root))
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [*out.stdout.splitlines(), out.stderr]


def copy_checkout(dest: Path) -> Path:
    """The package, its compiled files and mypyc's group library, in ``dest``."""
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "sipload", dest / "sipload", ignore=skip)
    for lib in ROOT.glob(f"{_native.GROUP}__mypyc*"):
        shutil.copy2(lib, dest / lib.name)
    return dest


def is_compiled_checkout() -> bool:
    return (ROOT / "sipload" / _native.MANIFEST).is_file()


def test_ci_runs_the_compiled_hot_path() -> None:
    """CI installs with SIPLOAD_COMPILE=require: the suite must test compiled code."""
    if not IN_CI and not is_compiled_checkout():
        pytest.skip("pure Python checkout (CI compiles; `python hatch_build.py` here)")
    assert _native.compiled(), _native.describe()
    for module in _native.COMPILED:
        __import__(module)
        assert not sys.modules[module].__file__.endswith(".py"), module  # type: ignore[union-attr]


def test_every_compiled_module_exists_and_is_typed_python() -> None:
    for module in _native.COMPILED:
        assert _native.source_path(ROOT, module).is_file(), module
    assert len(set(_native.COMPILED)) == len(_native.COMPILED)


def test_stale_modules_compares_hashes(tmp_path: Path) -> None:
    (tmp_path / "sipload" / "sip").mkdir(parents=True)
    for module in _native.COMPILED:
        path = _native.source_path(tmp_path, module)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {module}\n")
    manifest: dict[str, object] = {"mode": "inplace", "sources": _native.source_hashes(tmp_path)}
    assert _native.stale_modules(tmp_path, manifest) == []
    _native.source_path(tmp_path, "sipload.sip.parser").write_text("# edited\n")
    assert _native.stale_modules(tmp_path, manifest) == ["sipload.sip.parser"]
    _native.source_path(tmp_path, "sipload.pacing").unlink()
    assert _native.stale_modules(tmp_path, manifest) == ["sipload.sip.parser", "sipload.pacing"]
    assert _native.stale_modules(tmp_path, {"mode": "inplace"}) == list(_native.COMPILED)


def test_source_finder_serves_only_compiled_modules() -> None:
    finder = _native.SourceFinder(ROOT)
    spec = finder.find_spec("sipload.sip.parser", None)
    assert spec is not None and spec.origin is not None
    assert spec.origin.endswith(os.path.join("sipload", "sip", "parser.py"))
    assert finder.find_spec("sipload.sip.errors", None) is None
    assert finder.find_spec("json", None) is None


def test_pure_on_request(tmp_path: Path) -> None:
    root = copy_checkout(tmp_path)
    lines = probe(root, SIPLOAD_PURE="1")
    assert lines[0] == "False True True"
    assert "SIPLOAD_PURE" in lines[1]


def test_a_checkout_without_manifest_runs_its_sources(tmp_path: Path) -> None:
    """Compiled files with no build record (copied, left over) are not trusted."""
    root = copy_checkout(tmp_path)
    (root / "sipload" / _native.MANIFEST).unlink(missing_ok=True)
    lines = probe(root)
    assert lines[0] == "False True True"


def test_an_edited_source_falls_back_to_pure_python(tmp_path: Path) -> None:
    if not is_compiled_checkout():
        if IN_CI:
            pytest.fail("CI must test a compiled checkout")
        pytest.skip("pure Python checkout: nothing compiled to go stale")
    root = copy_checkout(tmp_path)
    assert probe(root)[0] == "True False False"
    pacing = root / "sipload" / "pacing.py"
    pacing.write_text(pacing.read_text() + "\n# edited after the build\n")
    lines = probe(root)
    # every compiled module goes back to source, not only the edited one
    assert lines[0] == "False True True"
    assert "sipload.pacing" in lines[1]
    assert "older than their sources" in lines[2]


def test_manifest_records_the_build() -> None:
    if not is_compiled_checkout():
        pytest.skip("pure Python checkout")
    manifest = json.loads((ROOT / "sipload" / _native.MANIFEST).read_text())
    assert manifest["mode"] == "inplace"
    assert set(manifest["sources"]) == set(_native.COMPILED)
    assert _native.stale_modules(ROOT, manifest) == []


@pytest.mark.timeout(900)  # a whole mypyc build: ~3 min quiet, over 5 on a loaded host
def test_wheel_carries_the_compiled_modules(tmp_path: Path) -> None:
    """``pip wheel .`` compiles (SIPLOAD_COMPILE=require) and packs what it built."""
    import zipfile

    env = dict(os.environ, SIPLOAD_COMPILE="require")
    env.pop("SIPLOAD_PURE", None)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "w"), "."],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=900,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "w").glob("sipload-*.whl")
    assert not wheel.name.endswith("-none-any.whl"), wheel.name  # a platform wheel
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "site")
    for module in _native.COMPILED:
        stem = module.replace(".", "/")
        assert any(n.startswith(stem + ".") and n.endswith(".so") for n in names), module
        assert stem + ".py" in names, module
    assert any(n.startswith(f"{_native.GROUP}__mypyc") for n in names)
    assert "sipload/conformance/scenarios/README.md" in names or any(
        n.startswith("sipload/conformance/scenarios/") for n in names
    )
    assert len(names) == len(set(names)), "a file is packed twice"
    manifest = json.loads((tmp_path / "site" / "sipload" / _native.MANIFEST).read_text())
    assert manifest["mode"] == "wheel"
    # installed wheels are not checked for edits: pip may write a .py after its .so
    assert probe(tmp_path / "site")[0] == "True False False"
