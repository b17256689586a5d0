#!/usr/bin/env python3
"""Tests of scripts/results_md.py on small synthetic results (format 2) and tuning files."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results_md.py")


def summary(values):
    n = len(values)
    mean = sum(values) / n if n else 0.0
    return {"mean": mean, "ci95": 0.01 if n > 1 else 0.0, "n": n, "values": values}


def timed(values, runs):
    s = summary(values)
    s["reached"] = len(values)
    return s


def method(name, algorithm, acc, peak, per_update, held):
    """Two seeds; `held`: held times of the primary target (None: never)."""
    reached = [h for h in held if h is not None]
    run = {"seed": 0, "name": name, "algorithm": algorithm, "final_accuracy": acc,
           "trainable_params": 1000, "excluded_devices": 3, "series": []}
    return {
        "name": name, "algorithm": algorithm,
        "summary": {
            "final_accuracy": summary([acc, acc]),
            "time_to_target_s": timed(reached, 2),
            "peak_device_memory_bytes": summary([peak, peak]),
            "bytes_up": summary([per_update * 100] * 2),
            "bytes_down": summary([1.0, 1.0]),
            "upload_per_update_bytes": summary([per_update] * 2),
            "updates_applied": summary([100.0, 100.0]),
            "versions": summary([10.0, 10.0]),
            "targets": [{"target": 0.55, "first_s": timed(reached, 2),
                         "smoothed_s": timed(reached, 2), "held_s": timed(reached, 2),
                         "bytes_up_at_held": timed([per_update * 10] * len(reached), 2)}],
        },
        "runs": [run, dict(run, seed=1)],
    }


CONFIG = {"seed": 0, "model": "cnn", "dataset": "fashion-mnist", "partition": "iid",
          "test_limit": 100, "duration_s": 600, "eval_every_s": 30, "target_accuracy": 0.55,
          "client": {"local_steps": 5, "local_epochs": 1, "batch": 32, "optimizer": "sgd",
                     "lr": 0.05},
          "devices": {"count": 10, "straggler_fraction": 0.5, "slowdown_min": 2,
                      "slowdown_max": 4, "memory_min_mib": 6, "memory_max_mib": 64,
                      "uplink_mbps_min": 2, "uplink_mbps_max": 20}}


class ResultsMdTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, name, obj):
        with open(os.path.join(self.dir, name), "w", encoding="utf-8") as f:
            json.dump(obj, f)

    def run_script(self, *extra):
        return subprocess.run([sys.executable, SCRIPT, self.dir, *extra], capture_output=True,
                              text=True)

    def results(self, fedavg_held):
        return {"format": "ftte-sim-results/2", "config": CONFIG, "seeds": [0, 1],
                "methods": [method("ftte", "ftte", 0.80, 2e6, 1e5, [60.0, 120.0]),
                            method("fedavg", "fedavg", 0.70, 1e7, 1e6, fedavg_held),
                            method("fedbuff", "fedbuff", 0.78, 1e7, 1e6, [300.0, 300.0]),
                            method("ftte-no-age", "ftte", 0.75, 2e6, 1e5, [None, None])]}

    def read(self):
        with open(os.path.join(self.dir, "results.md"), encoding="utf-8") as f:
            return f.read()

    def test_claims_are_ratios_of_means_and_say_whether_met(self):
        self.write("results.json", self.results([900.0, 900.0]))
        self.write("tuning.json", {
            "format": "ftte-sim-tuning/1", "seed": 0, "duration_s": 300, "validation": 500,
            "score": "mean validation accuracy over the trial's evaluations",
            "grid": {"server_step": [1, 2], "batch": [], "local_steps": []},
            "methods": [{"name": "ftte", "tune_like": None,
                         "chosen": {"server_step": 2, "batch": 32, "local_steps": 5,
                                    "server_lr": 2.0, "async_alpha": 0.6},
                         "trials": [{"score": 0.5}, {"score": 0.6}]}]})
        p = self.run_script()
        self.assertEqual(p.returncode, 0, p.stderr)
        md = self.read()
        self.assertIn("<!-- results_md:paper begin -->", md)
        # held 90 s vs 900 s = 0.1x <= 0.19x
        self.assertIn("| held time to 55% | <= 0.19x | 0.100x", md)
        self.assertIn("| peak device memory | <= 0.2x | 0.200x", md)
        self.assertIn("| upload per update | <= 0.31x | 0.100x", md)
        self.assertIn("80.00% ± 1.00% vs 78.00% ± 1.00% (+2.00 points) | **met**", md)
        self.assertIn("| ftte | x2 | 32 | 5 | 2 / 0.6 | 50.0%, 60.0% |", md)
        self.assertIn("| ftte-no-age | 75.00% ± 1.00% | -5.00 points | never (0/2) |", md)

    def test_a_baseline_that_never_holds_the_target_bounds_the_ratio(self):
        self.write("results.json", self.results([None, None]))
        p = self.run_script()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("< 0.150x (FedAvg never held it in 10.0 min", self.read())

    def test_sections_of_other_experiments_are_kept(self):
        with open(os.path.join(self.dir, "results.md"), "w", encoding="utf-8") as f:
            f.write("# Title\n\n<!-- results_md:keyboard begin -->\nkeep me\n"
                    "<!-- results_md:keyboard end -->\n")
        self.write("results.json", self.results([900.0, 900.0]))
        self.assertEqual(self.run_script().returncode, 0)
        md = self.read()
        self.assertTrue(md.startswith("# Title"))
        self.assertIn("keep me", md)
        self.assertIn("results_md:paper end", md)

    def test_ablations_can_come_from_another_run(self):
        self.write("results.json", self.results([600.0, 600.0]))
        other = os.path.join(self.dir, "ablations")
        os.makedirs(other)
        data = self.results([600.0, 600.0])
        data["seeds"] = [0]
        data["methods"][0] = method("ftte", "ftte", 0.60, 2e6, 1e5, [60.0, 120.0])
        data["methods"].append(method("ftte-no-variance", "ftte", 0.50, 2e6, 1e5, [None, None]))
        with open(os.path.join(other, "results.json"), "w", encoding="utf-8") as f:
            json.dump(data, f)
        r = self.run_script("--ablations", other)
        self.assertEqual(r.returncode, 0, r.stderr)
        md = self.read()
        self.assertIn("seeds 0: its own `ftte` runs are the reference", md)
        self.assertIn("| ftte-no-variance | 50.00% ± 1.00% | -10.00 points |", md)
        self.assertIn("| ftte-no-age | 75.00% ± 1.00% | +15.00 points |", md)

    def test_keyboard_page_shows_the_three_gram_with_and_without_unk(self):
        cfg = dict(CONFIG, dataset="bible-chapters", model="lstm_lm", tokenizer="word",
                   vocab=2000, context=16, holdout=0.1, target_accuracy=0.2, personalize={})
        ref = {"unk_rate": 0.2, "ngram": "interpolated Kneser-Ney 3-gram", "ngram_top1": 0.3,
               "ngram_top3": 0.5, "ngram_perplexity": 40.0}

        def lm(name, acc):
            run = {"seed": 0, "name": name, "algorithm": name, "final_accuracy": acc,
                   "final_top3": acc + 0.1, "final_perplexity": 100.0, "time_to_target_s": None,
                   "peak_device_memory_bytes": 1 << 23, "trainable_params": 10,
                   "bytes_up": 100, "updates_received": 10, "mask_update_bytes": 10,
                   "excluded_devices": 0, "updates_applied": 10, "user_top3": None,
                   "personalization": None, "reference": ref, "series": []}
            return {"name": name, "algorithm": name, "summary": {}, "runs": [run]}

        self.write("results.json", {"format": "ftte-sim-results/2", "config": cfg, "seeds": [0],
                                    "reference": ref,
                                    "methods": [lm("ftte", 0.25), lm("fedbuff", 0.2),
                                                lm("fedavg", 0.15)]})
        p = self.run_script()
        self.assertEqual(p.returncode, 0, p.stderr)
        md = self.read()
        self.assertIn("20.0% of the held-out targets are words outside the vocabulary", md)
        # top-1, top-3, then both with <unk> counted wrong (x 0.8), perplexity.
        self.assertIn("| ftte | 25.00% | 35.00% | 20.00% | 28.00% | 100.0 |", md)
        self.assertIn("| fedavg | 15.00% | 25.00% | 12.00% | 20.00% | 100.0 |", md)
        self.assertIn("| 3-gram (Kneser-Ney) | 30.00% | 50.00% | 24.00% | 40.00% | 40.0 |", md)

    def test_an_old_format_is_refused_with_the_fix(self):
        self.write("results.json", {"format": "ftte-sim-results/1", "config": CONFIG})
        p = self.run_script()
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("rerun the experiment", p.stderr)


if __name__ == "__main__":
    unittest.main()
