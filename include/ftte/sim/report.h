// Outputs of `ftte simulate`: results.json, results.csv, timing.json, the effective config,
// the accuracy plot, and the printed summary table.
//
// Reproducibility: results.json and results.csv depend only on the configuration (minus
// `threads`) and the results (minus `wall_s`), so the same seed gives byte-identical files with 1
// or 2 threads. Wall-clock times and the thread count go to timing.json instead. Numbers are
// written in their shortest round-trip decimal form; nothing depends on the locale.
//
// DIR/results.json:
//   {"format": "ftte-sim-results/1",
//    "config": {<every setting but threads, in TOML schema form: seed, ..., "client": {...},
//               "devices": {...}, "method": [{...}, ...]}>},
//    "methods": [{"name", "algorithm", "final_accuracy", "time_to_target_s" (null if never),
//                 "peak_device_memory_bytes", "predicted_device_memory_bytes", "budget_bytes",
//                 "trainable_params", "bytes_up", "bytes_down", "excluded_devices",
//                 "updates_received", "updates_applied", "dropped_stale", "versions",
//                 "staleness": [{"tau", "count"}, ...],
//                 "series": [{"t" (virtual s), "accuracy", "loss", "bytes_up", "bytes_down",
//                             "version"}, ...]}, ...]}
//   Language models (text datasets) add, per method, "final_top3" and "final_perplexity" after
//   "final_accuracy"; "mask_update_bytes", "user_top3" ({"users", "mean", "p10", "median",
//   "p90"}) and "personalization" ({"before_top3", "after_top3"} of that form, or null) after
//   "staleness"; and "top3", "perplexity" after "accuracy" in each series point. Image runs
//   have none of these keys (their files are as before).
// DIR/results.csv: header method,virtual_s,accuracy,loss,bytes_up,bytes_down,version (language
//   models: method,virtual_s,accuracy,top3,perplexity,loss,...), then one row per series point,
//   methods in run order.
// DIR/timing.json: {"threads", "methods": [{"name", "wall_s"}], "total_wall_s"}.
// DIR/config.toml: FormatSimConfig(config) (run it again with --config DIR/config.toml).
// DIR/accuracy.gp and DIR/accuracy.svg: gnuplot script (data inline) and its SVG output:
//   test accuracy vs virtual time, one line per method, the target as a dashed line (language
//   models: top-1 solid and top-3 dotted per method).
#ifndef FTTE_SIM_REPORT_H_
#define FTTE_SIM_REPORT_H_

#include <string>
#include <vector>

#include "ftte/core/status.h"
#include "ftte/sim/simulator.h"

namespace ftte::sim {

struct ReportOptions {
  std::string gnuplot = "gnuplot";  // program run (found through PATH) to draw the SVG
  bool plot = true;                 // false: write accuracy.gp but do not run gnuplot
};

// The contents of results.json, results.csv and timing.json (WriteResults writes these).
std::string ResultsJson(const SimConfig& config, const std::vector<MethodResult>& results);
std::string ResultsCsv(const std::vector<MethodResult>& results);
std::string TimingJson(const SimConfig& config, const std::vector<MethodResult>& results);
// The gnuplot script; it plots into "accuracy.svg" relative to the directory it runs in.
std::string PlotScript(const SimConfig& config, const std::vector<MethodResult>& results);

// Creates `dir` (and parents) and writes every file above, then runs gnuplot in `dir`. Errors:
// IoError naming the path that could not be created or written. A missing or failing gnuplot is
// not an error: the .gp file is still written and a warning explaining how to draw the plot is
// appended to `warnings` (if not null).
Status WriteResults(const std::string& dir, const SimConfig& config,
                    const std::vector<MethodResult>& results, const ReportOptions& options = {},
                    std::vector<std::string>* warnings = nullptr);

// A fixed-width table, one row per method: method, final acc, time to target (virtual), peak
// device memory, upload, download, excluded devices, updates applied, wall s. Language models
// get a second table: top-3, perplexity, per-user top-3 and personalisation before / after
// (mean with p10/median/p90, in %). Ends in '\n'.
std::string SummaryTable(const std::vector<MethodResult>& results);

}  // namespace ftte::sim

#endif  // FTTE_SIM_REPORT_H_
