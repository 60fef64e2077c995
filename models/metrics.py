"""Classification metrics that model cards and the evaluate flow report."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 15) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins."""
    conf = np.asarray(confidences, dtype=float)
    hits = np.asarray(correct, dtype=float)
    if conf.size == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(conf[members].mean() - hits[members].mean())
    return float(total)


def classification_report(
    gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str], confidences: Sequence[float] | None = None
) -> dict:
    """Accuracy, macro-F1, macro-recall, per-class precision/recall/F1/support, confusion matrix, ECE.

    Macro averages run over the classes present in ``gold`` (a class nobody asked about
    cannot be recalled); the confusion matrix is ``matrix[gold][predicted]`` over ``labels``.
    """
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted differ in length")
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for g, p in zip(gold, predicted, strict=True):
        matrix[index[g], index[p]] += 1
    per_class = {}
    for label, i in index.items():
        support = int(matrix[i].sum())
        predicted_count = int(matrix[:, i].sum())
        tp = int(matrix[i, i])
        precision = tp / predicted_count if predicted_count else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    present = [label for label in labels if per_class[label]["support"] > 0]
    report = {
        "n": len(gold),
        "accuracy": float(np.trace(matrix) / max(len(gold), 1)),
        "macro_f1": float(np.mean([per_class[label]["f1"] for label in present])) if present else 0.0,
        "macro_recall": float(np.mean([per_class[label]["recall"] for label in present])) if present else 0.0,
        "per_class": per_class,
        "labels": list(labels),
        "confusion_matrix": matrix.tolist(),
    }
    if confidences is not None:
        correct = [g == p for g, p in zip(gold, predicted, strict=True)]
        report["ece"] = expected_calibration_error(confidences, correct)
    return report
