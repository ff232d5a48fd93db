#!/usr/bin/python3
"""lrts autoscale on a local one-node Slurm (scripts/slurm-local.sh): figures for docs/benchmarks.md.

  /usr/bin/python3 bench/autoscale_bench.py [--build build] [--out DIR] [--plot docs/bench-autoscale.png]

Two runs, each from no worker, tasks being programs (`lrts submit -- /bin/sleep S`):
  queue:    120 tasks of 3 s, then 40 more 40 s later, --max-workers 16, --idle-timeout 5:
            time from submit to the first worker running a task, worker count against queue
            length over the run, time for the idle workers to end.
  deadline: 100 tasks of 2 s (200 s of work) by --deadline 60s, --max-workers 16: the finish
            the scheduler predicts (lrts status) as the run goes against the actual finish, and
            the workers it took.
Prints the figures and writes samples.csv and summary.json into --out.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bench:
    def __init__(self, build, work):
        self.lrts = os.path.join(build, "lrts")
        self.work = work
        self.env = dict(os.environ)
        self.procs = []

    def slurm_start(self):
        out = subprocess.run([os.path.join(ROOT, "scripts/slurm-local.sh"), "start",
                              os.path.join(self.work, "slurm")], check=True, capture_output=True,
                             text=True).stdout
        for line in out.splitlines():
            if line.startswith("export ") and "=" in line:
                name, value = line[7:].split("=", 1)
                self.env[name] = value.strip("'\"")

    def slurm_stop(self):
        subprocess.run([os.path.join(ROOT, "scripts/slurm-local.sh"), "stop",
                        os.path.join(self.work, "slurm")], capture_output=True)

    def start(self, name, argv):
        log = open(os.path.join(self.work, name + ".log"), "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                             cwd=self.work)
        self.procs.append(p)
        return p

    def status(self, port):
        r = subprocess.run([self.lrts, "status", "--json", "--scheduler-port", str(port)],
                           capture_output=True, text=True, env=self.env)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def jobs(self, name):
        r = subprocess.run(["squeue", "--noheader", "--name=" + name, "--format=%i"],
                           capture_output=True, text=True, env=self.env)
        return len(r.stdout.split())

    def stop_all(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        self.procs = []


def run(bench, label, scaler_flags, waves, samples):
    port = free_port()
    bench.start(label + "-scheduler", [bench.lrts, "scheduler", "--port", str(port),
                                       "--state-dir", os.path.join(bench.work, label + "-state"),
                                       "--heartbeat-interval", "0.5"])
    job = "lrts-bench-" + label
    scaler = bench.start(label + "-autoscale",
                         [bench.lrts, "autoscale", "--scheduler-port", str(port), "--job-name", job,
                          "--job-output", os.path.join(bench.work, job + "-%j.out"),
                          "--interval", "0.5"] + scaler_flags + ["--", "--allow-commands"])
    deadline = time.time() + 30
    while bench.status(port) is None:
        if time.time() > deadline:
            sys.exit("the scheduler did not answer")
        time.sleep(0.2)
    t0 = time.time()
    submits, first_busy, done_at, idle_end = [], None, None, None
    pending = list(waves)
    while True:
        t = time.time() - t0
        while pending and pending[0][0] <= t:
            at, count, seconds = pending.pop(0)
            submits.append(bench.start("%s-submit-%d" % (label, len(submits)),
                                       [bench.lrts, "submit", "--scheduler-port", str(port),
                                        "--count", str(count), "--wait", "--", "/bin/sleep",
                                        str(seconds)]))
        s = bench.status(port)
        if s:
            e = s.get("estimate", {})
            samples.append({"run": label, "t": round(t, 2), "queued": s["queued"],
                            "running": s["running"], "workers": s["workers"],
                            "busy": s["busy_slots"], "finished": s["finished"],
                            "jobs": bench.jobs(job), "finish_in_s": e.get("finish_in_s"),
                            "work_s": e.get("work_s")})
            if first_busy is None and s["busy_slots"] > 0:
                first_busy = t
            unfinished = s["queued"] + s["running"] + s["waiting"]
            if not pending and all(p.poll() is not None for p in submits) and unfinished == 0:
                if done_at is None:
                    done_at = t
                if s["workers"] == 0 and samples[-1]["jobs"] == 0:
                    idle_end = t
                    break
        if t > 600:
            print("%s: gave up after 600 s" % label, file=sys.stderr)
            break
        time.sleep(0.5)
    failed = [p.returncode for p in submits if p.returncode != 0]
    scaler.terminate()
    scaler.wait(20)
    bench.stop_all()
    rows = [r for r in samples if r["run"] == label]
    return {"first_task_running_s": first_busy, "all_done_s": done_at,
            "workers_gone_s": idle_end, "peak_workers": max(r["workers"] for r in rows),
            "peak_jobs": max(r["jobs"] for r in rows), "submits_failed": len(failed)}


def plot(samples, summary, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
    q = [r for r in samples if r["run"] == "queue"]
    t = [r["t"] for r in q]
    a.plot(t, [r["queued"] for r in q], label="queued tasks")
    a.plot(t, [r["running"] for r in q], label="running tasks")
    a.plot(t, [r["workers"] for r in q], label="workers connected", linewidth=2)
    a.plot(t, [r["jobs"] for r in q], label="Slurm jobs", linestyle="--")
    a.set_xlabel("seconds since the first submit")
    a.set_title("By queue: 120 + 40 tasks of 3 s, --max-workers 16")
    a.legend()
    d = [r for r in samples if r["run"] == "deadline"]
    t = [r["t"] for r in d if r["finish_in_s"] is not None and r["queued"] + r["running"] > 0]
    pred = [r["t"] + r["finish_in_s"] for r in d
            if r["finish_in_s"] is not None and r["queued"] + r["running"] > 0]
    b.plot(t, pred, label="predicted finish (lrts status)")
    b.axhline(summary["deadline"]["all_done_s"], color="green", linestyle="--",
              label="actual finish")
    b.axhline(60, color="red", linestyle=":", label="deadline")
    b2 = b.twinx()
    b2.plot([r["t"] for r in d], [r["workers"] for r in d], color="gray", alpha=0.6,
            label="workers")
    b2.set_ylabel("workers")
    b.set_xlabel("seconds since submit")
    b.set_ylabel("seconds since submit")
    b.set_ylim(0, 120)  # the first seconds, one worker probing, predict far later
    b.set_title("To a deadline: 100 tasks of 2 s by 60 s")
    b.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--plot", default=None)
    ap.add_argument("--replot", metavar="DIR", help="only draw --plot from a run's --out DIR")
    args = ap.parse_args()
    if args.replot:
        with open(os.path.join(args.replot, "summary.json")) as f:
            summary = json.load(f)
        samples = []
        with open(os.path.join(args.replot, "samples.csv")) as f:
            keys = f.readline().strip().split(",")
            for line in f:
                row = dict(zip(keys, line.strip().split(",")))
                samples.append({k: (row[k] if k == "run" else
                                    (None if row[k] == "" else float(row[k]))) for k in keys})
        plot(samples, summary, args.plot)
        return
    work = tempfile.mkdtemp(prefix="lrts-autoscale-bench-")
    os.chmod(work, 0o755)  # munged wants every directory above its socket open to all
    bench = Bench(os.path.abspath(args.build), work)
    bench.slurm_start()
    samples, summary = [], {}
    try:
        summary["queue"] = run(bench, "queue", ["--max-workers", "16", "--idle-timeout", "5"],
                               [(0, 120, 3), (40, 40, 3)], samples)
        summary["deadline"] = run(bench, "deadline",
                                  ["--max-workers", "16", "--idle-timeout", "5", "--deadline",
                                   "60s"], [(0, 100, 2)], samples)
    finally:
        bench.stop_all()
        bench.slurm_stop()
    q, d = summary["queue"], summary["deadline"]
    print("queue run: first task running %.1f s after submit; all 160 done at %.1f s; peak %d "
          "workers (%d jobs); workers all gone %.1f s after the last task" %
          (q["first_task_running_s"], q["all_done_s"], q["peak_workers"], q["peak_jobs"],
           q["workers_gone_s"] - q["all_done_s"]))
    dr = [r for r in samples if r["run"] == "deadline" and r["finish_in_s"] is not None
          and r["queued"] + r["running"] > 0]
    for frac in (0.25, 0.5, 0.75):
        r = dr[int(len(dr) * frac)] if dr else None
        if r:
            print("deadline run at %.0f s: predicted finish %.1f s (actual %.1f s)" %
                  (r["t"], r["t"] + r["finish_in_s"], d["all_done_s"]))
    print("deadline run: deadline 60 s, finished at %.1f s with at most %d of 16 workers" %
          (d["all_done_s"], d["peak_workers"]))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        with open(os.path.join(args.out, "samples.csv"), "w") as f:
            keys = list(samples[0].keys())
            f.write(",".join(keys) + "\n")
            for r in samples:
                f.write(",".join("" if r[k] is None else str(r[k]) for k in keys) + "\n")
    if args.plot:
        plot(samples, summary, args.plot)
    if q["submits_failed"] or d["submits_failed"]:
        sys.exit("some tasks did not finish")


if __name__ == "__main__":
    main()
