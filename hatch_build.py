"""Build hook: compiles sipload's hot path to C with mypyc when it can.

Which modules are compiled is decided in ``sipload/_native.py`` (``COMPILED``, and
the small C helpers in ``C_EXTENSIONS``, built in the same step).
``SIPLOAD_COMPILE`` chooses what happens when building or installing:

* ``auto`` (the default): compile when mypyc and a C compiler work, otherwise warn
  and install pure Python, which behaves the same, only slower;
* ``1`` / ``require``: compile or fail the build (the project's CI uses this, so
  that its tests really run the compiled code);
* ``0`` / ``no``: do not compile.

A wheel gets the extensions packed beside the sources and a platform tag.  An
editable install (``pip install -e .``) compiles in place, next to the sources,
and records each source's hash so that ``sipload._native.guard`` falls back to the
sources as soon as one of them is edited.  ``python hatch_build.py`` recompiles an
editable checkout in place without reinstalling.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent


def _native() -> ModuleType:
    """``sipload/_native.py`` on its own (importing ``sipload`` would run its guard)."""
    spec = importlib.util.spec_from_file_location("_sipload_native", ROOT / "sipload/_native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mypy_version() -> str:
    from mypy.version import __version__

    return str(__version__)


def compile_native(*, inplace: bool, build_lib: Path, build_temp: Path) -> None:
    """Run mypyc and the C compiler in a child process (setuptools keeps global state)."""
    command = [sys.executable, str(ROOT / "hatch_build.py"), "--child"]
    command += ["--build-temp", str(build_temp)]
    command += ["--inplace"] if inplace else ["--build-lib", str(build_lib)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise RuntimeError(f"mypyc build failed:\n{tail}")


def write_manifest(package_dir: Path, *, inplace: bool) -> Path:
    native = _native()
    manifest: dict[str, Any] = {"mode": "inplace" if inplace else "wheel", "mypy": _mypy_version()}
    if inplace:
        manifest["sources"] = native.source_hashes(ROOT)
    path = package_dir / native.MANIFEST
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return path


def build_inplace() -> None:
    """Compile next to the sources (an editable checkout)."""
    manifest = ROOT / "sipload" / _native().MANIFEST
    manifest.unlink(missing_ok=True)  # until the new build is whole, run the sources
    with tempfile.TemporaryDirectory(prefix="sipload-mypyc-") as tmp:
        compile_native(inplace=True, build_lib=ROOT, build_temp=Path(tmp))
    write_manifest(ROOT / "sipload", inplace=True)


def _compile_mode() -> str:
    value = os.environ.get("SIPLOAD_COMPILE", "auto").strip().lower()
    if value in ("0", "no", "false", "off"):
        return "off"
    if value in ("1", "yes", "true", "on", "require", "required"):
        return "require"
    return "auto"


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script outside a build environment
    BuildHookInterface = object  # type: ignore[assignment,misc]


class MypycBuildHook(BuildHookInterface):  # type: ignore[misc,valid-type]
    """Hatchling's custom build hook (``[tool.hatch.build.hooks.custom]``)."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        self._tmp: str | None = None
        if self.target_name != "wheel":
            return
        mode = _compile_mode()
        if mode == "off":
            (ROOT / "sipload" / _native().MANIFEST).unlink(missing_ok=True)
            return
        try:
            if version == "editable":
                build_inplace()
            else:
                self._build_for_wheel(build_data)
        except Exception as exc:
            if mode == "require":
                raise
            self.app.display_warning(
                f"sipload: installing pure Python, the compiled hot path could not be built "
                f"({exc}). Set SIPLOAD_COMPILE=require to make this an error."
            )

    def _build_for_wheel(self, build_data: dict[str, Any]) -> None:
        self._tmp = tempfile.mkdtemp(prefix="sipload-mypyc-")
        lib = Path(self._tmp) / "lib"
        compile_native(inplace=False, build_lib=lib, build_temp=Path(self._tmp) / "temp")
        (lib / "sipload").mkdir(parents=True, exist_ok=True)
        manifest = write_manifest(lib / "sipload", inplace=False)
        for path in sorted(lib.rglob("*")):
            if path.is_file() and (path.suffix in (".so", ".pyd") or path.name == manifest.name):
                build_data["force_include"][str(path)] = path.relative_to(lib).as_posix()
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


def _setuptools_build(argv: list[str]) -> None:
    """The child process: mypyc generates C, setuptools compiles and links it."""
    import argparse

    from mypyc.build import mypycify
    from setuptools import Extension, setup

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--inplace", action="store_true")
    parser.add_argument("--build-lib", type=Path)
    parser.add_argument("--build-temp", type=Path, default=None)
    args = parser.parse_args(argv)
    native = _native()
    os.chdir(ROOT)
    paths = [native.source_path(Path("."), m).as_posix() for m in native.COMPILED]
    temp = args.build_temp or Path(tempfile.mkdtemp(prefix="sipload-mypyc-"))
    extensions = mypycify(
        paths, opt_level="3", group_name=native.GROUP, target_dir=str(temp / "c")
    )
    # The C helpers (plain CPython extensions, no mypyc): sendmmsg/recvmmsg batches.
    if sys.platform.startswith("linux"):  # sendmmsg/recvmmsg are Linux's
        extensions += [
            Extension(name, [source], extra_compile_args=["-O2"])
            for name, source in native.C_EXTENSIONS
        ]
    script = ["build_ext", "--build-temp", str(temp / "obj")]
    script += ["--build-lib", str(args.build_lib or temp / "lib")]
    script += ["--inplace"] if args.inplace else []
    setup(
        name="sipload-native",
        packages=[],
        py_modules=[],
        ext_modules=extensions,
        script_args=script,
    )


if __name__ == "__main__":
    if "--child" in sys.argv:
        _setuptools_build(sys.argv[1:])
    else:
        build_inplace()
        print(f"sipload: compiled {len(_native().COMPILED)} modules in place")
