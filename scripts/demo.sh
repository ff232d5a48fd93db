#!/usr/bin/env bash
# Installs what is missing, builds, starts a local cluster (scheduler, progress server, worker)
# and runs the example applications against it, ending with the live progress view; then stops
# the cluster.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build"
"$root/scripts/setup.sh" "$build"

port="${LRTS_DEMO_PORT:-5555}"
progress_port="${LRTS_DEMO_PROGRESS_PORT:-5454}"
logs="$(mktemp -d /tmp/lrts-demo-XXXXXX)"
lrts="$build/lrts"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

echo "== starting a scheduler (port $port), a progress server (port $progress_port) and a worker"
echo "   (logs in $logs)"
"$lrts" scheduler -address 127.0.0.1 -port "$port" -timeout 1 >"$logs/scheduler.log" 2>&1 &
pids+=($!)
"$lrts" progress-server -address 127.0.0.1 -port "$progress_port" -timeout 1 \
  >"$logs/progress-server.log" 2>&1 &
pids+=($!)
"$lrts" worker -scheduler-address 127.0.0.1 -scheduler-port "$port" \
  -progress-address 127.0.0.1 -progress-port "$progress_port" -max-jobs 4 -timeout 1 \
  --service-lib "$build/examples/libexample_services.so" >"$logs/worker.log" 2>&1 &
pids+=($!)

for example in wait_for wait_for_multi as_completed; do
  echo "== examples/$example.cc"
  "$build/examples/example_$example" "$port"
done
echo "== lrts submit \"Multiplication Service Example\" --fields '{\"a\":6,\"b\":9}' --count 3 --wait"
"$lrts" submit "Multiplication Service Example" --fields '{"a":6,"b":9}' --count 3 --wait \
  -scheduler-port "$port"
# The original lrts's Python examples, unchanged in their calls, on the same worker (its slots
# run Python services in Python slot processes).
for example in wait_for wait_for_multi as_completed; do
  echo "== python3 -m lrts.examples.$example"
  PYTHONPATH="$build/python" /usr/bin/python3 -m "lrts.examples.$example" \
    --scheduler-port "$port" --progress-port "$progress_port"
done
echo "== examples/detailed_progress.cc: 8 tasks reporting progress, watched live"
"$build/examples/example_detailed_progress" "$port" "$progress_port" 8
