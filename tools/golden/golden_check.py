#!/usr/bin/python3
"""Golden test: one ftte SGD step against its PyTorch twin (like llm.c's test_gpt2).

    golden_check.py [--dump FTTE_GOLDEN_DUMP] --model MODEL INIT.safetensors STEP.safetensors

With --dump, first runs `FTTE_GOLDEN_DUMP MODEL INIT STEP` (tools/golden/golden_dump.cc) to
write the two files. INIT is ftte's checkpoint of the initial weights; STEP holds the batch
"x"/"y", ftte's mean loss on it ("loss" from Trainer::Evaluate, "step_loss" from the step),
every gradient "grad.<name>" and every weight after one SGD step "after.<name>".

The twin is bench/torch_train.py's build_model(MODEL) (lm_twins.build_lm(MODEL) for a
language model spec such as "lstm_lm:vocab=50,context=8"), loaded from INIT with
load_state_dict(strict=True). It computes F.cross_entropy(model(x), y) (over positions, ignore_index=-1), backward, and one
torch.optim.SGD step (lr from STEP's metadata, no momentum), in float32, and checks:
  * loss: |ftte - torch| <= 1e-5 * |torch|, for "loss" and "step_loss";
  * each gradient: max|g_ftte - g_torch| <= 1e-4 * max|g_torch|;
  * each updated weight: max|w_ftte - w_torch| <= 1e-4 * lr * max|g_torch|
    + 2 * eps32 * max|w_torch| (the gradient tolerance carried through the update, plus one
    rounding of the subtraction on each side).
A float64 run of the same twin is printed alongside as an accuracy reference (not checked).

Exit status: 0 when everything matches, 1 with a per-tensor report of what does not, 77 when
torch is not importable (ctest's SKIP_RETURN_CODE).
"""
import argparse
import json
import os
import struct
import subprocess
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:  # python3-torch is optional; ctest reports the test as skipped
    print(f"golden_check: skipped, torch is not importable ({e})")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
import torch_train  # noqa: E402  (the zoo's PyTorch twins)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lm_twins  # noqa: E402  (the language models' twins)

LOSS_RTOL = 1e-5
GRAD_RTOL = 1e-4
EPS32 = float(torch.finfo(torch.float32).eps)
DTYPES = {"F32": torch.float32, "F64": torch.float64, "I8": torch.int8, "U8": torch.uint8,
          "I32": torch.int32, "I64": torch.int64}


def read_safetensors(path):
    """Returns ({name: tensor}, metadata) from a safetensors file (stdlib + torch only)."""
    assert sys.byteorder == "little", "safetensors data is little-endian"
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        dtype = DTYPES[entry["dtype"]]
        data = bytearray(blob[base + begin:base + end])
        flat = torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(entry["shape"])
    return tensors, metadata


def torch_step(model_name, init, x, y, lr, dtype):
    """The twin's loss, gradients and SGD-updated weights, computed in `dtype`."""
    if lm_twins.is_lm(model_name):
        model = lm_twins.build_lm(model_name).to(dtype)
        init = lm_twins.complete_state(model_name, init)
    else:
        model = torch_train.build_model(model_name).to(dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in init.items()}, strict=True)
    model.train()
    logits = model(x.to(dtype))
    # Language models: one label per position, -1 = ignored (as ftte's Trainer).
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1).long(),
                           ignore_index=-1)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    torch.optim.SGD(model.parameters(), lr=lr, momentum=0).step()
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    return loss.item(), grads, after


