#!/usr/bin/env python3
"""Private personalisation on the keyboard (issue 15): per-user next-word top-3 of the global
model alone vs global + personal part, measured through the keyboard example (examples/keyboard,
the public C API only).

For each base-model seed: `ftte train --model lstm_lm --data bible` (one user per chapter, the
last 10% of each chapter held out, the same split as experiments/keyboard.toml) writes the
global model. Then for each user (chapter) a fresh keyboard state is created from it; the
chapter's training verses are typed into the example as messages; `:train` fits the personal
part; `:eval` scores the held-out verses (those entirely inside the held-out 10%, so neither
part ever saw them). The same run without `:train` shows what fitting adds over the default
mixture weights.

  python3 bench/keyboard_bench.py [--seeds 0,1,2] [--users 0 (all)] [--epochs 1] [--jobs 2]

Writes bench/results/keyboard.{json,md} (or --out DIR).
"""
import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

KEYBOARD = os.environ.get("FTTE_KEYBOARD") or os.path.join(benchlib.REPO, "build", "release",
                                                           "examples", "keyboard")
VERSE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)$")
EVAL = re.compile(r"eval .*: (\d+) words; global top-1 ([\d.]+)% top-3 ([\d.]+)% perplexity "
                  r"([\d.]+); with personal top-1 ([\d.]+)% top-3 ([\d.]+)% perplexity ([\d.]+)")
HOLDOUT = 0.1


def chapters():
    """[(name, [verse text])] in Bible order, as data::LoadBibleKjv(kChapter) reads them."""
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, check=True).stdout
    users = []
    for line in out.splitlines():
        if not line.strip():
            continue
        m = VERSE.match(line)
        if not m:
            sys.exit("error: unexpected bible output line: %r" % line[:80])
        name = m.group(1) + m.group(2)
        if not users or users[-1][0] != name:
            users.append((name, []))
        users[-1][1].append(m.group(4))
    return users


WORD = re.compile(r"[A-Za-z0-9\x80-\U0010ffff]+(?:['-][A-Za-z0-9\x80-\U0010ffff]+)*")


def pieces(line):
    """Pieces of the word tokenizer (tokenizer.h) in one line, <eos> included."""
    n, i = 0, 0
    while i < len(line):
        if line[i].isspace():
            i += 1
            continue
        m = WORD.match(line, i)
        i = m.end() if m else i + 1
        n += 1
    return n + 1 if n else 0


def split(verses):
    """(typed verses, held-out verses): held out = verses that start at or after the first
    held-out piece (lm_data.h HeldOutStart: n - floor(n * holdout))."""
    counts = [pieces(v) for v in verses]
    n = sum(counts)
    start = n - int(n * HOLDOUT)
    typed, held, at = [], [], 0
    for v, c in zip(verses, counts):
        (held if at >= start else typed).append(v)
        at += c
    return typed, held


