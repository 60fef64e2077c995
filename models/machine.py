"""What the machine offers a worker, without importing torch (the launcher asks before the model loads)."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and Beam workers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's marketing name: figures measured on one CPU (speed, int8 kernels) are quoted with it."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
