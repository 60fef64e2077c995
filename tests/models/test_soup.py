"""Model soups: the averaged bundle must compute exactly what averaging the ingredients' weights gives."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from models.bundle import read_bundle_spec
from models.classifier import Classifier, save_bundle
from models.datasets import Example
from models.soup import average_bundles
from models.training import TaskData, TrainingArguments, train_bundle
from tests.conftest import SENTIMENT

TEXTS = ["I love this phone", "worst delivery ever", "the parcel came on Monday", "meh, it is fine"]


def trained(tiny_bundle: Path, folder: Path, rank: int, seed: int, labels: tuple[str, ...] = SENTIMENT,
            max_length: int = 64) -> Path:
    """A tiny bundle with a LoRA adapter of ``rank`` (so its own scaling, alpha / rank) after a few steps
    on ``max_length``-token texts."""
    spec = read_bundle_spec(tiny_bundle)
    spec = replace(spec, tasks={"sentiment": replace(spec.tasks["sentiment"], labels=labels)})
    examples = [Example(text, label) for text, label in zip(TEXTS * 6, labels * 8, strict=False)]
    args = TrainingArguments(epochs=1, batch_size=4, lora_rank=rank, learning_rate=0.05, seed=seed, log_every=1000,
                             max_length=max_length)
    return save_bundle(folder, *train_bundle(spec, {"sentiment": TaskData(labels, examples)}, args)[:2])


def test_the_soup_is_the_average_of_its_ingredients_weights(tiny_bundle: Path, tmp_path: Path) -> None:
    ingredients = [trained(tiny_bundle, tmp_path / "a", rank=4, seed=1),
                   trained(tiny_bundle, tmp_path / "b", rank=2, seed=2)]
    spec = average_bundles(ingredients, tmp_path / "soup", version="9.9.9")
    assert spec.model_version == "tiny-test@9.9.9" and spec.tasks["sentiment"].temperature == 1.0

    # Stock linear layers: packed ones keep their weights in oneDNN's layout, outside the state dict.
    loaded = [Classifier.load(folder, pack_linear=False).model.state_dict() for folder in ingredients]
    soup = Classifier.load(tmp_path / "soup", pack_linear=False)
    assert soup.model_version == "tiny-test@9.9.9"
    for name, weight in soup.model.state_dict().items():  # merged encoder and heads alike
        torch.testing.assert_close(weight, (loaded[0][name] + loaded[1][name]) / 2, rtol=1e-5, atol=1e-6)
    moved = loaded[0]["encoder.encoder.layer.0.attention.self.query.weight"]
    assert not torch.allclose(moved, loaded[1]["encoder.encoder.layer.0.attention.self.query.weight"])
    logits = [Classifier.load(folder).logits(TEXTS)["sentiment"] for folder in [*ingredients, tmp_path / "soup"]]
    assert not torch.allclose(logits[2], logits[0]) and not torch.allclose(logits[2], logits[1])


def test_bundles_that_do_not_mean_the_same_are_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    first = trained(tiny_bundle, tmp_path / "a", rank=2, seed=1)
    other_labels = trained(tiny_bundle, tmp_path / "b", rank=2, seed=1, labels=("bad", "good"))
    with pytest.raises(ValueError, match="other tasks or labels"):
        average_bundles([first, other_labels], tmp_path / "soup", "1")
    other_window = trained(tiny_bundle, tmp_path / "c", rank=2, seed=1, max_length=32)
    with pytest.raises(ValueError, match="reads 32 tokens per text"):
        average_bundles([first, other_window], tmp_path / "soup", "1")
    with pytest.raises(ValueError, match="no LoRA adapter"):
        average_bundles([first, tiny_bundle], tmp_path / "soup", "1")  # heads only
    with pytest.raises(ValueError, match="at least two"):
        average_bundles([first], tmp_path / "soup", "1")
    assert not (tmp_path / "soup").exists()


def test_a_soup_is_calibrated_evaluated_and_carded_with_its_ingredients(tiny_bundle: Path, tmp_path: Path,
                                                                      shared_data: Path) -> None:
    from dataclasses import asdict

    from models.card import write_card
    from models.recipes import soup_base

    ingredients = []
    for name, rank, binary in (("a", 4, False), ("b", 2, True)):
        folder = trained(tiny_bundle, tmp_path / name, rank=rank, seed=1)
        args = TrainingArguments(lora_rank=rank, seed=1)
        record = {"training": {"args": asdict(args), "steps": 6, "train_seconds": 1.0,
                               "recipe": {"sst2_binary": binary}, "examples": {},
                               "command": f"undertone finetune --output {name}"},
                  "evaluation": {"sst2_dev": {"accuracy": 0.5, "per_class": {}}}}
        (folder / "metrics.json").write_text(json.dumps(record), encoding="utf-8")
        ingredients.append(folder)
    metrics = soup_base(tmp_path / "soup", shared_data, ingredients, version="0.2.0", seed=13)

    assert [r["model_version"] for r in metrics["training"]["soup"]] == ["tiny-test@0.0.1"] * 2
    assert metrics["training"]["soup"][1]["training"]["recipe"] == {"sst2_binary": True}
    assert metrics["training"]["examples"]["sentiment"]["dev"] > 3000  # the recipe's real dev split
    temperature = read_bundle_spec(tmp_path / "soup").tasks["sentiment"].temperature
    assert temperature == metrics["training"]["temperatures"]["sentiment"] != 1.0
    assert set(metrics["evaluation"]) == {"semeval2016_test", "sst2_dev"}
    assert metrics["evaluation"]["semeval2016_test"]["n"] == 20632
    card = write_card(tmp_path / "soup", command="undertone finetune --soup-of a,b").read_text(encoding="utf-8")
    reproduce = card[card.index("Reproduce"):card.index("## Limits")]
    assert reproduce.index("--output a\n") < reproduce.index("--output b\n") < reproduce.index("--soup-of a,b\n")
    saved = json.loads((tmp_path / "soup" / "metrics.json").read_text(encoding="utf-8"))
    assert saved["training"]["command"] == "undertone finetune --soup-of a,b"  # where a soup of this soup finds it
    assert "model soup" in card and "negative-or-positive evidence (`--sst2-binary`)" in card
    assert "rank 6 " in card  # 4 + 2: the ranks add up
