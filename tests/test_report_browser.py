"""report.html in a real browser (headless Chromium): it renders, and text from the wire
holding ``<script>`` shows as text and runs nothing.

Chromium is the Debian package ``chromium`` (``ci/install-browser.sh`` installs it).
Missing, the test skips, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from sipload.report import build_summary, write_report
from sipload.report.synthetic import HOSTILE, make_run

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    message = ("chromium not found: install the Debian package 'chromium' "
               "(apt-get install chromium, or run ci/install-browser.sh)")
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(message + " [CI=true: a missing browser fails instead of skipping]")
    pytest.skip(message)


def run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=90, check=False,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("browser") / "run"
    make_run(path, calls=400, rate=100.0, workers=2, hostile=True,
             failures={"timeout": 0.05, "call_rejected": 0.05})
    build_summary(path, thresholds=["asr>=0.5"])
    return write_report(path)


def test_hostile_text_shows_as_text_and_runs_nothing(report: Path, tmp_path: Path) -> None:
    done = run_chromium(["--dump-dom", report.as_uri()], tmp_path / "profile")
    dom = done.stdout
    assert done.returncode == 0 and "</html>" in dom, done.stderr[-2000:]
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title is not None and title.group(1) == "sipload report: synthetic-call"
    assert "pwned" not in title.group(1)
    assert "<script" not in dom.lower()  # no element was made from the wire's text
    # the payload is there, as text: in the details, call-ids and ladder labels
    escaped = HOSTILE.replace("<", "&lt;").replace(">", "&gt;")
    assert dom.count(escaped) >= 3


def test_screenshot_is_not_blank(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    done = run_chromium([f"--screenshot={shot}", "--window-size=1200,2400", report.as_uri()],
                        tmp_path / "profile")
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    assert shot.stat().st_size > 20_000
    with Image.open(shot) as im:
        assert im.size == (1200, 2400)
        gray = im.convert("L")
        histogram = gray.histogram()
    non_white = sum(histogram[:240])
    assert non_white > 0.02 * 1200 * 2400  # text, cards, charts: not an empty page
    assert sum(histogram[:100]) > 1000  # some dark pixels (text)
