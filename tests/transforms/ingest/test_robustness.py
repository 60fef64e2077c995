"""Broken input never crashes ingest: every record becomes a document or a dead-letter reason.

Property tests on the pure functions run many generated examples; the end-to-end property
runs the Beam job a few times (each run costs seconds) and checks labeled + dead-letter = input.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SAMPLES
from transforms.clean import clean_document
from transforms.ingest.email import parse_email
from transforms.ingest.read import read_path
from transforms.pipeline import PipelineConfig, run_pipeline
from transforms.records import Failure, new_document

REAL_EMAILS = [path.read_bytes() for path in sorted((SAMPLES / "email").glob("*-000*"))]
STAGES = {"read", "parse", "clean", "classify"}
MAX_CHARS = 200_000


def assert_valid_outcome(record: object) -> None:
    """A failure says where and why; a document has every text field as valid UTF-8."""
    if isinstance(record, Failure):
        assert record.stage in STAGES and record.error_type and record.error and record.input_ref
        return
    assert isinstance(record, dict) and record["doc_id"] and record["source"] in ("email", "review", "social")
    for name in ("text", "full_text", "subject", "author", "thread_id", "in_reply_to", "source_id"):
        if record.get(name) is not None:
            record[name].encode("utf-8")


def cleaned(record: object) -> object:
    return record if isinstance(record, Failure) else clean_document(record, MAX_CHARS)


@st.composite
def damaged_emails(draw: st.DrawFn) -> bytes:
    """A real message cut short, with bytes overwritten by garbage, or both."""
    raw = draw(st.sampled_from(REAL_EMAILS))
    raw = raw[: draw(st.integers(0, len(raw)))]
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=16)) + raw[at + 1:]
    return raw


@settings(max_examples=200, deadline=None)
@given(st.one_of(damaged_emails(), st.binary(max_size=2048)))
def test_parse_email_never_raises(raw: bytes) -> None:
    record = parse_email(raw, "generated")
    assert_valid_outcome(record)
    assert_valid_outcome(cleaned(record))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_clean_document_gives_text_or_a_reason(text: str) -> None:
    for source in ("review", "social"):
        outcome = clean_document(new_document(source, "generated", text), 300)
        assert_valid_outcome(outcome)
        if isinstance(outcome, Failure):
            assert outcome.error_type in ("empty_text", "binary", "text_too_large")
        else:
            assert outcome["text"].strip() == outcome["text"] != ""


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30))
ROWS = st.dictionaries(st.sampled_from(["text", "review", "tweet", "id", "stars", "date", "x", "Body", "wrong"]),
                       JSON_VALUES, max_size=5)
LINES = st.one_of(
    ROWS.map(lambda row: json.dumps(row).encode()),
    st.binary(min_size=1, max_size=40).map(lambda raw: raw.replace(b"\n", b" ").replace(b"\r", b" ")),
    st.text(min_size=1, max_size=20).map(lambda text: ('{"text": "' + text).encode("utf-8", "surrogatepass")),
    st.just(b'{"text": "caf\xe9 au lait", "id": 1}'),
    st.just(b"[1, 2, 3]"),
)


def records_of(path: Path) -> list[object]:
    records = [cleaned(record) for record in read_path(str(path))]
    for record in records:
        assert_valid_outcome(record)
    return records


@settings(max_examples=100, deadline=None)
@given(st.lists(LINES, max_size=12))
def test_every_jsonl_line_is_one_record(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "posts.jsonl"
        path.write_bytes(b"{}\n" + b"\n".join(lines) + b"\n")
        records = records_of(path)
    non_blank = 1 + sum(1 for line in lines for part in line.split(b"\n") if part.strip())
    assert len(records) == non_blank


CELLS = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(CELLS, min_size=1, max_size=4), max_size=8), st.binary(max_size=30))
def test_csv_with_bad_bytes_and_ragged_rows_never_raises(rows: list[list[str]], garbage: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "reviews.csv"
        body = "\n".join(",".join(json.dumps(cell) for cell in row) for row in rows).encode()
        path.write_bytes(b"id,review_text,stars\n" + body + b"\n" + garbage)
        records_of(path)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096), st.sampled_from(["x.eml", "x.csv", "x.jsonl", "x.json", "x.parquet", "x.mbox",
                                                  "noext", "x.csv.gz"]))
def test_binary_garbage_under_any_name_is_a_reason(raw: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(raw)
        records_of(path)


def test_wrong_column_names_fail_every_row_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("uid,words,when\n1,great phone,2026-01-01\n2,awful,2026-01-02\n", encoding="utf-8")
    records = records_of(path)
    assert [(r.error_type, r.input_ref) for r in records] == [
        ("no_text_column", f"{path}:2"), ("no_text_column", f"{path}:3")]
    assert "--text-column" in records[0].error


def test_invalid_utf8_fails_only_its_own_row(tmp_path: Path) -> None:
    jsonl = tmp_path / "posts.jsonl"
    jsonl.write_bytes('{"text": "fine"}\n{"text": "caf\udce9"}\n{"text": "also fine — déjà vu"}\n'.encode(
        errors="surrogateescape"))
    csv = tmp_path / "reviews.csv"
    csv.write_bytes("review_text,stars\nfine,5\ncaf\udce9,1\nalso fine — déjà vu,4\n".encode(errors="surrogateescape"))
    for path in (jsonl, csv):  # otherwise UTF-8: no code page
        outcomes = [r.error_type if isinstance(r, Failure) else r["text"] for r in records_of(path)]
        assert outcomes == ["fine", "invalid_utf8", "also fine — déjà vu"]


def test_a_20_mb_text_is_refused_by_size_not_by_a_crash(tmp_path: Path) -> None:
    huge = "word " * 4_000_000
    jsonl = tmp_path / "reviews.jsonl"
    jsonl.write_text(json.dumps({"text": huge}) + "\n" + json.dumps({"text": "short one"}) + "\n", encoding="utf-8")
    email = tmp_path / "huge.eml"
    email.write_bytes(b"From: a@b.c\nSubject: big\n\n" + huge.encode())
    outcomes = [r.error_type if isinstance(r, Failure) else r["text"] for p in (jsonl, email) for r in records_of(p)]
    assert outcomes == ["text_too_large", "short one", "text_too_large"]


def test_a_long_csv_cell_or_deep_json_line_fails_alone(tmp_path: Path) -> None:
    """csv's 131,072-character cell limit and json's recursion limit used to end the file at that row."""
    table = tmp_path / "reviews.csv"
    table.write_text(f"id,text\n1,short\n2,{'x' * 300_000}\n3,after the long one\n", encoding="utf-8")
    lines = tmp_path / "posts.jsonl"
    lines.write_text('{"text": "before"}\n{"a": ' + "[" * 100_000 + "]" * 100_000 + '}\n{"text": "after"}\n',
                     encoding="utf-8")
    outcomes = [r.error_type if isinstance(r, Failure) else r["text"] for p in (table, lines) for r in records_of(p)]
    assert outcomes == ["short", "text_too_large", "after the long one", "before", "invalid_json", "after"]


def test_a_json_line_with_a_number_too_long_for_python_fails_alone(tmp_path: Path) -> None:
    """Python refuses to read an integer of more than 4,300 digits with a ValueError that is no JSONDecodeError: it
    ended the file at that line, one corrupt_file for every line after it."""
    lines = tmp_path / "posts.jsonl"
    lines.write_text('{"id": "a", "text": "fine one"}\n{"id": "b", "text": "big", "rating": ' + "9" * 5000
                     + '}\n{"id": "c", "text": "fine three"}\n{"id": "d", "text": "fine four"}\n', encoding="utf-8")
    records = records_of(lines)
    outcomes = [r.error_type if isinstance(r, Failure) else r["text"] for r in records]
    assert outcomes == ["fine one", "invalid_json", "fine three", "fine four"]
    assert records[1].input_ref.endswith("posts.jsonl:2") and "number too long" in records[1].error


def test_a_deep_record_in_a_json_array_fails_alone_and_a_break_names_the_record_it_is_in(tmp_path: Path) -> None:
    """A record 10,000 levels deep was read, then overflowed the recursion that writes it back as JSON: the file
    ended there, one corrupt_file "RecursionError". ijson cannot resume past a number it refuses (beyond 64 bits),
    so the records from there on cannot be read: the dead letter says at which record, after how many."""
    deep = tmp_path / "posts.json"
    deep.write_text('[{"id": "x1", "text": "one"}, {"id": "x2", "text": "deep", "n": ' + "[" * 10_000 + "]" * 10_000
                    + '}, {"id": "x3", "text": "three"}]', encoding="utf-8")
    records = records_of(deep)
    assert [r.error_type if isinstance(r, Failure) else r["text"] for r in records] == ["one", "invalid_json", "three"]
    assert records[1].input_ref == f"{deep}[1]" and "nested more than 512 levels deep" in records[1].error
    big = tmp_path / "reviews.json"
    big.write_text('[{"id": "x1", "text": "one"}, {"id": "x2", "text": "big", "n": ' + "9" * 5000
                   + '}, {"id": "x3", "text": "three"}]', encoding="utf-8")
    first, failure = records_of(big)
    assert first["text"] == "one" and failure.error_type == "invalid_json" and failure.input_ref == str(big)
    assert f"after 1 records, at record {big}[1]: neither it nor any record after it could be read" in failure.error


def test_an_integer_wider_than_64_bits_in_a_json_array_loses_no_record(tmp_path: Path) -> None:
    """ijson's C parser refuses an integer over 64 bits ("integer overflow"), and a 20-digit id ended the file at its
    record; the file is read again from that record with ijson's Python parser."""
    export = tmp_path / "reviews.json"
    export.write_text('[{"id": 1, "text": "one"}, {"id": 12345678901234567890, "text": "two"}, '
                      '{"id": 3, "text": "three", "likes": -98765432109876543210}]', encoding="utf-8")
    records = records_of(export)
    assert [r["text"] for r in records] == ["one", "two", "three"]
    assert [r["source_id"] for r in records] == ["1", "12345678901234567890", "3"]


