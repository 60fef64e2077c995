"""The shipped default bundle, measured for real on data it never trained on (../shared/data).

The floors sit a little under the figures in its model card: they catch a broken or swapped
model, and the card keeps the exact numbers.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pandas as pd
import pytest

from models.card import render_card
from models.classifier import Classifier
from models.datasets import read_sst2, semeval_test
from models.metrics import classification_report
from models.recipes import intent_data, predict_task, spam_data
from models.registry import default_model_dir
from tests.conftest import SAMPLES
from transforms.pipeline import PipelineConfig, run_pipeline

SHIPPED = default_model_dir()


@pytest.fixture(scope="module")
def shipped() -> Classifier:
    return Classifier.load(SHIPPED)


def test_registry_default_is_the_shipped_bundle(shipped: Classifier) -> None:
    assert SHIPPED.name == "base" and SHIPPED.parent.name == "shipped"
    assert set(shipped.spec.tasks) >= {"sentiment", "intent", "spam", "topic"}
    assert shipped.spec.default_tasks == ("sentiment", "spam", "topic")
    assert (SHIPPED / "MODEL_CARD.md").is_file()
    size = sum(path.stat().st_size for path in SHIPPED.rglob("*.safetensors"))
    assert size < 8e6


def test_model_card_quotes_the_bundle_metrics_and_its_data_recipe() -> None:
    """The card is rendered from ``metrics.json`` and the recipe code; a hand edit or a stale card fails."""
    card = (SHIPPED / "MODEL_CARD.md").read_text(encoding="utf-8")
    rendered = render_card(SHIPPED)
    for section in ("## Evaluation", "## Training"):
        start = rendered.index(section)
        table = rendered[start : rendered.index("\n\n", rendered.index("|---", start))]
        assert table in card


def test_sentiment_on_semeval_2016_test(shipped: Classifier, shared_data: Path) -> None:
    tweets = semeval_test(shared_data)
    sample = random.Random(0).sample(tweets, 4000)
    predicted, scores = predict_task(shipped, "sentiment", [e.text for e in sample])
    report = classification_report([e.label for e in sample], predicted, shipped.spec.tasks["sentiment"].labels,
                                   scores)
    assert report["macro_recall"] >= 0.66
    assert report["ece"] <= 0.08


def test_sentiment_on_sst2_dev_reviews(shipped: Classifier, shared_data: Path) -> None:
    dev = read_sst2(shared_data / "sentiment" / "sst2" / "dev.tsv")
    predicted, _ = predict_task(shipped, "sentiment", [e.text for e in dev], ("negative", "positive"))
    assert classification_report([e.label for e in dev], predicted, ("negative", "positive"))["accuracy"] >= 0.86


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_stays_within_a_point_of_fp32_on_sst2_dev(precision: str, shared_data: Path) -> None:
    """The set where per-tensor int8 lost 1.26 points; per-channel weights keep it within the 1-point rule."""
    dev = read_sst2(shared_data / "sentiment" / "sst2" / "dev.tsv")
    texts, gold, binary = [e.text for e in dev], [e.label for e in dev], ("negative", "positive")
    fp32, reduced = (Classifier.load(SHIPPED, tasks=["sentiment"], precision=p) for p in ("fp32", precision))
    fp32_accuracy = classification_report(gold, predict_task(fp32, "sentiment", texts, binary)[0], binary)
    reduced_accuracy = classification_report(gold, predict_task(reduced, "sentiment", texts, binary)[0], binary)
    assert reduced_accuracy["accuracy"] >= fp32_accuracy["accuracy"] - 0.01


def test_intent_on_held_out_banking77(shipped: Classifier, shared_data: Path) -> None:
    _, test = intent_data(shared_data, seed=13)
    predicted, _ = predict_task(shipped, "intent", [e.text for e in test])
    report = classification_report([e.label for e in test], predicted, shipped.spec.tasks["intent"].labels)
    assert report["accuracy"] >= 0.90


def test_spam_on_held_out_emails(shipped: Classifier, shared_data: Path) -> None:
    _, test = spam_data(shared_data, seed=13)
    predicted, _ = predict_task(shipped, "spam", [e.text for e in test])
    report = classification_report([e.label for e in test], predicted, ("ham", "spam"))
    assert report["per_class"]["spam"]["f1"] >= 0.95  # the target; 1.4.1 measures 0.963


def test_zero_shot_topics_on_the_tuned_encoder(shipped: Classifier) -> None:
    texts = {
        "delivery": "My parcel still has not arrived, the courier says it was delivered but nothing came",
        "billing": "I was charged twice for the same order and want my money back",
        "account_access": "I cannot log in, the password reset code never arrives",
        "praise": "Absolutely love it, thank you so much, highly recommended!",
    }
    predicted = [p["topic"].label for p in shipped.predict(list(texts.values()))]
    assert sum(p == topic for p, topic in zip(predicted, texts, strict=True)) >= 3


def test_samples_end_to_end_with_the_shipped_model(shipped: Classifier, shared_data: Path, tmp_path: Path) -> None:
    manifest = run_pipeline(PipelineConfig(inputs=(str(SAMPLES),), output=str(tmp_path), logical_date="2026-11-20"))
    assert manifest["reconciled"] is True and manifest["model_version"] == shipped.model_version
    frame = pd.read_parquet(tmp_path / "labeled")
    emails = frame[frame["source"] == "email"]
    spam_files = emails["input_ref"].str.contains("/spam-")
    assert (emails.loc[spam_files, "spam"] == "spam").mean() >= 2 / 3
    assert (emails.loc[~spam_files, "spam"] == "ham").mean() >= 0.8
    assert frame.loc[frame["source"] != "email", "spam"].isna().all()
    reviews = frame[frame["source"] == "review"].set_index("source_id")
    with (shared_data / "sentiment" / "sst2" / "dev.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[: len(reviews)]
    gold = {f"sst2-dev-{i:04d}": ("positive" if row["label"] == "1" else "negative") for i, row in enumerate(rows)}
    polar = reviews["sentiment"] != "neutral"
    agree = (reviews.loc[polar, "sentiment"] == pd.Series(gold)[reviews.index[polar]]).mean()
    assert agree >= 0.8
    assert set(frame["topic"].dropna()) <= {"delivery", "billing", "product_quality", "customer_service",
                                            "account_access", "pricing", "praise", "other"}
