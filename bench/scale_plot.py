#!/usr/bin/python3
"""Plots lrts_scale_bench --json results (every *.json in a directory): the scheduler's CPU for
liveness and its memory per worker against the number of workers, with and without relays
(PNG, with gnuplot).

    /usr/bin/python3 bench/scale_plot.py DIR OUT.png
"""
import glob
import json
import os
import subprocess
import sys


def rows(directory):
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if r.get("workload") == "workers_heartbeat_cpu" and not r.get("churn_pct_per_min"):
                    out.append(r)
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data = rows(sys.argv[1])
    if not data:
        sys.exit("no lrts_scale_bench results in " + sys.argv[1])
    series = {False: {}, True: {}}
    for r in data:
        series[bool(r.get("relays"))][r["n"]] = r  # the last run of each size counts
    dat = os.path.join(sys.argv[1], "scale.dat")
    with open(dat, "w") as f:
        for relayed in (False, True):
            f.write("# %s\n" % ("relays" if relayed else "direct"))
            for n in sorted(series[relayed]):
                r = series[relayed][n]
                f.write("%d %g %g %g\n" % (n, r["value"], r.get("relay_cpu_pct", 0),
                                           r.get("scheduler_bytes_per_worker", 0) / 1024.0))
            f.write("\n\n")
    script = f"""
set terminal pngcairo size 900,500 noenhanced
set output '{sys.argv[2]}'
set logscale x
set xlabel 'simulated workers'
set ylabel 'CPU, % of one core'
set y2label 'scheduler memory per worker, KiB'
set y2tics
set ytics nomirror
set key top left
set grid
plot '{dat}' index 0 using 1:2 with linespoints title 'scheduler CPU, direct', \\
     '{dat}' index 1 using 1:2 with linespoints title 'scheduler CPU, behind relays', \\
     '{dat}' index 1 using 1:3 with linespoints title 'relays CPU (all)', \\
     '{dat}' index 0 using 1:4 axes x1y2 with linespoints dashtype 2 title 'KiB/worker, direct', \\
     '{dat}' index 1 using 1:4 axes x1y2 with linespoints dashtype 2 title 'KiB/worker, relays'
"""
    subprocess.run(["gnuplot"], input=script.encode(), check=True)


if __name__ == "__main__":
    main()
