"""Review and social rows: auto-detected columns, explicit mapping, malformed rows."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import SAMPLES
from transforms.ingest.tabular import ColumnMap, guess_source, parse_timestamp, read_csv, read_jsonl, read_parquet
from transforms.ingest.tabular import row_to_document as to_document
from transforms.records import Failure


def test_sample_csv_columns_are_auto_detected() -> None:
    with (SAMPLES / "reviews" / "movie-reviews.csv").open("rb") as handle:
        rows = list(read_csv(handle, "movie-reviews.csv"))
    assert len(rows) == 36
    ref, row = rows[0]
    assert ref == "movie-reviews.csv:2"
    columns = ColumnMap().resolve(list(row))
    assert (columns.text, columns.id, columns.created_at, columns.product) == (
        "review_text", "review_id", "created_at", "product")
    document = to_document(row, columns, "review", ref)
    assert document["source_id"] == "sst2-dev-0000"
    assert document["created_at"].isoformat() == "2026-11-18T08:00:00+00:00"
    assert document["text"] == "it's a charming and often affecting journey."


def test_sample_jsonl_bad_line_is_a_failure_with_its_line_number() -> None:
    with (SAMPLES / "social" / "posts.jsonl").open("rb") as handle:
        rows = list(read_jsonl(handle, "posts.jsonl"))
    failures = [row for _, row in rows if isinstance(row, Failure)]
    assert len(rows) == 38
    assert [(f.input_ref, f.error_type) for f in failures] == [("posts.jsonl:12", "invalid_json")]


def test_explicit_mapping_wins_and_missing_text_column_is_explained() -> None:
    row = {"msg": "great phone", "body": "ignored", "stars": "4"}
    document = to_document(row, ColumnMap(text="msg").resolve(list(row)), "review", "r:1")
    assert document["text"] == "great phone" and document["rating"] == 4.0
    failure = to_document({"words": "x"}, ColumnMap().resolve(["words"]), "review", "r:2")
    assert isinstance(failure, Failure) and failure.error_type == "no_text_column"


def test_invalid_utf8_in_csv_fails_only_that_row() -> None:
    data = b"id,text\n1,fine row\n2,caf\xe9 broken\n3,also fine\n"
    rows = list(read_csv(io.BytesIO(data), "f.csv"))
    documents = [to_document(row, ColumnMap().resolve(list(row)), "review", ref) for ref, row in rows]
    assert [d.error_type if isinstance(d, Failure) else d["text"] for d in documents] == [
        "fine row", "invalid_utf8", "also fine"]


def test_parquet_rows_and_timestamps(tmp_path) -> None:
    table = pa.table({"id": ["a", "b"], "content": ["good", "bad"], "timestamp": [1_700_000_000, 1_700_000_000_000]})
    pq.write_table(table, tmp_path / "t.parquet")
    with (tmp_path / "t.parquet").open("rb") as handle:
        rows = list(read_parquet(handle, "t.parquet"))
    assert [ref for ref, _ in rows] == ["t.parquet#row=0", "t.parquet#row=1"]
    stamps = [parse_timestamp(row["timestamp"]) for _, row in rows]
    assert stamps[0] == stamps[1] and stamps[0].isoformat() == "2023-11-14T22:13:20+00:00"


def test_source_guess_from_columns_then_file_name() -> None:
    assert guess_source(["review_text", "stars"], "x.csv") == "review"
    assert guess_source(["text", "retweets", "screen_name"], "x.csv") == "social"
    assert guess_source(["text"], "tweets-2026.jsonl") == "social"
    assert guess_source(["text"], "export.csv") is None


def test_non_object_json_line_is_a_failure() -> None:
    rows = list(read_jsonl(io.BytesIO(json.dumps([1, 2]).encode() + b"\n"), "a.jsonl"))
    assert rows[0][1].error_type == "not_an_object"
