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
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from models.bundle import (
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    BaseModelRef,
    BundleSpec,
    TaskSpec,
    read_bundle_spec,
    read_metrics,
    resolve_base_path,
    sha256_file,
    with_zero_shot,
    write_bundle_spec,
    write_metrics,
)
from models.classifier import Classifier, save_bundle
from models.datasets import (
    SENTIMENT_LABELS,
    Example,
    default_data_dir,
    read_banking77,
    read_spamassassin,
    read_sst2,
    semeval_examples,
    semeval_test,
)
from models.machine import available_cores, cpu_model
from models.metrics import classification_report
from models.soup import average_bundles
from models.topics import DEFAULT_TOPICS
from models.training import TaskData, TrainingArguments, batched_logits, calibrate, restrict, train_bundle

log = logging.getLogger(__name__)

SPAM_LABELS = ("ham", "spam")
TASKS = ("sentiment", "intent", "spam")
OPT_IN_TASKS = ("intent",)
"""Labeled only when a run asks for them: banking intents fit a bank's support inbox, not every source."""
SST2_PHRASES: int | None = None
"""SST-2 train phrases mixed into sentiment training (seeded sample); None: every phrase long enough (36,750)."""
SST2_CANDIDATES = ("negative", "positive")
"""What an SST-2 label decides between: its neutral phrases were removed, so it is silent on neutral."""
SST2_MIN_WORDS = 6
"""Shortest SST-2 phrase used: 1-5 word fragments teach little about whole review sentences."""
SOUP_RECIPES = {"sst2-3class": False, "sst2-binary": True}
"""The runs a ``--soup`` averages, by name: the same training with SST-2 phrases as 3-class targets and as
negative-or-positive evidence (``sst2_binary``); why in :func:`sentiment_data` and the README."""


