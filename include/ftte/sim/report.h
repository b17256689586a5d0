// Outputs of `ftte simulate`: results.json, results.csv, timing.json, the effective config, the
// plots, the printed summary table, and one file per finished run (method x seed) that lets an
// interrupted run resume.
//
// Reproducibility: results.json, results.csv and the run files depend only on the configuration
// (minus `threads`) and the results (minus `wall_s`), so the same seeds give byte-identical files
// with 1 or 2 threads. Wall-clock times and the thread count go to timing.json instead. Numbers
// are written in their shortest round-trip decimal form; nothing depends on the locale. Times in
// JSON and CSV are virtual seconds; tables and plots show virtual minutes.
//
// DIR/results.json:
//   {"format": "ftte-sim-results/2",
//    "config": {<every setting but threads, in TOML schema form>},
//    "seeds": [0, 1, 2],
//    "methods": [{"name", "algorithm",
//                 "summary": {<per metric over the seeds: {"mean", "ci95", "n", "values"};
//                             for times, over the seeds that reached the target, with
//                             "reached" (how many did)>: final_accuracy, time_to_target_s
//                             (held, primary target), peak_device_memory_bytes, bytes_up,
//                             bytes_down, upload_per_update_bytes, updates_applied, versions,
//                             "targets": [{"target", "first_s", "smoothed_s", "held_s",
//                             "bytes_up_at_held"}, ...]},
//                 "runs": [<one run per seed: RunJson>, ...]}, ...]}
//   A run: {"seed", "name", "algorithm", "final_accuracy", "time_to_target_s" (held, primary;
//   null if never), "targets": [{"target", "first_s", "smoothed_s", "held_s",
//   "bytes_up_at_held"}], "peak_device_memory_bytes", "predicted_device_memory_bytes",
//   "budget_bytes", "trainable_params", "bytes_up", "bytes_down", "mask_update_bytes",
//   "excluded_devices", "updates_received", "updates_applied", "dropped_stale", "versions",
//   "replans", "staleness": [{"tau", "count"}], "series": [{"t", "accuracy", "loss", "bytes_up",
//   "bytes_down", "version"}]}; language models add "final_top3", "final_perplexity",
//   "user_top3", "personalization" and "top3", "perplexity" per series point.
// DIR/results.csv: method,seed,virtual_s,accuracy,loss,bytes_up,bytes_down,version (language
//   models: ...,accuracy,top3,perplexity,loss,...), one row per series point.
// DIR/timing.json: {"threads", "runs": [{"name", "seed", "wall_s"}], "total_wall_s"}.
// DIR/config.toml: FormatSimConfig(config) (run it again with --config DIR/config.toml).
// DIR/runs/<method>-seed<S>.json: {"config_digest", "run": RunJson} as each run finishes.
// DIR/plots.gp and its SVGs: accuracy.svg (test accuracy vs virtual minutes: the mean over
//   seeds with markers, a shaded 95% band with two or more seeds, and the targets as labelled
//   dashed lines), accuracy-vs-upload.svg (accuracy vs MiB uploaded) and accuracy-vs-memory.svg
//   (final accuracy vs peak device memory, one point per method with interval bars).
#ifndef FTTE_SIM_REPORT_H_
#define FTTE_SIM_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ftte/core/status.h"
#include "ftte/sim/simulator.h"

namespace ftte::sim {

struct ReportOptions {
  std::string gnuplot = "gnuplot";  // program run (found through PATH) to draw the SVGs
  bool plot = true;                 // false: write plots.gp but do not run gnuplot
};

// Mean and 95% interval (Student's t) of a sample; ci95 is the half-width (0 for n < 2).
struct Stat {
  int64_t n = 0;
  double mean = 0, ci95 = 0;
};
Stat Summarize95(const std::vector<double>& values);

// The contents of the files above (WriteResults writes these). `runs` holds every finished run
// (method x seed), in run order.
std::string ResultsJson(const SimConfig& config, const std::vector<MethodResult>& runs);
std::string ResultsCsv(const std::vector<MethodResult>& runs);
std::string TimingJson(const SimConfig& config, const std::vector<MethodResult>& runs);
// The gnuplot script; it writes its SVGs relative to the directory it runs in.
std::string PlotScript(const SimConfig& config, const std::vector<MethodResult>& runs);

// One run as written to DIR/runs/, and read back (for --resume). The digest names the
// configuration the run belongs to (ConfigDigest: every setting but threads, seeds and the
// other methods), so that a resumed run never mixes results of different settings.
std::string ConfigDigest(const SimConfig& config, const std::string& method);
std::string RunFileText(const SimConfig& config, const MethodResult& run);
// Errors: not a run file, or one of another configuration (names both digests and the fix).
Result<MethodResult> ParseRunFile(const std::string& text, const SimConfig& config,
                                  const std::string& path);
std::string RunFileName(const std::string& method, uint64_t seed);  // "ftte-seed0.json"

// Creates `dir` (and parents) and writes every combined file above, then runs gnuplot in `dir`.
// Errors: IoError naming the path that could not be created or written. A missing or failing
// gnuplot is not an error: the .gp file is still written and a warning explaining how to draw
// the plots is appended to `warnings` (if not null).
Status WriteResults(const std::string& dir, const SimConfig& config,
                    const std::vector<MethodResult>& runs, const ReportOptions& options = {},
                    std::vector<std::string>* warnings = nullptr);
// Writes DIR/runs/<method>-seed<S>.json atomically (temporary file, then rename).
Status WriteRunFile(const std::string& dir, const SimConfig& config, const MethodResult& run);

// A fixed-width table, one row per method, means over the seeds (with +- the 95% half-width
// when there are several): final accuracy, held time to the primary target (and how many seeds
// held it), peak device memory, upload per update and in all, download, excluded devices,
// updates applied, wall s. Language models get a second table: top-3, perplexity, per-user
// top-3 and personalisation before / after. Ends in '\n'.
std::string SummaryTable(const std::vector<MethodResult>& runs);

}  // namespace ftte::sim

#endif  // FTTE_SIM_REPORT_H_
