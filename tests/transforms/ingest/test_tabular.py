"""Review and social rows: auto-detected columns, explicit mapping, malformed rows."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import random
import time
import tracemalloc
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import SAMPLES
from transforms.clean import clean_document
from transforms.ingest import tabular
from transforms.ingest.read import read_path
from transforms.ingest.tabular import (
    ColumnMap,
    LinearSniffer,
    guess_source,
    meta_export_post,
    parse_timestamp,
    read_csv,
    read_json_array,
    read_jsonl,
    read_parquet,
)
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


def test_a_mapped_column_the_table_lacks_is_said_not_silently_dropped(tmp_path: Path) -> None:
    """``--author-column nobody`` (a typo, or an export that renamed the column) left author, created_at and the
    id empty with no word, and the doc_ids changed with the missing id; each record now says which mapping found
    no column, and a missing mapped text column names itself in the dead letter."""
    export = tmp_path / "reviews.csv"
    export.write_text("review_id,text,when,reviewer\nr1,Arrived broken,2026-11-20,bob\n", encoding="utf-8")
    (document,) = read_path(str(export), columns=ColumnMap(id="id", created_at="when", author="nobody"))
    assert document["created_at"] is not None and document["author"] is None
    assert document["ingest_notes"] == [
        "--id-column 'id' is not a column of this table: id left empty",
        "--author-column 'nobody' is not a column of this table: author left empty"]
    (failure,) = read_path(str(export), columns=ColumnMap(text="body"))
    assert failure.error_type == "no_text_column"
    assert failure.error == "--text-column 'body' is not a column of this table (review_id, reviewer, text, when)"


def test_invalid_utf8_in_csv_fails_only_that_row() -> None:
    """A damaged UTF-8 file (its other accents valid UTF-8) is no code page to guess: the bad row is a dead letter."""
    data = "id,text\n1,fine café row\n2,caf\udce9 broken\n3,naïve also fine\n".encode("utf-8", "surrogateescape")
    rows = list(read_csv(io.BytesIO(data), "f.csv"))
    documents = [row if isinstance(row, Failure) else to_document(row, ColumnMap().resolve(list(row)), "review", ref)
                 for ref, row in rows]
    assert [d.error_type if isinstance(d, Failure) else d["text"] for d in documents] == [
        "fine café row", "invalid_utf8", "naïve also fine"]
    assert documents[1].raw_excerpt == '{"id": "2", "text": "caf\\xe9 broken"}'  # the byte shown, not a surrogate


@pytest.mark.parametrize(("code_page", "texts"), [
    ("cp1252", ["Café crème, naïve – great", "“Smart quotes” and 5 €"]),
    ("cp1251", ["Отличный товар, рекомендую", "Доставка заняла неделю"]),
    ("cp1250", ["Zażółć gęślą jaźń, dobry produkt", "Dostawa trwała tydzień"]),
])
def test_a_csv_in_a_windows_code_page_is_read_in_it_with_a_note(tmp_path: Path, code_page: str,
                                                                 texts: list[str]) -> None:
    """Excel's plain "CSV" writes the system's code page with no byte-order mark: read as UTF-8, every row with an
    accent, a curly quote or a non-Latin letter was an ``invalid_utf8`` dead letter."""
    path = tmp_path / "reviews.csv"
    path.write_bytes("review_id,review_text,rating\n1,plain ascii row,4\n".encode(code_page)
                     + "".join(f'{n},"{text}",5\n' for n, text in enumerate(texts, start=2)).encode(code_page))
    documents = list(read_path(str(path)))
    assert [document["text"] for document in documents] == ["plain ascii row", *texts]
    assert {tuple(document["ingest_notes"]) for document in documents} == {
        (f"decoded as {code_page}: the file is not UTF-8 and has no byte-order mark",)}


@pytest.mark.parametrize(("code_page", "texts"), [
    ("cp1252", ["Café crème, naïve – great", "“Smart quotes” and 5 €"]),
    ("cp1251", ["Отличный товар, рекомендую", "Доставка заняла неделю"]),
    ("cp1250", ["Zażółć gęślą jaźń, dobry produkt", "Dostawa trwała tydzień"]),
])
def test_a_code_page_whose_first_letter_comes_late_among_ascii_rows_is_still_detected(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code_page: str, texts: list[str]) -> None:
    """A large export whose first accent came after the sample (1 MiB; 4 KiB here) was read as UTF-8, and every
    row with an accent was a dead letter; and among many ASCII lines a Polish or Russian line was detected as
    Windows-1252."""
    monkeypatch.setattr(tabular, "ENCODING_SAMPLE_BYTES", 4096)
    plain = [f"order {n} arrived on time, works as described" for n in range(300)]
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"review_id,review_text,rating\n"
                     + "".join(f'{n},"{text}",5\n' for n, text in enumerate([*plain, *texts])).encode(code_page))
    documents = list(read_path(str(path)))
    assert [document["text"] for document in documents] == [*plain, *texts]
    assert documents[-1]["ingest_notes"] == [
        f"decoded as {code_page}: the file is not UTF-8 and has no byte-order mark"]


@pytest.mark.parametrize("layout", ["lines", "array", "pretty_sequence"])
@pytest.mark.parametrize(("code_page", "texts"), [
    ("cp1252", ["Café crème, naïve – great", "“Smart quotes” and 5 €"]),
    ("cp1251", ["Отличный товар, рекомендую", "Доставка заняла неделю"]),
])
def test_json_in_a_windows_code_page_is_read_in_it_with_a_note(tmp_path: Path, code_page: str, texts: list[str],
                                                                layout: str) -> None:
    """Python on Windows writes the code page with ``open(path, "w")``, and ``json.dump(..., ensure_ascii=False)``
    puts the letters themselves in it: every JSON line with an accent was an ``invalid_utf8`` dead letter, and an
    array broke at its first accent, every record from there on unread."""
    records = [{"id": n, "text": text} for n, text in enumerate(["plain ascii row", *texts])]
    written = {"lines": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
               "array": json.dumps(records, ensure_ascii=False, indent=2),
               "pretty_sequence": "".join(json.dumps(r, ensure_ascii=False, indent=2) + "\n" for r in records)}
    path = tmp_path / ("reviews.json" if layout == "array" else "reviews.jsonl")
    path.write_bytes(written[layout].encode(code_page))
    documents = list(read_path(str(path)))
    assert [document["text"] for document in documents] == ["plain ascii row", *texts]
    assert {tuple(document["ingest_notes"]) for document in documents} == {(
        f"decoded as {code_page}: the file is not UTF-8 and has no byte-order mark",)}


@pytest.mark.parametrize(("code_page", "text"), [("shift_jis", "とても良い商品です"), ("koi8_r", "Отличный товар")])
def test_a_short_table_in_a_code_page_detection_is_not_sure_of_stays_dead_letters(tmp_path: Path, code_page: str,
                                                                                   text: str) -> None:
    """Detected, these read as Korean and as Shift JIS: dead letters that say so beat labeled garbage."""
    path = tmp_path / "reviews.csv"
    path.write_bytes(f"id,text\n1,plain row\n2,{text}\n".encode(code_page))
    document, failure = read_path(str(path))
    assert (document["text"], document["ingest_notes"], failure.error_type) == ("plain row", [], "invalid_utf8")


def test_a_byte_the_code_page_leaves_undefined_past_the_sample_fails_only_its_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tabular, "ENCODING_SAMPLE_BYTES", 24)
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"id,text\n1,caf\xe9 cr\xe8me\n2,bad \x81 byte\n3,tr\xe8s bon \x96 merci\n")
    first, failure, last = read_path(str(path))
    assert (first["text"], last["text"]) == ("café crème", "très bon – merci")
    assert (failure.input_ref, failure.error_type, failure.error) == (f"{path}:3", "invalid_utf8",
                                                                     "row is not valid CP1252")


def test_a_quote_never_closed_is_a_dead_letter_not_the_rest_of_the_file_as_one_review(tmp_path: Path) -> None:
    """A stray opening quote made the csv module read every later line into that cell up to the end of the file;
    the rows after it were labeled as one review's text, without a word."""
    path = tmp_path / "reviews.csv"
    path.write_text('review_id,rating,text\nr1,5,"Kettle boils fast, ""quiet"" too."\nr2,1,"Lid broke on day one\n'
                    "r3,4,Handle stays cool\nr4,2,Descaling is a chore\n", encoding="utf-8")
    first, failure = read_path(str(path))
    assert first["text"] == 'Kettle boils fast, "quiet" too.'
    assert (failure.input_ref, failure.stage, failure.error_type) == (f"{path}:5", "parse", "unclosed_quote")
    assert failure.source == "review" and "r3,4,Handle stays cool" in failure.raw_excerpt


def test_a_quote_in_the_header_never_closed_is_a_dead_letter_not_an_empty_file(tmp_path: Path) -> None:
    """The whole file was read into the header's quoted cell, and the file gave no record at all: its rows were
    lost without a word (found by fuzzing)."""
    path = tmp_path / "reviews.csv"
    path.write_text('"review_id,rating,text\nr1,5,Kettle boils fast\nr2,1,Lid broke on day one\n', encoding="utf-8")
    (failure,) = read_path(str(path))
    assert (failure.input_ref, failure.stage, failure.error_type) == (f"{path}:1", "parse", "unclosed_quote")
    assert failure.error.endswith("the next 2 lines were read into the header, not as rows")
    assert "r2,1,Lid broke on day one" in failure.raw_excerpt
    closed_later = tmp_path / "later.csv"  # the quote closes on the second line: the rows after it are read
    closed_later.write_text('"id,text\n1,Kettle boils fast",text\n2,Lid broke on day one\n', encoding="utf-8")
    failure, document = read_path(str(closed_later))
    assert (failure.error_type, document["text"]) == ("unclosed_quote", "Lid broke on day one")
    assert failure.error.endswith("the next line was read into the header, not as rows")
    multi_line_name = tmp_path / "posts.csv"
    multi_line_name.write_text('"note\n(internal)",text\nx,fine\n', encoding="utf-8")  # a name over two lines
    (document,) = read_path(str(multi_line_name))
    assert document["text"] == "fine"


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


