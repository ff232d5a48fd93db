#!/usr/bin/env bash
# Installs lrts into a temporary prefix, builds an outside project against it with
# find_package(lrts), and runs it: the installed scheduler, a worker executable with a linked-in
# service (lrts::worker_main), and an application.
#   check_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build="$1"; src="$2"
# A port nothing listens on.
for _ in $(seq 50); do
  port=$((20000 + RANDOM % 40000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
done
work="$(mktemp -d /tmp/lrts-install-XXXXXX)"
pids=()
cleanup() {
  # Workers first (they deliver what they hold), then the scheduler.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -x "$work/prefix/bin/lrts"
test -f "$work/prefix/include/lrts/lrts.hpp"
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
cmake -S "$src/tests/install/consumer" -B "$work/consumer" "${generator[@]}" \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/consumer" >/dev/null

"$work/prefix/bin/lrts" scheduler -port "$port" --state-dir "$work/state" \
  >"$work/scheduler.log" 2>&1 &
pids+=($!)
"$work/consumer/my_worker" -scheduler-port "$port" -max-jobs 2 >"$work/worker.log" 2>&1 &
pids+=($!)
out="$(timeout 60 "$work/consumer/my_app" "$port")"
echo "$out"
expected=$'square 9\nsquare 16\nsquare 25\ntyped 36'
if [ "$out" != "$expected" ]; then
  echo "unexpected output; worker log:"; cat "$work/worker.log"
  exit 1
fi
echo "install check passed"
