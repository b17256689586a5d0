#include "train_cmd.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>

#include "flags.h"
#include "ftte/core/checkpoint.h"
#include "ftte/core/mask.h"
#include "ftte/core/trainer.h"
#include "ftte/data/cifar.h"
#include "ftte/data/idx.h"

namespace ftte::cli {

namespace {

using Clock = std::chrono::steady_clock;

const std::map<std::string, bool> kCommonFlags = {
    {"model", true},  {"batch", true},     {"threads", true}, {"mask", true},
    {"frozen", true}, {"optimizer", true}, {"lr", true},      {"momentum", true},
    {"seed", true},   {"json", false},     {"help", false}};

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

// Everything `train` and `bench train` share: the model, its mask and the trainer options.
struct Setup {
  std::unique_ptr<Model> model;
  TrainerOptions options;
  std::string mask;
  int64_t full_peak = 0;
  std::string selection_note;
};

Result<Setup> MakeSetup(const Flags& f, const float* calib_x, const int32_t* calib_y,
                        int64_t calib_n) {
  Setup s;
  FTTE_ASSIGN_OR_RETURN(s.options.batch, f.GetInt("batch", 32, 1, 1 << 16));
  FTTE_ASSIGN_OR_RETURN(int64_t threads, f.GetInt("threads", 1, 1, 256));
  s.options.threads = static_cast<int>(threads);
  FTTE_ASSIGN_OR_RETURN(int64_t seed, f.GetInt("seed", 0, 0, INT64_MAX));
  s.options.seed = static_cast<uint64_t>(seed);
  FTTE_ASSIGN_OR_RETURN(s.options.optimizer.kind,
                        OptimizerConfig::ParseKind(f.Get("optimizer", "sgd")));
  FTTE_ASSIGN_OR_RETURN(double lr, f.GetDouble("lr", 0.01));
  FTTE_ASSIGN_OR_RETURN(double momentum, f.GetDouble("momentum", 0.9));
  s.options.optimizer.lr = static_cast<float>(lr);
  s.options.optimizer.momentum = static_cast<float>(momentum);
  FTTE_ASSIGN_OR_RETURN(s.model, MakeModel(f.Get("model", "cnn"), s.options.seed));
  s.mask = f.Get("mask", "full");
  const bool budget = s.mask.rfind("budget:", 0) == 0;
  const std::string frozen = f.Get("frozen", budget ? "int8" : "float32");
  if (frozen == "int8") {
    s.options.frozen = FrozenStorage::kInt8;
  } else if (frozen != "float32") {
    return InvalidArgument("--frozen must be float32 or int8, got '" + frozen + "'");
  }
  TrainerOptions full = s.options;
  full.frozen = FrozenStorage::kFloat32;
  s.model->SetAllTrainable(true);
  s.full_peak = PredictPeak(*s.model, full).total;
  if (!budget) {
    FTTE_RETURN_IF_ERROR(ApplyNamedMask(*s.model, s.mask));
    return s;
  }
  char* end = nullptr;
  const std::string frac = s.mask.substr(7);
  const double fraction = std::strtod(frac.c_str(), &end);
  if (frac.empty() || *end != '\0' || !(fraction > 0 && fraction <= 1)) {
    return InvalidArgument("--mask budget:F needs F in (0, 1], e.g. budget:0.2; got '" + s.mask +
                           "'");
  }
  RowImportance imp = ComputeImportance(*s.model, calib_x, calib_y, calib_n, s.options, 8);
  const auto budget_bytes = static_cast<int64_t>(fraction * static_cast<double>(s.full_peak));
  FTTE_ASSIGN_OR_RETURN(Selection sel, SelectUnderBudget(*s.model, imp, s.options, budget_bytes));
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "budget %s (%.0f%% of full training's %s): cut at layer %lld, %.1f%% of "
                "calibration importance, %lld trainable values",
                FormatBytes(budget_bytes).c_str(), 100 * fraction, FormatBytes(s.full_peak).c_str(),
                static_cast<long long>(sel.cut),
                100 * sel.importance / std::max(sel.total_importance, 1e-30),
                static_cast<long long>(s.model->num_trainable()));
  s.selection_note = buf;
  return s;
}

std::string CategoriesJson(const std::array<int64_t, kNumMemCategories>& c) {
  std::string s = "{";
  for (int i = 0; i < kNumMemCategories; ++i) {
    s += std::string(i ? ", " : "") + "\"" + MemCategoryName(static_cast<MemCategory>(i)) +
         "\": " + std::to_string(c[i]);
  }
  return s + "}";
}

Result<std::pair<data::ImageDataset, data::ImageDataset>> LoadData(const Flags& f, const Model& m) {
  const std::string name = f.Get("data", "fashion-mnist");
  std::pair<data::ImageDataset, data::ImageDataset> d;
  if (name == "fashion-mnist") {
    const std::string dir = f.Get("data-dir", data::kFashionMnistDir);
    FTTE_ASSIGN_OR_RETURN(d.first, data::LoadFashionMnist(dir, true));
    FTTE_ASSIGN_OR_RETURN(d.second, data::LoadFashionMnist(dir, false));
  } else if (name == "cifar10") {
    if (!f.Has("data-dir")) {
      return InvalidArgument(
          "--data cifar10 needs --data-dir DIR with the CIFAR-10 binary batches");
    }
    FTTE_ASSIGN_OR_RETURN(d.first, data::LoadCifar10(f.Get("data-dir", ""), true));
    FTTE_ASSIGN_OR_RETURN(d.second, data::LoadCifar10(f.Get("data-dir", ""), false));
  } else {
    return InvalidArgument("unknown dataset '" + name + "'; use fashion-mnist or cifar10");
  }
  const Shape want = m.sample_shape();
  if (Shape{d.first.channels, d.first.height, d.first.width} != want) {
    return InvalidArgument("model " + m.name() + " takes samples " + ShapeToString(want) + " but " +
                           name + " has " +
                           ShapeToString({d.first.channels, d.first.height, d.first.width}) +
                           "; pick a model for this dataset (mlp, lenet5, cnn: 28x28x1; "
                           "resnet8: 32x32x3)");
  }
  return d;
}

}  // namespace

