#!/usr/bin/env bash
# Builds the broker into DIR (default build/).  Extra arguments go to
# cmake, e.g. scripts/build.sh build-asan -DAB_SANITIZE=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)"
