#include "train_cmd.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "flags.h"
#include "ftte/core/checkpoint.h"
#include "ftte/core/rng.h"
#include "ftte/core/trainer.h"
#include "ftte/data/cifar.h"
#include "ftte/data/idx.h"
#include "lm_train_cmd.h"
#include "train_setup.h"

namespace ftte::cli {

namespace {

using Clock = std::chrono::steady_clock;

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
  auto known = CommonTrainFlags();
  known.insert(
      {{"data", true}, {"data-dir", true}, {"epochs", true}, {"save", true}, {"limit", true}});
  for (const auto& [name, takes_value] : TextTrainFlags()) known.insert({name, takes_value});
  auto flags = Flags::Parse(args, known);
  if (!flags.ok()) return Fail(flags.status());
  const Flags& f = flags.value();
  if (f.Has("help")) {
    std::puts(
        "ftte train --model {mlp,lenet5,cnn,resnet8} --data {fashion-mnist,cifar10}\n"
        "  [--data-dir DIR] [--epochs 1] [--batch 32] [--micro-batch N] [--threads 1]\n"
        "  [--seed 0] [--mask full|last|bias|budget:F|budget:SIZE] [--cut N]\n"
        "  [--frozen float32|int8|mapped:FILE] [--optimizer sgd|adam|adamw] [--lr 0.01]\n"
        "  [--momentum 0.9] [--limit N (first N training samples)] [--save CKPT] [--json]\n"
        "  budget:F is F x full training's peak, budget:SIZE bytes (6MiB, 5427814B); the\n"
        "  planner picks the trainable rows and the micro-batch (--micro-batch fixes it; the\n"
        "  step still takes --batch samples) and frozen rows default to int8. --cut N takes\n"
        "  its best subset cut at layer N. mapped:FILE writes the frozen int8 rows to FILE\n"
        "  and reads them in place (counted as mapped, not heap). See docs/memory.md.\n"
        "\n"
        "Language models (next-word prediction; see docs/language-models.md):\n"
        "ftte train --model {lstm_lm,tiny_gpt,tiny_gpt_lora,gpt}[:key=value,...] --data "
        "{bible,DIR}\n"
        "  [--tokenizer word|char] [--vocab 10000] [--context 32 (lstm_lm), 64 (tiny_gpt), 128 "
        "(gpt)]\n"
        "  gpt takes layers=, width=, heads= and rank= (LoRA) options: "
        "gpt:layers=6,width=512,heads=8\n"
        "  [--holdout 0.1] [--limit N] [--test-limit N] [--epochs 1] [--batch 32]\n"
        "  [--mask full|last|bias|lora|budget:F|budget:SIZE] [--optimizer adam] [--lr 0.002]\n"
        "  [--save CKPT] [--json]\n"
        "  DIR is a directory of text files, one per user; the last --holdout of each user's\n"
        "  text is held out for top-1/top-3 accuracy and perplexity. --save writes the weights,\n"
        "  the model spec and the tokenizer into one safetensors file for `ftte predict`.\n"
        "  --limit/--test-limit train/evaluate on a seeded random subset of N samples.");
    return 0;
  }
  auto model_probe = MakeModel(f.Get("model", "cnn"));
  if (!model_probe.ok()) return Fail(model_probe.status());
  if (Status st = CheckSavePath(f); !st.ok()) return Fail(st);
  if (model_probe.value()->sample_shape().size() == 1) return RunTrainText(f);
  for (const auto& [name, takes_value] : TextTrainFlags()) {
    if (f.Has(name)) {
      return Fail(InvalidArgument("--" + name +
                                  " applies to language models (lstm_lm, tiny_gpt, "
                                  "tiny_gpt_lora, gpt), not to " +
                                  f.Get("model", "cnn")));
    }
  }
  auto data = LoadData(f, *model_probe.value());
  if (!data.ok()) return Fail(data.status());
  auto& [train, test] = data.value();
  auto epochs = f.GetInt("epochs", 1, 1, 10000);
  auto limit = f.GetInt("limit", train.size, 1, train.size);
  if (!epochs.ok()) return Fail(epochs.status());
  if (!limit.ok()) return Fail(limit.status());
  if (limit.value() < train.size) train = train.Head(limit.value());
  auto setup =
      MakeSetup(f, f.Get("model", "cnn"), train.images.data(), train.labels.data(), train.size);
  if (!setup.ok()) return Fail(setup.status());
  Setup& s = setup.value();
  const bool json = f.Has("json");
  if (!s.selection_note.empty()) std::fprintf(stderr, "%s\n", s.selection_note.c_str());
  const int64_t predicted = PredictPeak(*s.model, s.options).total;

