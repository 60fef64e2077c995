"""Exact duplicates within a run: marked with the id of their first occurrence, never dropped.

Two documents are duplicates when they come from the same source and their cleaned text is
identical (a retweet, a review pasted twice, the same mail in two folders). "First" is the
smallest ``doc_id`` of the group, so the mark does not depend on file order or on how the
runner split the work.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import apache_beam as beam

from transforms.records import Document


def duplicate_key(document: Document) -> str:
    """Source and sha256 of the cleaned text: equal keys mean equal texts from one source."""
    digest = hashlib.sha256(document["text"].encode("utf-8", errors="surrogatepass")).hexdigest()
    return f"{document['source']}:{digest}"


def mark_duplicates(group: Iterable[Document]) -> Iterator[Document]:
    """Every document of one key, ``duplicate_of`` set on all but the first.

    Two passes over ``group`` (Beam's grouped values can be iterated again) so a large group
    is never held in memory as a list.
    """
    first = min(document["doc_id"] for document in group)
    first_seen = False
    for document in group:
        is_first = document["doc_id"] == first and not first_seen
        first_seen = first_seen or is_first
        yield {**document, "duplicate_of": None if is_first else first}


class MarkDuplicates(beam.PTransform):
    """Documents in, the same documents out with ``duplicate_of`` filled in."""

    def expand(self, documents: beam.PCollection) -> beam.PCollection:
        return (
            documents
            | "KeyByText" >> beam.Map(lambda document: (duplicate_key(document), document))
            | "GroupByText" >> beam.GroupByKey()
            | "MarkDuplicates" >> beam.FlatMap(lambda keyed: mark_duplicates(keyed[1]))
        )
