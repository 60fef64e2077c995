"""The CPU attention: the plain product, a slice of sequences at a time, gives SDPA's results; training keeps SDPA,
and so do bf16 encoders on CPUs with AMX."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward

import models.attention
from models.attention import LENGTH_AWARE_ATTENTION, cpu_attention, length_aware_attention
from models.classifier import Classifier


def padded_qkv(tokens: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """A pass of 3 texts, 4 heads 32 wide, the second and third padded (SDPA's mask: True = attend)."""
    torch.manual_seed(0)
    query, key, value = (torch.randn(3, 4, tokens, 32).to(dtype) for _ in range(3))
    lengths = torch.tensor([tokens, tokens - 3, 2])
    mask = (torch.arange(tokens)[None, :] < lengths[:, None])[:, None, None, :].expand(3, 1, tokens, tokens)
    return query, key, value, mask


@pytest.mark.parametrize("tokens", [12, 57, 128])
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_plain_product_matches_sdpa(tokens: int, dtype: torch.dtype, tolerance: float) -> None:
    module = nn.Module().eval()
    query, key, value, mask = padded_qkv(tokens, dtype)
    ours, _ = length_aware_attention(module, query, key, value, mask)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask, is_causal=False)
    real = mask[:, 0, 0, :]  # padding positions' outputs are never read
    assert ours.dtype == dtype and ours.shape == theirs.shape == (3, tokens, 4, 32)
    torch.testing.assert_close(ours[real].float(), theirs[real].float(), atol=tolerance, rtol=tolerance)


def test_slices_of_a_pass_give_the_whole_pass_result(monkeypatch: pytest.MonkeyPatch) -> None:
    module = nn.Module().eval()
    query, key, value, mask = padded_qkv(40, torch.float32)
    whole, _ = length_aware_attention(module, query, key, value, mask)
    one_sequence_each = 4 * 40 * 40
    for limit in (one_sequence_each, 2 * one_sequence_each, 1):  # 1: one sequence even when it alone is over
        monkeypatch.setattr(models.attention, "SCORE_CHUNK_ELEMENTS", limit)
        sliced, _ = length_aware_attention(module, query, key, value, mask)
        assert torch.equal(sliced, whole)
    unmasked, _ = length_aware_attention(module, query, key, value, None)
    theirs, _ = sdpa_attention_forward(module, query, key, value, None, is_causal=False)
    torch.testing.assert_close(unmasked, theirs, atol=1e-5, rtol=1e-5)


def test_training_goes_to_sdpa() -> None:
    module = nn.Module().train()
    query, key, value, mask = padded_qkv(8, torch.float32)
    ours, _ = length_aware_attention(module, query, key, value, mask)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask, is_causal=False)
    assert torch.equal(ours, theirs)  # the same kernel, not merely close


def test_cpu_classifiers_use_it_with_sdpa_labels_on_real_padded_texts(tiny_bundle: Path, shared_data: Path) -> None:
    classifier = Classifier.load(tiny_bundle, device="cpu", precision="fp32")
    assert classifier.model.encoder.config._attn_implementation == LENGTH_AWARE_ATTENTION
    lines = (shared_data / "sentiment" / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    texts = [line.split("\t")[0] for line in lines[:32]]
    batch, _ = classifier.encode(texts)
    assert not batch["attention_mask"].all()
    ours = classifier.logits_for(batch)
    classifier.model.encoder.set_attn_implementation("sdpa")
    theirs = classifier.logits_for(batch)
    for task in ours:
        torch.testing.assert_close(ours[task], theirs[task], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("amx", "precision", "expected"), [
    (True, "bf16", "sdpa"), (True, "fp32", LENGTH_AWARE_ATTENTION), (True, "int8", LENGTH_AWARE_ATTENTION),
    (False, "bf16", LENGTH_AWARE_ATTENTION), (False, "fp32", LENGTH_AWARE_ATTENTION)])
def test_sdpa_only_for_bf16_on_amx(monkeypatch: pytest.MonkeyPatch, amx: bool, precision: str, expected: str) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert cpu_attention(precision) == expected


@pytest.mark.parametrize("amx", [True, False])
def test_a_bf16_classifier_takes_the_attention_its_cpu_runs_fastest(monkeypatch: pytest.MonkeyPatch, amx: bool,
                                                                     tiny_bundle: Path) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    classifier = Classifier.load(tiny_bundle, device="cpu", precision="bf16")
    expected = "sdpa" if amx else LENGTH_AWARE_ATTENTION
    assert classifier.model.encoder.config._attn_implementation == expected
    label = classifier.predict("the parcel came late and broken")["sentiment"].label
    assert label in classifier.spec.tasks["sentiment"].labels
