"""Parquet sinks, partition swap and the run manifest.

A run writes every partition into ``OUTPUT/_staging/<run_id>/``; only after the Beam job
succeeds does :func:`commit_run` swap each staged partition into place. A run owns the
sources it read on its logical date (a run of a whole date, every source): re-running a date
replaces ``source=S/date=D`` for every source S it owns (and those sources' dead-letter files of
that date), leaves other sources alone, never duplicates a record, and changes nothing if it fails.

The swap is crash-safe: before the first rename, :func:`commit_run` writes a commit journal
(``_commit.json``) into the staging folder, and every step can be replayed. A run killed
before its journal changes nothing visible; one killed mid-swap is rolled forward (and given a manifest) by
the next run's :func:`recover_staging`, which also removes the staging folders of other dead runs.
``_dates/<date>.json`` marks a date whose inputs were all processed (written by the daily flow), and
``_commits/<date>/<source>.json`` names the run that last committed a source's partitions of a date, so that a
late roll-forward never brings back a partition a later run removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.value_provider import StaticValueProvider

from schemas import DEAD_LETTER_PARTITION_KEYS, DEAD_LETTER_SCHEMA, LABELED_PARTITION_KEYS, SOURCES, file_schema

log = logging.getLogger(__name__)

STAGING_DIR = "_staging"
RUNS_DIR = "_runs"
DATES_DIR = "_dates"
COMMITS_DIR = "_commits"
"""``_commits/<date>/<source>.json``: the run that last committed the source's partitions of the date, written before
its swap. A partition that a later run removed (its source had no record that day) holds no file to say so."""
COMMIT_LOCK = ".lock"
"""``_commits/<date>/.lock``: held while a run commits into the date or a dead run's commit is rolled forward."""
OWNER_FILE = "_owner.json"
COMMIT_JOURNAL = "_commit.json"
_LIBC = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
STALE_AFTER_S = 6 * 3600
"""A staging folder whose owner cannot be checked (another host, no owner file) is dead after this long."""
UNKNOWN_SOURCE = "unknown"
"""Counts and dead-letter files for records whose source could not be told (an unknown file)."""
DEAD_LETTER_TEMP_DIR = "_dead_letter_tmp"
"""Folder in a run's staging folder for the dead-letter writer's temporary files (removed with it at commit)."""
LABELED_TEMP_DIR = "_labeled_tmp"
"""Folder in a run's staging folder for the labeled writer's temporary files (removed with it at commit)."""
LABELED_WRITTEN_DIR = "_labeled_written"
"""Folder in a run's staging folder where the labeled writer's files land before they move to their partition."""
TRASH_DIR = "_trash"
"""Folder in a run's staging folder where the partitions its commit replaces wait to be deleted: outside the
dataset, so no reader's glob lists them even if the run dies before deleting them (a hidden folder beside the
partition broke DuckDB's hive reader), and on the output's file system, so moving them there is a rename."""


def is_url(path: str) -> bool:
    """Whether ``path`` names a file system by scheme (``gs://``, ``s3://``, ``hdfs://``) rather than a local path."""
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path))


def check_output_root(output: str) -> None:
    """Refuse an object-store output (``gs://``, ``s3://``, any ``scheme://``): a path like that would become a
    local folder named after the scheme, and the partition swap, the commit journal and the manifest need a file
    system with renames. Workers that cannot see the output write elsewhere (:func:`remote_staging`). Also
    refuse an output that is, or lies below, a file or a symbolic link to a missing folder: creating its folders
    would fail mid-run with a bare ``FileExistsError``."""
    if is_url(output):
        raise ValueError(f"output {output!r} is a URL; object-store outputs are not supported yet: use a folder of "
                         "this machine (a local disk or a mount such as GCS FUSE); workers that cannot see it stage "
                         "their files under the runner's URL temp_location")
    for path in (Path(output), *Path(output).parents):  # the output and its folders up to the first that exists
        if os.path.islink(path) and not os.path.exists(path):  # os.path: a folder we may not search is no error
            raise ValueError(f"output {output!r}: {path} is a symbolic link to {os.readlink(path)}, which does not "
                             "exist: create the folder it points to, or name another output")
        if os.path.exists(path):
            if not os.path.isdir(path):
                raise ValueError(f"output {output!r}: {path} is a file, not a folder")
            return


