#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs sipload with its test
# extras, the real SIP peers (SIPp, Kamailio, sipsak) where it can, then runs
# ruff, mypy and pytest.  In CI (CI=true) a missing peer fails its tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install -q --disable-pip-version-check -e '.[test,fast]' 2>&1 | grep -v -E "^(WARNING|\[notice\])" || true
bash ci/install-peers.sh || echo "warning: could not install SIP peers; peer tests will fail in CI"
bash ci/install-browser.sh || echo "warning: could not install chromium; browser tests will fail in CI"
"$PY" -m ruff check sipload tests bench
"$PY" -m mypy
"$PY" -m pytest -q "$@"
