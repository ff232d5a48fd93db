#!/usr/bin/python3
"""lrts's Python side on a local cluster, for the comparison with the peers' Python (Dask,
Celery): the same no-op and the same sleeping function, and progress counting against tqdm.

Cluster: build/lrts scheduler (journal on with --state-dir, as in lrts's headline figures),
one worker with 2 slots (-max-jobs 2), each slot running its Python slot process; the
application is this process (lrts.ClientApplication).

  --workload noop_throughput --tasks N [--sleep-ms MS]  schedule N services, time until every
        result is collected (as_completed) -> tasks/s; every result is checked (None, once)
  --workload round_trip --tasks N [--sleep-ms MS]       N x (schedule one, wait_for it) -> p50 ms
  --workload progress --tasks N                         ns per call inside a running task:
        increment_progress(progress_id=, amount=), increment_progress(id), bar.advance(),
        tqdm's update(1), an empty loop

Output: one JSON line per workload on stdout (median of --runs), progress on stderr.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def log(*a):
    print("[%s]" % time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, build, journal):
        self.build = build
        self.dir = tempfile.mkdtemp(prefix="lrts-pybench-")
        self.port = free_port()
        self.pport = free_port()
        self.procs = []
        env = dict(os.environ)
        env["PYTHONPATH"] = os.path.join(build, "python") + ":" + HERE
        self.env = env
        lrts = os.path.join(build, "lrts")
        sched = [lrts, "scheduler", "-port", str(self.port), "--log-level", "warn"]
        if journal:
            sched += ["--state-dir", os.path.join(self.dir, "state")]
        self._start(sched)
        self._start([lrts, "progress-server", "-port", str(self.pport), "--log-level", "warn"])
        self._start([lrts, "worker", "-scheduler-port", str(self.port), "-progress-port",
                     str(self.pport), "-max-jobs", "2", "--log-level", "warn"])

    def _start(self, argv):
        log_file = open(os.path.join(self.dir, "daemon%d.log" % len(self.procs)), "wb")
        self.procs.append(subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT,
                                           env=self.env, start_new_session=True))

    def app(self, lrts):
        a = lrts.ClientApplication(lrts.ApplicationInformation(
            scheduler_port=str(self.port), progress_server_port=str(self.pport),
            track_progress=False))
        a.start_application()
        if not a.wait_connected(timeout=30):
            raise RuntimeError("the scheduler did not answer")
        return a

    def close(self):
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def percentile(sorted_values, p):
    k = (len(sorted_values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def one_run(args, lrts, services):
    cluster = Cluster(args.build, not args.no_journal)
    try:
        app = cluster.app(lrts)
        make = (lambda: services.SleepMs(args.sleep_ms)) if args.sleep_ms else services.Noop
        # Warm-up: both slots start their Python slot process.
        warm = [app.schedule_service(services.Noop()) for _ in range(50)]
        for r in app.as_completed(warm, timeout=60):
            assert r.ok, r.error
        if args.workload == "noop_throughput":
            t0 = time.perf_counter()
            ids = [app.schedule_service(make()) for _ in range(args.tasks)]
            t_submit = time.perf_counter() - t0
            seen = set()
            for r in app.as_completed(ids, timeout=600):
                if not r.ok or r.service_result is not None or r.service_id in seen:
                    raise RuntimeError("bad result %r" % (r,))
                seen.add(r.service_id)
            dt = time.perf_counter() - t0
            if len(seen) != args.tasks:
                raise RuntimeError("%d of %d results" % (len(seen), args.tasks))
            res = {"value": args.tasks / dt, "seconds": dt, "submit_seconds": t_submit,
                   "results_checked": len(seen)}
        elif args.workload == "round_trip":
            lat = []
            for _ in range(args.tasks):
                t0 = time.perf_counter()
                r = app.wait_for(app.schedule_service(make()), timeout=60)
                lat.append(time.perf_counter() - t0)
                if not r.ok:
                    raise RuntimeError(r.error)
            lat.sort()
            res = {"value": percentile(lat, 50) * 1e3, "p50_ms": percentile(lat, 50) * 1e3,
                   "p99_ms": percentile(lat, 99) * 1e3, "mean_ms": sum(lat) / len(lat) * 1e3}
        else:
            r = app.wait_for(app.schedule_service(services.ProgressCost(args.tasks)), timeout=600)
            if not r.ok:
                raise RuntimeError(r.error)
            res = dict(r.service_result)
            if res["advance_counted"] != args.tasks:
                raise RuntimeError("advance() counted %r" % res["advance_counted"])
            res["value"] = res["increment_progress_kwargs"]
        app.stop_application()
        return res
    finally:
        cluster.close()


UNITS = {"noop_throughput": "tasks/s", "round_trip": "ms", "progress": "ns/call"}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=sorted(UNITS), required=True)
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sleep-ms", type=int, default=0)
    ap.add_argument("--no-journal", action="store_true")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    args = ap.parse_args()
    if args.tasks < 1 or args.runs < 1 or args.sleep_ms < 0:
        ap.error("--tasks and --runs must be >= 1, --sleep-ms >= 0")
    sys.path.insert(0, os.path.join(args.build, "python"))
    sys.path.insert(0, HERE)
    import lrts
    import python_services
    runs = []
    for i in range(args.runs):
        r = one_run(args, lrts, python_services)
        log("lrts-python %s run %d: %s" % (args.workload, i + 1, json.dumps(r)))
        runs.append(r)
    out = {"system": "lrts (python)", "workload": args.workload, "unit": UNITS[args.workload],
           "value": statistics.median(r["value"] for r in runs), "runs": [r["value"] for r in runs],
           "n": args.tasks, "sleep_ms": args.sleep_ms, "journal": not args.no_journal}
    for k in runs[0]:
        if k != "value" and all(isinstance(r.get(k), (int, float)) for r in runs):
            out[k] = statistics.median(r[k] for r in runs)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
