"""The finetune flow: data → seeded splits → joint LoRA training (or a soup of trained bundles) → evaluation →
bundle → registry."""

from __future__ import annotations

import math
import shlex
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from models.bundle import read_bundle_spec
from models.card import write_card
from models.datasets import default_data_dir
from models.recipes import SOUP_RECIPES, TASKS, finalize_bundle, soup_base, train_base
from models.registry import register
from models.training import TrainingArguments


@task(name="train-bundle", cache_policy=NO_CACHE)
def train_task(output: str, data_dir: str, args: TrainingArguments, version: str, tasks: tuple[str, ...],
               sst2_binary: bool = False) -> dict:
    """Train, calibrate, evaluate and save the bundle (long: minutes per epoch on CPU)."""
    return train_base(Path(output), Path(data_dir), args, version, tasks, sst2_binary=sst2_binary)


@task(name="soup-bundles", cache_policy=NO_CACHE)
def soup_task(output: str, data_dir: str, ingredients: list[str], version: str, seed: int) -> dict:
    """Average trained bundles into one, calibrate, evaluate and save it (minutes: no training)."""
    return soup_base(Path(output), Path(data_dir), [Path(folder) for folder in ingredients], version, seed)


@task(name="evaluate-abstention", cache_policy=NO_CACHE)
def abstention_task(output: str, data_dir: str, seed: int) -> dict:
    """CLINC150 in-scope accuracy and out-of-scope recall on the trained encoder (intent bundles)."""
    return finalize_bundle(Path(output), Path(data_dir), seed)


@task(name="register-bundle", cache_policy=NO_CACHE)
def register_task(output: str, promote: bool, command: str) -> dict[str, Any]:
    """Write the model card and add the bundle to models/registry.json."""
    write_card(Path(output), command)
    return register(Path(output), promote=promote)


def check_finetune_options(tasks: list[str] | None = None, epochs: float = 1.0, data_dir: str | None = None,
                           learning_rate: float | None = None, init_from: str | None = None,
                           sst2_binary: bool = False, soup_of: list[str] | None = None, soup: bool = False) -> None:
    """Refuse options that would fail only after loading data or training (hours for a soup), or train nothing:
    a task without a recipe was left out of the data, so a typo'd ``--tasks`` wrote a bundle without it.
    Raises ``ValueError`` naming the option; the CLI calls it before the flow starts, to make it a usage error."""
    if soup_of and (init_from or learning_rate is not None or sst2_binary or tasks):
        raise ValueError("a soup trains nothing: --soup-of takes no tasks, --init-from, --learning-rate or "
                         "--sst2-binary (the ingredients carry their own)")
    if soup and (soup_of or init_from or sst2_binary):
        raise ValueError("--soup trains its own ingredients, one per recipe: it takes no --soup-of, --init-from "
                         "or --sst2-binary")
    unknown = [name for name in tasks or () if name not in TASKS]
    if unknown:
        raise ValueError(f"--tasks: no training recipe for {', '.join(map(repr, unknown))}; finetune trains "
                         f"{', '.join(TASKS)} (topic is zero-shot, new tasks come from `undertone fewshot`)")
    if not math.isfinite(epochs) or epochs <= 0:
        raise ValueError(f"--epochs: expected a number of epochs above 0, got {epochs}")
    if learning_rate is not None and (not math.isfinite(learning_rate) or learning_rate <= 0):
        raise ValueError(f"--learning-rate: expected a learning rate above 0, got {learning_rate}")
    if soup_of is not None and len(soup_of) < 2:
        raise ValueError(f"--soup-of: a soup needs at least two bundles, got {soup_of}")
    for option, folders in (("--soup-of", soup_of or []), ("--init-from", [init_from] if init_from else [])):
        for folder in folders:
            try:
                read_bundle_spec(Path(folder))
            except (OSError, ValueError) as error:  # UnsafeModelError is a ValueError
                raise ValueError(f"{option}: {error}") from None
    data_root = Path(data_dir) if data_dir else default_data_dir()
    if not data_root.is_dir():
        raise ValueError(f"--data-dir: {data_root} is not a folder (the labeled data root, ../shared/data)")


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
    sst2_binary: bool = False,
    soup_of: list[str] | None = None,
    soup: bool = False,
    ingredients_dir: str | None = None,
) -> dict[str, Any]:
    """Train one shared-encoder bundle for ``tasks`` from ``../shared/data`` and register it.

    The same data, seed and code give the same weights; ``promote`` makes the bundle the
    default model of ``undertone run``. ``init_from`` continues training an earlier bundle's
    adapter and heads (usually with a lower ``learning_rate``) instead of starting from the base encoder.
    ``sst2_binary`` trains sentiment on SST-2 phrases as negative-or-positive evidence only.
    ``soup_of`` trains nothing: it averages those bundles (same base and seed, other recipes) into one,
    then calibrates and evaluates it like a trained bundle (``seed`` picks the same splits).
    ``soup`` trains one run per recipe in ``SOUP_RECIPES`` with the same arguments into ``ingredients_dir``
    (default ``training_runs/<output name>-<version>``, versions ``<version>+<recipe>``, not registered),
    then ships their soup: the shipped bundle's whole recipe in one command.

    Example:
        python -c "from flows.finetune import finetune_flow; finetune_flow('/tmp/b', tasks=['spam'], epochs=0.1)"
    """
    check_finetune_options(tasks, epochs, data_dir, learning_rate, init_from, sst2_binary, soup_of, soup)
    chosen = tuple(tasks or TASKS)
    args = TrainingArguments(seed=seed, epochs=epochs, init_from=init_from,
                             **({"learning_rate": learning_rate} if learning_rate is not None else {}))
    if soup_of:
        command = shlex.join(["undertone", "finetune", "--soup-of", ",".join(soup_of), "--output", output,
                              "--version", version, "--seed", str(seed)] + (["--promote"] if promote else []))
    else:
        command = shlex.join(["undertone", "finetune", *(["--soup"] if soup else []), "--tasks", ",".join(chosen),
                              "--output", output, "--version", version, "--seed", str(seed), "--epochs", str(epochs)]
                             + (["--learning-rate", str(learning_rate)] if learning_rate is not None else [])
                             + (["--init-from", init_from] if init_from else [])
                             + (["--sst2-binary"] if sst2_binary else [])
                             + (["--ingredients-dir", ingredients_dir] if soup and ingredients_dir else [])
                             + (["--promote"] if promote else []))
    data_root = data_dir or str(default_data_dir())
    if soup:
        runs = Path(ingredients_dir) if ingredients_dir else Path("training_runs") / f"{Path(output).name}-{version}"
        soup_of = [str(runs / recipe) for recipe in SOUP_RECIPES]
        for folder, (recipe, binary) in zip(soup_of, SOUP_RECIPES.items(), strict=True):
            train_task(folder, data_root, args, f"{version}+{recipe}", chosen, binary)
    if soup_of:
        soup_task(output, data_root, list(soup_of), version, seed)
    else:
        train_task(output, data_root, args, version, chosen, sst2_binary)
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
