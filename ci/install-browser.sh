#!/bin/sh
# Install a headless browser (Debian package chromium) for the report tests, if missing.
#
# Idempotent and quiet on success: does nothing when chromium is on PATH; otherwise, as
# root with apt-get, installs the Debian package chromium. Without root or apt-get it
# prints what to install and exits 0: the browser test then fails under CI=true and skips
# elsewhere (see tests/test_report_browser.py).
set -eu

for binary in chromium chromium-browser; do
    if command -v "$binary" >/dev/null 2>&1; then
        exit 0
    fi
done

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    log=$(mktemp)
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
            chromium; } >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "install-browser: apt-get failed installing chromium" >&2
        exit 1
    fi
    rm -f "$log"
    exit 0
fi

echo "install-browser: chromium is missing; install the Debian package:" >&2
echo "install-browser:   sudo apt-get install -y chromium" >&2
exit 0
