#!/bin/sh
# Install what the tests need from Debian's packages when it is missing: redis-server (with
# redis-cli, for the Redis Cluster tests), chromium for the browser tests (driven by Playwright,
# which never downloads a browser here), and for the multi-host test nginx, iproute2 (network
# namespaces) and openssl (its certificate). Without root (or without apt) nothing is
# installed: install them yourself, or point the tests at a Redis you run with REDIS_URL.
set -e
need=""
command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
command -v redis-cli >/dev/null 2>&1 || need="$need redis-tools"
[ -x /usr/bin/chromium ] || need="$need chromium"
[ -x /usr/sbin/nginx ] || need="$need nginx"
[ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need="$need iproute2"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
[ -z "$need" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing:$need"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
    # The package starts a system instance on port 6379; the tests start their own on free ports.
    service redis-server stop >/dev/null 2>&1 || true
    # Likewise nginx on port 80: the multi-host test runs its own in a network namespace.
    service nginx stop >/dev/null 2>&1 || true
else
    case "$need" in *redis-server*)
        echo "not root: install Debian's redis-server (or set REDIS_URL) for the tests";; esac
    case "$need" in *chromium*) echo "not root: install Debian's chromium for the browser tests";; esac
fi
