"""Recipes: which public data trains and evaluates each shipped task.

Each recipe turns ``../shared/data`` into seeded train/dev splits and measures a trained
classifier on data it never saw. ``python -m models.recipes`` runs one recipe end to end.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from models.bundle import BaseModelRef, BundleSpec, TaskSpec, resolve_base_path, sha256_file
from models.classifier import Classifier, save_bundle
from models.datasets import SENTIMENT_LABELS, Example, default_data_dir, read_sst2, semeval_examples, semeval_test
from models.metrics import classification_report
from models.training import TaskData, TrainingArguments, batched_logits, train_bundle

log = logging.getLogger(__name__)


def split_dev(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Seeded split into (train, dev)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    cut = int(len(order) * fraction)
    return [examples[i] for i in order[cut:]], [examples[i] for i in order[:cut]]


def sentiment_data(data_dir: Path, seed: int, sst2_phrases: int = 10000, dev_fraction: float = 0.05) -> TaskData:
    """SemEval tweets (2016 test held out) plus a seeded sample of SST-2 phrases of 4+ words.

    SST-2 brings review-style language so the model is not a tweet-only model; its phrases
    are binary, so they only teach negative and positive.
    """
    tweets = semeval_examples(data_dir)
    phrases = read_sst2(data_dir / "sentiment" / "sst2" / "train.tsv", min_words=4)
    random.Random(seed).shuffle(phrases)
    train, dev = split_dev(tweets + phrases[:sst2_phrases], dev_fraction, seed)
    return TaskData(labels=SENTIMENT_LABELS, train=train, dev=dev)


def predict_task(classifier: Classifier, task: str, texts: list[str], allowed: tuple[str, ...] | None = None
                 ) -> tuple[list[str], list[float]]:
    """Labels and calibrated scores; ``allowed`` restricts the argmax (binary SST-2 on a 3-class head)."""
    import torch

    labels = classifier.spec.tasks[task].labels
    probs = torch.softmax(batched_logits(classifier, task, texts), dim=-1)
    if allowed:
        keep = torch.tensor([label in allowed for label in labels])
        probs = probs * keep
        probs = probs / probs.sum(dim=-1, keepdim=True)
    scores, index = probs.max(dim=-1)
    return [labels[int(i)] for i in index], scores.tolist()


def evaluate_sentiment(classifier: Classifier, data_dir: Path) -> dict:
    """SemEval-2016 test (3-class, macro-recall is the task's official figure) and SST-2 dev (binary)."""
    results = {}
    test = semeval_test(data_dir)
    predicted, scores = predict_task(classifier, "sentiment", [e.text for e in test])
    results["semeval2016_test"] = classification_report([e.label for e in test], predicted, SENTIMENT_LABELS, scores)
    dev = read_sst2(data_dir / "sentiment" / "sst2" / "dev.tsv")
    predicted, scores = predict_task(classifier, "sentiment", [e.text for e in dev], ("negative", "positive"))
    results["sst2_dev"] = classification_report([e.label for e in dev], predicted, SENTIMENT_LABELS, scores)
    return results


def train_sentiment(output: Path, data_dir: Path, args: TrainingArguments, version: str) -> dict:
    """Train, calibrate, evaluate and save the sentiment bundle; returns its metrics."""
    base = BaseModelRef()
    base = replace(base, sha256=sha256_file(resolve_base_path(base) / "model.safetensors"))
    spec = BundleSpec(name="undertone-sentiment", version=version,
                      tasks={"sentiment": TaskSpec(SENTIMENT_LABELS)}, base=base)
    data = sentiment_data(data_dir, args.seed)
    log.info("sentiment: %d train, %d dev examples", len(data.train), len(data.dev))
    spec, model, stats = train_bundle(spec, {"sentiment": data}, args)
    save_bundle(output, spec, model)
    classifier = Classifier.load(output)
    metrics = {
        "training": {**stats, "args": asdict(args), "train_examples": len(data.train), "dev_examples": len(data.dev)},
        "evaluation": evaluate_sentiment(classifier, data_dir),
    }
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("task", choices=["sentiment"])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--epochs", type=float, default=1.0)
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = TrainingArguments(seed=options.seed, epochs=options.epochs)
    metrics = train_sentiment(options.output, options.data_dir, args, options.version)
    summary = {name: {k: round(v, 4) for k, v in report.items() if isinstance(v, float)}
               for name, report in metrics["evaluation"].items()}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
