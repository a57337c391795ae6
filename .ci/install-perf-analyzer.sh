#!/usr/bin/env bash
# Installs Triton's perf_analyzer for tests/interop/test_perf_analyzer.py and
# benchmarks/perf_analyzer.py, as .tools/perf_analyzer/perf_analyzer (a wrapper that sets
# LD_LIBRARY_PATH and runs the binary). Nothing of it is committed:
#   * the binary ships inside the Linux x86_64 tritonclient wheel (2.50.0 is the newest whose
#     perf_analyzer runs on glibc 2.36, Debian 12; the later perf-analyzer wheels need 2.38);
#   * it links libcudart.so.12, taken from the nvidia-cuda-runtime-cu12 wheel (it loads
#     without a GPU: nothing here uses CUDA);
#   * and libb64.so.0d, Debian's libb64-0d.
# The wheels are downloaded with pip (its configured index), checked against the hashes below,
# and kept in ~/.cache/canaryserve so a fresh clone installs without asking a registry again.
# Idempotent: a second run changes nothing and asks no registry. Runs as root on Debian 12
# (CI); quiet unless something fails.
set -euo pipefail
cd "$(dirname "$0")/.."

TRITONCLIENT=2.50.0
TRITONCLIENT_WHEEL="tritonclient-$TRITONCLIENT-py3-none-manylinux1_x86_64.whl"
TRITONCLIENT_SHA256=421fbb69ae6ab8cdb2c35b82134fcef2fe11e7af7718b1fcbc53335ab9bfe889
CUDART=12.9.79
CUDART_WHEEL="nvidia_cuda_runtime_cu12-$CUDART-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
CUDART_SHA256=25bba2dfb01d48a9b59ca474a1ac43c6ebf7011f1b0b8cc44f54eb6ac48a96c3

TOOL=.tools/perf_analyzer
CACHE="${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/canaryserve/wheels"
STAMP="tritonclient $TRITONCLIENT, nvidia-cuda-runtime-cu12 $CUDART"

fail() {
  echo "install-perf-analyzer: $*" >&2
  exit 1
}

[[ "$(uname -sm)" == "Linux x86_64" ]] || fail "perf_analyzer ships for Linux x86_64 only"
python="$(command -v "${PYTHON:-python3.11}" || command -v python3 || true)"
[[ -n "$python" ]] || fail "no python3 to run pip with"

log="$(mktemp)"
scratch=""
trap 'rm -f "$log"; [[ -z "$scratch" ]] || rm -rf "$scratch"' EXIT

# pip for the downloads: the Python's own, or (a Debian python3 has none) a throwaway venv's.
pip_python=""
find_pip() {
  [[ -z "$pip_python" ]] || return 0
  if "$python" -m pip --version >/dev/null 2>&1; then
    pip_python="$python"
    return 0
  fi
  scratch="$(mktemp -d)"
  "$python" -m venv "$scratch/venv" >"$log" 2>&1 ||
    { cat "$log" >&2; fail "$python has no pip, and no venv to get one from (python3-venv)"; }
  pip_python="$scratch/venv/bin/python"
}

status="$(dpkg-query -W -f='${db:Status-Status}' libb64-0d 2>/dev/null || true)"
if [[ "$status" != installed ]]; then
  [[ $(id -u) == 0 ]] || fail "need root to apt-get install libb64-0d"
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends libb64-0d; } \
    >"$log" 2>&1; then
    cat "$log" >&2
    fail "apt-get install libb64-0d failed"
  fi
fi

# wheel FILE REQUIREMENT SHA256 [PIP OPTIONS...]: the pinned wheel in the cache, checked.
wheel() {
  local file="$1" requirement="$2" sha="$3"
  shift 3
  if [[ ! -f "$CACHE/$file" ]]; then
    mkdir -p "$CACHE"
    find_pip
    if ! "$pip_python" -m pip download --disable-pip-version-check --quiet --no-deps \
      --only-binary=:all: --python-version 3.11 "$@" -d "$CACHE" "$requirement" >"$log" 2>&1; then
      cat "$log" >&2
      fail "pip download $requirement failed"
    fi
    [[ -f "$CACHE/$file" ]] || fail "pip download $requirement did not give $file"
  fi
  if ! echo "$sha  $CACHE/$file" | sha256sum --check --status; then
    rm -f "$CACHE/$file"
    fail "$file does not match its pinned sha256 (removed; run again to download it anew)"
  fi
}

if [[ "$(cat "$TOOL/VERSION" 2>/dev/null || true)" != "$STAMP" ]]; then
  wheel "$TRITONCLIENT_WHEEL" "tritonclient==$TRITONCLIENT" "$TRITONCLIENT_SHA256" \
    --platform manylinux1_x86_64
  wheel "$CUDART_WHEEL" "nvidia-cuda-runtime-cu12==$CUDART" "$CUDART_SHA256" \
    --platform manylinux_2_17_x86_64
  rm -rf "$TOOL.new"
  mkdir -p "$TOOL.new/bin" "$TOOL.new/lib"
  "$python" - "$CACHE" "$TOOL.new" "$TRITONCLIENT_WHEEL" "$CUDART_WHEEL" "$TRITONCLIENT" <<'EOF'
import shutil, sys, zipfile
from pathlib import Path

cache, dest, triton, cudart, version = sys.argv[1:]
for wheel, member, target in (
    (triton, f"tritonclient-{version}.data/data/bin/perf_analyzer", "bin/perf_analyzer"),
    (cudart, "nvidia/cuda_runtime/lib/libcudart.so.12", "lib/libcudart.so.12"),
):
    with zipfile.ZipFile(Path(cache) / wheel) as zf, zf.open(member) as src:
        with open(Path(dest) / target, "wb") as out:
            shutil.copyfileobj(src, out)
(Path(dest) / "bin/perf_analyzer").chmod(0o755)
EOF
  cat >"$TOOL.new/perf_analyzer" <<'EOF'
#!/usr/bin/env bash
# perf_analyzer with the libcudart it links beside it (written by .ci/install-perf-analyzer.sh).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$here/bin/perf_analyzer" "$@"
EOF
  chmod +x "$TOOL.new/perf_analyzer"
  echo "$STAMP" >"$TOOL.new/VERSION"
  rm -rf "$TOOL"
  mv "$TOOL.new" "$TOOL"
fi

if ! out="$("$TOOL/perf_analyzer" --version 2>&1)" || [[ "$out" != *"Perf Analyzer"* ]]; then
  echo "$out" >&2
  fail "$TOOL/perf_analyzer does not run (libb64-0d installed? libcudart.so.12 in $TOOL/lib?)"
fi
