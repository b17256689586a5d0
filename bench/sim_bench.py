#!/usr/bin/env python3
"""Benchmark of the simulator itself: wall time and memory for 500 and 5,000 devices.

Runs `ftte simulate` (FTTE on the cnn, Fashion-MNIST) at each population size with the same
per-device work and a concurrency of 4% of the devices, and reports wall time, peak RSS of the
simulator process, updates applied, wall time per update and RSS per device. Writes
bench/results/sim.json and bench/results/sim.md.

    python3 bench/sim_bench.py [--threads 2] [--duration 120] [--out bench/results]
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FTTE = os.path.join(ROOT, "build", "release", "ftte")


def run(devices, threads, duration):
    out = tempfile.mkdtemp(prefix="ftte-simbench-")
    concurrency = max(4, devices // 25)
    cmd = [FTTE, "simulate", "--out", out, "--threads", str(threads), "--methods", "ftte",
           "--set", f"devices.count={devices}", "--set", f"duration_s={duration}",
           "--set", f"eval_every_s={duration}", "--set", f"method.ftte.concurrency={concurrency}",
           "--set", "test_limit=500"]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
    wall = time.monotonic() - start
    if status != 0:
        sys.exit(f"ftte simulate failed for {devices} devices: rerun `{' '.join(cmd)}`")
    rss = usage.ru_maxrss * 1024
    with open(os.path.join(out, "results.json")) as f:
        method = json.load(f)["methods"][0]
    return {"devices": devices, "concurrency": concurrency, "threads": threads,
            "virtual_s": duration, "wall_s": round(wall, 2), "peak_rss_bytes": rss,
            "updates_applied": method["updates_applied"],
            "wall_ms_per_update": round(1000 * wall / max(1, method["updates_applied"]), 2),
            "rss_bytes_per_device": rss // devices, "final_accuracy": method["final_accuracy"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--duration", type=float, default=120)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    if not os.access(FTTE, os.X_OK):
        sys.exit(f"{FTTE} is missing: build it with "
                 "`cmake --preset release && cmake --build --preset release`")
    rows = []
    for devices in (500, 5000):
        print(f"simulating {devices} devices ...", file=sys.stderr)
        rows.append(run(devices, args.threads, args.duration))
    os.makedirs(args.out, exist_ok=True)
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with open(os.path.join(args.out, "sim.json"), "w") as f:
        json.dump({"date": when, "nproc": os.cpu_count(), "runs": rows}, f, indent=2)
    lines = ["# ftte simulator benchmark", "",
             f"Produced by `python3 bench/sim_bench.py --threads {args.threads} "
             f"--duration {args.duration:g}` on {when} ({os.cpu_count()} CPUs).", "",
             "FTTE on the cnn, Fashion-MNIST, 5 local steps of batch 32, concurrency = 4% of "
             "devices, virtual horizon fixed.", "",
             "| devices | concurrency | wall s | updates | wall ms/update | peak RSS | RSS/device |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['devices']} | {r['concurrency']} | {r['wall_s']} | "
                     f"{r['updates_applied']} | {r['wall_ms_per_update']} | "
                     f"{r['peak_rss_bytes'] / 2**20:.1f} MiB | "
                     f"{r['rss_bytes_per_device'] / 1024:.1f} KiB |")
    with open(os.path.join(args.out, "sim.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