def test_a_rating_past_a_floats_range_is_a_note_and_the_file_goes_on(tmp_path: Path) -> None:
    """A JSON line's 400-digit rating raised OverflowError converting to float, which ended the file there: the
    records after it were never read, under a reconciled manifest."""
    lines = tmp_path / "reviews.jsonl"
    lines.write_text('{"id": 1, "text": "fine one", "rating": 4}\n'
                     f'{{"id": 2, "text": "huge rating", "rating": 1{"0" * 400}}}\n'
                     f'{{"id": 3, "text": "long text rating", "rating": "{"4" * 400}"}}\n'
                     '{"id": 4, "text": "fourth", "rating": 5}\n', encoding="utf-8")
    records = records_of(lines)
    assert [(r["text"], r["rating"]) for r in records] == [
        ("fine one", 4.0), ("huge rating", None), ("long text rating", None), ("fourth", 5.0)]
    assert [r["ingest_notes"] for r in records[1:3]] == [["non-numeric rating: 10000000000000000000"],
                                                          ["non-numeric rating: 44444444444444444444"]]


def test_a_row_the_converter_fails_on_is_its_own_dead_letter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """Whatever a row's conversion to a document raises, the row is a dead letter and the file goes on."""
    from transforms.ingest import read

    convert = read.row_to_document

    def failing_on_the_second(row: dict, *args: object) -> object:
        if row.get("id") == "2":
            raise KeyError("a converter bug")
        return convert(row, *args)

    monkeypatch.setattr(read, "row_to_document", failing_on_the_second)
    table = tmp_path / "reviews.csv"
    table.write_text("id,text\n1,first review\n2,second review\n3,third review\n", encoding="utf-8")
    first, failure, third = records_of(table)
    assert (first["text"], third["text"]) == ("first review", "third review")
    assert (failure.error_type, failure.input_ref) == ("unreadable_value", f"{table}:3")
    assert "KeyError" in failure.error and "second review" in failure.raw_excerpt


