"""Model soups: one bundle whose adapter and heads are the average of several trained bundles.

Runs fine-tuned from the same starting weights (same base encoder and seed, hence the same adapter
and head initialisation and batch order) end in one basin, where the average of their weights
usually generalises better out of domain than any one of them, at the inference cost of one model
(Wortsman et al. 2022, "Model soups"). LoRA adapters average exactly: the mean of the updates
``s_i B_i A_i`` over ``n`` runs is one adapter of rank ``sum(r_i)`` whose ``A`` stacks the ``A_i``
and whose ``B`` sets the ``s_i B_i / n`` side by side (scaling folded in, so the soup's is 1).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from models.bundle import (
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    HEADS_FILE,
    BundleSpec,
    read_bundle_spec,
    write_bundle_spec,
)

PLAIN_LORA = {"bias": "none", "use_dora": False, "use_rslora": False, "rank_pattern": {}, "alpha_pattern": {},
              "modules_to_save": None}
"""Adapter settings under which an update is exactly ``lora_alpha / r * B @ A`` (what the average relies on)."""


def _adapter_config(folder: Path) -> dict:
    config = json.loads((folder / ADAPTER_DIR / "adapter_config.json").read_text(encoding="utf-8"))
    odd = {key: config[key] for key, plain in PLAIN_LORA.items() if config.get(key) not in (plain, None)}
    if odd:
        raise ValueError(f"{folder}: adapter settings {odd} are not a plain LoRA update; cannot average it")
    return config


def check_ingredients(folders: Sequence[Path]) -> tuple[list[BundleSpec], list[dict]]:
    """The ingredients' specs and adapter configs; refuses bundles whose weights do not mean the same thing.

    They must share the base encoder (hash), the trained tasks and their labels, the token window
    their heads were trained on, and carry LoRA adapters on the same modules.
    """
    if len(folders) < 2:
        raise ValueError("a soup needs at least two bundles")
    specs = [read_bundle_spec(folder) for folder in folders]
    first, first_folder = specs[0], folders[0]
    trained = {task: spec.labels for task, spec in first.tasks.items() if not spec.zero_shot}
    configs: list[dict] = []
    for folder, spec in zip(folders, specs, strict=True):
        if spec.base.sha256 != first.base.sha256 or spec.base.name != first.base.name:
            raise ValueError(f"{folder} was trained on another base encoder than {first_folder}")
        labels = {task: task_spec.labels for task, task_spec in spec.tasks.items() if not task_spec.zero_shot}
        if labels != trained:
            raise ValueError(f"{folder} has other tasks or labels than {first_folder}")
        if spec.max_length != first.max_length:
            raise ValueError(f"{folder} reads {spec.max_length} tokens per text, {first_folder} {first.max_length}")
        if not (folder / ADAPTER_DIR / ADAPTER_WEIGHTS).is_file():
            raise ValueError(f"{folder} has no LoRA adapter to average")
        configs.append(_adapter_config(folder))
        modules, targets = sorted(configs[-1]["target_modules"]), sorted(configs[0]["target_modules"])
        if modules != targets:
            raise ValueError(f"{folder} adapts other modules ({modules}) than {first_folder} ({targets})")
    return specs, configs


def average_bundles(folders: Sequence[Path], output: Path, version: str) -> BundleSpec:
    """Write the uniform soup of ``folders`` at ``output``: averaged adapter and heads, the first
    ingredient's spec under ``version`` with every trained head's temperature reset to 1 (the
    averaged heads need calibrating again)."""
    folders = [Path(folder) for folder in folders]
    specs, configs = check_ingredients(folders)
    count = len(folders)
    scales = [config["lora_alpha"] / config["r"] / count for config in configs]
    adapters = [load_file(folder / ADAPTER_DIR / ADAPTER_WEIGHTS) for folder in folders]
    if any(adapter.keys() != adapters[0].keys() for adapter in adapters):
        raise ValueError("the ingredients' adapters hold different layers")
    merged = {}
    for key in adapters[0]:
        if "lora_A" in key:
            merged[key] = torch.cat([adapter[key] for adapter in adapters], dim=0)
        elif "lora_B" in key:
            merged[key] = torch.cat([adapter[key] * scale for adapter, scale in zip(adapters, scales, strict=True)],
                                    dim=1)
        else:
            raise ValueError(f"adapter weight {key!r} is not a LoRA A or B matrix")
    rank = sum(config["r"] for config in configs)
    heads = [load_file(folder / HEADS_FILE) for folder in folders]
    if any(head.keys() != heads[0].keys() for head in heads):
        raise ValueError("the ingredients hold different heads")

    (output / ADAPTER_DIR).mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in merged.items()}, output / ADAPTER_DIR / ADAPTER_WEIGHTS)
    config = {**configs[0], "r": rank, "lora_alpha": rank, "lora_dropout": 0.0, "inference_mode": True}
    (output / ADAPTER_DIR / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n",
                                                              encoding="utf-8")
    save_file({key: (sum(head[key] for head in heads) / count).contiguous() for key in heads[0]}, output / HEADS_FILE)
    first = specs[0]
    spec = replace(first, version=version, tasks={
        task: task_spec if task_spec.zero_shot else replace(task_spec, temperature=1.0)
        for task, task_spec in first.tasks.items()})
    write_bundle_spec(output, spec)
    return spec
