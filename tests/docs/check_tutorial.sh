#!/usr/bin/env bash
# Runs the tutorial, docs/getting-started.md, as a reader would: every ```sh block in order, in
# one shell, in a fresh directory, and checks what the reader is told to expect.
#   tests/docs/check_tutorial.sh BUILD_DIR SOURCE_DIR
#
# What differs from a reader's terminal, and nothing else:
# - the directory is a temporary one holding `build` (a link to BUILD_DIR), so the tutorial's
#   relative paths (build/lrts, build/examples/...) resolve as from the top of the source tree;
# - `bash scripts/setup.sh` (the build) is replaced by a check that BUILD_DIR/lrts exists;
# - the default ports 5555 and 5454 are replaced by free ones, so the test runs next to
#   anything already listening there;
# - HOME is a fresh directory, so the scheduler's journal starts empty and is thrown away;
# - the whole run has a deadline, and whatever it started is killed when the test ends.
# LRTS_TUTORIAL_DEADLINE: that deadline in seconds (300); LRTS_TUTORIAL_KEEP=1 keeps the directory
# with each block's text and output.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR SOURCE_DIR" >&2
  exit 2
fi
build="$(cd "$1" && pwd)"
source_dir="$(cd "$2" && pwd)"
tutorial="$source_dir/docs/getting-started.md"
deadline_s="${LRTS_TUTORIAL_DEADLINE:-300}"

fail() {
  echo "check_tutorial: FAIL: $*" >&2
  exit 1
}
[ -x "$build/lrts" ] || fail "$build/lrts not found (build first)"
[ -f "$tutorial" ] || fail "$tutorial not found"

