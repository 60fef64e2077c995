"""What the machine offers a worker, without importing torch (the launcher asks before the model loads)."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
from collections.abc import Callable
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


def resident_bytes() -> int | None:
    """This process's resident memory (Linux ``/proc``), None where it cannot be read."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class HeapTrimmer:
    """Hands freed heap memory back to the OS whenever the process has grown by ``slack_bytes``.

    Every batch has a new shape (length-grouped batches all differ), and glibc serves the activations
    from its heap, whose freed holes stay resident: without trimming the process grew by about 50 MB
    per thousand documents. ``malloc_trim`` releases them; doing it only after real growth keeps the
    page faults of re-touching released memory rare (a fixed 1 MiB mmap threshold also kept memory
    flat but cost a fifth of the model stage's speed here). The slack is also how far the heap swings
    above its floor between trims, and a longer run has more batches to peak in: with 128 MiB a
    25,000-document run peaked 150 MiB higher than with 32 MiB, at the same speed. A no-op where the C
    library is not glibc.
    """

    def __init__(self, slack_bytes: int = 32 << 20) -> None:
        self.slack_bytes = slack_bytes
        self.baseline = resident_bytes()

    def __call__(self) -> bool:
        """Trim if the process outgrew its last baseline by the slack; whether it trimmed."""
        resident = resident_bytes()
        if resident is None or self.baseline is None:
            return False
        if resident - self.baseline < self.slack_bytes or not release_freed_memory():
            return False
        self.baseline = resident_bytes()
        return True


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> bool:
    """Hand the C heap's free pages back to the OS (glibc's ``malloc_trim``); whether it could (not where the
    C library is not glibc). After glibc has served a large block from its heap it raises its trim threshold
    to 64 MiB, so a step that reads and frees tens of MiB (Parquet row groups, a model pass) otherwise leaves
    them resident for the rest of the process."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
