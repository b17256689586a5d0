#!/usr/bin/env python3
"""Benchmark of the simulator itself: population scale, MPI ranks, and 100,000 devices.

1. Population: FTTE on the cnn (Fashion-MNIST, 64 samples drawn per device: `sample:64`, so
   every size has the same per-device data), a fixed concurrency of 20 and a fixed virtual
   horizon, for 500 to 100,000 devices: wall time, peak RSS, and the RSS each device adds
   (marginal, against the smallest population). The training work is the same at every size, so
   this measures what idle devices cost.
2. Ranks: the paper's small setting (500 devices, FTTE and FedBuff, concurrency 20) in one
   process with 1 and 2 threads and under `mpirun -np N` with one thread per rank, N = 1..4
   (more ranks than cores are oversubscribed: slower, and said so). Every results.json must be
   byte-identical to the one-process run's; also the bytes broadcast between ranks per update,
   and a model of the speed-up on a cluster (below).
3. The goal run: 100,000 devices x 10 virtual minutes of the paper setting
   (experiments/paper-fmnist.toml, FTTE, `sample:120`: the paper's 120 samples per device).

Writes bench/results/sim.json and bench/results/sim.md.

    python3 bench/sim_bench.py [--threads 2] [--skip-goal] [--out bench/results]
"""
import argparse
import datetime
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FTTE = os.environ.get("FTTE") or os.path.join(ROOT, "build", "release", "ftte")
MPIRUN = shutil.which("mpirun")
CORES = os.cpu_count()
# Root may run mpirun (CI and this project's machines run as root).
MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def timed(cmd, env=None):
    """Runs cmd; returns (wall seconds, peak RSS of the largest waited-for process, stderr)."""
    err = tempfile.TemporaryFile(mode="w+")
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    err.seek(0)
    text = err.read()
    if status != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{text[-3000:]}")
    return wall, usage.ru_maxrss * 1024, text


def results(out):
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


def population(threads, duration):
    rows = []
    for devices in (500, 5000, 50000, 100000):
        log(f"population: {devices} devices ...")
        out = tempfile.mkdtemp(prefix="ftte-simbench-")
        cmd = [FTTE, "simulate", "--out", out, "--threads", str(threads), "--methods", "ftte",
               "--set", "partition=sample:64", "--set", f"devices.count={devices}",
               "--set", f"duration_s={duration}", "--set", f"eval_every_s={duration}",
               "--set", "method.ftte.concurrency=20", "--set", "test_limit=500"]
        wall, rss, _ = timed(cmd)
        run = results(out)["methods"][0]["runs"][0]
        rows.append({"devices": devices, "wall_s": round(wall, 2), "peak_rss_bytes": rss,
                     "updates_applied": run["updates_applied"]})
        shutil.rmtree(out)
    base = rows[0]
    for r in rows[1:]:
        r["rss_bytes_per_added_device"] = round(
            (r["peak_rss_bytes"] - base["peak_rss_bytes"]) / (r["devices"] - base["devices"]), 1)
    return rows


RANKS_ARGS = ["--config", "experiments/paper-fmnist-small.toml", "--methods", "ftte,fedbuff",
              "--set", "duration_s=180", "--set", "eval_every_s=60"]


def ranks():
    rows = []
    reference = None
    configs = [("1 process", 1, 1, "jobs"), ("1 process", 1, 2, "jobs")]
    if MPIRUN:
        configs += [("mpirun", n, 1, "jobs") for n in (1, 2, 3, 4)]
        configs += [("mpirun", 2, 1, "runs")]
    for kind, n, threads, split in configs:
        label = f"{kind}, {n} rank(s) x {threads} thread(s), --split {split}" \
            if kind == "mpirun" else f"{kind}, {threads} thread(s)"
        log(f"ranks: {label} ...")
        out = tempfile.mkdtemp(prefix="ftte-simbench-")
        cmd = [FTTE, "simulate", *RANKS_ARGS, "--threads", str(threads), "--split", split,
               "--out", out]
        env = None
        if kind == "mpirun":
            cmd = [MPIRUN, "--bind-to", "none"] + (["--oversubscribe"] if n > CORES else []) + \
                  ["-np", str(n)] + cmd
            env = MPI_ENV
        wall, rss, err = timed(cmd, env)
        row = {"kind": kind, "ranks": n, "threads": threads, "split": split,
               "wall_s": round(wall, 2),
               "oversubscribed": n * threads > CORES}
        m = re.search(r"mpi: (\d+) ranks, (\d+) broadcasts of (\d+) bytes in all; peak RSS per "
                      r"rank max (\d+) bytes, sum (\d+) bytes", err)
        updates = sum(r["updates_received"] for meth in results(out)["methods"]
                      for r in meth["runs"])
        if m:
            row["broadcast_bytes"] = int(m.group(3))
            row["broadcast_bytes_per_update"] = int(m.group(3)) // max(1, updates)
            row["peak_rss_bytes_sum"] = int(m.group(5))
        else:
            row["peak_rss_bytes_sum"] = rss
        path = os.path.join(out, "results.json")
        if reference is None:
            with tempfile.NamedTemporaryFile(prefix="ftte-simbench-ref-", delete=False) as f:
                reference = f.name
            shutil.copy(path, reference)
        row["identical"] = filecmp.cmp(reference, path, shallow=False)
        rows.append(row)
        shutil.rmtree(out)
    os.remove(reference)
    one = rows[0]["wall_s"]
    for r in rows:
        r["speedup"] = round(one / r["wall_s"], 2)
    return rows


