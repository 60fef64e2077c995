"""Feed-forward blocks in token chunks for CPU inference: the same outputs, a smaller peak per pass.

A BERT layer's feed-forward block widens every token to four times the hidden size (1,536 for MiniLM) and holds
that tensor, the pass's largest, while it runs: 12 MiB in bf16 for a pass at the CPU token budget (4,096 tokens).
Every operation in the block works token by token, so running it over chunks of at most
``FEED_FORWARD_CHUNK_TOKENS`` gives the same values (bit for bit on the bench corpus, bf16 and fp32), while glibc,
which placed the 3-12 MiB activations of a pass where earlier ones left no room, needs fewer new pages: the model
loop alone over the bench corpus peaked 16-19 MiB lower (four alternating pairs, at the same speed within noise).

``Classifier.load`` applies it on CPU (fp32 and bf16); int8's dynamic quantisation scales activations per tensor,
so chunks would change its results, and training and GPUs keep the stock block.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

FEED_FORWARD_CHUNK_TOKENS = 2048
"""Most tokens one feed-forward chunk takes: half the CPU token budget, still enough rows for full-speed matmuls."""


def chunk_feed_forward(encoder: nn.Module, tokens: int = FEED_FORWARD_CHUNK_TOKENS) -> int:
    """Run each BERT layer's feed-forward block (transformers' ``feed_forward_chunk``) over at most ``tokens``
    tokens at a time; the number of layers changed."""
    changed = 0
    for module in encoder.modules():
        if callable(getattr(module, "feed_forward_chunk", None)) and hasattr(module, "intermediate"):
            module.feed_forward_chunk = _in_token_chunks(module.feed_forward_chunk, tokens)
            changed += 1
    return changed


def _in_token_chunks(feed_forward: Callable[[torch.Tensor], torch.Tensor], tokens: int
                     ) -> Callable[[torch.Tensor], torch.Tensor]:
    @functools.wraps(feed_forward)
    def run(attention_output: torch.Tensor) -> torch.Tensor:
        flat = attention_output.reshape(-1, attention_output.shape[-1])
        chunks = -(-flat.shape[0] // tokens)
        if chunks <= 1:
            return feed_forward(attention_output)
        output = torch.empty_like(flat)
        for piece, target in zip(flat.tensor_split(chunks), output.tensor_split(chunks), strict=True):
            target.copy_(feed_forward(piece))
        return output.view(attention_output.shape)

    return run
