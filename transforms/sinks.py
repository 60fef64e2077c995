"""Parquet sinks, partition swap and the run manifest.

A run writes every partition into ``OUTPUT/_staging/<run_id>/``; only after the Beam job
succeeds does :func:`commit_run` swap each staged partition into place. A run owns the
sources it read on its logical date: re-running a date replaces ``source=S/date=D`` for
every source S the run read (and those sources' dead-letter files of that date), leaves
other sources alone, never duplicates a record, and changes nothing if it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq

from schemas import SOURCES, file_schema

STAGING_DIR = "_staging"
RUNS_DIR = "_runs"
UNKNOWN_SOURCE = "unknown"
"""Counts and dead-letter files for records whose source could not be told (an unknown file)."""


def labeled_partition(root: str | Path, source: str, date: str) -> Path:
    return Path(root) / "labeled" / f"source={source}" / f"date={date}"


def dead_letter_partition(root: str | Path, date: str) -> Path:
    return Path(root) / "dead_letter" / f"date={date}"


def staging_root(output: str | Path, run_id: str) -> Path:
    return Path(output) / STAGING_DIR / run_id


def dead_letter_prefix(source: str | None) -> str:
    """Dead-letter files are named per source, so a run replaces only the sources it read."""
    return f"{source or UNKNOWN_SOURCE}-"


class WritePartition(beam.PTransform):
    """Write rows to one partition folder as ``<prefix><run_id>-SSSSS-of-NNNNN.parquet``."""

    def __init__(self, folder: Path, schema: pa.Schema, partition_keys: Sequence[str], run_id: str,
                 prefix: str = "part-") -> None:
        super().__init__()
        self.folder = folder
        self.schema = file_schema(schema, partition_keys)
        self.run_id = run_id
        self.prefix = prefix

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        return rows | beam.io.WriteToParquet(
            str(self.folder / f"{self.prefix}{self.run_id}"),
            self.schema,
            file_name_suffix=".parquet",
            shard_name_template="-SSSSS-of-NNNNN",
            codec="zstd",
        )


def parquet_rows(folder: Path) -> int:
    """Rows in a partition folder, from Parquet footers only."""
    return sum(pq.ParquetFile(path).metadata.num_rows for path in sorted(folder.glob("*.parquet")))


def _swap(staged: Path, target: Path) -> None:
    """Put ``staged`` where ``target`` is: two renames, so readers see the old or the new partition."""
    target.parent.mkdir(parents=True, exist_ok=True)
    trash = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        os.rename(target, trash)
    if staged.exists():
        os.rename(staged, target)
    shutil.rmtree(trash, ignore_errors=True)


def _drop_empty_files(folder: Path) -> None:
    """Beam writes a schema-only file for an empty PCollection; an empty partition holds no file."""
    if folder.exists():
        for path in folder.glob("*.parquet"):
            if pq.ParquetFile(path).metadata.num_rows == 0:
                path.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()


def commit_run(output: str | Path, run_id: str, date: str, sources_read: Iterable[str]) -> dict[str, Any]:
    """Swap a successful run's staged partitions in for the sources it read; return per-source counts."""
    staging = staging_root(output, run_id)
    owned = set(sources_read)
    labeled_counts: dict[str, int] = {}
    for source in SOURCES:
        staged = labeled_partition(staging, source, date)
        _drop_empty_files(staged)
        labeled_counts[source] = parquet_rows(staged) if staged.exists() else 0
        if source in owned:
            _swap(staged, labeled_partition(output, source, date))
    staged_dead = dead_letter_partition(staging, date)
    _drop_empty_files(staged_dead)
    dead_counts: Counter[str] = Counter()
    for path in sorted(staged_dead.glob("*.parquet")) if staged_dead.exists() else ():
        dead_counts[path.name.split("-", 1)[0]] += pq.ParquetFile(path).metadata.num_rows
    target = dead_letter_partition(output, date)
    replaced = tuple(dead_letter_prefix(source) for source in owned)
    if target.exists():
        staged_dead.mkdir(parents=True, exist_ok=True)
        for kept in target.glob("*.parquet"):
            if not kept.name.startswith(replaced):
                os.link(kept, staged_dead / kept.name)
    _swap(staged_dead, target)
    shutil.rmtree(staging, ignore_errors=True)
    return {"labeled": labeled_counts, "dead_letter": dict(dead_counts)}


def write_manifest(output: str | Path, run_id: str, manifest: dict[str, Any]) -> Path:
    """Write ``_runs/<run_id>.json`` atomically (temp file, then rename)."""
    folder = Path(output) / RUNS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_id}.json"
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def reconcile(inputs: dict[str, int], labeled: dict[str, int], dead: dict[str, int]) -> dict[str, dict[str, int]]:
    """Per source: input, labeled, dead-letter and whether they add up."""
    counts = {}
    for source in sorted(set(inputs) | set(labeled) | set(dead), key=_source_order):
        row = {"input": inputs.get(source, 0), "labeled": labeled.get(source, 0), "dead_letter": dead.get(source, 0)}
        if any(row.values()):
            counts[source] = row
    return counts


def _source_order(source: str) -> tuple[int, str]:
    return (SOURCES.index(source) if source in SOURCES else len(SOURCES), source)


def totals(counts: dict[str, dict[str, int]], keys: Sequence[str] = ("input", "labeled", "dead_letter")
           ) -> dict[str, int]:
    return {key: sum(row[key] for row in counts.values()) for key in keys}
