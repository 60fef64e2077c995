"""Few-shot tasks: a new head on the shared encoder's embeddings from ~8 examples per label.

The encoder stays frozen, so the new task still rides on the one encoder pass every other
task uses; training is a logistic regression on a few dozen embeddings (seconds on CPU).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.bundle import HEADS_FILE, METRICS_FILE, BundleSpec, TaskSpec, read_bundle_spec, write_bundle_spec
from models.classifier import Classifier
from models.datasets import Example
from schemas import check_task_names


def embed_texts(classifier: Classifier, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """Mean-pooled embeddings from the bundle's encoder (adapter merged), no dropout."""
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch, _ = classifier.encode(texts[start : start + batch_size])
        with torch.inference_mode():
            chunks.append(classifier.model.embed(batch["input_ids"], batch["attention_mask"]))
    return torch.cat(chunks)


def fit_head(features: torch.Tensor, targets: torch.Tensor, classes: int, l2: float = 1e-3, seed: int = 13
             ) -> nn.Linear:
    """Multinomial logistic regression with L2, solved with L-BFGS."""
    torch.manual_seed(seed)
    head = nn.Linear(features.shape[1], classes)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=0.5, max_iter=300, line_search_fn="strong_wolfe")
    loss_fn = nn.CrossEntropyLoss()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(head(features), targets) + l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return head


def fewshot_labels(examples: Sequence[Example]) -> tuple[str, ...]:
    """The new task's labels, sorted; fewer than two, or two that differ only in case, are refused (the CLI checks
    it before loading the model)."""
    labels = tuple(sorted({example.label for example in examples}))
    if len(labels) < 2:
        raise ValueError(f"a few-shot task needs examples of at least two labels, got {list(labels)}")
    by_case: dict[str, str] = {}
    for label in labels:  # "Billing" and "billing" would train two classes that split one label's examples
        other = by_case.setdefault(label.casefold(), label)
        if other != label:
            raise ValueError(f"labels {other!r} and {label!r} differ only in case; write each label one way")
    return labels


def check_new_task(spec: BundleSpec, task: str) -> None:
    """Refuse a task the bundle has, or one whose output columns would clash with the labeled table's."""
    if task in spec.tasks:
        raise ValueError(f"bundle {spec.model_version} already has a task {task!r}")
    check_task_names([*spec.tasks, task])


def examples_digest(task: str, examples: Sequence[Example]) -> str:
    """A short hash of the task and its examples: two few-shot bundles from one base get distinct versions (a
    worker looks a bundle up by version), and the same command run again gets the same one."""
    payload = json.dumps([task, [[e.text, e.label] for e in examples]], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:8]


def add_fewshot_task(model_dir: Path, task: str, examples: list[Example], output: Path, version: str | None = None
                     ) -> Path:
    """Write a copy of the bundle at ``output`` with one more head, trained on ``examples``."""
    check_new_task(read_bundle_spec(model_dir), task)
    classifier = Classifier.load(model_dir, precision="fp32")  # the head learns from reference embeddings
    labels = fewshot_labels(examples)
    features = embed_texts(classifier, [e.text for e in examples]).float()
    targets = torch.tensor([labels.index(e.label) for e in examples])
    head = fit_head(features, targets, len(labels))
    if output.exists():
        raise FileExistsError(f"{output} exists; choose a new folder for the new bundle version")
    shutil.copytree(model_dir, output, ignore=shutil.ignore_patterns("MODEL_CARD.md", METRICS_FILE))
    heads = load_file(output / HEADS_FILE)
    heads[f"{task}.weight"] = head.weight.detach().contiguous()
    heads[f"{task}.bias"] = head.bias.detach().contiguous()
    save_file(heads, output / HEADS_FILE)
    on_disk = read_bundle_spec(model_dir)
    defaults = on_disk.default_tasks or tuple(on_disk.tasks)
    spec = replace(on_disk, version=version or f"{on_disk.version}+{task}.{examples_digest(task, examples)}",
                   tasks={**on_disk.tasks, task: TaskSpec(labels)}, default_tasks=(*defaults, task))
    write_bundle_spec(output, spec)
    return output
