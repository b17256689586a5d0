#!/usr/bin/python3
"""Language-model training benchmark: ftte vs. the PyTorch twins (bench/torch_lm.py).

  /usr/bin/python3 bench/lm_bench.py [--seconds 3] [--quick] [--out bench/results]

Table 1: lstm_lm (vocab 10000, 96-wide embedding, 256 hidden, context 32) and tiny_gpt (vocab
10000, width 128, 2 blocks, 4 heads, context 64) at batch 16, and the gpt family at ~3M and ~29M
parameters (context 128) at batch 8; 1 and 2 threads, full training: tokens/s of ftte and
PyTorch and their ratio, tensor peaks.
Table 2: 1 thread, peak training memory by trainable set: full, LoRA (tiny_gpt_lora rank 8 and
gpt-29M rank 8, adapters only; also with frozen int8 weights), forward only with int8 weights
(the inference footprint), and the FTTE budget selection (budget:F of full training's peak and
a fixed MiB budget; frozen matrices int8): ftte's predicted vs. measured peak, PyTorch's peak
where it has the same trainable set. A budget below what any trainable subset needs is reported
as infeasible with ftte's message.
Every measurement is its own subprocess, repeated 3 times with ftte and PyTorch alternating
(order flipped every repetition); the summary holds medians.
Writes <out>/lm.json (raw runs, summary, machine info) and <out>/lm.md.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FTTE = os.path.join(REPO, "build", "release", "ftte")
TORCH_SCRIPT = os.path.join(REPO, "bench", "torch_lm.py")
PYTHON = "/usr/bin/python3"
LSTM = "lstm_lm:vocab=10000,context=32"
GPT = "tiny_gpt:vocab=10000,context=64"
GPT_LORA = "tiny_gpt_lora:vocab=10000,context=64,rank=8"
# The gpt family at ~3M and ~29M parameters, context 128 (the phone-LM sizes).
GPT3 = "gpt:vocab=10000,context=128,layers=4,width=128,heads=4"
GPT29 = "gpt:vocab=10000,context=128,layers=6,width=512,heads=8"
GPT29_LORA = GPT29 + ",rank=8"
# Batch per model: 16 sequences for the small models, 8 x 128 tokens for the gpt family.
BATCH = {LSTM: 16, GPT: 16, GPT_LORA: 16, GPT3: 8, GPT29: 8, GPT29_LORA: 8}
THREADS = (1, 2)
THROUGHPUT = (LSTM, GPT, GPT3, GPT29)
# (label, ftte model, ftte mask, torch model or None, torch mask[, extra ftte flags])
MEMORY = [
    ("lstm_lm", LSTM, "full", LSTM, "full"),
    ("lstm_lm", LSTM, "budget:0.2", None, None),
    ("lstm_lm", LSTM, "budget:0.6", None, None),
    ("lstm_lm", LSTM, "budget:64MiB", None, None),
    ("tiny_gpt", GPT, "full", GPT, "full"),
    ("tiny_gpt", GPT_LORA, "lora", GPT_LORA, "lora"),
    ("tiny_gpt", GPT, "budget:0.2", None, None),
    ("tiny_gpt", GPT, "budget:0.7", None, None),
    ("tiny_gpt", GPT, "budget:100MiB", None, None),
    ("gpt-29M", GPT29, "full", GPT29, "full"),
    ("gpt-29M", GPT29, "none", None, None, ["--frozen", "int8"]),
    ("gpt-29M", GPT29_LORA, "lora", GPT29_LORA, "lora"),
    ("gpt-29M", GPT29_LORA, "lora", None, None, ["--frozen", "int8"]),
]

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_bench import (file_sha256, have_torch, log, machine_info, md_table, mib,  # noqa: E402
                         num, ratio, text_table)


def run(cmd):
    """Runs cmd; returns (JSON object of the last stdout line, None) or (None, error text)."""
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    if p.returncode != 0 or not lines:
        return None, (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]
    return json.loads(lines[-1]), None


def cmd_for(tool, model, threads, mask, a, extra=()):
    if tool == "ftte":
        return [FTTE, "bench", "train", "--model", model, "--batch", str(BATCH[model]),
                "--threads", str(threads), "--mask", mask, "--seconds", str(a.seconds),
                "--warmup", str(a.warmup), "--json"] + list(extra)
    return [PYTHON, TORCH_SCRIPT, "--model", model, "--batch", str(BATCH[model]), "--threads",
            str(threads), "--mask", mask, "--seconds", str(a.seconds), "--warmup", str(a.warmup)]


def mem_key(row):
    """(ftte model, mask, extra flags) of a MEMORY row: what identifies its ftte runs."""
    return row[1], row[2], tuple(row[5]) if len(row) > 5 else ()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--quick", action="store_true", help="1 s, 1 repetition, warmup 2")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    ap.add_argument("--render", metavar="JSON",
                    help="rewrite the tables of an earlier lm.json (its runs, machine and "
                    "command) without measuring again")
    a = ap.parse_args()
    a.reps, a.warmup = (1, 2) if a.quick else (3, 3)
    a.seconds = 1.0 if a.quick else a.seconds
    if a.render:
        with open(a.render) as f:
            old = json.load(f)
        a.reps, a.seconds = old["config"]["repetitions"], old["config"]["seconds"]
        a.warmup, a.quick = old["config"]["warmup"], old["quick"]
        render(a, old["runs"], old["machine"], old["torch_available"], old["command"])
        return
    if not os.access(FTTE, os.X_OK):
        sys.exit("error: ftte binary not found at %s\nbuild it with:\n  cmake --preset release "
                 "&& cmake --build --preset release --target ftte" % FTTE)
    info = dict(machine_info(), ftte_sha256=file_sha256(FTTE))
    if info["loadavg_at_start"][0] > 0.5 * info["nproc"]:
        log("warning: load average %.2f on %d CPUs; timings will be noisy"
            % (info["loadavg_at_start"][0], info["nproc"]))
    torch_ok = have_torch()

    # Measurements: (tool, model, threads, mask); memory rows reuse the 1-thread full runs.
    plan = [(m, t, "full", m, "full", ()) for m in THROUGHPUT for t in THREADS]
    plan += [(fm, 1, fk, row[3], row[4], extra) for row in MEMORY
             for fm, fk, extra in [mem_key(row)] if fk != "full"]
    jobs = []
    for fm, threads, fk, tm, tk, extra in plan:
        for rep in range(a.reps):
            pair = [("ftte", fm, fk, extra)] + ([("torch", tm, tk, ())] if torch_ok and tm else [])
            for tool, model, mask, ex in (pair if rep % 2 == 0 else pair[::-1]):
                jobs.append((tool, model, threads, mask, ex, rep))
    runs = []
    for i, (tool, model, threads, mask, extra, rep) in enumerate(jobs, 1):
        r, err = run(cmd_for(tool, model, threads, mask, a, extra))
        runs.append({"tool": tool, "model": model, "threads": threads, "mask": mask,
                     "extra": list(extra), "rep": rep, "loadavg": os.getloadavg()[0],
                     "result": r, "error": err})
        log("[%2d/%d] %-5s %-58s t=%d %-13s %s rep %d: %s" % (
            i, len(jobs), tool, model, threads, mask, " ".join(extra), rep + 1,
            "%.0f tokens/s" % r["tokens_per_s"] if r else "error: " + err))
    info["loadavg_at_end"] = os.getloadavg()
    loads = [r["loadavg"] for r in runs]
    info["loadavg_during_runs"] = [min(loads), statistics.median(loads), max(loads)]
    if file_sha256(FTTE) != info["ftte_sha256"]:
        info["ftte_changed_during_run"] = True
        log("warning: %s was rebuilt during the run; results mix binaries" % FTTE)
    command = " ".join(["/usr/bin/python3 bench/lm_bench.py"] + sys.argv[1:])
    render(a, runs, info, torch_ok, command)


def render(a, runs, info, torch_ok, command):
    """Summarises `runs` and writes lm.json and lm.md in a.out."""

    def sel(tool, model, threads, mask, extra=()):
        return [r["result"] for r in runs if r["result"] and (
            r["tool"], r["model"], r["threads"], r["mask"], tuple(r["extra"])) == (
            tool, model, threads, mask, tuple(extra))]

    def med(rs, key):
        return statistics.median([r[key] for r in rs]) if rs else None

    def error_of(model, mask, extra):
        return next((r["error"] for r in runs if r["tool"] == "ftte" and r["model"] == model
                     and r["mask"] == mask and tuple(r["extra"]) == tuple(extra)
                     and r["error"]), None)

    throughput = []
    for m in THROUGHPUT:
        for t in THREADS:
            f, p = sel("ftte", m, t, "full"), sel("torch", m, t, "full")
            throughput.append({
                "model": m, "batch": BATCH[m], "threads": t, "ftte_tokens_per_s": med(f, "tokens_per_s"),
                "torch_tokens_per_s": med(p, "tokens_per_s"),
                "ftte_peak_bytes": med(f, "peak_bytes"),
                "torch_peak_tensor_bytes": med(p, "peak_tensor_bytes"),
                "ftte_rss_bytes": med(f, "rss_bytes"), "torch_rss_bytes": med(p, "rss_bytes")})
    memory = []
    for row in MEMORY:
        label, (fm, fk, extra), tm, tk = row[0], mem_key(row), row[3], row[4]
        f = sel("ftte", fm, 1, fk, extra)
        p = sel("torch", tm, 1, tk) if tm else []
        memory.append({
            "model": label, "ftte_model": fm, "mask": fk, "extra": list(extra),
            "batch": BATCH[fm],
            "trainable_params": med(f, "trainable_params"), "params": med(f, "params"),
            "budget_bytes": med(f, "budget_bytes"),
            "predicted_peak_bytes": med(f, "predicted_peak_bytes"),
            "measured_peak_bytes": med(f, "peak_bytes"),
            "full_training_peak_bytes": med(f, "full_training_peak_bytes"),
            "ftte_tokens_per_s": med(f, "tokens_per_s"),
            "torch_peak_tensor_bytes": med(p, "peak_tensor_bytes"),
            "torch_tokens_per_s": med(p, "tokens_per_s"),
            "infeasible": None if f else error_of(fm, fk, extra)})

    h1 = ["model", "params", "batch", "threads", "ftte tokens/s", "torch tokens/s", "ratio", "ftte tensor peak",
          "torch tensor peak", "ratio", "ftte RSS", "torch RSS"]
    params = {r["model"]: r["result"]["params"] for r in runs
              if r["tool"] == "ftte" and r["result"]}

    def short(model):
        name = model.split(":")[0]
        if name == "gpt":
            return "gpt %.1fM" % (params.get(model, 0) / 1e6) if model in params else model
        return name

    rows1 = [[short(s["model"]), num(params.get(s["model"]), "%d"), s["batch"], s["threads"], num(s["ftte_tokens_per_s"], "%.0f"),
              num(s["torch_tokens_per_s"], "%.0f"),
              ratio(s["ftte_tokens_per_s"], s["torch_tokens_per_s"]),
              mib(s["ftte_peak_bytes"]), mib(s["torch_peak_tensor_bytes"]),
              ratio(s["ftte_peak_bytes"], s["torch_peak_tensor_bytes"]),
              mib(s["ftte_rss_bytes"]), mib(s["torch_rss_bytes"])] for s in throughput]
    full = {m["model"]: m["measured_peak_bytes"] for m in memory if m["mask"] == "full"}
    h2 = ["model", "batch", "mask", "trainable params", "budget", "predicted peak", "measured peak",
          "measured/predicted", "peak vs full", "ftte tokens/s", "torch tensor peak",
          "torch tokens/s"]
    rows2 = []
    for m in memory:
        if m["infeasible"]:
            rows2.append([m["model"], m["batch"], m["mask"], "infeasible", "-", "-", "-", "-",
                          "-", "-", "-", "-"])
            continue
        mask = m["mask"] + (" (tiny_gpt_lora)" if m["ftte_model"] == GPT_LORA else "")
        mask += (" (rank 8)" if m["ftte_model"] == GPT29_LORA else "")
        mask += (" (forward only)" if m["mask"] == "none" else "")
        mask += (", frozen int8" if "int8" in m["extra"] else "")
        rows2.append([m["model"], m["batch"], mask,
                      num(m["trainable_params"], "%d"),
                      mib(m["budget_bytes"]) if m["budget_bytes"] else "-",
                      mib(m["predicted_peak_bytes"]), mib(m["measured_peak_bytes"]),
                      ratio(m["measured_peak_bytes"], m["predicted_peak_bytes"]),
                      ratio(m["measured_peak_bytes"], full.get(m["model"])),
                      num(m["ftte_tokens_per_s"], "%.0f"), mib(m["torch_peak_tensor_bytes"]),
                      num(m["torch_tokens_per_s"], "%.0f")])
    notes = ["- %s %s: %s" % (m["model"], m["mask"], m["infeasible"]) for m in memory
             if m["infeasible"]]

    torch_ver = next((r["result"]["torch_version"] for r in runs
                      if r["tool"] == "torch" and r["result"]), None)
    title1 = ("Training throughput, full training (median of %d runs, %g s each)"
              % (a.reps, a.seconds))
    title2 = "Peak training memory by trainable set, 1 thread"
    print(title1 + "\n" + text_table(h1, rows1) + "\n\n" + title2 + "\n"
          + text_table(h2, rows2) + ("\n\n" + "\n".join(notes) if notes else ""))

    os.makedirs(a.out, exist_ok=True)
    doc = {"command": command, "quick": a.quick, "torch_available": torch_ok,
           "torch_version": torch_ver, "machine": info,
           "config": {"batch": {m: BATCH[m] for m in BATCH}, "seconds": a.seconds, "warmup": a.warmup,
                      "repetitions": a.reps, "statistic": "median"},
           "summary": {"throughput": throughput, "memory": memory}, "runs": runs}
    with open(os.path.join(a.out, "lm.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    lo, mid, hi = info["loadavg_during_runs"]
    md = ["# ftte language-model training benchmark", "",
          "Produced by `%s` on %s." % (command, info["date"]), "",
          "Machine: %s, %d CPUs, %s; git %s; PyTorch %s. 1-min load average during the runs: "
          "min %.2f, median %.2f, max %.2f%s." % (
              info["cpu_model"], info["nproc"], info["platform"], info["git_commit"] or "n/a",
              torch_ver or "n/a", lo, mid, hi,
              " (the machine was busy: other work was running, so absolute figures are noisy; "
              "ftte and PyTorch alternate, so ratios are fairer)" if mid > 0.5 * info["nproc"]
              else ""), "",
          "Models: `%s` (Embedding 96, LSTM 256, Linear), `%s` (width 128, 2 pre-norm blocks, "
          "4 heads), `%s` (LoRA rank 8 on every attention and MLP Linear). Synthetic batch: "
          "uniform token ids, one uniform next-id label per position, SGD lr 0.01 momentum "
          "0.9 on both sides. The gpt family (`%s`, `%s`; `rank=8` adds LoRA) is tiny_gpt's "
          "pre-norm block by size, batch 8 x context 128. \"none\" is forward only: the "
          "int8 inference footprint a LoRA step is compared with." % (
              LSTM, GPT, GPT_LORA, GPT3, GPT29), "",
          "## " + title1, "", md_table(h1, rows1), "",
          "## " + title2, "", md_table(h2, rows2), ""]
    if notes:
        md += ["Infeasible budgets (ftte's own message):", ""] + notes + [""]
    if info.get("ftte_changed_during_run"):
        md += ["Warning: build/release/ftte was rebuilt while this run was measuring, so its rows "
               "mix two binaries (see the note in docs/language-models.md).", ""]
    md += ["Tensor peak: ftte's allocation accounting (predicted by the planner, measured by the "
           "tracker) vs. PyTorch's c10 CPU allocator seen by the profiler during one step "
           "(bench/torch_train.py explains the method). Budget masks keep frozen matrices int8. "
           "\"peak vs full\" is relative to the same model's full training. Ratios are "
           "ftte/torch.", ""]
    with open(os.path.join(a.out, "lm.md"), "w") as f:
        f.write("\n".join(md))
    log("wrote lm.json and lm.md in %s" % a.out)


if __name__ == "__main__":
    main()
