#!/usr/bin/python3
"""The attack study: malicious devices against FTTE and FedBuff, with and without robust rules.

  python3 bench/attack_bench.py [--config experiments/attack-fmnist.toml] [--jobs 2]
      [--threads 1] [--quick] [--out bench/results]

The metric is the accuracy over the last quarter of the horizon (the mean of its evaluations;
see late_accuracy), mean over seeds with the 95% interval.

Each scenario is one `ftte simulate` of every method of the config (same seeds, same devices,
the attack set with --set): clean; each attack (sign_flip, scale, random, label_flip, samples)
with 1%, 10% and 20% of the devices malicious; and each attack as a single malicious update
(max_updates = 1). A scenario's runs go to <out>/attack/<scenario>/ and are resumed
(`--resume`), so an interrupted study continues. Writes <out>/attack.json and <out>/attack.md:
final accuracy per method and scenario (mean over seeds, with the 95% interval), and the change
from the clean run, against the issue's goals: one malicious update moves accuracy by at most
1 point, and 10% attackers leave FTTE within 3 points of clean with the default rule.

--quick: one seed and the 10% column only (a smoke test of the driver, not the study).
--jobs N: scenarios run N at once, each with --threads T (results do not depend on either).
A focused study (what fits a 2-core machine in under an hour) picks fewer cells:
  --methods ftte,ftte-clip --attacks scale,sign_flip --fractions 0.1 --seeds 0
runs the clean run, those attacks at 10% and as a single malicious update, for those methods on
seed 0 only; the report says which cells ran.
--report-only: run nothing; report the scenarios whose runs all finished (an interrupted study),
naming the ones left out.
"""
import argparse
import concurrent.futures
import json
import os
import sys

from benchlib import (FTTE, REPO, late_accuracy, log, machine_info, md_table, mean_ci,
                      require_ftte, simulate_results)

ATTACKS = ("sign_flip", "scale", "random", "label_flip", "samples")
FRACTIONS = (0.01, 0.10, 0.20)


def scenarios(quick, fractions, attacks):
    out = [("clean", [])]
    for kind in attacks:
        for f in (0.10,) if quick else fractions:
            out.append(("%s-%d%%" % (kind, round(100 * f)),
                        ["attack.kind=" + kind, "attack.fraction=%g" % f]))
        if not quick:
            # One malicious update: every device may be the attacker; the first one sends it.
            out.append(("%s-one-update" % kind, ["attack.kind=" + kind, "attack.fraction=1",
                                                 "attack.max_updates=1"]))
    return out


def run(config, name, sets, out_dir, threads, seeds, methods):
    d = os.path.join(out_dir, "attack", name)
    cmd = [FTTE, "simulate", "--config", config, "--out", d, "--threads", str(threads),
           "--resume"]
    if seeds:
        cmd += ["--seeds", seeds]
    if methods:
        cmd += ["--methods", methods]
    for s in sets:
        cmd += ["--set", s]
    log("attack: %s" % name)
    return simulate_results(cmd, d)


