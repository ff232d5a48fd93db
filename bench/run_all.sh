#!/usr/bin/env bash
# Runs every benchmark workload on lrts and, in the same run, on its peers (Dask distributed with
# the default worker-saturation and with inf; Celery with Redis), then prints the comparison
# table and draws the scaling plots.
#   bench/run_all.sh [--quick]        --quick: smaller sizes, about 5 minutes (full run: about 15)
# Results: bench/results/<time>/ (results.jsonl, report.md, *.png, logs).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
quick=0
[ "${1:-}" = "--quick" ] && quick=1
build="$root/build"
bash "$root/scripts/setup.sh" --bench "$build"

out="$root/bench/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
results="$out/results.jsonl"
b="$build/bench"
py=/usr/bin/python3
peers="$root/bench/peers"
state="$(mktemp -d /tmp/lrts-bench-state-XXXXXX)"
trap 'rm -rf "$state"' EXIT
# One descriptor per simulated worker, in the scheduler and in the load generator.
ulimit -Hn 1100000 2>/dev/null || true
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true

run() {  # run NAME CMD...: appends the command's JSON lines to results.jsonl
  local name="$1"; shift
  echo "== $name" >&2
  if ! "$@" >>"$results" 2>>"$out/$name.log"; then
    echo "   (failed; see $out/$name.log)" >&2
  fi
}
peer() {  # peer NAME SCRIPT ARGS...: one peer workload, in bench/peers
  local name="$1"; shift
  echo "== $name" >&2
  if ! (cd "$peers" && "$py" "$@") >>"$results" 2>>"$out/$name.log"; then
    echo "   (failed; see $out/$name.log)" >&2
  fi
}
fresh_state() { rm -rf "$state"; mkdir -p "$state"; echo "$state/journal"; }

if ((quick)); then
  tasks=20000; peer_tasks=2000; rtt=500; peer_rtt=100; submit=100000; peer_submit=5000
  long=10; runs=3; worker_counts=(10 1000 10000); scale_tasks=(1000 10000 100000)
else
  tasks=100000; peer_tasks=10000; rtt=2000; peer_rtt=300; submit=1000000; peer_submit=20000
  long=60; runs=5; worker_counts=(10 1000 10000 19000); scale_tasks=(1000 10000 100000 1000000)
fi
dask_default=(dask_bench.py --saturation default)
dask_inf=(dask_bench.py --saturation inf)

# 1 + 2: no-op throughput (1 worker, 2 slots) and the round trip of one task
run e2e-journal "$b/lrts_e2e_bench" --json --tasks "$tasks" --runs "$runs" --round-trips "$rtt" \
  --state-dir "$(fresh_state)"
run e2e-memory "$b/lrts_e2e_bench" --json --tasks "$tasks" --runs "$runs" --round-trips "$rtt"
for p in dask_default dask_inf; do
  declare -n cmd="$p"
  peer "$p-throughput" "${cmd[@]}" --workload noop_throughput --tasks "$peer_tasks" --runs 3
  peer "$p-round-trip" "${cmd[@]}" --workload round_trip --tasks "$peer_rtt" --runs 3
done
peer celery-throughput celery_bench.py --workload noop_throughput --tasks "$peer_tasks" --runs 3
peer celery-round-trip celery_bench.py --workload round_trip --tasks "$peer_rtt" --runs 3

# Python: the same no-op and the same 100 ms sleep through lrts's Python package and the peers,
# and progress counting from Python against tqdm
if ((quick)); then py_tasks=10000; py_sleep=40; else py_tasks=50000; py_sleep=100; fi
run python-throughput "$py" "$root/bench/python_bench.py" --workload noop_throughput \
  --tasks "$py_tasks" --runs "$runs"
run python-round-trip "$py" "$root/bench/python_bench.py" --workload round_trip --tasks "$rtt" \
  --runs 3
run python-sleep-throughput "$py" "$root/bench/python_bench.py" --workload noop_throughput \
  --tasks "$py_sleep" --sleep-ms 100 --runs 3
run python-sleep-round-trip "$py" "$root/bench/python_bench.py" --workload round_trip \
  --tasks 20 --sleep-ms 100 --runs 3
