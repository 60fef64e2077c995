"""The evaluate flow: measure one task of a bundle on a labeled file, as JSON and a Prefect artifact."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.artifacts import artifact_key
from models.bundle import read_bundle_spec
from models.classifier import Classifier
from models.datasets import Example, read_labeled
from models.metrics import classification_report
from models.recipes import predict_task
from models.registry import default_model_dir


def evaluation_examples(model_dir: str, task_name: str, data: str, text_column: str | None = None,
                        label_column: str | None = None, label_map: dict[str, str] | None = None,
                        notes: list[str] | None = None) -> list[Example]:
    """The labeled examples, checked against the bundle's task from its metadata alone: a bad task, file, column or
    label raises ``ValueError`` (``OSError`` for an unreadable file) before a model is loaded, and the CLI calls it
    before the flow starts to make these usage errors."""
    spec = read_bundle_spec(Path(model_dir))
    if task_name not in spec.tasks:
        raise ValueError(f"--task: {spec.model_version} has no task {task_name!r}; it has {', '.join(spec.tasks)}")
    labels = spec.tasks[task_name].labels
    renames = casefolded_label_map(label_map or {})
    examples = [replace(e, label=renames.get(e.label.casefold(), e.label))
                for e in read_labeled(Path(data), text_column, label_column, notes)]
    if not examples:
        raise ValueError(f"{data}: no row with both a text and a label")
    examples = task_cased_labels(examples, labels, data, notes)
    unknown = sorted({e.label for e in examples} - set(labels))
    if unknown:
        raise ValueError(f"{data}: labels {unknown[:5]} are not labels of task {task_name!r} {list(labels)[:8]}; "
                         f"map them with --label-map, e.g. {unknown[0]}={labels[0]}")
    return examples


def casefolded_label_map(label_map: dict[str, str]) -> dict[str, str]:
    """``label_map`` keyed by its keys' casefold: labels are matched in any case (:func:`task_cased_labels`), so
    ``pos=positive`` renames ``POS`` too; two keys that differ only in case are refused, as neither could win."""
    renames: dict[str, str] = {}
    written: dict[str, str] = {}
    for key, label in sorted(label_map.items()):
        other = written.setdefault(key.casefold(), key)
        if other != key:
            raise ValueError(f"--label-map: keys {other!r} and {key!r} differ only in case; give each label once")
        renames[key.casefold()] = label
    return renames


def task_cased_labels(examples: list[Example], labels: tuple[str, ...], data: str,
                      notes: list[str] | None = None) -> list[Example]:
    """The examples with a label the task has in another case (``Positive``, ``NEGATIVE``) renamed to the task's
    spelling, as a spreadsheet writes them, instead of refusing them as unknown; ``notes`` names the renaming."""
    by_case = {label.casefold(): label for label in labels}
    renamed = {e.label: by_case[e.label.casefold()] for e in examples
               if e.label not in labels and e.label.casefold() in by_case}
    if renamed and notes is not None:
        written = sorted(renamed)
        notes.append(f"{data}: took labels {', '.join(map(repr, written))} as the task's "
                     f"{', '.join(repr(renamed[label]) for label in written)}")
    return [replace(e, label=renamed.get(e.label, e.label)) for e in examples]


@task(name="evaluate-task", cache_policy=NO_CACHE)
def evaluate_task(model_dir: str, task_name: str, data: str, only_gold_labels: bool = False,
                  text_column: str | None = None, label_column: str | None = None,
                  precision: str = "auto", label_map: dict[str, str] | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, macro-recall, per-class report, confusion matrix and ECE, in the precision runs on
    this machine use (``precision`` auto) or the one asked for (the accuracy delta of bf16 or int8 against fp32
    decides whether it may be a run's default); ``label_map`` renames the data's labels to the task's
    (``{"0": "negative", "1": "positive"}``). ``notes`` says which column was taken as the labels when several
    could be."""
    notes: list[str] = []
    examples = evaluation_examples(model_dir, task_name, data, text_column, label_column, label_map, notes)
    for note in notes:
        get_run_logger().warning(note)
    classifier = Classifier.load(model_dir, tasks=[task_name], precision=precision)
    labels = classifier.spec.tasks[task_name].labels
    allowed = tuple(sorted({e.label for e in examples})) if only_gold_labels else None
    predicted, scores = predict_task(classifier, task_name, [e.text for e in examples], allowed)
    report = classification_report([e.label for e in examples], predicted, labels, scores)
    return {"model_version": classifier.model_version, "task": task_name, "data": data,
            "only_gold_labels": only_gold_labels, "precision": classifier.precision, **report,
            **({"notes": notes} if notes else {})}


@flow(name="undertone-evaluate")
def evaluate_flow(task_name: str, data: str, model_dir: str | None = None, output: str | None = None,
                  only_gold_labels: bool = False, text_column: str | None = None,
                  label_column: str | None = None, precision: str = "auto",
                  label_map: dict[str, str] | None = None) -> dict[str, Any]:
    """Evaluate ``task_name`` of a model bundle on a labeled file or email folder.

    ``only_gold_labels`` restricts predictions to the labels present in the data (binary
    SST-2 scored on the 3-class sentiment head); ``label_map`` renames the data's labels to the task's.

    Example:
        undertone evaluate --task sentiment --data ../shared/data/sentiment/sst2/dev.tsv --only-gold-labels
    """
    report = evaluate_task(str(model_dir or default_model_dir()), task_name, data, only_gold_labels,
                           text_column, label_column, precision, label_map)
    if output:
        Path(output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    per_class = "\n".join(f"| {label} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | "
                          f"{row['support']} |" for label, row in report["per_class"].items() if row["support"])
    create_markdown_artifact(
        key=artifact_key("undertone-evaluate", task_name),
        markdown=(f"## {report['model_version']} · {task_name} on `{data}`\n\n"
                  f"n={report['n']} · {report['precision']} · accuracy {report['accuracy']:.3f} · "
                  f"macro-F1 {report['macro_f1']:.3f} · "
                  f"macro-recall {report['macro_recall']:.3f} · ECE {report['ece']:.3f}\n\n"
                  f"| label | precision | recall | F1 | support |\n|---|---|---|---|---|\n{per_class}\n"
                  + "".join(f"\n> {note}\n" for note in report.get("notes", ()))),
        description=f"Evaluation of {task_name}",
    )
    return report