def texts(rows) -> list[str]:
    return [to_document(row, ColumnMap().resolve(list(row)), "review", ref)["text"] for ref, row in rows]


def test_byte_order_marks_name_the_encoding() -> None:
    """Excel saves "CSV UTF-8" with a BOM and "Unicode text" as UTF-16; PowerShell writes UTF-16 JSON."""
    table = "id,text\n1,Café au lait\n2,“smart quotes” ok\n"
    for data in (codecs.BOM_UTF8 + table.encode(), table.encode("utf-16"), table.encode("utf-32")):
        rows = list(read_csv(io.BytesIO(data), "f.csv"))
        assert [row["id"] for _, row in rows] == ["1", "2"]
        assert texts(rows) == ["Café au lait", "“smart quotes” ok"]
    lines = '{"id": "1", "text": "Café au lait"}\n{"id": "2", "text": "naïve"}\n'
    for data in (codecs.BOM_UTF8 + lines.encode(), lines.encode("utf-16")):
        assert texts(read_jsonl(io.BytesIO(data), "f.jsonl")) == ["Café au lait", "naïve"]
    array = json.dumps([{"text": "Café"}], ensure_ascii=False)
    for data in (codecs.BOM_UTF8 + array.encode(), array.encode("utf-16")):
        assert texts(read_json_array(io.BytesIO(data), "f.json")) == ["Café"]


def test_lone_surrogate_escapes_become_replacement_characters_with_a_note() -> None:
    """Exporters that cut text at a length limit can split an emoji into a lone ``\\ud83d``."""
    data = b'{"id": "1", "text": "so good \\ud83d", "user": "\\udc80x"}\n{"id": "2", "text": "ok \\ud83d\\ude00"}\n'
    (_, cut), (_, whole) = read_jsonl(io.BytesIO(data), "f.jsonl")
    document = to_document(cut, ColumnMap().resolve(list(cut)), "social", "f.jsonl:1")
    assert (document["text"], document["author"]) == ("so good \ufffd", "\ufffdx")
    assert document["ingest_notes"] == ["lone surrogates replaced with U+FFFD in text, author"]
    paired = to_document(whole, ColumnMap().resolve(list(whole)), "social", "f.jsonl:2")
    assert paired["text"] == "ok 😀" and paired["ingest_notes"] == []


@pytest.mark.parametrize(("written", "expected"), [
    ("Wed Oct 10 20:19:24 +0000 2018", "2018-10-10T20:19:24+00:00"),  # Twitter API v1.1 created_at
    ("Sat, 29 Nov 2026 10:00:00 +0100", "2026-11-29T09:00:00+00:00"),  # RFC 2822, emails exported to CSV
    ("November 29, 2026", "2026-11-29T00:00:00+00:00"),
    ("2026-11-29 10:00:00 UTC", "2026-11-29T10:00:00+00:00"),
    ("29.11.2026 10:00", "2026-11-29T10:00:00+00:00"),  # day first, and it cannot be read the other way
    ("2026-11-29T10:00:00+01:00", "2026-11-29T09:00:00+00:00"),
])
def test_timestamps_as_exports_write_them(written: str, expected: str) -> None:
    assert parse_timestamp(written).isoformat() == expected


@pytest.mark.parametrize("written", ["01/02/2026", "Monday", "Nov 29", "10:30 PST 2026-11-29", "5 stars", True])
def test_a_date_that_would_be_a_guess_is_left_empty_with_a_note(written: object) -> None:
    row = {"text": "fine", "created_at": written}
    document = to_document(row, ColumnMap().resolve(list(row)), "social", "f.jsonl:1")
    assert document["created_at"] is None
    assert document["ingest_notes"] == [f"unparseable created_at: {written}"]


def test_a_time_cell_too_long_to_be_a_time_is_not_read() -> None:
    """A stray quote runs a CSV cell on over many lines; in the time column the date parser took 8 s for 2,000,000
    characters. Past ``TIME_TEXT_CHARS`` a cell is unparseable unread."""
    row = {"text": "fine", "created_at": "1 " * 1_500_000}
    started = time.perf_counter()
    document = to_document(row, ColumnMap().resolve(list(row)), "review", "r.csv:2")
    assert time.perf_counter() - started < 2
    assert document["created_at"] is None and document["ingest_notes"] == ["unparseable created_at: " + "1 " * 20]


@pytest.mark.parametrize(("written", "expected"), [
    ("4.0 out of 5 stars", 4.0), ("4/5", 4.0), ("4,5", 4.5), ("★★★★☆", 4.0), ("1 star", 1.0), (3, 3.0), ("", None)])
def test_ratings_as_review_exports_write_them(written: object, expected: float | None) -> None:
    row = {"review_text": "fine", "rating": written}
    document = to_document(row, ColumnMap().resolve(list(row)), "review", "r.csv:2")
    assert document["rating"] == expected and document["ingest_notes"] == []


def test_a_rating_that_is_not_one_is_left_empty_with_a_note() -> None:
    row = {"review_text": "fine", "stars": "3-4"}
    document = to_document(row, ColumnMap().resolve(list(row)), "review", "r.csv:2")
    assert document["rating"] is None and document["ingest_notes"] == ["non-numeric rating: 3-4"]


@pytest.mark.parametrize("written", [float("inf"), float("-inf")])
def test_an_infinite_rating_is_left_empty_with_a_note(written: float) -> None:
    row = {"review_text": "fine", "rating": written}
    document = to_document(row, ColumnMap().resolve(list(row)), "review", "r.jsonl:2")
    assert document["rating"] is None and document["ingest_notes"] == [f"non-numeric rating: {written}"]


def test_a_nan_date_or_rating_is_left_empty_with_a_note() -> None:
    """Python's ``json.dumps`` writes a float NaN as a bare ``NaN``, which ``json.loads`` reads back; it passed as an
    empty cell without a word, where a boolean date or an infinite rating got a note."""
    line = json.dumps({"id": "p7", "text": "still waiting for my refund", "created_at": float("nan"),
                       "stars": float("nan")})
    assert '"created_at": NaN' in line
    ((ref, row),) = read_jsonl(io.BytesIO(line.encode() + b"\n"), "posts.jsonl")
    document = to_document(row, ColumnMap().resolve(list(row)), "social", ref)
    assert (document["created_at"], document["rating"]) == (None, None)
    assert document["ingest_notes"] == ["unparseable created_at: nan", "non-numeric rating: nan"]
    ((ref, row),) = read_csv(io.BytesIO(b"id,text,created_at\np8,arrived on time,NaN\n"), "posts.csv")
    assert to_document(row, ColumnMap().resolve(list(row)), "social", ref)["ingest_notes"] == [
        "unparseable created_at: NaN"]


def test_a_nested_id_is_kept_as_json_text() -> None:
    row = {"id": {"shop": "eu", "n": 7}, "text": "fine"}
    document = to_document(row, ColumnMap().resolve(list(row)), "review", "r.jsonl:2")
    assert document["source_id"] == '{"n":7,"shop":"eu"}'


def test_an_integer_id_column_with_gaps_as_pandas_writes_it_gives_integer_ids_and_distinct_doc_ids(
        tmp_path: Path) -> None:
    """pandas holds an integer column with a gap as floats, and Python's ``json.dumps`` writes the gaps as NaN: the
    ids were "1.0" and "nan", every id-less record of the file one ``doc_id`` (reused_ids in the manifest), and a
    missing product the text "nan"."""
    frame = pd.DataFrame({"id": [1, None, 3, None], "text": ["great phone", "awful battery", "ok", "fine"],
                          "product": ["p1", None, "p3", "p4"]})
    assert frame["id"].dtype == "float64"
    lines = tmp_path / "reviews.jsonl"
    lines.write_text("".join(json.dumps(record) + "\n" for record in frame.to_dict("records")))
    assert "NaN" in lines.read_text()
    frame.to_parquet(tmp_path / "reviews.parquet")
    for path in (lines, tmp_path / "reviews.parquet"):
        documents = list(read_path(str(path)))
        assert [document["source_id"] for document in documents[::2]] == ["1", "3"]
        assert len({document["doc_id"] for document in documents}) == 4
        assert [document["product"] for document in documents] == ["p1", None, "p3", "p4"]


def test_an_id_past_a_numbers_range_is_left_out_with_a_note() -> None:
    """``1e400`` reads as infinity: as the id "inf" it gave every such record one ``doc_id``."""
    rows = [json.loads(f'{{"id": {number}, "text": "fine"}}') for number in ("1e400", "2e400")]
    documents = [to_document(row, ColumnMap().resolve(list(row)), "review", f"r.jsonl:{n}")
                 for n, row in enumerate(rows, start=1)]
    assert documents[0]["doc_id"] != documents[1]["doc_id"]
    assert documents[0]["ingest_notes"] == ["id past a number's range (inf): left out"]


def test_a_repeated_header_name_keeps_the_first_column_as_the_text() -> None:
    """The csv module kept the last of two ``text`` columns; pandas numbers the repeat ``text.1``."""
    rows = list(read_csv(io.BytesIO(b"id,text,rating,text\n1,the review itself,4,internal note\n"), "r.csv"))
    ((ref, row),) = rows
    assert row == {"id": "1", "text": "the review itself", "rating": "4", "text.1": "internal note"}
    assert to_document(row, ColumnMap().resolve(list(row)), "review", ref)["text"] == "the review itself"