work="$(mktemp -d "${TMPDIR:-/tmp}/lrts-tutorial.XXXXXX")"
runner=""
cleanup() {
  local status=$?
  if [ -n "$runner" ]; then
    # Everything the tutorial started is in the session of its shell (slots are in process
    # groups of their own, but in the same session).
    local pids
    pids="$(pgrep -s "$runner" || true)"
    if [ -n "$pids" ]; then
      # shellcheck disable=SC2086
      kill -TERM $pids 2>/dev/null || true
      for _ in $(seq 50); do
        pids="$(pgrep -s "$runner" || true)"
        [ -z "$pids" ] && break
        sleep 0.1
      done
      if [ -n "$pids" ]; then
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
      fi
    fi
  fi
  if [ "$status" -ne 0 ]; then
    for f in "$work"/run/*.log; do
      [ -f "$f" ] || continue
      echo "---- $(basename "$f") (last 30 lines)"
      tail -n 30 "$f"
    done
  fi
  if [ -n "${LRTS_TUTORIAL_KEEP:-}" ]; then
    echo "check_tutorial: kept $work"
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT

# Two free TCP ports on the loopback interface.
read -r port_scheduler port_progress < <(/usr/bin/python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')

# ---- extract the blocks ----------------------------------------------------------------------
mkdir -p "$work/blocks" "$work/run" "$work/home"
ln -s "$build" "$work/run/build"
count="$(awk -v dir="$work/blocks" '
  /^```sh[[:space:]]*$/ { n++; inside = 1; file = sprintf("%s/%02d.sh", dir, n); printf "" > file; next }
  inside && /^```[[:space:]]*$/ { inside = 0; close(file); next }
  inside { print > file }
  END { print n + 0 }' "$tutorial")"
[ "$count" -gt 0 ] || fail "no \`\`\`sh blocks in $tutorial"

# Each substitution must apply somewhere: a tutorial that changed without this test would
# otherwise go unchecked.
substitute() {
  local from="$1" to="$2"
  grep -qF -- "$from" "$work"/blocks/*.sh || fail "the tutorial no longer contains '$from'"
  local f
  for f in "$work"/blocks/*.sh; do
    FROM="$from" TO="$to" /usr/bin/python3 -c '
import os, sys
p = sys.argv[1]
s = open(p).read().replace(os.environ["FROM"], os.environ["TO"])
open(p, "w").write(s)' "$f"
  done
}
substitute "bash scripts/setup.sh" "test -x build/lrts"
substitute "5555" "$port_scheduler"
substitute "5454" "$port_progress"

# ---- one shell runs them all, each block's output to a file of its own ------------------------
script="$work/tutorial.sh"
{
  echo 'set -eu'
  echo "cd '$work/run'"
  for f in "$work"/blocks/*.sh; do
    n="$(basename "$f" .sh)"
    echo "echo '>>> block $n' >&2"
    echo "{"
    cat "$f"
    echo "} >'$work/out.$n' 2>&1 || { echo \"block $n failed with status \$?\" >&2; cat '$work/out.$n' >&2; exit 1; }"
  done
  echo "echo '>>> done' >&2"
} >"$script"

echo "check_tutorial: $count blocks, scheduler port $port_scheduler, progress port $port_progress"
env -u LRTS_AUTH_DIR -u XDG_STATE_HOME HOME="$work/home" TMPDIR="$work" \
  setsid bash "$script" 2>"$work/tutorial.err" &
runner=$!

# Wait for the run to end, within the deadline (the tutorial's own commands block until what
# they wait for has happened; this only bounds how long that may take).
end=$(($(date +%s) + deadline_s))
while kill -0 "$runner" 2>/dev/null; do
  if [ "$(date +%s)" -ge "$end" ]; then
    cat "$work/tutorial.err" >&2
    fail "the tutorial did not finish within ${deadline_s} s"
  fi
  sleep 0.2
done
run_status=0
wait "$runner" || run_status=$?
runner_sid="$runner"
cat "$work/tutorial.err"
[ "$run_status" -eq 0 ] || fail "the tutorial's commands failed (status $run_status)"

# ---- what the reader is told to expect -------------------------------------------------------
# The output of the first block whose text contains $1.
out_of() {
  local f
  for f in "$work"/blocks/*.sh; do
    if grep -qF -- "$1" "$f"; then
      echo "$work/out.$(basename "$f" .sh)"
      return
    fi
  done
  fail "no block contains '$1'"
}
# The output of the last block whose text contains $1.
last_out_of() {
  local f found=""
  for f in "$work"/blocks/*.sh; do
    grep -qF -- "$1" "$f" && found="$work/out.$(basename "$f" .sh)"
  done
  [ -n "$found" ] || fail "no block contains '$1'"
  echo "$found"
}
expect_lines() {  # FILE REGEX COUNT WHAT
  local got
  got="$(grep -cE -- "$2" "$1" || true)"
  [ "$got" -eq "$3" ] || { cat "$1" >&2; fail "$4: expected $3 line(s) matching $2, got $got"; }
  echo "check_tutorial: ok: $4"
}

expect_lines "$(out_of 'lrts --version')" '[0-9]+\.[0-9]+\.[0-9]+' 1 "lrts --version prints a version"
expect_lines "$(out_of 'submit "Multiplication Service Example"')" \
  '"status":"finished","service_result":54' 3 "three multiplication results, 54 each"
expect_lines "$(out_of 'submit "Progress Tracked Service Example"')" \
  '^[0-9a-f]{16}-[0-9]+$' 4 "four service ids from the detached submit"
expect_lines "$(out_of 'submit "Progress Tracked Service Example"')" \
  'task\(s\) queued under application id tutorial' 1 "submit says how to collect the results"
progress_out="$(out_of 'lrts progress ')"
grep -qE 'Loading|Doing Work' "$progress_out" ||
  { cat "$progress_out" >&2; fail "lrts progress showed no bar of the tasks"; }
echo "check_tutorial: ok: lrts progress shows the tasks' bars"

status_first="$(out_of 'lrts status')"
expect_lines "$status_first" '^workers +1 with 2 slot\(s\)' 1 "lrts status counts the worker and its two slots"
expect_lines "$(out_of 'lrts workers')" 'Multiplication Service Example' 1 \
  "lrts workers lists the worker with its services"
grep -q 'Progress Tracked Service Example' "$(out_of 'lrts tasks')" ||
  { cat "$(out_of 'lrts tasks')" >&2; fail "lrts tasks does not list the tutorial's tasks"; }
echo "check_tutorial: ok: lrts tasks lists the tutorial's tasks"
expect_lines "$(out_of 'lrts results')" '"status":"finished","service_result":40' 4 \
  "lrts results collects the four results (40 iterations each)"

status_last="$(last_out_of 'lrts status')"
[ "$status_last" != "$status_first" ] || fail "the tutorial asks for lrts status only once"
finished="$(sed -nE 's/^ended +([0-9]+) finished, ([0-9]+) failed.*/\1 \2/p' "$status_last")"
read -r n_finished n_failed <<<"${finished:-0 0}"
if [ "$n_finished" -lt 7 ] || [ "$n_failed" -ne 0 ]; then
  cat "$status_last" >&2
  fail "lrts status should count at least 7 finished and 0 failed tasks"
fi
grep -qE '^tasks +0 queued, 0 running' "$status_last" ||
  { cat "$status_last" >&2; fail "lrts status should show nothing queued or running at the end"; }
echo "check_tutorial: ok: lrts status shows the work done ($n_finished finished, 0 failed)"

expect_lines "$(out_of 'example_wait_for')" 'finished with result: 54' 1 "example_wait_for prints its result"
n_as_completed="$(grep -c 'finished with result' "$(out_of 'example_as_completed')" || true)"
[ "$n_as_completed" -ge 1 ] || fail "example_as_completed printed no result"
echo "check_tutorial: ok: example_as_completed prints $n_as_completed results"
expect_lines "$(out_of 'lrts.examples.wait_for')" 'finished with result: 54' 1 \
  "the Python example prints its result"

# The last block stops everything; nothing the tutorial started may be left.
# (A process that has just ended may still wait a moment to be reaped.)
end=$(($(date +%s) + 10))
left="$(pgrep -s "$runner_sid" || true)"
while [ -n "$left" ] && [ "$(date +%s)" -lt "$end" ]; do
  sleep 0.1
  left="$(pgrep -s "$runner_sid" || true)"
done
if [ -n "$left" ]; then
  ps -o pid,ppid,stat,args -p "$(echo "$left" | paste -sd,)" >&2
  fail "processes left after the tutorial stopped everything"
fi
echo "check_tutorial: ok: every daemon stopped"
runner=""
echo "check_tutorial: PASS ($count blocks)"
