"""Data contracts shared by every stage: see ``contracts`` and README.md beside it."""

from schemas.contracts import (
    DEAD_LETTER_PARTITION_KEYS,
    DEAD_LETTER_SCHEMA,
    DOCUMENT_SCHEMA,
    LABELED_PARTITION_KEYS,
    LABELED_SCHEMA,
    SOURCES,
    describe,
    file_schema,
    labeled_schema,
)

__all__ = [
    "DEAD_LETTER_PARTITION_KEYS",
    "DEAD_LETTER_SCHEMA",
    "DOCUMENT_SCHEMA",
    "LABELED_PARTITION_KEYS",
    "LABELED_SCHEMA",
    "SOURCES",
    "describe",
    "file_schema",
    "labeled_schema",
]