def split_dev(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Seeded split into (train, dev)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    cut = int(len(order) * fraction)
    return [examples[i] for i in order[cut:]], [examples[i] for i in order[:cut]]


def stratified_split(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Seeded split keeping each label's share: (rest, held out)."""
    by_label: dict[str, list[Example]] = {}
    for example in examples:
        by_label.setdefault(example.label, []).append(example)
    rest, held = [], []
    for label in sorted(by_label):
        part_rest, part_held = split_dev(by_label[label], fraction, seed)
        rest.extend(part_rest)
        held.extend(part_held)
    return rest, held


def intent_data(data_dir: Path, seed: int) -> tuple[TaskData, list[Example]]:
    """BANKING77: a stratified 20% test split held out, then 5% of the rest as dev."""
    rest, test = stratified_split(read_banking77(data_dir), 0.2, seed)
    train, dev = stratified_split(rest, 0.05, seed)
    return TaskData(labels=tuple(sorted({e.label for e in rest})), train=train, dev=dev, repeat=3.0), test


def spam_data(data_dir: Path, seed: int) -> tuple[TaskData, list[Example]]:
    """SpamAssassin: a stratified 20% test split held out, then 10% of the rest as dev."""
    rest, test = stratified_split([example for _, example in read_spamassassin(data_dir)], 0.2, seed)
    train, dev = stratified_split(rest, 0.1, seed)
    return TaskData(labels=SPAM_LABELS, train=train, dev=dev, repeat=2.0), test


def sentiment_data(data_dir: Path, seed: int, sst2_phrases: int | None = SST2_PHRASES,
                   sst2_min_words: int = SST2_MIN_WORDS, dev_fraction: float = 0.05,
                   sst2_binary: bool = False) -> TaskData:
    """SemEval tweets (2016 test held out) plus a seeded sample of ``sst2_phrases`` (None: all) SST-2 phrases of
    at least ``sst2_min_words`` words.

    SST-2 brings review-style language so the model is not a tweet-only model; its phrases are
    negative or positive. Longer phrases are closer to the whole sentences of reviews (and of
    SST-2 dev) than 1-3 word fragments are. ``sst2_binary`` makes them binary evidence (their
    loss only over negative and positive, ``candidates``): SST dropped its neutral phrases, and as
    3-class targets they teach that review-style sentences are never neutral. Alone (1.3.0) it
    labeled twice as many BANKING77 queries neutral but lost SST-2 dev and spam accuracy; the shipped
    bundle is the soup of a run with each setting (README, Models).
    """
    tweets = semeval_examples(data_dir)
    phrases = read_sst2(data_dir / "sentiment" / "sst2" / "train.tsv", min_words=sst2_min_words)
    if sst2_binary:
        phrases = [replace(e, candidates=SST2_CANDIDATES) for e in phrases]
    random.Random(seed).shuffle(phrases)
    train, dev = split_dev(tweets + phrases[:sst2_phrases], dev_fraction, seed)
    return TaskData(labels=SENTIMENT_LABELS, train=train, dev=dev)


def predict_task(classifier: Classifier, task: str, texts: list[str], allowed: tuple[str, ...] | None = None
                 ) -> tuple[list[str], list[float]]:
    """Labels and calibrated scores; ``allowed`` restricts the argmax (binary SST-2 on a 3-class head)."""
    labels = classifier.spec.tasks[task].labels
    keep = torch.tensor([label in allowed for label in labels]) if allowed else None
    scores, index = torch.softmax(restrict(batched_logits(classifier, task, texts), keep), dim=-1).max(dim=-1)
    return [labels[int(i)] for i in index], scores.tolist()


def evaluate_sentiment(classifier: Classifier, data_dir: Path) -> dict:
    """SemEval-2016 test (3-class, macro-recall is the task's official figure) and SST-2 dev (binary)."""
    results = {}
    test = semeval_test(data_dir)
    predicted, scores = predict_task(classifier, "sentiment", [e.text for e in test])
    results["semeval2016_test"] = classification_report([e.label for e in test], predicted, SENTIMENT_LABELS, scores)
    dev = read_sst2(data_dir / "sentiment" / "sst2" / "dev.tsv")
    predicted, scores = predict_task(classifier, "sentiment", [e.text for e in dev], SST2_CANDIDATES)
    results["sst2_dev"] = classification_report([e.label for e in dev], predicted, SENTIMENT_LABELS, scores)
    return results


def evaluate_heldout(classifier: Classifier, task: str, test: list[Example]) -> dict:
    predicted, scores = predict_task(classifier, task, [e.text for e in test])
    return classification_report([e.label for e in test], predicted, classifier.spec.tasks[task].labels, scores)


def heldout_tests(tasks: Sequence[str], data_dir: Path, seed: int) -> dict[str, list[Example]]:
    """The seeded held-out split of each task among ``tasks`` that has one (intent, spam)."""
    return {
        **({"intent": intent_data(data_dir, seed)[1]} if "intent" in tasks else {}),
        **({"spam": spam_data(data_dir, seed)[1]} if "spam" in tasks else {}),
    }


def evaluate_bundle(classifier: Classifier, data_dir: Path, seed: int,
                    tests: dict[str, list[Example]] | None = None) -> dict:
    """Every held-out figure of the card: sentiment sets, then each task's seeded held-out split
    (``tests`` when the caller already has them)."""
    tests = tests if tests is not None else heldout_tests(classifier.tasks, data_dir, seed)
    evaluation = evaluate_sentiment(classifier, data_dir) if "sentiment" in classifier.tasks else {}
    for task, test in tests.items():
        evaluation[f"{task}_heldout"] = evaluate_heldout(classifier, task, test)
    return evaluation


REDUCED_PRECISIONS = ("bf16", "int8")
"""The precisions the card measures against fp32 (see :data:`models.bundle.PRECISIONS`)."""
MAX_LOSS_POINTS = 1.0
"""bf16 or int8 may be a run's default only if no held-out figure drops by more than this many points..."""
MIN_LABEL_AGREEMENT = 0.99
"""...and every task, zero-shot ones included, keeps the fp32 label on this share of the held-out texts: a task
without labeled data cannot lose more than a point of accuracy where 99 % of its labels stay the same."""
CHECKED_FIGURES = ("accuracy", "macro_f1", "macro_recall")


def task_labels(classifier: Classifier, texts: Sequence[str], batch_size: int = 128) -> dict[str, list[str]]:
    """The top label of every task of the bundle for each text, from one encoder pass per batch."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    labels: dict[str, list[str]] = {task: [""] * len(texts) for task in classifier.tasks}
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        for task, logits in classifier.logits([texts[i] for i in rows]).items():
            names = classifier.spec.tasks[task].labels
            for row, index in zip(rows, logits.argmax(dim=-1).tolist(), strict=True):
                labels[task][row] = names[index]
    return labels


def heldout_texts(tasks: Sequence[str], data_dir: Path, tests: dict[str, list[Example]]) -> list[str]:
    """Every held-out text of the card: the tasks' splits, then the sentiment sets."""
    texts = [e.text for test in tests.values() for e in test]
    if "sentiment" in tasks:
        texts += [e.text for e in semeval_test(data_dir)]
        texts += [e.text for e in read_sst2(data_dir / "sentiment" / "sst2" / "dev.tsv")]
    return texts


def precision_check(output: Path, data_dir: Path, seed: int, fp32: dict, precision: str,
                    tests: dict[str, list[Example]] | None = None,
                    reference: dict[str, list[str]] | None = None) -> dict:
    """The card's held-out evaluation again with the encoder in ``precision`` (bf16 or int8): the points each
    figure moves against ``fp32`` (the card's figures), and per task the share of the held-out texts whose top
    label stays the fp32 one (``reference``, the fp32 labels of :func:`heldout_texts`, when the caller has
    them). Kernels differ between CPUs (int8 above all), so the machine is recorded."""
    reduced = Classifier.load(output, precision=precision)
    tests = tests if tests is not None else heldout_tests(reduced.tasks, data_dir, seed)
    evaluation = evaluate_bundle(reduced, data_dir, seed, tests)
    deltas = {name: {figure: round(100 * (report[figure] - fp32[name][figure]), 2) for figure in CHECKED_FIGURES}
              for name, report in evaluation.items()}
    worst = min((delta, name, figure) for name, row in deltas.items() for figure, delta in row.items())
    texts = heldout_texts(reduced.tasks, data_dir, tests)
    reference = reference or task_labels(Classifier.load(output, precision="fp32"), texts)
    labels = task_labels(reduced, texts)
    agreement = {task: sum(a == b for a, b in zip(reference[task], labels[task], strict=True)) / len(texts)
                 for task in labels}
    return {
        "precision": reduced.precision,
        "measured_on": f"{cpu_model()}, {available_cores()} cores",
        "figures": {name: {figure: report[figure] for figure in CHECKED_FIGURES}
                    for name, report in evaluation.items()},
        "delta_points": deltas,
        "largest_loss": {"points": worst[0], "set": worst[1], "figure": worst[2]},
        "label_agreement": {"texts": len(texts), **agreement},
        "within_rule": worst[0] >= -MAX_LOSS_POINTS and min(agreement.values()) >= MIN_LABEL_AGREEMENT,
    }


def recipe_data(data_dir: Path, seed: int, tasks: tuple[str, ...], sst2_binary: bool = False
                ) -> tuple[dict[str, TaskData], dict[str, list[Example]]]:
    """Seeded training data of each recipe task among ``tasks``, and the held-out test splits of those that
    have one (sentiment's test sets are fixed files, see :func:`evaluate_sentiment`)."""
    data: dict[str, TaskData] = {}
    tests: dict[str, list[Example]] = {}
    if "sentiment" in tasks:
        data["sentiment"] = sentiment_data(data_dir, seed, sst2_binary=sst2_binary)
    if "intent" in tasks:
        data["intent"], tests["intent"] = intent_data(data_dir, seed)
    if "spam" in tasks:
        data["spam"], tests["spam"] = spam_data(data_dir, seed)
    return data, tests


def train_base(output: Path, data_dir: Path, args: TrainingArguments, version: str,
               tasks: tuple[str, ...] = TASKS, sst2_binary: bool = False) -> dict:
    """Train one adapter and a head per task jointly, calibrate, evaluate on held-out data, save.

    ``sst2_binary``: SST-2 phrases as binary evidence (see :func:`sentiment_data`)."""
    base = BaseModelRef()
    base = replace(base, sha256=sha256_file(resolve_base_path(base) / "model.safetensors"))
    data, tests = recipe_data(data_dir, args.seed, tasks, sst2_binary)
    specs = {task: TaskSpec(d.labels, sources=("email",) if task == "spam" else None) for task, d in data.items()}
    spec = BundleSpec(name="undertone-base", version=version, tasks=specs, base=base,
                      default_tasks=tuple(task for task in specs if task not in OPT_IN_TASKS) or None)
    for task, task_data in data.items():
        log.info("%s: %d train, %d dev, %d test examples", task, len(task_data.train), len(task_data.dev),
                 len(tests.get(task, [])))
    spec, model, stats = train_bundle(spec, data, args)
    spec = with_zero_shot(spec, {"topic": DEFAULT_TOPICS})
    save_bundle(output, spec, model)
    evaluation = evaluate_bundle(Classifier.load(output, precision="fp32"), data_dir, args.seed, tests)
    metrics = {
        "training": {**stats, "args": asdict(args), "recipe": {"sst2_binary": sst2_binary},
                     "examples": {t: {"train": len(d.train), "dev": len(d.dev)} for t, d in data.items()}},
        "evaluation": evaluation,
    }
    write_metrics(output, metrics)
    return metrics


def soup_base(output: Path, data_dir: Path, ingredients: list[Path], version: str, seed: int = 13) -> dict:
    """Average trained bundles into one (:mod:`models.soup`), calibrate its heads on the recipe's dev
    splits, evaluate it on the held-out sets and save its metrics, with each ingredient's record."""
    spec = average_bundles(ingredients, output, version)
    data, tests = recipe_data(data_dir, seed, tuple(spec.tasks), sst2_binary=True)
    uncalibrated = Classifier.load(output, precision="fp32")
    temperatures = calibrate(uncalibrated, data)
    spec = replace(spec, tasks={task: replace(task_spec, temperature=temperatures.get(task, task_spec.temperature))
                                for task, task_spec in spec.tasks.items()})
    write_bundle_spec(output, spec)
    calibrated = Classifier(spec, uncalibrated.model, uncalibrated.tokenizer)  # the same weights, new temperatures
    records = []
    for folder in ingredients:
        ingredient = read_metrics(folder)
        records.append({
            "model_version": read_bundle_spec(Path(folder)).model_version,
            "adapter_sha256": sha256_file(Path(folder) / ADAPTER_DIR / ADAPTER_WEIGHTS),
            "training": ingredient["training"],
            "evaluation": {name: {**{k: v for k, v in report.items() if isinstance(v, float)},
                                  **({"spam_f1": report["per_class"]["spam"]["f1"]}
                                     if "spam" in report.get("per_class", {}) else {})}
                           for name, report in ingredient["evaluation"].items()},
        })
    metrics = {
        "training": {"soup": records, "temperatures": temperatures,
                     "examples": {task: {"dev": len(d.dev)} for task, d in data.items()}},
        "evaluation": evaluate_bundle(calibrated, data_dir, seed, tests),
    }
    write_metrics(output, metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks trained together")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=TrainingArguments.learning_rate,
                        help="peak learning rate")
    parser.add_argument("--init-from", help="bundle folder whose adapter and heads training continues from")
    parser.add_argument("--sst2-binary", action="store_true", help="SST-2 phrases as negative-or-positive evidence")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = TrainingArguments(seed=options.seed, epochs=options.epochs, learning_rate=options.learning_rate,
                             init_from=options.init_from)
    tasks = tuple(t for t in options.tasks.split(",") if t)
    metrics = train_base(options.output, options.data_dir, args, options.version, tasks, options.sst2_binary)
    summary = {name: {k: round(v, 4) for k, v in report.items() if isinstance(v, float)}
               for name, report in metrics["evaluation"].items()}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())


def clinc150_abstention(classifier: Classifier, data_dir: Path, threshold: float = 0.5, seed: int = 13) -> dict:
    """CLINC150 with its out-of-scope class: a head on the bundle's frozen embeddings, trained on
    ``train`` + ``oos_train`` and measured on ``val`` + ``oos_val``. A query is out of scope when the
    head says ``oos`` or its top probability is below ``threshold`` (abstention).
    """
    from models.fewshot import embed_texts, fit_head

    data = json.loads((data_dir / "intent" / "clinc150" / "data_train_val.json").read_text(encoding="utf-8"))
    train = data["train"] + data["oos_train"]
    labels = tuple(sorted({intent for _, intent in train}))
    features = embed_texts(classifier, [text for text, _ in train]).float()
    head = fit_head(features, torch.tensor([labels.index(intent) for _, intent in train]), len(labels), seed=seed)
    val = data["val"] + data["oos_val"]
    with torch.inference_mode():
        probs = torch.softmax(head(embed_texts(classifier, [text for text, _ in val]).float()), dim=-1)
    scores, index = probs.max(dim=-1)
    predicted = ["oos" if float(s) < threshold else labels[int(i)] for s, i in zip(scores, index, strict=True)]
    in_scope = [(p, gold) for p, (_, gold) in zip(predicted, val, strict=True) if gold != "oos"]
    out_scope = [p for p, (_, gold) in zip(predicted, val, strict=True) if gold == "oos"]
    return {
        "n_in_scope": len(in_scope),
        "n_out_of_scope": len(out_scope),
        "threshold": threshold,
        "in_scope_accuracy": sum(p == gold for p, gold in in_scope) / len(in_scope),
        "out_of_scope_recall": sum(p == "oos" for p in out_scope) / len(out_scope),
        "in_scope_abstained": sum(p == "oos" for p, _ in in_scope) / len(in_scope),
    }


def finalize_bundle(output: Path, data_dir: Path, seed: int = 13) -> dict:
    """Add the CLINC150 abstention (intent bundles), few-shot, bf16 and int8 figures to ``metrics.json``;
    returns the metrics."""
    metrics = read_metrics(output)
    classifier = Classifier.load(output, precision="fp32")
    if "intent" in classifier.spec.tasks:
        metrics["clinc150_abstention"] = clinc150_abstention(classifier, data_dir, seed=seed)
    metrics["fewshot_clinc150"] = fewshot_clinc150(classifier, data_dir, seed=seed)
    tests = heldout_tests(classifier.tasks, data_dir, seed)
    reference = task_labels(classifier, heldout_texts(classifier.tasks, data_dir, tests))
    for precision in REDUCED_PRECISIONS:
        metrics[precision] = precision_check(output, data_dir, seed, metrics["evaluation"], precision, tests,
                                             reference)
    write_metrics(output, metrics)
    return metrics


def fewshot_clinc150(classifier: Classifier, data_dir: Path, intents: int = 10, shots: int = 8, seed: int = 13
                     ) -> dict:
    """A few-shot head from ``shots`` CLINC150 train examples for each of ``intents`` seeded intents,
    scored on all their val rows: what a new task built from a small file can expect."""
    from models.fewshot import embed_texts, fit_head

    data = json.loads((data_dir / "intent" / "clinc150" / "data_train_val.json").read_text(encoding="utf-8"))
    rng = random.Random(seed)
    chosen = sorted(rng.sample(sorted({intent for _, intent in data["train"]}), intents))
    pool = [(text, intent) for text, intent in data["train"] if intent in chosen]
    rng.shuffle(pool)
    examples = [row for intent in chosen for row in [r for r in pool if r[1] == intent][:shots]]
    head = fit_head(embed_texts(classifier, [t for t, _ in examples]).float(),
                    torch.tensor([chosen.index(i) for _, i in examples]), len(chosen), seed=seed)
    val = [(text, intent) for text, intent in data["val"] if intent in chosen]
    with torch.inference_mode():
        predicted = head(embed_texts(classifier, [t for t, _ in val]).float()).argmax(dim=-1)
    accuracy = sum(chosen[int(p)] == gold for p, (_, gold) in zip(predicted, val, strict=True)) / len(val)
    return {"intents": chosen, "shots": shots, "n_val": len(val), "accuracy": accuracy}
