"""The CPU attention: the plain product for short passes gives SDPA's results, SDPA keeps the long ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from models.attention import LENGTH_AWARE_ATTENTION, SHORT_PASS_TOKENS, length_aware_attention
from models.classifier import Classifier


def padded_qkv(tokens: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """A pass of 3 texts, 4 heads 32 wide, the second and third padded (SDPA's mask: True = attend)."""
    torch.manual_seed(0)
    query, key, value = (torch.randn(3, 4, tokens, 32).to(dtype) for _ in range(3))
    lengths = torch.tensor([tokens, tokens - 3, 2])
    mask = (torch.arange(tokens)[None, :] < lengths[:, None])[:, None, None, :].expand(3, 1, tokens, tokens)
    return query, key, value, mask


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_short_passes_match_sdpa(dtype: torch.dtype, tolerance: float) -> None:
    module = nn.Module().eval()
    query, key, value, mask = padded_qkv(SHORT_PASS_TOKENS, dtype)
    ours, _ = length_aware_attention(module, query, key, value, mask)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask, is_causal=False)
    real = mask[:, 0, 0, :]  # padding positions' outputs are never read
    assert ours.dtype == dtype and ours.shape == theirs.shape == (3, SHORT_PASS_TOKENS, 4, 32)
    torch.testing.assert_close(ours[real].float(), theirs[real].float(), atol=tolerance, rtol=tolerance)


def test_long_passes_and_training_go_to_sdpa() -> None:
    module = nn.Module().eval()
    query, key, value, mask = padded_qkv(SHORT_PASS_TOKENS + 1, torch.float32)
    ours, _ = length_aware_attention(module, query, key, value, mask)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask, is_causal=False)
    assert torch.equal(ours, theirs)  # the same kernel, not merely close
    module.train()
    query, key, value, mask = padded_qkv(8, torch.float32)
    ours, _ = length_aware_attention(module, query, key, value, mask)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask, is_causal=False)
    assert torch.equal(ours, theirs)


def test_cpu_classifiers_use_it_with_sdpa_labels_on_real_padded_texts(tiny_bundle: Path, shared_data: Path) -> None:
    classifier = Classifier.load(tiny_bundle, device="cpu", precision="fp32")
    assert classifier.model.encoder.config._attn_implementation == LENGTH_AWARE_ATTENTION
    lines = (shared_data / "sentiment" / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    texts = [line.split("\t")[0] for line in lines[:32]]
    batch, _ = classifier.encode(texts)
    assert batch["input_ids"].shape[1] <= SHORT_PASS_TOKENS and not batch["attention_mask"].all()
    ours = classifier.logits_for(batch)
    classifier.model.encoder.set_attn_implementation("sdpa")
    theirs = classifier.logits_for(batch)
    for task in ours:
        torch.testing.assert_close(ours[task], theirs[task], atol=1e-5, rtol=1e-5)
