"""The local model registry: ``models/registry.json`` lists trained bundles and names the default.

Paths are stored relative to the repository when inside it, so the registry travels with a clone.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.bundle import (
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    HEADS_FILE,
    METRICS_FILE,
    read_bundle_spec,
    read_metrics,
    sha256_file,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
REGISTRY_FILE = REPO_ROOT / "models" / "registry.json"
SHIPPED_DEFAULT = REPO_ROOT / "models" / "shipped" / "base"


def load_registry(path: Path = REGISTRY_FILE) -> dict[str, Any]:
    if not path.is_file():
        return {"default": None, "models": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def _portable(folder: Path) -> str:
    folder = folder.resolve()
    return str(folder.relative_to(REPO_ROOT)) if folder.is_relative_to(REPO_ROOT) else str(folder)


def register(folder: Path, promote: bool = False, path: Path = REGISTRY_FILE) -> dict[str, Any]:
    """Add (or refresh) a bundle in the registry; ``promote`` makes it the default for runs."""
    spec = read_bundle_spec(folder)
    metrics = read_metrics(folder) if (folder / METRICS_FILE).is_file() else {}
    summary = {name: {key: round(value, 4) for key, value in report.items() if isinstance(value, float)}
               for name, report in metrics.get("evaluation", {}).items()}
    registry = load_registry(path)
    known = registry["models"].get(spec.model_version)
    if known and known["path"] != _portable(folder) and _holds_other_weights(_entry_folder(known), folder):
        raise ValueError(f"{spec.model_version} is registered at {known['path']} with other weights; give the "
                         f"bundle at {folder} another version")
    entry = {"path": _portable(folder), "tasks": list(spec.tasks), "metrics": summary,
             "registered_at": datetime.now(UTC).isoformat(timespec="seconds")}
    # A bundle written over an older one's folder replaces it: the old entry's weights are gone.
    overwritten = [version for version, old in registry["models"].items()
                   if old["path"] == entry["path"] and version != spec.model_version]
    for version in overwritten:
        del registry["models"][version]
    registry["models"][spec.model_version] = entry
    if registry.get("default") in overwritten:
        registry["default"] = spec.model_version
    if promote or not registry.get("default"):
        registry["default"] = spec.model_version
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(registry, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return {"model_version": spec.model_version, **entry, "default": registry["default"]}


def _holds_other_weights(registered: Path, folder: Path) -> bool:
    """Whether ``registered`` still holds its version with other metadata or weights than ``folder``: then both
    would answer to one version, and a worker looking the version up could load the wrong one. A copy of the same
    bundle (a worker image's) may take over the entry."""
    try:
        spec = read_bundle_spec(registered)
    except (OSError, ValueError):  # gone or no longer a bundle: nothing left to confuse it with
        return False
    new = read_bundle_spec(folder)
    if spec.model_version != new.model_version:  # its folder now holds another version
        return False
    return spec != new or _weights_digest(registered) != _weights_digest(folder)


def _weights_digest(folder: Path) -> tuple[str, str | None]:
    adapter = folder / ADAPTER_DIR / ADAPTER_WEIGHTS
    return sha256_file(folder / HEADS_FILE), sha256_file(adapter) if adapter.is_file() else None


def default_model_dir(path: Path = REGISTRY_FILE) -> Path:
    """The promoted bundle's folder, else the shipped default."""
    registry = load_registry(path)
    default = registry.get("default")
    if default and default in registry["models"]:
        return _entry_folder(registry["models"][default])
    return SHIPPED_DEFAULT


def _entry_folder(entry: dict[str, Any]) -> Path:
    """A registry entry's bundle folder (stored relative to the repository when inside it)."""
    folder = Path(entry["path"])
    return folder if folder.is_absolute() else REPO_ROOT / folder


def bundle_on_this_machine(model_dir: str | Path, model_version: str, path: Path = REGISTRY_FILE) -> Path:
    """The folder a worker loads the run's bundle from: ``model_dir`` where it exists on this machine, else the
    bundle registered here under the same ``model_version``. The launcher names its own folder, and a Dataflow or
    container worker keeps the bundles its image was built with at another path (``/opt/undertone``)."""
    folder = Path(model_dir)
    if folder.is_dir():
        return folder
    entry = load_registry(path)["models"].get(model_version)
    if entry:
        registered = _entry_folder(entry)
        if registered.is_dir() and read_bundle_spec(registered).model_version == model_version:
            return registered
    raise FileNotFoundError(f"model bundle {model_version} is neither at {model_dir} on this worker nor registered in "
                            f"its {path}: build the worker image with it, or pass a --model folder the workers see")

