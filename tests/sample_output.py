"""Sample output for the aggregates and report tests: the samples labeled once per test session.

The tiny random model labels sentiment, spam (email only), zero-shot topic and intent (routed to
teams). Its heads are seeded, and the sentiment head is derived from the intent head so that the
samples get a mix of sentiments, negative ones included, which the report's negative sections need.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from models.topics import DEFAULT_TOPICS
from tests.conftest import SAMPLES, SENTIMENT, build_tiny_bundle
from transforms.pipeline import PipelineConfig, run_pipeline

SAMPLE_DATE = "2026-11-20"
TASKS = ("sentiment", "spam", "topic", "intent")


def labeling_bundle(folder: Path, encoder: Path) -> Path:
    """A tiny bundle with every kind of task: 3-way sentiment, email-only spam, two routable intents."""
    import torch

    torch.manual_seed(3)
    bundle = build_tiny_bundle(folder, encoder, {"sentiment": SENTIMENT, "spam": ("ham", "spam"),
                                                 "intent": ("card_arrival", "exchange_rate")})
    heads = load_file(bundle / "heads.safetensors")
    # The intent head's margin varies between texts; sentiment reads it as negative above 0.12, positive
    # below 0 and neutral between, which gives each label a fair share of the samples.
    weight = heads["intent.weight"][0] - heads["intent.weight"][1]
    bias = heads["intent.bias"][0] - heads["intent.bias"][1]
    heads["sentiment.weight"] = 30 * torch.stack([weight, torch.zeros_like(weight), -weight])
    heads["sentiment.bias"] = 30 * torch.stack([bias - 0.12, torch.zeros_like(bias), -bias])
    save_file(heads, bundle / "heads.safetensors")
    spec = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    spec["tasks"]["spam"]["sources"] = ["email"]
    (bundle / "bundle.json").write_text(json.dumps(spec), encoding="utf-8")
    return bundle


def sample_output(tmp_path_factory: pytest.TempPathFactory, encoder: Path) -> tuple[Path, Path]:
    """``(output, bundle)``: the samples labeled for ``SAMPLE_DATE``, built on the first call of the session."""
    root = tmp_path_factory.getbasetemp() / "sample-output"
    output, bundle = root / "out", root / "bundle"
    if not (root / "done").is_file():
        labeling_bundle(bundle, encoder)
        run_pipeline(PipelineConfig(inputs=(str(SAMPLES),), output=str(output), logical_date=SAMPLE_DATE,
                                    model_dir=str(bundle), tasks=TASKS, zero_shot={"topic": DEFAULT_TOPICS}))
        (root / "done").write_text("ok\n", encoding="utf-8")
    return output, bundle
