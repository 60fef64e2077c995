"""Find input files, tell what each holds, and turn every record in it into a document or a failure.

Nothing is dropped: a record that cannot be read is a :class:`Failure`, and a file that
cannot be opened or recognised is one failure for the whole file.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import PurePosixPath
from typing import BinaryIO

from transforms.ingest.email import is_maildir_message, is_mbox, looks_binary, parse_email, split_mbox
from transforms.ingest.tabular import TABLE_READERS, ColumnMap, guess_source, row_to_document
from transforms.records import Document, Failure, excerpt

SOURCE_CHOICES = ("auto", "email", "review", "social")
_EXTENSIONS = {
    ".eml": "email", ".msg": "email", ".mbox": "email", ".mbx": "email",
    ".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
    ".parquet": "parquet", ".pq": "parquet",
}
MAILBOX_SUFFIXES = (".mbox", ".mbx")
"""Files of many messages; any other email file is one message (an empty one is a broken message)."""
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zst", ".zstd", ".deflate", ".xz", ".lzma")
"""Suffixes of files Beam decompresses as it reads them (``CompressionTypes.AUTO``; a test keeps the lists equal)."""
_HEADER_LINE = re.compile(rb"^(From |[A-Za-z][A-Za-z0-9-]{1,60}:[ \t])")
SPOOL_BYTES = 64 << 20
"""A decompressed input up to this size stays in memory; a larger one spills to a temporary file."""
MAILDIR_MESSAGE_FOLDERS = ("cur", "new")
"""Where a Maildir keeps delivered messages; ``tmp/`` holds deliveries still being written and is skipped."""


def expand_inputs(inputs: Sequence[str], output: str | None = None) -> list[str]:
    """Files, folders (walked recursively, Maildir included) and globs to a sorted list of files.

    Hidden files and ``_``-prefixed files (``_SUCCESS``, manifests) are skipped, and so is everything
    under ``output``, the run's output root: written inside an input folder, a run's own Parquet would
    be read back as reviews by the next run. A pattern that matches nothing raises, so a typo in a
    schedule fails loudly instead of writing nothing.
    """
    found: set[str] = set()
    for item in inputs:
        if os.path.isdir(item):
            found.update(_walk(item))
            continue
        from apache_beam.io.filesystems import FileSystems  # see _open: the ingest workers never expand inputs

        matches = [m.path for result in FileSystems.match([item]) for m in result.metadata_list]
        if not matches:
            raise FileNotFoundError(f"input {item!r} matches no file")
        found.update(m for m in matches if not PurePosixPath(m).name.startswith((".", "_")) and not _in_maildir_tmp(m))
    return sorted(file for file in found if output is None or not _is_under(file, output))


def _is_under(path: str, root: str) -> bool:
    if "://" in path or "://" in root:
        return path.startswith(root.rstrip("/") + "/")
    real_root = os.path.realpath(root)
    return os.path.commonpath([os.path.realpath(path), real_root]) == real_root


def is_maildir(folder: str) -> bool:
    """A Maildir has ``cur/`` and ``new/`` (``tmp/`` too, but copies made with git lose empty folders)."""
    return all(os.path.isdir(os.path.join(folder, part)) for part in MAILDIR_MESSAGE_FOLDERS)


def _walk(folder: str) -> Iterator[str]:
    """Files under ``folder``; inside a Maildir only the messages in ``cur/`` and ``new/``.

    A Maildir's own files (``dovecot-uidlist``, ``maildirfolder``) are server state, not mail, and its
    Maildir++ sub-folders (``.Sent``, ``.Archive``) are hidden but hold mail, so they are walked too.
    """
    for root, dirs, files in os.walk(folder):
        if is_maildir(root):
            dirs[:] = sorted(d for d in dirs if d in MAILDIR_MESSAGE_FOLDERS
                             or (d.startswith(".") and is_maildir(os.path.join(root, d))))
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield from (os.path.join(root, f) for f in files if not f.startswith((".", "_")))


def _in_maildir_tmp(path: str) -> bool:
    parent = os.path.dirname(path)
    return os.path.basename(parent) == "tmp" and is_maildir(os.path.dirname(parent))


def detect_format(path: str, head: bytes) -> str | None:
    """email | csv | jsonl | json | parquet from the extension, else from the first bytes."""
    if is_maildir_message(path):
        return "email"
    by_extension = _EXTENSIONS.get(_suffix(path))
    if by_extension:
        return by_extension
    if head.startswith(b"PAR1"):
        return "parquet"
    stripped = head.lstrip()
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith(b"{"):
        return "jsonl"
    if looks_binary(head):
        return None
    if _HEADER_LINE.match(head):
        return "email"
    return None


@contextmanager
def open_input(path: str) -> Iterator[BinaryIO]:
    """A seekable, line-iterable binary handle on ``path``, decompressed when its name says so.

    Beam's ``CompressedFile`` can neither be iterated by line nor wrapped in a text reader, and
    Parquet needs random access, so a compressed input is decompressed into a spooled temporary file.
    """
    with _open(path) as handle:
        if not is_compressed(path):
            yield handle
            return
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spooled:
            shutil.copyfileobj(handle, spooled, 1 << 20)
            spooled.seek(0)
            yield spooled


def is_compressed(path: str) -> bool:
    """Whether Beam decompresses ``path`` as it reads it (by the name's suffix)."""
    return path.lower().endswith(COMPRESSED_SUFFIXES)


def _open(path: str) -> BinaryIO:
    """``path`` opened for reading. A local uncompressed file opens with Python's ``open``, as Beam's local file
    system would open it, so the ingest worker processes, which get only such files, need not import Beam
    (about 110 MiB each); anything else goes through Beam's ``FileSystems``: remote paths, decompression."""
    if "://" not in path and not is_compressed(path):
        return open(path, "rb")
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(path, compression_type=CompressionTypes.AUTO)


def read_path(
    path: str, source: str = "auto", columns: ColumnMap | None = None, hash_addresses: bool = True
) -> Iterator[Document | Failure]:
    """Every record of one file as a document or a failure; never raises for bad content."""
    forced = None if source == "auto" else source
    try:
        with _open(path) as handle:
            head = handle.read(8192)
    except Exception as error:  # noqa: BLE001 - any I/O problem becomes one failure for the file
        yield Failure(forced, path, "read", "unreadable_file", f"cannot open: {error}")
        return
    kind = "email" if forced == "email" else detect_format(path, head)
    if forced in ("review", "social") and kind == "email":
        kind = None
    if kind is None:
        yield Failure(forced, path, "read", "unknown_format",
                      "not a recognised email, CSV, JSON(L) or Parquet file", excerpt(head))
        return
    count = 0
    try:
        with open_input(path) as handle:
            records = _read_emails(handle, path, hash_addresses, head) if kind == "email" else \
                _read_table(handle, path, kind, forced, columns or ColumnMap())
            for record in records:
                count += 1
                yield record
    except Exception as error:  # noqa: BLE001 - a file that breaks mid-way keeps what was read
        where = f"after {count} records" if count else "before any record"
        yield Failure(forced or ("email" if kind == "email" else None), path, "read", "corrupt_file",
                      f"{kind} file unreadable {where}: {type(error).__name__}: {error}")


def _read_emails(handle, path: str, hash_addresses: bool, head: bytes) -> Iterator[Document | Failure]:
    if is_mbox(head):
        for ref, raw in split_mbox(handle, path):
            yield parse_email(raw, ref, hash_addresses)
    elif not head.strip() and _suffix(path) in MAILBOX_SUFFIXES:
        return  # an empty mailbox holds no message, as an empty table holds no row
    else:
        yield parse_email(handle.read(), path, hash_addresses)


def _suffix(path: str) -> str:
    """The extension that names the format, under any compression suffix."""
    name = path.lower()
    for suffix in COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    return PurePosixPath(name).suffix


PENDING_FAILURES = 1_000
"""Bad rows held while a table's source is still unknown (it is told by the first good row's columns);
past this many, they take the source the file name suggests, else review."""


def _read_table(handle, path: str, kind: str, forced: str | None, columns: ColumnMap
                ) -> Iterator[Document | Failure]:
    """A table's rows; bad rows before the first good one wait for the source that row's columns tell."""
    name = PurePosixPath(path).name
    by_name = guess_source((), name) or "review"
    source = forced
    pending: list[Failure] = []
    resolved: dict[tuple[str, ...], ColumnMap] = {}
    for ref, row in TABLE_READERS[kind](handle, path):
        if isinstance(row, Failure):
            if source is None and len(pending) < PENDING_FAILURES:
                pending.append(row)
                continue
            source = source or by_name
            yield from (replace(failure, source=source) for failure in (*pending, row))
            pending.clear()
            continue
        if source is None:
            source = guess_source(row.keys(), name) or "review"
        yield from (replace(failure, source=source) for failure in pending)
        pending.clear()
        keys = tuple(row)
        if keys not in resolved:
            resolved[keys] = columns.resolve(keys)
        yield row_to_document(row, resolved[keys], source, ref)
    yield from (replace(failure, source=by_name) for failure in pending)
