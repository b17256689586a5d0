#include "train_setup.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <vector>

#include "ftte/core/mask.h"
#include "ftte/core/memory.h"
#include "ftte/core/rng.h"

namespace ftte::cli {

namespace {

using Clock = std::chrono::steady_clock;

std::string FormatDuration(double secs) {
  char buf[32];
  const auto s = static_cast<long long>(secs + 0.5);
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, s / 60 % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  }
  return buf;
}

// "budget:0.2" -> 0.2 of full_peak; "budget:24MiB" -> 24 MiB.
Result<int64_t> ParseBudget(const std::string& mask, int64_t full_peak, std::string* what) {
  const std::string arg = mask.substr(7);
  const std::string hint =
      "--mask budget needs a fraction of full training's peak in (0, 1] or a "
      "size, e.g. budget:0.2 or budget:24MiB; got '" +
      mask + "'";
  if (!arg.empty() && std::isalpha(static_cast<unsigned char>(arg.back()))) {
    auto bytes = ParseBytes(arg);
    if (!bytes.ok()) return InvalidArgument(hint);
    *what = arg;
    return bytes.value();
  }
  char* end = nullptr;
  const double fraction = std::strtod(arg.c_str(), &end);
  if (arg.empty() || *end != '\0' || !(fraction > 0 && fraction <= 1)) {
    return InvalidArgument(hint);
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.0f%% of full training's %s", 100 * fraction,
                FormatBytes(full_peak).c_str());
  *what = buf;
  return static_cast<int64_t>(fraction * static_cast<double>(full_peak));
}

// --cut N: the planner's best subset at cut depth N instead of its choice (to compare them).
Status TakeCandidate(const Flags& f, Setup* s) {
  FTTE_ASSIGN_OR_RETURN(int64_t cut, f.GetInt("cut", 0, 0, INT64_MAX));
  Selection& sel = s->selection;
  std::string cuts;
  for (size_t i = 0; i < sel.candidates.size(); ++i) {
    const Candidate& c = sel.candidates[i];
    cuts += (cuts.empty() ? "" : ", ") + std::to_string(c.cut);
    if (c.cut != cut) continue;
    for (size_t k = 0; k < s->model->params().size(); ++k) {
      Parameter* p = s->model->params()[k];
      p->SetStorage(FrozenStorage::kFloat32);
      for (int64_t r = 0; r < p->rows(); ++r) p->SetRowsTrainable(r, r + 1, c.mask[k][r] != 0);
    }
    sel.chosen = i;
    sel.cut = c.cut;
    sel.micro_batch = c.micro_batch;
    sel.importance = c.importance;
    sel.predicted_bytes = c.predicted_bytes;
    s->options.micro_batch = c.micro_batch;
    return Status::Ok();
  }
  return InvalidArgument("--cut " + std::to_string(cut) +
                         ": the planner has no subset cut at that layer under this budget; "
                         "it has cuts " +
                         cuts);
}

// With --frozen mapped:FILE, writes the frozen rows of the final mask to FILE and maps them.
Status MapFrozenRows(Setup* s) {
  if (s->options.frozen != FrozenStorage::kInt8Mapped) return Status::Ok();
  FTTE_RETURN_IF_ERROR(WriteFrozenRows(*s->model, s->mapped_path));
  FTTE_ASSIGN_OR_RETURN(s->mapped, MappedFrozenRows::Open(s->mapped_path, *s->model));
  s->options.mapped = s->mapped.get();
  return Status::Ok();
}

}  // namespace

std::map<std::string, bool> CommonTrainFlags() {
  return {{"model", true},    {"batch", true},  {"micro-batch", true}, {"threads", true},
          {"mask", true},     {"frozen", true}, {"optimizer", true},   {"lr", true},
          {"momentum", true}, {"seed", true},   {"cut", true},         {"json", false},
          {"help", false}};
}

