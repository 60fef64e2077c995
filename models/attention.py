"""Attention for CPU inference: the plain product, a few sequences at a time, instead of PyTorch's SDPA.

SDPA's CPU kernel is a flash-attention loop whose blocks suit long sequences and wide heads; MiniLM's heads
are 32 wide and length-grouped passes are 10-128 tokens long. There, two batched matmuls and a softmax are
faster, as long as one slice's scores stay in the cores' caches: the pass is taken ``SCORE_CHUNK_ELEMENTS`` of
scores at a time (whole sequences). On the bench corpus's passes (2 cores, bf16, one process): the plain product
for passes up to 56 tokens with SDPA above took 0.6 s less of a 9.2 s model stage than SDPA alone (AVX512-BF16 EPYC,
2026-11-30); the plain product for every length in slices, on a Zen 5 EPYC (2026-12-02, five alternating rounds),
4.26-4.66 s against 4.75-5.24 s, with labels as close to fp32's (intent 99.32 against 99.36 %, sentiment 99.84
against 99.92 %, spam and topic the same). Unsliced, the longest passes' scores (32 × 12 × 128 × 128) leave the
caches and the loop took 5.5-5.7 s. In fp32 both took 7.1-7.9 s.

``Classifier.load`` selects it for CPU encoders (:func:`cpu_attention`) except bf16 ones on CPUs with AMX tiles;
training and GPUs keep SDPA.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

LENGTH_AWARE_ATTENTION = "undertone_length_aware"
"""The name the attention is registered under in transformers (``set_attn_implementation`` takes it)."""
SCORE_CHUNK_ELEMENTS = 1 << 20
"""Most attention scores (sequences × heads × tokens × tokens) one slice of a pass computes at once: 2 MiB in
bf16 and 4 MiB for the fp32 softmax (0.5-2 Mi elements measured alike; a whole 4,096-token pass of 128-token
texts, 6 Mi elements, a third slower)."""


def cpu_attention(precision: str) -> str:
    """The attention implementation a CPU encoder in ``precision`` runs: SDPA in bf16 where the CPU has AMX tiles,
    the sliced plain product elsewhere.

    SDPA's flash kernel reads query, key and value where the projections left them and takes its bf16 products
    as blocked (AMX) ones, while the plain product copies each slice into a contiguous batch first. On an Intel
    Xeon with AMX (2 cores, 2026-12-02, the bench corpus's 66 passes, four alternating rounds in one process) the
    bf16 model loop took 4.26-4.51 s with SDPA against 4.58-4.97 s with the plain product (profile: SDPA 0.80 s
    against 1.05 s of products, softmax and copies), labels as close to fp32's (intent 99.40 against 99.56 %,
    sentiment 99.96 against 99.88 %); in fp32 the two were level (8.44-8.89 against 8.63-9.03 s). On CPUs
    without AMX the plain product is the faster (above)."""
    return "sdpa" if precision == "bf16" and torch.cpu._is_amx_tile_supported() else LENGTH_AWARE_ATTENTION


def length_aware_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, scaling: float | None = None,
                           dropout: float = 0.0, **kwargs: object) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: query, key and value are (batch, heads, tokens, head width),
    the mask SDPA's boolean one (True = attend) or None; returns (batch, tokens, heads, head width).
    The softmax runs in fp32 whatever the input precision, as SDPA's kernel does."""
    if module.training:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    sequences, heads, tokens, width = query.shape
    output = torch.empty(sequences, tokens, heads, width, dtype=value.dtype, device=value.device)
    step = max(1, SCORE_CHUNK_ELEMENTS // (heads * tokens * key.shape[2]))
    for start in range(0, sequences, step):
        rows = slice(start, start + step)
        scores = torch.matmul(query[rows], key[rows].transpose(2, 3)).mul_(scale)
        if attention_mask is not None:
            mask = attention_mask[rows] if attention_mask.shape[0] > 1 else attention_mask
            scores.masked_fill_(~mask, torch.finfo(scores.dtype).min)
        weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
        output[rows] = torch.matmul(weights, value[rows]).transpose(1, 2)
    return output, None


AttentionInterface.register(LENGTH_AWARE_ATTENTION, length_aware_attention)
AttentionMaskInterface.register(LENGTH_AWARE_ATTENTION, sdpa_mask)
