#!/usr/bin/env bash
# Regenerates the committed Go stubs under client/go/gen/ from the .proto sources in protos/.
#
#   client/go/generate.sh           write client/go/gen/
#   client/go/generate.sh --check   exit 1 if the committed stubs differ from a fresh generation
#
# Needs protoc, protoc-gen-go and protoc-gen-go-grpc on PATH (Debian: protobuf-compiler,
# protoc-gen-go, protoc-gen-go-grpc; .ci/install-clients.sh installs them). The generated files
# name the plugin and protoc versions in their headers, so --check is exact only with the same
# versions (Debian 12: protoc 3.21.12, protoc-gen-go v1.28.1, protoc-gen-go-grpc 1.0).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
MODULE="canaryserve/client/go"

# proto file (relative to the repo root, the include dir) → Go import path;package name.
# These match the protos' `option go_package`; passing them here keeps the output layout
# (client/go/gen/...) independent of what the .proto files say.
MAPPINGS=(
  "protos/inference/grpc_service.proto=$MODULE/gen/inference;inference"
  "protos/canaryserve/admin/v1/admin.proto=$MODULE/gen/admin/v1;adminv1"
  "protos/canaryserve/outcomes/v1/outcomes.proto=$MODULE/gen/outcomes/v1;outcomesv1"
)

check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

for tool in protoc protoc-gen-go protoc-gen-go-grpc; do
  command -v "$tool" >/dev/null || { echo "generate.sh: $tool not found (run .ci/install-clients.sh)" >&2; exit 1; }
done

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

go_opts=(--go_opt="module=$MODULE")
grpc_opts=(--go-grpc_opt="module=$MODULE")
for m in "${MAPPINGS[@]}"; do
  go_opts+=(--go_opt="M$m")
  grpc_opts+=(--go-grpc_opt="M$m")
done

protos=()
for m in "${MAPPINGS[@]}"; do protos+=("${m%%=*}"); done

# Relative proto paths (and cwd = repo root) keep machine paths out of the generated headers.
(cd "$ROOT" && protoc -I . \
  --go_out="$out" "${go_opts[@]}" \
  --go-grpc_out="$out" "${grpc_opts[@]}" \
  "${protos[@]}")

if [[ $check == 1 ]]; then
  if ! diff -r "$out/gen" "$HERE/gen" >/dev/null 2>&1; then
    echo "client/go/gen is stale: run client/go/generate.sh" >&2
    diff -r "$out/gen" "$HERE/gen" >&2 || true
    exit 1
  fi
  exit 0
fi

rm -rf "$HERE/gen"
cp -r "$out/gen" "$HERE/gen"
find "$HERE/gen" -name '*.go' | sort | sed "s|^$ROOT/|generated |"
