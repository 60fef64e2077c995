"""What the machine offers a worker, and handing freed memory back to it."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

HEAP_PROBE = """
import sys, torch
from models.machine import HeapTrimmer, resident_bytes
trim = HeapTrimmer(slack_bytes=int(sys.argv[1]))
before = resident_bytes()
big = torch.ones(4 << 20); del big  # a 16 MiB free: glibc then serves smaller blocks from its heap
batch = [torch.ones(2 << 20) for _ in range(3)]; del batch  # three 8 MiB activations, freed
print(int(trim()), (resident_bytes() - before) >> 20)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="glibc heap behaviour on Linux")
def test_freed_activations_go_back_to_the_os_once_the_process_has_grown() -> None:
    """Without a trim glibc keeps freed activations resident (why RSS grew with corpus size)."""
    def after_batch(slack_mib: int) -> tuple[int, int]:
        done = subprocess.run([sys.executable, "-c", HEAP_PROBE, str(slack_mib << 20)], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).resolve().parents[2])
        trimmed, retained_mib = done.stdout.split()[-2:]
        return int(trimmed), int(retained_mib)

    trimmed, retained = after_batch(slack_mib=1024)
    assert trimmed == 0 and retained >= 16
    trimmed, retained = after_batch(slack_mib=8)
    assert trimmed == 1 and retained <= 4
