"""Which modules are compiled to C with mypyc, and the guard against running a stale build.

The hot path (parser, transactions, dialogs, the UA's dispatch, the scenario steps
and the engine that drives them) is plain typed Python that mypyc compiles at
install time when a C compiler is there (see ``hatch_build.py``).  The same source
runs uncompiled where none is, so compiling is an optimisation, never a
requirement.

In an editable install the compiled modules sit beside their sources.  When a
source changes after the build, its compiled twin would silently run the old
code, so :func:`guard` (called by ``sipload/__init__.py`` before anything else is
imported) compares each source with the hash recorded at build time and, on any
difference, loads *every* compiled module from source: compiled modules call each
other directly in C, so half a build cannot be trusted.  ``SIPLOAD_PURE=1`` asks
for the same on purpose (readable tracebacks, debugging).

This module imports nothing from sipload and runs at import time: keep it small.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

#: Modules compiled by mypyc, as dotted names.  ``sipload.sip.errors`` and
#: ``sipload.sip.digest`` stay Python: mypyc cannot build their exception classes'
#: signatures, and neither is on the per-call path.  SRTP (``sipload.media.srtp``,
#: ``sdes``, ``srtpecho``) stays Python too: its per-packet cost is libsrtp's, behind
#: pylibsrtp's cffi calls; the compiled ``media.call`` and ``media.schedule`` call it.
COMPILED: tuple[str, ...] = (
    "sipload.sip.build",
    "sipload.sip.checks",
    "sipload.sip.dialog",
    "sipload.sip.grammar",
    "sipload.sip.headers",
    "sipload.sip.message",
    "sipload.sip.parser",
    "sipload.sip.peek",
    "sipload.sip.sdp",
    "sipload.sip.timerheap",
    "sipload.sip.transaction",
    "sipload.sip.txtables",
    "sipload.sip.uri",
    "sipload.ua.agent",
    "sipload.ua.auth",
    "sipload.ua.callstate",
    "sipload.ua.config",
    "sipload.ua.core",
    "sipload.ua.eventmap",
    "sipload.ua.failover",
    "sipload.ua.events",
    "sipload.ua.ids",
    "sipload.ua.outbound",
    "sipload.ua.registration",
    "sipload.ua.responder",
    "sipload.ua.retransmit",
    "sipload.ua.routing",
    "sipload.ua.session_timer",
    "sipload.ua.state",
    "sipload.ua.uac",
    "sipload.ua.uas",
    "sipload.scenario.calls",
    "sipload.scenario.instances",
    "sipload.scenario.interpreter",
    "sipload.scenario.matching",
    "sipload.scenario.messages",
    "sipload.scenario.model",
    "sipload.scenario.sending",
    "sipload.engine.config",
    "sipload.engine.media",
    "sipload.engine.output",
    "sipload.engine.roles",
    "sipload.engine.running",
    "sipload.engine.shell",
    "sipload.engine.sockets",
    "sipload.engine.starts",
    "sipload.engine.stopping",
    "sipload.engine.wiretrace",
    "sipload.pacing",
    "sipload.pump",
    "sipload.stats.histograms",
    "sipload.stats.interval",
    "sipload.stats.recordrows",
    "sipload.stats.records",
    "sipload.stats.traces",
    "sipload.transport.hrtimer",
    "sipload.transport.loop",
    "sipload.transport.udp",
    "sipload.transport.udproutes",
    "sipload.media.call",
    "sipload.media.dtmf",
    "sipload.media.emodel",
    "sipload.media.receive",
    "sipload.media.rtcp",
    "sipload.media.rtp",
    "sipload.media.schedule",
    "sipload.media.table",
)

#: Hand-written C extensions built with the compiled modules: (module, source file).
#: Each has a pure-Python twin selected automatically when it is missing (a pure
#: build) and checks its own API version, so a stale build is never used.
C_EXTENSIONS: tuple[tuple[str, str], ...] = (
    ("sipload.transport._mmsg", "sipload/transport/_mmsg.c"),
    ("sipload.sip._peek", "sipload/sip/_peek.c"),
)

#: The C extension that holds the code of every compiled module (mypyc's group).
GROUP = "sipload"
#: Written by the build next to this file: how the build was made and, for an
#: in-place (editable) build, the hash of every source it compiled.
MANIFEST = "_native_manifest.json"

_state: dict[str, str] = {"mode": "pure", "why": "not compiled"}


def source_path(root: Path, module: str) -> Path:
    """The ``.py`` file of ``module`` under the directory that holds ``sipload/``."""
    return root.joinpath(*module.split(".")).with_suffix(".py")


def source_hashes(root: Path, modules: Sequence[str] = COMPILED) -> dict[str, str]:
    """SHA-256 of each module's source, keyed by dotted name."""
    return {
        m: hashlib.sha256(source_path(root, m).read_bytes()).hexdigest() for m in modules
    }


def stale_modules(root: Path, manifest: dict[str, object]) -> list[str]:
    """Compiled modules whose source differs from what the in-place build compiled."""
    recorded = manifest.get("sources")
    if not isinstance(recorded, dict):
        return list(COMPILED)
    out = []
    for module in COMPILED:
        try:
            digest = hashlib.sha256(source_path(root, module).read_bytes()).hexdigest()
        except OSError:
            digest = ""
        if recorded.get(module) != digest:
            out.append(module)
    return out


class SourceFinder(importlib.abc.MetaPathFinder):
    """Loads the compiled modules from their ``.py`` sources instead."""

    def __init__(self, root: Path, modules: Sequence[str] = COMPILED) -> None:
        self.root = root
        self.modules = frozenset(modules)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.modules:
            return None
        file = source_path(self.root, fullname)
        if not file.is_file():
            return None
        return importlib.util.spec_from_file_location(fullname, file)


def _use_source(root: Path, why: str) -> None:
    if not any(isinstance(f, SourceFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, SourceFinder(root))
    _state.update(mode="pure", why=why)


def guard(package_dir: Path) -> None:
    """Decide, once per process, whether the compiled modules may be imported."""
    root = package_dir.parent
    if os.environ.get("SIPLOAD_PURE", "") not in ("", "0"):
        _use_source(root, "SIPLOAD_PURE is set")
        return
    try:
        manifest = json.loads((package_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        # No build of ours: any compiled file lying about is not to be trusted.
        _use_source(root, "not compiled")
        return
    if not isinstance(manifest, dict):
        _use_source(root, "unreadable build manifest")
        return
    if manifest.get("mode") == "inplace":
        stale = stale_modules(root, manifest)
        if stale:
            _use_source(root, f"sources changed since the build ({', '.join(stale[:3])} ...)")
            print(
                "sipload: compiled modules are older than their sources; running pure "
                "Python (recompile with `python hatch_build.py`)",
                file=sys.stderr,
            )
            return
    _state.update(mode="compiled", why=f"mypyc {manifest.get('mypy', '?')}")


def compiled() -> bool:
    """True when the hot path actually runs as compiled code in this process."""
    parser = importlib.import_module("sipload.sip.parser")
    return not (parser.__file__ or "").endswith(".py")


def describe() -> str:
    """One line for ``--version``, benchmarks and run summaries."""
    if compiled():
        return f"compiled ({_state['why']})"
    return f"pure Python ({_state['why']})"
