"""The one error a scenario (or a file it names) can raise when loaded.

Defined apart from the loader so that the CSV injection reader and the SIPp
importer can raise it without importing the loader; the loader re-exports it.
"""

from __future__ import annotations

from sipload.scenario.yamlsource import SourceError


class ScenarioError(SourceError):
    """A scenario that cannot be run, with where the problem is (1-based line, column)."""
