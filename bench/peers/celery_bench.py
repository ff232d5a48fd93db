#!/usr/bin/python3
"""Celery peer benchmark for the lrts benchmark harness.

Setup per run (each run in a fresh process): a private redis-server on a free
127.0.0.1 port (--save "" --appendonly no) used as broker AND result backend, and
(except for 'submit') one worker subprocess started from this directory:
    /usr/bin/python3 -m celery -A celery_tasks worker --pool prefork --concurrency 2 --loglevel WARNING
with the Redis URL in $LRTS_PEER_CELERY_REDIS_URL (read by celery_tasks.py).
The worker is awaited with app.control.ping() and stopped with SIGTERM, then SIGKILL.

Workloads (median of --runs):
  noop_throughput --tasks N   N x noop.apply_async(), then ResultSet(...).get(): time
                              from the first submit until all N results are in the
                              client -> tasks/s
  round_trip --tasks N        N x noop.apply_async().get() -> p50 ms (also p50_ms,
                              p99_ms, mean_ms)
    --sleep-ms MS             (noop_throughput, round_trip; default 0) with MS > 0 the
                              task is celery_tasks.sleep_ms(MS) = time.sleep(MS / 1000),
                              returning None, instead of noop (warm-ups stay no-ops);
                              the result has "sleep_ms": MS (0 without the option) and
                              the default --timeout grows by N*MS/1000 s
  submit --tasks N            no worker; time until all apply_async() calls returned
                              and LLEN celery == N -> tasks/s, plus bytes_per_task =
                              Redis INFO used_memory growth / N
  long --seconds S            two spin(S) tasks on the two pool processes; overhead =
                              CPU of this process and all descendants (redis-server,
                              celery main, pool processes) minus the CPU the task bodies
                              report -> percent of 2*S (also overhead_cpu_s)

Output: one JSON object on stdout; progress on stderr. Exit code != 0 on failure.
Run with /usr/bin/python3.
"""

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import peer_common as pc  # noqa: E402

REDIS_SERVER = "/usr/bin/redis-server"
PYTHON = "/usr/bin/python3"
ENV_VAR = "LRTS_PEER_CELERY_REDIS_URL"  # same name as in celery_tasks.py
QUEUE = "celery"


# ---- redis-server -------------------------------------------------------------

def start_redis(workdir, deadline):
    import redis
    last_err = None
    for attempt in range(3):
        port = pc.free_port()
        cmd = [REDIS_SERVER, "--save", "", "--appendonly", "no", "--port", str(port),
               "--bind", "127.0.0.1", "--dir", workdir, "--loglevel", "warning",
               "--daemonize", "no"]
        logf = open(os.path.join(workdir, "redis.log"), "ab")
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=pc.set_pdeathsig)
        logf.close()
        cli = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5,
                          socket_connect_timeout=1)
        end = time.monotonic() + min(30, deadline.remaining())
        while time.monotonic() < end and proc.poll() is None:
            try:
                if cli.ping():
                    pc.log("redis-server pid %d listening on 127.0.0.1:%d" % (proc.pid, port))
                    return proc, port, cli
            except redis.exceptions.ConnectionError as e:
                last_err = e
            time.sleep(0.02)
        pc.log("redis-server on port %d did not come up (attempt %d): %r"
               % (port, attempt + 1, last_err))
        log_tail(os.path.join(workdir, "redis.log"))
        pc.stop_process(proc, "redis-server", grace=2)
    raise pc.BenchError("could not start redis-server: %r" % (last_err,))


# ---- celery worker ----------------------------------------------------------------

def log_tail(path, lines=30):
    try:
        with open(path, errors="replace") as f:
            tail = f.readlines()[-lines:]
    except OSError:
        return
    pc.log("---- last lines of %s ----\n%s" % (path, "".join(tail)))


