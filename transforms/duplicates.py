"""Exact duplicates within a run: marked with the id of their first occurrence, never dropped.

Two documents are duplicates when they come from the same source and their cleaned text is
identical (a retweet, a review pasted twice, the same mail in two folders). "First" is the
smallest ``doc_id`` of the group, so the mark does not depend on file order or on how the
runner split the work.

Grouping needs every document of the run in the shuffle at once, and Beam's local runner holds a
shuffle in memory (decoded while it fills, one encoded copy while the next stage reads it). Documents
cross it as compressed pickles, about a third of their size, so peak memory follows the corpus far less;
on a distributed runner the same bytes are the shuffle it bills.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterable, Iterator

import apache_beam as beam
import zstandard

from transforms.records import Document


def duplicate_key(document: Document) -> str:
    """Source and sha256 of the cleaned text: equal keys mean equal texts from one source."""
    digest = hashlib.sha256(document["text"].encode("utf-8", errors="surrogatepass")).hexdigest()
    return f"{document['source']}:{digest}"


Packed = tuple[str, bytes]
"""A document in the shuffle: its ``doc_id`` and the zstd-compressed pickle of the whole document."""


def pack(document: Document) -> Packed:
    return document["doc_id"], zstandard.compress(pickle.dumps(document, protocol=pickle.HIGHEST_PROTOCOL), 1)


def unpack(packed: Packed) -> Document:
    return pickle.loads(zstandard.decompress(packed[1]))


def mark_duplicates(group: Iterable[Packed]) -> Iterator[Document]:
    """Every document of one key, ``duplicate_of`` set on all but the first.

    Two passes over ``group`` (Beam's grouped values can be iterated again) so a large group
    is never held in memory as a list; the first reads ids only.
    """
    first = min(doc_id for doc_id, _ in group)
    first_seen = False
    for packed in group:
        is_first = packed[0] == first and not first_seen
        first_seen = first_seen or is_first
        yield {**unpack(packed), "duplicate_of": None if is_first else first}


class MarkDuplicates(beam.PTransform):
    """Documents in, the same documents out with ``duplicate_of`` filled in."""

    def expand(self, documents: beam.PCollection) -> beam.PCollection:
        return (
            documents
            | "KeyByText" >> beam.Map(lambda document: (duplicate_key(document), pack(document)))
            | "GroupByText" >> beam.GroupByKey()
            | "MarkDuplicates" >> beam.FlatMap(lambda keyed: mark_duplicates(keyed[1]))
        )
