#!/usr/bin/python3
"""End-to-end training benchmark: ftte vs. the PyTorch twin (bench/torch_train.py).

  python3 bench/train_bench.py [--seconds 3] [--quick] [--out bench/results]

Table 1: lenet5 and cnn, batch 32, 1 and 2 threads, full training: throughput,
tensor peak and peak RSS of ftte and PyTorch. Table 2: cnn, batch 32, 1 thread,
masks full/last/bias/budget:0.2: ftte's predicted vs. measured peak, trainable
params, throughput (and PyTorch's, for the masks it has).
Each measurement is its own subprocess, repeated 3 times with ftte and PyTorch
alternating (order flipped every repetition); the summary holds medians.
Writes <out>/train.json (raw runs, summary, machine info) and <out>/train.md.
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FTTE = os.path.join(REPO, "build", "release", "ftte")
TORCH_SCRIPT = os.path.join(REPO, "bench", "torch_train.py")
PYTHON = "/usr/bin/python3"
BATCH = 32
MODELS, THREADS = ("lenet5", "cnn"), (1, 2)
MASKS = ("full", "last", "bias", "budget:0.2")
TORCH_MASKS = ("full", "last", "bias")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_json(cmd):
    """Run cmd; return the JSON object on the last non-empty stdout line."""
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    if p.returncode != 0 or not lines:
        sys.exit("error: command failed (exit %d): %s\n%s"
                 % (p.returncode, " ".join(cmd), p.stderr.strip()))
    return json.loads(lines[-1])


def bench_cmd(tool, model, threads, mask, a):
    """Command line for one measurement; both tools share the flag names."""
    head = [FTTE, "bench", "train"] if tool == "ftte" else [PYTHON, TORCH_SCRIPT]
    return head + ["--model", model, "--batch", str(BATCH), "--threads", str(threads),
                   "--mask", mask, "--seconds", str(a.seconds), "--warmup",
                   str(a.warmup)] + (["--json"] if tool == "ftte" else [])


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def have_torch():
    try:
        return subprocess.run([PYTHON, "-c", "import torch"], capture_output=True,
                              timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def machine_info():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f
                        if l.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True).stdout.strip()
    except OSError:  # git not installed
        commit = ""
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": cpu,
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "git_commit": commit or None, "platform": platform.platform(),
            "python": platform.python_version(), "loadavg_at_start": os.getloadavg()}


def median(runs, key):
    return statistics.median([r[key] for r in runs]) if runs else None


def mib(b):
    return "-" if b is None else "%.2f MiB" % (b / 2**20)


def num(x, fmt="%.1f"):
    return "-" if x is None else fmt % x


def ratio(a, b):
    return "-" if a is None or b in (None, 0) else "%.2fx" % (a / b)


def text_table(header, rows):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    fmt = lambda r: "  ".join(str(c).rjust(w) for c, w in zip(r, widths))
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths)]
                     + [fmt(r) for r in rows])


def md_table(header, rows):
    line = lambda cells: "| " + " | ".join(str(c) for c in cells) + " |"
    return "\n".join([line(header), line("---:" for _ in header)] + [line(r) for r in rows])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0,
                    help="timed seconds per measurement (default 3)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 s per measurement, 1 repetition, warmup 2")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    a = ap.parse_args()
    a.reps, a.warmup = (1, 2) if a.quick else (3, 5)
    a.seconds = 1.0 if a.quick else a.seconds

    if not os.access(FTTE, os.X_OK):
        sys.exit("error: ftte binary not found at %s\nbuild it with:\n"
                 "  cmake --preset release && cmake --build --preset release "
                 "--target ftte" % FTTE)
    info = dict(machine_info(), ftte_sha256=file_sha256(FTTE))
    if info["loadavg_at_start"][0] > 0.5 * info["nproc"]:
        log("warning: load average %.2f on %d CPUs; timings will be noisy"
            % (info["loadavg_at_start"][0], info["nproc"]))
    torch_ok = have_torch()
    if not torch_ok:
        log("note: `%s -c 'import torch'` failed; reporting ftte alone" % PYTHON)

    # Measurement plan: (model, threads, mask); table 1 uses mask "full".
    plan = [(m, t, "full") for m in MODELS for t in THREADS]
    plan += [("cnn", 1, mk) for mk in MASKS if ("cnn", 1, mk) not in plan]
    jobs = []
    for model, threads, mask in plan:
        for rep in range(a.reps):
            pair = ["ftte"] + (["torch"] if torch_ok and mask in TORCH_MASKS else [])
            jobs += [(tool, model, threads, mask, rep)
                     for tool in (pair if rep % 2 == 0 else pair[::-1])]

    runs = []
    for i, (tool, model, threads, mask, rep) in enumerate(jobs, 1):
        r = run_json(bench_cmd(tool, model, threads, mask, a))
        runs.append({"tool": tool, "model": model, "threads": threads, "mask": mask,
                     "rep": rep, "result": r})
        log("[%2d/%d] %-5s %-6s threads=%d mask=%-10s rep %d/%d: %8.1f samples/s"
            % (i, len(jobs), tool, model, threads, mask, rep + 1, a.reps,
               r["samples_per_s"]))

    def sel(tool, model, threads, mask):
        return [r["result"] for r in runs if (r["tool"], r["model"], r["threads"],
                                              r["mask"]) == (tool, model, threads, mask)]

    # Summary: medians over repetitions.
    throughput = []
    for model in MODELS:
        for threads in THREADS:
            f, t = sel("ftte", model, threads, "full"), sel("torch", model, threads, "full")
            throughput.append({
                "model": model, "threads": threads,
                "ftte_samples_per_s": median(f, "samples_per_s"),
                "torch_samples_per_s": median(t, "samples_per_s"),
                "ftte_peak_bytes": median(f, "peak_bytes"),
                "torch_peak_tensor_bytes": median(t, "peak_tensor_bytes"),
                "ftte_rss_bytes": median(f, "rss_bytes"),
                "torch_rss_bytes": median(t, "rss_bytes")})
    masks = []
    for mask in MASKS:
        f, t = sel("ftte", "cnn", 1, mask), sel("torch", "cnn", 1, mask)
        masks.append({
            "mask": mask, "trainable_params": median(f, "trainable_params"),
            "predicted_peak_bytes": median(f, "predicted_peak_bytes"),
            "measured_peak_bytes": median(f, "peak_bytes"),
            "full_training_peak_bytes": median(f, "full_training_peak_bytes"),
            "ftte_samples_per_s": median(f, "samples_per_s"),
            "torch_peak_tensor_bytes": median(t, "peak_tensor_bytes"),
            "torch_samples_per_s": median(t, "samples_per_s")})
    full_peak = masks[0]["measured_peak_bytes"]

    h1 = ["model", "threads", "ftte samples/s", "torch samples/s", "ratio",
          "ftte tensor peak", "torch tensor peak", "ratio", "ftte RSS", "torch RSS",
          "ratio"]
    rows1 = [[s["model"], s["threads"], num(s["ftte_samples_per_s"]),
              num(s["torch_samples_per_s"]),
              ratio(s["ftte_samples_per_s"], s["torch_samples_per_s"]),
              mib(s["ftte_peak_bytes"]), mib(s["torch_peak_tensor_bytes"]),
              ratio(s["ftte_peak_bytes"], s["torch_peak_tensor_bytes"]),
              mib(s["ftte_rss_bytes"]), mib(s["torch_rss_bytes"]),
              ratio(s["ftte_rss_bytes"], s["torch_rss_bytes"])] for s in throughput]
    h2 = ["mask", "trainable params", "predicted peak", "measured peak",
          "measured/predicted", "peak vs full", "ftte samples/s", "torch tensor peak",
          "torch samples/s"]
    rows2 = [[m["mask"], num(m["trainable_params"], "%d"), mib(m["predicted_peak_bytes"]),
              mib(m["measured_peak_bytes"]),
              ratio(m["measured_peak_bytes"], m["predicted_peak_bytes"]),
              ratio(m["measured_peak_bytes"], full_peak), num(m["ftte_samples_per_s"]),
              mib(m["torch_peak_tensor_bytes"]), num(m["torch_samples_per_s"])]
             for m in masks]

    info["loadavg_at_end"] = os.getloadavg()
    if file_sha256(FTTE) != info["ftte_sha256"]:
        info["ftte_changed_during_run"] = True
        log("warning: %s was rebuilt during the run; results mix binaries" % FTTE)
    command = " ".join(["python3 bench/train_bench.py"] + sys.argv[1:])
    torch_ver = next((r["result"]["torch_version"] for r in runs if r["tool"] == "torch"), None)
    title1 = ("Training throughput and memory, batch %d, full training "
              "(median of %d runs, %g s each)" % (BATCH, a.reps, a.seconds))
    title2 = "Memory by mask: cnn, batch %d, 1 thread (budget:0.2 = int8 frozen)" % BATCH
    print(title1 + "\n" + text_table(h1, rows1) + "\n\n" + title2 + "\n"
          + text_table(h2, rows2))
    if not torch_ok:
        print("\n(PyTorch not available: torch columns left empty)")

    os.makedirs(a.out, exist_ok=True)
    doc = {"command": command, "quick": a.quick, "torch_available": torch_ok,
           "torch_version": torch_ver, "machine": info,
           "config": {"batch": BATCH, "seconds": a.seconds, "warmup": a.warmup,
                      "repetitions": a.reps, "statistic": "median"},
           "summary": {"throughput": throughput, "masks": masks}, "runs": runs}
    with open(os.path.join(a.out, "train.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    md = ["# ftte training benchmark", "",
          "Produced by `%s` on %s." % (command, info["date"]), "",
          "Machine: %s, %d CPUs, %s; git %s; PyTorch %s; 1-min load %.2f -> %.2f." % (
              info["cpu_model"], info["nproc"], info["platform"], info["git_commit"] or "n/a",
              torch_ver or "n/a", info["loadavg_at_start"][0], info["loadavg_at_end"][0]), "",
          "## " + title1, "", md_table(h1, rows1), "",
          "## " + title2, "", md_table(h2, rows2), "",
          "Tensor peak: ftte's own allocation accounting vs. PyTorch's c10 CPU "
          "allocator as seen by the profiler during one step (see "
          "bench/torch_train.py). RSS is process peak RSS, which for PyTorch "
          "includes the Python interpreter and libtorch. Ratios are ftte/torch; "
          "\"peak vs full\" is the measured peak relative to mask full.", ""]
    with open(os.path.join(a.out, "train.md"), "w") as f:
        f.write("\n".join(md))
    log("wrote train.json and train.md in %s" % a.out)


if __name__ == "__main__":
    main()
