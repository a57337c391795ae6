#!/usr/bin/env bash
# Installs what the bundled Node and Go clients (client/node, client/go) and their tests need:
# Debian's Go toolchain with gRPC/protobuf sources, protoc with the Go plugins, Node.js, and
# client/node's locked npm dependencies (npm ci). Idempotent: a second run changes nothing and
# asks no registry. Runs as root on Debian 12 (CI); quiet unless something fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# Go 1.19, grpc-go 1.33, protobuf-go 1.28 (+ the golang/protobuf 1.5 shim that grpc-go needs
# for APIv2 messages), protoc 3.21 with the well-known .proto files (libprotobuf-dev, only
# recommended by protobuf-compiler) and the plugins: everything client/go builds from, offline.
DEB_PACKAGES=(
  golang-go
  golang-google-grpc-dev
  golang-google-protobuf-dev
  golang-github-golang-protobuf-1-5-dev
  protobuf-compiler
  libprotobuf-dev
  protoc-gen-go
  protoc-gen-go-grpc
)
command -v node >/dev/null || DEB_PACKAGES+=(nodejs)
command -v npm >/dev/null || DEB_PACKAGES+=(npm)

fail() {
  echo "install-clients: $*" >&2
  exit 1
}

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
  [[ "$status" == installed ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  [[ $(id -u) == 0 ]] || fail "need root to apt-get install: ${missing[*]}"
  log="$(mktemp)"
  trap 'rm -f "$log"' EXIT
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    fail "apt-get install ${missing[*]} failed"
  fi
fi

for tool in go protoc protoc-gen-go protoc-gen-go-grpc node npm; do
  command -v "$tool" >/dev/null || fail "$tool is still missing after the install"
done
[[ -d /usr/share/gocode/src/google.golang.org/grpc ]] || fail "Debian's grpc-go sources are missing"

# npm ci wipes and reinstalls node_modules; skip it while the installed tree matches the lock.
lock_hash="$(sha256sum client/node/package-lock.json | cut -d' ' -f1)"
stamp=client/node/node_modules/.canaryserve-lock.sha256
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$lock_hash" ]]; then
  if ! out="$(cd client/node && npm ci --no-audit --no-fund --loglevel=error 2>&1)"; then
    echo "$out" >&2
    fail "npm ci in client/node failed"
  fi
  echo "$lock_hash" >"$stamp"
fi
[[ -x client/node/node_modules/.bin/buf ]] || fail "buf missing from client/node/node_modules"
