#!/usr/bin/python3
"""PyTorch side of the ftte side-by-side training benchmark.

Trains one of three small models (lenet5, cnn, mlp) on a fixed random
batch with SGD(lr=0.01, momentum=0.9) and prints ONE JSON object on stdout:

  model, batch, threads, mask, samples_per_s, steps, peak_tensor_bytes,
  rss_before_bytes, rss_bytes, torch_version, mkldnn

Throughput: after --warmup steps, steps run until --seconds have elapsed;
samples_per_s = steps * batch / elapsed (time.perf_counter).

RSS: ru_maxrss * 1024 (Linux reports KiB). rss_before_bytes is taken right
after `import torch` and model/data creation; rss_bytes right after the timed
loop (before the profiled step, so profiler bookkeeping is not counted).

peak_tensor_bytes (PyTorch 1.13 CPU has no max_memory_allocated) is the peak
of live CPU tensor bytes during one extra step taken after the timed loop:
  * Tensors alive before the step are counted from the tensors themselves,
    de-duplicated by storage pointer: parameters, existing .grad tensors,
    optimizer state (momentum buffers), input batch x and labels y.
  * The profiler cannot see frees of blocks allocated before it started (c10
    warns "Memory block of unknown size ..." and drops the event). So the
    step's first action, zero_grad(set_to_none=True) dropping the old grads,
    runs just before profiling; `start` and `base` are the live bytes before
    and after it.
  * The remainder (forward, loss, backward, opt.step) runs under
    torch.profiler.profile(activities=[CPU], profile_memory=True); it only
    frees blocks it allocated itself. Each c10 CPU allocation/free is a
    "[memory]" event with nbytes() > 0 / < 0; in this build they are read from
    prof.profiler.kineto_results.events() (the exported chrome trace carries
    no memory events here). Sorted by timestamp, their running sum's maximum
    is the peak delta over `base`.
  peak_tensor_bytes = max(start, base + max(0, peak delta)).
  Memory bypassing the c10 CPU allocator (oneDNN-internal scratch) is unseen.
"""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

EXPECTED_PARAMS = {"lenet5": 61_706, "cnn": 1_663_370, "mlp": 199_210}


class Residual(nn.Module):
    """ftte's Residual: body(x) + shortcut(x), the shortcut the identity when None.
    Attribute names match ftte's parameter names ("3.body.0.weight")."""

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x):
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


class GlobalAvgPool2d(nn.Module):
    """ftte's GlobalAvgPool2d: [N, C, H, W] -> [N, C] (one layer, so indices match)."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def resnet8_block(cin, cout, stride):
    """conv3x3-GN-ReLU-conv3x3-GN plus shortcut (1x1 conv + GN when the shape changes)."""
    body = nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.GroupNorm(2, cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.GroupNorm(2, cout))
    shortcut = None
    if stride != 1 or cin != cout:
        shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False),
                                 nn.GroupNorm(2, cout))
    return Residual(body, shortcut)


def build_model(name):
    """The zoo's PyTorch twins (src/core/zoo.cc), 10 classes. The three benchmark models
    take 1x28x28 inputs; resnet8 (used by tools/golden, not benchmarked) takes 3x32x32."""
    if name == "resnet8":
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.GroupNorm(2, 16), nn.ReLU(),
            resnet8_block(16, 16, 1), nn.ReLU(),
            resnet8_block(16, 32, 2), nn.ReLU(),
            resnet8_block(32, 64, 2), nn.ReLU(),
            GlobalAvgPool2d(),
            nn.Linear(64, 10))
    if name == "lenet5":
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, 10))
    if name == "cnn":  # CNN of the FedAvg paper (McMahan et al. 2017)
        return nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(3136, 512), nn.ReLU(),
            nn.Linear(512, 10))
    if name == "mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 200), nn.ReLU(),
            nn.Linear(200, 200), nn.ReLU(),
            nn.Linear(200, 10))
    raise ValueError(name)


def apply_mask(model, mask):
    """Freeze parameters per mask; return the list of trainable params."""
    if mask == "last":
        last = [m for m in model if isinstance(m, nn.Linear)][-1]
        keep = {id(p) for p in last.parameters()}
    elif mask == "bias":
        keep = {id(p) for n, p in model.named_parameters() if n.endswith("bias")}
    else:  # full
        keep = {id(p) for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return [p for p in model.parameters() if p.requires_grad]


def live_bytes(tensors):
    """Bytes of the distinct storages behind `tensors` (None entries skipped)."""
    seen = {}
    for t in tensors:
        if t is not None:
            s = t.storage()
            seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def profiled_peak_delta(fn):
    """Run fn() under the memory profiler; return the peak of the running
    allocation total (bytes), relative to the moment profiling started."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")]
    if not events:
        raise RuntimeError("profiler recorded no [memory] events")
    events.sort(key=lambda e: e.start_us())  # stable: keeps record order on ties
    total = peak = 0
    for e in events:
        total += e.nbytes()
        peak = max(peak, total)
    return peak


def rss_peak_bytes():  # Linux ru_maxrss is in KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, choices=sorted(EXPECTED_PARAMS))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mask", default="full", choices=["full", "last", "bias"])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json-only", action="store_true", default=True)  # always
    args = ap.parse_args()

    # Inter-op threads must be set before any parallel work starts.
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = build_model(args.model)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == EXPECTED_PARAMS[args.model], (args.model, n_params)
    params = apply_mask(model, args.mask)
    model.train()
    x = torch.randn(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    rss_before = rss_peak_bytes()

    def step(zero=True):
        if zero:
            opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        opt.step()

    for _ in range(max(args.warmup, 1)):  # >=1 so momentum buffers exist
        step()

    steps, t0 = 0, time.perf_counter()
    while True:
        step()
        steps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= args.seconds:
            break
    rss_after = rss_peak_bytes()

    # Peak of one more step (see module docstring). zero_grad runs outside
    # the profiler: freeing blocks allocated before profiling is not reported.
    state = [v for s in opt.state.values() for v in s.values()
             if isinstance(v, torch.Tensor)]
    all_params = list(model.parameters())
    live = all_params + state + [x, y]
    start = live_bytes(live + [p.grad for p in all_params])
    opt.zero_grad(set_to_none=True)
    baseline = live_bytes(live + [p.grad for p in all_params])
    peak = max(start, baseline + profiled_peak_delta(lambda: step(zero=False)))

    print(json.dumps({
        "model": args.model,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "mask": args.mask,
        "samples_per_s": steps * args.batch / elapsed,
        "steps": steps,
        "peak_tensor_bytes": peak,
        "rss_before_bytes": rss_before,
        "rss_bytes": rss_after,
        "torch_version": torch.__version__,
        "mkldnn": bool(torch.backends.mkldnn.is_available()
                       and torch.backends.mkldnn.enabled),
    }))


if __name__ == "__main__":
    main()