def run_user(base, typed, held, train):
    with tempfile.TemporaryDirectory(prefix="ftte-kb-") as d:
        held_path = os.path.join(d, "held.txt")
        with open(held_path, "w") as f:
            f.write("".join(v + "\n" for v in held))
        script = "".join(v + "\n" for v in typed) + (":train\n" if train else "") + \
            ":eval %s\n" % held_path
        p = subprocess.run([KEYBOARD, "--state", os.path.join(d, "state"), "--model", base,
                            "--quiet"], input=script, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit("error: keyboard failed (exit %d): %s" % (p.returncode, p.stderr[-2000:]))
        m = EVAL.search(p.stdout)
        if not m:
            sys.exit("error: no eval line in the keyboard's output:\n" + p.stdout[-2000:])
        words = int(m.group(1))
        g1, g3, gp, p1, p3, pp = (float(x) for x in m.groups()[1:])
        return {"words": words, "global_top1": g1, "global_top3": g3, "global_ppl": gp,
                "personal_top1": p1, "personal_top3": p3, "personal_ppl": pp}


def quantile(xs, q):
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def summarize(rows):
    d3 = [r["personal_top3"] - r["global_top3"] for r in rows]
    d1 = [r["personal_top1"] - r["global_top1"] for r in rows]
    words = sum(r["words"] for r in rows)
    pooled = lambda key: sum(r[key] * r["words"] for r in rows) / words
    return {"users": len(rows), "words": words,
            "global_top3": benchlib.mean_ci([r["global_top3"] for r in rows])[0],
            "personal_top3": benchlib.mean_ci([r["personal_top3"] for r in rows])[0],
            "delta_top3": benchlib.mean_ci(d3),
            "delta_top1": benchlib.mean_ci(d1),
            "delta_top3_p10_median_p90": [quantile(d3, 0.1), quantile(d3, 0.5),
                                          quantile(d3, 0.9)],
            "improved_fraction": sum(1 for x in d3 if x > 0) / len(d3),
            "worse_fraction": sum(1 for x in d3 if x < 0) / len(d3),
            "pooled_global_top3": pooled("global_top3"),
            "pooled_personal_top3": pooled("personal_top3"),
            "global_top1": sum(r["global_top1"] for r in rows) / len(rows),
            "personal_top1": sum(r["personal_top1"] for r in rows) / len(rows)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--users", type=int, default=0, help="evenly spaced chapters; 0 = all")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--reuse-base", action="store_true",
                    help="keep base models already in --work (same seed and epochs)")
    ap.add_argument("--out", default=os.path.join(benchlib.REPO, "bench", "results"))
    ap.add_argument("--work", default=os.path.join(benchlib.REPO, "bench", "results",
                                                   "keyboard-work"))
    a = ap.parse_args()
    benchlib.require_ftte()
    if not os.access(KEYBOARD, os.X_OK):
        sys.exit("error: the keyboard example is not built at %s; run cmake --build --preset "
                 "release --target keyboard" % KEYBOARD)
    os.makedirs(a.work, exist_ok=True)
    users = chapters()
    if a.users:
        step = len(users) / a.users
        users = [users[int(i * step)] for i in range(a.users)]
    splits = [(name,) + split(verses) for name, verses in users]
    splits = [s for s in splits if s[1] and s[2]]
    results = {"machine": benchlib.machine_info(), "users": len(splits), "epochs": a.epochs,
               "seeds": {}}
    started = time.time()
    for seed in [int(s) for s in a.seeds.split(",")]:
        base = os.path.join(a.work, "base-seed%d-epochs%d.safetensors" % (seed, a.epochs))
        t0 = time.time()
        train_json = base + ".json"
        if a.reuse_base and os.path.exists(train_json):
            with open(train_json) as f:
                train = json.load(f)
        else:
            train = benchlib.run_json([benchlib.FTTE, "train", "--model", "lstm_lm", "--data",
                                   "bible", "--vocab", "2000", "--context", "16", "--epochs",
                                   str(a.epochs), "--batch", "32", "--seed", str(seed),
                                   "--threads", str(a.jobs), "--save", base, "--json"])
            with open(train_json, "w") as f:
                json.dump(train, f)
        benchlib.log("seed %d: global model trained in %.0f s: test top-1 %.2f%% top-3 %.2f%%"
                     % (seed, time.time() - t0, 100 * train["test_top1"],
                        100 * train["test_top3"]))
        per_mode = {}
        for mode, fit in (("fitted", True), ("defaults", False)):
            t0 = time.time()
            with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
                rows = list(pool.map(lambda s: dict(user=s[0], **run_user(base, s[1], s[2], fit)),
                                     splits))
            per_mode[mode] = {"summary": summarize(rows), "per_user": rows,
                              "wall_s": time.time() - t0}
            s = per_mode[mode]["summary"]
            benchlib.log("seed %d %s: %d users, top-3 %.2f%% -> %.2f%% (%+.2f +- %.2f points), "
                         "%.0f s" % (seed, mode, s["users"], s["global_top3"],
                                     s["personal_top3"], s["delta_top3"][0], s["delta_top3"][1],
                                     per_mode[mode]["wall_s"]))
        results["seeds"][str(seed)] = {"train": {k: train[k] for k in (
            "test_top1", "test_top3", "test_perplexity", "train_seconds")}, **per_mode}
    results["wall_s"] = time.time() - started
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "keyboard.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(a.out, "keyboard.md"), "w") as f:
        f.write(report(results))
    benchlib.log("wrote %s/keyboard.{json,md}" % a.out)


def report(r):
    seeds = sorted(r["seeds"], key=int)
    rows = []
    for seed in seeds:
        s = r["seeds"][seed]
        for mode in ("fitted", "defaults"):
            m = s[mode]["summary"]
            lo, med, hi = m["delta_top3_p10_median_p90"]
            rows.append([seed, mode, m["users"], "%.2f%%" % (100 * s["train"]["test_top3"]),
                         "%.2f%%" % m["global_top3"], "%.2f%%" % m["personal_top3"],
                         "%+.2f ± %.2f" % tuple(m["delta_top3"]),
                         "%+.1f / %+.1f / %+.1f" % (lo, med, hi),
                         "%.0f%% / %.0f%%" % (100 * m["improved_fraction"],
                                              100 * m["worse_fraction"]),
                         "%+.2f ± %.2f" % tuple(m["delta_top1"])])
    fitted = [r["seeds"][s]["fitted"]["summary"]["delta_top3"][0] for s in seeds]
    mean, half = benchlib.mean_ci(fitted)
    m = r["machine"]
    return "\n".join([
        "# Keyboard personalisation: global model alone vs global + personal part",
        "",
        "Generated by `python3 bench/keyboard_bench.py` (commit %s, %s, %d cores, %s); %d users "
        "(Bible chapters), lstm_lm vocab 2000 context 16 trained for %d epoch(s) per seed; "
        "%.0f s in all." % (m["git_commit"], m["date"][:10], m["nproc"], m["cpu_model"],
                             r["users"], r["epochs"], r["wall_s"]),
        "",
        "Per user: the chapter's training verses typed into `examples/keyboard` as messages, "
        "then (fitted) `:train`, then `:eval` of the held-out verses. Top-3 is the mean over "
        "users of each user's top-3 on their own held-out words (<unk> targets not scored, "
        "<unk> never suggested); the change is in points, mean ± 95% interval over users.",
        "",
        benchlib.md_table(["seed", "personal part", "users", "global test top-3 (all users)",
                           "global top-3", "global + personal top-3", "change (points)",
                           "change p10 / median / p90", "users better / worse",
                           "top-1 change (points)"], rows),
        "",
        "Over seeds (fitted): mean change in per-user top-3 **%+.2f ± %.2f points** (95%% "
        "interval over %d seeds); the goal is >= +5 points." % (mean, half, len(seeds)),
        ""])


if __name__ == "__main__":
    main()
