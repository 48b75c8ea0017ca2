#!/bin/sh
# Install what the tests need from Debian's packages when it is missing: redis-server, and
# chromium for the browser tests (driven by Playwright, which never downloads a browser here).
# Without root (or without apt) nothing is installed: install them yourself, or point the tests
# at a Redis you run with REDIS_URL (README: Tests).
set -e
need=""
command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
[ -x /usr/bin/chromium ] || need="$need chromium"
[ -z "$need" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing:$need"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
    # The package starts a system instance on port 6379; the tests start their own on free ports.
    service redis-server stop >/dev/null 2>&1 || true
else
    case "$need" in *redis-server*)
        echo "not root: install Debian's redis-server (or set REDIS_URL) for the tests";; esac
    case "$need" in *chromium*) echo "not root: install Debian's chromium for the browser tests";; esac
fi