def test_truncated_mime_keeps_what_was_there() -> None:
    raw = (SAMPLES / "email" / "spam-00001").read_bytes()
    boundary_cut = raw[: raw.rindex(b"</")]
    document = cleaned(parse_email(boundary_cut, "cut"))
    assert not isinstance(document, Failure) and "Life Insurance" in document["text"]
    headers_only = cleaned(parse_email(b"From: a@b.c\nSubject: only a subject\nContent-Type: multipart/mixed; "
                                       b"boundary=x\n\n--x\nContent-Type: text/plain\n", "cut"))
    assert headers_only["text"] == "only a subject"
    empty = cleaned(parse_email(b"From: a@b.c\n\n", "empty"))
    assert (empty.error_type, empty.error) == ("empty_text", "no text left after clean-up: no subject and no body text")
    encrypted = cleaned(parse_email(b"From: a@b.c\nContent-Type: multipart/encrypted; boundary=x\n\n--x\n"
                                    b"Content-Type: application/octet-stream\n\n-----BEGIN PGP MESSAGE-----\n"
                                    b"--x--\n", "e"))
    assert encrypted.error == ("no text left after clean-up: no subject and no body text (body encrypted (PGP/MIME), "
                               "not readable: labeled by its subject alone)")



CUT_REVIEWS = [(f"r{i}", f"Order {i}: the kettle arrived late, and the lid, frankly, is \"flimsy\"")
               for i in range(40)]
