#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: once on a
# normal build and once with AddressSanitizer and UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --test
for dir in spec/differential spec/browser examples/demo; do
  (cd "$dir" && npm ci --no-audit --no-fund --silent)
done

bash scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo
(cd build && ctest --output-on-failure)

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=23
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
bash scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DAB_SANITIZE=ON
(cd build-asan && ctest --output-on-failure)
