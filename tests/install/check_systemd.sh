#!/usr/bin/env bash
# The systemd units of packaging/systemd, without systemd as PID 1:
#  1. systemd-analyze verify on a copy of the units whose ExecStart names the build's lrts
#     (the packaged /usr/bin/lrts is not installed here), and systemd-analyze security's
#     exposure figure for each;
#  2. the worker unit's stop: KillSignal=SIGTERM, KillMode=mixed (or main-process) and a
#     TimeoutStopSec above the --drain-timeout of /etc/lrts/lrts.conf; then the daemons run
#     as their ExecStart lines say, with the flags of the config file (EnvironmentFile: a copy
#     of packaging/lrts.conf plus a per-instance worker-NAME.conf that sets the test's ports
#     and the example service library), the worker in a session of its own as in its unit's
#     cgroup, and the worker is sent the KillSignal alone, as KillMode=mixed does:
#       a. --on-stop finish: a running task finishes (attempt 1, on the worker HOST:NAME) and
#          the worker exits 0;
#       b. a --drain-timeout of 1 s (per-instance config): a long running task is handed back
#          (queued again) and the worker exits 0;
#     and none of the worker's slot processes outlives it.
#   check_systemd.sh SOURCE_DIR [BUILD_DIR]       BUILD_DIR default: SOURCE_DIR/build; it needs
#                                                 lrts and examples/libexample_services.so
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
src="$(cd "$1" && pwd)"
build="$(cd "${2:-$src/build}" && pwd)"
lrts="$build/lrts"
lib="$build/examples/libexample_services.so"
units="$src/packaging/systemd"
[ -x "$lrts" ] || { echo "check_systemd: no $lrts" >&2; exit 1; }
[ -f "$lib" ] || { echo "check_systemd: no $lib (configure with LRTS_BUILD_EXAMPLES=ON)" >&2; exit 1; }
# 77: skipped (ctest's SKIP_RETURN_CODE).
command -v systemd-analyze >/dev/null ||
  { echo "check_systemd: skipped: systemd-analyze is missing (apt-get install systemd)" >&2; exit 77; }

work="$(mktemp -d /tmp/lrts-systemd-XXXXXX)"
pids=()
log() { echo "check_systemd: $*"; }
cleanup() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    wait_gone 20 "${pids[i]}" || kill -KILL "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  kill_session "${worker_sid:-}"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR
show_logs() { local f; for f in "$work"/*.log; do echo "---- $f"; tail -n 30 "$f"; done; }
fail() { log "FAILED: $*"; show_logs; exit 1; }
# The processes of session SID (the worker and its slots): listed, or killed.
session_members() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(awk '{print $6}' "$p/stat" 2>/dev/null)" = "$1" ] && echo "${p#/proc/}"
  done
  return 0
}
kill_session() { [ -n "$1" ] || return 0; session_members "$1" | xargs -r kill -KILL 2>/dev/null || true; }
# unit_key FILE KEY: the last value of KEY= in FILE.
unit_key() { sed -n "s/^$2=//p" "$1" | tail -1; }
seconds() { systemd-analyze timespan "$1" | sed -n 's/^ *μs: *//p' | awk '{ print $1 / 1000000 }'; }

# ---- 1. systemd-analyze verify ----------------------------------------------------------------
mkdir -p "$work/units"
for u in lrts-scheduler.service lrts-progress-server.service lrts-worker@.service; do
  [ -f "$units/$u" ] || fail "no $units/$u"
  sed "s|/usr/bin/lrts |$lrts |" "$units/$u" >"$work/units/$u"
done
# A template is verified through an instance of it.
if ! systemd-analyze verify "$work/units/lrts-scheduler.service" \
    "$work/units/lrts-progress-server.service" "$work/units/lrts-worker@check.service" \
    >"$work/verify.log" 2>&1 || grep -q lrts "$work/verify.log"; then
  cat "$work/verify.log"; fail "systemd-analyze verify"
fi
log "systemd-analyze verify: lrts-scheduler.service, lrts-progress-server.service, lrts-worker@.service ok"
for u in lrts-scheduler.service lrts-progress-server.service lrts-worker@check.service; do
  systemd-analyze security --offline=yes --no-pager "$work/units/$u" 2>/dev/null | tail -1 |
    sed 's/^→ /check_systemd: systemd-analyze security: /' || true
done

# ---- 2. the worker unit's stop ----------------------------------------------------------------
wunit="$units/lrts-worker@.service"
kill_signal="$(unit_key "$wunit" KillSignal)"; kill_mode="$(unit_key "$wunit" KillMode)"
[ "$kill_signal" = SIGTERM ] || fail "lrts-worker@.service: KillSignal=$kill_signal, not SIGTERM"
case "$kill_mode" in
  mixed|main-process) ;;
  *) fail "lrts-worker@.service: KillMode=${kill_mode:-control-group} would signal the slot processes too" ;;
