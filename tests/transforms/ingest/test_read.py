"""File discovery and format detection over the real samples."""

from __future__ import annotations

import bz2
import codecs
import csv
import functools
import gzip
import io
import json
import lzma
import os
import random
import shutil
import signal
import sys
import tarfile
import threading
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from apache_beam.io.filesystem import CompressionTypes

from tests.conftest import SAMPLES
from tests.sample_output import SAMPLE_DATE, sample_output
from transforms.aggregates import aggregate_date
from transforms.ingest.email import hash_address
from transforms.ingest.read import (
    BINARY_TABLE_MIN_BYTES,
    COMPRESSED_SUFFIXES,
    DECOMPRESSORS,
    OUTPUT_FOLDERS,
    detect_format,
    expand_inputs,
    is_compressed,
    read_head,
    read_path,
)
from transforms.records import Failure

SAMPLE_FOLDERS = [str(SAMPLES / name) for name in ("email", "reviews", "social")]


def test_folder_expansion_skips_private_files_and_glob_must_match() -> None:
    files = expand_inputs(SAMPLE_FOLDERS)
    assert len(files) == 12
    assert not any(Path(f).name.startswith("_") for f in files)
    assert expand_inputs([str(SAMPLES / "social" / "*.jsonl")]) == [str(SAMPLES / "social" / "posts.jsonl")]
    with pytest.raises(FileNotFoundError):
        expand_inputs([str(SAMPLES / "nope-*.csv")])


def test_a_file_named_by_its_path_is_read_even_with_pattern_characters_in_it(tmp_path: Path) -> None:
    """``reviews [2026-11].csv`` was taken for a pattern: a Beam error ("bad character range"), or "matches no
    file" for a file that exists."""
    for path in (tmp_path / "reviews [2026-11].csv", tmp_path / "export [v1]" / "r*.csv"):
        path.parent.mkdir(exist_ok=True)
        path.write_text("id,text\n1,fine\n", encoding="utf-8")
        assert expand_inputs([str(path)]) == [str(path)]


@pytest.mark.parametrize("layout", ["empty folder", "only hidden files", "glob of hidden files", "only the output"])
def test_an_input_with_no_file_to_read_fails_loudly(tmp_path: Path, layout: str) -> None:
    """A run on an empty export (or one still being uploaded as ``.part`` files) "succeeded" with 0 inputs."""
    folder = tmp_path / "in"
    folder.mkdir()
    item, output = str(folder), None
    if layout != "empty folder":
        (folder / ".upload.csv.part").write_text("id,text\n1,fine\n", encoding="utf-8")
        (folder / "_SUCCESS").write_text("", encoding="utf-8")
    if layout == "glob of hidden files":
        item = str(folder / ".*.part")
    if layout == "only the output":
        (folder / "out" / "labeled").mkdir(parents=True)
        (folder / "out" / "labeled" / "part.parquet").write_bytes(b"PAR1")
        output = str(folder / "out")
    with pytest.raises(FileNotFoundError, match="holds no file to read"):
        expand_inputs([str(SAMPLES / "social"), item], output=output)


def test_an_output_root_above_the_inputs_hides_only_what_runs_write_there(tmp_path: Path) -> None:
    """``undertone run exports --output .`` skipped every input, all of them being under the output root."""
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "reviews.csv").write_text("id,text\n1,fine\n", encoding="utf-8")
    (tmp_path / "notes.csv").write_text("id,text\n2,also fine\n", encoding="utf-8")
    for written in ("labeled/source=reviews/date=2026-11-20", "dead_letter/date=2026-11-20",
                    "aggregates/date=2026-11-20", "_staging/run-1/labeled/source=reviews/date=2026-11-20"):
        (tmp_path / written).mkdir(parents=True)
        (tmp_path / written / "part-0.parquet").write_bytes(b"PAR1")
    reviews = str(tmp_path / "exports" / "reviews.csv")
    assert expand_inputs([str(tmp_path / "exports")], output=str(tmp_path)) == [reviews]
    assert expand_inputs([str(tmp_path)], output=str(tmp_path)) == [reviews, str(tmp_path / "notes.csv")]


def test_nothing_a_run_writes_below_its_output_root_is_read_as_input(
        tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path, tmp_path: Path) -> None:
    """Whatever folder a run (labeled, dead letters, manifests, commits) and its aggregates write below the output
    root, the next run's listing skips it (:data:`OUTPUT_FOLDERS`), while a user's file there is read."""
    written, _ = sample_output(tmp_path_factory, tiny_encoder)
    output = tmp_path / "out"
    shutil.copytree(written, output)
    aggregate_date(output, SAMPLE_DATE)
    (output / "notes.csv").write_text("id,text\n1,fine\n", encoding="utf-8")
    assert {path.relative_to(output).parts[0] for path in output.rglob("*.parquet")} == set(OUTPUT_FOLDERS)
    assert expand_inputs([str(output)], output=str(output)) == [str(output / "notes.csv")]


@pytest.mark.parametrize(("name", "head", "expected"), [
    ("mail/00001.7c53", b"From alice@x Thu Aug 22 12:36:23 2002\n", "email"),
    ("msg", b"Return-Path: <a@b>\nReceived: x\n", "email"),
    ("data.bin", b"PAR1\x15\x04", "parquet"),
    ("export", b'  [{"text": "x"}]', "json"),
    ("dump.txt", b'{"text": "x"}\n', "jsonl"),
    ("Electronics_5.json", b'{"reviewText": "x", "helpful": [2, 3]}\n{"reviewText": "y"}\n', "jsonl"),  # JSON Lines
    ("export.json", b'{"meta": {"n": 1}, "data": [{"text": "x"}]}\n', "json"),  # one object on one line
    ("export.json", b'{\n  "data": [{"text": "x"}]\n}\n', "json"),  # pretty-printed
    ("reviews.csv.gz", b"\x1f\x8b", "csv"),
    ("garbage", b"\x00\x01\x02\x03binary", None),
    ("notes.txt", b"hello world, no headers", None),
])
def test_detect_format(name: str, head: bytes, expected: str | None) -> None:
    assert detect_format(name, head) == expected


