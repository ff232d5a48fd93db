#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (AddressSanitizer and UndefinedBehaviorSanitizer on)
# and runs each for a bounded time from the seeds in fuzz/corpus/. New inputs go to a scratch
# corpus; a crash, leak or timeout fails the run and leaves the input in the build directory.
#   scripts/fuzz.sh [seconds-per-target]     default 30
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-30}"
build="${LRTS_FUZZ_BUILD:-$root/build-fuzz}"
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ -DLRTS_BUILD_FUZZ=ON -DLRTS_SANITIZE=address,undefined \
  -DLRTS_BUILD_TESTS=OFF -DLRTS_BUILD_EXAMPLES=OFF -DLRTS_BUILD_BENCH=OFF -DLRTS_BUILD_PYTHON=OFF >/dev/null
cmake --build "$build" -j "$(nproc)"
export ASAN_OPTIONS="detect_leaks=1"
scratch="$(mktemp -d /tmp/lrts-fuzz-XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
status=0
for target in wire frames journal json scheduler; do
  mkdir -p "$scratch/$target"
  echo "fuzz_$target: ${seconds} s"
  if ! (cd "$build" && "./fuzz/fuzz_$target" -max_total_time="$seconds" -timeout=10 \
          -rss_limit_mb=2048 -print_final_stats=1 "$scratch/$target" "$root/fuzz/corpus/$target" \
          >"$build/fuzz_$target.log" 2>&1); then
    echo "fuzz_$target FAILED (log: $build/fuzz_$target.log)"
    tail -40 "$build/fuzz_$target.log"
    status=1
  else
    grep -a -E "^Done|stat::number_of_executed_units" "$build/fuzz_$target.log" | head -2
  fi
done
exit $status
