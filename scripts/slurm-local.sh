#!/usr/bin/env bash
# Brings up (and tears down) a real one-node Slurm cluster on loopback, for tests and benchmarks.
#   scripts/slurm-local.sh start DIR   start a private munged, slurmctld and slurmd as root with
#                                      everything (config, key, state, spool, logs, pid files)
#                                      under DIR; wait until the node is idle; print the shell
#                                      lines that clients need:  eval "$(scripts/slurm-local.sh start DIR)"
#   scripts/slurm-local.sh stop DIR    cancel the jobs (SIGKILL to their processes at once), stop the
#                                      three daemons (from DIR/run/*.pid),
#                                      wait for them and for any leftover job step to exit
#   scripts/slurm-local.sh packages    the Debian packages it needs (also scripts/packages-slurm.txt)
#
# The cluster: ClusterName lrtslocal, one node "lrts1" (NodeAddr 127.0.0.1) with CPUs=16 whatever
# the machine has (SlurmdParameters=config_overrides), one partition "lrts" (Default, no time
# limit), select/cons_tres CR_CPU (one CPU per job), proctrack/pgid, task/none, no cgroups,
# no accounting, MinJobAge=2, KillWait=5. munged is private (its own key and socket in DIR,
# given to Slurm by AuthInfo=socket=...), so a system munged, if any, is left alone. Ports are
# picked free on each start. Jobs run as root. Needs root; no systemd (daemons start directly).
# Start again on a running DIR: prints the exports and exits 0. Start on a stopped or broken
# DIR: stops what is left and starts afresh (Slurm state is cleared; logs are kept, appended).
# SLURM_LOCAL_TIMEOUT (seconds, default 60): the deadline for start and stop to wait.
set -euo pipefail

packages=(munge slurmctld slurmd slurm-client)
timeout="${SLURM_LOCAL_TIMEOUT:-60}"
node=lrts1
starting=0

die() {
  # die MESSAGE [LOG...]: one line on stderr, then the tail of each log given
  echo "slurm-local: $1" >&2
  shift
  local f
  for f in "$@"; do
    if [ -s "$f" ]; then
      echo "--- tail of $f" >&2
      tail -n 20 "$f" >&2
    fi
  done
  # A failed start leaves nothing running.
  if ((starting)); then stop >/dev/null 2>&1 || true; fi
  exit 1
}

usage() {
  echo "usage: $0 start DIR | stop DIR | packages" >&2
  exit 2
}

# pid_of NAME: the pid in DIR/run/NAME.pid if that process is alive, else nothing (status 1)
pid_of() {
  local f="$dir/run/$1.pid" pid cmd
  [ -s "$f" ] || return 1
  pid="$(tr -dc 0-9 <"$f")"
  [ -n "$pid" ] && alive "$pid" || return 1
  # A stale pid file may name a pid reused by another process: ours name DIR on their command line.
  cmd="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" || return 1
  [[ "$cmd" == *"$dir/"* ]] || return 1
  echo "$pid"
}

# alive PID: the process exists and is not a zombie
alive() {
  local st
  read -r st 2>/dev/null <"/proc/$1/stat" || return 1
  st="${st##*) }"
  [ "${st%% *}" != Z ]
}

