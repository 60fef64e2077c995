"""Exact duplicates within a run are marked with the doc_id of their first occurrence, never dropped."""

from __future__ import annotations

import itertools
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import transforms.duplicates as duplicates
from schemas import LABELED_PARTITION_KEYS, file_schema, labeled_schema
from tests.object_store import FakeObjectStore, objects
from transforms.clean import clean_document
from transforms.duplicates import (
    candidate_digests,
    duplicate_marks,
    id_and_text_fingerprints,
    mark_file,
    marks_of_group,
    reused_ids,
    row_ref,
    source_fingerprints,
    text_digest,
    text_fingerprint,
    utf8_values,
)
from transforms.pipeline import PipelineConfig, run_pipeline
from transforms.records import new_document


def cleaned(source: str, ref: str, text: str, source_id: str | None = None) -> dict:
    return clean_document(new_document(source, ref, text, source_id=source_id), 10_000)


def test_the_smallest_doc_id_is_the_original_whatever_the_order() -> None:
    group = [row_ref(cleaned("review", f"r:{n}", "Great phone", str(n))) for n in range(4)]
    first = min(group)
    for ordering in itertools.permutations(group):
        marks = dict(marks_of_group(ordering))
        assert set(marks) == set(group) - {first}
        assert set(marks.values()) == {first[0]}


def test_the_same_record_read_twice_is_marked_once() -> None:
    twice = [row_ref(cleaned("email", folder, "Re: hi\n\nsee you", "<a@b>")) for folder in ("inbox/1", "backup/1")]
    assert twice[0][0] == twice[1][0]  # one message, one doc_id
    assert list(marks_of_group(twice)) == [((twice[0][0], "inbox/1"), twice[0][0])]


def labeled_files(root: Path, files: dict[str, list[dict]], row_group_size: int = 2) -> list[str]:
    """Labeled files under ``root`` as a run lays them out: name → cleaned documents of one source."""
    paths = []
    for name, documents in files.items():
        folder = root / f"source={documents[0]['source']}" / "date=2026-11-20"
        folder.mkdir(parents=True, exist_ok=True)
        write_labeled(folder / name, documents, row_group_size)
        paths.append(str(folder / name))
    return paths


def test_repeats_are_marked_across_files_and_row_groups_within_a_source(tmp_path: Path) -> None:
    reviews = [cleaned("review", f"r:{n}", text, str(n)) for n, text in
               enumerate(["Great phone", "Terrible battery", "Great  phone", "Fine", "Great phone!"])]
    more = [cleaned("review", "b:1", "Great phone", "7"), cleaned("review", "b:2", "Fine", "8")]
    posts = [cleaned("social", "s:1", "Great phone", "9")]
    assert reviews[0]["text"] == reviews[2]["text"] == more[0]["text"] == posts[0]["text"]
    paths = labeled_files(tmp_path, {"a.parquet": reviews, "b.parquet": more, "c.parquet": posts})
    great = sorted(row_ref(d) for d in (reviews[0], reviews[2], more[0]))
    fine = sorted(row_ref(d) for d in (reviews[3], more[1]))
    expected = {**dict(marks_of_group(great)), **dict(marks_of_group(fine))}
    marks = duplicate_marks(source_fingerprints(reversed(paths)))
    assert {ref: first for of_file in marks.values() for ref, first in of_file.items()} == expected
    assert len(expected) == 3 and set(expected.values()) == {great[0][0], fine[0][0]}
    in_a = {row_ref(d) for d in reviews}
    assert marks == {paths[0]: {ref: first for ref, first in expected.items() if ref in in_a},
                     paths[1]: {ref: first for ref, first in expected.items() if ref not in in_a}}


def test_texts_that_share_a_fingerprint_are_told_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [cleaned("review", f"r:{n}", text, str(n)) for n, text in enumerate(["One", "Two", "One"])]
    paths = labeled_files(tmp_path, {"a.parquet": rows})
    monkeypatch.setattr(duplicates, "text_fingerprint", lambda text: 42)  # every text collides
    assert set(id_and_text_fingerprints(paths[0])[1].tolist()) == {42}
    expected = {paths[0]: dict(marks_of_group([row_ref(rows[0]), row_ref(rows[2])]))}
    assert duplicate_marks(source_fingerprints(paths)) == expected


TEXTS = ["Great phone", "", "Überraschung: 5 € off 🎉", "日本語のレビュー", "Great phone", "x" * 3000]


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
def test_texts_are_hashed_as_their_utf8_bytes_also_in_a_slice(kind: pa.DataType) -> None:
    texts = pa.array(["skipped", *TEXTS], kind).slice(1)  # a slice starts at an offset into Arrow's buffers
    assert [bytes(view) for view in utf8_values(texts)] == [text.encode("utf-8") for text in TEXTS]