def labeled_parts(source: str, date: str) -> tuple[str, ...]:
    """A labeled partition's path below an output or staging root, for local paths and URLs alike."""
    return "labeled", f"source={source}", f"date={date}"


def dead_letter_parts(date: str) -> tuple[str, ...]:
    return "dead_letter", f"date={date}"


def labeled_partition(root: str | Path, source: str, date: str) -> Path:
    return Path(root).joinpath(*labeled_parts(source, date))


def dead_letter_partition(root: str | Path, date: str) -> Path:
    return Path(root).joinpath(*dead_letter_parts(date))


def staging_root(output: str | Path, run_id: str) -> Path:
    return Path(output) / STAGING_DIR / run_id


def remote_staging(run_id: str, temp_location: str | None) -> str | None:
    """Where the job's workers write the run's files when they cannot see the output: under the runner's
    ``temp_location`` when that is a URL (Dataflow's ``gs://BUCKET/tmp``), since such workers cannot see the
    submitting machine's disk; :func:`fetch_staged` then brings the files over before the commit. None: the
    workers write into the run's staging folder in the output."""
    if temp_location and is_url(temp_location):
        return FileSystems.join(temp_location, STAGING_DIR.lstrip("_"), run_id)
    return None


def fetch_staged(remote: str, staging: Path) -> int:
    """Copy a run's Parquet files from the workers' remote staging folder into its local one (same layout), then
    delete the remote folder; returns the number of files. Fileio's temporary files are left out."""
    prefix = remote.rstrip("/") + "/"
    fetched = 0
    for pattern in (f"{prefix}labeled/**.parquet", f"{prefix}dead_letter/**.parquet"):
        for metadata in FileSystems.match([pattern])[0].metadata_list:
            local = staging / metadata.path.removeprefix(prefix)
            local.parent.mkdir(parents=True, exist_ok=True)
            with FileSystems.open(metadata.path, compression_type=CompressionTypes.UNCOMPRESSED) as source, \
                    local.open("wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
            fetched += 1
    discard_remote(remote)
    return fetched


def discard_remote(remote: str) -> None:
    """Delete a run's remote staging folder (an object-store "folder" is every object under its prefix)."""
    prefix = remote.rstrip("/") + "/"
    leftovers = [metadata.path for metadata in FileSystems.match([prefix + "**"])[0].metadata_list]
    if leftovers:
        FileSystems.delete(leftovers)


def dead_letter_prefix(source: str | None) -> str:
    """Dead-letter files are named per source, so a run replaces only the sources it owns."""
    return f"{source or UNKNOWN_SOURCE}-"


def dead_letter_source(file_name: str) -> str:
    """The source a dead-letter file is named for (:func:`dead_letter_prefix`)."""
    return file_name.split("-", 1)[0]


ROW_GROUP_BYTES = 4 << 20
"""Bytes of labeled rows (in Arrow) a Parquet writer holds before writing them as one row group (about 1 MiB
compressed; 11,000 tweets or 1,400 emails). Every writer of a run holds up to this much until its file ends, and
marking duplicates rewrites a file a row group at a time: Beam's 64 MiB default let peak memory grow with corpus
size up to 450 MiB, 16 MiB still by about 40 MiB between 2,500 and 25,000 documents."""
BATCH_ROWS = 1000
"""Rows a writer converts to Arrow at a time (as Beam's ``WriteToParquet`` does), and a dead-letter file's row
group (excerpts are at most 500 characters: about a megabyte a group)."""
BATCH_CHARS = 1 << 20
"""Characters of text a writer holds as Python rows before converting them to Arrow, whatever their number:
1,000 emails near the 200,000-character limit would hold 400 MB of strings."""


class ParquetRowsSink(fileio.FileSink):
    """Row dicts to one Parquet file (zstd), for ``fileio.WriteToFiles``: columns by ``schema``, other keys
    ignored. Rows become Arrow a batch at a time (``BATCH_ROWS`` rows or ``BATCH_CHARS`` characters of text,
    whichever comes first), and batches a row group once they hold
    ``row_group_bytes`` (0: every batch is a row group); ``flush`` writes the footer (fileio calls it once,
    before closing the file)."""

    def __init__(self, schema: pa.Schema, row_group_bytes: int = 0) -> None:
        self.schema = schema
        self.row_group_bytes = row_group_bytes

    def open(self, fh: Any) -> None:
        self._writer = pq.ParquetWriter(fh, self.schema, compression="zstd")
        self._rows: list[dict[str, Any]] = []
        self._batches: list[pa.RecordBatch] = []
        self._batch_bytes = 0
        self._chars = 0

    def write(self, record: dict[str, Any]) -> None:
        self._rows.append(record)
        self._chars += sum(len(value) for value in record.values() if isinstance(value, str))
        if len(self._rows) >= BATCH_ROWS or self._chars >= BATCH_CHARS:
            self._to_batch()
            if self._batch_bytes >= self.row_group_bytes:
                self._write_group()

    def flush(self) -> None:
        self._to_batch()
        self._write_group()
        self._writer.close()

    def _to_batch(self) -> None:
        if self._rows:
            batch = pa.RecordBatch.from_pylist(self._rows, schema=self.schema)
            self._batches.append(batch)
            self._batch_bytes += batch.nbytes
            self._rows, self._chars = [], 0

    def _write_group(self) -> None:
        if self._batches:
            table = pa.Table.from_batches(self._batches, schema=self.schema)
            self._writer.write_table(table, row_group_size=table.num_rows)
            self._batches, self._batch_bytes = [], 0


class WriteLabeled(beam.PTransform):
    """A run's labeled rows into its staging folder's partitions for ``date``, one folder per source:
    ``labeled/source=<source>/date=<date>/part-<run_id>-SSSSS-of-NNNNN.parquet``; out come the files' paths.

    One write with a destination per source (``fileio.WriteToFiles``), which writes each row where it is labeled:
    a ``WriteToParquet`` per source cost about 0.4 s more of every run (three writes, each with its own set-up,
    grouping and finalisation stages). fileio moves its files into one folder, so they land in
    ``LABELED_WRITTEN_DIR`` and :func:`place_labeled` moves each into its partition.
    """

    def __init__(self, staging: str, schema: pa.Schema, date: str, run_id: str) -> None:
        super().__init__()
        self.staging = staging
        self.schema = file_schema(schema, LABELED_PARTITION_KEYS)
        self.date = date
        self.run_id = run_id

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        schema, run_id = self.schema, self.run_id

        def file_name(window: Any, pane: Any, shard: int, shards: int, compression: str, source: str) -> str:
            return f"{source}-part-{run_id}-{shard:05d}-of-{shards:05d}.parquet"

        written = FileSystems.join(self.staging, LABELED_WRITTEN_DIR)
        files = rows | fileio.WriteToFiles(
            written, file_naming=file_name, destination=lambda row: row["source"],
            sink=lambda source: ParquetRowsSink(schema, ROW_GROUP_BYTES),
            temp_directory=StaticValueProvider(str, FileSystems.join(self.staging, LABELED_TEMP_DIR)))
        return files | "IntoPartitions" >> beam.Map(place_labeled, written, self.staging, self.date)


def place_labeled(result: fileio.FileResult, written: str, staging: str, date: str) -> str:
    """Move a labeled file ``fileio.WriteToFiles`` reports written into its source's partition; its new path. A
    retried step finds it moved already; a file in neither place is an error (fileio only logs a failed move
    from its temporary folder, as a possible retry, which would lose those rows unseen)."""
    source, name = result.file_name.split("-", 1)
    target = FileSystems.join(staging, *labeled_parts(source, date), name)
    if FileSystems.exists(target):
        return target
    moved = FileSystems.join(written, result.file_name)
    if not FileSystems.exists(moved):
        raise OSError(f"labeled file {result.file_name} was not written into {written}")
    if is_url(target):  # an object store has no folders to make, and no atomic rename either way
        FileSystems.rename([moved], [target])
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(moved, target)
    return target


class WriteDeadLetters(beam.PTransform):
    """A run's dead-letter rows into its staging folder's dead-letter partition for ``date``, a file per source:
    ``<source>-<run_id>-SSSSS-of-NNNNN.parquet``.

    One write with a destination per source (``fileio.WriteToFiles``), where a ``WritePartition`` per source
    cost about a second of every run, idle or not (four Beam writes: set-up, grouping and finalisation stages
    each). Its temporary files go to ``DEAD_LETTER_TEMP_DIR`` in the staging folder, which the commit removes.
    """

    def __init__(self, staging: str, date: str, run_id: str) -> None:
        super().__init__()
        self.folder = FileSystems.join(staging, *dead_letter_parts(date))
        self.temp_folder = FileSystems.join(staging, DEAD_LETTER_TEMP_DIR)
        self.run_id = run_id

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        schema, run_id = file_schema(DEAD_LETTER_SCHEMA, DEAD_LETTER_PARTITION_KEYS), self.run_id

        def file_name(window: Any, pane: Any, shard: int, shards: int, compression: str, prefix: str) -> str:
            return f"{prefix}{run_id}-{shard:05d}-of-{shards:05d}.parquet"

        written = rows | fileio.WriteToFiles(
            self.folder, file_naming=file_name, destination=lambda row: dead_letter_prefix(row["source"]),
            sink=lambda prefix: ParquetRowsSink(schema), shards=1,
            temp_directory=StaticValueProvider(str, self.temp_folder))  # fileio calls .get() on it
        return written | "CheckMoved" >> beam.Map(moved_into, self.folder)


def moved_into(result: fileio.FileResult, folder: str) -> str:
    """The path of a file ``fileio.WriteToFiles`` reports written; an error if it is not there. fileio only logs a
    failed move from its temporary folder (as a possible retry), which would lose those dead letters unseen."""
    path = FileSystems.join(folder, result.file_name)
    if not FileSystems.exists(path):
        raise OSError(f"dead-letter file {result.file_name} was not moved into {folder}")
    return path


def parquet_rows(folder: Path, pattern: str = "*.parquet") -> int:
    """Rows of the files of a partition folder (those matching ``pattern``), from Parquet footers only."""
    return sum(pq.ParquetFile(path).metadata.num_rows for path in sorted(folder.glob(pattern)))


def _trash(output: Path, staging: Path, target: Path) -> Path:
    """Where the partition ``target`` of ``output`` waits to be deleted once replaced (see ``TRASH_DIR``)."""
    return staging / TRASH_DIR / target.relative_to(output)


def _exchange(staged: Path, target: Path) -> bool:
    """Swap two existing folders in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    False where the system or file system cannot; the caller then falls back to two renames.
    """
    renameat2 = getattr(_LIBC, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(staged), _AT_FDCWD, os.fsencode(target), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(staged), None, str(target))


def _file_names(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()} if folder.is_dir() else set()


def _apply_step(staged: Path, target: Path, trash: Path, files: list[str] | None) -> None:
    """Put the staged partition (holding ``files``) in place of ``target``; None removes ``target``.

    Where the file system allows, old and new are exchanged atomically, so readers always see a whole
    partition; otherwise two renames leave it briefly absent, never partial. Replaying a step that
    already happened changes nothing: the target already holds exactly ``files``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    trash.parent.mkdir(parents=True, exist_ok=True)
    if files is None:
        if target.exists():
            os.rename(target, trash)
    elif _file_names(target) == set(files):
        if staged.exists():
            os.rename(staged, trash)  # the old partition, left here by an exchange
    elif staged.exists():
        if target.exists() and _exchange(staged, target):
            os.rename(staged, trash)
        else:
            if target.exists():
                os.rename(target, trash)
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


def staged_sources(output: str | Path, run_id: str, date: str) -> set[str]:
    """The sources a run staged rows or dead letters for (``unknown`` for dead letters of unknown files): what it
    read, where the runner reports no metrics to count it by."""
    staging = staging_root(output, run_id)
    labeled = {source for source in SOURCES if parquet_rows(labeled_partition(staging, source, date)) > 0}
    dead = dead_letter_partition(staging, date)
    return labeled | {dead_letter_source(path.name) for path in dead.glob("*.parquet")
                      if pq.ParquetFile(path).metadata.num_rows > 0}


def _link_or_copy(existing: Path, new: Path) -> None:
    """A second name for a kept dead-letter file in the partition being built: a hard link, or a copy where the
    file system has none (GCS FUSE and other object-store mounts refuse ``link``, which failed the commit)."""
    try:
        os.link(existing, new)
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            raise
        shutil.copy2(existing, new)


_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV, errno.EMLINK})
"""``link`` errors that mean the file system (or this pair of places) cannot hard-link, not that the file is
missing or unreadable."""


def commit_run(output: str | Path, run_id: str, date: str, owned_sources: Iterable[str]) -> dict[str, Any]:
    """Swap a successful run's staged partitions in for the sources it owns (``unknown`` for dead letters of
    unknown files): an owned source the run did not stage is removed. Returns per-source counts."""
    staging = staging_root(output, run_id)
    owned = set(owned_sources)
    labeled_counts: dict[str, int] = {}
    swaps: list[tuple[Path, Path, str | None]] = []  # staged, target, source (None: the dead letters)
    for source in SOURCES:
        staged = labeled_partition(staging, source, date)
        _drop_empty_files(staged)
        labeled_counts[source] = parquet_rows(staged) if staged.exists() else 0
        if source in owned:
            swaps.append((staged, labeled_partition(output, source, date), source))
    staged_dead = dead_letter_partition(staging, date)
    _drop_empty_files(staged_dead)
    dead_counts: Counter[str] = Counter()
    for path in sorted(staged_dead.glob("*.parquet")) if staged_dead.exists() else ():
        dead_counts[dead_letter_source(path.name)] += pq.ParquetFile(path).metadata.num_rows
    target = dead_letter_partition(output, date)
    replaced = tuple(dead_letter_prefix(source) for source in owned)
    swaps.append((staged_dead, target, None))
    with _commit_lock(output, date):  # the other sources' dead letters kept must be the ones the swap replaces
        if target.exists():
            for kept in target.glob("*.parquet"):
                if not kept.name.startswith(replaced):
                    staged_dead.mkdir(parents=True, exist_ok=True)
                    _link_or_copy(kept, staged_dead / kept.name)
        journal = {"run_id": run_id, "date": date, "owned": sorted(owned), "output": str(Path(output)), "steps": [
            {"staged": str(staged), "target": str(target), "trash": str(_trash(Path(output), staging, target)),
             "files": sorted(_file_names(staged)) if staged.exists() else None,
             "source": source} for staged, target, source in swaps]}
        _write_json(staging / COMMIT_JOURNAL, journal)
        for source in owned:
            _record_commit(output, date, source, run_id)
        _apply_journal(journal)
    shutil.rmtree(staging, ignore_errors=True)
    return {"labeled": labeled_counts, "dead_letter": dict(dead_counts)}


def _commit_lock(output: str | Path, date: str) -> contextlib.AbstractContextManager[None]:
    """Hold the date's commit lock (``COMMIT_LOCK``): one commit or roll-forward into a date at a time. Each builds
    the dead-letter partition every source shares from the files it finds there, so two runs of other sources
    committing at once (two ad-hoc runs, emails and posts) dropped the dead letters of whichever swapped first."""
    return file_lock(Path(output) / COMMITS_DIR / date / COMMIT_LOCK)


_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
"""What ``flock`` answers on a filesystem that keeps no locks (NFS without its lock daemon, some FUSE mounts)."""


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created with its folder), released when the file is closed, also
    by a killed process. Where the filesystem keeps no locks, the work goes on unlocked with a warning: a run
    alone, the usual case, needs none, and refusing would fail every commit there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as error:
            if error.errno not in _NO_LOCKS:
                raise
            log.warning("%s: this filesystem keeps no locks (%s); going on unlocked, so runs that write the same "
                        "date must not overlap", path, error.strerror)
        yield


def _apply_journal(journal: dict[str, Any], output: Path | None = None) -> None:
    """Replay a commit; given the ``output`` (recovery), leave alone what a later run has committed since.

    A step's trash is deleted even then: journals written before ``TRASH_DIR`` name a hidden folder beside the
    partition, which a run killed after its swap left in the dataset.
    """
    for step in journal["steps"]:
        staged, target, trash = Path(step["staged"]), Path(step["target"]), Path(step["trash"])
        if output is None:
            _apply_step(staged, target, trash, step["files"])
        elif "source" in step and step["source"] is None:  # the dead letters, which every source's runs share
            _merge_dead_letters(journal, output, staged, target, trash, step["files"])
        elif _superseded(journal, output, step.get("source"), target):
            shutil.rmtree(trash, ignore_errors=True)
        else:
            _apply_step(staged, target, trash, step["files"])


def _newest_run(partition: Path) -> str:
    """The latest run id among a partition's files (ids start with a UTC timestamp); empty if none."""
    ids = [path.stem.split("-", 1)[1].rsplit("-", 3)[0] for path in partition.glob("*.parquet")]
    return max(ids, default="")


