#!/usr/bin/env bash
# Installs what building and testing the broker needs, from Debian's
# packages (and Node.js, if the machine has none).  Safe to run again.
set -euo pipefail

packages=(
  build-essential cmake pkg-config curl ca-certificates git clang-format
  liblua5.4-dev lua5.4 lua-cjson lua-busted libsqlite3-dev
  libpq-dev postgresql
  libevent-dev libcurl4-openssl-dev libssl-dev
)
command -v node >/dev/null 2>&1 || packages+=(nodejs npm)
# The browser test drives Debian's Chromium (no browser download).
[ "${1:-}" = "--test" ] && packages+=(chromium)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
    grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing ${missing[*]}; run as root or install them" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
