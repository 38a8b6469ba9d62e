#!/bin/sh
# Install the real SIP peers the tests run against (SIPp, Kamailio with its WebSocket
# module, sipsak, baresip, and rtpengine, the media relay Kamailio drives in
# tests/test_media_peers.py), tshark
# (reads the run directory's messages.pcap) and tcpdump (the capture tests' reference
# clock), if missing.
#
# Idempotent and quiet on success: does nothing when sipp, kamailio, sipsak, baresip, rtpengine, tshark and tcpdump are all on
# PATH; otherwise, as root with apt-get, installs the Debian packages sip-tester,
# kamailio, sipsak, baresip, rtpengine-daemon (userspace forwarding: no kernel module is
# needed or loaded), tshark and tcpdump. Without root or apt-get it prints what to install and exits 0:
# the peer tests then fail under CI=true and skip elsewhere (see tests/peers.py).
set -eu

# Debian puts kamailio in /usr/sbin, which a non-root PATH may lack.
PATH="$PATH:/usr/sbin:/sbin"

missing=""
for pair in sipp:sip-tester kamailio:kamailio sipsak:sipsak tshark:tshark baresip:baresip rtpengine:rtpengine-daemon tcpdump:tcpdump; do
    binary=${pair%%:*}
    package=${pair#*:}
    if ! command -v "$binary" >/dev/null 2>&1; then
        missing="$missing $package"
    fi
done

# Kamailio's WebSocket module (SIP over WebSocket, RFC 7118) is a package of its own
if ! ls /usr/lib/*/kamailio/modules/websocket.so >/dev/null 2>&1; then
    missing="$missing kamailio-websocket-modules"
fi

# ... and its TLS module (SIP over TLS at load, tests/test_tls_interop.py)
if ! ls /usr/lib/*/kamailio/modules/tls.so >/dev/null 2>&1; then
    missing="$missing kamailio-tls-modules"
fi

[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    log=$(mktemp)
    # the full set, so a partial install is completed too
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
            sip-tester kamailio kamailio-websocket-modules kamailio-tls-modules sipsak \
            tshark baresip \
            rtpengine-daemon tcpdump; } >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "install-peers: apt-get failed installing:$missing" >&2
        exit 1
    fi
    rm -f "$log"
    exit 0
fi

echo "install-peers: missing SIP peers; install the Debian packages:$missing" >&2
echo "install-peers:   sudo apt-get install -y sip-tester kamailio kamailio-websocket-modules kamailio-tls-modules sipsak tshark baresip rtpengine-daemon tcpdump" >&2
exit 0