std::string PlanJson(const Setup& s) {
  std::string out = "\"micro_batch\": " + std::to_string(s.options.micro()) + ", \"layers\": \"" +
                    DescribeTrainable(*s.model) + "\", \"candidates\": [";
  const Selection& sel = s.selection;
  for (size_t i = 0; i < sel.candidates.size(); ++i) {
    const Candidate& c = sel.candidates[i];
    out += std::string(i ? ", " : "") + "{\"chosen\": " + (i == sel.chosen ? "true" : "false") +
           ", \"cut\": " + std::to_string(c.cut) +
           ", \"micro_batch\": " + std::to_string(c.micro_batch) +
           ", \"trainable\": " + std::to_string(c.trainable) +
           ", \"predicted_bytes\": " + std::to_string(c.predicted_bytes) +
           ", \"importance\": " + Json(c.importance / std::max(sel.total_importance, 1e-30)) +
           ", \"trial_loss\": " + (std::isnan(c.trial_loss) ? "null" : Json(c.trial_loss)) +
           ", \"layers\": \"" + c.layers + "\"}";
  }
  return out + "]";
}

std::string SelectionTable(const Selection& sel) {
  std::string out;
  char buf[512];
  std::snprintf(buf, sizeof buf, "  %-3s %4s %6s %11s %11s %10s %11s  %s\n", "", "cut", "micro",
                "trainable", "predicted", "importance", "trial loss", "layers");
  out += buf;
  for (size_t i = 0; i < sel.candidates.size(); ++i) {
    const Candidate& c = sel.candidates[i];
    char loss[32] = "-";
    if (!std::isnan(c.trial_loss)) std::snprintf(loss, sizeof loss, "%.4f", c.trial_loss);
    std::snprintf(buf, sizeof buf, "  %-3s %4lld %6lld %11s %11s %9.1f%% %11s  %s\n",
                  i == sel.chosen ? "*" : "", static_cast<long long>(c.cut),
                  static_cast<long long>(c.micro_batch), WithCommas(c.trainable).c_str(),
                  FormatBytes(c.predicted_bytes).c_str(),
                  100 * c.importance / std::max(sel.total_importance, 1e-30), loss,
                  c.layers.c_str());
    out += buf;
  }
  return out;
}

Result<Setup> MakeSetup(const Flags& f, const std::string& model_spec, const float* calib_x,
                        const int32_t* calib_y, int64_t calib_n,
                        const OptimizerDefaults& defaults) {
  Setup s;
  FTTE_ASSIGN_OR_RETURN(s.options.batch, f.GetInt("batch", 32, 1, 1 << 16));
  FTTE_ASSIGN_OR_RETURN(s.options.micro_batch, f.GetInt("micro-batch", 0, 0, s.options.batch));
  FTTE_ASSIGN_OR_RETURN(int64_t threads, f.GetInt("threads", 1, 1, 256));
  s.options.threads = static_cast<int>(threads);
  FTTE_ASSIGN_OR_RETURN(int64_t seed, f.GetInt("seed", 0, 0, INT64_MAX));
  s.options.seed = static_cast<uint64_t>(seed);
  FTTE_ASSIGN_OR_RETURN(s.options.optimizer.kind,
                        OptimizerConfig::ParseKind(f.Get("optimizer", defaults.optimizer)));
  FTTE_ASSIGN_OR_RETURN(double lr, f.GetDouble("lr", defaults.lr));
  FTTE_ASSIGN_OR_RETURN(double momentum, f.GetDouble("momentum", 0.9));
  if (!(lr > 0 && lr <= 100)) {
    return InvalidArgument("--lr must be in (0, 100], got " + f.Get("lr", "") +
                           " (a step against the gradient needs a positive rate; try 0.01)");
  }
  if (!(momentum >= 0 && momentum < 1)) {
    return InvalidArgument("--momentum must be in [0, 1), got " + f.Get("momentum", "") +
                           " (0.9 is common; 0 turns it off)");
  }
  s.options.optimizer.lr = static_cast<float>(lr);
  s.options.optimizer.momentum = static_cast<float>(momentum);
  FTTE_ASSIGN_OR_RETURN(s.model, MakeModel(model_spec, s.options.seed));
  s.mask = f.Get("mask", "full");
  const bool budget = s.mask.rfind("budget:", 0) == 0;
  const std::string frozen =
      f.Get("frozen", budget && kBudgetFrozenStorage == FrozenStorage::kInt8 ? "int8" : "float32");
  if (frozen == "int8") {
    s.options.frozen = FrozenStorage::kInt8;
  } else if (frozen.rfind("mapped:", 0) == 0 && frozen.size() > 7) {
    s.options.frozen = FrozenStorage::kInt8Mapped;
    s.mapped_path = frozen.substr(7);
  } else if (frozen != "float32") {
    return InvalidArgument(
        "--frozen must be float32, int8 or mapped:FILE (int8 frozen rows read "
        "in place from FILE, which ftte writes), got '" +
        frozen + "'");
  }
  TrainerOptions full = s.options;
  full.frozen = FrozenStorage::kFloat32;
  s.model->SetAllTrainable(true);
  s.full_peak = PredictPeak(*s.model, full).total;
  if (!budget) {
    FTTE_RETURN_IF_ERROR(ApplyNamedMask(*s.model, s.mask));
    FTTE_RETURN_IF_ERROR(MapFrozenRows(&s));
    return s;
  }
  if (f.Has("micro-batch")) {
    return InvalidArgument(
        "--micro-batch is chosen by the planner under --mask budget:...; drop one of them");
  }
  std::string what;
  FTTE_ASSIGN_OR_RETURN(s.budget_bytes, ParseBudget(s.mask, s.full_peak, &what));
  const Samples calib{calib_x, calib_y, std::min(calib_n, kCalibrationSamples)};
  FTTE_ASSIGN_OR_RETURN(s.selection, PlanUnderBudget(*s.model, &s.options, s.budget_bytes, calib));
  if (f.Has("cut")) FTTE_RETURN_IF_ERROR(TakeCandidate(f, &s));
  const Selection& sel = s.selection;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "budget %s (%s): micro-batch %lld of %lld, cut at layer %lld, %s trainable "
                "values; candidates ranked by %s%s:\n",
                FormatBytes(s.budget_bytes).c_str(), what.c_str(),
                static_cast<long long>(sel.micro_batch), static_cast<long long>(s.options.batch),
                static_cast<long long>(sel.cut), WithCommas(s.model->num_trainable()).c_str(),
                sel.criterion == "trial" ? "held-out calibration loss after trial steps"
                                         : "captured importance",
                sel.criterion == "trial"
                    ? (" (" + std::to_string(sel.trial_steps) + " per candidate)").c_str()
                    : "");
  s.selection_note = buf + SelectionTable(sel);
  FTTE_RETURN_IF_ERROR(MapFrozenRows(&s));
  return s;
}

