"""PyTorch twins of the zoo's language models (src/core/zoo_lm.cc), for golden_check.py.

build_lm(spec) takes ftte's model spec ("lstm_lm:vocab=50,context=8") and returns an
nn.Sequential whose state_dict names and shapes are ftte's, so load_state_dict(strict=True)
takes an ftte checkpoint. Inputs are token ids stored as floats, [N, T]; outputs [N, T, vocab].
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import stateless

DEFAULTS = {"lstm_lm": {"vocab": 10000, "context": 32},
            "tiny_gpt": {"vocab": 10000, "context": 64},
            "tiny_gpt_lora": {"vocab": 10000, "context": 64, "rank": 8},
            "gpt": {"vocab": 10000, "context": 128, "layers": 4, "width": 256, "heads": 4,
                    "rank": 0, "tie": 0}}
LORA_ALPHA = 16.0


class Residual(nn.Module):
    """ftte's Residual with an identity shortcut: x + body(x) ("2.body.0.weight")."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return self.body(x) + x


class TokenEmbedding(nn.Embedding):
    """nn.Embedding that takes ids stored as floats, like ftte's Embedding."""

    def forward(self, x):
        return super().forward(x.long())


class PositionalEmbedding(nn.Module):
    def __init__(self, max_len, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(max_len, dim))

    def forward(self, x):
        return x + self.weight[: x.shape[1]]


class LSTM(nn.Module):
    """ftte's LSTM: torch.nn.LSTM(batch_first=True) itself, its parameters renamed
    (weight_ih_l0 -> weight_ih, ...) so that ftte's names load."""

    def __init__(self, input_size, hidden):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, batch_first=True)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            p = getattr(self.lstm, name + "_l0")
            self.register_parameter(name, nn.Parameter(p.detach().clone()))
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            delattr(self.lstm, name)  # ours are the only parameters

    def forward(self, x):
        params = {n + "_l0": getattr(self, n)
                  for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        self.lstm._flat_weights = [params[n] for n in self.lstm._flat_weights_names]
        out, _ = stateless.functional_call(self.lstm, params, (x,))
        return out


class LoraLinear(nn.Module):
    """y = x W^T + b + (alpha / r) (x A^T) B^T with ftte's names weight, bias, lora_a, lora_b."""

    def __init__(self, fan_in, fan_out, rank):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(fan_out, fan_in))
        self.bias = nn.Parameter(torch.zeros(fan_out))
        self.lora_a = nn.Parameter(torch.zeros(rank, fan_in))
        self.lora_b = nn.Parameter(torch.zeros(fan_out, rank))
        self.scale = LORA_ALPHA / rank

    def forward(self, x):
        return F.linear(x, self.weight, self.bias) + self.scale * (x @ self.lora_a.t()) @ self.lora_b.t()


def linear(fan_in, fan_out, rank):
    return LoraLinear(fan_in, fan_out, rank) if rank else nn.Linear(fan_in, fan_out)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim, heads, rank):
        super().__init__()
        self.heads = heads
        self.qkv = linear(dim, 3 * dim, rank)
        self.proj = linear(dim, dim, rank)

    def forward(self, x):
        n, t, c = x.shape
        d = c // self.heads
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.reshape(n, t, self.heads, d).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d)
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
        att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(n, t, c))


def parse_spec(spec):
    name, _, rest = spec.partition(":")
    opts = dict(DEFAULTS[name])
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        opts[key] = int(value)
    return name, opts


def is_lm(spec):
    return spec.partition(":")[0] in DEFAULTS


def build_lm(spec):
    name, o = parse_spec(spec)
    vocab, context = o["vocab"], o["context"]
    if name == "lstm_lm":
        return nn.Sequential(TokenEmbedding(vocab, 96), LSTM(96, 256), nn.Linear(256, vocab))
    rank = o.get("rank", 0)
    c, blocks, heads = o.get("width", 128), o.get("layers", 2), o.get("heads", 4)
    layers = [TokenEmbedding(vocab, c), PositionalEmbedding(context, c)]
    for _ in range(blocks):
        layers.append(Residual(nn.Sequential(nn.LayerNorm(c), CausalSelfAttention(c, heads, rank))))
        layers.append(Residual(nn.Sequential(nn.LayerNorm(c), linear(c, 4 * c, rank), nn.GELU(),
                                             linear(4 * c, c, rank))))
    layers += [nn.LayerNorm(c), nn.Linear(c, vocab)]
    if o.get("tie", 0):
        layers[-1].weight = layers[0].weight  # one matrix, as GPT-2's lm_head and wte
    return nn.Sequential(*layers)


def complete_state(spec, state):
    """ftte's checkpoint of a tied gpt lists the shared matrix once (as the embedding's "0.weight");
    PyTorch's state_dict names it under both modules. Returns the state with the head's key."""
    name, o = parse_spec(spec)
    if name != "gpt" or not o.get("tie", 0):
        return state
    head = 2 + 2 * o["layers"] + 1
    return {**state, f"{head}.weight": state["0.weight"]}