# used_ports: every local TCP/UDP port in use (any state), one per line, in decimal
used_ports() {
  local f
  for f in /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6; do
    [ -r "$f" ] || continue
    awk 'NR > 1 { split($2, a, ":"); print a[2] }' "$f"
  done | while read -r hex; do echo $((16#$hex)); done | sort -un
}

# free_port EXCEPT...: a random port in 20000..59999 that nothing uses and not among EXCEPT
free_port() {
  local used p
  used="$(used_ports)"
  for _ in $(seq 1 200); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if ! grep -qx "$p" <<<"$used" && ! printf '%s\n' "$@" | grep -qx "$p"; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

exports() {
  printf 'export SLURM_CONF=%q\n' "$dir/slurm.conf"
}

# slurm_up: slurmctld answers and the node is idle (or mixed/allocated: it is up and usable)
slurm_up() {
  local state
  SLURM_CONF="$dir/slurm.conf" scontrol ping 2>/dev/null | grep -q 'is UP' || return 1
  state="$(SLURM_CONF="$dir/slurm.conf" sinfo -h -n "$node" -o '%T' 2>/dev/null)" || return 1
  case "$state" in idle | mixed | allocated | completing) return 0 ;; *) return 1 ;; esac
}

write_conf() {
  local ctld_port="$1" slurmd_port="$2" host
  host="$(hostname -s)"
  cat >"$dir/slurm.conf" <<EOF
# Written by scripts/slurm-local.sh: a private one-node Slurm cluster on loopback.
ClusterName=lrtslocal
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.own.pid
SlurmdPidFile=$dir/run/slurmd.own.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups, no systemd, no accounting.
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
# 16 one-CPU slots whatever the hardware: slurmd reports the configured node, not the machine.
SlurmdParameters=config_overrides
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# Schedule at once; finished jobs leave squeue after 2 s.
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0,sched_interval=1,sched_min_interval=0
MinJobAge=2
KillWait=5
InactiveLimit=0
SlurmdTimeout=30
SlurmctldTimeout=30
MessageTimeout=10
ReturnToService=2
# Reject at submit what can never run (e.g. -c 17) instead of leaving it pending.
EnforcePartLimits=ALL
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$host CPUs=16 RealMemory=1024 State=UNKNOWN
PartitionName=lrts Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

stop() {
  local pid name deadline
  [ -d "$dir" ] || return 0
  # Cancel every job while slurmctld and slurmd still run, so that Slurm sees them end; kill the
  # job processes at once rather than after KillWait; wait until no job is left.
  if pid_of slurmctld >/dev/null && pid_of slurmd >/dev/null && [ -f "$dir/slurm.conf" ]; then
    export SLURM_CONF="$dir/slurm.conf"
    mapfile -t jobs < <(squeue -h -o '%A' 2>/dev/null || true)
    if ((${#jobs[@]})); then
      scancel "${jobs[@]}" 2>/dev/null || true
      kill_jobs
      deadline=$((SECONDS + timeout))
      while [ -n "$(squeue -h -o '%A' 2>/dev/null)" ] && ((SECONDS < deadline)); do
        kill_jobs
        sleep 0.2
      done
    fi
  fi
  # All three at once; a zombie counts as gone (PID 1 may be slow to reap the orphans).
  local pids=()
  for name in slurmd slurmctld munged; do
    if pid="$(pid_of "$name")"; then pids+=("$pid"); fi
  done
  # and any of ours that lost its pid file
  mapfile -t -O "${#pids[@]}" pids < <(daemons)
  if ((${#pids[@]})); then kill -TERM "${pids[@]}" 2>/dev/null || true; fi
  deadline=$((SECONDS + timeout))
  for pid in "${pids[@]}"; do
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
    if alive "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      while alive "$pid"; do sleep 0.05; done
    fi
  done
  rm -f "$dir/run/slurmd.pid" "$dir/run/slurmctld.pid" "$dir/run/munged.pid"
  # Leftover job steps (slurmstepd outlives slurmd) and what they run.
  kill_jobs
  # shellcheck disable=SC2046
  kill -KILL $(stepds) 2>/dev/null || true
}

# kill_jobs: SIGKILL to every process below our slurmstepds, and to their process groups (each
# batch script leads one, which proctrack/pgid tracks: it also holds orphans of the job)
kill_jobs() {
  local steps mine victims
  steps="$(stepds)"
  [ -n "$steps" ] || return 0
  mine="$(proc_table | awk -v me=$$ '$1 == me { print $3 }')"
  # pids below the steps, and -pgrp of the steps' children (not ours, not a step's own group)
  victims="$(proc_table | awk -v steps="$steps" -v mine="$mine" '
    BEGIN { n = split(steps, a, "[ \n]+"); for (i = 1; i <= n; i++) if (a[i] != "") step[a[i]] = 1 }
    { parent[$1] = $2; group[$1] = $3 }
    END {
      for (p in parent) {
        q = p; depth = 0
        while (q in parent && !(q in step) && q > 1 && depth++ < 100) { child = q; q = parent[q] }
        if (!(q in step) || p == q) continue
        print p
        if (parent[p] == q && group[p] > 1 && group[p] != mine && !(group[p] in step)) print "-" group[p]
      }
    }' | sort -u)"
  # shellcheck disable=SC2086
  [ -z "$victims" ] || kill -KILL -- $victims 2>/dev/null || true
}

# proc_table: "pid ppid pgrp" for every process
proc_table() {
  local f st pid rest
  for f in /proc/[0-9]*/stat; do
    read -r st 2>/dev/null <"$f" || continue
    pid="${st%% *}"
    rest="${st##*) }"
    read -r _ ppid pgrp _ <<<"$rest"
    echo "$pid $ppid $pgrp"
  done
}

# daemons: pids of the munged, slurmctld and slurmd processes whose command line names DIR
daemons() {
  local p comm cmd
  for p in /proc/[0-9]*; do
    read -r comm 2>/dev/null <"$p/comm" || continue
    case "$comm" in munged | slurmctld | slurmd) ;; *) continue ;; esac
    cmd="$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")" || continue
    if [[ "$cmd" == *"$dir/"* ]]; then echo "${p#/proc/}"; fi
  done
}

# stepds: pids of the slurmstepd processes that have DIR/log/slurmd.log open
stepds() {
  local p fd comm
  for p in /proc/[0-9]*; do
    read -r comm 2>/dev/null <"$p/comm" || continue
    [ "$comm" = slurmstepd ] || continue
    for fd in "$p"/fd/*; do
      if [ "$(readlink "$fd" 2>/dev/null)" = "$dir/log/slurmd.log" ]; then
        echo "${p#/proc/}"
        break
      fi
    done
  done
}

start() {
  local ctld_port slurmd_port deadline pid name
  [ "$(id -u)" -eq 0 ] || die "start needs root (the daemons and jobs run as root)"
  for name in munged mungekey slurmctld slurmd scontrol sinfo; do
    command -v "$name" >/dev/null || die "$name not found; install: ${packages[*]}"
  done
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if pid_of munged >/dev/null && pid_of slurmctld >/dev/null && pid_of slurmd >/dev/null && slurm_up; then
    exports
    return 0
  fi
  stop
  starting=1
  # munged insists that its directories be writable by no one but their owner.
  chmod 0755 "$dir"
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log" "$dir/run"
  chmod 0700 "$dir/state" "$dir/spool"
  chmod 0755 "$dir/munge" "$dir/log" "$dir/run"
  rm -rf "${dir:?}/state/"* "${dir:?}/spool/"*
  rm -f "$dir/munge/munge.socket" "$dir/munge/munge.socket.lock"

  [ -s "$dir/munge/munge.key" ] || mungekey --create --keyfile="$dir/munge/munge.key" ||
    die "mungekey failed"
  chmod 0600 "$dir/munge/munge.key"
  munged --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --log-file="$dir/log/munged.log" --pid-file="$dir/run/munged.pid" \
    --seed-file="$dir/munge/munged.seed" </dev/null >>"$dir/log/munged.out" 2>&1 ||
    die "munged failed to start" "$dir/log/munged.out" "$dir/log/munged.log"
  pid_of munged >/dev/null || die "munged did not stay up" "$dir/log/munged.log"

  slurmd_port="$(free_port)" || die "no free port found"
  ctld_port="$(free_port "$slurmd_port")" || die "no free port found"
  write_conf "$ctld_port" "$slurmd_port"

  # Foreground daemons (-D) in their own session, all fds away from the caller (whose $(...)
  # would otherwise wait for them); the script records the pids itself.
  setsid slurmctld -D -c -f "$dir/slurm.conf" </dev/null >>"$dir/log/slurmctld.out" 2>&1 &
  echo $! >"$dir/run/slurmctld.pid"
  setsid slurmd -D -N "$node" -f "$dir/slurm.conf" </dev/null >>"$dir/log/slurmd.out" 2>&1 &
  echo $! >"$dir/run/slurmd.pid"

  deadline=$((SECONDS + timeout))
  until slurm_up; do
    for name in slurmctld slurmd; do
      pid_of "$name" >/dev/null ||
        die "$name exited during start" "$dir/log/$name.out" "$dir/log/$name.log"
    done
    if ((SECONDS >= deadline)); then
      SLURM_CONF="$dir/slurm.conf" sinfo -N -l >"$dir/log/sinfo.txt" 2>&1 || true
      die "the node is not idle after ${timeout}s" "$dir/log/sinfo.txt" "$dir/log/slurmctld.log" \
        "$dir/log/slurmd.log"
    fi
    sleep 0.2
  done
  exports
}

case "${1:-}" in
  packages)
    [ $# -eq 1 ] || usage
    printf '%s\n' "${packages[@]}"
    ;;
  start | stop)
    [ $# -eq 2 ] || usage
    dir="$2"
    if [ "$1" = start ]; then
      start
    else
      [ -d "$dir" ] || exit 0
      dir="$(cd "$dir" && pwd)"
      stop
    fi
    ;;
  *) usage ;;
esac
