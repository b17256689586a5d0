#!/usr/bin/python3
"""The privacy-utility frontier: accuracy at a user-level epsilon, FTTE vs FedBuff vs FedAvg.

  python3 bench/privacy_bench.py [--config experiments/paper-fmnist-small.toml]
      [--epsilons 1,3,8] [--methods ftte,fedbuff,fedavg] [--seeds 0] [--devices N]
      [--clip 0.5] [--quantile 0.5] [--set key=value ...] [--jobs 2] [--threads 1]
      [--name privacy] [--out bench/results] [--no-micro]

For every method, first the run without privacy (epsilon = infinity), then one run per target
epsilon at delta = 1 / N^1.1 (N devices: the config's devices.count, or --devices for data that
brings its own users, such as bible-chapters' 1,189 chapters). The noise of a method's private
runs is calibrated (`privacy.updates_per_device`, fl::NoiseForLoad) so that each device may send
twice the mean updates per device of that method's non-private run (rounded up) within the
target; a device that spent it gets no more work (`privacy.target_epsilon`). Clipping is
adaptive (`privacy.adaptive_quantile`, the median norm by default) from the bound --clip.
The metric is the accuracy (top-1 for next-word models) over the last quarter of the horizon,
mean over seeds with the 95% interval, and its change from the non-private run.

Runs go to <out>/<name>/<eps>-<method>/ and are resumed (`--resume`), so an interrupted study
continues. Unless --no-micro, the cost of privacy is measured too: one FedBuff aggregation
(K = 10, the cnn) plain, with central DP and with adaptive clipping, and a device's clip and
noise share in distributed mode (`bench/ftte_micro --benchmark_filter='Aggregation|Privatize'`,
medians of 3 repetitions). Writes
<out>/<name>.json and <out>/<name>.md.
"""
import argparse
import concurrent.futures
import json
import math
import os
import sys

from benchlib import (add_study_args, late_accuracy, log, machine_info,
                      md_table, mean_ci, parse_study_args, run_micro,
                      simulate_method)

def simulate(a, out_dir, method, sets):
    return simulate_method(a, out_dir, method, sets, "privacy")


def summarize(results):
    """The method's late accuracy (mean, ci95), worst epsilon, noise, mean final clip, mean
    updates applied and the updates refused for a spent budget."""
    duration = results["config"]["duration_s"]
    runs = results["methods"][0]["runs"]
    mean, ci = mean_ci([late_accuracy(r, duration) for r in runs])
    private = [r["privacy"] for r in runs if "privacy" in r]
    eps = [p["epsilon"] for p in private]
    return {
        "late_accuracy": mean, "ci95": ci,
        "epsilon": None if not private or None in eps else max(eps),
        "noise_multiplier": private[0].get("noise_multiplier") if private else None,
        "final_clip": sum(p.get("clip", 0) for p in private) / len(private) if private else None,
        "refused": sum(p["refused"] for p in private),
        "updates_applied": sum(r["updates_applied"] for r in runs) / len(runs),
    }


