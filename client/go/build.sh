#!/usr/bin/env bash
# Builds the Go client offline from Debian's Go sources (no module proxy, no network):
#
#   client/go/build.sh [OUT_DIR]      → OUT_DIR/canary-client (default: client/go/build/)
#   client/go/build.sh --test         → go test of client/go/routing (the routing conformance test)
#
# GOPATH mode (GO111MODULE=off): imports resolve under a private GOPATH whose
# src/canaryserve/client/go links to this directory, then under /usr/share/gocode, where the
# Debian packages golang-google-grpc-dev, golang-google-protobuf-dev and
# golang-github-golang-protobuf-1-5-dev put their sources (.ci/install-clients.sh installs
# them). client/go/build/ is git-ignored (the `build/` line of .gitignore).
# The go tool is Debian's golang-go (1.19); grpc-go 1.33 and protobuf-go 1.28 come from Debian.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMPORT="canaryserve/client/go"
DEBIAN_GOPATH=/usr/share/gocode

test_only=0
if [[ "${1:-}" == "--test" ]]; then
  test_only=1
  shift
fi
OUT="${1:-$HERE/build}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

command -v go >/dev/null || { echo "build.sh: go not found (run .ci/install-clients.sh)" >&2; exit 1; }
[[ -d "$DEBIAN_GOPATH/src/google.golang.org/grpc" ]] ||
  { echo "build.sh: $DEBIAN_GOPATH/src/google.golang.org/grpc missing (apt-get install golang-google-grpc-dev)" >&2; exit 1; }

# A throwaway GOPATH holding one symlink (kept out of OUT: inside client/go it would loop).
gopath="$(mktemp -d)"
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src/$(dirname "$IMPORT")"
ln -sfn "$HERE" "$gopath/src/$IMPORT"

export GO111MODULE=off GOFLAGS= GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0
export GOPATH="$gopath:$DEBIAN_GOPATH"
# Go's own build cache (~/.cache/go-build) when there is one: a fresh checkout then rebuilds in
# about a second instead of compiling gRPC again (about a minute on 2 cores).
if [[ -z "${GOCACHE:-}" ]]; then
  GOCACHE="$(go env GOCACHE 2>/dev/null || true)"
  [[ -n "$GOCACHE" && "$GOCACHE" != off ]] || GOCACHE="$OUT/gocache"
fi
export GOCACHE

if [[ $test_only == 1 ]]; then
  go test -count=1 -v "$IMPORT/routing"
else
  go vet "$IMPORT" "$IMPORT/routing"
  go build -trimpath -o "$OUT/canary-client" "$IMPORT"
  echo "$OUT/canary-client"
fi