int RunTrain(const std::vector<std::string>& args) {
  auto known = kCommonFlags;
  known.insert(
      {{"data", true}, {"data-dir", true}, {"epochs", true}, {"save", true}, {"limit", true}});
  auto flags = Flags::Parse(args, known);
  if (!flags.ok()) return Fail(flags.status());
  const Flags& f = flags.value();
  if (f.Has("help")) {
    std::puts(
        "ftte train --model {mlp,lenet5,cnn,resnet8} --data {fashion-mnist,cifar10}\n"
        "  [--data-dir DIR] [--epochs 1] [--batch 32] [--threads 1] [--seed 0]\n"
        "  [--mask full|last|bias|budget:F] [--frozen float32|int8] [--optimizer sgd|adam|adamw]\n"
        "  [--lr 0.01] [--momentum 0.9] [--limit N (first N training samples)] [--save CKPT]\n"
        "  [--json]");
    return 0;
  }
  auto model_probe = MakeModel(f.Get("model", "cnn"));
  if (!model_probe.ok()) return Fail(model_probe.status());
  auto data = LoadData(f, *model_probe.value());
  if (!data.ok()) return Fail(data.status());
  auto& [train, test] = data.value();
  auto epochs = f.GetInt("epochs", 1, 1, 10000);
  auto limit = f.GetInt("limit", train.size, 1, train.size);
  if (!epochs.ok()) return Fail(epochs.status());
  if (!limit.ok()) return Fail(limit.status());
  if (limit.value() < train.size) train = train.Head(limit.value());
  auto setup = MakeSetup(f, train.images.data(), train.labels.data(), train.size);
  if (!setup.ok()) return Fail(setup.status());
  Setup& s = setup.value();
  const bool json = f.Has("json");
  if (!s.selection_note.empty()) std::fprintf(stderr, "%s\n", s.selection_note.c_str());
  const int64_t predicted = PredictPeak(*s.model, s.options).total;

  Trainer trainer(s.model.get(), s.options);
  Rng shuffle_rng(s.options.seed ^ 0x5eedULL);
  std::vector<int64_t> order(train.size);
  std::vector<float> xb(static_cast<size_t>(s.options.batch * train.sample_numel()));
  std::vector<int32_t> yb(static_cast<size_t>(s.options.batch * train.labels_per_sample));
  const auto start = Clock::now();
  double last_loss = 0;
  for (int64_t e = 0; e < epochs.value(); ++e) {
    std::iota(order.begin(), order.end(), 0);
    for (int64_t i = train.size - 1; i > 0; --i) {
      std::swap(order[i], order[shuffle_rng.Below(static_cast<uint64_t>(i + 1))]);
    }
    double loss_sum = 0;
    int64_t seen = 0, next_report = 0;
    for (int64_t b = 0; b < train.size; b += s.options.batch) {
      const int64_t n = std::min(s.options.batch, train.size - b);
      for (int64_t j = 0; j < n; ++j) {
        const int64_t idx = order[b + j];
        std::copy(train.image(idx), train.image(idx) + train.sample_numel(),
                  xb.begin() + j * train.sample_numel());
        std::copy(train.label(idx), train.label(idx) + train.labels_per_sample,
                  yb.begin() + j * train.labels_per_sample);
      }
      StepResult r = trainer.Step(xb.data(), yb.data(), n);
      loss_sum += static_cast<double>(r.loss) * n;
      seen += n;
      if (seen >= next_report || seen == train.size) {
        const double secs = std::chrono::duration<double>(Clock::now() - start).count();
        std::fprintf(stderr, "\repoch %lld/%lld  %3.0f%%  loss %.4f  %.0f samples/s   ",
                     static_cast<long long>(e + 1), static_cast<long long>(epochs.value()),
                     100.0 * seen / train.size, loss_sum / seen,
                     (e * train.size + seen) / std::max(secs, 1e-9));
        next_report = seen + train.size / 20;
      }
    }
    std::fprintf(stderr, "\n");
    last_loss = loss_sum / std::max<int64_t>(seen, 1);
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  const MemoryStats mem = s.model->tracker().stats();
  StepResult ev = trainer.Evaluate(test.images.data(), test.labels.data(), test.size);
  const double acc = static_cast<double>(ev.correct) / std::max<int64_t>(test.size, 1);
  if (f.Has("save")) {
    Status st = SaveCheckpoint(*s.model, f.Get("save", ""));
    if (!st.ok()) return Fail(st);
  }
  if (json) {
    std::printf(
        "{\"model\": \"%s\", \"mask\": \"%s\", \"epochs\": %lld, \"batch\": %lld, "
        "\"threads\": %d, \"test_accuracy\": %s, \"test_loss\": %s, \"train_loss\": %s, "
        "\"peak_bytes\": %lld, \"predicted_peak_bytes\": %lld, \"full_training_peak_bytes\": "
        "%lld, \"peak_by_category\": %s, \"trainable_params\": %lld, \"params\": %lld, "
        "\"train_seconds\": %s, \"samples_per_s\": %s}\n",
        s.model->name().c_str(), s.mask.c_str(), static_cast<long long>(epochs.value()),
        static_cast<long long>(s.options.batch), s.options.threads, Json(acc).c_str(),
        Json(ev.loss).c_str(), Json(last_loss).c_str(), static_cast<long long>(mem.peak_total),
        static_cast<long long>(predicted), static_cast<long long>(s.full_peak),
        CategoriesJson(mem.at_peak).c_str(), static_cast<long long>(s.model->num_trainable()),
        static_cast<long long>(s.model->num_params()), Json(secs).c_str(),
        Json(epochs.value() * train.size / secs).c_str());
  } else {
    std::printf("model %s, mask %s: %lld of %lld parameters trained\n", s.model->name().c_str(),
                s.mask.c_str(), static_cast<long long>(s.model->num_trainable()),
                static_cast<long long>(s.model->num_params()));
    std::printf("test accuracy   %.2f%%  (loss %.4f, %lld test samples)\n", 100 * acc, ev.loss,
                static_cast<long long>(test.size));
    std::printf("peak memory     %s measured, %s predicted (full training: %s)\n",
                FormatBytes(mem.peak_total).c_str(), FormatBytes(predicted).c_str(),
                FormatBytes(s.full_peak).c_str());
    std::printf("train time      %.1f s, %.0f samples/s on %d thread(s)\n", secs,
                epochs.value() * train.size / secs, s.options.threads);
  }
  return 0;
}

int RunBenchTrain(const std::vector<std::string>& args) {
  auto known = kCommonFlags;
  known.insert({{"seconds", true}, {"warmup", true}});
  auto flags = Flags::Parse(args, known);
  if (!flags.ok()) return Fail(flags.status());
  const Flags& f = flags.value();
  if (f.Has("help")) {
    std::puts(
        "ftte bench train --model {mlp,lenet5,cnn,resnet8} [--batch 32] [--threads 1]\n"
        "  [--mask full|last|bias|budget:F] [--frozen float32|int8] [--seconds 3] [--warmup 5]\n"
        "  [--json]");
    return 0;
  }
  auto probe = MakeModel(f.Get("model", "cnn"));
  if (!probe.ok()) return Fail(probe.status());
  auto batch = f.GetInt("batch", 32, 1, 1 << 16);
  auto seconds = f.GetDouble("seconds", 3.0);
  auto warmup = f.GetInt("warmup", 5, 0, 1000000);
  if (!batch.ok()) return Fail(batch.status());
  if (!seconds.ok()) return Fail(seconds.status());
  if (!warmup.ok()) return Fail(warmup.status());
  // A fixed synthetic batch (standard normal pixels, uniform labels), like the PyTorch twin.
  const int64_t sample = NumElements(probe.value()->sample_shape());
  const int64_t calib = batch.value() * 8;
  std::vector<float> x(static_cast<size_t>(calib * sample));
  std::vector<int32_t> y(static_cast<size_t>(calib));
  Rng rng(1234);
  for (float& v : x) v = static_cast<float>(rng.Normal());
  for (int32_t& v : y) v = static_cast<int32_t>(rng.Below(probe.value()->num_classes()));
  auto setup = MakeSetup(f, x.data(), y.data(), calib);
  if (!setup.ok()) return Fail(setup.status());
  Setup& s = setup.value();
  const int64_t predicted = PredictPeak(*s.model, s.options).total;
  const Flops flops = CountTrainingFlops(*s.model, s.options.batch);
  Trainer trainer(s.model.get(), s.options);
  for (int64_t i = 0; i < warmup.value(); ++i) trainer.Step(x.data(), y.data(), s.options.batch);
  int64_t steps = 0;
  const auto start = Clock::now();
  double secs = 0;
  while (secs < seconds.value() || steps == 0) {
    trainer.Step(x.data(), y.data(), s.options.batch);
    ++steps;
    secs = std::chrono::duration<double>(Clock::now() - start).count();
  }
  const MemoryStats mem = s.model->tracker().stats();
  const double sps = static_cast<double>(steps * s.options.batch) / secs;
  const double fps = static_cast<double>(flops.forward + flops.backward) / s.options.batch;
  if (f.Has("json")) {
    std::printf(
        "{\"model\": \"%s\", \"batch\": %lld, \"threads\": %d, \"mask\": \"%s\", "
        "\"samples_per_s\": %s, \"steps\": %lld, \"peak_bytes\": %lld, "
        "\"predicted_peak_bytes\": %lld, \"full_training_peak_bytes\": %lld, "
        "\"peak_by_category\": %s, \"rss_bytes\": %lld, \"flops_per_sample\": %s, "
        "\"gflops\": %s, \"trainable_params\": %lld}\n",
        s.model->name().c_str(), static_cast<long long>(s.options.batch), s.options.threads,
        s.mask.c_str(), Json(sps).c_str(), static_cast<long long>(steps),
        static_cast<long long>(mem.peak_total), static_cast<long long>(predicted),
        static_cast<long long>(s.full_peak), CategoriesJson(mem.at_peak).c_str(),
        static_cast<long long>(PeakRssBytes()), Json(fps).c_str(), Json(sps * fps / 1e9).c_str(),
        static_cast<long long>(s.model->num_trainable()));
  } else {
    std::printf("%s batch %lld, %d thread(s), mask %s: %.0f samples/s (%.1f GFLOP/s)\n",
                s.model->name().c_str(), static_cast<long long>(s.options.batch), s.options.threads,
                s.mask.c_str(), sps, sps * fps / 1e9);
    std::printf("peak tensor memory %s (predicted %s), peak RSS %s\n",
                FormatBytes(mem.peak_total).c_str(), FormatBytes(predicted).c_str(),
                FormatBytes(PeakRssBytes()).c_str());
  }
  return 0;
}

}  // namespace ftte::cli
