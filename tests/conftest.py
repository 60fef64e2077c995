"""Shared fixtures: real data locations and a tiny random-weight model bundle built from a config."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import undertone  # noqa: F401 - offline defaults before transformers and Prefect load
from models.bundle import BaseModelRef, BundleSpec, TaskSpec, resolve_base_path
from models.classifier import MultiTaskModel, save_bundle

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
SHARED_DATA = REPO.parent / "shared" / "data"
SHIPPED_MODEL = REPO / "models" / "shipped" / "sentiment"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SENTIMENT = ("negative", "neutral", "positive")


def build_tiny_encoder(folder: Path) -> Path:
    """A 2-layer, 32-wide BERT with random weights and the real MiniLM tokenizer, saved as safetensors."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    source = resolve_base_path(BaseModelRef())
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, folder / name)
    return folder


def build_tiny_bundle(folder: Path, encoder_dir: Path, tasks: dict[str, tuple[str, ...]] | None = None,
                      max_length: int = 64) -> Path:
    """A bundle on the tiny encoder with random heads (no adapter)."""
    from models.classifier import load_encoder

    tasks = tasks or {"sentiment": SENTIMENT}
    spec = BundleSpec(name="tiny-test", version="0.0.1", tasks={t: TaskSpec(labels) for t, labels in tasks.items()},
                      base=BaseModelRef(name="tiny-random-bert", package=None, path=str(encoder_dir)),
                      max_length=max_length)
    return save_bundle(folder, spec, MultiTaskModel(load_encoder(spec), spec.tasks))


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path) -> Path:
    return build_tiny_bundle(tmp_path_factory.mktemp("tiny-bundle") / "bundle", tiny_encoder)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").is_file():
        if os.environ.get("CI"):
            pytest.fail("../shared/data must be present in CI")
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect backend for the session (a cold start takes ~20 s here)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
