"""What the corpus costs the model in FLOPs, and what the machine can do: the two halves of MFU.

Model FLOPs count only the work the texts need: 2 x (encoder linear weights) per real token, plus per layer
4 x n x hidden per token for attention scores and their weighted sum (n: the document's own token count).
Padding, embeddings lookups, layer norms and activations are not counted: they are overhead MFU should expose.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from models.packed_linear import PackedLinear, packing_works


def linear_weights(encoder: nn.Module) -> int:
    """Weights of the encoder's per-token linear layers, stock or packed (the pooler works once per document,
    not per token)."""
    return sum(module.in_features * module.out_features for name, module in encoder.named_modules()
               if isinstance(module, nn.Linear | PackedLinear) and "pooler" not in name)


def corpus_flops(lengths: Sequence[int], weights: int, layers: int, hidden: int) -> float:
    """FLOPs of one encoder pass over documents of these real token lengths, without padding."""
    return float(sum(2 * weights * n + layers * 4 * n * n * hidden for n in lengths))


def matmul_ceiling(hidden: int, intermediate: int, rows: int, device: str = "cpu",
                   dtype: torch.dtype = torch.float32, seconds: float = 2.0) -> float:
    """FLOP/s of dense matmuls at the encoder's shapes (a layer's mix: 4 of hidden x hidden, one up and one
    down projection) with ``rows`` tokens: the best this machine does on exactly the model's work, with
    ``torch.matmul`` or, on CPU, with the packed oneDNN product the model itself uses (whichever is faster)."""
    shapes = [(hidden, hidden)] * 4 + [(hidden, intermediate), (intermediate, hidden)]
    inputs = [(torch.randn(rows, k, device=device, dtype=dtype), torch.randn(k, m, device=device, dtype=dtype))
              for k, m in shapes]
    flops = sum(2 * rows * k * m for k, m in shapes)
    kernels = [[lambda a=a, b=b: torch.matmul(a, b) for a, b in inputs]]
    if device == "cpu" and packing_works(dtype):
        layers = [PackedLinear(nn.Linear(k, m, bias=False, dtype=dtype)) for k, m in shapes]
        kernels.append([lambda a=a, layer=layer: layer(a) for (a, _), layer in zip(inputs, layers, strict=True)])
    return max(flops / best_seconds(products, device, seconds / len(kernels)) for products in kernels)


def best_seconds(products: Sequence[Callable[[], torch.Tensor]], device: str, seconds: float) -> float:
    """The fastest of repeated runs of ``products`` (after three warm-up runs) within ``seconds``."""

    def one_layer() -> float:
        started = time.perf_counter()
        for product in products:
            product()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - started

    for _ in range(3):
        one_layer()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        best = min(best, one_layer())
    return best
