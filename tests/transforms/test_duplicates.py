"""Exact duplicates within a run are marked with the smallest doc_id of their group, never dropped."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.clean import clean_document
from transforms.duplicates import MarkDuplicates, duplicate_key, mark_duplicates, pack, unpack
from transforms.records import new_document


def cleaned(source: str, ref: str, text: str, source_id: str | None = None) -> dict:
    return clean_document(new_document(source, ref, text, source_id=source_id), 10_000)


def test_texts_equal_after_cleaning_share_a_key_per_source() -> None:
    retweet = cleaned("social", "a:1", "Love it &amp; more @Delta https://t.co/x1", "1")
    copy = cleaned("social", "a:2", "Love  it & more   @united https://t.co/y2", "2")
    review = cleaned("review", "r:1", "Love it & more @user http", "3")
    assert retweet["text"] == copy["text"] == review["text"] == "Love it & more @user http"
    assert duplicate_key(retweet) == duplicate_key(copy) != duplicate_key(review)


def test_the_smallest_doc_id_is_the_original_whatever_the_order() -> None:
    group = [cleaned("review", f"r:{n}", "Great phone", str(n)) for n in range(5)]
    first = min(d["doc_id"] for d in group)
    for ordering in (group, list(reversed(group))):
        marked = list(mark_duplicates([pack(d) for d in ordering]))
        assert len(marked) == 5
        assert [d["doc_id"] for d in marked if d["duplicate_of"] is None] == [first]
        assert {d["duplicate_of"] for d in marked if d["doc_id"] != first} == {first}


def test_the_same_record_read_twice_is_marked_once() -> None:
    twice = [cleaned("email", folder, "Re: hi\n\nsee you", "<a@b>") for folder in ("inbox/1", "backup/1")]
    marked = list(mark_duplicates([pack(d) for d in twice]))
    assert [d["duplicate_of"] for d in marked] == [None, twice[0]["doc_id"]]


def test_beam_stage_marks_without_dropping() -> None:
    documents = [cleaned("review", "r:1", "Great phone", "1"), cleaned("review", "r:2", "Great  phone", "2"),
                 cleaned("review", "r:3", "Terrible battery", "3"), cleaned("social", "s:1", "Great phone", "4")]
    first = min(documents[0]["doc_id"], documents[1]["doc_id"])
    expected = [(d["input_ref"], first if d["input_ref"] in ("r:1", "r:2") and d["doc_id"] != first else None)
                for d in documents]
    with TestPipeline() as pipeline:
        marked = pipeline | beam.Create(documents) | MarkDuplicates()
        assert_that(marked | beam.Map(lambda d: (d["input_ref"], d["duplicate_of"])), equal_to(expected))


def test_a_document_crosses_the_shuffle_unchanged_and_smaller() -> None:
    email = cleaned("email", "inbox/7", "Dear team,\n\n" + "The quarterly report is attached. " * 40, "<q@x>")
    packed = pack(email)
    assert unpack(packed) == email
    assert packed[0] == email["doc_id"]
    assert len(packed[1]) < len(email["text"]) / 3