def test_every_sample_record_is_a_document_or_a_failure() -> None:
    outcomes = [record for path in expand_inputs(SAMPLE_FOLDERS) for record in read_path(path)]
    kinds = Counter((r.source if isinstance(r, Failure) else r["source"], isinstance(r, Failure)) for r in outcomes)
    assert kinds == {("email", False): 11, ("email", True): 1, ("review", False): 36, ("social", False): 37,
                     ("social", True): 1}


def test_forced_source_and_unreadable_files(tmp_path: Path) -> None:
    table = tmp_path / "export.csv"
    table.write_text("id,text\n1,loving the new update\n", encoding="utf-8")
    assert next(read_path(str(table), source="social"))["source"] == "social"
    unknown = tmp_path / "notes.txt"
    unknown.write_text("a plain text file\n", encoding="utf-8")
    (failure,) = read_path(str(unknown))
    assert failure.error_type == "unknown_format" and failure.stage == "read"
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not really parquet")
    (failure,) = read_path(str(broken))
    assert failure.error_type == "corrupt_file" and "before any record" in failure.error


def test_compressed_inputs_of_every_format_are_read(tmp_path: Path) -> None:
    """Beam's decompressing handle cannot be iterated by line nor read by Parquet; each format must still work."""
    parquet = io.BytesIO()
    pq.write_table(pa.table({"text": ["from parquet"]}), parquet)
    contents = {
        "reviews.csv.gz": gzip.compress(b"id,text\n1,from csv\n"),
        "posts.jsonl.bz2": bz2.compress(b'{"text": "from jsonl"}\n'),
        "posts.json.gz": gzip.compress(b'[{"text": "from json"}]'),
        "table.parquet.gz": gzip.compress(parquet.getvalue()),
        "message.eml.gz": gzip.compress(b"From: a@b.c\nSubject: from email\n\nbody"),
    }
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    texts = {Path(path).name: r["text"] for path in expand_inputs([str(tmp_path)]) for r in read_path(path)}
    assert texts == {"reviews.csv.gz": "from csv", "posts.jsonl.bz2": "from jsonl", "posts.json.gz": "from json",
                     "table.parquet.gz": "from parquet", "message.eml.gz": "from email\n\nbody"}


def test_a_file_name_that_is_not_utf8_is_escaped_in_refs(tmp_path: Path) -> None:
    path = tmp_path / b"caf\xe9.jsonl".decode("utf-8", "surrogateescape")
    path.write_bytes(b'{"text": "fine"}\n{"text": 1}\n')
    document, failure = read_path(str(path))
    assert document["input_ref"] == f"{tmp_path}/caf\\xe9.jsonl:1" and document["text"] == "fine"
    assert failure.input_ref == f"{tmp_path}/caf\\xe9.jsonl:2" and failure.error_type == "no_text"


def test_the_output_root_inside_an_input_folder_is_not_read_back(tmp_path: Path) -> None:
    (tmp_path / "posts.jsonl").write_text('{"text": "hello"}\n', encoding="utf-8")
    written = tmp_path / "out" / "labeled" / "source=social" / "date=2026-11-20" / "part-r1-00000-of-00001.parquet"
    written.parent.mkdir(parents=True)
    written.write_bytes(b"PAR1")
    assert expand_inputs([str(tmp_path)]) == [str(written), str(tmp_path / "posts.jsonl")]
    assert expand_inputs([str(tmp_path)], output=str(tmp_path / "out")) == [str(tmp_path / "posts.jsonl")]
    assert expand_inputs([str(tmp_path / "*")], output=f"{tmp_path}/./out/") == [str(tmp_path / "posts.jsonl")]


def test_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    """The folder, ``./reviews.csv``, a glob, a symbolic link and a hard link all name one export: each spelling
    was read again, so its reviews were labeled three times and the manifest counted every copy as input."""
    export = tmp_path / "reviews.csv"
    export.write_text("id,text\nr1,Arrived broken\nr2,Works fine\n", encoding="utf-8")
    (tmp_path / "latest.csv").symlink_to(export)
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "reviews-2026-11-20.csv").hardlink_to(export)
    (tmp_path / "posts.jsonl").write_text('{"text": "hello"}\n', encoding="utf-8")
    files = expand_inputs([str(tmp_path), f"{tmp_path}/./reviews.csv", str(tmp_path / "*.csv")])
    assert files == [str(tmp_path / "posts.jsonl"), str(export)]


