#!/usr/bin/env bash
# Build sipload's container image (Containerfile) and smoke-test every role in it.
#
# No image registry and no container runtime are needed: a Debian base with python3 is
# made with mmdebstrap (or pass one: SIPLOAD_BASE=IMAGE), the image is built with
# `buildah bud --isolation chroot`, and each role runs with `buildah run --isolation
# chroot`, which shares the host's network, so the roles talk over loopback:
#   1. the image: entrypoint sipload, non-root user, no key or CA left in it;
#   2. `sipload --version` reports the compiled build (mypyc);
#   3. `sipload run` against the embedded UAS ends in a report;
#   4. the split deployment: `sipload keys` into a folder, `sipload uas` as the target,
#      a coordinator with --local-workers 0 and CurveZMQ keys, and `sipload worker`
#      connecting to it, each its own process from the same image: every call answered.
# It prints the image's size and how long the build took.
#
# Needs root (buildah, mmdebstrap); installs buildah, podman and mmdebstrap with apt-get
# when they are missing.  Where they cannot be installed it says so and exits 0, except
# under CI=true, where that is a failure.  About 4-5 minutes on 2 cores (the build
# compiles the hot path); ci/test.sh runs it under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${SIPLOAD_IMAGE:-localhost/sipload:smoke}

skip() {
    echo "container-smoke: $*" >&2
    if [ "${CI:-}" = "true" ]; then exit 1; fi
    echo "container-smoke: skipped (CI=true makes this a failure)" >&2
    exit 0
}

need=""
command -v buildah >/dev/null 2>&1 || need="$need buildah"
if [ -z "${SIPLOAD_BASE:-}" ]; then
    command -v mmdebstrap >/dev/null 2>&1 || need="$need mmdebstrap"
    command -v podman >/dev/null 2>&1 || need="$need podman"
fi
if [ -n "$need" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log=$(mktemp)
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                --no-install-recommends $need; } >"$log" 2>&1; then
            cat "$log" >&2
            rm -f "$log"
            skip "apt-get could not install:$need"
        fi
        rm -f "$log"
    else
        skip "missing:$need (install them as root: apt-get install$need)"
    fi
fi
[ "$(id -u)" = 0 ] || skip "buildah --isolation chroot needs root here"

work=$(mktemp -d /tmp/sipload-smoke.XXXXXX)
ctr=""
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

base=${SIPLOAD_BASE:-}
if [ -z "$base" ]; then
    base=localhost/sipload-base:bookworm
    if ! podman image exists "$base" 2>/dev/null; then
        echo "container-smoke: a Debian bookworm base with python3 (mmdebstrap)"
        mmdebstrap --quiet --variant=minbase --include=python3,python3-venv bookworm \
            "$work/rootfs.tar"
        podman import --quiet "$work/rootfs.tar" "$base" >/dev/null
        rm -f "$work/rootfs.tar"
    fi
fi

# pip in the build reaches PyPI; hand it this machine's CA bundle (a TLS-intercepting
# proxy's root may be in it).  A build secret: it is not kept in the image.
secret=()
ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
[ -s "$ca" ] && secret=(--secret "id=pipca,src=$ca")

echo "container-smoke: building $IMAGE on $base"
t_build=$(date +%s)
[ "${SIPLOAD_SMOKE_REUSE:-}" = 1 ] && buildah inspect --type image "$IMAGE" >/dev/null 2>&1 \
    && echo "container-smoke: SIPLOAD_SMOKE_REUSE=1: testing the $IMAGE built before" \
    || buildah bud --quiet --isolation chroot --layers=false "${secret[@]}" \
    --build-arg "BASE=$base" -f Containerfile -t "$IMAGE" . >"$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log" >&2; echo "container-smoke: build failed" >&2; exit 1; }
build_s=$(( $(date +%s) - t_build ))

fail() { echo "container-smoke: FAIL: $*" >&2; exit 1; }

