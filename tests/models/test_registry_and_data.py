"""The registry, labeled-data readers on the real files, and the evaluate flow on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from flows.evaluate import evaluate_flow
from models.classifier import Classifier
from models.datasets import read_labeled
from models.recipes import SST2_CANDIDATES, sentiment_data
from models.registry import default_model_dir, load_registry, register


def test_register_and_promote(tiny_bundle: Path, tmp_path: Path) -> None:
    registry = tmp_path / "registry.json"
    entry = register(tiny_bundle, path=registry)
    assert entry["default"] == "tiny-test@0.0.1"
    assert default_model_dir(registry) == tiny_bundle
    other = tmp_path / "other"
    other.mkdir()
    for name in ("bundle.json", "heads.safetensors"):
        (other / name).write_bytes((tiny_bundle / name).read_bytes())
    spec = json.loads((other / "bundle.json").read_text())
    spec["version"] = "0.0.2"
    (other / "bundle.json").write_text(json.dumps(spec))
    register(other, path=registry)
    assert load_registry(registry)["default"] == "tiny-test@0.0.1"
    register(other, promote=True, path=registry)
    assert default_model_dir(registry) == other
    assert set(load_registry(registry)["models"]) == {"tiny-test@0.0.1", "tiny-test@0.0.2"}


def test_a_new_version_written_over_a_folder_replaces_its_old_entry(tiny_bundle: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    folder.mkdir()
    for name in ("bundle.json", "heads.safetensors"):
        (folder / name).write_bytes((tiny_bundle / name).read_bytes())
    registry = tmp_path / "registry.json"
    register(folder, path=registry)
    spec = json.loads((folder / "bundle.json").read_text())
    spec["version"] = "0.0.2"
    (folder / "bundle.json").write_text(json.dumps(spec))
    entry = register(folder, path=registry)
    assert set(load_registry(registry)["models"]) == {"tiny-test@0.0.2"}
    assert entry["default"] == "tiny-test@0.0.2"


def test_read_labeled_understands_the_shared_formats(shared_data: Path) -> None:
    sst2 = read_labeled(shared_data / "sentiment" / "sst2" / "dev.tsv")
    assert len(sst2) == 872 and {e.label for e in sst2} == {"negative", "positive"}
    semeval = read_labeled(shared_data / "sentiment" / "semeval2017" / "twitter-2016test-A.tsv")
    assert len(semeval) > 20000 and {e.label for e in semeval} == {"negative", "neutral", "positive"}
    banking = read_labeled(shared_data / "intent" / "banking77" / "train.csv")
    assert len(banking) == 10003 and len({e.label for e in banking}) == 77


def test_sentiment_recipe_can_use_sst2_only_as_negative_versus_positive_evidence(shared_data: Path) -> None:
    shipped_recipe = sentiment_data(shared_data, seed=13, sst2_phrases=2000)
    assert all(e.candidates is None for e in shipped_recipe.train + shipped_recipe.dev)
    data = sentiment_data(shared_data, seed=13, sst2_phrases=2000, sst2_binary=True)
    examples = data.train + data.dev
    phrases = [e for e in examples if e.candidates is not None]
    tweets = [e for e in examples if e.candidates is None]
    assert len(phrases) == 2000 and {e.candidates for e in phrases} == {SST2_CANDIDATES}
    assert {e.label for e in phrases} == set(SST2_CANDIDATES)
    assert {e.label for e in tweets} == {"negative", "neutral", "positive"} and len(tweets) > 20000


def test_evaluate_flow_reports_what_the_model_predicts(prefect_harness, tiny_bundle: Path, tmp_path: Path) -> None:
    data = tmp_path / "eval.csv"
    rows = [("I love it", "positive"), ("awful", "negative"), ("it is Tuesday", "neutral"), ("great!", "positive")]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(data, index=False)
    report = evaluate_flow("sentiment", str(data), model_dir=str(tiny_bundle), output=str(tmp_path / "r.json"))
    predicted = [p["sentiment"].label for p in Classifier.load(tiny_bundle).predict([t for t, _ in rows])]
    expected_accuracy = sum(p == gold for p, (_, gold) in zip(predicted, rows, strict=True)) / len(rows)
    assert report["n"] == 4 and report["accuracy"] == expected_accuracy
    assert sum(map(sum, report["confusion_matrix"])) == 4
    assert json.loads((tmp_path / "r.json").read_text())["accuracy"] == expected_accuracy