CUT_EXPORTS = {
    "reviews.csv.gz": gzip.compress(("review_id,rating,text\n" + "".join(
        f'{id_},{i % 5 + 1},"{text.replace(chr(34), chr(34) * 2)}"\n'
        for i, (id_, text) in enumerate(CUT_REVIEWS))).encode()),
    "reviews.jsonl.gz": gzip.compress("".join(json.dumps({"review_id": id_, "rating": 3, "text": text}) + "\n"
                                              for id_, text in CUT_REVIEWS).encode()),
}


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(CUT_EXPORTS)), st.floats(0, 1))
def test_a_gzip_export_cut_anywhere_labels_only_whole_rows_and_says_so_once(name: str, where: float) -> None:
    """Wherever an interrupted upload cuts a gzipped export, the labeled rows are whole rows of it, in order, and
    one ``truncated_file`` dead letter follows: no half row labeled, no second dead letter for the cut row."""
    data = CUT_EXPORTS[name]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data[: int(where * (len(data) - 1))])
        *labeled, cut = records_of(path)
    assert [record["text"] for record in labeled] == [text for _, text in CUT_REVIEWS[: len(labeled)]]
    assert isinstance(cut, Failure) and cut.error_type == "truncated_file"

POSTS = st.lists(st.sampled_from([
    b'{"id": "p1", "text": "Love the new seats @Delta &amp; the crew"}',
    b'{"id": "p2", "text": "Love the new seats @united & the crew"}',
    b'{"id": "p3", "text": "   "}',
    b'{"id": "p4", "text": "caf\xe9 broken"}',
    b'{"id": "p5", "text": "cut off mid',
    b'{"id": "p6", "words": "wrong column"}',
    b'{"id": "p7", "text": "call me on +1 415 555 2671 or mail jo@example.com"}',
]), min_size=1, max_size=8)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(posts=POSTS, emails=st.lists(st.one_of(damaged_emails(), st.binary(max_size=64)), min_size=1, max_size=3))
def test_pipeline_labeled_plus_dead_letter_equals_input(tiny_bundle: Path, posts: list[bytes],
                                                        emails: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        inputs = Path(folder) / "in"
        inputs.mkdir()
        (inputs / "tweets.jsonl").write_bytes(b"\n".join(posts) + b"\n")
        for index, raw in enumerate(emails):
            (inputs / f"message-{index}.eml").write_bytes(raw)
        output = Path(folder) / "out"
        manifest = run_pipeline(PipelineConfig(inputs=(str(inputs),), output=str(output), logical_date="2026-11-20",
                                               model_dir=str(tiny_bundle), redact_pii=True))
        labeled = pd.read_parquet(output / "labeled") if (output / "labeled").exists() else pd.DataFrame()
        dead = pd.read_parquet(output / "dead_letter") if (output / "dead_letter").exists() else pd.DataFrame()
    assert manifest["reconciled"] is True
    assert manifest["totals"]["input"] == len(posts) + len(emails)
    assert len(labeled) + len(dead) == len(posts) + len(emails)
    assert dead.empty or (dead["error_type"].str.len() > 0).all()
    if not labeled.empty:
        texts = " ".join(labeled["text"])
        assert "jo@example.com" not in texts and "555 2671" not in texts
        social = labeled[labeled["source"] == "social"]
        originals = social[social["duplicate_of"].isna()]
        assert set(social["duplicate_of"].dropna()) <= set(originals["doc_id"])
        assert originals["text"].is_unique


def test_names_and_text_that_beam_cannot_encode_do_not_stop_the_run(tiny_bundle: Path, tmp_path: Path) -> None:
    """Beam's coders and Parquet accept only valid UTF-8: a non-UTF-8 file name, a JSON escape of half an
    emoji and a CSV byte in another charset once failed the whole job. A Windows-1252 CSV is read in it; a byte that
    is not UTF-8 in an otherwise UTF-8 one is its row's dead letter."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / b"caf\xe9-tweets.jsonl".decode("utf-8", "surrogateescape")).write_bytes(
        b'{"id": "1", "text": "cut at the limit \\ud83d"}\n{"id": "2", "text": "fine"}\n')
    (inputs / "reviews.csv").write_bytes("id,review_text\n1,fine — déjà vu\n2,caf\udce9 in latin-1\n".encode(
        errors="surrogateescape"))
    (inputs / "reviews-cp1252.csv").write_bytes(b"id,review_text\n3,caf\xe9 cr\xe8me\n")
    (inputs / "reviews-excel.csv").write_bytes("id,review_text\n1,exported by Excel\n".encode("utf-16"))
    output = tmp_path / "out"
    manifest = run_pipeline(PipelineConfig(inputs=(str(inputs),), output=str(output), logical_date="2026-11-20",
                                           model_dir=str(tiny_bundle)))
    labeled = pd.read_parquet(output / "labeled")
    dead = pd.read_parquet(output / "dead_letter")
    assert manifest["reconciled"] is True and manifest["totals"]["input"] == 6
    assert sorted(labeled["text"]) == ["café crème", "cut at the limit \ufffd", "exported by Excel", "fine",
                                       "fine — déjà vu"]
    assert list(dead["error_type"]) == ["invalid_utf8"] and dead["raw_excerpt"][0].endswith('caf\\xe9 in latin-1"}')
    assert any(ref.startswith(f"{inputs}/caf\\xe9-tweets.jsonl:") for ref in labeled["input_ref"])


def test_an_empty_container_holds_no_record_and_an_empty_message_is_a_broken_one(tmp_path: Path) -> None:
    """0 bytes: a mailbox or a table holds nothing to lose; a single-message file is a broken message."""
    outcomes = {}
    for name in ("archive.mbox", "archive.mbx.gz", "reviews.csv", "posts.jsonl", "note.eml"):
        path = tmp_path / name
        path.write_bytes(gzip.compress(b"") if name.endswith(".gz") else b"")
        outcomes[name] = list(read_path(str(path)))
    assert all(outcomes[name] == [] for name in ("archive.mbox", "archive.mbx.gz", "reviews.csv", "posts.jsonl"))
    [message] = outcomes["note.eml"]
    assert isinstance(message, Failure) and message.error_type == "not_email"