def start_worker(app, env, workdir, deadline):
    cmd = [PYTHON, "-m", "celery", "-A", "celery_tasks", "worker", "--pool", "prefork",
           "--concurrency", "2", "--loglevel", "WARNING"]
    logpath = os.path.join(workdir, "worker.log")
    with open(logpath, "ab") as logf:
        proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=pc.set_pdeathsig)
    pc.log("celery worker pid %d started (log: %s), waiting for ping" % (proc.pid, logpath))
    end = time.monotonic() + min(90, deadline.remaining())
    while True:
        if proc.poll() is not None:
            log_tail(logpath)
            raise pc.BenchError("celery worker exited with code %d during startup"
                                % proc.returncode)
        replies = app.control.ping(timeout=0.5)
        if replies:
            pc.log("worker ready:", replies)
            return proc
        if time.monotonic() >= end:
            pc.stop_process(proc, "celery worker")
            log_tail(logpath)
            raise pc.BenchError("celery worker did not answer ping within deadline")


# ---- one run ------------------------------------------------------------------------

def one_run(args, deadline):
    workdir = tempfile.mkdtemp(prefix="peerbench-redis-")
    redis_proc = worker = None
    try:
        redis_proc, port, rcli = start_redis(workdir, deadline)
        url = "redis://127.0.0.1:%d/0" % port
        os.environ[ENV_VAR] = url
        import celery_tasks
        app = celery_tasks.app
        try:
            if args.workload != "submit":
                worker = start_worker(app, dict(os.environ), workdir, deadline)
            if args.workload == "noop_throughput":
                return run_noop_throughput(celery_tasks, args.tasks, deadline, args.sleep_ms)
            if args.workload == "round_trip":
                return run_round_trip(celery_tasks, args.tasks, deadline, args.sleep_ms)
            if args.workload == "submit":
                return run_submit(celery_tasks, rcli, args.tasks, deadline)
            return run_long(celery_tasks, args.seconds, deadline)
        finally:
            if worker is not None:
                pc.stop_process(worker, "celery worker", grace=10)
                if worker.returncode not in (0, None):
                    pc.log("celery worker exit code", worker.returncode)
            # Drop AsyncResults and the result-channel subscriptions while Redis is
            # still up (AsyncResult.__del__ would otherwise retry connecting).
            gc.collect()
            try:
                rc = app.backend.result_consumer
                rc.stop()
                rc._pubsub = None  # later AsyncResult.__del__ must not reconnect
                app.close()
            except Exception as e:
                pc.log("celery client cleanup failed:", repr(e))
    finally:
        if redis_proc is not None:
            pc.stop_process(redis_proc, "redis-server", grace=5)
        shutil.rmtree(workdir, ignore_errors=True)


def _warmup(ct, deadline, n=20):
    from celery.result import ResultSet
    ResultSet([ct.noop.apply_async() for _ in range(n)]).get(
        timeout=min(60, deadline.remaining()))


def _task_body(ct, ms):
    """(task, args) of the measured task: noop(), or sleep_ms(ms) for --sleep-ms > 0."""
    return (ct.sleep_ms, (ms,)) if ms > 0 else (ct.noop, ())


def run_noop_throughput(ct, n, deadline, ms=0):
    from celery.result import ResultSet
    task, targs = _task_body(ct, ms)
    _warmup(ct, deadline)
    gc.collect()
    t0 = time.perf_counter()
    results = [task.apply_async(targs) for _ in range(n)]
    t_submit = time.perf_counter() - t0
    values = ResultSet(results).get(timeout=deadline.remaining(), propagate=True)
    dt = time.perf_counter() - t0
    if len(values) != n or any(v is not None for v in values):
        raise pc.BenchError("expected %d None results, got %d (%d non-None)"
                            % (n, len(values), sum(v is not None for v in values)))
    ok = sum(r.state == "SUCCESS" for r in results)
    if ok != n:
        raise pc.BenchError("only %d of %d tasks in state SUCCESS" % (ok, n))
    return {"value": n / dt, "seconds": dt, "submit_seconds": t_submit,
            "results_checked": n, "sleep_ms": ms}


def run_round_trip(ct, n, deadline, ms=0):
    task, targs = _task_body(ct, ms)
    _warmup(ct, deadline)
    for _ in range(20):
        ct.noop.apply_async().get(timeout=min(60, deadline.remaining()))
    gc.collect()
    lat = []
    for _ in range(n):
        if deadline.expired():
            raise pc.BenchError("round_trip: deadline exceeded after %d of %d tasks"
                                % (len(lat), n))
        t0 = time.perf_counter()
        v = task.apply_async(targs).get(timeout=min(60 + ms / 1000, deadline.remaining()))
        lat.append(time.perf_counter() - t0)
        if v is not None:
            raise pc.BenchError("unexpected result %r" % (v,))
    lat.sort()
    p50 = pc.percentile(lat, 50) * 1e3
    return {"value": p50, "p50_ms": p50, "p99_ms": pc.percentile(lat, 99) * 1e3,
            "mean_ms": sum(lat) / n * 1e3, "max_ms": lat[-1] * 1e3, "sleep_ms": ms}


