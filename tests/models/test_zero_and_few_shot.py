"""Zero-shot topics and few-shot heads on the real bundled encoder (no adapter), on real data."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from models.bundle import BaseModelRef, BundleSpec, with_zero_shot
from models.classifier import Classifier, MultiTaskModel, load_encoder, save_bundle
from models.datasets import Example
from models.fewshot import add_fewshot_task
from models.topics import DEFAULT_TOPICS


@pytest.fixture(scope="module")
def encoder_only_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real all-MiniLM-L6-v2 with no trained head: only zero-shot and few-shot tasks can use it."""
    spec = with_zero_shot(BundleSpec(name="encoder-only", version="0", tasks={}, base=BaseModelRef()),
                          {"topic": DEFAULT_TOPICS})
    folder = tmp_path_factory.mktemp("encoder-only") / "bundle"
    return save_bundle(folder, spec, MultiTaskModel(load_encoder(spec), spec.tasks))


def test_zero_shot_topics_need_no_training(encoder_only_bundle: Path) -> None:
    classifier = Classifier.load(encoder_only_bundle)
    texts = {
        "delivery": "My parcel still has not arrived, the courier says it was delivered but nothing came",
        "billing": "I was charged twice for the same order and want my money back",
        "account_access": "I cannot log in, the password reset code never arrives",
        "praise": "Absolutely love it, thank you so much, highly recommended!",
    }
    predicted = {topic: p["topic"].label for topic, p in zip(texts, classifier.predict(list(texts.values())),
                                                             strict=True)}
    assert predicted == {topic: topic for topic in texts}


def test_topics_from_config_replace_the_default(encoder_only_bundle: Path) -> None:
    classifier = Classifier.load(encoder_only_bundle, zero_shot={"topic": {
        "battery": "battery life, charging, the battery drains", "screen": "display, screen cracked, brightness"}})
    assert classifier.spec.tasks["topic"].labels == ("battery", "screen")
    assert classifier.predict("the battery is dead after two hours")["topic"].label == "battery"


def test_few_shot_head_from_eight_clinc_examples_per_intent(encoder_only_bundle: Path, shared_data: Path,
                                                            tmp_path: Path) -> None:
    data = json.loads((shared_data / "intent" / "clinc150" / "data_train_val.json").read_text())
    chosen = ("book_flight", "weather", "transfer", "recipe", "alarm")
    rng = random.Random(13)
    train = [Example(text, intent) for text, intent in data["train"] if intent in chosen]
    rng.shuffle(train)
    examples = [e for intent in chosen for e in [x for x in train if x.label == intent][:8]]
    bundle = add_fewshot_task(encoder_only_bundle, "assistant_intent", examples, tmp_path / "with-intent")
    classifier = Classifier.load(bundle)
    assert classifier.spec.tasks["assistant_intent"].labels == tuple(sorted(chosen))
    val = [(text, intent) for text, intent in data["val"] if intent in chosen]
    predictions = classifier.predict([text for text, _ in val])
    accuracy = sum(p["assistant_intent"].label == intent for p, (_, intent) in zip(predictions, val, strict=True))
    assert accuracy / len(val) >= 0.9
    with pytest.raises(FileExistsError):
        add_fewshot_task(encoder_only_bundle, "again", examples, tmp_path / "with-intent")
