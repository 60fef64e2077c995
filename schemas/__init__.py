"""Data contracts shared by every stage: see ``contracts`` and README.md beside it."""

from schemas.aggregates import AGGREGATE_METRICS, AGGREGATES_PARTITION_KEYS, AGGREGATES_SCHEMA
from schemas.contracts import (
    DEAD_LETTER_PARTITION_KEYS,
    DEAD_LETTER_SCHEMA,
    DOCUMENT_SCHEMA,
    LABELED_PARTITION_KEYS,
    LABELED_SCHEMA,
    SOURCES,
    check_task_names,
    describe,
    file_schema,
    labeled_schema,
)
from schemas.reading import labeled_dataset

__all__ = [
    "AGGREGATES_PARTITION_KEYS",
    "AGGREGATES_SCHEMA",
    "AGGREGATE_METRICS",
    "DEAD_LETTER_PARTITION_KEYS",
    "DEAD_LETTER_SCHEMA",
    "DOCUMENT_SCHEMA",
    "LABELED_PARTITION_KEYS",
    "LABELED_SCHEMA",
    "SOURCES",
    "check_task_names",
    "describe",
    "file_schema",
    "labeled_dataset",
    "labeled_schema",
]
