"""The model-stage counters that the run manifest and the benchmark read: real and padded tokens, model time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline

from models.classifier import Classifier
from transforms.classify import METRICS_NAMESPACE, Classify, DocumentModelHandler
from transforms.records import new_document


def spread_documents(count: int = 200) -> list[dict]:
    """Lengths spread evenly from 1 to 100 words, in random order (like a mixed inbox)."""
    import random

    rng = random.Random(11)
    words = "good bad parcel refund late love broken screen price support".split()
    return [new_document("social", f"p:{i}", " ".join(rng.choices(words, k=rng.randint(1, 100))),
                         source_id=f"post-{i}") for i in range(count)]


def classify_metrics(documents: list[dict], handler: DocumentModelHandler) -> dict[str, Any]:
    """The model stage's counters (ints) and distributions (min/max/sum/count results) by name."""
    pipeline = TestPipeline(runner="FnApiRunner")
    _ = pipeline | beam.Create(documents) | Classify(handler, "run")
    result = pipeline.run()
    result.wait_until_finish()
    metrics = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    return {metric.key.metric.name: metric.committed for metric in metrics["counters"] + metrics["distributions"]}


def test_counters_count_every_real_token_once_and_sorting_keeps_padding_small(tiny_bundle: Path) -> None:
    documents = spread_documents()
    classifier = Classifier.load(tiny_bundle)
    lengths = [len(classifier.encode([d["text"]])[0]["input_ids"][0]) for d in documents]
    real = sum(lengths)
    counters = classify_metrics(documents, DocumentModelHandler(str(tiny_bundle), token_budget=1024))
    assert counters["real_tokens"] == real
    arrival_order_padded = sum(16 * max(lengths[i : i + 16]) for i in range(0, len(lengths), 16))
    assert arrival_order_padded > 1.3 * real
    assert real <= counters["padded_tokens"] <= 1.1 * real
    assert counters["model_microseconds"] > 0


def test_length_groups_cover_the_batch_once_and_split_at_length_jumps() -> None:
    import random

    from transforms.classify import length_groups

    rng = random.Random(3)
    lengths = [20] * 100 + [256] * 10 + [rng.randint(5, 60) for _ in range(300)]
    rng.shuffle(lengths)
    groups = length_groups(lengths, min_tokens=512)
    assert sorted(index for group in groups for index in group) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in group) >= 512 for group in groups[:-1])
    padded = sum(len(group) * max(lengths[i] for i in group) for group in groups)
    assert padded <= 1.1 * sum(lengths)
    assert len(length_groups(lengths, min_tokens=10**9)) == 1


def test_no_encoder_pass_exceeds_the_token_budget_with_many_tokens_per_character(tiny_bundle: Path) -> None:
    """Chinese text takes a token per character: batches cut by characters would overrun the budget several
    times over; batches cut by real tokens may not. (MiniLM's vocabulary knows 我 and 的 but not 退款 or 订单: a
    window of those alone would be an ``unreadable_text`` dead letter.)"""
    budget = 512
    documents = [new_document("email", f"m:{i}", "我的退款" * 25 + f" 订单{i}", source_id=f"m-{i}") for i in range(60)]
    real = [len(ids) for ids in Classifier.load(tiny_bundle).tokenize([d["text"] for d in documents])[0]]
    by_characters = budget // (len(documents[0]["text"]) // 4)
    assert by_characters * max(real) > 2 * budget
    metrics = classify_metrics(documents, DocumentModelHandler(str(tiny_bundle), token_budget=budget))
    assert metrics["real_tokens"] == sum(real)
    assert 0 < metrics["pass_tokens"].max <= budget


def test_length_groups_stay_within_max_tokens() -> None:
    import random

    from transforms.classify import length_groups

    rng = random.Random(5)
    lengths = [rng.choice([30, 120, 256]) for _ in range(400)]
    groups = length_groups(lengths, min_tokens=1024, max_tokens=2048)
    assert sorted(index for group in groups for index in group) == list(range(len(lengths)))
    assert all(len(group) * max(lengths[i] for i in group) <= 2048 for group in groups)
    assert max(len(group) * max(lengths[i] for i in group) for group in groups) > 1024
