"""A model loaded ahead of the worker that will ask for it: the CLI's warm-up loads the run's model while
Prefect's server starts, and an in-process worker takes it over.

Light on purpose (no torch import): the launcher announces the warm-up here before its thread starts, so a
worker that asks early waits for the model instead of loading a second copy beside it.
"""

from __future__ import annotations

import threading
from typing import Any

WAIT_S = 300.0
"""Longest a worker waits for a warm-up before it loads its model itself (a load takes seconds)."""

_done = threading.Event()
_done.set()
_lock = threading.Lock()
_models: dict[str, Any] = {}


def begin() -> None:
    """A warm-up is starting: workers asking from now on wait for :func:`finish`."""
    _done.clear()


def offer(key: str, model: Any) -> None:
    """Keep ``model``, loaded for ``key``, for the worker that asks for it."""
    with _lock:
        _models[key] = model


def finish() -> None:
    """The warm-up is over (whether or not it loaded a model): waiting workers go on."""
    _done.set()


def take(key: str) -> Any | None:
    """The model preloaded for ``key``, handed over once (None if there is none); waits for a running warm-up.
    Any other preloaded model is dropped, so a process never holds one nobody asked for."""
    _done.wait(WAIT_S)
    with _lock:
        model = _models.pop(key, None)
        _models.clear()
    return model