esac
stop_s="$(seconds "$(unit_key "$wunit" TimeoutStopSec)")"
conf="$src/packaging/lrts.conf"
conf_drain="$(set -a; . "$conf"; set -- $LRTS_WORKER_ARGS
  d=0; while [ $# -gt 0 ]; do case "$1" in --drain-timeout|-drain-timeout) d="$2"; shift ;; esac; shift; done
  echo "$d")"
awk -v s="$stop_s" -v d="$conf_drain" 'BEGIN { exit !(d > 0 && s >= d + 60) }' ||
  fail "TimeoutStopSec ($stop_s s) must exceed lrts.conf's --drain-timeout ($conf_drain s, 0: none) by a minute"
log "worker unit: KillSignal=$kill_signal KillMode=$kill_mode TimeoutStopSec=${stop_s}s > --drain-timeout ${conf_drain}s + 60"

# The config as installed, and a per-instance one with the test's ports and services.
port="$(free_port)"; pport="$(free_port)"
while [ "$pport" = "$port" ]; do pport="$(free_port)"; done
instance=check
etc="$work/etc"; mkdir -p "$etc"
cp "$conf" "$etc/lrts.conf"

# exec_start UNIT INSTANCE: the argv systemd makes of UNIT's ExecStart= (specifiers %i %H %%,
# $VAR split at whitespace, ${VAR} one word, unset ones dropped), from the environment files of
# the unit (their /etc/lrts read from $etc), the lrts binary the build's; one word a line.
exec_start() {
  local unit="$1" inst="$2" line envs=() f w name
  line="$(unit_key "$unit" ExecStart)"
  [[ "$line" != *[\"\'\\]* ]] || { echo "$unit: quoting in ExecStart= is not handled here" >&2; return 1; }
  line="${line//%i/$inst}"; line="${line//%H/$(uname -n)}"; line="${line//%%/%}"
  while IFS= read -r f; do
    f="${f//%i/$inst}"; f="${f/#-/}"; f="${f/#\/etc\/lrts/$etc}"
    envs+=("$f")
  done < <(sed -n 's/^EnvironmentFile=//p' "$unit")
  (
    set -a
    for f in "${envs[@]}"; do if [ -f "$f" ]; then . "$f"; fi; done
    set +a
    for w in $line; do
      if [[ "$w" =~ ^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$ ]]; then
        name="${BASH_REMATCH[1]}"; [ -n "${!name+x}" ] && printf '%s\n' "${!name}"
      elif [[ "$w" =~ ^\$([A-Za-z_][A-Za-z0-9_]*)$ ]]; then
        name="${BASH_REMATCH[1]}"; for x in ${!name:-}; do printf '%s\n' "$x"; done
      elif [ "$w" = /usr/bin/lrts ]; then
        printf '%s\n' "$lrts"
      else
        printf '%s\n' "$w"
      fi
    done
  )
}

# The scheduler and the progress server as their units start them (the state dir moved into
# the work dir: the unit's /var/lib/lrts/scheduler is systemd's to make).
exec_start "$units/lrts-scheduler.service" "" >"$work/scheduler.cmd" || fail "lrts-scheduler.service's ExecStart"
mapfile -t cmd <"$work/scheduler.cmd"
"${cmd[@]}" --port "$port" --state-dir "$work/state" >"$work/scheduler.log" 2>&1 &
pids+=($!)
exec_start "$units/lrts-progress-server.service" "" >"$work/progress.cmd" ||
  fail "lrts-progress-server.service's ExecStart"
mapfile -t cmd <"$work/progress.cmd"
"${cmd[@]}" --port "$pport" >"$work/progress.log" 2>&1 &
pids+=($!)
wait_until 30 "the scheduler" listening "$port" || fail "the scheduler did not listen on $port"
log "scheduler and progress server started as their units' ExecStart: $(tr '\n' ' ' <"$work/scheduler.cmd"| sed "s|$lrts|lrts|"), $(tr '\n' ' ' <"$work/progress.cmd" | sed "s|$lrts|lrts|")"

admin=(--scheduler-address 127.0.0.1 --scheduler-port "$port")
task_state() {  # task_state SERVICE_ID: queued, running, ... as lrts tasks --json says
  "$lrts" tasks "${admin[@]}" --no-progress --json | tr '{' '\n' |
    grep -F "\"service_id\":\"$1\"" | sed -n 's/.*"state":"\([a-z_]*\)".*/\1/p'
}
running() { [ "$(task_state "$1")" = running ]; }
queued() { [ "$(task_state "$1")" = queued ]; }

# start_worker CASE: the worker as lrts-worker@check.service starts it, in a session of its own.
start_worker() {
  exec_start "$wunit" "$instance" >"$work/worker-$1.cmd" || fail "lrts-worker@.service's ExecStart"
  mapfile -t cmd <"$work/worker-$1.cmd"
  # A background job is no process group leader: setsid execs the worker without forking.
  setsid "${cmd[@]}" >"$work/worker-$1.log" 2>&1 &
  worker_pid=$!
  pids+=("$worker_pid")
  worker_sid="$worker_pid"
  wait_until 30 "the worker to register" grep -q "registered with the scheduler" "$work/worker-$1.log" ||
    fail "the worker did not register"
}
# stop_worker CASE DEADLINE: KillSignal to the worker alone (KillMode=mixed); its exit status.
stop_worker() {
  local rc=0
  kill "-${kill_signal#SIG}" "$worker_pid"
  stop_started="$(date +%s.%N)"
  wait_gone "$2" "$worker_pid" || fail "the worker did not stop within $2 s of $kill_signal"
  wait "$worker_pid" || rc=$?
  stop_took="$(awk -v a="$stop_started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
  pids=("${pids[@]:0:2}")
  local left; left="$(session_members "$worker_sid" | tr '\n' ' ')"
  [ -z "$left" ] || fail "processes of the worker's session outlived it: $left"
  worker_sid=""
  [ "$rc" -eq 0 ] || fail "the worker exited $rc after $kill_signal ($1)"
}

# a. --on-stop finish (lrts.conf): the running task finishes, the worker exits 0.
cat >"$etc/worker-$instance.conf" <<EOF
LRTS_WORKER_INSTANCE_ARGS="--scheduler-port $port --progress-port $pport --max-jobs 1 --python none --service-lib $lib"
EOF
start_worker finish
grep -qx -- "--name" "$work/worker-finish.cmd" && grep -qx -- "$(uname -n):$instance" "$work/worker-finish.cmd" ||
  fail "the worker's command line names it otherwise: $(tr '\n' ' ' <"$work/worker-finish.cmd")"
id="$("$lrts" submit "Progress Tracked Service Example" --fields '{"iterations":25,"sleep_ms":100}' \
  --application-id check-finish "${admin[@]}" 2>/dev/null | head -1)"
wait_until 30 "task $id to run" running "$id" || fail "task $id did not start"
stop_worker finish 120
grep -q "finishing 1 running" "$work/worker-finish.log" || fail "the worker did not drain its running task"
res="$("$lrts" results --application-id check-finish "${admin[@]}" --wait --timeout 30)" ||
  fail "the task did not finish: $res"
[[ "$res" == *'"status":"finished"'*'"attempt":1,'*"\"worker\":\"$(uname -n):$instance\""* ]] ||
  fail "unexpected result after the drain: $res"
log "a. --on-stop finish: $kill_signal to the worker alone while it ran $id; the task finished (attempt 1) and the worker exited 0 ${stop_took} s later"

# b. --drain-timeout 1 (per-instance config): the running task goes back, the worker exits 0.
cat >>"$etc/worker-$instance.conf" <<EOF
LRTS_WORKER_INSTANCE_ARGS="\$LRTS_WORKER_INSTANCE_ARGS --drain-timeout 1"
EOF
# EnvironmentFile= does not expand \$VAR: write the value out as systemd would read it.
line="$(set -a; . "$etc/worker-$instance.conf"; echo "$LRTS_WORKER_INSTANCE_ARGS")"
printf 'LRTS_WORKER_INSTANCE_ARGS="%s"\n' "$line" >"$etc/worker-$instance.conf"
start_worker handback
id="$("$lrts" submit "Progress Tracked Service Example" --fields '{"iterations":1000,"sleep_ms":100}' \
  --application-id check-handback "${admin[@]}" 2>/dev/null | head -1)"
wait_until 30 "task $id to run" running "$id" || fail "task $id did not start"
stop_worker handback 60
wait_until 30 "task $id to be queued again" queued "$id" ||
  fail "task $id is $(task_state "$id") after the worker stopped, not queued"
log "b. --drain-timeout 1: $kill_signal while it ran $id; the worker handed it back (queued again) and exited 0 ${stop_took} s later"
"$lrts" cancel "$id" "${admin[@]}" >/dev/null 2>&1 || true
log "passed"
