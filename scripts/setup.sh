#!/usr/bin/env bash
# Installs the Debian packages lrts needs (only those missing) and builds it.
#   scripts/setup.sh [--bench] [build-dir]     default build dir: build (Release)
#   --bench also installs what the comparison benchmarks need (bench/packages.txt)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lists=("$root/scripts/packages.txt")
if [ "${1:-}" = "--bench" ]; then
  lists+=("$root/bench/packages.txt")
  shift
fi
build="${1:-$root/build}"

mapfile -t wanted < <(cat "${lists[@]}" | grep -v '^\s*#' | grep -v '^\s*$')
missing=()
for p in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "lrts setup: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
# LRTS_CMAKE_FLAGS: more options for cmake (CI: -DLRTS_WERROR=ON).
read -r -a extra <<<"${LRTS_CMAKE_FLAGS:-}"
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${extra[@]}" >/dev/null
cmake --build "$build" -j "$(nproc)"
