#!/usr/bin/env bash
# Installs the Debian packages lrts needs (only those missing) and builds it.
#   scripts/setup.sh [--bench] [--test] [build-dir]     default build dir: build (Release)
#   --bench also installs what the comparison benchmarks need (bench/packages.txt)
#   --test  also installs what the tests drive (scripts/packages-test.txt: Prometheus, Chromium,
#           Node; scripts/packages-slurm.txt: a one-node Slurm; scripts/packages-docs.txt:
#           MkDocs) and Playwright into tests/browser (from npm)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lists=("$root/scripts/packages.txt")
browser=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bench) lists+=("$root/bench/packages.txt"); shift ;;
    --test)
      lists+=("$root/scripts/packages-test.txt" "$root/scripts/packages-slurm.txt"
              "$root/scripts/packages-docs.txt")
      browser=1; shift ;;
    *) break ;;
  esac
done
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

if ((browser)); then
  # Node from Debian unless one is installed already (a newer one may own npm).
  if ! command -v npm >/dev/null; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
  fi
  if [ ! -d "$root/tests/browser/node_modules/playwright-core" ]; then
    echo "lrts setup: installing playwright-core into tests/browser (npm)"
    (cd "$root/tests/browser" && npm install --no-package-lock --no-audit --no-fund --silent)
  fi
fi

generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
# LRTS_CMAKE_FLAGS: more options for cmake (CI: -DLRTS_WERROR=ON).
read -r -a extra <<<"${LRTS_CMAKE_FLAGS:-}"
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${extra[@]}" >/dev/null
cmake --build "$build" -j "$(nproc)"