# 1. the image's configuration
entry=$(buildah inspect --type image --format '{{.OCIv1.Config.Entrypoint}}' "$IMAGE")
user=$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$IMAGE")
[ "$entry" = '[sipload]' ] || fail "entrypoint is $entry"
case "$user" in ""|0|0:*|root|root:*) fail "the image runs as root ($user)";; esac

ctr=$(buildah from --quiet "$IMAGE")
run() { buildah run --isolation chroot "$ctr" -- "$@"; }
[ "$(run id -u)" != 0 ] || fail "processes in the image run as root"
left=$(run sh -c 'find / -xdev \( -name "*.key_secret" -o -path /run/secrets/pipca \) \
    2>/dev/null; ls -A /keys' || true)
[ -z "$left" ] || fail "keys or the build's CA left in the image: $left"

# 2. the compiled hot path
version=$(run sipload --version)
echo "container-smoke: $version"
case "$version" in *compiled*) ;; *) fail "not the compiled build: $version";; esac

# 3. a short run against the embedded UAS ends in a report
run sipload run scenarios/basic_call.yaml --calls 40 --rate 40 --workers 2 --quiet \
    --out /runs/embedded >"$work/embedded.txt" 2>&1 || { cat "$work/embedded.txt"; fail "run"; }
all_answered() {  # the run directory's summary: every one of $2 calls answered
    run python3 -c 'import json, sys
c = json.load(open(sys.argv[1] + "/summary.json"))["calls"]
sys.exit(not (c["attempted"] == c["succeeded"] == int(sys.argv[2])))' "$1" "$2"
}
all_answered /runs/embedded 40 || { cat "$work/embedded.txt"; \
    fail "the embedded run did not answer every call"; }
run test -s /runs/embedded/report.html || fail "no report.html"
run test -s /runs/embedded/summary.json || fail "no summary.json"

# 4. the roles of a cluster deployment, each from the image: keys, UAS, coordinator, worker
ports=$(python3 -c 'import socket
s, t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket()
s.bind(("127.0.0.1", 0)); t.bind(("127.0.0.1", 0))
print(s.getsockname()[1], t.getsockname()[1])')
read -r sip_port control_port <<<"$ports"
run sipload keys keys --if-missing >/dev/null
run sipload keys keys --if-missing | grep -q kept || fail "sipload keys --if-missing replaced keys"
run sipload uas --listen "127.0.0.1:$sip_port" --duration 90s >"$work/uas.txt" 2>&1 &
pids+=($!)
for _ in $(seq 600); do grep -q listening "$work/uas.txt" && break; sleep 0.1; done
grep -q listening "$work/uas.txt" || { cat "$work/uas.txt"; fail "sipload uas did not start"; }
run sipload run scenarios/basic_call.yaml --target "127.0.0.1:$sip_port" --calls 60 \
    --rate 30 --workers 1 --local-workers 0 --bind "tcp://127.0.0.1:$control_port" \
    --keys keys --wait-workers 60s --quiet --out /runs/split >"$work/coordinator.txt" 2>&1 &
coordinator=$!
pids+=($coordinator)
sleep 1
run sipload worker --connect "tcp://127.0.0.1:$control_port" --keys keys --wait 60s \
    >"$work/worker.txt" 2>&1 || { cat "$work/worker.txt"; fail "the worker failed"; }
wait "$coordinator" || { cat "$work/coordinator.txt"; fail "the coordinator failed"; }
all_answered /runs/split 60 || {
    cat "$work/coordinator.txt" "$work/worker.txt"; fail "the split run did not answer every call"; }
run test -s /runs/split/report.html || fail "no report.html from the split run"

size=$(buildah images --noheading --format '{{.Size}}' "$IMAGE" | head -1)
echo "container-smoke: OK: $IMAGE, $size; build ${build_s} s, all ${SECONDS} s"