def max_abs(t):
    return t.double().abs().max().item() if t.numel() else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dump", help="ftte_golden_dump executable to run first")
    ap.add_argument("--model", required=True)
    ap.add_argument("init")
    ap.add_argument("step")
    args = ap.parse_args()

    if args.dump:
        r = subprocess.run([args.dump, args.model, args.init, args.step])
        if r.returncode != 0:
            print(f"golden_check: {args.dump} failed with exit status {r.returncode}")
            return 1

    torch.set_num_threads(1)
    init, init_meta = read_safetensors(args.init)
    step, step_meta = read_safetensors(args.step)
    for what, meta in (("checkpoint", init_meta), ("step file", step_meta)):
        if meta.get("ftte.model") != args.model:
            print(f"golden_check: {what} is for model {meta.get('ftte.model')!r}, "
                  f"not {args.model!r}")
            return 1
    lr = float(step_meta["lr"])
    if float(step_meta.get("momentum", "0")) != 0:
        print("golden_check: only momentum 0 is supported")
        return 1
    x, y = step["x"], step["y"]

    loss32, grads32, after32 = torch_step(args.model, init, x, y, lr, torch.float32)
    loss64, grads64, after64 = torch_step(args.model, init, x, y, lr, torch.float64)

    failures = []
    print(f"golden {args.model}: batch {x.shape[0]}, lr {lr}, torch {torch.__version__}")
    print(f"  {'quantity':<28} {'ftte':>14} {'torch f32':>14} {'rel diff':>10} "
          f"{'tol':>9}  {'vs f64: ftte':>12} {'torch':>9}")
    for key in ("loss", "step_loss"):
        ours = step[key].item()
        rel = abs(ours - loss32) / abs(loss32)
        ok = rel <= LOSS_RTOL
        vs64, torch_vs64 = abs(ours - loss64) / abs(loss64), abs(loss32 - loss64) / abs(loss64)
        print(f"  {key:<28} {ours:>14.8f} {loss32:>14.8f} {rel:>10.2e} {LOSS_RTOL:>9.1e}  "
              f"{vs64:>12.2e} {torch_vs64:>9.2e}{'' if ok else '  MISMATCH'}")
        if not ok:
            failures.append(f"{key}: ftte {ours!r} vs torch {loss32!r} (rel {rel:.3e})")

    expected = {f"{kind}.{n}" for n in grads32 for kind in ("grad", "after")}
    present = {k for k in step if k.startswith(("grad.", "after."))}
    for k in sorted(expected - present):
        failures.append(f"{k}: missing from {args.step}")
    for k in sorted(present - expected):
        failures.append(f"{k}: in {args.step} but the twin has no such parameter")

    # Relative columns are max abs diff / scale, scale = max|torch gradient| (times lr for
    # the updated weights), so gradients and updates read on the same scale.
    print(f"  {'tensor':<28} {'max|g torch|':>14} {'max abs diff':>14} {'rel diff':>10} "
          f"{'tol':>9}  {'vs f64: ftte':>12} {'torch':>9}")
    for name in grads32:
        g_scale = max(max_abs(grads32[name]), 1e-30)
        for kind, ref32, ref64 in (("grad", grads32[name], grads64[name]),
                                   ("after", after32[name], after64[name])):
            key = f"{kind}.{name}"
            if key not in step:
                continue
            ours = step[key]
            if ours.shape != ref32.shape:
                failures.append(f"{key}: shape {list(ours.shape)} vs twin {list(ref32.shape)}")
                continue
            scale = g_scale if kind == "grad" else lr * g_scale
            tol = GRAD_RTOL * scale
            if kind == "after":
                tol += 2 * EPS32 * max_abs(ref32)
            diff = max_abs(ours.double() - ref32.double())
            ok = diff <= tol
            vs64 = max_abs(ours.double() - ref64) / scale
            torch_vs64 = max_abs(ref32.double() - ref64) / scale
            print(f"  {key:<28} {g_scale:>14.6e} {diff:>14.6e} {diff / scale:>10.2e} "
                  f"{tol / scale:>9.1e}  {vs64:>12.2e} {torch_vs64:>9.2e}"
                  f"{'' if ok else '  MISMATCH'}")
            if not ok:
                where = int((ours.double() - ref32.double()).abs().argmax())
                failures.append(
                    f"{key}: max abs diff {diff:.3e} > tol {tol:.3e} (scale {scale:.3e}); "
                    f"worst at flat index {where}: ftte {ours.flatten()[where].item()!r}, "
                    f"torch {ref32.flatten()[where].item()!r}, "
                    f"float64 {ref64.flatten()[where].item()!r}")

    if failures:
        print(f"golden {args.model}: {len(failures)} MISMATCH(ES)")
        for f in failures:
            print(f"  {f}")
        return 1
    print(f"golden {args.model}: OK ({len(grads32)} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