  Trainer trainer(s.model.get(), s.options);
  const EpochsResult run = TrainEpochs(trainer, train, epochs.value(), s.options.seed, "samples");
  if (!run.status.ok()) return Fail(run.status);
  const double secs = run.seconds, last_loss = run.last_epoch_loss;
  const MemoryStats mem = s.model->tracker().stats();
  StepResult ev = trainer.Evaluate(test.images.data(), test.labels.data(), test.size);
  if (!ev.status.ok()) return Fail(ev.status);
  const int64_t mapped = PredictPeak(*s.model, s.options).mapped;
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
        "\"train_seconds\": %s, \"samples_per_s\": %s, \"mapped_bytes\": %lld, %s}\n",
        s.model->name().c_str(), s.mask.c_str(), static_cast<long long>(epochs.value()),
        static_cast<long long>(s.options.batch), s.options.threads, Json(acc).c_str(),
        Json(ev.loss).c_str(), Json(last_loss).c_str(), static_cast<long long>(mem.peak_total),
        static_cast<long long>(predicted), static_cast<long long>(s.full_peak),
        CategoriesJson(mem.at_peak).c_str(), static_cast<long long>(s.model->num_trainable()),
        static_cast<long long>(s.model->num_params()), Json(secs).c_str(),
        Json(epochs.value() * train.size / secs).c_str(), static_cast<long long>(mapped),
        PlanJson(s).c_str());
  } else {
    std::printf("model %s, mask %s: %lld of %lld parameters trained\n", s.model->name().c_str(),
                s.mask.c_str(), static_cast<long long>(s.model->num_trainable()),
                static_cast<long long>(s.model->num_params()));
    std::printf("test accuracy   %.2f%%  (loss %.4f, %lld test samples)\n", 100 * acc, ev.loss,
                static_cast<long long>(test.size));
    std::printf("peak memory     %s measured, %s predicted (full training: %s)\n",
                FormatBytes(mem.peak_total).c_str(), FormatBytes(predicted).c_str(),
                FormatBytes(s.full_peak).c_str());
    if (mapped > 0) {
      std::printf("mapped          %s of int8 frozen rows read in place from %s (not heap)\n",
                  FormatBytes(mapped).c_str(), s.mapped_path.c_str());
    }
    std::printf("train time      %.1f s, %.0f samples/s on %d thread(s)\n", secs,
                epochs.value() * train.size / secs, s.options.threads);
  }
  return 0;
}