def micro():
    out = {}
    for b in run_micro("Aggregation|Privatize", "--benchmark_repetitions=3"):
        if b.get("aggregate_name") == "median":
            out[b["label"]] = {"ms": b["real_time"], "values": b["values"]}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="experiments/paper-fmnist-small.toml")
    ap.add_argument("--epsilons", default="1,3,8")
    ap.add_argument("--methods", default="ftte,fedbuff,fedavg")
    ap.add_argument("--seeds", help="comma-separated seeds (default: the config's)")
    ap.add_argument("--devices", type=int, help="N for delta = 1 / N^1.1 (default: "
                    "the config's devices.count)")
    ap.add_argument("--clip", type=float, default=0.5, help="the first clip bound")
    ap.add_argument("--quantile", type=float, default=0.5,
                    help="adaptive clipping's target quantile (0: a fixed clip)")
    add_study_args(ap, "privacy")
    a = parse_study_args(ap)
    try:
        epsilons = [float(e) for e in a.epsilons.split(",")]
    except ValueError:
        sys.exit("error: --epsilons takes numbers such as 1,3,8 (got %r)" % a.epsilons)
    if any(not e > 0 for e in epsilons):
        sys.exit("error: --epsilons must be > 0 (infinity, no privacy, always runs)")
    if not a.clip > 0 or not 0 <= a.quantile < 1:
        sys.exit("error: --clip must be > 0 and --quantile in [0, 1)")
    methods = a.methods.split(",")
    base = os.path.join(a.out, a.name)

    def plain(m):
        return simulate(a, os.path.join(base, "inf-" + m), m, [])

    with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
        plains = dict(zip(methods, pool.map(plain, methods)))
    config = plains[methods[0]]["config"]
    n = a.devices or config["devices"]["count"]
    delta = 1 / n ** 1.1
    per_device = {}
    for m in methods:
        mean_updates = summarize(plains[m])["updates_applied"] / n
        per_device[m] = max(1, math.ceil(2 * mean_updates))

    def private(job):
        e, m = job
        sets = ["privacy.clip=%g" % a.clip, "privacy.noise_multiplier=0",
                "privacy.delta=%.6g" % delta, "privacy.target_epsilon=%g" % e,
                "privacy.updates_per_device=%d" % per_device[m],
                "privacy.adaptive_quantile=%g" % a.quantile]
        return simulate(a, os.path.join(base, "%g-%s" % (e, m)), m, sets)

    jobs = [(e, m) for e in epsilons for m in methods]
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
        privates = dict(zip(jobs, pool.map(private, jobs)))
    table = {"inf": {m: summarize(plains[m]) for m in methods}}
    for (e, m), r in privates.items():
        table.setdefault("%g" % e, {})[m] = summarize(r)
    costs = micro() if not a.no_micro else {}

    rows = []
    for key in ["%g" % e for e in epsilons] + ["inf"]:
        cells = ["infinity (no privacy)" if key == "inf" else key]
        for m in methods:
            s = table[key][m]
            cell = "%.2f%% ± %.2f" % (100 * s["late_accuracy"], 100 * s["ci95"])
            if key != "inf":
                cell += " (%+.2f; spent %s, z %.3g, clip %.3g)" % (
                    100 * (s["late_accuracy"] - table["inf"][m]["late_accuracy"]),
                    "-" if s["epsilon"] is None else "%.2f" % s["epsilon"],
                    s["noise_multiplier"], s["final_clip"])
            cells.append(cell)
        rows.append(cells)
    machine = machine_info()
    args = " ".join(sys.argv[1:])
    report = {"machine": machine, "arguments": args, "config": a.config, "devices": n,
              "delta": delta, "updates_per_device": per_device, "frontier": table,
              "aggregation_cost": costs}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, a.name + ".json"), "w") as f:
        json.dump(report, f, indent=1)
    metric = "top-1" if config.get("target_metric") == "top1" else "accuracy"
    md = ["# Privacy-utility frontier (%s)" % a.config, "",
          "`python3 bench/privacy_bench.py%s` at %s (%s, %d cores). %s over the last quarter of "
          "the horizon, mean over seeds ± 95%% interval; in brackets the change from the run "
          "without privacy (points), the epsilon the most exposed device spent, the noise "
          "multiplier z and the clip bound adaptive clipping ended at. User-level, central DP "
          "at delta = 1/N^1.1 = %.3g (N = %d devices); each device may send %s updates within "
          "the budget (twice its method's mean without privacy)." % (
              (" " + args) if args else "", machine["git_commit"], machine["cpu_model"],
              machine["nproc"], metric.capitalize(), delta, n,
              ", ".join("%s %d" % (m, per_device[m]) for m in methods)),
          "", md_table(["epsilon"] + methods, rows), ""]
    if costs:
        plain_ms = costs.get("plain", {}).get("ms")
        md += ["The cost of privacy: one FedBuff aggregation of K = 10 updates of the cnn (%d "
               "values each) on the server, and (device-noise) what distributed DP adds to one "
               "device's job: clipping its update and adding its noise share "
               "(`bench/ftte_micro --benchmark_filter='Aggregation|Privatize'`, median of 3, one "
               "thread). Central DP adds nothing to a device's job." %
               next(iter(costs.values()))["values"], "",
               md_table(["operation", "ms", "vs plain aggregation"],
                        [[k, "%.1f" % v["ms"], "%.2fx" % (v["ms"] / plain_ms)]
                         for k, v in costs.items()]), ""]
    with open(os.path.join(a.out, a.name + ".md"), "w") as f:
        f.write("\n".join(md))
    log("privacy: wrote %s" % os.path.join(a.out, a.name + ".md"))


if __name__ == "__main__":
    main()
