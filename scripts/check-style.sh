#!/usr/bin/env bash
# Fails if the C code is not as clang-format (.clang-format) writes it,
# or a C or Lua line is over 80 columns, or a shortcoming is marked
# without saying what is missing and why.
set -euo pipefail
cd "$(dirname "$0")/.."
c_files=$(git ls-files 'core/*.c' 'core/*.h' 'spec/c/*.c')
lua_files=$(git ls-files '*.lua')
status=0

clang-format --dry-run --Werror $c_files || status=1

wide=$(awk 'length($0) > 80 { printf "%s:%d\n", FILENAME, FNR }' \
       $c_files $lua_files)
if [ -n "$wide" ]; then
  printf 'lines over 80 columns:\n%s\n' "$wide"
  status=1
fi

bare=$( (grep -nHwE 'FIXME|XXX' $c_files $lua_files;
        grep -nHE 'TODO *(\*/)?$' $c_files $lua_files) || true)
if [ -n "$bare" ]; then
  printf 'bare marks (say what is missing and why):\n%s\n' "$bare"
  status=1
fi
exit $status
