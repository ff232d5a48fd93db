#!/usr/bin/env bash
# Installs the .deb packages (scripts/package.sh) into a clean Debian 12 root and runs what they
# hold against the installed files only:
#  - apt-get install ./lrts_*.deb alone (its dependencies resolve from Debian), lrts --version,
#    the user lrts, the systemd units and the conffile /etc/lrts/lrts.conf;
#  - apt-get install ./liblrts-dev_*.deb ./python3-lrts_*.deb (and g++, cmake, make);
#  - tests/install/consumer built with find_package(lrts) against liblrts-dev: the installed
#    scheduler (as the user lrts, its journal in /var/lib/lrts/scheduler as the unit has it),
#    the consumer's worker and application;
#  - python3 -c 'import lrts', then the installed lrts worker running Python services and
#    python3 -m lrts.examples.wait_for.
#   check_deb.sh SOURCE_DIR DEB_DIR       exit status 0: passed, 77: skipped (see pick), else failed
#
# The clean root is made by debootstrap --variant=minbase bookworm from the machine's apt
# mirror (about a minute; needs root and the network), and the daemons run in it with chroot:
# /proc, /sys and a tmpfs on /dev/shm (the worker's shared memory) are mounted in it, and
# the network is the machine's (a chroot shares the network namespace: loopback works, ports
# are chosen free on the machine).
# Environment:
#   LRTS_DEB_MIRROR=URL   Debian mirror (default: the bookworm one of /etc/apt/sources.list*)
#   LRTS_DEB_BASE=FILE    a tarball of the fresh minbase root: made after the first
#                         debootstrap, unpacked instead of it afterwards (seconds instead of
#                         a minute)
#   LRTS_DEB_METHOD=extract   no clean root (no root, no debootstrap or no network):
#                         dpkg -x the packages into a temporary tree, check with
#                         apt-get install --simulate that their dependencies resolve on this
#                         machine, and run the same checks from the tree (weaker: the
#                         machine's libraries and build tools, not a clean system's)
#   LRTS_DEB_KEEP=1       keep the work directory (logs, the root) after a failure
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
src="$(cd "$1" && pwd)"
[ -d "$2" ] || { echo "check_deb: skipped: no $2 (scripts/package.sh makes it)" >&2; exit 77; }
debs="$(cd "$2" && pwd)"
shopt -s nullglob
# Exit status 77 (ctest's SKIP_RETURN_CODE) when what the check needs is not there: no
# packages in DEB_DIR, or no root or debootstrap for the clean root.
pick() {
  local f=("$debs"/$1_*.deb)
  if ((${#f[@]} == 0)); then echo "check_deb: skipped: no $1_*.deb in $debs (scripts/package.sh makes them)" >&2; exit 77; fi
  if ((${#f[@]} > 1)); then echo "check_deb: want one $1_*.deb in $debs, found ${#f[@]}" >&2; exit 1; fi
  echo "${f[0]}"
}
deb_lrts="$(pick lrts)"; deb_dev="$(pick liblrts-dev)"; deb_py="$(pick python3-lrts)"
version="$(sed -n 's/^project(lrts VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")"
method="${LRTS_DEB_METHOD:-chroot}"
if [ "$method" = chroot ] && { [ "$(id -u)" -ne 0 ] || ! command -v debootstrap >/dev/null; }; then
  echo "check_deb: skipped: the clean root needs root and debootstrap (apt-get install" \
       "debootstrap); LRTS_DEB_METHOD=extract is the weaker check without them" >&2
  exit 77
fi

work="$(mktemp -d /tmp/lrts-deb-XXXXXX)"
root="$work/root"
pids=()
mounts=()
ok=0
log() { echo "check_deb: $*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

# Every process running in the root (daemons, slot processes, whatever they started), then
# the ones this script started outside it.
kill_root_processes() {
  [ -d "$root" ] || return 0
  local p r
  for p in /proc/[0-9]*; do
    r="$(readlink "$p/root" 2>/dev/null)" || continue
    if [ "$r" = "$root" ]; then kill -KILL "${p#/proc/}" 2>/dev/null || true; fi
  done
}
cleanup() {
  local i
  # Workers before the scheduler: they deliver what they hold. TERM, then KILL what is left.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    wait_gone 20 "${pids[i]}" || kill -KILL "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  kill_root_processes
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" 2>/dev/null || true
  done
  if ((ok)) || [ "${LRTS_DEB_KEEP:-0}" != 1 ]; then
    # Never follow a mount that failed to go away into the machine's /proc or /dev/shm.
    if ! grep -q " $root/" /proc/mounts; then rm -rf "$work"; else log "left $work (still mounted)"; fi
  else
    log "kept $work"
  fi
}
trap cleanup EXIT
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

# spawn LOG FUNCTION ARGS...: FUNCTION (in_root, as_lrts) in the background, its process in
# pids (the function execs its command, so the pid is the daemon's).
EXEC=""
spawn() { local log="$1"; shift; ( EXEC=exec; "$@" ) >"$log" 2>&1 & pids+=($!); }
show_logs() { local f; for f in "$work"/*.log; do echo "---- $f"; tail -n 40 "$f"; done; }
fail() { log "FAILED: $*"; show_logs; exit 1; }

# ---- the root -------------------------------------------------------------------------------
# in_root COMMAND...: runs COMMAND in the clean root (or, with extract, in the tree's view).
if [ "$method" = chroot ]; then
  mirror="${LRTS_DEB_MIRROR:-}"
  sources=(/etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list)
  for ((i = ${#sources[@]} - 1; i >= 0; i--)); do [ -f "${sources[i]}" ] || unset 'sources[i]'; done
  sources=("${sources[@]}" /dev/null)
  if [ -z "$mirror" ]; then
    # The first URI of a Debian bookworm (not -security) source: deb822 .sources or one-line.
    mirror="$(awk '
      /^[[:space:]]*URIs:/ { uri = $2 }
      /^[[:space:]]*Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm" && uri != "") { print uri; exit } }
      /^[[:space:]]*$/ { uri = "" }
      /^[[:space:]]*deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i ~ /:\/\//) { if ($(i+1) == "bookworm") { print $i; exit } break } }
    ' "${sources[@]}" </dev/null | head -1)"
    mirror="${mirror:-http://deb.debian.org/debian}"
  fi
  security="$(awk '
      /^[[:space:]]*URIs:/ { uri = $2 }
      /^[[:space:]]*Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm-security" && uri != "") { print uri; exit } }
      /^[[:space:]]*$/ { uri = "" }
      /^[[:space:]]*deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { if ($(i+1) == "bookworm-security") { print $i; exit } break } }
    ' "${sources[@]}" </dev/null | head -1)"
  security="${security:-http://deb.debian.org/debian-security}"

  t="$(now)"
  if [ -n "${LRTS_DEB_BASE:-}" ] && [ -f "$LRTS_DEB_BASE" ]; then
    mkdir -p "$root"
    tar -C "$root" -xpf "$LRTS_DEB_BASE"
    log "clean root unpacked from $LRTS_DEB_BASE in $(since "$t")"
  else
    log "debootstrap --variant=minbase bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
      fail "debootstrap (see $work/debootstrap.log)"
    log "debootstrap took $(since "$t")"
    if [ -n "${LRTS_DEB_BASE:-}" ]; then
      tar -C "$root" -cpf "$LRTS_DEB_BASE.tmp" . && mv "$LRTS_DEB_BASE.tmp" "$LRTS_DEB_BASE"
      log "saved the clean root as $LRTS_DEB_BASE"
    fi
  fi
  cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  mount -t proc proc "$root/proc"; mounts+=("$root/proc")
  mount -t sysfs -o ro sysfs "$root/sys"; mounts+=("$root/sys")
  mkdir -p "$root/dev/shm"
  mount -t tmpfs -o mode=1777,size=256m tmpfs "$root/dev/shm"; mounts+=("$root/dev/shm")
  mkdir -p "$root/tmp/debs"
  cp "$deb_lrts" "$deb_dev" "$deb_py" "$root/tmp/debs/"
  in_root() { $EXEC chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
  as_lrts() { $EXEC chroot --userspec=lrts:lrts "$root" env -i PATH=/usr/bin:/bin HOME=/var/lib/lrts LANG=C.UTF-8 "$@"; }
  apt_in_root() { in_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0 "$@"; }
  rootpath() { echo "$root$1"; }

  t="$(now)"
  apt_in_root update >"$work/apt-update.log" 2>&1 || fail "apt-get update in the root"
  # The runtime package alone, as `apt install ./lrts_*.deb` on a fresh machine.
  apt_in_root install "/tmp/debs/$(basename "$deb_lrts")" >"$work/apt-lrts.log" 2>&1 ||
    fail "apt-get install ./$(basename "$deb_lrts")"
  log "apt-get install ./$(basename "$deb_lrts") took $(since "$t")"
else
  # extract: the packages' files in a tree; dependencies checked against this machine's apt.
  log "LRTS_DEB_METHOD=extract: no clean root; dpkg -x into $root"
  apt-get install --simulate -q "$deb_lrts" "$deb_dev" "$deb_py" >"$work/apt-simulate.log" 2>&1 ||
    fail "apt-get install --simulate of the packages (their dependencies do not resolve)"
  for d in "$deb_lrts" "$deb_dev" "$deb_py"; do dpkg -x "$d" "$root"; done
  rewrite() {  # the tree's /usr for the paths the commands name
    local a out=()
    for a in "$@"; do case "$a" in /usr/bin/lrts) out+=("$root/usr/bin/lrts") ;; /tmp/*) out+=("$work${a#/tmp}") ;; *) out+=("$a") ;; esac; done
    $EXEC env PYTHONPATH="$root/usr/lib/python3/dist-packages" CMAKE_PREFIX_PATH="$root/usr" "${out[@]}"
  }
  in_root() { rewrite "$@"; }
  as_lrts() { rewrite "$@"; }
  rootpath() { case "$1" in /tmp/*) echo "$work${1#/tmp}" ;; *) echo "$root$1" ;; esac; }
fi

# ---- the lrts package -----------------------------------------------------------------------
got="$(in_root /usr/bin/lrts --version)" || fail "lrts --version"
[ "$got" = "$version" ] || fail "lrts --version says '$got', CMakeLists.txt $version"
log "lrts --version: $got"
for f in /lib/systemd/system/lrts-scheduler.service /lib/systemd/system/lrts-progress-server.service \
         "/lib/systemd/system/lrts-worker@.service" /etc/lrts/lrts.conf; do
  [ -f "$(rootpath "$f")" ] || fail "$f is not installed"
done
if [ "$method" = chroot ]; then
  in_root dpkg-query -W -f='${Conffiles}\n' lrts | grep -q '^ /etc/lrts/lrts.conf ' ||
    fail "/etc/lrts/lrts.conf is not a conffile of lrts"
  in_root getent passwd lrts | grep -q '^lrts:x:[0-9]*:[0-9]*:.*:/var/lib/lrts:' ||
    fail "postinst made no user lrts with home /var/lib/lrts"
  [ "$(stat -c %u "$root/var/lib/lrts")" = "$(in_root id -u lrts)" ] ||
    fail "/var/lib/lrts is not the user lrts's"
  # The rest, and what an outside project's build needs.
  t="$(now)"
  apt_in_root install "/tmp/debs/$(basename "$deb_dev")" "/tmp/debs/$(basename "$deb_py")" \
    g++ cmake make >"$work/apt-rest.log" 2>&1 ||
    fail "apt-get install ./$(basename "$deb_dev") ./$(basename "$deb_py") g++ cmake make"
  log "apt-get install of liblrts-dev, python3-lrts, g++, cmake, make took $(since "$t")"
  in_root dpkg-query -W -f='${Status}\n' lrts liblrts-dev python3-lrts |
    grep -vq '^install ok installed$' && fail "a package is not fully installed"
fi

# ---- C++: an outside project against liblrts-dev; the installed scheduler as lrts -----------
t="$(now)"
cp -r "$src/tests/install/consumer" "$(rootpath /tmp/consumer)"
in_root cmake -S /tmp/consumer -B /tmp/consumer-build -DCMAKE_BUILD_TYPE=Release \
  >"$work/consumer-configure.log" 2>&1 || fail "find_package(lrts) against liblrts-dev"
in_root cmake --build /tmp/consumer-build -j "$(nproc)" >"$work/consumer-build.log" 2>&1 ||
  fail "building tests/install/consumer against liblrts-dev"
log "tests/install/consumer configured and built against the installed liblrts-dev in $(since "$t")"

port="$(free_port)"
if [ "$method" = chroot ]; then
  spawn "$work/scheduler.log" as_lrts /usr/bin/lrts scheduler --address 127.0.0.1 \
    --port "$port" --state-dir /var/lib/lrts/scheduler
else
  spawn "$work/scheduler.log" as_lrts /usr/bin/lrts scheduler --address 127.0.0.1 \
    --port "$port" --state-dir "$work/state"
fi
wait_until 30 "the scheduler on port $port" listening "$port" || fail "the scheduler did not listen"
spawn "$work/worker.log" in_root /tmp/consumer-build/my_worker -scheduler-port "$port" -max-jobs 2
out="$(in_root timeout 60 /tmp/consumer-build/my_app "$port" 2>"$work/app.log")" || fail "my_app"
expected=$'square 9\nsquare 16\nsquare 25\ntyped 36'
[ "$out" = "$expected" ] || fail "my_app printed: $out"
if [ "$method" = chroot ]; then who="installed, as the user lrts"; else who="from the packages' files"; fi
log "scheduler ($who) + consumer worker + consumer application: $(echo "$out" | tr '\n' ' ')"
if [ "$method" = chroot ]; then
  [ -f "$root/var/lib/lrts/scheduler/lrts-state.db" ] || fail "no journal in /var/lib/lrts/scheduler"
fi
# The consumer's worker goes; the scheduler stays for the Python run.
kill -TERM "${pids[1]}"; wait_gone 30 "${pids[1]}" || fail "the consumer worker did not stop on SIGTERM"
wait "${pids[1]}" || fail "the consumer worker exited $? on SIGTERM"

# ---- Python: import lrts, the installed lrts worker running Python services -----------------
in_root /usr/bin/python3 -c 'import lrts, sys; print("import lrts:", lrts.__file__, lrts.__version__)' \
  || fail "python3 -c 'import lrts'"
pport="$(free_port)"
spawn "$work/progress.log" in_root /usr/bin/lrts progress-server --address 127.0.0.1 --port "$pport"
spawn "$work/py-worker.log" in_root /usr/bin/lrts worker --scheduler-port "$port" \
  --progress-port "$pport" --max-jobs 1 --python /usr/bin/python3
out="$(in_root sh -c "cd /tmp && timeout 60 /usr/bin/python3 -m lrts.examples.wait_for \
  --scheduler-port $port --progress-port $pport" 2>"$work/py-app.log")" || fail "lrts.examples.wait_for"
[[ "$out" =~ ^Service\ with\ ID:\ [0-9a-f]{16}-[0-9a-f]+\ finished\ with\ result:\ 54$ ]] ||
  fail "lrts.examples.wait_for printed: $out"
grep -q "runs Python services" "$work/py-worker.log" || fail "the installed worker did not find Python"
log "installed lrts worker + python3 -m lrts.examples.wait_for: $out"

# ---- systemd: the packaged units booted for real (systemd-nspawn) ------------------------------
# The clean root gets systemd and boots in a container (systemd-nspawn -b, the machine's
# network); the units then run as systemd runs them, hardening included: the scheduler, the
# progress server and lrts-worker@1 from /etc/lrts/lrts.conf (ports changed to free ones) and
# /etc/lrts/worker-1.conf; a program task runs and `systemctl stop lrts-worker@1` drains it
# (it finishes, the unit stops with Result=success); a Python service runs in the worker.
# LRTS_DEB_SYSTEMD=0 skips this; it is skipped when systemd-nspawn (systemd-container) is missing.
if [ "$method" = chroot ] && [ "${LRTS_DEB_SYSTEMD:-1}" != 0 ] && command -v systemd-nspawn >/dev/null; then
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    wait_gone 20 "${pids[i]}" || kill -KILL "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  pids=()
  kill_root_processes
  t="$(now)"
  apt_in_root install systemd >"$work/apt-systemd.log" 2>&1 || fail "apt-get install systemd in the root"
  log "apt-get install systemd took $(since "$t")"
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[i]}"; done
  mounts=()
  port="$(free_port)"; pport="$(free_port)"
  while [ "$pport" = "$port" ]; do pport="$(free_port)"; done
  sed -i "s/--port 5555/--port $port/; s/--port 5454/--port $pport/;
          s/--scheduler-port 5555/--scheduler-port $port/; s/--progress-port 5454/--progress-port $pport/" \
    "$root/etc/lrts/lrts.conf"
  grep -q -- "--scheduler-port $port " "$root/etc/lrts/lrts.conf" || fail "the ports of lrts.conf changed form"
  echo 'LRTS_WORKER_INSTANCE_ARGS="--max-jobs 2 --allow-commands /usr/bin/sleep"' \
    >"$root/etc/lrts/worker-1.conf"
  t="$(now)"
  machine="lrts-check-$$"
  systemd-nspawn -D "$root" -b --register=no --keep-unit --console=passive -M "$machine" \
    >"$work/nspawn.log" 2>&1 &
  nspawn=$!
  pids+=("$nspawn")
  init_pid() { ps -o pid=,comm= --ppid "$nspawn" | awk '$2 == "systemd" { print $1; exit }'; }
  have_init() { [ -n "$(init_pid)" ]; }
  wait_until 60 "systemd to start in the container" have_init || fail "systemd-nspawn -b"
  init="$(init_pid)"
  X() { nsenter -t "$init" -a "$@"; }
  booted() { case "$(X systemctl is-system-running 2>/dev/null)" in running|degraded) return 0 ;; esac; return 1; }
  wait_until 120 "the container to boot" booted || fail "the container did not boot: $(X systemctl is-system-running)"
  log "booted the root with systemd-nspawn in $(since "$t") ($(X systemctl is-system-running))"
  X systemctl start lrts-scheduler.service lrts-progress-server.service lrts-worker@1.service ||
    { X journalctl -u 'lrts-*' --no-pager | tail -30; fail "systemctl start"; }
  worker_registered() { X journalctl -u lrts-worker@1 --no-pager | grep -q "registered with the scheduler"; }
  wait_until 30 "lrts-worker@1 to register" worker_registered ||
    { X journalctl -u 'lrts-*' --no-pager | tail -30; fail "lrts-worker@1 did not register"; }
  X systemctl is-active -q lrts-scheduler.service lrts-progress-server.service lrts-worker@1.service ||
    fail "a unit is not active"
  out="$(X sh -c "cd /tmp && timeout 60 python3 -m lrts.examples.wait_for --scheduler-port $port \
    --progress-port $pport" 2>&1)" || fail "lrts.examples.wait_for on the units: $out"
  [[ "$out" == *"finished with result: 54" ]] || fail "lrts.examples.wait_for on the units printed: $out"
  log "units started; a Python service on lrts-worker@1: $out"
  id="$(X lrts submit --scheduler-port "$port" --application-id deb-systemd -- /usr/bin/sleep 3 2>/dev/null | head -1)"
  task_running() { X lrts tasks --scheduler-port "$port" --state running --no-progress --json | grep -qF "\"$id\""; }
  wait_until 30 "task $id to run" task_running || fail "the program task did not start"
  t="$(now)"
  X systemctl stop lrts-worker@1.service
  took="$(since "$t")"
  [ "$(X systemctl show -p Result --value lrts-worker@1.service)" = success ] &&
    [ "$(X systemctl show -p ExecMainStatus --value lrts-worker@1.service)" = 0 ] ||
    fail "lrts-worker@1 stopped with $(X systemctl show -p Result -p ExecMainStatus lrts-worker@1.service | tr '\n' ' ')"
  X journalctl -u lrts-worker@1 --no-pager | grep -q "finishing 1 running" ||
    fail "lrts-worker@1 did not drain: $(X journalctl -u lrts-worker@1 --no-pager | tail -5)"
  res="$(X lrts results --scheduler-port "$port" --application-id deb-systemd --wait --timeout 30)" ||
    fail "the program task did not finish: $res"
  [[ "$res" == *'"status":"finished"'*'"attempt":1,'* ]] || fail "the program task: $res"
  log "systemctl stop lrts-worker@1 during a task: drained in $took, the task finished (attempt 1), Result=success"
  # Removal with the daemons running: prerm stops them; purge takes the conffile, and the
  # scheduler's journal stays.
  X systemctl start lrts-worker@1.service
  X env DEBIAN_FRONTEND=noninteractive apt-get -q -y purge python3-lrts liblrts-dev lrts \
    >"$work/apt-purge.log" 2>&1 || fail "apt-get purge of the packages"
  for u in lrts-scheduler.service lrts-progress-server.service lrts-worker@1.service; do
    ! X systemctl is-active -q "$u" || fail "$u still runs after the packages were removed"
  done
  [ ! -e "$root/etc/lrts/lrts.conf" ] || fail "purge left /etc/lrts/lrts.conf"
  [ -f "$root/var/lib/lrts/scheduler/lrts-state.db" ] || fail "purge removed the scheduler's journal"
  log "apt-get purge with the units running: stopped, /etc/lrts/lrts.conf gone, the journal kept"
  X systemctl poweroff >/dev/null 2>&1 || true
  wait_gone 60 "$nspawn" || fail "the container did not power off"
  wait "$nspawn" || true
  pids=()
  method="chroot, then systemd-nspawn"
fi

ok=1
log "passed ($method)"
