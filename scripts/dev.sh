#!/usr/bin/env bash
# Installs what is missing, builds, and runs the broker on its embedded
# default: a sandbox Pica inside the process, header identity, loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh build
(cd examples/demo && npm ci --no-audit --no-fund --silent)
exec ./build/authkit-broker --dev "$@"