EpochsResult TrainEpochs(Trainer& trainer, const data::ImageDataset& train, int64_t epochs,
                         uint64_t seed, const std::string& unit) {
  const int64_t batch = trainer.options().batch;
  const int64_t sample = train.sample_numel(), per = train.labels_per_sample;
  const bool tokens = unit == "tokens";
  Rng shuffle_rng(seed ^ 0x5eedULL);
  std::vector<int64_t> order(static_cast<size_t>(train.size));
  std::vector<float> xb(static_cast<size_t>(batch * sample));
  std::vector<int32_t> yb(static_cast<size_t>(batch * per));
  EpochsResult out;
  const bool tty = isatty(2) != 0;
  const auto start = Clock::now();
  auto last_report = start;
  const int64_t total = epochs * train.size;
  for (int64_t e = 0; e < epochs; ++e) {
    std::iota(order.begin(), order.end(), 0);
    for (int64_t i = train.size - 1; i > 0; --i) {
      std::swap(order[i], order[shuffle_rng.Below(static_cast<uint64_t>(i + 1))]);
    }
    double loss_sum = 0, window_loss = 0;
    int64_t seen = 0, positions = 0, window_positions = 0;
    for (int64_t b = 0; b < train.size; b += batch) {
      const int64_t n = std::min(batch, train.size - b);
      for (int64_t j = 0; j < n; ++j) {
        const int64_t idx = order[b + j];
        std::copy(train.image(idx), train.image(idx) + sample, xb.begin() + j * sample);
        std::copy(train.label(idx), train.label(idx) + per, yb.begin() + j * per);
      }
      StepResult r = trainer.Step(xb.data(), yb.data(), n);
      if (r.status.ok() && !std::isfinite(r.loss)) {
        r.status = FailedPrecondition("training diverged in epoch " + std::to_string(e + 1) +
                                      " (the loss is " + std::to_string(r.loss) +
                                      "); lower --lr or try --optimizer adam. Nothing was saved");
      }
      if (!r.status.ok()) {
        std::fprintf(stderr, "\n");
        out.status = r.status;
        return out;
      }
      loss_sum += static_cast<double>(r.loss) * r.positions;
      window_loss += static_cast<double>(r.loss) * r.positions;
      positions += r.positions;
      window_positions += r.positions;
      out.positions += r.positions;
      seen += n;
      // A finite runaway: over a tenth of the epoch, a loss far above guessing (ln classes).
      if (seen * 10 / train.size > (seen - n) * 10 / train.size) {
        const double mean =
            window_loss / static_cast<double>(std::max<int64_t>(window_positions, 1));
        const double chance = std::log(static_cast<double>(trainer.model().num_classes()));
        if (mean > std::max(5 * chance, 10.0)) {
          std::fprintf(stderr, "\n");
          char msg[320];
          std::snprintf(msg, sizeof msg,
                        "training diverged in epoch %lld: the mean loss over the last tenth of "
                        "the epoch is %.4g, far above guessing (ln %d = %.2f); lower --lr (now "
                        "%g) or try --optimizer adam. Nothing was saved",
                        static_cast<long long>(e + 1), mean, trainer.model().num_classes(), chance,
                        static_cast<double>(trainer.options().optimizer.lr));
          out.status = FailedPrecondition(msg);
          return out;
        }
        window_loss = 0;
        window_positions = 0;
      }
      const auto now = Clock::now();
      // A terminal gets one line rewritten every second; a log a line per tenth of an epoch.
      const bool report = tty ? now - last_report >= std::chrono::seconds(1) || seen == train.size
                              : seen * 10 / train.size > (seen - n) * 10 / train.size;
      if (report) {
        last_report = now;
        const double secs = std::chrono::duration<double>(now - start).count();
        const int64_t done = e * train.size + seen;
        const double rate = (tokens ? out.positions : done) / std::max(secs, 1e-9);
        const double left = secs / done * (total - done);
        std::fprintf(stderr, "%sepoch %lld/%lld  %3.0f%%  loss %.4f  %.0f %s/s  %s left%s",
                     tty ? "\r" : "", static_cast<long long>(e + 1), static_cast<long long>(epochs),
                     100.0 * seen / train.size, loss_sum / std::max<int64_t>(positions, 1), rate,
                     unit.c_str(), FormatDuration(left).c_str(), tty ? "   " : "\n");
      }
    }
    if (tty) std::fprintf(stderr, "\n");
    out.last_epoch_loss = loss_sum / std::max<int64_t>(positions, 1);
  }
  out.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return out;
}

