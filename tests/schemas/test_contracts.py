"""The contracts are documented field by field and the README shows exactly them."""

from __future__ import annotations

import pyarrow as pa
import pytest

from schemas import (
    DEAD_LETTER_SCHEMA,
    DOCUMENT_SCHEMA,
    LABELED_SCHEMA,
    check_task_names,
    describe,
    file_schema,
    labeled_schema,
)
from tests.conftest import REPO


def test_every_field_has_a_description_and_every_schema_a_version() -> None:
    for schema in (DOCUMENT_SCHEMA, LABELED_SCHEMA, DEAD_LETTER_SCHEMA):
        assert schema.metadata[b"undertone.version"]
        for field in schema:
            assert field.metadata and field.metadata[b"description"].strip(), field.name


def test_labeled_schema_adds_two_columns_per_task() -> None:
    schema = labeled_schema({"sentiment": ("negative", "positive"), "spam": ("ham", "spam")})
    assert {"sentiment", "sentiment_score", "spam", "spam_score"} <= set(schema.names)
    assert schema.field("spam_score").type == pa.float32()
    assert "source" not in file_schema(schema, ("source", "date")).names


def test_readme_lists_the_current_fields() -> None:
    readme = (REPO / "schemas" / "README.md").read_text(encoding="utf-8")
    for schema in (DOCUMENT_SCHEMA, LABELED_SCHEMA, DEAD_LETTER_SCHEMA):
        assert describe(schema) in readme, "run `python -m schemas` and paste its output into schemas/README.md"


@pytest.mark.parametrize("task", ["my task", "Topic", "2nd_topic", "topic-v2", ""])
def test_task_names_that_sql_must_quote_are_refused(task: str) -> None:
    """``my task`` wrote columns ``my task`` and ``my task_score``, which a dashboard's SQL must quote, and ``Topic``
    beside ``topic`` two columns DuckDB (blind to case) reads as one."""
    with pytest.raises(ValueError, match=f"task name {task!r} is not lower-case letters"):
        check_task_names(["sentiment", task])


@pytest.mark.parametrize(("tasks", "column"), [
    (["sentiment", "language"], "language"),  # a document field: two `language` columns, unreadable
    (["date"], "date"),  # the partition column: the task's labels were lost to the path's value
    (["sentiment", "sentiment_score"], "sentiment_score"),  # another task's score
    (["intent", "team"], "team"),  # the column intent's routing adds
])
def test_task_names_that_clash_with_output_columns_are_refused(tasks: list[str], column: str) -> None:
    with pytest.raises(ValueError, match=f"task '{tasks[-1]}' would write a column '{column}'"):
        check_task_names(tasks)
    check_task_names(["sentiment", "intent", "spam", "topic", "complaint_type"])