def accuracy(results):
    """method -> (mean over seeds of the late accuracy, ci95, robust counts summed)"""
    duration = results["config"]["duration_s"]
    out = {}
    for m in results["methods"]:
        mean, ci = mean_ci([late_accuracy(r, duration) for r in m["runs"]])
        robust = {}
        for r in m["runs"]:
            for k, v in r.get("robust", {}).items():
                robust[k] = robust.get(k, 0) + v
        out[m["name"]] = (mean, ci, robust)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="experiments/attack-fmnist.toml")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--methods", help="comma-separated methods of the config (default: all)")
    ap.add_argument("--fractions", default=",".join("%g" % f for f in FRACTIONS),
                    help="comma-separated shares of malicious devices (default 0.01,0.1,0.2)")
    ap.add_argument("--seeds", help="comma-separated seeds (default: the config's)")
    ap.add_argument("--attacks", default=",".join(ATTACKS),
                    help="comma-separated attacks (default: all of %s)" % ",".join(ATTACKS))
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: report the scenarios that finished")
    a = ap.parse_args()
    require_ftte()
    if a.jobs < 1 or a.threads < 1:
        sys.exit("error: --jobs and --threads must be >= 1")
    try:
        fractions = tuple(float(f) for f in a.fractions.split(","))
    except ValueError:
        sys.exit("error: --fractions takes numbers such as 0.01,0.1 (got %r)" % a.fractions)
    if any(not 0 < f <= 1 for f in fractions):
        sys.exit("error: --fractions must be in (0, 1] (got %r)" % a.fractions)
    attacks = tuple(a.attacks.split(","))
    if any(k not in ATTACKS for k in attacks):
        sys.exit("error: --attacks takes some of %s (got %r)" % (",".join(ATTACKS), a.attacks))
    seeds = "0" if a.quick else a.seeds
    grid = scenarios(a.quick, fractions, attacks)
    results = {}
    missing = []
    if a.report_only:
        for name, _ in grid:
            path = os.path.join(a.out, "attack", name, "results.json")
            if os.path.exists(path):
                with open(path) as f:
                    results[name] = accuracy(json.load(f))
            else:
                missing.append(name)
        if "clean" not in results:
            sys.exit("error: --report-only needs the clean scenario's results (%s)"
                     % os.path.join(a.out, "attack", "clean", "results.json"))
        grid = [(n, s) for n, s in grid if n in results]
    else:
        with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
            futures = {name: pool.submit(run, a.config, name, sets, a.out, a.threads, seeds,
                                         a.methods)
                       for name, sets in grid}
            for name, _ in grid:
                results[name] = accuracy(futures[name].result())
    clean = results["clean"]
    methods = list(clean)
    rows = []
    for name, _ in grid:
        cells = [name]
        for m in methods:
            mean, ci, _ = results[name][m]
            cell = "%.2f%% ± %.2f" % (100 * mean, 100 * ci)
            if name != "clean":
                cell += " (%+.2f)" % (100 * (mean - clean[m][0]))
            cells.append(cell)
        rows.append(cells)
    # The goals, for FTTE's rules: the worst change over the attacks.
    goal_rows = []
    for m in methods:
        one = [results[n][m][0] - clean[m][0] for n, _ in grid if n.endswith("-one-update")]
        ten = [results[n][m][0] - clean[m][0] for n, _ in grid if n.endswith("-10%")]
        goal_rows.append([m,
                          "-" if not one else "%+.2f" % (100 * min(one)),
                          "-" if not ten else "%+.2f" % (100 * min(ten))])
    cells = " ".join(sys.argv[1:])
    report = {"machine": machine_info(), "config": a.config, "quick": a.quick,
              "arguments": cells,
              "not_finished": missing,
              "scenarios": {n: {m: {"late_accuracy": v[0], "ci95": v[1], "robust": v[2]}
                                for m, v in results[n].items()} for n, _ in grid}}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "attack.json"), "w") as f:
        json.dump(report, f, indent=1)
    md = ["# Attack study", "",
          "`python3 bench/attack_bench.py%s` at %s (%s, %d cores). Config: `%s`. Accuracy over "
          "the last quarter of the horizon (mean of its evaluations: a single evaluation swings "
          "by 10-20 points here), mean over seeds ± 95%% interval, and (in brackets) the change "
          "from the clean run in points." % ((" " + cells) if cells else "", report["machine"]["git_commit"],
                       report["machine"]["cpu_model"], report["machine"]["nproc"], a.config),
          "", md_table(["scenario"] + methods, rows), "",
          ("Not finished, so not reported: %s." % ", ".join(missing)) if missing else "", "",
          "Worst change over the attacks run (points). Goals: one malicious update moves "
          "accuracy by at most 1 point; 10% attackers leave FTTE within 3 points of clean.", "",
          md_table(["method", "one update", "10% of devices"], goal_rows), ""]
    with open(os.path.join(a.out, "attack.md"), "w") as f:
        f.write("\n".join(md))
    log("attack: wrote %s/attack.md" % a.out)


if __name__ == "__main__":
    main()
