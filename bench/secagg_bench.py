#!/usr/bin/python3
"""What secure aggregation costs: protocol compute and bytes, and time to target on vs off.

  python3 bench/secagg_bench.py [--config experiments/paper-fmnist-small.toml]
      [--methods ftte,fedbuff] [--seeds 0] [--cohorts 0] [--set key=value ...]
      [--jobs 2] [--threads 1] [--name secagg] [--out bench/results] [--no-micro]

For every method, the run without secure aggregation and one run per cohort size in --cohorts
(0: the method's buffer K; a cohort must be within [K, concurrency]), on the config's seeds.
Reported per run: the held time to the config's target (mean over the seeds that held it),
accuracy over the last quarter of the horizon (mean ± 95% interval), upload per applied update,
the protocol's mean virtual seconds per cohort and the updates lost; and the ratios to the run
without it. Unless --no-micro, the protocol's cost from `bench/ftte_micro
--benchmark_filter=SecAgg` (one member's four rounds for an update of 100,000 values, and the
server's unmasking of a cohort, by cohort size and neighbours). Runs go to
<out>/<name>/<method>-<off|cohort>/ and are resumed (--resume). Writes <out>/<name>.json and
<out>/<name>.md.
"""
import argparse
import concurrent.futures
import json
import os
import sys

from benchlib import (FTTE, REPO, add_study_args, file_sha256, late_accuracy, log,
                      machine_info, md_table, mean_ci, parse_study_args, run_micro,
                      simulate_method)

def simulate(a, out_dir, method, sets):
    return simulate_method(a, out_dir, method, sets, "secagg")


def summarize(results):
    duration = results["config"]["duration_s"]
    runs = results["methods"][0]["runs"]
    held = [r["time_to_target_s"] for r in runs if r["time_to_target_s"] is not None]
    late, ci = mean_ci([late_accuracy(r, duration) for r in runs])
    applied = sum(r["updates_applied"] for r in runs)
    secure = [r["secure_aggregation"] for r in runs if "secure_aggregation" in r]
    return {
        "held_s": sum(held) / len(held) if held else None, "held_runs": len(held),
        "runs": len(runs), "late_accuracy": late, "ci95": ci,
        "updates_applied": applied / len(runs),
        "upload_per_update": sum(r["bytes_up"] for r in runs) / max(1, applied),
        "protocol_s": sum(s["protocol_s"] for s in secure) / len(secure) if secure else None,
        "lost": sum(s["lost"] for s in secure) / len(secure) if secure else None,
        "aborted": sum(s["aborted"] for s in secure) if secure else None,
        "clamped": sum(s["clamped"] for s in secure) if secure else None,
    }


