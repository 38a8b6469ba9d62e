#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs sipload with its test
# extras, the real SIP peers (SIPp, Kamailio, sipsak) where it can, then runs
# ruff, mypy and pytest.  In CI (CI=true) a missing peer fails its tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# The hot path is compiled with mypyc at install (hatch_build.py).  In CI the
# build must succeed, so that the suite tests the compiled code users run.
if [ "${CI:-}" = "true" ]; then export SIPLOAD_COMPILE=${SIPLOAD_COMPILE:-require}; fi
"$PY" -m pip install -q --disable-pip-version-check -e '.[test,fast]' 2>&1 \
    | { grep -v -E "^(WARNING|\[notice\])" || true; }
bash ci/install-peers.sh || echo "warning: could not install SIP peers; peer tests will fail in CI"
bash ci/install-browser.sh || echo "warning: could not install chromium; browser tests will fail in CI"
"$PY" -m ruff check sipload tests bench hatch_build.py
"$PY" -m mypy
"$PY" -m pytest -q "$@"
# The same core, uncompiled: what a machine without a C compiler runs.
SIPLOAD_PURE=1 "$PY" -m pytest -q tests/test_parser.py tests/test_transaction.py \
    tests/test_dialog.py tests/test_ua.py tests/test_ua_fuzz.py tests/test_scenario_run.py
# The container image is its own CI job (ci/container-smoke.sh, about 5-15 minutes on
# 2 cores, most of it the mypyc compile inside the build): see README's
# "Running across machines".  It is not part of this command, which stays within the
# suite's time budget and needs no image registry or mirror.
