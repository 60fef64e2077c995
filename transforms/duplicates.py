"""Exact duplicates within a run: marked with the id of their first occurrence, never dropped.

Two rows are duplicates when they come from the same source and their written text is identical (a retweet, a
review pasted twice, the same mail in two folders; with ``redact_pii``, identical once redacted). "First" is the
smallest ``(doc_id, input_ref)`` of the group, so the mark does not depend on file order or on how the runner
split the work.

Duplicates are found after the labeled files are written, from the files themselves (:class:`MarkDuplicates`):
an 8-byte fingerprint of every row's text, held in one array per file, picks out the texts that occur more than
once, only those rows are read again and grouped by their full text, and :func:`mark_file` fills
``duplicate_of`` in the few files that hold one. Documents never wait for the marks. Each file read gives its
freed memory back to the OS before the next (:func:`release_freed_memory`): read one after another, they left
54 MiB more resident at the end of a 25,000-document run (946 → 1,000 MiB with the aggregates, against 949 →
950), close to the model stage's peak. Arrow decodes in the calling thread (``use_threads=False``): its own
threads allocate from glibc arenas whose free top ``malloc_trim`` does not release (10 row groups of 8 MB left
95 MiB resident that way, 5 MiB this way). Grouping ``(text key,
row)`` pairs in the pipeline instead held about 500 bytes a document in Beam's local runner (its combining table
and shuffle keep them as Python objects) for the whole model stage; the fingerprints cost 8 bytes a document, at
the end of the run only. Grouping the documents themselves, earlier, held the whole corpus.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import posixpath
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import PurePath

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from models.machine import release_freed_memory
from transforms.records import Document
from transforms.sinks import is_url

RowRef = tuple[str, str]
"""A labeled row's identity: its ``doc_id`` and ``input_ref`` (one record read twice has one doc_id, two refs)."""


def row_ref(document: Document) -> RowRef:
    return document["doc_id"], document["input_ref"]


SCAN_ROWS = 1024
"""Rows read at a time to fingerprint or compare texts: marking holds a batch of texts (a few MiB of email
bodies), not a file's or a row group's."""


def text_fingerprint(text: bytes | memoryview) -> int:
    """A 64-bit hash of a text's UTF-8 bytes: equal texts share it; a rare unequal pair that does too is told
    apart by :func:`duplicate_marks`, which compares full digests of the candidates."""
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def text_digest(text: bytes | memoryview) -> bytes:
    return hashlib.sha256(text).digest()


def utf8_values(texts: pa.Array) -> Iterator[memoryview]:
    """Each value of a string array as a view of its UTF-8 bytes in Arrow's buffer. Hashing these makes no
    Python string per row: as ``str``, 25,000 labeled texts took 48 MiB more at the end of a run, an email
    with one character outside Latin-1 costing 2-4 bytes a character."""
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        texts = texts.cast(pa.large_string())
    _, offsets, data = texts.buffers()
    width = np.dtype(np.int64 if pa.types.is_large_string(texts.type) else np.int32)
    ends = np.frombuffer(offsets, dtype=width, count=len(texts) + 1, offset=texts.offset * width.itemsize).tolist()
    values = memoryview(data if data is not None else b"")
    for start, end in itertools.pairwise(ends):
        yield values[start:end]


def parquet_file(path: str) -> pq.ParquetFile:
    """A written labeled file: a local path read directly, a remote one (workers' staging in an object store,
    see :func:`transforms.sinks.remote_staging`) through Beam's file systems, which hold the workers' credentials."""
    if not is_url(path):
        return pq.ParquetFile(path)
    return pq.ParquetFile(FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED))