def test_a_glob_without_a_folder_and_a_glob_of_folders_find_their_files(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """``undertone run "*.csv"`` was a usage error ("matches no file") though the folder held CSVs, and
    ``exports/2026-11-*`` matched date folders but read none of their files."""
    for day in ("2026-11-19", "2026-11-20", "2026-12-01"):
        (tmp_path / "exports" / day).mkdir(parents=True)
        (tmp_path / "exports" / day / "reviews.csv").write_text("id,text\nr1,fine\n", encoding="utf-8")
        (tmp_path / "exports" / day / ".upload.csv").write_text("id,text\n", encoding="utf-8")
    (tmp_path / "a.csv").write_text("id,text\nr1,fine\n", encoding="utf-8")
    (tmp_path / "_SUCCESS.csv").write_text("", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert expand_inputs(["*.csv"]) == ["a.csv"]
    november = [f"exports/{day}/reviews.csv" for day in ("2026-11-19", "2026-11-20")]
    assert expand_inputs(["exports/2026-11-*"]) == november
    assert expand_inputs(["exports/**/*.csv"]) == [f"exports/{day}/reviews.csv"
                                                   for day in ("2026-11-19", "2026-11-20", "2026-12-01")]
    with pytest.raises(FileNotFoundError, match=r"input '\*\.tsv' matches no file"):
        expand_inputs(["*.tsv"])


def test_an_apple_mail_emlx_is_read_as_its_message_without_its_length_line_and_flags(tmp_path: Path) -> None:
    """Apple Mail keeps each message as ``.emlx``: a first line with the message's length, the message, then an XML
    property list of its flags. It was an unrecognised file."""
    envelope, message = (SAMPLES / "email" / "ham-00002").read_bytes().split(b"\n", 1)
    assert envelope.startswith(b"From ")  # an mbox's line, which Apple Mail does not keep
    eml = write(tmp_path / "ham.eml", message)
    flags = (b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" '
             b'"http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0">\n<dict>\n\t<key>flags'
             b"</key>\n\t<integer>8590195713</integer>\n</dict>\n</plist>\n")
    emlx = write(tmp_path / "12345.emlx", b"%d        \n" % len(message) + message + flags)
    (document,) = read_path(str(emlx))
    (expected,) = read_path(str(eml))
    for field in ("source", "source_id", "subject", "author", "created_at", "text", "full_text", "ingest_notes"):
        assert document[field] == expected[field], field
    assert "plist" not in document["full_text"]


def test_an_outlook_msg_an_archive_or_a_pdf_says_what_it_is_and_what_to_do(tmp_path: Path) -> None:
    """They were all "not a recognised email, CSV, JSON(L) or Parquet file", and an Outlook .msg, which is an
    email, counted under no source."""
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + b"\x00\x01\x02\x03" * 256
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("reviews.csv", "id,text\nr1,fine\n")
    tarred = io.BytesIO()
    with tarfile.open(fileobj=tarred, mode="w:gz") as archive:
        table = b"id,text\nr1,fine\n"
        member = tarfile.TarInfo("reviews.csv")
        member.size = len(table)
        archive.addfile(member, io.BytesIO(table))
    cases = {
        "Re_ refund.msg": (ole, "email", "an Outlook .msg message"),
        "archive.pst": (b"!BDN" + bytes(508), "email", "an Outlook data file (.pst/.ost)"),
        "old.xls": (ole, None, "a legacy Microsoft Office file"),
        "locked.xlsx": (ole, None, "a password-protected workbook"),
        "reviews.ods": (zipped.getvalue(), None, "an OpenDocument spreadsheet"),
        "export.zip": (zipped.getvalue(), None, "a zip archive, which is not read: unpack it"),
        "export.tar.gz": (tarred.getvalue(), None, "a tar archive, which is not read"),
        "export.7z": (b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(64), None, "a 7z archive"),
        "invoice.pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(64), None, "a PDF document"),
    }
    for name, (content, source, reason) in cases.items():
        (failure,) = read_path(str(write(tmp_path / name, content)))
        assert (failure.error_type, failure.source) == ("unknown_format", source), name
        assert failure.error.startswith(reason), (name, failure.error)
    (plain,) = read_path(str(write(tmp_path / "notes.bin", bytes(range(256)))))
    assert plain.error == "not a recognised email, CSV, JSON(L) or Parquet file"


def test_a_recursive_glob_over_looping_links_ends_and_reads_each_file_once(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``glob`` follows every linked folder under ``**`` and remembers none: two links back up (``up -> ..``)
    made ``exports/**/*.csv`` list 2^40 paths, and the run never started. Links to other folders are still
    followed, and ``**`` still skips hidden folders unless the pattern spells the dot."""
    day = tmp_path / "exports" / "2026-11-20"
    day.mkdir(parents=True)
    (day / "reviews.csv").write_text("id,text\nr1,fine\n", encoding="utf-8")
    (day / "up").symlink_to("..")
    (day / "up-again").symlink_to("..")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "posts.csv").write_text("id,text\np1,hello\n", encoding="utf-8")
    (tmp_path / "exports" / "linked").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "exports" / ".staging").mkdir()
    (tmp_path / "exports" / ".staging" / "partial.csv").write_text("id,text\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the glob did not finish"))
    signal.alarm(20)
    try:
        files = expand_inputs(["exports/**/*.csv"])
        hidden = expand_inputs(["exports/**/.staging/*.csv"])
    finally:
        signal.alarm(0)
    assert files == ["exports/2026-11-20/reviews.csv", "exports/linked/posts.csv"]
    assert hidden == ["exports/.staging/partial.csv"]


def test_a_recursive_glob_leaves_hidden_folders_unwalked_unless_the_pattern_spells_a_dot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``**`` glob over an export kept in a checkout walked every folder of ``.git`` (objects by the hundred
    thousand) to match none of them."""
    day = tmp_path / "exports" / "2026-11-20"
    day.mkdir(parents=True)
    (day / "reviews.csv").write_text("id,text\nr1,fine\n", encoding="utf-8")
    objects = tmp_path / "exports" / ".git" / "objects" / "ab"
    objects.mkdir(parents=True)
    (objects / "cd.csv").write_text("id,text\n", encoding="utf-8")
    walked: list[str] = []
    walk = os.walk

    def recorded_walk(top: str, *args: object, **kwargs: object) -> Iterator[tuple[str, list[str], list[str]]]:
        for root, dirs, files in walk(top, *args, **kwargs):
            walked.append(root)
            yield root, dirs, files

    monkeypatch.setattr(os, "walk", recorded_walk)
    monkeypatch.chdir(tmp_path)
    assert expand_inputs(["exports/**/*.csv"]) == ["exports/2026-11-20/reviews.csv"]
    assert walked and not any(".git" in root for root in walked)
    assert expand_inputs(["exports/**/.git/**/*.csv"]) == ["exports/.git/objects/ab/cd.csv"]


def test_an_author_that_is_an_email_address_is_hashed_in_tables_too(tmp_path: Path) -> None:
    """The README promises hashed addresses in ``author``, but only mail senders were hashed: a review export's
    ``reviewer`` column or a post's ``screen_name`` holding an address was stored in clear. Handles stay."""
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("id,text,reviewer\nr1,Arrived broken,jane.doe@example.com\nr2,Fine,Jane <JANE.DOE@example.com>\n"
                       "r3,Meh,janed\n", encoding="utf-8")
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"text": "love it", "screen_name": "@janed"}\n'
                     '{"text": "hate it", "screen_name": "user1@gmail.com"}\n', encoding="utf-8")
    mail = b"From: Jane Doe <jane.doe@example.com>\nSubject: refund\nMessage-ID: <1@x>\n\nWhere is my refund?\n"
    (sender,) = read_path(str(write(tmp_path / "mail.eml", mail)))
    authors = [r["author"] for path in (reviews, posts) for r in read_path(str(path))]
    assert authors == [sender["author"], sender["author"], "janed", "@janed", hash_address("user1@gmail.com")]
    assert sender["author"] == hash_address("jane.doe@example.com")
    kept = [r["author"] for r in read_path(str(reviews), hash_addresses=False)]
    assert kept == ["jane.doe@example.com", "Jane <JANE.DOE@example.com>", "janed"]


def test_an_author_nested_too_deeply_to_parse_loses_only_its_address(tmp_path: Path) -> None:
    """An author cell of thousands of nested comments (``((((...a@b.com``) overflowed the address parser's
    recursion, and the error ended the file: every row, the good ones after it included, became one
    ``corrupt_file`` dead letter."""
    reviews = tmp_path / "reviews.csv"
    nested = "(" * 3000 + "jane@example.com"
    reviews.write_text(f'id,text,reviewer\nr1,Arrived broken,"{nested}"\nr2,Fine,bob@example.com\n',
                       encoding="utf-8")
    first, second = read_path(str(reviews))
    assert (first["text"], first["author"]) == ("Arrived broken", None)
    assert "author nested too deeply to read as an address: left empty" in first["ingest_notes"]
    assert (second["text"], second["author"]) == ("Fine", hash_address("bob@example.com"))


def test_a_folder_that_cannot_be_listed_is_a_dead_letter_not_a_silent_drop(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A sub-folder the run may not list (``chmod 000``, another user's upload) was skipped without a word by the
    folder walk: its files vanished from the run. It is listed as an input, so reading it is one dead letter."""
    (tmp_path / "posts.jsonl").write_text('{"text": "hello"}\n', encoding="utf-8")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "reviews.csv").write_text("id,text\nr1,Arrived broken\n", encoding="utf-8")
    scandir = os.scandir

    def refuse_locked(path: Any) -> Any:  # root may list any folder, so chmod 000 alone cannot show it
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse_locked)
    files = expand_inputs([str(tmp_path)])
    assert files == [str(locked), str(tmp_path / "posts.jsonl")]
    (failure,) = read_path(str(locked))
    assert (failure.stage, failure.error_type, failure.input_ref) == ("read", "unreadable_file", str(locked))


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_pipes_and_devices_are_dead_letters_not_a_hung_run(tmp_path: Path) -> None:
    """A folder walk lists a named pipe and a link to ``/dev/zero`` as files: reading the pipe waited for a writer
    forever, and ``/dev/zero`` never ends, so the run hung. Each is one dead letter saying what it is."""
    os.mkfifo(tmp_path / "incoming.csv")
    (tmp_path / "zeros.csv").symlink_to("/dev/zero")
    (tmp_path / "reviews.csv").write_text("id,text\nr1,Arrived broken\n", encoding="utf-8")
    read: dict[str, list[str]] = {}
    reader = threading.Thread(target=lambda: read.update(
        {Path(path).name: outcomes(Path(path)) for path in expand_inputs([str(tmp_path)])}), daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert not reader.is_alive(), "reading a pipe or a device blocked"
    assert read["reviews.csv"] == ["Arrived broken"]
    assert read["incoming.csv"] == [f"unreadable_file: cannot open: {tmp_path}/incoming.csv is a named pipe, not a "
                                    "regular file: it is not read (it may never end or never start)"]
    assert read["zeros.csv"][0].startswith(f"unreadable_file: cannot open: {tmp_path}/zeros.csv is a character device")


def test_a_small_zip_named_csv_is_a_binary_failure_not_an_empty_table(tmp_path: Path) -> None:
    """An 800-byte xlsx-like zip saved as ``.csv`` has no line break: read as a header with no row, it vanished
    without a record. Below the size where control characters judge a table, its NUL bytes still say binary."""
    path = tmp_path / "export.csv"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>" * 50)
    assert len(path.read_bytes()) < BINARY_TABLE_MIN_BYTES
    (failure,) = read_path(str(path))
    assert (failure.stage, failure.error_type) == ("read", "binary")
    header_only = tmp_path / "empty.csv"
    header_only.write_text("id,text\n", encoding="utf-8")
    assert list(read_path(str(header_only))) == []


def test_rows_without_ids_get_distinct_stable_doc_ids(tmp_path: Path) -> None:
    """Two id-less posts saying "Great product!" are two documents (a content hash gave them one doc_id);
    the ids survive a re-read and a move to another folder."""
    lines = b'{"text": "Great product!"}\n{"text": "Great product!"}\n{"text": "meh"}\n'
    first, moved = tmp_path / "a" / "posts.jsonl", tmp_path / "b" / "posts.jsonl"
    for path in (first, moved):
        path.parent.mkdir()
        path.write_bytes(lines)
    ids = [record["doc_id"] for record in read_path(str(first))]
    assert len(set(ids)) == 3
    assert ids == [record["doc_id"] for record in read_path(str(first))]
    assert ids == [record["doc_id"] for record in read_path(str(moved))]


def test_bad_rows_before_the_first_good_one_take_the_tables_source(tmp_path: Path) -> None:
    """The source is told by the first good row's columns; bad rows before it used to land under unknown."""
    posts = tmp_path / "export.csv"
    posts.write_bytes("tweet,retweets\ncaf\udce9 first row,1\nfine — déjà vu,2\n".encode("utf-8", "surrogateescape"))
    broken = tmp_path / "tweets-today.jsonl"
    broken.write_bytes(b'{"tweet": "cut\n[1]\n')
    outcomes = [(r.source, r.error_type) if isinstance(r, Failure) else (r["source"], r["text"])
                for path in (posts, broken) for r in read_path(str(path))]
    assert outcomes == [("social", "invalid_utf8"), ("social", "fine — déjà vu"),
                        ("social", "invalid_json"), ("social", "not_an_object")]


def test_compressed_suffixes_are_the_ones_beam_decompresses() -> None:
    """Files read with Python's open must be exactly those Beam would not decompress."""
    candidates = (*COMPRESSED_SUFFIXES, ".snappy", ".lz4", ".zip", ".br", ".7z", ".tar", ".Z", ".csv", ".eml")
    beam_decompresses = {suffix for suffix in candidates
                         if CompressionTypes.detect_compression_type(f"x{suffix}") != CompressionTypes.UNCOMPRESSED}
    assert beam_decompresses == set(COMPRESSED_SUFFIXES) == set(DECOMPRESSORS)
    assert is_compressed("posts.JSONL.XZ") and not is_compressed("reviews.csv")


def outcomes(path: Path) -> list[str]:
    return [f"{r.error_type}: {r.error}" if isinstance(r, Failure) else r["text"] for r in read_path(str(path))]


COMPRESS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress,
            ".zst": zstandard.ZstdCompressor().compress}


@pytest.mark.parametrize(("suffix", "lost_block"), [
    (".gz", ""), (".xz", ""),
    (".bz2", " (bzip2 decodes whole blocks of up to 900 kB: the text of the block it is cut in is lost)"),
    (".zst", " (zstd decodes whole blocks of up to 128 kB: the text of the block it is cut in is lost)"),
])
def test_a_cut_short_compressed_file_keeps_its_records_and_says_it_was_cut(tmp_path: Path, suffix: str,
                                                                           lost_block: str) -> None:
    """Beam's reader ended a truncated file quietly at its last whole line; the records after the cut were gone
    without a word. bzip2 and zstd decode whole blocks only, so a small file cut short has none, and says why."""
    lines = b"".join(b'{"id": "%d", "text": "parcel %d arrived late and the box was crushed"}\n' % (i, i)
                     for i in range(200))
    whole, cut = tmp_path / f"posts.jsonl{suffix}", tmp_path / f"cut.jsonl{suffix}"
    data = COMPRESS[suffix](lines)
    whole.write_bytes(data)
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert len(outcomes(whole)) == 200
    read = outcomes(cut)
    assert read[-1].startswith("truncated_file: jsonl file cut short")
    assert read[-1].endswith(f"the file is cut short{lost_block}")
    assert (read[0] == "parcel 0 arrived late and the box was crushed") == (not lost_block)
    assert read[:-1] == [json.loads(line)["text"] for line in lines.splitlines()[: len(read) - 1]]


@pytest.mark.parametrize("suffix", [".bz2", ".zst"])
def test_a_cut_short_file_of_many_blocks_keeps_the_records_of_the_whole_blocks(tmp_path: Path, suffix: str) -> None:
    """Each whole block before the cut is decoded: a 600 kB export in 100 kB bzip2 blocks (``-1``) or 128 kB zstd
    blocks, cut at two thirds, keeps its first records in order; only the block the cut falls in is lost."""
    moods = ("arrived late", "works great", "box was crushed", "refund took weeks", "battery lasts all day")
    lines = [b'{"id": "r%d", "text": "order %d %s, %s"}\n' % (i, i * 7919 % 100_003, moods[i % 5].encode(),
                                                            moods[i * 3 % 5].encode()) for i in range(12_000)]
    compress = {".bz2": partial(bz2.compress, compresslevel=1), ".zst": COMPRESS[".zst"]}[suffix]
    path = tmp_path / f"reviews.jsonl{suffix}"
    data = compress(b"".join(lines))
    path.write_bytes(data[: len(data) * 2 // 3])
    read = outcomes(path)
    texts = [r for r in read if not r.startswith(("invalid_json", "truncated_file"))]
    assert 4_000 < len(texts) < 8_000
    assert texts == [json.loads(line)["text"] for line in lines[: len(texts)]]
    assert len(read) - len(texts) == 1  # the cut, the line a block's end splits in it
    assert read[-1].endswith("the text of the block it is cut in is lost)")


@functools.cache
def multi_block_csv() -> tuple[list[str], bytes, list[int]]:
    """1,500 reviews (a third of them over several lines) as a CSV, 370 kB in four bzip2 blocks (``-1``), and the
    byte each block starts in (a block's 48-bit magic lies at any bit)."""
    rng = random.Random(5)
    words = ("kettle lid handle boil noise refund courier parcel late crushed support replied never again great "
             "quiet flimsy sturdy warranty return ticket week delivered missing broke battery cable screen").split()
    texts = [f"Order {rng.randint(1000, 99999)}: " + "\n".join(
        " ".join(rng.choices(words, k=rng.randint(8, 30))).capitalize() + "." for _ in range(rng.choice((1, 1, 2, 3))))
        for _ in range(1_500)]
    table = io.StringIO()
    csv.writer(table, lineterminator="\n").writerows([("review_id", "rating", "text"),
                                                      *((f"r{i}", i % 5 + 1, text) for i, text in enumerate(texts))])
    data = bz2.compress(table.getvalue().encode(), compresslevel=1)
    bits = format(int.from_bytes(data, "big"), f"0{len(data) * 8}b")
    starts = [at // 8 for at in range(len(bits)) if bits.startswith(format(0x314159265359, "048b"), at)]
    return texts, data, starts


@pytest.mark.parametrize("cut", [
    pytest.param(lambda data, starts: 6, id="in the first block's magic: nothing decodes"),
    pytest.param(lambda data, starts: 8 << 10, id="at 8 KiB, the decoder's piece"),
    pytest.param(lambda data, starts: (8 << 10) + 1, id="a byte after 8 KiB"),
    pytest.param(lambda data, starts: (24 << 10) - 1, id="a byte before 24 KiB"),
    pytest.param(lambda data, starts: starts[2], id="at the third block's start"),
    pytest.param(lambda data, starts: starts[2] + 6, id="after the third block's magic"),
    pytest.param(lambda data, starts: starts[3] + 7, id="after the fourth block's magic"),
    pytest.param(lambda data, starts: len(data) - 4, id="in the stream's final check"),
])
def test_a_multi_block_bzip2_csv_cut_anywhere_labels_only_whole_rows_and_says_so_once(
        tmp_path: Path, cut: Callable[[bytes, list[int]], int]) -> None:
    """A cut at any byte of a bzip2 file of many blocks (at the decoder's 8 KiB pieces, at a block's bit-aligned
    start, in the end marker) keeps the rows of the whole blocks before it, labels no half row and gives exactly
    one ``truncated_file`` dead letter."""
    texts, data, starts = multi_block_csv()
    path = tmp_path / "reviews.csv.bz2"
    path.write_bytes(data[: cut(data, starts)])
    *labeled, failure = read_path(str(path))
    assert [record["text"] for record in labeled] == texts[: len(labeled)]
    assert isinstance(failure, Failure) and failure.error_type == "truncated_file"
    assert (len(labeled) > 0) == (cut(data, starts) > starts[1])


def damaged_export(tmp_path: Path, suffix: str) -> tuple[Path, list[bytes]]:
    """12,000 review lines, compressed, with 16 bytes overwritten half-way (a fixed seed)."""
    moods = ("arrived late", "works great", "box was crushed", "refund took weeks", "battery lasts all day")
    lines = [b'{"id": "r%d", "text": "order %d %s, %s"}\n' % (i, i * 7919 % 100_003, moods[i % 5].encode(),
                                                            moods[i * 3 % 5].encode()) for i in range(12_000)]
    compress = {".bz2": partial(bz2.compress, compresslevel=1)}.get(suffix, COMPRESS[suffix])
    data = bytearray(compress(b"".join(lines)))
    data[len(data) // 2: len(data) // 2 + 16] = random.Random(7).randbytes(16)
    path = tmp_path / f"reviews.jsonl{suffix}"
    path.write_bytes(data)
    return path, lines


def test_a_damaged_bzip2_file_keeps_the_checked_blocks_before_the_damage(tmp_path: Path) -> None:
    """bzip2 gives a block's text only once its CRC has passed, so the records of the blocks before the damage are
    the originals: they are read, and the damage is reported after them (the decoder's error had made the whole
    file one dead letter)."""
    path, lines = damaged_export(tmp_path, ".bz2")
    read = outcomes(path)
    assert read[-1].startswith("corrupt_file: jsonl file unreadable after")
    assert "CorruptInputError: the .bz2 stream is corrupt after decompressed byte" in read[-1]
    assert "the records after it are lost" in read[-1]
    assert "is incomplete and is not labeled" in read[-1]  # the line the last whole block ends in, no dead letter
    kept = read[:-1]  # of its own
    assert kept == [json.loads(line)["text"] for line in lines[:len(kept)]]
    assert len(kept) >= len(lines) // 3
    assert read_head(str(path)) == b"".join(lines)[:8192]


@pytest.mark.parametrize("suffix", [".gz", ".xz", ".zst"])
def test_a_damaged_file_without_checked_blocks_is_one_dead_letter_that_says_why(tmp_path: Path,
                                                                                suffix: str) -> None:
    """Overwritten bytes in a gzip, xz or zstd stream can decode into wrong text long before the decoder fails
    (gzip's check is at the end of the member): keeping the text before the error put garbled reviews among the
    labeled ones. The file is one dead letter, saying where it broke and why nothing of it is kept."""
    read = outcomes(damaged_export(tmp_path, suffix)[0])
    assert len(read) == 1 and read[0].startswith("corrupt_file: jsonl file unreadable before any record")
    assert f"the {suffix} stream is corrupt after decompressed byte" in read[0]
    assert "none of its records is kept" in read[0]


def test_a_cut_short_compressed_parquet_file_says_it_was_cut(tmp_path: Path) -> None:
    """Parquet keeps its footer at the end, so a cut file cannot be read at all; the dead letter said "magic bytes
    not found in footer", not that the file was cut short."""
    table = io.BytesIO()
    pq.write_table(pa.table({"review_id": [f"r{i}" for i in range(500)],
                             "text": [f"order {i} arrived late and the box was crushed" for i in range(500)]}), table)
    path = tmp_path / "reviews.parquet.gz"
    data = gzip.compress(table.getvalue())
    path.write_bytes(data[: len(data) // 2])
    (failure,) = outcomes(path)
    assert failure.startswith("truncated_file: parquet file cut short before any record: TruncatedInputError")
    assert failure.endswith("the file is cut short")


def test_concatenated_gzip_members_are_read_in_turn(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "first member"}\n') + gzip.compress(b'{"text": "second member"}\n'))
    assert outcomes(path) == ["first member", "second member"]


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz"])
def test_bytes_after_the_last_whole_stream_keep_every_record(tmp_path: Path, suffix: str) -> None:
    """A gzip file padded with 512 zeros (a tape's or a block device's padding) was one corrupt_file record, "none of
    its records is kept", though every byte of its text had decoded. Zeros are ignored, as ``gzip -d`` ignores them;
    other bytes keep every record too, and one dead letter says they were ignored."""
    text = b"id,text\n1,the parcel came a week late\n2,refund took a month\n"
    padded, appended = tmp_path / f"padded.csv{suffix}", tmp_path / f"appended.csv{suffix}"
    padded.write_bytes(COMPRESS[suffix](text) + b"\x00" * 512)
    appended.write_bytes(COMPRESS[suffix](text) + b"uploaded by sync-tool 2.1\n")
    assert outcomes(padded) == ["the parcel came a week late", "refund took a month"]
    *rows, failure = outcomes(appended)
    assert rows == ["the parcel came a week late", "refund took a month"]
    assert failure == (f"trailing_data: csv file read whole (2 records), but the 26 bytes after its last whole "
                       f"{suffix} stream are no {suffix} stream and were ignored")


@pytest.mark.parametrize("name", ["data.jsonl", "data.csv", "data.json", "data.csv.gz"])
def test_a_binary_file_named_as_a_table_is_one_failure_not_a_dead_letter_per_line(tmp_path: Path, name: str) -> None:
    executable = Path(sys.executable).resolve().read_bytes()[:200_000]
    path = tmp_path / name
    path.write_bytes(gzip.compress(executable) if name.endswith(".gz") else executable)
    (failure,) = read_path(str(path))
    assert failure.error_type == "binary" and failure.stage == "read"


def test_utf16_tables_are_text_not_binary(tmp_path: Path) -> None:
    tsv = tmp_path / "reviews.tsv"
    tsv.write_bytes("id\ttext\n1\tsehr schön, danke\n".encode("utf-16"))  # with its byte-order mark
    posts = tmp_path / "posts.json"
    posts.write_bytes('[{"text": "très bien"}]'.encode("utf-16-le"))  # JSON tells UTF-16 by its NULs, no mark
    assert outcomes(tsv) == ["sehr schön, danke"]
    assert outcomes(posts) == ["très bien"]


def test_a_table_cut_short_says_its_source_on_the_dead_letter(tmp_path: Path) -> None:
    """The records before the cut had told the table's source; the cut's own dead letter had none."""
    rows = b"".join(b'{"review_id": "r%d", "rating": 2, "text": "order %d arrived late"}\n' % (i, i)
                    for i in range(2_000))
    path = tmp_path / "export.jsonl.gz"
    data = gzip.compress(rows)
    path.write_bytes(data[: len(data) // 2])
    read = list(read_path(str(path)))
    assert isinstance(read[-1], Failure) and read[-1].error_type == "truncated_file"
    assert read[-1].source == "review" == read[0]["source"]


REVIEW_ROWS = [f'r{i},{i % 5 + 1},"Order {i}: the kettle arrived late, and the lid, frankly, is flimsy"\n'
               for i in range(60)]


def gzip_with_cut_after(text: bytes, whole: int) -> bytes:
    """``text`` gzipped with a sync point after its first ``whole`` bytes, cut there: the file decodes to exactly
    those bytes and then stops, as an upload interrupted between two rows."""
    compressor = zlib.compressobj(wbits=zlib.MAX_WBITS | 16)
    return compressor.compress(text[:whole]) + compressor.flush(zlib.Z_SYNC_FLUSH)


@pytest.mark.parametrize("cut_inside", [
    'r41,2,"Order 41: the ket',  # in the text: the half text was labeled as a review
    'r41,2,"',  # right after the comma: the missing text was a `no_text` dead letter besides the cut's own
    "r4",  # in the id
    REVIEW_ROWS[41].rstrip("\n"),  # before the row's line break: whole cells, but no end of row to vouch for them
])
def test_a_gzip_csv_cut_mid_row_labels_the_whole_rows_and_dead_letters_the_cut_one_once(tmp_path: Path,
                                                                                        cut_inside: str) -> None:
    text = ("review_id,rating,text\n" + "".join(REVIEW_ROWS)).encode()
    whole = text.index(REVIEW_ROWS[41].encode()) + len(cut_inside)
    path = tmp_path / "reviews.csv.gz"
    path.write_bytes(gzip_with_cut_after(text, whole))
    *labeled, failure = read_path(str(path))
    assert [record["text"] for record in labeled] == [row.split(",", 2)[2].strip().strip('"') for row in
                                                      REVIEW_ROWS[:41]]
    assert isinstance(failure, Failure) and (failure.source, failure.stage) == ("review", "read")
    assert failure.error_type == "truncated_file" and failure.input_ref == f"{path}:43"
    assert "csv file cut short after 41 whole records" in failure.error
    assert f"its last record, {path}:43, is incomplete and is not labeled" in failure.error
    assert failure.error.endswith("the .gz stream ends before its end marker: the file is cut short")
    assert cut_inside in failure.raw_excerpt


def test_a_gzip_csv_cut_inside_a_multi_line_cell_does_not_label_its_first_lines(tmp_path: Path) -> None:
    text = (b'id,text\np1,"Delivered on time."\np2,"Line one of a long complaint,\nline two, and then the'
            b' rest\nof it"\n')
    path = tmp_path / "posts.csv.gz"
    path.write_bytes(gzip_with_cut_after(text, text.index(b"and then")))
    read = outcomes(path)
    assert read[0] == "Delivered on time." and len(read) == 2
    assert read[1].startswith("truncated_file: csv file cut short after 1 whole records")


MULTI_LINE_REVIEWS = "".join(
    f'r{i},{i % 5 + 1},"Order {i}: the kettle arrived late.\nThe lid is flimsy, and the handle got hot.\n'
    f'Support said ""wait a week"", so I waited."\n' for i in range(30))


def stream_cut_after(suffix: str, text: bytes, whole: int) -> bytes:
    """``text`` compressed as ``suffix`` in two streams, the first holding its first ``whole`` bytes, the second
    cut in its header: the file decodes to exactly those bytes and then stops (bzip2 and xz have no sync point)."""
    return COMPRESS[suffix](text[:whole]) + COMPRESS[suffix](text[whole:])[:8]


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz"])
def test_a_csv_cut_right_after_a_line_break_inside_a_quoted_cell_dead_letters_that_row(tmp_path: Path,
                                                                                        suffix: str) -> None:
    """The text stopped at a line break, so the row was taken as ended; but the break was inside the row's quoted
    cell, and the csv reader gave the half cell as the row's text at the end of the file: it was labeled."""
    text = ("review_id,rating,text\n" + MULTI_LINE_REVIEWS).encode()
    whole = text.index(b"The lid", text.index(b"r21,")) + len(b"The lid is flimsy, and the handle got hot.\n")
    path = tmp_path / f"reviews.csv{suffix}"
    path.write_bytes(stream_cut_after(suffix, text, whole))
    *labeled, failure = read_path(str(path))
    assert [record["text"] for record in labeled] == [
        f'Order {i}: the kettle arrived late.\nThe lid is flimsy, and the handle got hot.\nSupport said "wait a week", '
        "so I waited." for i in range(21)]
    assert isinstance(failure, Failure) and (failure.source, failure.stage) == ("review", "read")
    assert failure.error_type == "truncated_file" and failure.input_ref == f"{path}:66"  # row 21's lines: 65, 66
    assert f"csv file cut short after 21 whole records; its last record, {path}:66, is incomplete" in failure.error
    assert "Order 21: the kettle arrived late" in failure.raw_excerpt


def test_a_gzip_table_cut_between_rows_keeps_every_row_and_says_the_rest_is_lost(tmp_path: Path) -> None:
    text = ("review_id,rating,text\n" + "".join(REVIEW_ROWS)).encode()
    path = tmp_path / "reviews.csv.gz"
    path.write_bytes(gzip_with_cut_after(text, text.index(REVIEW_ROWS[41].encode())))
    *labeled, failure = read_path(str(path))
    assert len(labeled) == 41 and not any(isinstance(record, Failure) for record in labeled)
    assert (failure.error_type, failure.input_ref, failure.raw_excerpt) == ("truncated_file", str(path), None)
    assert failure.error.startswith("csv file cut short after 41 whole records (those after the cut are lost): ")


@pytest.mark.parametrize(("name", "body"), [
    ("posts.jsonl.gz", "".join(f'{{"id": "p{i}", "text": "parcel {i} arrived late, box crushed"}}\n'
                               for i in range(60))),
    ("posts.json.gz", json.dumps([{"id": f"p{i}", "text": f"parcel {i} arrived late, box crushed"}
                                  for i in range(60)], indent=1)),
])
def test_a_gzip_json_export_cut_mid_record_gives_one_dead_letter_for_the_cut(tmp_path: Path, name: str,
                                                                              body: str) -> None:
    """A JSON line cut in two was an ``invalid_json`` dead letter besides the file's own, a JSON array's break an
    ``invalid_json`` one besides it: one cut, one dead letter."""
    text = body.encode()
    path = tmp_path / name
    path.write_bytes(gzip_with_cut_after(text, text.index(b"parcel 41 arrived") + 9))
    *labeled, failure = read_path(str(path))
    assert [record["text"] for record in labeled] == [f"parcel {i} arrived late, box crushed" for i in range(41)]
    assert failure.error_type == "truncated_file" and failure.source == "social"
    assert "cut short after 41 whole records; its last record" in failure.error


def test_a_gzip_mbox_cut_short_does_not_label_its_last_message_as_whole(tmp_path: Path) -> None:
    """A message has no end mark: the one the cut falls in, its body half gone, was labeled as if whole."""
    messages = [f"From shop@example.com Tue Nov 10 09:1{i}:00 2026\nFrom: shop@example.com\nSubject: order {i}\n"
                f"Message-ID: <{i}@example.com>\n\nYour order {i} has shipped and arrives on Friday.\n"
                f"Thanks for shopping with us.\n\n" for i in range(3)]
    text = "".join(messages).encode()
    path = tmp_path / "inbox.mbox.gz"
    path.write_bytes(gzip_with_cut_after(text, text.index(b"Your order 2") + 12))
    read = outcomes(path)
    assert len(read) == 3 and read[:2] == [f"order {i}\n\nYour order {i} has shipped and arrives on Friday.\n"
                                           "Thanks for shopping with us." for i in range(2)]
    assert read[2].startswith("truncated_file: email file cut short after 2 whole records")


def test_a_linked_sub_folder_is_read_once_and_a_link_loop_ends(tmp_path: Path) -> None:
    """A symbolic link to a folder inside an input folder (``exports/current -> /mnt/archive/2026-11-20``) was
    skipped without a word: its files were neither labeled nor dead letters. It is followed; a link back to a
    folder the walk reaches anyway (``again -> .``), into a hidden one (``samples/by_date -> .by_date``) or up to
    one holding the input folder (``up -> ..``) lists no file twice, and a loop of links ends."""
    archive = tmp_path / "archive" / "2026-11-20"
    archive.mkdir(parents=True)
    (archive / "reviews.csv").write_text("id,text\nr1,Arrived broken\n", encoding="utf-8")
    (archive / "up").symlink_to(tmp_path / "archive")  # the archive's own loop
    (archive / "exports").symlink_to(tmp_path / "exports")  # back into the input folder
    exports = tmp_path / "exports"
    (exports / ".by_date" / "2026-11-20").mkdir(parents=True)
    (exports / ".by_date" / "2026-11-20" / "posts.jsonl").write_text('{"text": "a copy"}\n', encoding="utf-8")
    (exports / "by_date").symlink_to(".by_date")
    (exports / "posts.jsonl").write_text('{"text": "hello"}\n', encoding="utf-8")
    (exports / "current").symlink_to(archive)
    (exports / "again").symlink_to(exports)
    (exports / "up").symlink_to(tmp_path)  # a folder holding the input folder: the walk would climb out of it
    (tmp_path / "unrelated.csv").write_text("id,text\nu1,not an input\n", encoding="utf-8")
    files = expand_inputs([str(exports)])
    assert files == [str(exports / "current" / "reviews.csv"), str(exports / "posts.jsonl")]
    assert [outcomes(Path(path)) for path in files] == [["Arrived broken"], ["hello"]]


def test_the_samples_dated_copies_are_not_read_by_a_run_over_samples() -> None:
    """``samples/by_date`` links to the hidden ``samples/.by_date``, copies of sample records laid out by date:
    a run over ``samples/`` must not read them a second time, and a run over the link reads them all."""
    listed = expand_inputs([str(SAMPLES)])
    assert not [path for path in listed if "by_date" in path]
    dated = expand_inputs([str(SAMPLES / "by_date")])
    assert len(dated) == sum(1 for path in (SAMPLES / ".by_date").rglob("*")
                             if path.is_file() and not path.name.startswith("_"))


@pytest.mark.parametrize(("name", "content"), [
    ("export.json", b""), ("export.json", b" \n\n"), ("export.json", codecs.BOM_UTF8),
    ("export.json.gz", gzip.compress(b"", mtime=0)), ("posts.jsonl", b""), ("reviews.csv", b""), ("reviews.tsv", b""),
    ("archive.mbox", b""),
])
def test_a_file_with_no_content_adds_no_record(tmp_path: Path, name: str, content: bytes) -> None:
    """A 0-byte ``.json`` export was a ``read/invalid_json`` dead letter ("premature EOF"), where a 0-byte JSON
    Lines, CSV, TSV or mailbox file holds no record and adds none: an empty export has nothing to lose."""
    assert outcomes(write(tmp_path / name, content)) == []