def _used_memory(rcli):
    return int(rcli.info("memory")["used_memory"])


def run_submit(ct, rcli, n, deadline):
    # warm up the publish path (connection pool, pubsub connection), then drop the queue
    for _ in range(20):
        ct.noop.apply_async()
    pc.wait_until(lambda: rcli.llen(QUEUE) >= 20, 30, "warm-up messages in the queue")
    rcli.delete(QUEUE)
    gc.collect()
    time.sleep(0.2)
    mem0 = _used_memory(rcli)
    t0 = time.perf_counter()
    results = [ct.noop.apply_async() for _ in range(n)]
    t_apply = time.perf_counter() - t0
    pc.wait_until(lambda: rcli.llen(QUEUE) >= n, deadline.remaining(),
                  "LLEN %s to reach %d" % (QUEUE, n), interval=0.002)
    dt = time.perf_counter() - t0
    time.sleep(0.2)  # let transient client buffers drain before reading memory
    mem1 = _used_memory(rcli)
    qlen = rcli.llen(QUEUE)
    try:
        queue_key = int(rcli.memory_usage(QUEUE, samples=0))
    except Exception:
        queue_key = None
    if len(results) != n or qlen != n:
        raise pc.BenchError("queue holds %d messages, expected %d" % (qlen, n))
    return {"value": n / dt, "seconds": dt, "apply_async_seconds": t_apply,
            "bytes_per_task": (mem1 - mem0) / n, "used_memory_growth_bytes": mem1 - mem0,
            "queue_key_bytes_per_task": (queue_key / n) if queue_key else None,
            "note": "bytes_per_task = Redis INFO used_memory growth / N with no worker "
                    "running; includes the queued message in list '%s' and the per-task "
                    "result-channel pubsub subscription the client makes (Redis result "
                    "backend); queue_key_bytes_per_task = MEMORY USAGE of the list only"
                    % QUEUE}


def run_long(ct, seconds, deadline):
    from celery.result import ResultSet
    _warmup(ct, deadline)
    gc.collect()
    time.sleep(0.5)
    snap0 = pc.cpu_snapshot()
    t0 = time.perf_counter()
    rs = ResultSet([ct.spin.apply_async((seconds,)) for _ in range(2)])
    res = rs.get(timeout=deadline.remaining(), propagate=True)
    wall = time.perf_counter() - t0
    snap1 = pc.cpu_snapshot()
    return pc.long_result(res, snap0, snap1, seconds, wall)


# ---- CLI ----------------------------------------------------------------------------

SLEEP_WORKLOADS = ("noop_throughput", "round_trip")


def _non_negative_int(text):
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0, got %d" % v)
    return v


class _Parser(argparse.ArgumentParser):
    def parse_args(self, *a, **kw):
        args = super().parse_args(*a, **kw)
        if args.sleep_ms and args.workload not in SLEEP_WORKLOADS:
            self.error("--sleep-ms applies only to %s" % " and ".join(SLEEP_WORKLOADS))
        return args


def build_parser():
    ap = _Parser(
        description=__doc__.split("\n\n")[0] + " Prints one JSON line per invocation.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    pc.add_common_args(ap)
    ap.add_argument("--sleep-ms", type=_non_negative_int, default=0, metavar="MS",
                    help="noop_throughput/round_trip: each task is sleep_ms(MS) instead of "
                         "noop() (default 0 = noop); the default --timeout grows by "
                         "N*MS/1000 s")
    return ap


def _static(args):
    import celery
    import redis
    return {"version": celery.__version__, "redis_py": redis.__version__,
            "config": "prefork pool, concurrency 2, Redis broker + result backend"}


if __name__ == "__main__":
    sys.exit(pc.main_wrapper(__file__, one_run, build_parser,
                             lambda a: "celery (prefork x2, redis)",
                             lambda a: pc.UNITS[a.workload], _static))