def _commit_record(output: str | Path, date: str, source: str) -> Path:
    return Path(output) / COMMITS_DIR / date / f"{source}.json"


def _committed_by(output: str | Path, date: str, source: str) -> str:
    """The run that last committed ``source`` on ``date`` (``COMMITS_DIR``); empty if none did since it exists."""
    try:
        return str(json.loads(_commit_record(output, date, source).read_text(encoding="utf-8"))["run_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _record_commit(output: str | Path, date: str, source: str, run_id: str) -> None:
    """Note that ``run_id`` commits ``source`` on ``date``, unless a later run (ids sort by start) already has."""
    if _committed_by(output, date, source) < run_id:
        _write_json(_commit_record(output, date, source), {"run_id": run_id, "date": date, "source": source})


def _superseded(journal: dict[str, Any], output: Path, source: str | None, target: Path) -> bool:
    """Whether a run later than the journal's has committed this labeled partition, with files or by removing it.

    Journals written before ``COMMITS_DIR`` name no source: only the partition's files can tell then.
    """
    later = _committed_by(output, journal["date"], source) if source else ""
    return max(later, _newest_run(target)) > journal["run_id"]


def _merge_dead_letters(journal: dict[str, Any], output: Path, staged: Path, target: Path, trash: Path,
                        files: list[str] | None) -> None:
    """Roll a dead run's dead letters forward into the partition every source's runs share, file by file:

    - a source a later run has committed since: the partition's files (that run's, or none if it removed them);
    - a source the dead run owned: its own files (none if it had none: it removes the old ones);
    - any other: the partition's files, or the dead run's copy of them if its swap took the partition away.

    Once the run's swap happened (the staged folder no longer holds its files), later runs built on it: nothing
    to do. A journal written before ``COMMITS_DIR`` names no owned sources and is left to the file check.
    """
    if files is not None and _file_names(staged) != set(files):
        if staged.exists():  # the partition the swap replaced, left by an exchange
            os.rename(staged, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return
    run_id, owned = journal["run_id"], set(journal["owned"])
    later: dict[str, bool] = {}  # source -> committed by a later run since

    def from_dead_run(file_name: str) -> bool:
        source = dead_letter_source(file_name)
        if source not in later:  # one read of the source's commit record, however many files it has
            later[source] = _committed_by(output, journal["date"], source) > run_id
        return not later[source] and (source in owned or not target.is_dir())

    merged = staged.with_name(f"{staged.name}.merged")
    shutil.rmtree(merged, ignore_errors=True)
    merged.mkdir(parents=True)
    for folder, dead_run_files in ((target, False), (staged, True)):
        for path in folder.glob("*.parquet") if folder.is_dir() else ():
            if from_dead_run(path.name) == dead_run_files:
                _link_or_copy(path, merged / path.name)
    names = sorted(_file_names(merged))
    if not names:
        merged.rmdir()
    _apply_step(merged, target, trash, names or None)


def claim_staging(output: str | Path, run_id: str, remote: str | None = None) -> Path:
    """Create the run's staging folder with its owner (host and pid), so cleanup can tell when it died, and the
    workers' remote staging folder if they have one (:func:`remote_staging`), so cleanup can empty it too."""
    staging = staging_root(output, run_id)
    staging.mkdir(parents=True, exist_ok=True)
    _write_json(staging / OWNER_FILE, {"host": socket.gethostname(), "pid": os.getpid(),
                                       "process": process_identity(os.getpid()), "started": time.time(),
                                       "worker_staging": remote})
    return staging


def process_identity(pid: int) -> str | None:
    """What tells process ``pid`` from a later one given the same pid: the boot and the clock tick it started at
    (Linux ``/proc``, unaffected by changes of the wall clock); None where there is no ``/proc`` or no such process.

    A container restarted in place keeps its host name and starts its pids afresh, so its next run often gets the
    pid of the run that died in it."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return None
    fields = _stat_fields(pid)
    return f"{boot}/{fields[19]}" if fields else None  # field 22 of proc(5), counted after the name's parenthesis


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (its state first); None where unreadable."""
    try:
        return Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace").rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _is_zombie(pid: int) -> bool:
    """Whether ``pid`` has exited but is not yet collected by its parent (a scheduler that runs ``undertone run``
    and has not waited for it): ``kill(pid, 0)`` still succeeds, so the dead run looked alive (Linux ``/proc``)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[:1] == ["Z"]


def _owner_is_dead(staging: Path, stale_after_s: float) -> bool:
    owner_file = staging / OWNER_FILE
    try:
        owner = json.loads(owner_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return time.time() - staging.stat().st_mtime > stale_after_s
    if owner.get("host") == socket.gethostname():
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        if _is_zombie(int(owner["pid"])):  # exited; its parent has not collected it yet
            return True
        recorded, current = owner.get("process"), process_identity(int(owner["pid"]))
        return recorded is not None and current is not None and current != recorded  # the pid was given again
    return time.time() - float(owner.get("started", 0)) > stale_after_s


@dataclass(frozen=True)
class Recovery:
    """What :func:`recover_staging` did with a dead run's staging folder."""

    action: str
    """rolled_forward (its journaled commit was completed) or discarded (it died before its commit)."""
    logical_date: str | None = None
    """The date a rolled-forward run committed into: its aggregates no longer match its partitions."""


def recover_staging(output: str | Path, stale_after_s: float = STALE_AFTER_S) -> dict[str, Recovery]:
    """Finish or discard the staging folders of dead runs; returns what was done, by run id.

    A dead run with a commit journal had finished its Beam job and started swapping: its swap is
    completed (never over a partition a later run wrote), it gets a manifest (:func:`_recovered_manifest`) and
    its date stays incomplete. Without a journal its output is discarded. The caller recomputes the aggregates
    of a rolled-forward date, which the dead run's flow never got to.
    """
    root = Path(output) / STAGING_DIR
    actions: dict[str, Recovery] = {}
    for staging in sorted(root.iterdir()) if root.is_dir() else ():
        if not staging.is_dir() or not _owner_is_dead(staging, stale_after_s):
            continue
        journal_file = staging / COMMIT_JOURNAL
        if journal_file.is_file():
            journal = _rebased(json.loads(journal_file.read_text(encoding="utf-8")), Path(output))
            with _commit_lock(output, journal["date"]):
                _apply_journal(journal, output=Path(output))
            if not manifest_path(output, journal["run_id"]).exists():  # there: it only failed to remove staging
                write_manifest(output, journal["run_id"], _recovered_manifest(output, journal))
            clear_date_marker(output, journal["date"])  # a run outside the flows withdrew none
            actions[staging.name] = Recovery("rolled_forward", journal["date"])
        else:
            actions[staging.name] = Recovery("discarded")
        _discard_remote_of(staging)
        shutil.rmtree(staging, ignore_errors=True)
    return actions


def _rebased(journal: dict[str, Any], output: Path) -> dict[str, Any]:
    """The journal with its paths below ``output`` as the recovering run names it: a run given a relative output
    (``--output out``) journals paths relative to its working folder, which the recovering run need not share.
    Journals written before the output was recorded keep their paths."""
    written = journal.get("output")
    if written is None:
        return journal

    def below_output(path: str) -> str:
        return str(output / Path(path).relative_to(written))

    steps = [{**step, **{key: below_output(step[key]) for key in ("staged", "target", "trash")}}
             for step in journal["steps"]]
    return {**journal, "steps": steps}


def _recovered_manifest(output: str | Path, journal: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a run that died mid-commit, once rolled forward: its rows per source as its committed
    files' footers count them (none where a later run has replaced the partition since). Its input counts and
    options died with it, so it cannot be reconciled."""
    run_id, date = journal["run_id"], journal["date"]
    labeled = {source: parquet_rows(labeled_partition(output, source, date), f"part-{run_id}-*.parquet")
               for source in SOURCES}
    dead: Counter[str] = Counter()
    for path in dead_letter_partition(output, date).glob(f"*-{run_id}-*.parquet"):
        dead[dead_letter_source(path.name)] += pq.ParquetFile(path).metadata.num_rows
    counts = {source: {"labeled": labeled.get(source, 0), "dead_letter": dead[source]}
              for source in sorted({*labeled, *dead}, key=_source_order) if labeled.get(source) or dead[source]}
    return {
        "run_id": run_id,
        "logical_date": date,
        "status": "recovered",
        "recovered_at": datetime.now(UTC).isoformat(),
        "counts": counts,
        "totals": totals(counts, ("labeled", "dead_letter")),
        "reconciled": None,
        "outputs": {
            "labeled": [str(labeled_partition(output, source, date)) for source in SOURCES if labeled[source]],
            "dead_letter": str(dead_letter_partition(output, date)),
        },
    }


def _discard_remote_of(staging: Path) -> None:
    """Empty a dead run's remote staging folder, if it had one (best effort: a bucket rule can sweep the rest)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        remote = json.loads((staging / OWNER_FILE).read_text(encoding="utf-8"))["worker_staging"]
        if remote and is_url(remote):
            try:
                discard_remote(remote)
            except Exception as error:  # noqa: BLE001 - credentials or network: the local cleanup goes on
                log.warning("could not empty %s, the staging folder of dead run %s: %s", remote, staging.name, error)


def _write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write JSON atomically: a synced temporary file renamed over ``path``. The temporary file is the thread's:
    named by the process alone, two backfill days rolling the same dead run forward at once wrote one file, and
    the second rename failed its day."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_native_id()}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(payload, indent=2, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def date_marker(output: str | Path, date: str) -> Path:
    return Path(output) / DATES_DIR / f"{date}.json"


def mark_date_complete(output: str | Path, date: str, record: dict[str, Any]) -> Path:
    """Record that every input of ``date`` was processed, by which run (backfills skip such dates)."""
    return _write_json(date_marker(output, date), {"date": date, "status": "complete", **record})


def read_date_marker(output: str | Path, date: str) -> dict[str, Any] | None:
    """The completion record of ``date``, or None if the date was never completed (or is being redone)."""
    try:
        return json.loads(date_marker(output, date).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def clear_date_marker(output: str | Path, date: str) -> None:
    """Withdraw a date's completion record before redoing it, so a run that dies leaves it incomplete."""
    date_marker(output, date).unlink(missing_ok=True)


def manifest_path(output: str | Path, run_id: str) -> Path:
    return Path(output) / RUNS_DIR / f"{run_id}.json"


def write_manifest(output: str | Path, run_id: str, manifest: dict[str, Any]) -> Path:
    """Write ``_runs/<run_id>.json`` atomically (temp file, then rename)."""
    return _write_json(manifest_path(output, run_id), manifest)


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
