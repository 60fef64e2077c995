"""Memory of a command and of every process it starts: the peak of their summed PSS (Linux ``/proc``).

``ru_maxrss`` gives only the largest process's peak, and a local run also holds memory in its ingest worker
processes. PSS splits each shared page among the processes that map it, so the forkserver's preloaded pages
are not counted once per worker.
"""

from __future__ import annotations

import threading
import time
from contextlib import suppress
from pathlib import Path
from types import TracebackType


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants alive now (each thread's ``children`` file lists the children it started)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            with suppress(OSError, ValueError):
                pending.extend(int(child) for child in children.read_text().split())
    return found


def proc_kib(pid: int, file: str, field: str) -> int:
    """A ``field: <n> kB`` line of ``/proc/<pid>/<file>`` in KiB; 0 once the process has gone or where ``/proc``
    does not tell."""
    with suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    """A process's proportional set size in KiB."""
    return proc_kib(pid, "smaps_rollup", "Pss")


def rss_kib(pid: int) -> int:
    """A process's resident set size in KiB."""
    return proc_kib(pid, "status", "VmRSS")


class TreePeak:
    """Samples the summed PSS of ``pid``'s process tree every ``period_s`` while the ``with`` block runs;
    ``peak_mib`` is the highest sum seen (None where nothing could be read, as on a system without ``/proc``),
    and ``samples`` holds each sample's seconds since the start, tree PSS and ``pid``'s own RSS (MiB), from which
    :meth:`peaks_by_part` tells whether memory still rises late in a run or has levelled off."""

    def __init__(self, pid: int, period_s: float = 0.25) -> None:
        self.pid = pid
        self.period_s = period_s
        self.peak_mib: float | None = None
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="tree-pss", daemon=True)

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def peaks_by_part(self, parts: int = 10) -> dict[str, list[int]]:
        """The highest tree PSS and command RSS (MiB) in each of ``parts`` equal spans of the sampled time."""
        if not self.samples:
            return {"tree_pss_mib": [], "rss_mib": []}
        span = self.samples[-1][0] or 1.0
        pss, rss = [0.0] * parts, [0.0] * parts
        for seconds, tree, own in self.samples:
            part = min(int(seconds / span * parts), parts - 1)
            pss[part], rss[part] = max(pss[part], tree), max(rss[part], own)
        return {"tree_pss_mib": [round(value) for value in pss], "rss_mib": [round(value) for value in rss]}

    def _sample(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            total = sum(pss_kib(pid) for pid in process_tree(self.pid))
            if total:
                self.peak_mib = max(self.peak_mib or 0.0, total / 1024)
                self.samples.append((time.monotonic() - started, total / 1024, rss_kib(self.pid) / 1024))
            self._stop.wait(self.period_s)
