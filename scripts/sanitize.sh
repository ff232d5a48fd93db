#!/usr/bin/env bash
# Builds lrts with clang in Debug with AddressSanitizer and UndefinedBehaviorSanitizer (assertions
# on, warnings as errors, -Wthread-safety) and
# runs the unit and integration tests against that build: every daemon, slot and service the
# tests start runs instrumented, and any report fails the run.
#   scripts/sanitize.sh [build-dir]     default: build-asan
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build-asan}"
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
# clang: its sanitizers, and its -Wthread-safety check of the lock annotations, with every
# warning an error (the Release build uses g++: both compilers stay clean).
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_COMPILER=clang++ -DLRTS_WERROR=ON \
  -DLRTS_SANITIZE=address,undefined -DLRTS_BUILD_BENCH=OFF -DLRTS_BUILD_PYTHON=OFF >/dev/null
cmake --build "$build" -j "$(nproc)"
# halt_on_error: a report ends the process, so the test that caused it fails. Daemons killed
# with SIGKILL never reach the leak check; those that exit normally do.
# handle_segv=0: the tests crash slots on purpose and expect the plain signal.
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1:handle_segv=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export LSAN_OPTIONS="suppressions=$root/scripts/lsan.supp:print_suppressions=0"
# The simulation is 20 times slower here; the Release run covers its 200 seeds.
export LRTS_SIM_SEEDS="${LRTS_SIM_SEEDS:-20}"
cd "$build"
# rerun: tests that run other tests again in another mode (with --auth); the Release run has them.
ctest --output-on-failure -j "$(nproc)" --timeout 900 -LE "install|rerun"
