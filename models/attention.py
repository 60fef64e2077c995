"""Attention for CPU inference: the plain product for short passes, PyTorch's SDPA for the rest.

SDPA's CPU kernel is a flash-attention loop whose blocks suit long sequences and wide heads; MiniLM's heads
are 32 wide and length-grouped passes of tweets and reviews are 10-50 tokens long. There, two batched
matmuls and a softmax are faster: on the bench corpus's passes (2 cores, AVX512-BF16) attention took 0.6 s
less of a 9.2 s bf16 model stage, and 0.2 s less of 14.6 s in fp32, with the same labels. Above
``SHORT_PASS_TOKENS`` the batched matmuls' speed depends erratically on the shape, so SDPA keeps those.

``Classifier.load`` selects it for CPU encoders; training and GPUs keep SDPA.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

LENGTH_AWARE_ATTENTION = "undertone_length_aware"
"""The name the attention is registered under in transformers (``set_attn_implementation`` takes it)."""
SHORT_PASS_TOKENS = 56
"""Passes up to this many tokens long use the plain product (faster than SDPA up to about 56 tokens, measured
at 12-128 on the corpus's pass shapes)."""


def length_aware_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, scaling: float | None = None,
                           dropout: float = 0.0, **kwargs: object) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: query, key and value are (batch, heads, tokens, head width),
    the mask SDPA's boolean one (True = attend) or None; returns (batch, tokens, heads, head width).
    The softmax runs in fp32 whatever the input precision, as SDPA's kernel does."""
    if query.shape[2] > SHORT_PASS_TOKENS or module.training:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scale
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


AttentionInterface.register(LENGTH_AWARE_ATTENTION, length_aware_attention)
AttentionMaskInterface.register(LENGTH_AWARE_ATTENTION, sdpa_mask)
