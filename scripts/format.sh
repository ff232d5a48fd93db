#!/usr/bin/env bash
# Checks that every C++ file is formatted as .clang-format says (--fix: formats them).
#   scripts/format.sh [--fix]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
files=$(git ls-files '*.cc' '*.hpp' '*.h')
if [ "${1:-}" = "--fix" ]; then
  echo "$files" | xargs clang-format -i
else
  echo "$files" | xargs clang-format --dry-run --Werror
  echo "clang-format: clean"
fi
