// The `ftte` command.
#include <cstdio>
#include <string>
#include <vector>

#include "net_cmd.h"
#include "predict_cmd.h"
#include "simulate_cmd.h"
#include "train_cmd.h"

namespace {

constexpr char kUsage[] =
    "usage: ftte <command> [flags]\n"
    "\n"
    "commands:\n"
    "  train        train a model centrally and report test accuracy and peak memory\n"
    "               ftte train --model cnn --data fashion-mnist --epochs 1 [--batch 32]\n"
    "                 [--threads 1] [--mask full|last|bias|budget:F] [--save CKPT] [--json]\n"
    "               language models (next-word prediction) on the Bible or a folder of texts:\n"
    "               ftte train --model lstm_lm|tiny_gpt|tiny_gpt_lora|gpt --data bible|DIR\n"
    "                 [--tokenizer word|char|subword] [--vocab 10000] [--context 32]\n"
    "                 [--mask lora|...] [--save CKPT]  (reports held-out top-1/top-3 accuracy\n"
    "                 and perplexity)\n"
    "  predict      the three most likely next words after a text, from a language model\n"
    "               ftte predict --model CKPT \"And God said\" [--top 3] [--json]\n"
    "  simulate     federated training of many simulated devices: FTTE vs FedBuff vs FedAvg ...\n"
    "               ftte simulate [--config FILE.toml] [--out out/sim] [--threads N] [--seed S]\n"
    "                 [--set key=value ...] [--methods a,b] [--print-config]\n"
    "               mpirun -np N ftte simulate ...  (across processes or hosts, same results)\n"
    "  serve        run a federation over gRPC (TLS, tokens, validation, crash recovery)\n"
    "               ftte serve --config examples/deploy/serve.toml [--set section.key=value ...]\n"
    "  client       one device: train on local data within a memory budget, submit updates\n"
    "               ftte client --server HOST:PORT --enroll-key KEY --memory-budget 64MiB\n"
    "                 [--data DIR] [--shard I/N] [--tls-ca CA.pem | --insecure]\n"
    "  bench train  training-step throughput and memory on a fixed synthetic batch\n"
    "               ftte bench train --model cnn|lstm_lm|gpt --batch 32 --threads 1\n"
    "                 [--mask ...] [--json]   (language models also report tokens/s)\n"
    "\n"
    "`ftte <command> --help` lists every flag of a command.\n";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  const std::string cmd = args[0];
  args.erase(args.begin());
  if (cmd == "train") return ftte::cli::RunTrain(args);
  if (cmd == "predict") return ftte::cli::RunPredict(args);
  if (cmd == "simulate") return ftte::cli::RunSimulate(args);
  if (cmd == "serve") return ftte::cli::RunServe(args);
  if (cmd == "client") return ftte::cli::RunClient(args);
  if (cmd == "bench") {
    if (!args.empty() && args[0] == "train") {
      args.erase(args.begin());
      return ftte::cli::RunBenchTrain(args);
    }
    std::fprintf(stderr, "ftte bench: unknown benchmark; available: train\n");
    return 2;
  }
  std::fprintf(stderr, "ftte: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
  return 2;
}
