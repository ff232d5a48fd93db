#!/usr/bin/env bash
# Runs clang-tidy (checks in .clang-tidy, every warning an error) over the library's sources,
# using the compile commands of a build directory it configures (build-tidy/ by default).
#   scripts/tidy.sh [build-dir]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build-tidy}"
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DLRTS_BUILD_TESTS=OFF \
  -DLRTS_BUILD_EXAMPLES=OFF -DLRTS_BUILD_BENCH=OFF >/dev/null
cd "$root"
# clang-tidy counts on stderr the warnings it suppressed in system headers: only that is hidden.
git ls-files 'src/*.cc' | xargs -P "$(nproc)" -n 4 clang-tidy -p "$build" --quiet \
  2> >(grep -v -E '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$' >&2)
echo "clang-tidy: clean"
