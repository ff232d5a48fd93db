#!/usr/bin/env bash
# The Python package installed both ways, each run against the installed files only:
#  1. cmake --install into a temporary prefix (the Debian layout, lib/python3.X/dist-packages);
#  2. pip install --no-build-isolation into a venv that sees Debian's python3-* packages.
# Each runs a scheduler and a worker from its install, then the seed's wait_for example.
#   check_python.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build="$1"; src="$2"
py=/usr/bin/python3
work="$(mktemp -d /tmp/lrts-python-XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run_against NAME LRTS_COMMAND PYTHON [PYTHONPATH]
run_against() {
  local name="$1" lrts="$2" python="$3" path="${4:-}"
  local port; port="$(free_port)"
  local pport; pport="$(free_port)"
  env -u PYTHONPATH "$lrts" scheduler -address 127.0.0.1 -port "$port" -timeout 1 \
    >"$work/$name-scheduler.log" 2>&1 &
  pids+=($!)
  env -u PYTHONPATH ${path:+PYTHONPATH=$path} "$lrts" worker -scheduler-port "$port" \
    -progress-port "$pport" -max-jobs 1 --python "$python" >"$work/$name-worker.log" 2>&1 &
  pids+=($!)
  local out
  out="$(cd "$work" && env -u PYTHONPATH ${path:+PYTHONPATH=$path} timeout 60 "$python" -m \
    lrts.examples.wait_for --scheduler-port "$port" --progress-port "$pport")" || {
    echo "$name: the example failed; worker log:"; cat "$work/$name-worker.log"; exit 1; }
  echo "$name: $out"
  if ! [[ "$out" =~ ^Service\ with\ ID:\ [0-9a-f]{16}-[0-9a-f]+\ finished\ with\ result:\ 54$ ]]; then
    echo "$name: unexpected output; worker log:"; cat "$work/$name-worker.log"; exit 1
  fi
  grep -q "runs Python services" "$work/$name-worker.log" || {
    echo "$name: the worker did not find Python"; cat "$work/$name-worker.log"; exit 1; }
}

# 1. cmake --install
cmake --install "$build" --prefix "$work/prefix" >/dev/null
site="$(dirname "$(find "$work/prefix" -path '*-packages/lrts/__init__.py' | head -1)")"
site="$(dirname "$site")"
test -f "$site/lrts/py.typed" && test -f "$site/lrts/_lrts.pyi"
ls "$site"/lrts/_lrts*.so >/dev/null
run_against cmake "$work/prefix/bin/lrts" "$py" "$site"

# 2. pip install --no-build-isolation (offline: --no-index), reusing the CMake build
"$py" -m venv --system-site-packages "$work/venv"
LRTS_CMAKE_BUILD_DIR="$build" "$work/venv/bin/pip" install --quiet --no-build-isolation \
  --no-index --no-deps "$src" >"$work/pip.log" 2>&1 || { cat "$work/pip.log"; exit 1; }
test -x "$work/venv/bin/lrts"
"$work/venv/bin/lrts" --version
run_against pip "$work/venv/bin/lrts" "$work/venv/bin/python"
echo "python install check passed"