def test_a_parquet_files_repeated_column_names_are_numbered_as_a_csv_headers_are() -> None:
    """A row's dict kept the last of two ``text`` columns (an internal note), where a CSV's text is its first."""
    table = pa.table([["r1"], ["the review itself"], [4], ["internal note"]], names=["id", "text", "rating", "text"])
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    buffer.seek(0)
    ((ref, row),) = read_parquet(buffer, "r.parquet")
    assert row == {"id": "r1", "text": "the review itself", "rating": 4, "text.1": "internal note"}
    assert to_document(row, ColumnMap().resolve(list(row)), "review", ref)["text"] == "the review itself"


def test_a_repeat_numbered_as_a_name_the_header_holds_takes_the_next_number() -> None:
    """A file once saved by pandas holds ``text.1``; another ``text`` column added later was numbered ``text.1``
    too, and the csv module kept one of the two cells. pandas skips the taken name and calls it ``text.2``."""
    data = b"id,text,text.1,rating,text\nr1,the review itself,translated: die Bewertung,4,internal note\n"
    ((_, row),) = read_csv(io.BytesIO(data), "r.csv")
    assert row == {"id": "r1", "text": "the review itself", "text.1": "translated: die Bewertung", "rating": "4",
                   "text.2": "internal note"}
    assert list(row) == list(pd.read_csv(io.BytesIO(data)).columns)
    ((_, row),) = read_csv(io.BytesIO(b"text,text,text.1\na,b,c\n"), "r.csv")
    assert row == {"text": "a", "text.2": "b", "text.1": "c"}


def test_a_row_with_extra_cells_is_a_failure_that_shows_the_whole_row() -> None:
    data = b"uid,opinion,stars\nr1,fine,4\nr5,\"arrived broken, twice\",2,EXTRA,MORE\n"
    ((_, good), (ref, failure)) = read_csv(io.BytesIO(data), "r.csv")
    assert good == {"uid": "r1", "opinion": "fine", "stars": "4"}
    assert (ref, failure.error_type) == ("r.csv:3", "csv_extra_cells")
    assert failure.error == "row has 2 more cells than the header"
    assert json.loads(failure.raw_excerpt) == ["r5", "arrived broken, twice", "2", "EXTRA", "MORE"]


