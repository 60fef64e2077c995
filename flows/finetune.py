"""The finetune flow: data → seeded splits → joint LoRA training → evaluation → bundle → registry."""

from __future__ import annotations

import shlex
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from models.card import write_card
from models.datasets import default_data_dir
from models.recipes import TASKS, finalize_bundle, train_base
from models.registry import register
from models.training import TrainingArguments


@task(name="train-bundle", cache_policy=NO_CACHE)
def train_task(output: str, data_dir: str, args: TrainingArguments, version: str, tasks: tuple[str, ...]) -> dict:
    """Train, calibrate, evaluate and save the bundle (long: minutes per epoch on CPU)."""
    return train_base(Path(output), Path(data_dir), args, version, tasks)


@task(name="evaluate-abstention", cache_policy=NO_CACHE)
def abstention_task(output: str, data_dir: str, seed: int) -> dict:
    """CLINC150 in-scope accuracy and out-of-scope recall on the trained encoder (intent bundles)."""
    return finalize_bundle(Path(output), Path(data_dir), seed)


@task(name="register-bundle", cache_policy=NO_CACHE)
def register_task(output: str, promote: bool, command: str) -> dict[str, Any]:
    """Write the model card and add the bundle to models/registry.json."""
    write_card(Path(output), command)
    return register(Path(output), promote=promote)


@flow(name="undertone-finetune")
def finetune_flow(
    output: str,
    tasks: list[str] | None = None,
    version: str = "1.0.0",
    seed: int = 13,
    epochs: float = 1.0,
    data_dir: str | None = None,
    promote: bool = False,
    learning_rate: float | None = None,
    init_from: str | None = None,
) -> dict[str, Any]:
    """Train one shared-encoder bundle for ``tasks`` from ``../shared/data`` and register it.

    The same data, seed and code give the same weights; ``promote`` makes the bundle the
    default model of ``undertone run``. ``init_from`` continues training an earlier bundle's
    adapter and heads (usually with a lower ``learning_rate``) instead of starting from the base encoder.

    Example:
        python -c "from flows.finetune import finetune_flow; finetune_flow('/tmp/b', tasks=['spam'], epochs=0.1)"
    """
    chosen = tuple(tasks or TASKS)
    args = TrainingArguments(seed=seed, epochs=epochs, init_from=init_from,
                             **({"learning_rate": learning_rate} if learning_rate is not None else {}))
    command = shlex.join(["undertone", "finetune", "--tasks", ",".join(chosen), "--output", output,
                          "--version", version, "--seed", str(seed), "--epochs", str(epochs)]
                         + (["--learning-rate", str(learning_rate)] if learning_rate is not None else [])
                         + (["--init-from", init_from] if init_from else [])
                         + (["--promote"] if promote else []))
    data_root = data_dir or str(default_data_dir())
    train_task(output, data_root, args, version, chosen)
    metrics = abstention_task(output, data_root, seed)
    entry = register_task(output, promote, command)
    table = "\n".join(f"| {name} | {report['accuracy']:.3f} | {report['macro_f1']:.3f} | "
                      f"{report['macro_recall']:.3f} | {report.get('ece', 0):.3f} |"
                      for name, report in metrics["evaluation"].items())
    create_markdown_artifact(
        key="undertone-finetune",
        markdown=f"## {entry['model_version']}\n\n| set | accuracy | macro-F1 | macro-recall | ECE |\n"
                 f"|---|---|---|---|---|\n{table}\n",
        description="Held-out evaluation of the trained bundle",
    )
    return {"model_version": entry["model_version"], "path": output, "default": entry["default"],
            "args": asdict(args), "metrics": entry["metrics"]}
