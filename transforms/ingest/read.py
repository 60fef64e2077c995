"""Find input files, tell what each holds, and turn every record in it into a document or a failure.

Nothing is dropped: a record that cannot be read is a :class:`Failure`, and a file that
cannot be opened or recognised is one failure for the whole file.
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import email.utils
import fnmatch
import glob
import itertools
import json
import lzma
import os
import re
import stat
import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from transforms.ingest.email import hash_address, is_maildir_message, is_mbox, looks_binary, parse_email, split_mbox
from transforms.ingest.tabular import (
    TABLE_READERS,
    TITLED_TABLES,
    X_ARCHIVE_DATA,
    X_ARCHIVE_TWEETS,
    ColumnMap,
    activity_post,
    guess_source,
    json_api_resource,
    meta_export_post,
    row_to_document,
)
from transforms.records import EXCERPT_CHARS, Document, Failure, excerpt

SOURCE_CHOICES = ("auto", "email", "review", "social")
FORMAT_EXTENSIONS = {
    ".eml": "email", ".emlx": "email", ".msg": "email", ".mbox": "email", ".mbx": "email",
    ".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
    ".parquet": "parquet", ".pq": "parquet", ".xlsx": "xlsx", ".xlsm": "xlsx",
}
MAILBOX_SUFFIXES = (".mbox", ".mbx")
"""Files of many messages; any other email file is one message (an empty one is a broken message)."""
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zst", ".zstd", ".deflate", ".xz", ".lzma")
"""Suffixes of compressed inputs, read through :data:`DECOMPRESSORS`: those Beam's ``CompressionTypes.AUTO``
decompresses (a test keeps the lists equal)."""
_HEADER_LINE = re.compile(rb"^(From |[A-Za-z][A-Za-z0-9-]{1,60}:[ \t])")
SPOOL_BYTES = 64 << 20
"""A decompressed input up to this size stays in memory; a larger one spills to a temporary file."""
MAILDIR_MESSAGE_FOLDERS = ("cur", "new")
"""Where a Maildir keeps delivered messages; ``tmp/`` holds deliveries still being written and is skipped."""


def expand_inputs(inputs: Sequence[str], output: str | None = None) -> list[str]:
    """Files, folders (walked recursively, Maildir included) and globs to a sorted list of files.

    Hidden files and ``_``-prefixed files (``_SUCCESS``, manifests, uploads in progress) are skipped, and so is
    what a run writes under ``output``, the run's output root (:func:`is_output`): written inside an input folder,
    a run's own Parquet would be read back as reviews by the next run. A file named by its path is read whatever
    its name (``[`` and ``*`` in it are not a pattern). An input that yields no file to read raises, so a typo or
    an empty export in a schedule fails loudly instead of writing nothing.
    """
    found: set[str] = set()
    for item in inputs:
        files = {file for file in _input_files(item) if output is None or not is_output(file, output)}
        if not files:
            kind = "folder" if os.path.isdir(item) else "pattern"
            raise FileNotFoundError(f"input {kind} {item!r} holds no file to read (hidden files, _-prefixed files "
                                    "and the run's output are skipped)")
        found.update(files)
    return one_path_per_file(sorted(found))


def one_path_per_file(paths: list[str]) -> list[str]:
    """``paths`` (sorted) less those naming a file already named (by a symbolic link, a hard link, ``./`` or a
    second spelling): each would be read again, its records labeled twice and counted twice in the manifest. The
    file keeps its plainest name: not a link, then normalised, then the shortest."""
    names: dict[tuple[int, int] | str, list[str]] = {}
    for path in paths:
        identity: tuple[int, int] | str = path
        if "://" not in path:
            with contextlib.suppress(OSError):  # a dangling link keeps its path: reading it reports it
                info = os.stat(path)
                identity = (info.st_dev, info.st_ino)
        names.setdefault(identity, []).append(path)
    return sorted(min(group, key=lambda path: (os.path.islink(path), os.path.normpath(path) != path, len(path), path))
                  for group in names.values())


def _input_files(item: str) -> set[str]:
    if os.path.isfile(item):
        return {item}
    if os.path.isdir(item):
        return set(_walk(item))
    if "://" not in item:
        return _local_matches(item)
    from apache_beam.io.filesystems import FileSystems  # see _open: the ingest workers never expand inputs

    matches = [m.path for result in FileSystems.match([item]) for m in result.metadata_list]
    if not matches:
        raise FileNotFoundError(f"input {item!r} matches no file")
    return {m for m in matches if _matched_file_is_input(m)}


def _local_matches(pattern: str) -> set[str]:
    """The files a local glob matches, and those of the folders it matches (``exports/2026-11-*``): Beam's matcher
    found nothing for a pattern without a folder (``*.csv``) and no file in a matched folder. ``**`` spans folders;
    a hidden name matches only where the pattern spells its dot."""
    matches = _recursive_matches(pattern) if "**" in pattern.split(os.sep) else glob.glob(pattern)
    if not matches:
        raise FileNotFoundError(f"input {pattern!r} matches no file")
    files: set[str] = set()
    for match in matches:
        if os.path.isdir(match):
            files.update(_walk(match))
        elif _matched_file_is_input(match):
            files.add(match)
    return files


_MAGIC = re.compile(r"[*?[]")


def _recursive_matches(pattern: str) -> list[str]:
    """What ``glob.glob(pattern, recursive=True)`` matches, each real folder walked once. ``glob`` follows every
    linked folder under ``**`` with no memory of where it has been: one link back up (``sub/up -> ..``) read the
    tree 40 times over until the kernel's link limit, and two never finished (2^40 paths), hanging the run."""
    parts = pattern.split(os.sep)
    fixed = next(index for index, part in enumerate(parts) if _MAGIC.search(part))
    top = os.sep.join(parts[:fixed]) or (os.sep if pattern.startswith(os.sep) else "")
    wanted = parts[fixed:]
    matches = []
    for relative in _relative_paths(top or os.curdir, hidden=any(part.startswith(".") for part in wanted)):
        if _glob_parts_match(relative, wanted):
            matches.append(os.path.join(top, *relative) if relative else top or os.curdir)
    return matches


def _relative_paths(top: str, hidden: bool) -> Iterator[list[str]]:
    """Every path under ``top`` (itself first, as ``[]``) as its list of names; linked folders are followed, each
    real folder once, so a loop of links ends. Hidden folders are walked only when ``hidden`` (the pattern spells a
    dot): nothing in them can match otherwise, and a glob over a checkout walked all of ``.git``."""
    if not os.path.isdir(top):
        return
    yield []
    visited = {os.path.realpath(top)}
    for root, dirs, files in os.walk(top, followlinks=True):
        base = os.path.relpath(root, top).split(os.sep) if root != top else []
        unvisited = []
        for name in sorted(dirs):
            if name.startswith(".") and not hidden:
                continue
            real = os.path.realpath(os.path.join(root, name))
            if real not in visited:
                visited.add(real)
                unvisited.append(name)
        dirs[:] = unvisited
        yield from ([*base, name] for name in sorted(dirs + files))


def _glob_parts_match(names: list[str], parts: list[str]) -> bool:
    """Whether a path's names match a pattern's parts as ``glob`` reads them: ``**`` is any number of folders, the
    other parts match one name each (``fnmatch``), and a hidden name only a part that spells its dot."""
    if not parts:
        return not names
    part, rest = parts[0], parts[1:]
    if part == "**":
        return any(_glob_parts_match(names[skip:], rest) for skip in range(len(names) + 1)
                   if not any(name.startswith(".") for name in names[:skip]))
    return (bool(names) and (part.startswith(".") or not names[0].startswith("."))
            and fnmatch.fnmatchcase(names[0], part) and _glob_parts_match(names[1:], rest))


def _matched_file_is_input(path: str) -> bool:
    """A file a glob matched, unless hidden, ``_``-prefixed or in a Maildir's ``tmp/`` (as a folder walk skips)."""
    return not PurePosixPath(path).name.startswith((".", "_")) and not _in_maildir_tmp(path)


OUTPUT_FOLDERS = ("labeled", "dead_letter", "aggregates")
"""The folders a run writes below its output root, besides ``_``-prefixed ones (staging, commits, manifests,
reports)."""


def is_output(path: str, output: str) -> bool:
    """Whether ``path`` lies in what a run writes below ``output`` (:data:`OUTPUT_FOLDERS` and ``_``-prefixed
    folders). The rest of an output root is the user's: an output root above the inputs (``--output .``, or the
    daily flow's output root equal to its input root) skipped every input there."""
    if "://" in path or "://" in output:
        root = output.rstrip("/") + "/"
        relative = path[len(root):] if path.startswith(root) else ".."
    else:  # as is_under reads it, each path resolved once
        relative = os.path.relpath(os.path.realpath(path), os.path.realpath(output)).replace(os.sep, "/")
    top = relative.split("/", 1)[0]
    return top in OUTPUT_FOLDERS or top.startswith("_")


def is_under(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or inside it (links resolved; URLs by prefix)."""
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
    A folder that cannot be listed is listed itself, so reading it is a dead letter: skipped, its files vanished
    unseen. A linked sub-folder is walked as well (skipped, its files vanished unseen too), each real folder once, so
    a loop of links ends; but not one that links into ``folder``, whose files the walk reaches by their own names or
    skips as hidden (``samples/by_date -> .by_date``: following it, a run over ``samples/`` read the dated copies
    twice), nor one that links to a folder holding ``folder`` (``up -> ..``), a loop through it.
    """
    unlisted: list[str] = []
    real_top = os.path.realpath(folder)
    walked = {real_top}

    def first_visit(root: str, name: str) -> bool:
        path = os.path.join(root, name)
        real = os.path.realpath(path)
        if real in walked or (os.path.islink(path) and (is_under(real, real_top) or is_under(real_top, real))):
            return False
        walked.add(real)
        return True

    for root, dirs, files in os.walk(folder, onerror=lambda error: unlisted.append(error.filename), followlinks=True):
        if is_maildir(root):
            dirs[:] = sorted(d for d in dirs if (d in MAILDIR_MESSAGE_FOLDERS
                             or (d.startswith(".") and is_maildir(os.path.join(root, d)))) and first_visit(root, d))
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and first_visit(root, d))
        yield from (os.path.join(root, f) for f in files if not f.startswith((".", "_")))
    yield from unlisted


def _in_maildir_tmp(path: str) -> bool:
    parent = os.path.dirname(path)
    return os.path.basename(parent) == "tmp" and is_maildir(os.path.dirname(parent))


def detect_format(path: str, head: bytes) -> str | None:
    """email | csv | jsonl | json | parquet | xlsx | x_archive from the extension, else from the first bytes; a
    ``.json`` file of JSON Lines is jsonl (:func:`_json_lines`)."""
    if is_maildir_message(path):
        return "email"
    by_extension = FORMAT_EXTENSIONS.get(_suffix(path))
    if by_extension == "json" and _json_lines(head):
        return "jsonl"
    if by_extension == "xlsx" and head.startswith(_OLE_COMPOUND):  # encrypted: see unsupported_format
        return None
    if by_extension:
        return by_extension
    if head.startswith(b"PAR1"):
        return "parquet"
    archive = X_ARCHIVE_DATA.match(head)
    if archive and archive.group(1).decode() in X_ARCHIVE_TWEETS:
        return "x_archive"
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


def _json_lines(head: bytes) -> bool:
    """Whether a file's first bytes are JSON Lines: a first line that is a whole JSON object, and more after it.
    Amazon's review dumps (``Electronics_5.json.gz``) and other exporters name JSON Lines ``.json``; read as one
    document, the file was a single ``invalid_json`` dead letter, after the first line's first array (``helpful``,
    ``[2, 3]``) had been read as records. A first line longer than the head cannot be told, and stays JSON."""
    first, newline, rest = head.removeprefix(codecs.BOM_UTF8).lstrip().partition(b"\n")
    if not (newline and rest.strip() and first.startswith(b"{")):
        return False
    try:
        return isinstance(json.loads(first), dict)
    except (ValueError, RecursionError):  # not a whole object: a pretty-printed document's first line, not UTF-8
        return False


def _zstd_decompressor() -> Any:
    import zstandard

    return zstandard.ZstdDecompressor(max_window_size=1 << 31).decompressobj()  # Beam's window bound


DECOMPRESSORS: dict[str, Callable[[], Any]] = {
    ".gz": lambda: zlib.decompressobj(zlib.MAX_WBITS | 16), ".deflate": zlib.decompressobj,
    ".bz2": bz2.BZ2Decompressor, ".xz": lzma.LZMADecompressor, ".lzma": lzma.LZMADecompressor,
    ".zst": _zstd_decompressor, ".zstd": _zstd_decompressor,
}
"""A streaming decompressor per compression suffix: the libraries and settings Beam's ``CompressedFile`` uses."""


class BrokenStreamError(Exception):
    """A compressed input whose stream breaks off, after text that is read: the records before the break are kept."""

    ends_mid_line = False
    """Whether the text decoded before the break ends inside a line (set by :func:`open_input`), so that the last
    row or JSON line read from it is cut in two."""
    last_line = b""
    """The start of the decoded text's last line (set by :func:`open_input`): the raw excerpt of a cut row."""


class TruncatedInputError(BrokenStreamError, EOFError):
    """A compressed input whose stream stops before its end marker: the file was cut short."""


class CorruptInputError(BrokenStreamError, ValueError):
    """A compressed input whose stream is damaged (bytes overwritten, a failed check): it cannot be decoded past
    the damage, and only a verified-block compression (:data:`VERIFIED_BLOCKS`) vouches for the text before it."""

    def __init__(self, suffix: str, decoded: int, error: Exception) -> None:
        self.verified = suffix in VERIFIED_BLOCKS
        kept = (f"the records after it are lost{_block_lost(suffix, 'the damage is in')}" if self.verified else
                f"none of its records is kept: {suffix} checks its text only at the end of a block or stream, so "
                "damaged bytes may have decoded into wrong text before the error")
        super().__init__(f"the {suffix} stream is corrupt after decompressed byte {decoded} "
                         f"({type(error).__name__}: {error}): {kept}")


class TrailingDataError(BrokenStreamError):
    """A compressed input whose last whole stream is followed by bytes that start no stream (appended by an upload
    tool or a script): every record is read, and the bytes are ignored, as ``gzip -d`` ignores them."""

    def __init__(self, suffix: str, ignored: int) -> None:
        super().__init__(f"the {ignored} bytes after its last whole {suffix} stream are no {suffix} stream and were "
                         "ignored")


WHOLE_BLOCKS = {
    ".bz2": "bzip2 decodes whole blocks of up to 900 kB",
    ".zst": "zstd decodes whole blocks of up to 128 kB", ".zstd": "zstd decodes whole blocks of up to 128 kB",
}
"""Compressions whose blocks decode only whole: the text of the block a cut or damage falls in is lost with the
rest, so a file smaller than a block, cut short, gives no record at all (gzip, xz and lzma decode up to the cut)."""
VERIFIED_BLOCKS = {".bz2": "bzip2 checks each block's CRC before giving its text"}
"""Compressions whose decoder gives a block's text only once the block's check has passed. Damaged bytes in the
other compressions can decode, without an error, into wrong text until the decoder stumbles or the stream's final
check fails (gzip: at the end of a member, possibly megabytes later; xz, zstd: at the end of a block or frame), so
nothing decoded from a damaged gzip, xz or zstd stream can be told from the original."""
PIECE_BYTES = 8 << 10
"""Compressed bytes handed to a verified-block decoder at once: one that fails keeps nothing of the call it fails
in, so a damaged bzip2 stream loses the whole blocks that end in the piece the damage is found in."""


def decompressed_chunks(raw: BinaryIO, suffix: str, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
    """The decompressed bytes of ``raw``, compressed as ``suffix`` says; streams that follow one another (gzip
    members, bzip2 streams, zstd frames) are read in turn, as Beam reads them.

    Beam's reader ends quietly where a cut-short file ends, so a truncated ``posts.jsonl.gz`` read as its
    first records and one broken line, the rest of its records gone without a word; here the end of the input
    before the stream's end marker raises :class:`TruncatedInputError`, after every byte before the cut that can be
    decoded (for bzip2 and zstd, those of the whole blocks before it: :data:`WHOLE_BLOCKS`). Damage in the
    middle (bytes overwritten, a failed check) raises :class:`CorruptInputError` after what was decoded before it.

    Bytes after the last whole stream that its decoder refuses as the start of a stream are no damage: zeros (a
    tape's or a block device's padding) are ignored, as ``gzip -d`` ignores them, and anything else raises
    :class:`TrailingDataError` after every record (a gzip file padded with 512 zeros was one ``corrupt_file`` record,
    none of its records kept).
    """
    new_decompressor = DECOMPRESSORS[suffix]
    decompressor = new_decompressor()
    piece_bytes = PIECE_BYTES if suffix in VERIFIED_BLOCKS else chunk_bytes
    decoded = 0
    after_stream, trailing, zeros = False, 0, True  # a stream ended whole, and the bytes since decoded to nothing
    while data := raw.read(chunk_bytes):
        for start in range(0, len(data), piece_bytes):
            piece = data[start:start + piece_bytes]
            while piece:
                if after_stream:
                    trailing, zeros = trailing + len(piece), zeros and not piece.strip(b"\x00")
                try:
                    text = decompressor.decompress(piece)
                except Exception as error:  # each library its own: zlib.error, OSError (bz2), LZMAError, ZstdError
                    if not after_stream:
                        raise CorruptInputError(suffix, decoded, error) from error
                    rest_of_file = itertools.chain([data[start + piece_bytes:]],
                                                   iter(lambda: raw.read(chunk_bytes), b""))
                    for rest in rest_of_file:  # a chunk at a time: trailing bytes may be gigabytes
                        trailing, zeros = trailing + len(rest), zeros and not rest.strip(b"\x00")
                    if not zeros:
                        raise TrailingDataError(suffix, trailing) from error
                    return
                if text:
                    after_stream, trailing, zeros = False, 0, True
                decoded += len(text)
                yield text
                if decompressor.eof:
                    piece, decompressor = decompressor.unused_data, new_decompressor()
                    after_stream, trailing, zeros = True, 0, True
                else:
                    piece = b""
    if not after_stream or not zeros:  # bytes the decoder took as the start of a stream: one that is cut short
        raise TruncatedInputError(f"the {suffix} stream ends before its end marker: the file is cut short"
                                  f"{_block_lost(suffix, 'it is cut in')}")


def _block_lost(suffix: str, where: str) -> str:
    block = WHOLE_BLOCKS.get(suffix)
    return f" ({block}: the text of the block {where} is lost)" if block else ""


def read_head(path: str, size: int = 8192) -> bytes:
    """The first ``size`` bytes of ``path``'s content, decompressed when its name says so; what a cut-short or
    corrupt stream yields before it breaks (reading it all says what is wrong)."""
    with _open(path) as raw:
        if not is_compressed(path):
            return raw.read(size)
        head = b""
        try:
            for piece in decompressed_chunks(raw, compression_suffix(path), chunk_bytes=64 << 10):
                head += piece
                if len(head) >= size:
                    break
        except BrokenStreamError:
            pass  # the head is what came before; reading it all reports the cut, the damage or the trailing bytes
        return head[:size]


@contextmanager
def open_input(path: str) -> Iterator[BinaryIO]:
    """A seekable, line-iterable binary handle on ``path``, decompressed when its name says so.

    A compressed input is decompressed into a spooled temporary file (Parquet needs random access). When its
    stream is cut short, or damaged in a verified-block compression, the caller reads what came before the cut or
    the damage, and :class:`TruncatedInputError` or :class:`CorruptInputError` is raised as it closes the handle,
    so the file's records are kept and the cut or damage is reported after them (as :class:`TrailingDataError` is
    for bytes after the last whole stream); it is raised too in place of an
    error the caller's reader raises, which the cut caused (a Parquet file's footer is at its end, and "magic
    bytes not found" did not say that the file was cut short). Damage to any other compression is raised before
    the caller reads anything: the text before it cannot be trusted.
    """
    with _open(path) as raw:
        if not is_compressed(path):
            yield raw
            return
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spooled:
            broken: BrokenStreamError | None = None
            end = b""  # the decoded text's last bytes but blanks
            last_line = b""
            try:
                for piece in decompressed_chunks(raw, compression_suffix(path)):
                    spooled.write(piece)
                    end = piece.rstrip(b" \t\x00") or end  # NULs: UTF-16's line break is two bytes
                    _, newline, rest = piece.rpartition(b"\n")
                    last_line = (rest if newline else last_line + rest)[:EXCERPT_CHARS * 4]
            except (TruncatedInputError, TrailingDataError) as error:
                broken = error
            except CorruptInputError as error:
                if not error.verified:
                    raise
                broken = error
            if broken is not None:
                broken.ends_mid_line = bool(end) and not end.endswith((b"\n", b"\r"))
                broken.last_line = last_line
            spooled.seek(0)
            try:
                yield spooled
            except Exception as error:
                if broken is None or isinstance(broken, TrailingDataError):  # the text is whole: not what broke
                    raise
                raise broken from error
            if broken is not None:
                raise broken


def is_compressed(path: str) -> bool:
    """Whether ``path`` is read through a decompressor (by the name's suffix)."""
    return path.lower().endswith(COMPRESSED_SUFFIXES)


def compression_suffix(path: str) -> str:
    return next(suffix for suffix in COMPRESSED_SUFFIXES if path.lower().endswith(suffix))


def _open(path: str) -> BinaryIO:
    """``path``'s raw bytes: a local file with Python's ``open``, so that the ingest worker processes need not
    import Beam (about 110 MiB each); a remote one through Beam's ``FileSystems``."""
    if "://" not in path:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a named pipe with no writer would block open
        kind = _special_file_kind(os.fstat(descriptor).st_mode)
        if kind:
            os.close(descriptor)
            raise OSError(f"{path} is {kind}, not a regular file: it is not read (it may never end or never start)")
        os.set_blocking(descriptor, True)  # as a plain open leaves it, for file systems that pass the flag on (FUSE)
        return os.fdopen(descriptor, "rb")
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _special_file_kind(mode: int) -> str | None:
    """What a file that is no regular file is (a folder walk lists named pipes, sockets and devices as files, and
    a symbolic link can point at ``/dev/zero``); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                                         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                                         (stat.S_ISDIR, "a folder")) if test(mode)), "a special file")


_TEXT_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
"""Byte-order marks of the text encodings tables are read in (UTF-32's start with UTF-16's)."""


BINARY_TABLE_MIN_BYTES = 1024
"""Bytes a table file must have before it can be judged binary as a whole: a shorter one is a few lines, each a
record or a dead letter of its own, as for any table. But a CSV's first line is its header, read as names, not as a
record: a NUL byte there says binary whatever the size (a small zip named ``.csv`` has no line break at all, and
read as a header with no row, it vanished without a word)."""


def binary_table(kind: str, head: bytes) -> bool:
    """Whether a file named as a CSV or JSON table holds binary content (an executable or image renamed, a
    database file): one failure for the file, where reading it would give a dead letter per line of garbage.
    Text in UTF-16 or UTF-32 holds NUL bytes: a byte-order mark, or for JSON the NUL pattern by which JSON tells
    its encoding, says it is text."""
    if kind not in ("csv", "jsonl", "json") or head.startswith(_TEXT_BOMS):
        return False
    if kind == "json" and json.detect_encoding(head) != "utf-8":
        return False
    if len(head) < BINARY_TABLE_MIN_BYTES:
        return kind == "csv" and b"\x00" in head.split(b"\n", 1)[0]
    return looks_binary(head)


_OLE_COMPOUND = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_ARCHIVES = {b"7z\xbc\xaf\x27\x1c": "a 7z archive", b"Rar!\x1a\x07": "a RAR archive"}
_OUTLOOK_DATA_FILE = b"!BDN"
"""The start of an Outlook data file (``.pst``, ``.ost``): a mailbox in Microsoft's own format."""


def unsupported_format(path: str, head: bytes) -> tuple[str | None, str] | None:
    """(source, what to do) for a file in a format people drop into an inbox folder that Undertone does not read:
    an Outlook ``.msg`` (an email: it counts as one; a ``.msg`` that is RFC 822 text is read), Office files,
    archives, PDFs. None for anything else."""
    suffix = _suffix(path)
    if head.startswith(_OLE_COMPOUND):
        if suffix == ".msg":
            return "email", ("an Outlook .msg message (OLE compound file), which is not read: save it as .eml, or "
                             "export the mailbox to mbox")
        if suffix in (".xlsx", ".xlsm"):  # Office keeps a password-protected workbook encrypted in such a file
            return None, "a password-protected workbook, which is not read: save it without a password, or as CSV"
        return None, "a legacy Microsoft Office file (OLE compound file), which is not read: save tables as CSV"
    if head.startswith(_OUTLOOK_DATA_FILE):
        return "email", ("an Outlook data file (.pst/.ost), which is not read: export its folders to mbox (Outlook "
                         "cannot; readpst from libpst can) or save its messages as .eml")
    if head.startswith(_ZIP):
        if suffix == ".ods":
            return None, "an OpenDocument spreadsheet, which is not read: save it as .xlsx, or each sheet as CSV"
        return None, "a zip archive, which is not read: unpack it (single files may be .gz, .bz2, .xz or .zst)"
    archive = next((name for magic, name in _ARCHIVES.items() if head.startswith(magic)), None)
    if archive or head[257:262] == b"ustar":
        return None, f"{archive or 'a tar archive'}, which is not read: unpack it"
    if head.startswith(b"%PDF-"):
        return None, "a PDF document, which is not read"
    archive = X_ARCHIVE_DATA.match(head)
    if archive:
        return "social", (f"X archive data of {archive.group(1).decode()!r}, which is not read: of an X (Twitter) "
                      "archive only the tweets (tweets.js, tweets-part1.js, ...) are")
    return None


def read_path(
    path: str, source: str = "auto", columns: ColumnMap | None = None, hash_addresses: bool = True
) -> Iterator[Document | Failure]:
    """Every record of one file as a document or a failure; never raises for bad content."""
    forced = None if source == "auto" else source
    try:
        head = read_head(path)
    except Exception as error:  # noqa: BLE001 - any I/O problem becomes one failure for the file
        yield Failure(forced, path, "read", "unreadable_file", f"cannot open: {error}")
        return
    kind = "email" if forced == "email" else detect_format(path, head)
    if forced in ("review", "social") and kind == "email":
        kind = None
    unsupported = unsupported_format(path, head) if kind in (None, "email") else None
    if kind is None or unsupported:
        told, reason = unsupported or (None, "not a recognised email, CSV, JSON(L) or Parquet file")
        yield Failure(forced or told, path, "read", "unknown_format", reason, excerpt(head))
        return
    if binary_table(kind, head):
        yield Failure(forced, path, "read", "binary", f"binary content in a file named as {kind} (NUL or control "
                      "bytes in its first 4 KiB, no byte-order mark)", excerpt(head))
        return
    count = 0
    told = forced or ("email" if kind == "email" else None)  # a table's source, once its records have told it
    last: list[Document | Failure] = []  # held back one record: a compressed stream that breaks off may cut it
    broken: Exception | None = None
    try:
        with open_input(path) as handle:
            records = _read_emails(handle, path, hash_addresses, head) if kind == "email" else \
                _read_table(handle, path, kind, forced, columns or ColumnMap())
            for record in records:
                told = told or (record.source if isinstance(record, Failure) else record["source"])
                if hash_addresses and kind != "email" and not isinstance(record, Failure):
                    record["author"] = pseudonymised_author(record["author"], record["ingest_notes"])
                if last:
                    count += 1
                    yield last.pop()
                last.append(record)
    except Exception as error:  # noqa: BLE001 - a file that breaks mid-way keeps what was read
        broken = error
    if isinstance(broken, BrokenStreamError):
        yield from _before_the_break(kind, path, told, count, last, broken)
        return
    yield from last
    if broken is not None:
        where = f"after {count + len(last)} records" if count + len(last) else "before any record"
        yield Failure(told, path, "read", "corrupt_file",
                      f"{kind} file unreadable {where}: {type(broken).__name__}: {broken}")


def _before_the_break(kind: str, path: str, source: str | None, count: int, last: list[Document | Failure],
                      broken: BrokenStreamError) -> Iterator[Failure | Document]:
    """The last record read from a compressed stream that broke off, unless the break cut it, then one dead letter
    for the break: ``truncated_file`` for a file cut short, ``corrupt_file`` for one damaged, ``trailing_data`` for
    bytes after its last stream (every record kept). A record the break cut
    is that dead letter (its ref and excerpt), never a labeled half text nor a second dead letter (the ``no_text``
    or ``invalid_json`` its half made)."""
    if isinstance(broken, TrailingDataError):  # the text is whole, and so is its last record
        yield from last
        yield Failure(source, path, "read", "trailing_data", f"{kind} file read whole ({count + len(last)} records), "
                      f"but {broken}")
        return
    error_type = "truncated_file" if isinstance(broken, TruncatedInputError) else "corrupt_file"
    what = f"{kind} file cut short" if error_type == "truncated_file" else f"{kind} file unreadable"
    if last and _cut_by_break(kind, last[0], broken):
        record = last[0]
        ref = record.input_ref if isinstance(record, Failure) else record["input_ref"]
        if kind == "email":
            raw = record.raw_excerpt if isinstance(record, Failure) else excerpt(record["full_text"] or record["text"])
        elif kind == "csv" and not broken.ends_mid_line:  # cut after a line break in a quoted cell: the row so far
            raw = record.raw_excerpt
        else:
            raw = excerpt(broken.last_line)
        yield Failure(source, ref, "read", error_type, f"{what} after {count} whole records; its last record, {ref}, "
                      f"is incomplete and is not labeled: {type(broken).__name__}: {broken}", raw)
        return
    yield from last
    count += len(last)
    lost = " (those after the cut are lost)" if error_type == "truncated_file" else ""
    where = f"after {count} whole records{lost}" if count else "before any record"
    yield Failure(source, path, "read", error_type, f"{what} {where}: {type(broken).__name__}: {broken}")


def _cut_by_break(kind: str, record: Document | Failure, broken: BrokenStreamError) -> bool:
    """Whether the break in a compressed stream cut the last record read before it. A CSV row or JSON line ends at
    a line break, so one is cut when the text stops inside a line (a JSON line whole but for its line break parses,
    and is kept), and a CSV row also when the text stops after a line break inside its quoted cell (the reader's
    ``unclosed_quote``); a message has no end mark, so the last one may have lost lines whatever the text ends
    with; a JSON array's records are built whole, and what the break cut is the reader's report that the document
    broke off. A cut Parquet file cannot be read at all."""
    if kind == "email":
        return True
    if kind == "json":
        return isinstance(record, Failure)
    if kind == "jsonl":
        return broken.ends_mid_line and isinstance(record, Failure)
    return kind == "csv" and (broken.ends_mid_line
                              or (isinstance(record, Failure) and record.error_type == "unclosed_quote"))


_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")


def pseudonymised_author(author: str | None, notes: list[str]) -> str | None:
    """A table's author that is an email address (``jane@example.com``, ``Jane <jane@example.com>``), hashed as
    a mail's sender is, so the same person has one id across sources; a handle or a name stays. One whose comments
    nest too deeply to parse is left empty, with a note: its address cannot be told apart, and the error ended the
    file, losing the rows after it."""
    if author and "@" in author:
        try:
            address = email.utils.parseaddr(author)[1]
        except RecursionError:  # the parser reads each ``(`` of a comment a level deeper in Python's stack
            notes.append("author nested too deeply to read as an address: left empty")
            return None
        if _ADDRESS.fullmatch(address):
            return hash_address(address)
    return author


def _read_emails(handle, path: str, hash_addresses: bool, head: bytes) -> Iterator[Document | Failure]:
    if is_mbox(head):
        for ref, raw in split_mbox(handle, path):
            yield parse_email(raw, ref, hash_addresses)
    elif not head.strip() and _suffix(path) in MAILBOX_SUFFIXES:
        return  # an empty mailbox holds no message, as an empty table holds no row
    elif _suffix(path) == ".emlx":
        yield parse_email(emlx_message(handle.read()), path, hash_addresses)
    else:
        yield parse_email(handle.read(), path, hash_addresses)


_EMLX_LENGTH = re.compile(rb"[ \t]*([0-9]{1,12})[ \t]*\r?\n")


def emlx_message(raw: bytes) -> bytes:
    """The message of an Apple Mail ``.emlx`` file: a first line giving its length in bytes, the message, then a
    property list of its flags (read as the message's last lines, the XML became its text). A file without that
    first line is taken whole."""
    length = _EMLX_LENGTH.match(raw)
    return raw[length.end():length.end() + int(length.group(1))] if length else raw


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
    resolved: dict[tuple[str, ...], tuple[ColumnMap, list[str]]] = {}
    last_keys: tuple[str, ...] | None = None
    sheet: str | None = None
    reader = TABLE_READERS[kind]
    rows = reader(handle, path, text_column=columns.text) if kind in TITLED_TABLES else reader(handle, path)
    for ref, read in rows:
        resource = read if isinstance(read, Failure) else json_api_resource(read)
        row = resource if isinstance(resource, Failure) else activity_post(resource, ref)
        row = row if isinstance(row, Failure) else meta_export_post(row)
        if isinstance(row, Failure):
            if source is None and len(pending) < PENDING_FAILURES:
                pending.append(row)
                continue
            source = source or by_name
            yield from (replace(failure, source=source) for failure in (*pending, row))
            pending.clear()
            continue
        if source is None or (forced is None and getattr(row, "sheet", None) != sheet):
            # a post taken out of a social network's export (row is not resource) is social; a workbook's sheets
            # are each told by their own columns, then the sheet's name, then the file's
            sheet = getattr(row, "sheet", None)
            source = "social" if row is not resource else (
                guess_source(getattr(row, "header", None) or row.keys(), sheet or name)
                or (sheet and guess_source((), name)) or "review")
        yield from (replace(failure, source=source) for failure in pending)
        pending.clear()
        keys = getattr(row, "header", None) or tuple(row)  # a CSV row's columns include those its line lacks
        if keys is not last_keys:  # a CSV's rows share one header: hashing 20,000 names a row took seconds
            if keys not in resolved:
                resolved[keys] = columns.resolve(keys, source), columns.unmatched(keys)
            last_keys, (mapping, unmatched) = keys, resolved[keys]
        row_notes = getattr(read, "notes", ())  # what a file's rows note for the whole file (before any unwrapping)
        try:
            record = row_to_document(row, mapping, source, ref)
        except Exception as error:  # noqa: BLE001 - a row a converter fails on must not end its file, as it did
            record = Failure(source, ref, "parse", "unreadable_value",
                             f"row could not be read: {type(error).__name__}: {error}",
                             excerpt(json.dumps(row, default=str, ensure_ascii=False)))
        if isinstance(record, Failure):
            if record.error_type == "no_text_column" and columns.text is not None:
                record = replace(record, error=f"--text-column {columns.text!r} is not a column of this table "
                                               f"({', '.join(sorted(keys)[:12])})")
        elif unmatched or row_notes:
            record["ingest_notes"] = [*record["ingest_notes"], *row_notes, *unmatched]
        yield record
    yield from (replace(failure, source=by_name) for failure in pending)
