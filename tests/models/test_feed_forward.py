"""Feed-forward blocks in token chunks: no chunk over the limit, the same outputs, only where results cannot change."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.classifier import Classifier
from models.feed_forward import chunk_feed_forward

TEXTS = ["I love it", "terrible, never again", "it arrived on Tuesday", "refund please " * 30, "meh",
         "Votre colis est arrivé ? Toujours rien.", "ok"]


def rows_seen_by_feed_forward(classifier: Classifier) -> list[int]:
    """Record how many token rows each feed-forward block's widening layer receives."""
    seen: list[int] = []
    for layer in classifier.model.encoder.encoder.layer:
        layer.intermediate.register_forward_hook(lambda module, args, output: seen.append(args[0].shape[:-1].numel()))
    return seen


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_chunks_stay_within_the_limit_and_give_the_same_logits(tiny_bundle: Path, precision: str) -> None:
    stock = Classifier.load(tiny_bundle, device="cpu", precision=precision)
    for layer in stock.model.encoder.encoder.layer:
        del layer.feed_forward_chunk  # back to transformers' own block
    chunked = Classifier.load(tiny_bundle, device="cpu", precision=precision)
    layers = len(chunked.model.encoder.encoder.layer)
    assert chunk_feed_forward(chunked.model.encoder, tokens=16) == layers  # 16 tokens, so this batch is cut
    seen = rows_seen_by_feed_forward(chunked)
    batch, _ = chunked.encode(TEXTS)
    tokens = batch["input_ids"].numel()
    expected, actual = stock.logits_for(batch), chunked.logits_for(batch)
    assert len(seen) == layers * -(-tokens // 16) and max(seen) <= 16 and sum(seen) == layers * tokens
    for task in expected:
        torch.testing.assert_close(actual[task], expected[task], rtol=0, atol=1e-5)


def test_loading_chunks_cpu_encoders_but_not_int8(tiny_bundle: Path) -> None:
    def chunked_layers(classifier: Classifier) -> int:
        return sum("feed_forward_chunk" in vars(layer) for layer in classifier.model.encoder.encoder.layer)

    fp32 = Classifier.load(tiny_bundle, device="cpu", precision="fp32")
    assert chunked_layers(fp32) == len(fp32.model.encoder.encoder.layer)
    assert chunked_layers(Classifier.load(tiny_bundle, device="cpu", precision="int8")) == 0
