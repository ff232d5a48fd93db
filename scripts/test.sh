#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit, integration, install check).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
"$root/scripts/setup.sh" --test "$build"
cd "$build"
ctest --output-on-failure -j "$(nproc)" --timeout 600