def id_and_text_fingerprints(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Fingerprints of a labeled file's ``doc_id`` and text in row order, ``SCAN_ROWS`` at a time (16 bytes a row)."""
    ids: list[np.ndarray] = []
    texts: list[np.ndarray] = []
    for batch in parquet_file(path).iter_batches(SCAN_ROWS, columns=["doc_id", "text"], use_threads=False):
        for column, parts in ((batch.column(0), ids), (batch.column(1), texts)):
            parts.append(np.fromiter(map(text_fingerprint, utf8_values(column)), dtype=np.uint64,
                                     count=batch.num_rows))
    release_freed_memory()
    empty = np.empty(0, dtype=np.uint64)
    return (np.concatenate(ids) if ids else empty), (np.concatenate(texts) if texts else empty)


FileFingerprints = tuple[str, np.ndarray, np.ndarray]
"""A labeled file's path with its ``doc_id`` and text fingerprints."""


def source_fingerprints(paths: Iterable[str]) -> dict[str, list[FileFingerprints]]:
    """Per source partition, every labeled file's fingerprints, read once for both :func:`duplicate_marks` and
    :func:`reused_ids` (duplicates never cross sources)."""
    by_source: dict[str, list[FileFingerprints]] = defaultdict(list)
    for path in sorted(paths):
        by_source[partition_source(path)].append((path, *id_and_text_fingerprints(path)))
    return dict(by_source)


def partition_source(path: str) -> str:
    """The ``source=`` partition a labeled file lies in (duplicates never cross sources)."""
    return next((part for part in PurePath(path).parts if part.startswith("source=")), "")


def duplicate_marks(fingerprints: Mapping[str, list[FileFingerprints]]) -> dict[str, dict[RowRef, str]]:
    """Per labeled file that holds a repeated row (``fingerprints`` from :func:`source_fingerprints`):
    ``(doc_id, input_ref) → doc_id of the first`` for each of its repeats (files without one are not listed, so
    nothing reads them again)."""
    marks: dict[str, dict[RowRef, str]] = defaultdict(dict)
    for files in fingerprints.values():
        values, counts = np.unique(np.concatenate([texts for _, _, texts in files]), return_counts=True)
        repeated = values[counts > 1]
        if not len(repeated):
            continue
        rows_of_text: dict[bytes, list[RowRef]] = defaultdict(list)
        file_of: dict[RowRef, str] = {}
        for path, _, prints in files:
            for ref, digest in candidate_digests(path, np.isin(prints, repeated)):
                rows_of_text[digest].append(ref)
                file_of[ref] = path
            release_freed_memory()  # here, not in the generator, whose frame still holds its last batch
        for refs in rows_of_text.values():
            for ref, first in marks_of_group(refs):
                marks[file_of[ref]][ref] = first
    return dict(marks)


def candidate_digests(path: str, wanted: np.ndarray) -> Iterator[tuple[RowRef, bytes]]:
    """``((doc_id, input_ref), sha256 of the text)`` of the rows of a file that ``wanted`` (a mask in row
    order) selects, ``SCAN_ROWS`` at a time."""
    if not wanted.any():
        return
    start = 0
    for batch in parquet_file(path).iter_batches(SCAN_ROWS, columns=["doc_id", "input_ref", "text"],
                                                      use_threads=False):
        picked = np.flatnonzero(wanted[start:start + batch.num_rows])
        start += batch.num_rows
        if len(picked):
            rows = batch.take(pa.array(picked))
            refs = zip(rows["doc_id"].to_pylist(), rows["input_ref"].to_pylist(), strict=True)
            yield from zip(refs, map(text_digest, utf8_values(rows["text"])), strict=True)


def marks_of_group(refs: Iterable[RowRef]) -> Iterator[tuple[RowRef, str]]:
    """``(row, doc_id of the first)`` for every row of one text but its first, the smallest reference."""
    ordered = sorted(refs)
    first_doc_id = ordered[0][0]
    for ref in ordered[1:]:
        yield ref, first_doc_id


def mark_file(path: str, marks: Mapping[RowRef, str]) -> bool:
    """Fill ``duplicate_of`` in one labeled Parquet file; whether it held a duplicate.

    One row group at a time, so memory stays within a row group however large the file; the new file replaces
    the old in one rename, so a retried step finds either and writes the same result.
    """
    if not marks:
        return False
    source = parquet_file(path)
    refs = (source.read_row_group(index, columns=["doc_id", "input_ref"], use_threads=False)
            for index in range(source.num_row_groups))
    if not any(any(firsts_of(group, marks)) for group in refs):
        return False
    column = source.schema_arrow.get_field_index("duplicate_of")
    partial = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.marking")
    with ExitStack() as stack:  # closes the writer (its footer), then a remote file's stream
        where = stack.enter_context(FileSystems.create(partial)) if is_url(path) else partial
        writer = stack.enter_context(pq.ParquetWriter(where, source.schema_arrow, compression="zstd"))
        for index in range(source.num_row_groups):
            group = source.read_row_group(index, use_threads=False)
            values = pa.array(firsts_of(group, marks), pa.string())
            writer.write_table(group.set_column(column, group.schema.field(column), values),
                               row_group_size=max(group.num_rows, 1))
    if is_url(path):  # an object store's rename is a copy over the old object, then a delete
        FileSystems.rename([partial], [path])
    else:
        os.replace(partial, path)
    return True


def firsts_of(rows: pa.Table, marks: Mapping[RowRef, str]) -> list[str | None]:
    """``duplicate_of`` for ``rows`` (a table with ``doc_id`` and ``input_ref``): the first's doc_id for a marked
    row, else None."""
    return [marks.get(ref) for ref in zip(rows["doc_id"].to_pylist(), rows["input_ref"].to_pylist(), strict=True)]


DUPLICATES_METRICS = "undertone_duplicates"
"""Beam counter namespace of :class:`MarkDuplicates`: ``reused_ids_<source>``, read into the run manifest."""


def reused_ids(fingerprints: Mapping[str, list[FileFingerprints]]) -> dict[str, int]:
    """Per source, the doc_ids that rows of different texts share: a source id used twice (a review export's
    repeated id, two mails with one Message-ID), which ``duplicate_of`` cannot show (the texts differ) and which a
    dashboard keyed on doc_id would count once. Told by 8-byte fingerprints (a false match is a 1-in-2^64 chance)."""
    counts: dict[str, int] = {}
    for source, files in fingerprints.items():
        pairs = np.unique(np.stack([np.concatenate([ids for _, ids, _ in files]),
                                    np.concatenate([texts for _, _, texts in files])], axis=1), axis=0)
        _, texts_per_id = np.unique(pairs[:, 0], return_counts=True)
        if reused := int((texts_per_id > 1).sum()):
            counts[source.removeprefix("source=")] = reused
    return counts


class MarkDuplicates(beam.PTransform):
    """Written labeled files in (their paths); ``duplicate_of`` filled in those holding a repeat, once every file
    is written, and doc_ids shared by different texts counted (:func:`reused_ids`). Out: the paths of the files it
    rewrote."""

    def expand(self, paths: beam.PCollection) -> beam.PCollection:
        return (
            paths
            | "AllFiles" >> beam.combiners.ToList()
            | "Mark" >> beam.FlatMap(mark_files)
        )


def mark_files(paths: Sequence[str]) -> Iterator[str]:
    fingerprints = source_fingerprints(paths)
    for source, count in reused_ids(fingerprints).items():
        Metrics.counter(DUPLICATES_METRICS, f"reused_ids_{source}").inc(count)
    for path, marks in sorted(duplicate_marks(fingerprints).items()):
        rewritten = mark_file(path, marks)
        release_freed_memory()
        if rewritten:
            yield path
