#!/usr/bin/env bash
# Installs etcd for the fleet tests (tests/test_fleet_*.py start it on loopback ports):
# Debian's etcd-server package (etcd 3.4, binary /usr/bin/etcd). Idempotent: a second run
# changes nothing and asks no registry. Runs as root on Debian 12 (CI); quiet unless something
# fails. The package's own service is stopped and disabled: tests run their own etcd.
set -euo pipefail

fail() {
  echo "install-etcd: $*" >&2
  exit 1
}

status="$(dpkg-query -W -f='${db:Status-Status}' etcd-server 2>/dev/null || true)"
if [[ "$status" != installed ]]; then
  [[ $(id -u) == 0 ]] || fail "need root to apt-get install etcd-server"
  log="$(mktemp)"
  trap 'rm -f "$log"' EXIT
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d 101: the package must not start its own etcd on the default ports.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
  fi
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends etcd-server; } \
    >"$log" 2>&1; then
    ((created_policy)) && rm -f "$policy"
    cat "$log" >&2
    fail "apt-get install etcd-server failed"
  fi
  ((created_policy)) && rm -f "$policy"
fi
[[ -x /usr/bin/etcd ]] || fail "/usr/bin/etcd is still missing after the install"