int RunBenchTrain(const std::vector<std::string>& args) {
  auto known = CommonTrainFlags();
  known.insert({{"seconds", true}, {"warmup", true}, {"keep-gradients", false}});
  auto flags = Flags::Parse(args, known);
  if (!flags.ok()) return Fail(flags.status());
  const Flags& f = flags.value();
  if (f.Has("help")) {
    std::puts(
        "ftte bench train --model "
        "{mlp,lenet5,cnn,resnet8,lstm_lm,tiny_gpt,tiny_gpt_lora,gpt}[:k=v,..]\n"
        "  [--batch 32] [--micro-batch N] [--threads 1]\n"
        "  [--mask full|last|bias|lora|none|budget:F|budget:SIZE]\n"
        "  [--frozen float32|int8|mapped:FILE] [--keep-gradients] [--cut N]\n"
        "  [--seconds 3] [--warmup 5] [--json]\n"
        "--keep-gradients holds each step's whole gradient, as a conventional engine does (the\n"
        "classic full-training peak); --cut N takes the planner's best subset cut at layer N.\n"
        "Language models train on a fixed batch of random token ids with one random next-id\n"
        "label per position and also report tokens/s (samples/s x context).");
    return 0;
  }
  const std::string spec = f.Get("model", "cnn");
  auto probe = MakeModel(spec);
  if (!probe.ok()) return Fail(probe.status());
  auto batch = f.GetInt("batch", 32, 1, 1 << 16);
  auto seconds = f.GetDouble("seconds", 3.0);
  auto warmup = f.GetInt("warmup", 5, 0, 1000000);
  if (!batch.ok()) return Fail(batch.status());
  if (!seconds.ok()) return Fail(seconds.status());
  if (!warmup.ok()) return Fail(warmup.status());
  // A fixed synthetic batch, like the PyTorch twins: standard normal pixels and uniform labels,
  // or for a language model uniform token ids and one uniform label per position.
  const Model& m = *probe.value();
  const bool lm = m.sample_shape().size() == 1;
  const int64_t sample = NumElements(m.sample_shape());
  const int64_t calib = std::max(batch.value(), kCalibrationSamples);
  std::vector<float> x(static_cast<size_t>(calib * sample));
  std::vector<int32_t> y(static_cast<size_t>(calib * m.label_positions()));
  Rng rng(1234);
  for (float& v : x) {
    v = lm ? static_cast<float>(rng.Below(m.num_classes())) : static_cast<float>(rng.Normal());
  }
  for (int32_t& v : y) v = static_cast<int32_t>(rng.Below(m.num_classes()));
  // A budget plans on the samples ftte train plans on (the first of Fashion-MNIST's training
  // set), so that both choose the same subset; timing then runs on the synthetic batch.
  std::vector<float> cx;
  std::vector<int32_t> cy;
  if (f.Get("mask", "full").rfind("budget:", 0) == 0 && m.sample_shape() == Shape{1, 28, 28}) {
    auto fm = data::LoadFashionMnist(data::kFashionMnistDir, true);
    if (fm.ok()) {
      const data::ImageDataset head = fm.value().Head(kCalibrationSamples);
      cx = head.images;
      cy = head.labels;
    } else {
      std::fprintf(stderr, "bench: planning on synthetic samples (%s)\n",
                   fm.status().message().c_str());
    }
  }
  auto setup = cx.empty()
                   ? MakeSetup(f, spec, x.data(), y.data(), calib)
                   : MakeSetup(f, spec, cx.data(), cy.data(), static_cast<int64_t>(cy.size()));
  if (!setup.ok()) return Fail(setup.status());
  Setup& s = setup.value();
  if (!s.selection_note.empty()) std::fprintf(stderr, "%s\n", s.selection_note.c_str());
  s.options.keep_gradients = f.Has("keep-gradients");
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
  const double tps = sps * static_cast<double>(s.model->label_positions());
  const double fps = static_cast<double>(flops.forward + flops.backward) / s.options.batch;
  if (f.Has("json")) {
    std::printf(
        "{\"model\": \"%s\", \"batch\": %lld, \"threads\": %d, \"mask\": \"%s\", "
        "\"samples_per_s\": %s, \"steps\": %lld, \"peak_bytes\": %lld, "
        "\"predicted_peak_bytes\": %lld, \"full_training_peak_bytes\": %lld, "
        "\"peak_by_category\": %s, \"rss_bytes\": %lld, \"flops_per_sample\": %s, "
        "\"gflops\": %s, \"trainable_params\": %lld, \"params\": %lld, \"context\": %lld, "
        "\"tokens_per_s\": %s, \"budget_bytes\": %lld, %s}\n",
        s.model->name().c_str(), static_cast<long long>(s.options.batch), s.options.threads,
        s.mask.c_str(), Json(sps).c_str(), static_cast<long long>(steps),
        static_cast<long long>(mem.peak_total), static_cast<long long>(predicted),
        static_cast<long long>(s.full_peak), CategoriesJson(mem.at_peak).c_str(),
        static_cast<long long>(PeakRssBytes()), Json(fps).c_str(), Json(sps * fps / 1e9).c_str(),
        static_cast<long long>(s.model->num_trainable()),
        static_cast<long long>(s.model->num_params()),
        static_cast<long long>(lm ? s.model->label_positions() : 0), Json(lm ? tps : 0).c_str(),
        static_cast<long long>(s.budget_bytes), PlanJson(s).c_str());
  } else {
    std::printf("%s batch %lld, %d thread(s), mask %s: %.0f samples/s", s.model->name().c_str(),
                static_cast<long long>(s.options.batch), s.options.threads, s.mask.c_str(), sps);
    if (lm) std::printf(", %.0f tokens/s", tps);
    std::printf(" (%.1f GFLOP/s); %lld of %lld parameters trained\n", sps * fps / 1e9,
                static_cast<long long>(s.model->num_trainable()),
                static_cast<long long>(s.model->num_params()));
    std::printf("peak tensor memory %s (predicted %s), peak RSS %s\n",
                FormatBytes(mem.peak_total).c_str(), FormatBytes(predicted).c_str(),
                FormatBytes(PeakRssBytes()).c_str());
  }
  return 0;
}

}  // namespace ftte::cli
