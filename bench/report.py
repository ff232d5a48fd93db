#!/usr/bin/python3
"""Turns a bench/run_all.sh results directory into the comparison table (markdown on stdout)
and the scaling plots (PNG, with gnuplot when it is installed).

    /usr/bin/python3 bench/report.py bench/results/<time>
"""
import json
import os
import shutil
import subprocess
import sys

LRTS = "lrts"
LRTS_MEM = "lrts (journal off)"
DASK_DEFAULT = "dask (worker-saturation default)"
DASK_INF = "dask (worker-saturation inf)"
CELERY = "celery"
PEERS = [DASK_DEFAULT, DASK_INF, CELERY]


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return rows


def canonical(system):
    s = system.lower()
    if s.startswith("dask"):
        return DASK_INF if "inf" in s else DASK_DEFAULT
    if s.startswith("celery"):
        return CELERY
    return system


def pick(rows, system, workload, n=None, largest=True, sleep_ms=0):
    found = [r for r in rows if canonical(r["system"]) == system and r["workload"] == workload
             and (n is None or r.get("n") == n) and r.get("sleep_ms", 0) == sleep_ms]
    if not found:
        return None
    return max(found, key=lambda r: r.get("n", 0)) if largest else found[-1]


def fmt(v, digits=None):
    if v is None:
        return "—"
    if digits is not None:
        return f"{v:.{digits}f}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def main():
    if len(sys.argv) != 2 or not os.path.isfile(os.path.join(sys.argv[1], "results.jsonl")):
        sys.exit(__doc__.strip() + "\n\nexpects a results directory holding results.jsonl")
    out = sys.argv[1]
    rows = load(os.path.join(out, "results.jsonl"))
    lines = []
    w = lines.append

    def row(label, field, higher_better, lrts_workload, peer_workload=None, n_lrts=None,
            digits=None):
        cells, lrts_v, peer_vals = [], None, []
        for system in [LRTS, LRTS_MEM] + PEERS:
            r = pick(rows, system, lrts_workload if system in (LRTS, LRTS_MEM) else
                     (peer_workload or lrts_workload), n_lrts if system in (LRTS, LRTS_MEM) else None)
            v = None if r is None else r.get(field, r.get("value") if field == "value" else None)
            if r is not None and field != "value" and v is None:
                v = r.get("value")
            cells.append(fmt(v, digits) + (f" ({r['n']:,})" if r is not None and field == "value"
                                           and "tasks" in r.get("unit", "") else ""))
            if system == LRTS and v is not None:
                lrts_v = v
            if system in PEERS and v is not None:
                peer_vals.append(v)
        ratio = "—"
        if lrts_v and peer_vals:
            best = max(peer_vals) if higher_better else min(peer_vals)
            if best:
                r = lrts_v / best if higher_better else best / lrts_v
                ratio = f"{r:,.0f}×" if r >= 10 else f"{r:.1f}×"
        w(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")

    w("| workload | lrts | lrts (journal off) | Dask (default) | Dask (saturation inf) | Celery + Redis | lrts vs best peer |")
    w("|---|---|---|---|---|---|---|")
    row("1. no-op tasks/s, 1 worker × 2 slots (tasks)", "value", True, "noop_throughput",
        n_lrts=None)
    row("2. round trip of one task, p50 ms", "p50_ms", False, "round_trip", digits=3)
    row("2. round trip of one task, p99 ms", "p99_ms", False, "round_trip", digits=3)
    row("3. submit rate of queued tasks, tasks/s (tasks)", "value", True, "submit")
    row("3. memory per queued task, bytes", "bytes_per_task", False, "submit", digits=0)
    row("7. long tasks: overhead, % of the tasks' CPU", "value", False, "long", digits=3)
    w("")
    w("lrts only (the peers have no equivalent):")
    w("")
    w("| workload | value |")
    w("|---|---|")
    r = pick(rows, LRTS, "restart")
    if r:
        w(f"| 5. scheduler restart with {r['n']:,} queued tasks: serving again after | {r['value']:.2f} s |")
    for r in [x for x in rows if x["workload"] == "workers_registered"]:
        w(f"| 4. {r['n']:,} simulated workers: only {r['value']:,.0f} could connect | "
          f"{r.get('note', '')} (open-file limit) |")
    for r in heartbeat_rows(rows):
        w(f"| 4. {r['n']:,} simulated workers (capacity {r['capacity']:.0f}) at 1 Hz: "
          f"scheduler CPU for heartbeats | "
          f"{r['value']:.1f} % of a core (connected in {r.get('connect_s', 0):.1f} s, "
          f"scheduler RSS {r.get('scheduler_rss_mb', 0):.0f} MB) |")
    for r in [x for x in rows if x["workload"] == "workers_throughput"]:
        w(f"| 4. {r.get('workers', 0):,.0f} simulated workers, capacity {r.get('capacity', 0):.0f}: "
          f"no-op tasks/s | {r['value']:,.0f} |")
    r = pick(rows, LRTS, "progress_batches")
    if r:
        w(f"| 6. {r['n']} tasks advancing in tight loops: progress batches/s at the server | "
          f"{r['value']:.1f} ({r.get('advances_per_s', 0):,.0f} advances/s) |")
    r = pick(rows, LRTS, "progress_latency")
    if r:
        w(f"| 6. advance → application sees it, p50 / p99 | {r['p50_ms']:.1f} / {r['p99_ms']:.1f} ms |")
    adv = os.path.join(out, "advance.json")
    if os.path.exists(adv):
        try:
            with open(adv) as f:
                for b in json.load(f).get("benchmarks", []):
                    w(f"| 6. {b['name']}: ns per advance | {b['real_time']:.2f} |")
        except (OSError, json.JSONDecodeError, KeyError):
            pass

    python_table(rows, w)

    # How cost grows with the number of tasks.
    w("")
    w("How cost grows with the number of tasks (no-op tasks/s end to end, lrts with its journal):")
    w("")
    w("| tasks | " + " | ".join([LRTS, DASK_INF, CELERY]) + " |")
    w("|---|---|---|---|")
    sizes = sorted({x["n"] for x in rows if x["workload"] in ("noop_throughput", "noop_scaling")})
    series = {}
    for n in sizes:
        cells = []
        for system in [LRTS, DASK_INF, CELERY]:
            r = pick(rows, system, "noop_scaling" if system == LRTS else "noop_throughput", n)
            cells.append(fmt(r["value"]) if r else "—")
            if r:
                series.setdefault(system, []).append((n, r["value"]))
        if any(c != "—" for c in cells):
            w(f"| {n:,} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    plot(out, series, rows)


PYTHON = "lrts (python)"


def python_table(rows, w):
    """The same Python functions through lrts's Python package and through the peers."""
    if not any(canonical(r["system"]) == PYTHON for r in rows):
        return
    w("")
    w("Python: the same function through each (1 worker × 2 slots; lrts with its journal):")
    w("")
    w("| workload | lrts (python) | Dask (default) | Dask (saturation inf) | Celery + Redis | lrts vs best peer |")
    w("|---|---|---|---|---|---|")
    for label, workload, field, sleep, higher in [
            ("no-op, tasks/s", "noop_throughput", "value", 0, True),
            ("no-op, round trip p50 ms", "round_trip", "p50_ms", 0, False),
            ("no-op, round trip p99 ms", "round_trip", "p99_ms", 0, False),
            ("sleep 100 ms, tasks/s (ideal 20)", "noop_throughput", "value", 100, True),
            ("sleep 100 ms, round trip p50 ms (ideal 100)", "round_trip", "p50_ms", 100, False)]:
        cells, vals = [], {}
        for system in [PYTHON] + PEERS:
            r = pick(rows, system, workload, sleep_ms=sleep)
            v = None if r is None else r.get(field, r.get("value"))
            vals[system] = v
            cells.append(fmt(v, 3 if "ms" in label and v is not None and v < 10 else None))
        peer = [vals[p] for p in PEERS if vals[p]]
        ratio = "—"
        if vals[PYTHON] and peer:
            best = max(peer) if higher else min(peer)
            x = vals[PYTHON] / best if higher else best / vals[PYTHON]
            ratio = f"{x:,.0f}×" if x >= 10 else f"{x:.2f}×"
        w(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
    r = pick(rows, PYTHON, "progress")
    if r:
        w("")
        w(f"Progress from Python, ns per call inside a running task ({r['n']:,} calls each):")
        w("")
        w("| call | ns |")
        w("|---|---|")
        for key, label in [("increment_progress_kwargs",
                            "`service.increment_progress(progress_id=pid, amount=1)`"),
                           ("increment_progress", "`service.increment_progress(pid)`"),
                           ("advance", "`bar.advance()` (bar = `service.progress_bar(...)`)"),
                           ("tqdm_update", "tqdm's `update(1)`, same process"),
                           ("empty_loop", "the empty loop around them")]:
            if r.get(key) is not None:
                w(f"| {label} | {r[key]:.1f} |")


def heartbeat_rows(rows):
    """Heartbeat rows with their workers' capacity; results written before the benchmark
    recorded it ran the capacity-4 case last, repeating a worker count."""
    out, seen = [], set()
    for x in rows:
        if x["workload"] != "workers_heartbeat_cpu":
            continue
        x = dict(x)
        if "capacity" not in x:
            x["capacity"] = 4 if x["n"] in seen else 2048
        seen.add(x["n"])
        out.append(x)
    return out


def plot(out, series, rows):
    if not shutil.which("gnuplot"):
        return
    data = os.path.join(out, "tasks.dat")
    with open(data, "w") as f:
        for i, (system, points) in enumerate(series.items()):
            if i:
                f.write("\n\n")
            f.write(f"# {system}\n")
            for n, v in points:
                f.write(f"{n} {v}\n")
    titles = list(series.keys())
    plots = ", ".join(f"'{data}' index {i} with linespoints title '{t}'"
                      for i, t in enumerate(titles))
    workers = sorted((x["workers"], x["value"]) for x in rows
                     if x["workload"] == "workers_throughput" and x.get("capacity", 0) > 100)
    hb = sorted((x["n"], x["value"]) for x in heartbeat_rows(rows) if x["capacity"] > 100)
    wdat = os.path.join(out, "workers.dat")
    with open(wdat, "w") as f:
        for n, v in workers:
            f.write(f"{n} {v}\n")
        f.write("\n\n")
        for n, v in hb:
            f.write(f"{n} {v}\n")
    script = f"""
set terminal pngcairo size 900,500 noenhanced
set output '{out}/tasks.png'
set logscale xy
set xlabel 'tasks in the run'
set ylabel 'no-op tasks per second (end to end)'
set grid
set key top left
plot {plots}
set output '{out}/workers.png'
unset logscale y
set logscale x
set xlabel 'simulated workers (1 Hz heartbeats)'
set ylabel 'no-op tasks per second'
set y2label 'scheduler CPU for heartbeats, % of a core'
set y2tics
set ytics nomirror
set yrange [0:*]
set y2range [0:*]
set key bottom left
plot '{wdat}' index 0 with linespoints title 'no-op tasks/s, capacity 2048', '{wdat}' index 1 axes x1y2 with linespoints title 'heartbeat CPU'
"""
    subprocess.run(["gnuplot"], input=script.encode(), check=False)


if __name__ == "__main__":
    main()