def test_fingerprints_and_digests_line_up_with_rows_across_reads(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(duplicates, "SCAN_ROWS", 4)  # batches that cut across the file's row groups of 3
    rows = [cleaned("review", f"r:{n}", text or ".", str(n)) for n, text in enumerate(TEXTS * 2)]
    [path] = labeled_files(tmp_path, {"a.parquet": rows}, row_group_size=3)
    texts = [row["text"].encode("utf-8") for row in rows]
    assert id_and_text_fingerprints(path)[1].tolist() == [text_fingerprint(text) for text in texts]
    wanted = np.array([n % 3 == 1 for n in range(len(rows))])
    assert list(candidate_digests(path, wanted)) == [
        (row_ref(row), text_digest(text)) for row, text, keep in zip(rows, texts, wanted, strict=True) if keep]


MARKING_PROBE = """
import ctypes, sys
import undertone  # Arrow allocates through glibc, as in a run
import pyarrow as pa, pyarrow.parquet as pq
from models.machine import resident_bytes
from transforms.duplicates import mark_files
path = sys.argv[1]
texts = [f"{n % 500} " + "é" * 20_000 for n in range(2_000)]  # 80 MB of UTF-8, each text four times
table = pa.table({"doc_id": [f"d{n}" for n in range(2_000)], "input_ref": [f"r{n}" for n in range(2_000)],
                  "text": texts, "duplicate_of": pa.nulls(2_000, pa.string())})
pq.write_table(table, path, row_group_size=200, compression="zstd")
warm_up = path + ".small"  # Arrow's, zstd's and numpy's own start-up memory is not the marking's
pq.write_table(table.slice(0, 10), warm_up, compression="zstd")
del table, texts
list(mark_files([warm_up]))
libc = ctypes.CDLL("libc.so.6")
libc.malloc_trim(0)
libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD and M_TRIM_THRESHOLD (-1) as glibc raises them once a
libc.mallopt(-1, 64 << 20)  # run has freed large blocks: 8 MB row groups then come from the heap
before = resident_bytes()
rewritten = list(mark_files([path]))
marked = sum(value is not None for value in pq.read_table(path, columns=["duplicate_of"])["duplicate_of"].to_pylist())
print(len(rewritten), marked, (resident_bytes() - before) >> 20)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="glibc heap behaviour on Linux")
def test_marking_gives_the_memory_of_what_it_read_back(tmp_path: Path) -> None:
    """Ten 8 MB row groups read twice and rewritten leave little resident (9 MiB here; 82-136 MiB without the
    trims, or with Arrow decoding in its own threads, whose glibc arenas ``malloc_trim`` does not shrink)."""
    done = subprocess.run([sys.executable, "-c", MARKING_PROBE, str(tmp_path / "part.parquet")], capture_output=True,
                          text=True, check=True, cwd=Path(__file__).resolve().parents[2])
    rewritten, marked, retained_mib = (int(value) for value in done.stdout.split()[-3:])
    assert (rewritten, marked) == (1, 1_500)
    assert retained_mib < 40


def test_files_without_repeats_give_no_marks(tmp_path: Path) -> None:
    paths = labeled_files(tmp_path, {"a.parquet": [cleaned("review", "r:1", "One", "1")],
                                     "b.parquet": [cleaned("social", "s:1", "One", "2")]})
    assert duplicate_marks(source_fingerprints(paths)) == {}
    assert duplicate_marks(source_fingerprints([])) == {}


def write_labeled(path: Path, documents: list[dict], row_group_size: int) -> pa.Schema:
    """A labeled file as a run writes it, from cleaned documents."""
    schema = file_schema(labeled_schema({"sentiment": ("negative", "neutral", "positive")}), LABELED_PARTITION_KEYS)
    run = {"sentiment": "positive", "sentiment_score": 0.9, "model_version": "tiny@0.0.1", "run_id": "r1",
           "processed_at": datetime(2026, 11, 20, tzinfo=UTC)}
    columns = {name: [{**document, **run}.get(name) for document in documents] for name in schema.names}
    pq.write_table(pa.table(columns, schema=schema), path, row_group_size=row_group_size, compression="zstd")
    return schema


def test_marking_a_file_changes_duplicate_of_only(tmp_path: Path) -> None:
    texts = ["Great phone", "Terrible battery", "Great phone", "Fine", "Great phone"]
    rows = [cleaned("review", f"r:{n}", text, str(n)) for n, text in enumerate(texts)]
    path = tmp_path / "part.parquet"
    schema = write_labeled(path, rows, row_group_size=2)  # three row groups: marks must line up across them
    before = pq.read_table(path)
    group = sorted(row_ref(rows[n]) for n in (0, 2, 4))
    marks = dict(marks_of_group(group))
    assert mark_file(str(path), marks) is True
    after = pq.read_table(path)
    assert after.schema == schema and pq.ParquetFile(path).num_row_groups == 3
    assert after.drop_columns(["duplicate_of"]) == before.drop_columns(["duplicate_of"])
    expected = [marks.get(row_ref(row)) for row in rows]
    assert after["duplicate_of"].to_pylist() == expected
    assert sum(value is not None for value in expected) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["part.parquet"]


def test_a_file_without_duplicates_is_left_as_written(tmp_path: Path) -> None:
    rows = [cleaned("review", f"r:{n}", text, str(n)) for n, text in enumerate(["One", "Two"])]
    path = tmp_path / "part.parquet"
    write_labeled(path, rows, row_group_size=10)
    written = path.stat().st_mtime_ns, path.read_bytes()
    elsewhere = cleaned("review", "other:1", "One", "9")
    assert mark_file(str(path), {row_ref(elsewhere): rows[0]["doc_id"]}) is False
    assert mark_file(str(path), {}) is False
    assert (path.stat().st_mtime_ns, path.read_bytes()) == written


@pytest.fixture
def object_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake object store (``fakestore://``) kept under ``tmp_path/store``."""
    monkeypatch.setattr(FakeObjectStore, "root", tmp_path / "store")
    return tmp_path / "store"


@pytest.mark.parametrize("temp_location", [None, "fakestore://bucket/tmp"])
def test_a_run_marks_repeats_across_files_and_row_groups(tiny_bundle: Path, tmp_path: Path, object_store: Path,
                                                         temp_location: str | None) -> None:
    """Also with the workers' files in an object store (a runner whose ``temp_location`` is a URL, as on
    Dataflow): they write and mark there, and the run fetches the files and empties the store."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.csv").write_text("review_id,review_text\n1,Great phone\n2,Terrible battery\n3,Great  phone\n",
                                  encoding="utf-8")
    (inputs / "b.csv").write_text("review_id,review_text\n4,Great phone\n5,Terrible battery!\n", encoding="utf-8")
    (inputs / "posts.jsonl").write_text('{"id": "6", "text": "Great phone"}\n', encoding="utf-8")
    beam_args = (f"--temp_location={temp_location}",) if temp_location else ()
    manifest = run_pipeline(PipelineConfig(inputs=(str(inputs),), output=str(tmp_path / "out"),
                                           logical_date="2026-11-20", model_dir=str(tiny_bundle), beam_args=beam_args))
    assert manifest["reconciled"] is True and manifest["totals"]["labeled"] == 6
    assert manifest["worker_staging"].startswith(temp_location or str(tmp_path / "out"))
    assert objects() == []
    labeled = pd.read_parquet(tmp_path / "out" / "labeled").set_index("source_id")
    great = labeled.loc[["1", "3", "4"]]
    first = min(zip(great["doc_id"], great["input_ref"], strict=True))[0]
    assert sorted(great["duplicate_of"].fillna("first")) == sorted([first, first, "first"])
    assert labeled.loc[["2", "5", "6"], "duplicate_of"].isna().all()  # other text; same text, other source
    assert not list((tmp_path / "out").rglob(".*.marking"))


def test_doc_ids_shared_by_different_texts_are_counted_per_source(tmp_path: Path) -> None:
    """A review export that reuses an id, two mails with one Message-ID: one doc_id, two texts, which
    ``duplicate_of`` cannot show. The same record read twice (one text) is not a reused id."""
    reviews = [cleaned("review", "r:1", "Great phone", "a8"), cleaned("review", "r:2", "Battery died in a day", "a8"),
               cleaned("review", "r:3", "Fine", "a9"), cleaned("review", "copy:3", "Fine", "a9")]
    more = [cleaned("review", "b:1", "Arrived broken", "b1"), cleaned("review", "b:2", "Works well", "b1"),
            cleaned("review", "b:3", "Works", "b1")]
    posts = [cleaned("social", "s:1", "Great phone", "a8")]
    assert reviews[0]["doc_id"] == reviews[1]["doc_id"] != posts[0]["doc_id"]
    paths = labeled_files(tmp_path, {"a.parquet": reviews, "b.parquet": more, "c.parquet": posts})
    assert reused_ids(source_fingerprints(paths)) == {"review": 2}
    assert reused_ids(source_fingerprints(paths[2:])) == {}
    assert reused_ids(source_fingerprints([])) == {}
