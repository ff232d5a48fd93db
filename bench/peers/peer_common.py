"""Shared helpers for the peer-system benchmarks (dask_bench.py, celery_bench.py).

Only the Python standard library is used here.

Structure shared by both benchmarks:
  * The top-level process ("orchestrator") runs each measured repetition in a
    fresh child process (the same script re-invoked with --_one-run), in its own
    session, so every run starts from a clean cluster / Redis / worker and
    memory figures of one run do not leak into the next.
  * The child writes its per-run result as JSON to a file given by the
    orchestrator; its stdout is redirected to the orchestrator's stderr so that
    the orchestrator's stdout carries only the final JSON line(s).
  * On timeout, Ctrl-C or SIGTERM the orchestrator sends SIGTERM to the child
    (which cleans up in `finally` blocks), waits a grace period and then
    SIGKILLs the child's whole process tree (collected from /proc first).
"""

import contextlib
import ctypes
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print("[%s]" % time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """A benchmark failure that should be reported clearly (non-zero exit)."""


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def remaining(self, minimum=0.1):
        return max(minimum, self.end - time.monotonic())

    def expired(self):
        return time.monotonic() >= self.end


def wait_until(pred, timeout, what, interval=0.005):
    """Poll pred() until truthy; raise BenchError after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= end:
            raise BenchError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def free_port(host="127.0.0.1"):
    """A free TCP port, chosen by binding port 0 (the port is released again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- /proc helpers

def _read_stat(pid):
    """Fields of /proc/<pid>/stat after the comm field (index 0 = state)."""
    with open("/proc/%d/stat" % pid, "rb") as f:
        data = f.read()
    r = data.rindex(b")")
    comm = data[data.index(b"(") + 1:r].decode(errors="replace")
    return comm, data[r + 2:].split()


def _ppid_map():
    m = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            _, fields = _read_stat(int(d))
        except (OSError, ValueError):
            continue
        m[int(d)] = int(fields[1])
    return m


def descendants(pid):
    """All live descendants of pid (children, grandchildren, ...)."""
    children = {}
    for p, pp in _ppid_map().items():
        children.setdefault(pp, []).append(p)
    out, stack = [], [pid]
    while stack:
        for c in children.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


def process_cpu_seconds(pid):
    """Total CPU (user+system) of a whole process, all threads, incl. exited threads.

    Uses the process CPU-time clock (ns resolution) that Linux exposes for any
    pid as clockid ((~pid) << 3) | CPUCLOCK_SCHED(2); falls back to the 10 ms
    tick counters of /proc/<pid>/stat.
    """
    if pid == os.getpid():
        return time.process_time()
    try:
        return time.clock_gettime(((~pid) << 3) | 2)
    except OSError:
        pass
    _, f = _read_stat(pid)
    return (int(f[11]) + int(f[12])) / CLK_TCK


def cpu_snapshot(root_pid=None):
    """{pid: (comm, cpu_seconds)} for root_pid (default: self) and all descendants."""
    root_pid = root_pid or os.getpid()
    snap = {}
    for p in [root_pid] + descendants(root_pid):
        try:
            comm, _ = _read_stat(p)
            snap[p] = (comm, process_cpu_seconds(p))
        except (OSError, ValueError, IndexError):
            continue
    return snap


def cpu_delta(before, after):
    """Per-process CPU delta between two snapshots; processes that appeared in
    between count fully; processes that vanished are reported separately."""
    per = {}
    for p, (comm, c) in after.items():
        c0 = before[p][1] if p in before else 0.0
        per[p] = (comm, c - c0)
    vanished = sorted(set(before) - set(after))
    return per, vanished


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return "%d:%s" % (pid, f.read().replace(b"\0", b" ").decode(errors="replace")[:120])
    except OSError:
        return str(pid)


def rss_bytes(pid=None):
    with open("/proc/%s/status" % (pid or "self")) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError("VmRSS not found")


# ------------------------------------------------------------ process cleanup

_libc = None


def set_pdeathsig():
    """preexec_fn: the child gets SIGKILL if its parent (thread) dies."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def kill_tree(pid, include_root=True, sig=signal.SIGKILL):
    """Send sig to the whole tree under pid (collected before any signal is sent)."""
    pids = descendants(pid)
    if include_root:
        pids.insert(0, pid)
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, sig)
    return pids


def stop_process(proc, name, grace=10.0):
    """SIGTERM a Popen (and, after `grace` s, SIGKILL it and all its descendants)."""
    if proc is None:
        return
    tree = descendants(proc.pid)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log("%s did not exit after SIGTERM within %.0f s, sending SIGKILL" % (name, grace))
    # kill whatever is left (the process itself and descendants recorded before)
    for p in [proc.pid] + tree + descendants(proc.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(timeout=5)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def install_term_handler():
    """Turn SIGINT/SIGTERM/SIGHUP into KeyboardInterrupt so `finally` blocks clean up
    (SIGINT explicitly, in case it was inherited as ignored)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)


# ------------------------------------------------------------ statistics

def long_result(res, snap0, snap1, seconds, wall):
    """The long-tasks figure from two spin results and CPU snapshots taken around them."""
    per, vanished = cpu_delta(snap0, snap1)
    total = sum(c for _, c in per.values())
    task_cpu = sum(r["cpu"] for r in res)
    overhead = total - task_cpu
    pids = sorted({r["pid"] for r in res})
    if len(pids) != 2:
        log("WARNING: both spin tasks ran in the same process", pids)
    if vanished:
        log("WARNING: processes exited during the measurement:", vanished)
    log("per-process CPU s:", {"%s/%d" % (comm, p): round(c, 4)
                                  for p, (comm, c) in sorted(per.items())})
    return {"value": 100.0 * overhead / (2 * seconds), "overhead_cpu_s": overhead,
            "overhead_pct_of_task_cpu": 100.0 * overhead / task_cpu if task_cpu > 0 else None,
            "total_cpu_s": total, "task_cpu_s": task_cpu, "wall_s": wall,
            "task_processes": len(pids), "processes_measured": len(per)}


def percentile(sorted_vals, q):
    """Nearest-rank percentile (q in 0..100) of an already sorted list."""
    if not sorted_vals:
        raise BenchError("no samples")
    k = max(0, min(len(sorted_vals) - 1, math.ceil(q / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


# ------------------------------------------------------------ orchestration

def add_common_args(ap):
    ap.add_argument("--workload", required=True,
                    choices=["noop_throughput", "round_trip", "submit", "long"])
    ap.add_argument("--tasks", type=int, default=10000,
                    help="number of tasks N (noop_throughput, round_trip, submit); default 10000")
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="busy-spin seconds per task for 'long'; default 10")
    ap.add_argument("--runs", type=int, default=3,
                    help="measured repetitions, each in a fresh process; the median is reported (default 3)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="timeout in seconds for one run incl. setup/teardown "
                         "(default 180 + 0.05*N [+ 3*S for long])")
    ap.add_argument("--_one-run", dest="one_run", metavar="RESULT_FILE", default=None,
                    help=argparse_suppress())
    return ap


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS


def run_timeout(args):
    if args.timeout:
        return args.timeout
    t = 180.0 + 0.05 * args.tasks
    if args.workload in ("noop_throughput", "round_trip"):
        # --sleep-ms: N sleeps of MS ms (serial in round_trip)
        t += args.tasks * getattr(args, "sleep_ms", 0) / 1000.0
    if args.workload == "long":
        t = 180.0 + 3 * args.seconds
    return t


def child_main(args, run_fn):
    """Body of a --_one-run child: run one measurement, write JSON to the result file."""
    install_term_handler()
    deadline = Deadline(run_timeout(args) - 15.0)
    try:
        res = run_fn(args, deadline)
    except KeyboardInterrupt:
        log("run interrupted")
        return 130
    except BenchError as e:
        log("ERROR:", e)
        return 2
    finally:
        # Whatever graceful shutdown did not stop dies now.
        left = descendants(os.getpid())
        noisy = [_cmdline(p) for p in left]
        noisy = [c for c in noisy if "resource_tracker" not in c]
        if noisy:
            log("killing leftover child processes:", noisy)
        if left:
            kill_tree(os.getpid(), include_root=False)
    with open(args.one_run, "w") as f:
        json.dump(res, f)
    return 0


def orchestrate(script, argv, args, system, unit, extra_static=None):
    """Run args.runs repetitions in child processes, print the aggregate JSON line."""
    if args.runs < 1:
        raise SystemExit("--runs must be >= 1")
    if args.workload != "long" and args.tasks < 1:
        raise SystemExit("--tasks must be >= 1")
    install_term_handler()
    timeout = run_timeout(args)
    per_run = []
    tmpdir = tempfile.mkdtemp(prefix="peerbench-")
    try:
        for i in range(args.runs):
            rf = os.path.join(tmpdir, "run%d.json" % i)
            cmd = [sys.executable, os.path.abspath(script)] + argv + ["--_one-run", rf]
            log("%s %s: run %d/%d" % (system, args.workload, i + 1, args.runs))
            proc = subprocess.Popen(cmd, stdout=sys.stderr.fileno(), start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log("run %d exceeded %.0f s, terminating it" % (i + 1, timeout))
                stop_process(proc, "benchmark run", grace=25)
                raise BenchError("run %d timed out after %.0f s" % (i + 1, timeout))
            except BaseException:
                stop_process(proc, "benchmark run", grace=25)
                raise
            # safety net: nothing of the run may survive it
            leftovers = descendants(proc.pid)
            if leftovers:
                kill_tree(proc.pid, include_root=False)
            if rc != 0:
                raise BenchError("run %d failed with exit code %d" % (i + 1, rc))
            with open(rf) as f:
                r = json.load(f)
            log("run %d: %s" % (i + 1, json.dumps(r)))
            per_run.append(r)
    finally:
        for fn in os.listdir(tmpdir):
            os.unlink(os.path.join(tmpdir, fn))
        os.rmdir(tmpdir)

    out = {"system": system, "workload": args.workload,
           "value": statistics.median(r["value"] for r in per_run),
           "unit": unit,
           "runs": [r["value"] for r in per_run]}
    if args.workload == "long":
        out["seconds"] = args.seconds
        out["n"] = 2
    else:
        out["n"] = args.tasks
    # median of every other numeric per-run field; non-numeric ones from run 1
    keys = [k for k in per_run[0] if k != "value"]
    for k in keys:
        vals = [r.get(k) for r in per_run]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out[k] = vals[0] if len(set(vals)) == 1 else statistics.median(vals)
            if len(per_run) > 1 and len(set(vals)) > 1:
                out.setdefault("per_run", {})[k] = vals
        else:
            out[k] = vals[0]
    if extra_static:
        out.update(extra_static)
    print(json.dumps(out), flush=True)


def main_wrapper(script, run_fn, build_parser, system_fn, unit_fn, static_fn=None):
    ap = build_parser()
    args = ap.parse_args()
    if args.one_run:
        return child_main(args, run_fn)
    argv = [a for a in sys.argv[1:]]
    try:
        orchestrate(script, argv, args, system_fn(args), unit_fn(args),
                    static_fn(args) if static_fn else None)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except BenchError as e:
        log("ERROR:", e)
        return 2
    return 0


UNITS = {"noop_throughput": "tasks/s", "round_trip": "ms", "submit": "tasks/s", "long": "%"}
