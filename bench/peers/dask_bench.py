#!/usr/bin/python3
"""Dask distributed peer benchmark for the lrts benchmark harness.

Cluster: distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1)
(n_workers=0 for the 'submit' workload), scheduler in this process, logs at ERROR.

  --saturation default   leave distributed.scheduler.worker-saturation alone
                         (1.1 in distributed 2022.12.1: root-task queuing on)
  --saturation inf       dask.config.set({"distributed.scheduler.worker-saturation":
                         float("inf")}) before the cluster/scheduler is created
                         (queuing off: all tasks are sent to workers eagerly)

Workloads (each run in a fresh process with a fresh cluster; median of --runs):
  noop_throughput --tasks N   client.map(noop, range(N), pure=False), time until all
                              N results are gathered in the client -> tasks/s
  round_trip --tasks N        N x (submit one no-op, wait for its result) -> p50 ms
                              (also p50_ms, p99_ms, mean_ms)
    --sleep-ms MS             (noop_throughput, round_trip; default 0) with MS > 0 the
                              task body is sleep_ms(x, ms=MS) = time.sleep(MS / 1000),
                              returning None, instead of noop (warm-ups stay no-ops);
                              the result has "sleep_ms": MS (0 without the option) and
                              the default --timeout grows by N*MS/1000 s
  submit --tasks N            zero workers; time until the scheduler knows all N tasks
                              -> tasks/s, plus bytes_per_task = RSS growth of this
                              process (client + scheduler live here) / N
  long --seconds S            two tasks busy-spin S s on the two workers; overhead =
                              CPU of this process and all descendants (scheduler,
                              nannies, workers) minus the CPU the task bodies report
                              -> percent of 2*S (also overhead_cpu_s)

Output: one JSON object on stdout; progress on stderr. Exit code != 0 on failure.
Run with /usr/bin/python3.
"""

import argparse
import gc
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_common as pc  # noqa: E402


# ---- task bodies (pickled by value into the worker processes) ----------------

def noop(x):
    return None


def sleep_ms(x, ms):
    """The --sleep-ms task body: sleep `ms` milliseconds, return None."""
    time.sleep(ms / 1000)
    return None


def spin(seconds):
    """Busy-loop for `seconds` wall seconds; report the CPU this thread used."""
    c0 = time.thread_time()
    t0 = time.perf_counter()
    x = 0
    while time.perf_counter() - t0 < seconds:
        for _ in range(1000):
            x += 1
    return {"cpu": time.thread_time() - c0, "wall": time.perf_counter() - t0,
            "pid": os.getpid()}


# ---- one run ----------------------------------------------------------------

def _n_scheduler_tasks(dask_scheduler):
    return len(dask_scheduler.tasks)


def _saturation(dask_scheduler):
    return str(dask_scheduler.WORKER_SATURATION)


def one_run(args, deadline):
    import dask
    from distributed import Client, LocalCluster

    if args.saturation == "inf":
        # must happen before the scheduler is created
        dask.config.set({"distributed.scheduler.worker-saturation": float("inf")})

    n_workers = 0 if args.workload == "submit" else 2
    cluster = client = None
    try:
        pc.log("starting LocalCluster(n_workers=%d, processes=True, threads_per_worker=1)"
               % n_workers)
        cluster = LocalCluster(n_workers=n_workers, processes=True, threads_per_worker=1,
                               host="127.0.0.1", scheduler_port=0,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster, timeout=min(60, deadline.remaining()))
        if n_workers:
            client.wait_for_workers(n_workers, timeout=min(120, deadline.remaining()))
        sat = client.run_on_scheduler(_saturation)
        pc.log("scheduler worker-saturation =", sat)

        if args.workload == "noop_throughput":
            res = run_noop_throughput(client, args.tasks, deadline, args.sleep_ms)
        elif args.workload == "round_trip":
            res = run_round_trip(client, args.tasks, deadline, args.sleep_ms)
        elif args.workload == "submit":
            res = run_submit(client, args.tasks, deadline)
        else:
            res = run_long(client, args.seconds, deadline)
        res["worker_saturation_effective"] = sat
        return res
    finally:
        if client is not None:
            try:
                client.close(timeout=20)
            except Exception as e:  # cleanup must not mask the real error
                pc.log("client.close failed:", repr(e))
        if cluster is not None:
            try:
                cluster.close(timeout=20)
            except Exception as e:
                pc.log("cluster.close failed:", repr(e))


def _warmup(client, deadline):
    futs = client.map(noop, range(-20, 0), pure=False)
    client.sync(client._gather, futs, callback_timeout=min(60, deadline.remaining()))
    del futs


def _task_body(ms):
    """(function, extra kwargs) of the measured task: noop, or sleep_ms for --sleep-ms > 0."""
    return (sleep_ms, {"ms": ms}) if ms > 0 else (noop, {})