Status CheckSavePath(const Flags& f) {
  if (!f.Has("save")) return Status::Ok();
  const std::string path = f.Get("save", "");
  namespace fs = std::filesystem;
  std::error_code ec;
  if (path.empty() || fs::is_directory(path, ec)) {
    return InvalidArgument("--save needs a file path (e.g. out/model.safetensors), got '" + path +
                           "'");
  }
  // Checkpoints are written to PATH.tmp and renamed: that file must be creatable.
  const std::string probe = path + ".tmp";
  const bool existed = fs::exists(probe, ec);
  {
    std::ofstream out(probe, std::ios::app);
    if (!out) {
      return IoError("--save " + path + ": cannot write there (" + std::strerror(errno) +
                     "); pick a writable path. Checked before training, so nothing was lost");
    }
  }
  if (!existed) fs::remove(probe, ec);
  return Status::Ok();
}

int Fail(const Status& s) {
  std::fprintf(stderr, "ftte: %s\n", s.ToString().c_str());
  return 1;
}

std::string Json(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

int64_t PeakRssBytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;
}

std::string CategoriesJson(const std::array<int64_t, kNumMemCategories>& c) {
  std::string s = "{";
  for (int i = 0; i < kNumMemCategories; ++i) {
    s += std::string(i ? ", " : "") + "\"" + MemCategoryName(static_cast<MemCategory>(i)) +
         "\": " + std::to_string(c[i]);
  }
  return s + "}";
}

std::string WithCommas(int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return (v < 0 ? "-" : "") + out;
}

}  // namespace ftte::cli