run python-progress "$py" "$root/bench/python_bench.py" --workload progress --tasks 5000000 \
  --runs 3
for p in dask_default dask_inf; do
  declare -n cmd="$p"
  peer "$p-sleep-throughput" "${cmd[@]}" --workload noop_throughput --tasks "$py_sleep" \
    --sleep-ms 100 --runs 3
  peer "$p-sleep-round-trip" "${cmd[@]}" --workload round_trip --tasks 20 --sleep-ms 100 --runs 3
done
peer celery-sleep-throughput celery_bench.py --workload noop_throughput --tasks "$py_sleep" \
  --sleep-ms 100 --runs 3
peer celery-sleep-round-trip celery_bench.py --workload round_trip --tasks 20 --sleep-ms 100 \
  --runs 3

# 3 + 5: queued tasks (submit rate, memory per task) and the scheduler's restart with them
run restart "$b/lrts_restart_bench" --json --tasks "$submit"
peer dask-submit "${dask_default[@]}" --workload submit --tasks "$peer_submit" --runs 3
peer celery-submit celery_bench.py --workload submit --tasks "$peer_submit" --runs 3

# 4: many workers (simulated), heartbeating at 1 Hz
for w in "${worker_counts[@]}"; do
  run "workers-$w" "$b/lrts_scale_bench" --json --workers "$w" --runs 3
done
run workers-10000-cap4 "$b/lrts_scale_bench" --json --workers 10000 --capacity 4 --runs 3
# 100,000: more connections than one process may hold open here, unless ulimit -n allows it
((quick)) || run workers-100000 "$b/lrts_scale_bench" --json --workers 100000 --runs 3
# Behind relays (one lrts relay per 10,000): up to 100,000, then churn (10 % a minute) during
# 1,000,000 tasks, workers leaving with a goodbye and without
for w in "${worker_counts[@]}" 100000; do
  run "relays-$w" "$b/lrts_scale_bench" --json --relays --workers "$w" --runs 3
done
((quick)) || {
  run relays-100000-steady "$b/lrts_scale_bench" --json --relays --workers 100000 --capacity 16 \
    --tasks 1000000 --runs 3
  run relays-100000-churn "$b/lrts_scale_bench" --json --relays --workers 100000 --capacity 16 \
    --tasks 1000000 --runs 3 --churn 10
  run relays-100000-churn-crash "$b/lrts_scale_bench" --json --relays --workers 100000 \
    --capacity 16 --tasks 1000000 --runs 3 --churn 10 --crash
}
/usr/bin/python3 "$root/bench/scale_plot.py" "$out" "$out/scale.png" || true

# 6: progress
run progress "$b/lrts_progress_bench" --json --tasks 100 --seconds 5
"$b/lrts_advance_bench" --benchmark_format=json --benchmark_filter='BM_Advance' \
  >"$out/advance.json" 2>>"$out/advance.log" || echo "   (advance bench failed)" >&2

# 7: long tasks: lrts's own CPU while two slots spin
run long "$b/lrts_long_bench" --json --seconds "$long"
peer dask-long "${dask_inf[@]}" --workload long --seconds "$long" --runs 1
peer celery-long celery_bench.py --workload long --seconds "$long" --runs 1

# 8: payloads and mixed task lengths (1 GiB each way; --quick: 256 MiB)
if ((quick)); then mib=256; else mib=1024; fi
run payload "$b/lrts_payload_bench" --json --mib "$mib" --state-dir "$(fresh_state)"

# How cost grows with the number of tasks (journal on)
for n in "${scale_tasks[@]}"; do
  run "tasks-$n" "$b/lrts_e2e_bench" --json --workload noop_scaling --tasks "$n" --runs 3 \
    --round-trips 0 --state-dir "$(fresh_state)"
done
for n in 1000 "$peer_tasks"; do
  peer "dask-tasks-$n" "${dask_inf[@]}" --workload noop_throughput --tasks "$n" --runs 3
  peer "celery-tasks-$n" celery_bench.py --workload noop_throughput --tasks "$n" --runs 3
done

"$py" "$root/bench/report.py" "$out" | tee "$out/report.md"
echo "results in $out" >&2