def micro():
    out = {"member": [], "server": []}
    for b in run_micro("SecAgg"):
        args = [int(x) for x in b["name"].split("/")[1:]]
        if b["name"].startswith("BM_SecAggMember"):
            out["member"].append({"cohort": args[0], "neighbours": args[1], "ms": b["real_time"],
                                  "upload_bytes": b["upload_bytes"],
                                  "download_bytes": b["download_bytes"],
                                  "upload_vs_plain": b["upload_vs_plain"]})
        else:
            out["server"].append({"cohort": args[0], "neighbours": args[1],
                                  "dropped": int(b["dropped"]), "ms": b["real_time"]})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="experiments/paper-fmnist-small.toml")
    ap.add_argument("--methods", default="ftte,fedbuff")
    ap.add_argument("--seeds", help="comma-separated seeds (default: the config's)")
    ap.add_argument("--cohorts", default="0", help="cohort sizes, 0 = the buffer")
    add_study_args(ap, "secagg")
    a = parse_study_args(ap)
    try:
        cohorts = [int(c) for c in a.cohorts.split(",")]
    except ValueError:
        sys.exit("error: --cohorts takes integers such as 0,10 (got %r)" % a.cohorts)
    if any(c < 0 for c in cohorts):
        sys.exit("error: --cohorts must be >= 0 (0: the buffer)")
    methods = a.methods.split(",")
    base = os.path.join(a.out, a.name)
    jobs = [(m, None) for m in methods] + [(m, c) for m in methods for c in cohorts]

    def run(job):
        m, c = job
        if c is None:
            return simulate(a, os.path.join(base, m + "-off"), m, [])
        sets = ["secure_aggregation.enabled=true", "secure_aggregation.cohort=%d" % c]
        return simulate(a, os.path.join(base, "%s-%d" % (m, c)), m, sets)

    with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
        results = dict(zip(jobs, pool.map(run, jobs)))
    table = {"%s-%s" % (m, "off" if c is None else c): summarize(r)
             for (m, c), r in results.items()}
    config = results[jobs[0]]["config"]
    costs = micro() if not a.no_micro else {}

    rows = []
    for m, c in jobs:
        s = table["%s-%s" % (m, "off" if c is None else c)]
        off = table[m + "-off"]
        held = "never" if s["held_s"] is None else "%.1f min (%d/%d)" % (
            s["held_s"] / 60, s["held_runs"], s["runs"])
        rows.append([m, "off" if c is None else ("buffer" if c == 0 else c), held,
                     "-" if c is None or s["held_s"] is None or off["held_s"] is None
                     else "%.2fx" % (s["held_s"] / off["held_s"]),
                     "%.2f%% ± %.2f" % (100 * s["late_accuracy"], 100 * s["ci95"]),
                     "%.0f" % s["updates_applied"],
                     "%.2f MiB" % (s["upload_per_update"] / 2**20),
                     "-" if c is None else "%.2fx" % (s["upload_per_update"] /
                                                      off["upload_per_update"]),
                     "-" if s["protocol_s"] is None else "%.1f" % s["protocol_s"],
                     "-" if s["lost"] is None else "%.0f" % s["lost"]])
    machine = machine_info()
    args = " ".join(sys.argv[1:])
    binary = "%s (sha256 %s)" % (os.path.relpath(FTTE, REPO) if FTTE.startswith(REPO) else FTTE,
                                 file_sha256(FTTE))
    report = {"machine": machine, "arguments": args, "config": a.config, "binary": binary,
              "runs": table, "protocol_cost": costs}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, a.name + ".json"), "w") as f:
        json.dump(report, f, indent=1)
    md = ["# Secure aggregation: what it costs (%s)" % a.config, "",
          "`python3 bench/secagg_bench.py%s` at %s (%s, %d cores). Held time to the %g%% target "
          "(mean over the seeds that held it), accuracy over the last quarter of the horizon "
          "(mean ± 95%% interval over seeds), updates applied, upload per applied update (all "
          "protocol messages included), the protocol's virtual seconds per cohort and the "
          "updates lost per run. Simulations by %s; runs are resumed, so a report may be "
          "written at a later commit than its runs." % (
              (" " + args) if args else "", machine["git_commit"], machine["cpu_model"],
              machine["nproc"], 100 * config["target_accuracy"], binary),
          "", md_table(["method", "cohort", "held time to target", "vs off", "late accuracy",
                        "updates", "upload/update", "vs off", "protocol s", "lost"], rows), ""]
    if costs:
        md += ["One member's four rounds for one update of 100,000 values (key agreement, "
               "sharing, masking, revealing; one thread) and its bytes, against sending the same "
               "update as float32 (`bench/ftte_micro --benchmark_filter=SecAgg`; threshold "
               "neighbours/2 + 1):", "",
               md_table(["cohort", "neighbours", "member ms", "upload bytes", "vs plain",
                         "download bytes"],
                        [[x["cohort"], x["neighbours"], "%.1f" % x["ms"],
                          "%.0f" % x["upload_bytes"], "%.3fx" % x["upload_vs_plain"],
                          "%.0f" % x["download_bytes"]] for x in costs["member"]]), "",
               "The server's side of one cohort (receiving every message, rebuilding secrets, "
               "removing masks), with every tenth member dropped after sharing keys where "
               "stated:", "",
               md_table(["cohort", "neighbours", "dropped", "server ms"],
                        [[x["cohort"], x["neighbours"], x["dropped"], "%.1f" % x["ms"]]
                         for x in costs["server"]]), ""]
    with open(os.path.join(a.out, a.name + ".md"), "w") as f:
        f.write("\n".join(md))
    log("secagg: wrote %s" % os.path.join(a.out, a.name + ".md"))


if __name__ == "__main__":
    main()
