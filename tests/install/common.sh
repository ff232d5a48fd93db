# Shell helpers of the install checks (check_deb.sh, check_systemd.sh), sourced by them. Every
# wait polls its condition with a deadline. `log` is the caller's.

# wait_gone SECONDS PID: whether PID ends within SECONDS (a zombie child counts as gone: the
# caller waits for it).
wait_gone() {
  local end=$(($(date +%s) + $1))
  while kill -0 "$2" 2>/dev/null; do
    if [ "$(awk '{print $3}' "/proc/$2/stat" 2>/dev/null)" = Z ]; then return 0; fi
    if [ "$(date +%s)" -ge "$end" ]; then return 1; fi
    sleep 0.1
  done
}
# wait_until SECONDS WHAT COMMAND...: polls COMMAND until it succeeds, fails after SECONDS.
wait_until() {
  local end=$(($(date +%s) + $1)) what="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$end" ]; then log "timed out waiting for $what"; return 1; fi
    sleep 0.1
  done
}
# A TCP port on 127.0.0.1 nothing listens on.
free_port() {
  local port
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  return 1
}
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