def run_noop_throughput(client, n, deadline, ms=0):
    func, kw = _task_body(ms)
    _warmup(client, deadline)
    gc.collect()
    t0 = time.perf_counter()
    futs = client.map(func, range(n), pure=False, **kw)
    # == client.gather(futs), but with a timeout
    results = client.sync(client._gather, futs, callback_timeout=deadline.remaining())
    dt = time.perf_counter() - t0
    if len(results) != n or any(r is not None for r in results):
        raise pc.BenchError("expected %d None results, got %d (%d non-None)"
                            % (n, len(results), sum(r is not None for r in results)))
    done = sum(f.status == "finished" for f in futs)
    if done != n:
        raise pc.BenchError("only %d of %d futures finished" % (done, n))
    return {"value": n / dt, "seconds": dt, "results_checked": n, "sleep_ms": ms}


def run_round_trip(client, n, deadline, ms=0):
    func, kw = _task_body(ms)
    _warmup(client, deadline)
    for i in range(20):  # warm the one-at-a-time path too
        client.submit(noop, -i, pure=False).result(timeout=min(60, deadline.remaining()))
    gc.collect()
    lat = []
    for i in range(n):
        if deadline.expired():
            raise pc.BenchError("round_trip: deadline exceeded after %d of %d tasks"
                                % (len(lat), n))
        t0 = time.perf_counter()
        r = client.submit(func, i, pure=False, **kw).result(
            timeout=min(60 + ms / 1000, deadline.remaining()))
        lat.append(time.perf_counter() - t0)
        if r is not None:
            raise pc.BenchError("unexpected result %r" % (r,))
    lat.sort()
    p50 = pc.percentile(lat, 50) * 1e3
    return {"value": p50, "p50_ms": p50, "p99_ms": pc.percentile(lat, 99) * 1e3,
            "mean_ms": sum(lat) / n * 1e3, "max_ms": lat[-1] * 1e3, "sleep_ms": ms}


def run_submit(client, n, deadline):
    # warm up code paths (imports, serialization caches), then forget those tasks
    futs = client.map(noop, range(-20, 0), pure=False)
    pc.wait_until(lambda: client.run_on_scheduler(_n_scheduler_tasks) >= 20, 60,
                  "warm-up tasks on the scheduler")
    del futs
    pc.wait_until(lambda: client.run_on_scheduler(_n_scheduler_tasks) == 0, 60,
                  "scheduler to forget warm-up tasks", interval=0.05)
    gc.collect()
    time.sleep(0.2)
    rss0 = pc.rss_bytes()
    t0 = time.perf_counter()
    futs = client.map(noop, range(n), pure=False)
    t_map = time.perf_counter() - t0
    pc.wait_until(lambda: client.run_on_scheduler(_n_scheduler_tasks) >= n,
                  deadline.remaining(), "scheduler to know all %d tasks" % n, interval=0.002)
    dt = time.perf_counter() - t0
    rss1 = pc.rss_bytes()
    if len(futs) != n:
        raise pc.BenchError("client.map returned %d futures" % len(futs))
    return {"value": n / dt, "seconds": dt, "map_call_seconds": t_map,
            "bytes_per_task": (rss1 - rss0) / n, "rss_growth_bytes": rss1 - rss0,
            "note": "LocalCluster(processes=True) runs the scheduler inside the client "
                    "process: bytes_per_task is the RSS growth of that one process "
                    "(scheduler state + client futures + transient graph messages) / N; "
                    "zero workers, tasks stay in the no-worker state"}


def run_long(client, seconds, deadline):
    _warmup(client, deadline)
    gc.collect()
    time.sleep(0.5)
    snap0 = pc.cpu_snapshot()
    t0 = time.perf_counter()
    futs = [client.submit(spin, seconds, pure=False) for _ in range(2)]
    res = client.sync(client._gather, futs, callback_timeout=deadline.remaining())
    wall = time.perf_counter() - t0
    snap1 = pc.cpu_snapshot()
    return pc.long_result(res, snap0, snap1, seconds, wall)


# ---- CLI ----------------------------------------------------------------------

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
    ap.add_argument("--saturation", choices=["default", "inf"], default="default",
                    help="distributed.scheduler.worker-saturation: leave default, or inf")
    pc.add_common_args(ap)
    ap.add_argument("--sleep-ms", type=_non_negative_int, default=0, metavar="MS",
                    help="noop_throughput/round_trip: each task sleeps MS ms instead of "
                         "being a no-op (default 0 = no-op); the default --timeout grows "
                         "by N*MS/1000 s")
    return ap


def _system(args):
    return "dask (worker-saturation %s)" % args.saturation


def _static(args):
    import distributed
    return {"version": distributed.__version__,
            "config": "LocalCluster(n_workers=%d, processes=True, threads_per_worker=1)"
                      % (0 if args.workload == "submit" else 2)}


if __name__ == "__main__":
    sys.exit(pc.main_wrapper(__file__, one_run, build_parser, _system,
                             lambda a: pc.UNITS[a.workload], _static))