def overhead(repeats):
    """2 ranks x 1 thread against 1 process x 2 threads, alternated `repeats` times."""
    pairs = []
    for i in range(repeats):
        walls = {}
        for kind in ("threads", "ranks"):
            log(f"overhead {i + 1}/{repeats}: {kind} ...")
            out = tempfile.mkdtemp(prefix="ftte-simbench-")
            if kind == "threads":
                cmd = [FTTE, "simulate", *RANKS_ARGS, "--threads", "2", "--out", out]
                env = None
            else:
                cmd = [MPIRUN, "--bind-to", "none", "-np", "2", FTTE, "simulate", *RANKS_ARGS,
                       "--threads", "1", "--out", out]
                env = MPI_ENV
            walls[kind] = round(timed(cmd, env)[0], 2)
            shutil.rmtree(out)
        walls["ratio"] = round(walls["ranks"] / walls["threads"], 3)
        pairs.append(walls)
    return pairs


def model(rows):
    """Amdahl's law fitted to the 2-rank run: the serial share s from T1 / T2 = 1 / (s + (1-s)/2),
    then the predicted speed-up at N ranks, one core each, when the network is not the limit."""
    t1 = next(r["wall_s"] for r in rows if r["kind"] == "1 process" and r["threads"] == 1)
    two = [r for r in rows if r["kind"] == "mpirun" and r["ranks"] == 2 and r["split"] == "jobs"]
    if not two:
        return None
    t2 = two[0]["wall_s"]
    s = min(1.0, max(0.0, 2 * t2 / t1 - 1))
    return {"serial_share": round(s, 3),
            "predicted_speedup": {n: round(1 / (s + (1 - s) / n), 2) for n in (4, 8, 16, 64)}}


def goal(threads):
    log("goal: 100,000 devices x 10 virtual minutes of the paper setting ...")
    out = tempfile.mkdtemp(prefix="ftte-simbench-")
    cmd = [FTTE, "simulate", "--config", "experiments/paper-fmnist.toml", "--methods", "ftte",
           "--seeds", "0", "--set", "devices.count=100000", "--set", "partition=sample:120",
           "--set", "duration_s=600", "--threads", str(threads), "--out", out]
    wall, rss, _ = timed(cmd)
    run = results(out)["methods"][0]["runs"][0]
    with open(os.path.join(out, "timing.json")) as f:
        run_wall = json.load(f)["runs"][0]["wall_s"]
    shutil.rmtree(out)
    return {"devices": 100000, "virtual_s": 600, "threads": threads, "wall_s": round(wall, 1),
            "run_wall_s": round(run_wall, 1),
            "peak_rss_bytes": rss, "updates_applied": run["updates_applied"],
            "final_accuracy": run["final_accuracy"],
            "excluded_devices": run.get("excluded_devices")}


