#!/usr/bin/python3
"""PyTorch side of the language-model training benchmark (bench/lm_bench.py).

  /usr/bin/python3 bench/torch_lm.py --model lstm_lm:vocab=10000,context=32 --batch 16
      [--threads 1] [--mask full|lora] [--seconds 3] [--warmup 5]

Trains the PyTorch twin of a zoo language model (tools/golden/lm_twins.py: same layers, sizes
and parameter names as src/core/zoo_lm.cc) on one fixed batch like `ftte bench train`: token
ids uniform in [0, vocab) stored as floats, one uniform next-id label per position,
cross-entropy over all positions, SGD(lr=0.01, momentum=0.9). --mask lora trains only the
lora_a / lora_b adapters (tiny_gpt_lora). Prints ONE JSON object on stdout:

  model, batch, threads, mask, context, samples_per_s, tokens_per_s, steps,
  peak_tensor_bytes, rss_before_bytes, rss_bytes, trainable_params, params, torch_version

Throughput and peak tensor bytes are measured exactly as bench/torch_train.py does (its
docstring explains the profiler-based peak; memory outside the c10 CPU allocator is unseen).
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tools", "golden"))
import lm_twins  # noqa: E402
from torch_train import live_bytes, profiled_peak_delta, rss_peak_bytes  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mask", default="full", choices=["full", "lora"])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    if not lm_twins.is_lm(args.model):
        sys.exit("torch_lm.py: %s is not a language model spec" % args.model)

    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    _, opts = lm_twins.parse_spec(args.model)
    vocab, context = opts["vocab"], opts["context"]
    model = lm_twins.build_lm(args.model)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)  # twins start at zeros; any values time the same
    for name, p in model.named_parameters():
        p.requires_grad_(args.mask == "full" or name.rsplit(".", 1)[-1] in ("lora_a", "lora_b"))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        sys.exit("torch_lm.py: mask %s leaves nothing to train in %s" % (args.mask, args.model))
    model.train()
    x = torch.randint(0, vocab, (args.batch, context)).float()
    y = torch.randint(0, vocab, (args.batch, context))
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    rss_before = rss_peak_bytes()

    def step(zero=True):
        if zero:
            opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = F.cross_entropy(out.reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        opt.step()

    for _ in range(max(args.warmup, 1)):  # >= 1 so momentum buffers exist
        step()
    steps, t0 = 0, time.perf_counter()
    while True:
        step()
        steps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= args.seconds:
            break
    rss_after = rss_peak_bytes()

    state = [v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    all_params = list(model.parameters())
    live = all_params + state + [x, y]
    start = live_bytes(live + [p.grad for p in all_params])
    opt.zero_grad(set_to_none=True)
    baseline = live_bytes(live + [p.grad for p in all_params])
    peak = max(start, baseline + profiled_peak_delta(lambda: step(zero=False)))

    sps = steps * args.batch / elapsed
    print(json.dumps({
        "model": args.model, "batch": args.batch, "threads": torch.get_num_threads(),
        "mask": args.mask, "context": context, "samples_per_s": sps,
        "tokens_per_s": sps * context, "steps": steps, "peak_tensor_bytes": peak,
        "rss_before_bytes": rss_before, "rss_bytes": rss_after,
        "trainable_params": sum(p.numel() for p in params),
        "params": sum(p.numel() for p in all_params), "torch_version": torch.__version__,
    }))


if __name__ == "__main__":
    main()