def test_a_json_array_streams_a_record_at_a_time() -> None:
    """``json.loads`` held the whole file and every record at once: several times a large export's size."""
    record = {"id": "x", "text": "the parcel arrived two weeks late and the box was crushed " * 4, "stars": 2.5}
    data = ("[" + ",".join(json.dumps({**record, "id": str(i)}) for i in range(60_000)) + "]").encode()
    assert len(data) > 15_000_000
    tracemalloc.start()
    try:
        rows = read_json_array(io.BytesIO(data), "export.json")
        first = next(rows)
        count = 1 + sum(1 for _ in rows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 60_000 and first == ("export.json[0]", {**record, "id": "0"})
    assert peak < 2_000_000, peak


def test_records_of_the_first_array_an_object_holds_and_a_break_keeps_what_came_before() -> None:
    wrapped = b'{"meta": {"pages": [1, 2]}, "data": [{"text": "one"}, 7, {"text": "two"}], "more": [{"text": "no"}]}'
    assert [(ref, row if isinstance(row, dict) else row.error_type) for ref, row in
            read_json_array(io.BytesIO(wrapped), "f.json")] == \
        [("f.json[0]", {"text": "one"}), ("f.json[1]", "not_an_object"), ("f.json[2]", {"text": "two"})]
    single = list(read_json_array(io.BytesIO(b'{"text": "just one"}'), "one.json"))
    assert single == [("one.json", {"text": "just one"})]
    cut = list(read_json_array(io.BytesIO(b'[{"text": "a"}, {"text": "b"}, {"text": '), "cut.json"))
    assert [row for _, row in cut[:2]] == [{"text": "a"}, {"text": "b"}]
    assert cut[2][1].error_type == "invalid_json" and "after 2 records" in cut[2][1].error
    (scalar,) = read_json_array(io.BytesIO(b'"just a string"'), "s.json")
    assert scalar[1].error_type == "not_an_array"


def test_records_under_a_key_with_a_dot_or_an_empty_key_are_read_from_that_array_alone() -> None:
    """ijson names a place by its keys joined with dots: the prefix ``reviews.en.item`` also matched the vendor's
    replies under ``{"reviews": {"en": [...]}}``, read as reviews, and the prefix of an array under the key ``""``
    matched nothing, the file read as empty without a word."""
    by_locale = {
        "exported_at": "2026-11-20T06:00:00Z",
        "reviews.en": [{"id": "r1", "text": "Battery died after two days."},
                       {"id": "r2", "text": "Arrived early, works great."}],
        "reviews": {"en": [{"id": "r1-reply", "text": "Sorry to hear that, we have sent a replacement."}]},
        "reviews.de": [{"id": "r3", "text": "Leider kaputt angekommen."}],
    }
    rows = list(read_json_array(io.BytesIO(json.dumps(by_locale).encode()), "export.json"))
    assert [(ref, row["id"]) for ref, row in rows] == [("export.json[0]", "r1"), ("export.json[1]", "r2")]
    by_category = {"": [{"id": "r4", "text": "No category, still a review."}], "books": [{"id": "r5", "text": "x"}]}
    rows = list(read_json_array(io.BytesIO(json.dumps(by_category).encode()), "export.json"))
    assert [(ref, row["id"]) for ref, row in rows] == [("export.json[0]", "r4")]


class _Trickle(io.BytesIO):
    """A file that gives at most ``step`` bytes a read, as a network or decompressing reader may: a bare word or a
    string's escape is cut between two reads."""

    def __init__(self, data: bytes, step: int) -> None:
        super().__init__(data)
        self.step = step

    def read(self, size: int | None = -1) -> bytes:
        return super().read(self.step if size is None or size < 0 else min(size, self.step))


@pytest.mark.parametrize(("encoding", "step"), [("utf-8", 1 << 16), ("utf-8", 1), ("utf-8", 5), ("utf-16", 3)])
def test_bare_nan_and_infinities_in_a_json_array_are_read_as_json_lines_read_them(encoding: str, step: int) -> None:
    """Python's ``json.dumps`` writes a float NaN or infinity as a bare ``NaN``, ``Infinity`` or ``-Infinity``, which
    ijson refuses: every record from the first one on was lost in one invalid_json dead letter."""
    records = [
        {"id": 1, "text": "Great", "rating": float("nan"), "created_at": "2026-11-20T06:00:00Z"},
        {"id": 2, "text": 'Said "NaN" in stock \\ then -Infinity days, null', "rating": float("inf"),
         "created_at": float("nan")},
        {"id": 3, "text": "NaN", "rating": float("-inf"), "created_at": None},
        {"id": 4, "text": 'ends in a backslash \\', "rating": 4, "created_at": float("inf")},
    ]
    export = json.dumps(records, indent=2)
    assert '"rating": NaN' in export and '"rating": -Infinity' in export
    rows = list(read_json_array(_Trickle(export.encode(encoding), step), "export.json"))
    assert [ref for ref, _ in rows] == [f"export.json[{index}]" for index in range(4)]
    lines = list(read_jsonl(io.BytesIO("\n".join(map(json.dumps, records)).encode()), "export.jsonl"))
    assert json.dumps([row for _, row in rows]) == json.dumps([row for _, row in lines]) == json.dumps(records)
    notes = [to_document(row, ColumnMap().resolve(list(row)), "review", ref)["ingest_notes"] for ref, row in rows]
    assert notes == [["non-numeric rating: nan"], ["unparseable created_at: nan", "non-numeric rating: inf"],
                     ["non-numeric rating: -inf"], ["unparseable created_at: inf"]]
    ((_, single),) = read_json_array(_Trickle(json.dumps(records[1]).encode(), step), "one.json")
    assert json.dumps(single) == json.dumps(records[1])


def test_escaped_quotes_past_the_sniffed_sample_are_read_as_quotes(tmp_path: Path) -> None:
    """A review export whose first 64 KiB has no "" in a quoted cell was sniffed with doublequote=False, and a
    later ``"The ""premium"" model"`` was labeled as ``The "premium"" model"`` (or, with a comma in the cell,
    dead-lettered as extra cells)."""
    rows = ["id,rating,text"] + [f"{i},4,Solid product number {i} works as described and arrived on time"
                                 for i in range(1, 1500)]
    rows += ['9001,1,"The ""premium"" model is a joke"', '9002,2,"He said ""it will last"", but it broke"']
    path = tmp_path / "reviews.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert path.stat().st_size > 64 * 1024
    records = {record["input_ref"]: record for record in read_path(str(path))}
    assert not any(isinstance(record, Failure) for record in records.values())
    texts = {record["text"] for record in records.values() if record["text"].startswith(("The", "He"))}
    assert texts == {'The "premium" model is a joke', 'He said "it will last", but it broke'}


def test_a_nested_author_object_gives_its_handle_not_its_fields(tmp_path: Path) -> None:
    """Twitter API v1 nests the author as ``user``: written whole, as Python's repr, its email address reached
    the output in clear (an address-shaped author is hashed, a repr of a dict is not)."""
    path = tmp_path / "tweets.json"
    path.write_text(json.dumps([
        {"id": 1, "full_text": "@AirlineX lost my bag",
         "user": {"screen_name": "jane_doe", "email": "jane@example.com"}},
        {"id": 2, "full_text": "lost again", "user": {"email": "joe@example.com"}},
    ]), encoding="utf-8")
    first, second = read_path(str(path))
    assert first["author"] == "jane_doe"
    assert second["author"] is None and any("author object" in note for note in second["ingest_notes"])
    assert "example.com" not in json.dumps([first, second], default=str)


@pytest.mark.parametrize(("written", "expected"), [
    ("20261120", "2026-11-20T00:00:00+00:00"),  # YYYYMMDD, as ERP and warehouse exports write a day
    (20261120, "2026-11-20T00:00:00+00:00"),  # the same as an integer date key in JSON
    ("1732000000", "2024-11-19T07:06:40+00:00"),  # epoch seconds
    ("1732000000.5", "2024-11-19T07:06:40.500000+00:00"),  # epoch seconds with a fraction (Python's time.time())
    (1732000000.5, "2024-11-19T07:06:40.500000+00:00"),
    ("1732000000123", "2024-11-19T07:06:40.123000+00:00"),  # epoch milliseconds
    ("1732000000123456", "2024-11-19T07:06:40.123456+00:00"),  # epoch microseconds (BigQuery, Kafka Connect)
    (1732000000123456, "2024-11-19T07:06:40.123456+00:00"),
    ("1732000000123456789", "2024-11-19T07:06:40.123457+00:00"),  # epoch nanoseconds (pandas), to the microsecond
    ("86400000", "1972-09-27T00:00:00+00:00"),  # eight digits that are no date stay epoch seconds
])
def test_compact_dates_and_epoch_numbers(written: object, expected: str) -> None:
    """``20261120`` was taken for epoch seconds (a day in August 1970), and epoch seconds with a fraction were
    left empty with a note."""
    assert parse_timestamp(written).isoformat() == expected


def test_epoch_microseconds_and_nanoseconds_in_an_export_give_the_time(tmp_path: Path) -> None:
    """Exports that write epoch microseconds (BigQuery, Kafka Connect) or nanoseconds (pandas) got an empty
    created_at and an "unparseable" note on every row; a number past every unit's range still gets the note."""
    path = tmp_path / "posts.csv"
    path.write_text("post_id,posted_at,text\np1,1732000000123456,Flight delayed again\n"
                    "p2,1732000000123456789,Crew was lovely\np3,17320000001234567890123,Lost my bag\n",
                    encoding="utf-8")
    micro, nano, beyond = read_path(str(path))
    assert micro["created_at"].isoformat() == "2024-11-19T07:06:40.123456+00:00" and micro["ingest_notes"] == []
    assert nano["created_at"].isoformat() == "2024-11-19T07:06:40.123457+00:00" and nano["ingest_notes"] == []
    assert beyond["created_at"] is None
    assert beyond["ingest_notes"] == ["unparseable posted_at: 17320000001234567890123"]


@pytest.mark.parametrize("written", ["20261399", 20260230, "19991300"])
def test_eight_digits_that_start_as_a_year_but_are_no_day_are_refused(written: object) -> None:
    """``20261399`` (a date key with month 13) was read as epoch seconds: a time in August 1970, with no note."""
    with pytest.raises(ValueError, match="is no day of the year"):
        parse_timestamp(written)


def test_a_compact_date_column_in_a_csv_gives_the_day(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text("review_id,review_date,rating,text\nr1,20261120,2,Zipper broke on day one\n"
                    "r2,20261320,1,Strap snapped\n", encoding="utf-8")
    document, wrong_day = read_path(str(path))
    assert document["created_at"].isoformat() == "2026-11-20T00:00:00+00:00"
    assert document["ingest_notes"] == []
    assert wrong_day["created_at"] is None and wrong_day["ingest_notes"] == ["unparseable review_date: 20261320"]


@pytest.mark.parametrize("line_break", ["\r\n", "\n"])
def test_an_excel_separator_hint_line_names_the_delimiter_and_is_no_record(tmp_path: Path, line_break: str) -> None:
    """Excel's "CSV (semicolon)" exports (and those for its European locales) start with ``sep=;``: it was read as
    the header, so every row was dead-lettered (no text column, or extra cells where a text held the hint's
    delimiter). Line numbers stay those of the file."""
    lines = ["sep=;", "review_id;rating;text", "r1;5;Great kettle, boils fast", "r2;1;Lid broke after a week"]
    path = tmp_path / "reviews.csv"
    path.write_bytes(codecs.BOM_UTF8 + line_break.join([*lines, ""]).encode("utf-8"))
    records = list(read_path(str(path)))
    assert not any(isinstance(record, Failure) for record in records)
    assert [(r["input_ref"].rsplit("/", 1)[1], r["source_id"], r["rating"], r["text"]) for r in records] == [
        ("reviews.csv:3", "r1", 5.0, "Great kettle, boils fast"),
        ("reviews.csv:4", "r2", 1.0, "Lid broke after a week"),
    ]


def test_a_separator_hint_is_honoured_where_sniffing_would_pick_another_delimiter(tmp_path: Path) -> None:
    """The hint names the delimiter: a table whose texts hold more commas than it has tab-separated cells."""
    path = tmp_path / "posts.tsv"
    path.write_text("sep=\t\nid\ttext\np1\tok, fine, whatever, sure\np2\tno, never, again, ever\n", encoding="utf-8")
    assert [record["text"] for record in read_path(str(path))] == ["ok, fine, whatever, sure", "no, never, again, ever"]


@pytest.mark.parametrize(("lines", "title"), [
    (["Customer reviews - November 2026,,,", "Exported on,28/11/2026,,", ",,,", "review_id,rating,product,review",
      'r1,5,Kettle,"Great kettle, boils fast"', "r2,1,Kettle,Lid broke after a week"],
     "the file: 2 row(s) above the header read as its title, not records: Customer reviews - November 2026 | "
     "Exported on | 28/11/2026"),
    (["Customer reviews - November 2026", "", "review_id;rating;product;review", "r1;5;Kettle;Great kettle, boils fast",
      "r2;1;Kettle;Lid broke after a week"],
     "the file: 1 row(s) above the header read as its title, not records: Customer reviews - November 2026")])
def test_a_reports_title_lines_above_a_csv_header_are_noted_not_read_as_the_header(
        tmp_path: Path, lines: list[str], title: str) -> None:
    """A report saved as CSV keeps its title and export date above the table (Excel pads them with delimiters):
    the title was read as the header, so every row was a dead letter; and a title line with no delimiter made
    the sniffer give up, reading a semicolon table as one comma column. Line numbers stay those of the file."""
    path = tmp_path / "report.csv"
    path.write_bytes("\r\n".join([*lines, ""]).encode("utf-8"))
    records = list(read_path(str(path)))
    assert [(r["input_ref"].rsplit(":", 1)[1], r["source_id"], r["rating"], r["product"], r["text"], r["ingest_notes"])
            for r in records] == [
        (str(len(lines) - 1), "r1", 5.0, "Kettle", "Great kettle, boils fast", [title]),
        (str(len(lines)), "r2", 1.0, "Kettle", "Lid broke after a week", [title])]


def test_a_title_above_a_header_is_told_by_the_runs_text_column_too(tmp_path: Path) -> None:
    """Where the text column has a name of its own (``--text-column Feedback``), that name tells the header. Where
    nothing does (auto-detection finds no text column), or the first row is a column name auto-detection knows
    (``date``), the first row stays the header, as before: each row under it a dead letter."""
    path = tmp_path / "survey.csv"
    path.write_text("Store survey Q4\nwhen,Feedback,NPS\n2026-11-02,Staff were lovely,9\n", encoding="utf-8")
    (document,) = read_path(str(path), columns=ColumnMap(text="Feedback"))
    assert (document["input_ref"].rsplit(":", 1)[1], document["text"], document["ingest_notes"]) == (
        "3", "Staff were lovely",
        ["the file: 1 row(s) above the header read as its title, not records: Store survey Q4"])
    assert [record.error_type for record in read_path(str(path))] == ["csv_extra_cells"] * 2
    path.write_text("date\nwhen,Feedback,NPS\n2026-11-02,Staff were lovely,9\n", encoding="utf-8")
    assert [record.error_type for record in read_path(str(path), columns=ColumnMap(text="Feedback"))] == [
        "csv_extra_cells"] * 2


def fields_of(record: dict) -> tuple:
    return (record["text"], record["source"], record["source_id"], record["created_at"] and
            record["created_at"].isoformat(), record["author"], record["rating"])


def test_a_google_play_export_is_read_by_its_camel_case_names_and_its_at_time(tmp_path: Path) -> None:
    """google-play-scraper writes ``reviewId``, ``userName`` and the time as ``at``: none matched ``review_id``,
    ``user_name`` or a time column, so each review had no id (its doc_id changed with its text), no author and no
    date, and a reply's ``repliedAt`` must not pass for the review's time."""
    path = tmp_path / "com.acme.app.csv"
    path.write_text(
        "reviewId,userName,userImage,content,score,thumbsUpCount,reviewCreatedVersion,at,replyContent,repliedAt\n"
        "gp:AOqpTOH1,Jane Doe,https://play-lh.googleusercontent.com/a/x,App crashes on login since the update,1,12,"
        "4.2.0,2023-05-01 10:00:00,Sorry! Fixed in 4.2.1,2023-05-02 08:00:00\n", encoding="utf-8")
    (review,) = read_path(str(path))
    assert fields_of(review) == ("App crashes on login since the update", "review", "gp:AOqpTOH1",
                                 "2023-05-01T10:00:00+00:00", "Jane Doe", 1.0)


def test_a_play_console_review_report_is_read_with_its_submit_time_and_package(tmp_path: Path) -> None:
    """Play Console's monthly review reports (UTF-16 with a byte-order mark; the header as Play writes it): the
    submit time matched no time column, so every review went to the run's day instead of the day it was written."""
    path = tmp_path / "reviews_com.acme.app_202611.csv"
    path.write_bytes(codecs.BOM_UTF16_LE + (
        "Package Name,App Version Code,App Version Name,Reviewer Language,Device,Review Submit Date and Time,"
        "Review Submit Millis Since Epoch,Review Last Update Date and Time,Review Last Update Millis Since Epoch,"
        "Star Rating,Review Title,Review Text,Developer Reply Date and Time,Developer Reply Millis Since Epoch,"
        "Developer Reply Text,Review Link\n"
        "com.acme.app,412,4.1.2,en,a52q,2026-11-20T09:15:00Z,1795684500000,2026-11-22T08:00:00Z,1795852800000,2,"
        ",Logs me out every day,2026-11-21T10:00:00Z,1795773600000,Fixed in 4.1.3,"
        "http://play.google.com/console/developers/1/app/2/user-feedback/review-details?reviewId=gp:AOqpTOE\n"
    ).encode("utf-16-le"))
    (review,) = read_path(str(path))
    assert (review["text"], review["rating"], review["product"], review["created_at"], review["ingest_notes"]) == (
        "Logs me out every day", 2.0, "com.acme.app", datetime(2026, 11, 20, 9, 15, tzinfo=UTC), [])


@pytest.mark.parametrize(("columns", "field", "chosen"), [
    (["id", "title", "selftext", "created_utc", "subreddit"], "text", "selftext"),  # a Reddit submission
    (["id", "message", "created_time", "updated_time"], "created_at", "created_time"),  # Facebook's Graph API
    (["Review", "Date (UTC)", "Rating (1-5)"], "created_at", "Date (UTC)"),
    (["Review", "Date (UTC)", "Rating (1-5)"], "rating", "Rating (1-5)"),
])
def test_columns_named_as_common_exports_name_them_are_found(columns: list[str], field: str, chosen: str) -> None:
    assert getattr(ColumnMap().resolve(columns), field) == chosen


def test_a_post_or_review_without_text_is_labeled_by_its_title_and_a_deleted_one_is_a_dead_letter(
        tmp_path: Path) -> None:
    """A Reddit link post has an empty ``selftext`` and a removed one Reddit's ``[removed]``; an app-store review
    may have only its headline. They were ``empty_text`` dead letters, or labeled by the word "removed"; a deleted
    comment keeps nothing to label."""
    submissions = tmp_path / "reddit_submissions.jsonl"
    submissions.write_text("".join(json.dumps(row) + "\n" for row in (
        {"id": "t3_a", "title": "Anyone else lose data after the 4.2 update?", "selftext": "", "subreddit": "acme"},
        {"id": "t3_b", "title": "Support closed my ticket without an answer", "selftext": "[removed]",
         "subreddit": "acme"},
        {"id": "t3_c", "title": "Sync fixed", "selftext": "Works again since this morning.", "subreddit": "acme"},
        {"id": "t1_d", "body": "[deleted]", "subreddit": "acme"})), encoding="utf-8")
    records = [clean_document(r, 10_000) if isinstance(r, dict) else r for r in read_path(str(submissions))]
    assert [(r["source_id"], r["text"], r["ingest_notes"]) for r in records[:3]] == [
        ("t3_a", "Anyone else lose data after the 4.2 update?",
         ["text column 'selftext' is empty: the title was classified"]),
        ("t3_b", "Support closed my ticket without an answer",
         ["text column 'selftext' is '[removed]': the title was classified"]),
        ("t3_c", "Works again since this morning.", [])]
    assert (records[3].error_type, records[3].error) == (
        "no_text", "text column 'body' is '[deleted]', Reddit's placeholder for a deleted or removed post: its text "
        "is gone")
    workbook = openpyxl.Workbook()
    for row in (["Rating", "Review Title", "Review"], [5, "Does what it says", None], [1, None, None]):
        workbook.active.append(row)
    workbook.save(tmp_path / "app-reviews.xlsx")
    headline, nothing = read_path(str(tmp_path / "app-reviews.xlsx"))
    assert (headline["text"], headline["ingest_notes"]) == (
        "Does what it says", ["text column 'Review' is missing: the title was classified"])
    assert nothing.error_type == "no_text"


def test_app_store_connects_customer_reviews_are_read_from_their_json_api_attributes(tmp_path: Path) -> None:
    """App Store Connect's API, the official source of iOS reviews, answers in JSON:API: each review's fields sit
    in ``attributes`` beside its ``type``, ``id``, ``relationships`` and ``links``, and every review was a
    ``no_text_column`` dead letter. The page as Apple's documentation shows it, with a second review."""
    review = {"type": "customerReviews", "id": "00000028-b08c-0014-729e-fbd500000000",
              "attributes": {"rating": 5, "title": "Awesome!!!", "body": "It's a really fantastic app!",
                             "reviewerNickname": "Anne Johnson", "createdDate": "2017-11-15T08:10:34-08:00",
                             "territory": "USA"},
              "relationships": {"response": {"links": {
                  "self": "https://api.appstoreconnect.apple.com/v1/customerReviews/00000028/relationships/response",
                  "related": "https://api.appstoreconnect.apple.com/v1/customerReviews/00000028/response"}}},
              "links": {"self": "https://api.appstoreconnect.apple.com/v1/customerReviews/00000028"}}
    second = {**review, "id": "00000029", "attributes": {**review["attributes"], "rating": 1, "title": "Crashes",
                                                         "body": "Crashes on launch since 4.2."}}
    path = tmp_path / "customerReviews.json"
    path.write_text(json.dumps({"data": [review, second], "links": {"self": "https://api.appstoreconnect.apple.com"},
                                "meta": {"paging": {"total": 2, "limit": 50}}}, indent=2), encoding="utf-8")
    assert [(d["source"], d["source_id"], d["text"], d["subject"], d["rating"], d["author"], d["created_at"])
            for d in read_path(str(path))] == [
        ("review", "00000028-b08c-0014-729e-fbd500000000", "It's a really fantastic app!", "Awesome!!!", 5.0,
         "Anne Johnson", datetime(2017, 11, 15, 16, 10, 34, tzinfo=UTC)),
        ("review", "00000029", "Crashes on launch since 4.2.", "Crashes", 1.0, "Anne Johnson",
         datetime(2017, 11, 15, 16, 10, 34, tzinfo=UTC))]


def test_an_amazon_export_takes_its_unix_time_its_reviewer_id_and_its_summary(tmp_path: Path) -> None:
    """Amazon's review dumps are JSON Lines named ``.json``, read as one document: a single ``invalid_json`` dead
    letter after the first line's ``helpful`` array was read as two records. Their time is ``unixReviewTime``
    (``reviewTime``, "09 13, 2009", could be either day and month), their author ``reviewerID`` (``reviewerName`` is as
    often "Amazon Customer" as a name)."""
    path = tmp_path / "Electronics_5.json.gz"
    line = {"reviewerID": "A2SUAM1J3GNN3B", "asin": "B000JMLBHU", "reviewerName": "Amazon Customer", "helpful": [2, 3],
            "reviewText": "Stopped charging after a month.", "overall": 2.0, "summary": "Died quickly",
            "unixReviewTime": 1252800000, "reviewTime": "09 13, 2009"}
    second = {**line, "reviewerID": "A3T2J9", "reviewText": "Works fine.", "overall": 5.0, "summary": "Fine"}
    path.write_bytes(gzip.compress(f"{json.dumps(line)}\n{json.dumps(second)}\n".encode()))
    review, _ = read_path(str(path))
    assert fields_of(review)[:2] + fields_of(review)[3:] == (
        "Stopped charging after a month.", "review", "2009-09-13T00:00:00+00:00", "A2SUAM1J3GNN3B", 2.0)
    assert (review["input_ref"], review["product"], review["subject"], review["ingest_notes"]) == (
        f"{path}:1", "B000JMLBHU", "Died quickly", [])


def test_reddit_comments_take_created_utc_and_are_social_by_their_subreddit(tmp_path: Path) -> None:
    """A Pushshift dump (``RC_2023-01``) names no source in its file name and its time is ``created_utc``."""
    path = tmp_path / "RC_2023-01.jsonl"
    path.write_text(json.dumps({"id": "j2x9k1", "author": "throwaway_42", "body": "Their support never answered.",
                                "created_utc": "1672574400", "subreddit": "androidapps", "link_id": "t3_zz1",
                                "score": 1532}) + "\n", encoding="utf-8")
    (comment,) = read_path(str(path))
    assert fields_of(comment) == ("Their support never answered.", "social", "j2x9k1", "2023-01-01T12:00:00+00:00",
                                  "throwaway_42", None)


def test_an_exact_name_wins_over_one_that_differs_in_case_and_separators(tmp_path: Path) -> None:
    """A JS export's ``createdAt`` and ``reviewId`` are found as ``created_at`` and ``review_id``; where a table has
    both spellings, the exact one is taken whatever the column order."""
    path = tmp_path / "trustpilot.json"
    path.write_text(json.dumps({"reviews": [{
        "reviewId": "65b1f0", "rating": 4, "title": "Quick delivery", "text": "Arrived in two days.",
        "publishedAt": "2024-02-02T09:00:00.000Z", "createdAt": "2024-02-01T12:30:00.000Z"}]}), encoding="utf-8")
    (review,) = read_path(str(path))
    assert fields_of(review) == ("Arrived in two days.", "review", "65b1f0", "2024-02-01T12:30:00+00:00", None, 4.0)
    both = ["createdAt", "reviewId", "text", "review_id", "created_at", "Review ID"]
    assert (ColumnMap().resolve(both).id, ColumnMap().resolve(both).created_at) == ("review_id", "created_at")
    assert ColumnMap().resolve(["reviewText", "content"]).text == "reviewText"


def test_a_score_is_a_rating_in_reviews_and_votes_in_posts(tmp_path: Path) -> None:
    """Google Play's ``score`` is a review's stars; a Reddit comment's or a Hacker News story's is its net votes,
    which filled ``rating`` with 1,532 "stars". Named explicitly, a post's score is still taken."""
    play = ["reviewId", "userName", "content", "score", "at"]
    assert ColumnMap().resolve(play, "review").rating == "score"
    assert ColumnMap().resolve(["id", "body", "score", "subreddit"], "social").rating is None
    assert ColumnMap().resolve(["id", "text", "stars", "score"], "social").rating == "stars"
    assert ColumnMap(rating="score").resolve(["id", "body", "score"], "social").rating == "score"
    story = tmp_path / "hn_stories.jsonl"
    story.write_text(json.dumps({"id": 4101, "title": "Show HN: a bread timer", "text": "I built it for my bakery.",
                                 "by": "pg_fan", "score": 311, "time": 1700000000}) + "\n", encoding="utf-8")
    (post,) = read_path(str(story), source="social")
    assert (post["text"], post["rating"]) == ("I built it for my bakery.", None)


def test_a_hacker_news_comment_keeps_its_author_and_its_paragraphs(tmp_path: Path) -> None:
    """Hacker News items (its API, its BigQuery table) name the author ``by`` and separate a comment's paragraphs
    with a bare ``<p>`` between them: the author was empty and the tag reached the model; its entities were
    decoded but the tag stayed."""
    comments = tmp_path / "hn_comments.jsonl"
    comments.write_text(json.dumps({
        "by": "throwaway_dev", "id": 38500123, "parent": 38499000, "time": 1701388800, "type": "comment",
        "text": "Switched last month.<p>Sync breaks whenever the laptop sleeps &amp; support never answered. See "
                "<a href=\"https:&#x2F;&#x2F;status.example.com\" rel=\"nofollow\">their status page</a>."}) + "\n",
        encoding="utf-8")
    (comment,) = read_path(str(comments), source="social")
    assert (comment["author"], comment["created_at"].isoformat()) == ("throwaway_dev", "2023-12-01T00:00:00+00:00")
    assert clean_document(comment, 10_000)["text"] == (
        "Switched last month.\n\nSync breaks whenever the laptop sleeps & support never answered. See their status "
        "page.")


def test_published_is_a_time_only_in_an_activitystreams_object() -> None:
    """``published`` is ActivityStreams' time, and elsewhere a publish flag whose 1 would be a second of 1970."""
    assert ColumnMap().resolve(["text", "published"]).created_at is None
    assert ColumnMap().resolve(["content", "published", "attributedTo"]).created_at == "published"


def review_workbook(path: Path) -> Path:
    """An export as a shop's back office writes it: a sheet of reviews with date cells, a blank row, a review
    without text and one with a note typed right of the table, then a sheet of posts and a summary sheet."""
    workbook = openpyxl.Workbook()
    reviews = workbook.active
    reviews.title = "Reviews"
    for row in (["Review ID", "Product", "Rating", "Review Text", "Review Date"],
                [1001, "Kettle", 5, "Boils fast and quiet.", datetime(2026, 11, 20, 9, 15)],
                [],
                [1002, "Kettle", 1, "Lid broke on day one.", datetime(2026, 11, 21)],
                [1003, "Toaster", 3, None, None],
                [1004, "Toaster", 4, "Even browning", None, "ask about refund"]):
        reviews.append(row)
    posts = workbook.create_sheet("Mentions")
    posts.append(["tweet_id", "tweet", "retweets"])
    posts.append(["1600000000000000001", "@shop where is my order?", 2])
    workbook.create_sheet("Summary").append(["Product", "Reviews"])
    workbook["Summary"].append(["Kettle", 2])
    workbook.save(path)
    return path


def test_a_workbooks_sheets_are_each_a_table_read_a_row_at_a_time(tmp_path: Path) -> None:
    """Review exports come as .xlsx: the file was one ``unknown_format`` dead letter asking for CSV."""
    path = review_workbook(tmp_path / "export.xlsx")
    records = list(read_path(str(path)))
    documents = [record for record in records if not isinstance(record, Failure)]
    assert [(d["source"], d["source_id"], d["text"], d["rating"], d["product"], d["created_at"], d["input_ref"])
            for d in documents] == [
        ("review", "1001", "Boils fast and quiet.", 5.0, "Kettle", datetime(2026, 11, 20, 9, 15, tzinfo=UTC),
         f"{path}#Reviews!2"),
        ("review", "1002", "Lid broke on day one.", 1.0, "Kettle", datetime(2026, 11, 21, tzinfo=UTC),
         f"{path}#Reviews!4"),
        ("social", "1600000000000000001", "@shop where is my order?", None, None, None, f"{path}#Mentions!2")]
    failures = [(f.input_ref, f.error_type) for f in records if isinstance(f, Failure)]
    assert failures == [(f"{path}#Reviews!5", "no_text"), (f"{path}#Reviews!6", "csv_extra_cells"),
                        (f"{path}#Summary!2", "no_text_column")]


def test_a_workbooks_sheets_are_told_reviews_or_posts_each_by_its_own_columns_then_its_name(tmp_path: Path) -> None:
    """A back office's export holds reviews and the posts that mention the shop side by side: the whole file took
    the source of its first sheet, so the tweets were reviews, and a sheet named for posts with no telling column
    too; its name now decides, then the file's."""
    workbook = openpyxl.Workbook()
    workbook.active.title = "Reviews"
    workbook.active.append(["text", "rating"])
    workbook.active.append(["Solid kettle.", 4])
    for title, header in (("Mentions", ["tweet", "retweets"]), ("Social posts", ["text"]), ("Feedback", ["text"])):
        workbook.create_sheet(title).append(header)
        workbook[title].append([f"A row of {title}"])
    workbook.save(tmp_path / "shop review export.xlsx")
    assert [(d["input_ref"].split("#")[1], d["source"]) for d in read_path(str(tmp_path / "shop review export.xlsx"))
            ] == [("Reviews!2", "review"), ("Mentions!2", "social"), ("Social posts!2", "social"),
                  ("Feedback!2", "review")]


def test_rows_above_a_sheets_header_are_its_title_and_day_numbers_in_its_time_column_are_dates(
        tmp_path: Path) -> None:
    """A report exported from a shop's back office opens with its title and the day it was made, above the table:
    the title was read as the header, and every review became a ``csv_extra_cells`` dead letter. Its dates, written
    by a formula or pasted without their format, are Excel day numbers: read as epoch seconds they were times on
    1 January 1970."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "November"
    sheet.append(["Customer reviews - November 2026"])
    sheet.merge_cells("A1:D1")
    sheet.append(["Exported on", datetime(2026, 11, 28)])
    sheet.append([])
    sheet.append(["Review Date", "Product", "Rating", "Review"])
    sheet.append([46346.5, "Kettle", 5, "Boils fast and quiet."])
    sheet.append([46347, "Toaster", 2, "Burns one side."])
    sheet.append([1764000000, "Toaster", 4, "Fine."])
    workbook.save(tmp_path / "report.xlsx")
    records = list(read_path(str(tmp_path / "report.xlsx")))
    assert [(d["input_ref"].split("#")[1], d["text"], d["product"], d["rating"], d["created_at"]) for d in records] == [
        ("November!5", "Boils fast and quiet.", "Kettle", 5.0, datetime(2026, 11, 20, 12, tzinfo=UTC)),
        ("November!6", "Burns one side.", "Toaster", 2.0, datetime(2026, 11, 21, tzinfo=UTC)),
        ("November!7", "Fine.", "Toaster", 4.0, datetime(2025, 11, 24, 16, tzinfo=UTC))]
    title = "sheet 'November': 2 row(s) above the header read as its title, not records: Customer reviews - Nov"
    assert all(any(note.startswith(title) for note in d["ingest_notes"]) for d in records)
    assert "Review Date 46346.5 read as an Excel day number" in records[0]["ingest_notes"]
    assert not any("day number" in note for note in records[2]["ingest_notes"])

    workbook.epoch = openpyxl.utils.datetime.CALENDAR_MAC_1904  # a Mac Excel workbook counts from 1904
    workbook.save(tmp_path / "mac.xlsx")
    assert next(read_path(str(tmp_path / "mac.xlsx")))["created_at"] == datetime(2030, 11, 21, 12, tzinfo=UTC)


def test_a_row_above_a_header_is_a_title_only_when_it_is_narrower_than_a_header_of_names(tmp_path: Path) -> None:
    """A table whose text column has a name of its own keeps its first row as the header, even where a row below
    holds a cell that names a text column (a kind of feedback called ``Review``), and a title row must be narrower
    than the header under it."""
    workbook = openpyxl.Workbook()
    for row in (["Feedback", "Kind"], ["Great kettle", "Review"], ["Late parcel", "Message"]):
        workbook.active.append(row)
    workbook.save(tmp_path / "feedback.xlsx")
    records = list(read_path(str(tmp_path / "feedback.xlsx"), columns=ColumnMap(text="Feedback")))
    assert [(d["text"], d["ingest_notes"]) for d in records] == [("Great kettle", []), ("Late parcel", [])]


def with_part_edited(workbook: Path, copy: Path, part: str, old: bytes, new: bytes) -> Path:
    """``copy``: ``workbook`` with ``old`` in its zip member ``part`` replaced by ``new``, as another tool wrote it."""
    with zipfile.ZipFile(workbook) as source, zipfile.ZipFile(copy, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == part:
                assert old in data
                data = data.replace(old, new)
            target.writestr(item, data)
    return copy


def test_a_workbook_that_states_a_stale_size_is_read_whole(tmp_path: Path) -> None:
    """A sheet states its size (``<dimension ref="A1:F6"/>``), stale or missing where other tools wrote the file;
    openpyxl's read-only mode cut every row to that size without a word, here to two columns and two rows."""
    path = review_workbook(tmp_path / "export.xlsx")
    stale = with_part_edited(path, tmp_path / "stale.xlsx", "xl/worksheets/sheet1.xml", b'<dimension ref="A1:F6"/>',
                             b'<dimension ref="A1:B2"/>')
    assert [record.get("text") if isinstance(record, dict) else record.error_type
            for record in read_path(str(stale))] == [record.get("text") if isinstance(record, dict) else
                                                     record.error_type for record in read_path(str(path))]


def test_a_carriage_return_excel_wrote_as_an_escape_is_one_again(tmp_path: Path) -> None:
    """Excel writes a character XML cannot hold as ``_xHHHH_``: a review pasted with Windows line breaks read as
    ``Arrived late._x000D_`` and a line break, which openpyxl leaves as it is."""
    workbook = openpyxl.Workbook()
    workbook.active.append(["review_text"])
    workbook.active.append(["Arrived late.\r\nBox was crushed."])
    plain = tmp_path / "plain.xlsx"
    workbook.save(plain)
    as_excel = with_part_edited(plain, tmp_path / "export.xlsx", "xl/worksheets/sheet1.xml", b"&#13;", b"_x000D_")
    (document,) = read_path(str(as_excel))
    assert document["text"] == "Arrived late.\r\nBox was crushed."


def test_a_sheet_openpyxl_leaves_out_with_a_warning_is_a_dead_letter(tmp_path: Path) -> None:
    """A sheet listed without the relationship that names its part (older .xlsm files have such entries) was
    dropped with only a warning: its rows vanished without a record."""
    path = review_workbook(tmp_path / "export.xlsx")
    damaged = with_part_edited(path, tmp_path / "damaged.xlsx", "xl/workbook.xml", b' r:id="rId2"', b"")
    records = list(read_path(str(damaged)))
    failure = next(record for record in records if isinstance(record, Failure))
    assert (failure.error_type, failure.input_ref) == ("corrupt_file", str(damaged))
    assert not any(isinstance(r, dict) and "Mentions" in r["input_ref"] for r in records)
    assert [r["text"] for r in records if isinstance(r, dict)] == ["Boils fast and quiet.", "Lid broke on day one."]


def x_archive_tweet(tweet_id: str, text: str, created_at: str, **more: object) -> dict[str, object]:
    """A tweet as X's account archive writes it: every number a string, the client app as HTML in ``source``."""
    return {"tweet": {"edit_info": {"initial": {"editTweetIds": [tweet_id], "editsRemaining": "5"}},
                      "retweeted": False, "source": '<a href="https://mobile.twitter.com">Twitter Web App</a>',
                      "entities": {"hashtags": [], "user_mentions": [], "urls": []},
                      "display_text_range": ["0", str(len(text))], "favorite_count": "3", "id_str": tweet_id,
                      "truncated": False, "retweet_count": "0", "id": tweet_id, "created_at": created_at,
                      "favorited": False, "full_text": text, "lang": "en", **more}}


@pytest.mark.parametrize(("file_name", "variable"), [("tweets.js", "tweets.part0"), ("tweets-part1.js", "tweets.part1"),
                                                     ("tweet.js", "tweet.part0")])
def test_an_x_archives_tweets_are_read_from_its_javascript_and_its_other_data_is_said_not_read(
        tmp_path: Path, file_name: str, variable: str) -> None:
    """An X (Twitter) account archive holds each kind of data as a JavaScript assignment of a JSON array,
    pretty-printed (``tweet.js`` before 2022): the tweets file was one ``unknown_format`` dead letter."""
    tweets = [x_archive_tweet("1590012345678901234", "@AcmeSupport my order still hasn't shipped &amp; nobody answers",
                              "Tue Nov 08 11:00:00 +0000 2022", in_reply_to_screen_name="AcmeSupport"),
              x_archive_tweet("1600000000000000001", "Loving the new update, great work!",
                              "Sun Dec 04 09:30:00 +0000 2022")]
    data = tmp_path / "data"
    data.mkdir()
    (data / file_name).write_text(f"window.YTD.{variable} = {json.dumps(tweets, indent=2, separators=(',', ' : '))}",
                                  encoding="utf-8")
    (data / "like.js").write_text('window.YTD.like.part0 = [ {\n  "like" : {\n    "tweetId" : "1",\n'
                                  '    "fullText" : "someone else\'s post"\n  }\n} ]', encoding="utf-8")
    documents = list(read_path(str(data / file_name)))
    assert [(d["source"], d["source_id"], d["text"], d["created_at"]) for d in documents] == [
        ("social", "1590012345678901234", "@AcmeSupport my order still hasn't shipped &amp; nobody answers",
         datetime(2022, 11, 8, 11, tzinfo=UTC)),
        ("social", "1600000000000000001", "Loving the new update, great work!",
         datetime(2022, 12, 4, 9, 30, tzinfo=UTC))]
    assert [d["input_ref"] for d in documents] == [f"{data / file_name}[0]", f"{data / file_name}[1]"]
    assert clean_document(documents[0], 1000)["text"] == "@user my order still hasn't shipped & nobody answers"
    (likes,) = read_path(str(data / "like.js"))
    assert (likes.error_type, likes.source) == ("unknown_format", "social")
    assert likes.error == ("X archive data of 'like', which is not read: of an X (Twitter) archive only the tweets "
                           "(tweets.js, tweets-part1.js, ...) are")


def test_facebook_posts_and_comments_of_a_meta_export_are_read_as_social_posts(tmp_path: Path) -> None:
    """Meta's "Download your information" wraps each post's words in a ``data`` list (and each comment in one
    more object), and writes UTF-8 bytes as Latin-1 escapes: every record was a ``no_text_column`` dead letter."""
    posts = tmp_path / "your_posts_1.json"
    posts.write_text(json.dumps([
        {"timestamp": 1672531200, "title": "Jo Doe updated her status.",
         "data": [{"post": "Caf\u00c3\u00a9 with friends \u00f0\u009f\u008e\u0089", "update_timestamp": 1672531200}]},
        {"timestamp": 1672000000, "title": "Jo Doe added a new photo.", "data": [{"update_timestamp": 1672000000}],
         "attachments": [{"data": [{"media": {"uri": "posts/media/photo.jpg"}}]}]}], indent=2), encoding="utf-8")
    comments = tmp_path / "comments.json"
    comments.write_text(json.dumps({"comments_v2": [
        {"timestamp": 1672600000, "title": "Jo Doe commented on Acme's post.",
         "data": [{"comment": {"timestamp": 1672600000, "comment": "Still no refund, terrible service",
                               "author": "Jo Doe"}}]}]}, indent=2), encoding="utf-8")
    post, photo = read_path(str(posts))
    (comment,) = read_path(str(comments))
    assert (post["source"], post["created_at"], post["subject"]) == ("social", datetime(2023, 1, 1, tzinfo=UTC), None)
    assert clean_document(post, 1000)["text"] == "Café with friends 🎉"
    assert (photo.source, photo.error_type) == ("social", "no_text")
    assert (comment["source"], comment["text"], comment["author"]) == ("social", "Still no refund, terrible service",
                                                                        "Jo Doe")
    assert comment["created_at"] == datetime(2023, 1, 1, 19, 6, 40, tzinfo=UTC)


def test_instagram_comments_of_a_meta_export_are_read_as_social_posts(tmp_path: Path) -> None:
    """Instagram's export labels each field (``string_map_data``): its comments were ``no_text_column`` dead letters."""
    comments = tmp_path / "post_comments_1.json"
    comments.write_text(json.dumps([
        {"string_map_data": {"Comment": {"value": "Love this colour \u00f0\u009f\u0098\u008d"},
                             "Media Owner": {"value": "acme_store"}, "Time": {"timestamp": 1672531200}}},
        {"string_map_data": {"Comment": {"value": "When is it back in stock?"}, "Time": {"timestamp": 1672600000}}}],
        indent=2), encoding="utf-8")
    documents = [clean_document(document, 1000) for document in read_path(str(comments))]
    assert [(d["source"], d["text"], d["created_at"]) for d in documents] == [
        ("social", "Love this colour 😍", datetime(2023, 1, 1, tzinfo=UTC)),
        ("social", "When is it back in stock?", datetime(2023, 1, 1, 19, 6, 40, tzinfo=UTC))]


def test_a_record_with_a_data_list_among_other_fields_is_no_meta_export() -> None:
    row = {"id": "r1", "text": "fine", "data": [{"post": "not the text"}]}
    assert meta_export_post(row) is row


@pytest.mark.parametrize("context", ["https://www.w3.org/ns/activitystreams",
                                     ["https://www.w3.org/ns/activitystreams", {"ostatus": "http://ostatus.org#"}]])
def test_a_mastodon_archive_reads_each_post_and_dead_letters_each_boost(tmp_path: Path, context: object) -> None:
    """Mastodon's "Request your archive" writes ``outbox.json``, an ``OrderedCollection`` of activities: each was a
    ``no_text_column`` dead letter. A ``Create`` is read as its post (its HTML cleaned to text); an ``Announce``, a
    boost whose post the archive holds only as an address, is a ``boost`` dead letter. A list of vocabularies in
    ``@context`` was taken for the records, and the posts never read."""
    alice = "https://mastodon.social/users/alice"
    outbox = {"@context": context, "id": "outbox.json", "type": "OrderedCollection", "totalItems": 2, "orderedItems": [
        {"id": f"{alice}/statuses/1/activity", "type": "Create", "actor": alice, "published": "2024-03-05T09:15:00Z",
         "to": ["https://www.w3.org/ns/activitystreams#Public"], "cc": [f"{alice}/followers"],
         "object": {"id": f"{alice}/statuses/1", "type": "Note", "summary": None, "inReplyTo": None,
                    "published": "2024-03-05T09:15:00Z", "url": "https://mastodon.social/@alice/1",
                    "attributedTo": alice, "sensitive": False,
                    "content": '<p>The update broke sync again <span class="h-card"><a href="https://mastodon.social/'
                               '@acme" class="u-url mention">@<span>acme</span></a></span></p><p>Fix it &amp; soon</p>',
                    "contentMap": {"en": "<p>The update broke sync again</p>"}, "attachment": [], "tag": []}},
        {"id": f"{alice}/statuses/2/activity", "type": "Announce", "actor": alice,
         "published": "2024-03-06T10:00:00Z", "object": "https://other.server/users/bob/statuses/99"},
    ]}
    path = tmp_path / "outbox.json"
    path.write_text(json.dumps(outbox), encoding="utf-8")
    post, boost = read_path(str(path))
    assert fields_of(post)[1:] == ("social", f"{alice}/statuses/1", "2024-03-05T09:15:00+00:00", alice, None)
    assert clean_document(post, 200_000)["text"] == "The update broke sync again @user\n\nFix it & soon"
    assert (boost.source, boost.input_ref, boost.stage, boost.error_type) == ("social", f"{path}[1]", "parse", "boost")
    assert boost.error == ("a boost (ActivityStreams Announce) of https://other.server/users/bob/statuses/99: the "
                           "export holds the boosted post's address, not its text")


def test_a_time_or_date_out_of_pythons_range_is_a_note_on_its_row_not_the_end_of_the_file(tmp_path: Path) -> None:
    """Converting a batch of 4,096 rows to Python raised OverflowError at one time beyond the year 9999, which made
    the whole file one corrupt_file record: that batch and every one after it were lost, even for a bad value in a
    column the pipeline does not read."""
    rows = 10_000
    created = [1_700_000_000_000] * rows
    created[5000] = 10**16
    updated = [19_000] * rows
    updated[7000] = 2**31 - 1
    path = tmp_path / "reviews.parquet"
    pq.write_table(pa.table({"id": [f"k{i}" for i in range(rows)], "text": [f"review {i}" for i in range(rows)],
                             "created_at": pa.array(created, pa.timestamp("ms")),
                             "updated": pa.array(updated, pa.date32())}), path)
    records = list(read_path(str(path)))
    assert [record["text"] for record in records] == [f"review {i}" for i in range(rows)]
    noted = {record["input_ref"].rsplit("=", 1)[1]: record["ingest_notes"] for record in records
             if record["ingest_notes"]}
    assert noted == {"5000": ["unparseable created_at: 10000000000000000 out of range (timestam"]}
    assert records[5000]["created_at"] is None
    assert records[7000]["created_at"] == records[4999]["created_at"] == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


@pytest.mark.parametrize("name", ["reviews.csv", "reviews.jsonl"])
def test_an_illegal_code_unit_in_a_utf16_table_fails_only_its_row(tmp_path: Path, name: str) -> None:
    """A lone surrogate (an exporter that cut an emoji in half) raised UnicodeDecodeError from the strict decoder:
    the whole file was one corrupt_file record, where a bad byte in a UTF-8 file fails only its row."""
    rows = ['{"id": 1, "text": "good row"}\n', '{"id": 2, "text": "bad ', '"}\n{"id": 3, "text": "third row"}\n']
    if name.endswith(".csv"):
        rows = ["id,text\n1,good row\n", "2,bad ", "\n3,third row\n"]
    path = tmp_path / name
    path.write_bytes(codecs.BOM_UTF16_LE + rows[0].encode("utf-16-le") + rows[1].encode("utf-16-le") + b"\x00\xd8"
                     + rows[2].encode("utf-16-le"))
    good, bad, third = read_path(str(path))
    assert (good["text"], third["text"]) == ("good row", "third row")
    assert (bad.input_ref, bad.error_type) == (f"{path}:3" if name.endswith(".csv") else f"{path}:2", "invalid_utf8")
    assert "not valid UTF-16" in bad.error


@pytest.mark.parametrize("name", ["reviews.csv", "posts.jsonl"])
def test_a_utf16_table_one_byte_short_keeps_its_whole_rows(tmp_path: Path, name: str) -> None:
    """A UTF-16 file cut in the middle of a character (an upload stopped one byte short) raised "truncated data" at
    its end: a small file lost every row. The row the cut falls in fails alone."""
    rows = ["id,text\n1,good row\n2,second row\n", "3,cut row\n"]
    if name.endswith(".jsonl"):
        rows = ['{"id": 1, "text": "good row"}\n{"id": 2, "text": "second row"}\n', '{"id": 3, "text": "cut row"}']
    path = tmp_path / name
    path.write_bytes((codecs.BOM_UTF16_LE + "".join(rows).encode("utf-16-le"))[:-1])
    first, second, cut = read_path(str(path))
    assert (first["text"], second["text"]) == ("good row", "second row")
    assert cut.error_type == "invalid_utf8" and "not valid UTF-16" in cut.error


def test_pretty_printed_objects_one_after_another_are_each_a_record() -> None:
    """``jq '.[]'`` writes each record pretty-printed, one after another. Saved as JSON Lines, every line was an
    invalid_json dead letter (12 for 3 records); saved as JSON, the first record's ``tags`` list was read as the
    records, and the rest of the file was one dead letter."""
    records = [{"id": f"p{index}", "text": f"Review {index}: sturdy, arrived on time", "tags": ["home", "garden"]}
               for index in range(3)]
    export = "\n".join(json.dumps(record, indent=2) for record in records).encode()
    for read, name in ((read_jsonl, "export.jsonl"), (read_json_array, "export.json")):
        rows = list(read(io.BytesIO(export), name))
        assert [ref for ref, _ in rows] == [f"{name}[{index}]" for index in range(3)]
        assert [row for _, row in rows] == records
    array = json.dumps(records, indent=2).encode()  # a pretty-printed array in a .jsonl file
    assert [row for _, row in read_jsonl(io.BytesIO(array), "array.jsonl")] == records
    wrapper = json.dumps({"meta": {"count": 3}, "data": records}, indent=2).encode()  # still the array's records
    assert [row for _, row in read_json_array(io.BytesIO(wrapper), "wrapped.json")] == records


def test_json_lines_ending_in_a_bare_cr_are_split_there() -> None:
    """Classic Mac OS line ends: the file was one invalid_json line."""
    lines = b"\r".join(json.dumps({"id": index, "text": f"line {index}"}).encode() for index in range(4)) + b"\r"
    assert [row["text"] for _, row in read_jsonl(io.BytesIO(lines), "mac.jsonl")] == [f"line {i}" for i in range(4)]


def test_the_linear_sniffer_guesses_as_the_standard_librarys() -> None:
    """:class:`LinearSniffer` replaces the standard library's quote guess: on thousands of random samples of
    delimiters, quotes, spaces and line breaks it finds the same quote character, delimiter and initial space."""
    rng = random.Random(7)
    alphabet = [",", ";", "\t", "|", '"', "'", " ", "\n", "\r", "a", "1", "-", "é", ":"]
    for _ in range(20_000):
        sample = "".join(rng.choice(alphabet[:rng.randint(3, len(alphabet))]) for _ in range(rng.randint(0, 40)))
        rng.shuffle(alphabet)
        for delimiters in (None, ",;\t|"):
            ours = LinearSniffer()._guess_quote_and_delimiter(sample, delimiters)
            standard = csv.Sniffer()._guess_quote_and_delimiter(sample, delimiters)
            assert (ours[0], ours[2], bool(ours[3])) == (standard[0], standard[2], bool(standard[3])), sample


@pytest.mark.parametrize("row", [
    '" ' * 300 + "loved it",  # the doubled-quote pattern backtracked in the fourth power of the run: 27 s
    '1,"a' * 21_800,  # every opening quote read the rest of the 64 KiB sample: 19 s
])
def test_a_quote_heavy_row_does_not_hang_the_csv_sniffer(tmp_path: Path, row: str) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text(f'id,text,stars\n{row}\n2,"fine, really",4\n', encoding="utf-8")
    started = time.perf_counter()
    records = list(read_path(str(path)))
    assert time.perf_counter() - started < 10
    assert records[-1]["text"] == "fine, really"


def test_short_rows_under_a_wide_header_take_time_in_their_own_cells(tmp_path: Path) -> None:
    """Each short row was filled with a None for every column its line lacks, and its columns hashed again: 20,000
    two-cell rows under a 20,000-column header (a 300 KB file) took minutes. A missing column still reads as None."""
    path = tmp_path / "wide.csv"
    header = ",".join(["id", "text", *(f"c{index}" for index in range(5_000)), "stars"])
    path.write_text(header + "\n" + "".join(f"{index},fine\n" for index in range(5_000)) + "x\n", encoding="utf-8")
    started = time.perf_counter()
    *documents, last = read_path(str(path))
    assert time.perf_counter() - started < 3
    assert len(documents) == 5_000 and all(d["text"] == "fine" and d["rating"] is None for d in documents)
    assert isinstance(last, Failure) and last.error_type == "no_text"
    assert documents[0]["ingest_notes"] == read_path_notes_of_a_full_row(tmp_path, header)


def read_path_notes_of_a_full_row(folder: Path, header: str) -> list[str]:
    """The notes of the same row written in full (every column, empty): a short row reads as it did."""
    path = folder / "full.csv"
    path.write_text(header + "\n0,fine" + "," * (header.count(",") - 1) + "\n", encoding="utf-8")
    (document,) = read_path(str(path))
    return document["ingest_notes"]