def mib(b):
    return f"{b / 2**20:.1f} MiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--duration", type=float, default=60, help="virtual s of the population runs")
    ap.add_argument("--skip-goal", action="store_true", help="skip the 100,000-device run")
    ap.add_argument("--repeats", type=int, default=3,
                    help="alternated 2-rank / 2-thread pairs for the MPI overhead")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    if not os.access(FTTE, os.X_OK):
        sys.exit(f"{FTTE} is missing: build it with "
                 "`cmake --preset release && cmake --build --preset release`")
    if not MPIRUN:
        log("mpirun not found (scripts/setup.sh installs openmpi-bin): ranks > 1 are skipped")
    pop = population(args.threads, args.duration)
    rk = ranks()
    fit = model(rk)
    over = overhead(args.repeats) if MPIRUN and args.repeats > 0 else []
    big = None if args.skip_goal else goal(args.threads)
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "sim.json"), "w") as f:
        json.dump({"date": when, "commit": commit, "nproc": CORES, "population": pop,
                   "ranks": rk, "overhead": over, "model": fit, "goal": big}, f, indent=2)
    cmdline = f"python3 bench/sim_bench.py --threads {args.threads} --duration {args.duration:g}"
    if args.skip_goal:
        cmdline += " --skip-goal"
    if args.repeats != 3:
        cmdline += f" --repeats {args.repeats}"
    lines = ["# ftte simulator benchmark", "",
             f"Produced by `{cmdline}` at {commit} on {when} ({CORES} CPUs).", "",
             "## Population: what an idle device costs", "",
             f"FTTE on the cnn, Fashion-MNIST, 64 samples drawn per device (`sample:64`), "
             f"concurrency 20, {args.duration:g} virtual s, {args.threads} threads: the same "
             "training work at every size.", "",
             "| devices | wall s | updates | peak RSS | RSS per added device |",
             "|---:|---:|---:|---:|---:|"]
    for r in pop:
        per = r.get("rss_bytes_per_added_device")
        lines.append(f"| {r['devices']} | {r['wall_s']} | {r['updates_applied']} | "
                     f"{mib(r['peak_rss_bytes'])} | "
                     f"{'' if per is None else f'{per / 1024:.2f} KiB'} |")
    lines += ["", "## Ranks (MPI) against threads", "",
              "`experiments/paper-fmnist-small.toml`, FTTE and FedBuff, one seed, 180 virtual s. "
              "`identical`: results.json byte-identical to the first row's. Speed-up against one "
              f"process with one thread. This machine has {CORES} cores: runs with more ranks x "
              "threads than cores are oversubscribed (*).", "",
              "| run | wall s | speed-up | identical | broadcast per update | RSS, all ranks |",
              "|---|---:|---:|:-:|---:|---:|"]
    for r in rk:
        label = (f"mpirun -np {r['ranks']} x {r['threads']} thread, --split {r['split']}"
                 if r["kind"] == "mpirun" else f"1 process x {r['threads']} thread(s)")
        if r["oversubscribed"]:
            label += " *"
        per = r.get("broadcast_bytes_per_update")
        lines.append(f"| {label} | {r['wall_s']} | {r['speedup']}x | "
                     f"{'yes' if r['identical'] else '**NO**'} | "
                     f"{'' if per is None else f'{per / 1024:.1f} KiB'} | "
                     f"{mib(r['peak_rss_bytes_sum'])} |")
    lines += ["", "`--split runs` spreads this experiment's two runs (FTTE and FedBuff, of "
              "different lengths) whole: the longer one bounds it."]
    if over:
        ratios = sorted(p["ratio"] for p in over)
        median = ratios[len(ratios) // 2]
        each = ", ".join(f"{p['ranks']} s / {p['threads']} s" for p in over)
        lines += ["", f"MPI overhead, 2 ranks x 1 thread (`--split jobs`) against 1 process x 2 "
                  f"threads on {CORES} cores, {len(over)} alternated pairs ({each}): median "
                  f"**{100 * (median - 1):+.1f}%**, range {100 * (ratios[0] - 1):+.1f}% to "
                  f"{100 * (ratios[-1] - 1):+.1f}% (goal: <= 10%)."]
    if fit:
        pred = ", ".join(f"{n} ranks {v}x" for n, v in fit["predicted_speedup"].items())
        lines += ["", f"Model of a cluster (Amdahl's law fitted to the 2-rank run: serial share "
                  f"{fit['serial_share']}): {pred}, one core per rank, assuming the network "
                  "carries the broadcasts above without becoming the limit. A model, not a "
                  "measurement."]
    if big:
        lines += ["", "## 100,000 devices", "",
                  f"`experiments/paper-fmnist.toml` (FTTE), 100,000 devices with 120 samples "
                  f"drawn each, 600 virtual s, {big['threads']} threads: the run **"
                  f"{big['run_wall_s']} s** wall ({big['wall_s']} s with the config's tuning "
                  f"trials), peak RSS {mib(big['peak_rss_bytes'])}, {big['updates_applied']} updates "
                  f"applied, final accuracy {100 * big['final_accuracy']:.2f}%, "
                  f"{big['excluded_devices']} devices excluded by memory."]
    with open(os.path.join(args.out, "sim.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
