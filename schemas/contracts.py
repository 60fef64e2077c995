"""The data contracts: Arrow schemas for documents, labeled output and dead-letter records.

Every field carries a ``description`` in its Arrow metadata and every schema a
``undertone.schema`` name and ``undertone.version``, so a Parquet file says what it holds.
Bump a schema's version when a field changes meaning or type; adding a nullable field is
a minor bump. ``python -m schemas`` prints the field tables in ``schemas/README.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import pyarrow as pa

SOURCES = ("email", "review", "social")
"""Where a document comes from; also the ``source=`` partition of the labeled output."""

DOCUMENT_VERSION = "2.0"
LABELED_VERSION = "2.0"
DEAD_LETTER_VERSION = "1.0"

TIMESTAMP = pa.timestamp("us", tz="UTC")


def _field(name: str, type_: pa.DataType, description: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"description": description})


def _schema(name: str, version: str, fields: Sequence[pa.Field]) -> pa.Schema:
    return pa.schema(fields, metadata={"undertone.schema": name, "undertone.version": version})


DOCUMENT_FIELDS: tuple[pa.Field, ...] = (
    _field("doc_id", pa.string(), "Stable id: sha256 of source and source_id, the same on every run; records that "
           "share a source id share it (the run manifest's reused_ids counts those of different texts).", False),
    _field("source", pa.string(), "email | review | social.", False),
    _field("source_id", pa.string(),
           "The record's own id: its id column, else the email Message-ID, else a hash of its place (file name "
           "with line, row or message offset) and text, so two id-less rows with the same text stay two documents. A "
           "whole-number float id is written as the integer (123, not pandas' 123.0); NaN or infinity is no id.",
           False),
    _field("input_ref", pa.string(), "Where the record was read: file path with line, row or message index.", False),
    _field("created_at", TIMESTAMP, "When the author wrote it (email Date, created_at column), in UTC."),
    _field("text", pa.string(), "The cleaned text that the classifiers read.", False),
    _field("full_text", pa.string(), "The whole cleaned body before reply, signature and footer stripping (email)."),
    _field("subject", pa.string(), "Email subject or review title, decoded."),
    _field("author", pa.string(), "Author or sender; email addresses are sha256-hashed unless configured."),
    _field("thread_id", pa.string(),
           "Email conversation: the root Message-ID of References, else In-Reply-To, else the message's own id."),
    _field("in_reply_to", pa.string(), "Email In-Reply-To: the Message-ID of the message this one answers."),
    _field("recipients", pa.list_(pa.string()), "Email To and Cc addresses (hashed like the author)."),
    _field("attachments", pa.list_(pa.string()),
           "Attachment file names, one per attachment (an attached email is one); attachments are not classified."),
    _field("rating", pa.float64(), "Star rating or score given with a review."),
    _field("product", pa.string(), "Product, brand or account the text is about."),
    _field("language", pa.string(), "ISO 639-1 code from offline language detection (py3langid); null for fewer "
           "than three words, below 0.2 confidence or for a language without an ISO 639-1 code."),
    _field("truncated", pa.bool_(),
           "True when the text is longer than the model window: only its head (the first tokens) was classified."),
    _field("duplicate_of", pa.string(),
           "doc_id of the first document (smallest doc_id) of this run with the same source and text (cleaned, "
           "and redacted where PII redaction is on); null for that first one and for unique texts. Duplicates "
           "are marked, never dropped."),
    _field("pii_redactions", pa.map_(pa.string(), pa.int32()),
           "With PII redaction on: distinct values replaced per kind (email, phone, card, iban, url_secret) in "
           "text, full_text, subject and notes; empty when none were found, null when redaction was off."),
    _field("ingest_notes", pa.list_(pa.string()),
           "What ingest repaired on the way (charset fallback, HTML converted, mojibake fixed, control or "
           "bidirectional control characters removed)."),
)

DOCUMENT_SCHEMA = _schema("document", DOCUMENT_VERSION, DOCUMENT_FIELDS)

RUN_FIELDS: tuple[pa.Field, ...] = (
    _field("model_version", pa.string(), "The model bundle that produced the labels (name@version).", False),
    _field("run_id", pa.string(), "The run that wrote this row; its manifest is _runs/<run_id>.json.", False),
    _field("processed_at", TIMESTAMP, "When the row was labeled.", False),
)


def task_fields(task: str, labels: Sequence[str] = ()) -> tuple[pa.Field, ...]:
    """The two columns a classification task adds: its label and that label's probability."""
    choices = " | ".join(labels) if labels else "one of the task's labels"
    return (
        _field(task, pa.string(), f"{task} label: {choices}; null where the task does not apply to the source."),
        _field(f"{task}_score", pa.float32(), f"Calibrated probability of the {task} label."),
    )


def task_columns(task: str, labels: Sequence[str] = ()) -> tuple[pa.Field, ...]:
    """Every column a task adds to the labeled output: its label and score, and for intent the routed team."""
    if task != "intent":
        return task_fields(task, labels)
    return (*task_fields(task, labels), _field(
        "team", pa.string(), "Team or queue for the intent (models/routing.py); unrouted below the threshold."))


def labeled_schema(tasks: dict[str, Sequence[str]]) -> pa.Schema:
    """The labeled-output schema for a set of tasks (task name → label names)."""
    fields = list(DOCUMENT_FIELDS)
    for task, labels in tasks.items():
        fields.extend(task_columns(task, labels))
    fields.extend(RUN_FIELDS)
    return _schema("labeled", LABELED_VERSION, fields)


TASK_NAME = re.compile(r"[a-z][a-z0-9_]*")
"""A task's name, and so its columns' (``<task>``, ``<task>_score``): a SQL name without quotes. ``my task`` or
``Topic`` beside ``topic`` made columns a dashboard's SQL must quote, or that DuckDB, blind to case, takes for one."""


def check_task_names(tasks: Iterable[str]) -> None:
    """Refuse tasks whose columns clash with the labeled output's own (``language``, the ``date`` partition) or
    with another task's (``sentiment_score``, ``team``): a second column of one name made the partition
    unreadable, and a task named like a partition column lost its labels to the path's value. A name must be
    :data:`TASK_NAME`'s."""
    owners = {name: "a column of every labeled table" for name in (*labeled_schema({}).names, *LABELED_PARTITION_KEYS)}
    for task in dict.fromkeys(tasks):
        if not TASK_NAME.fullmatch(task):
            raise ValueError(f"task name {task!r} is not lower-case letters, digits and underscores starting with a "
                             "letter; name the task otherwise")
        for column in task_columns(task):
            if column.name in owners:
                raise ValueError(f"task {task!r} would write a column {column.name!r}, which is already "
                                 f"{owners[column.name]}; name the task otherwise")
            owners[column.name] = f"a column of task {task!r}"


LABELED_PARTITION_KEYS = ("source", "date")
"""Labeled rows are stored under ``source=<source>/date=<YYYY-MM-DD>/``: these two columns live in the
path, not in the files (hive partitioning; readers such as pyarrow, pandas and DuckDB add them back)."""
DEAD_LETTER_PARTITION_KEYS = ("date",)
"""Dead-letter rows are stored under ``date=<YYYY-MM-DD>/``; their ``source`` stays a column."""


def file_schema(schema: pa.Schema, partition_keys: Sequence[str]) -> pa.Schema:
    """The schema of the Parquet files themselves: the partition columns removed."""
    for key in partition_keys:
        if key in schema.names:
            schema = schema.remove(schema.get_field_index(key))
    return schema


LABELED_SCHEMA = labeled_schema({"sentiment": ("negative", "neutral", "positive")})
"""The labeled schema with one task (``sentiment``), as the README shows it."""

DEAD_LETTER_SCHEMA = _schema(
    "dead_letter",
    DEAD_LETTER_VERSION,
    (
        _field("source", pa.string(), "email | review | social, or null when the file's source is unknown."),
        _field("input_ref", pa.string(), "File path with line, row, message index or byte offset.", False),
        _field("stage", pa.string(), "Where it failed: read | parse | clean | classify.", False),
        _field("error", pa.string(), "What went wrong, for a person to read.", False),
        _field("error_type", pa.string(), "A short machine-readable reason (invalid_json, empty_text, corrupt_file, "
               "truncated_file, ...; the list is in the top-level README, **Nothing is lost**).", False),
        _field("raw_excerpt", pa.string(), "The first 500 characters of the raw record (undecodable bytes and "
               "control characters shown as \\xNN)."),
        _field("doc_id", pa.string(), "The document id when the record got that far."),
        _field("run_id", pa.string(), "The run that wrote this row.", False),
        _field("failed_at", TIMESTAMP, "When the record failed.", False),
    ),
)


def type_name(type_: pa.DataType) -> str:
    """A type as readers show it, less the name of a list's item field: Arrow calls it ``item``, Parquet
    ``element``, so a file read back shows ``list<element: string>`` where the schema says ``list<item: string>``."""
    return f"list<{type_name(type_.value_type)}>" if pa.types.is_list(type_) else str(type_)


def describe(schema: pa.Schema) -> str:
    """A Markdown table of a schema's fields, as in schemas/README.md."""
    lines = [
        f"### `{schema.metadata[b'undertone.schema'].decode()}` v{schema.metadata[b'undertone.version'].decode()}",
        "",
        "| field | type | nullable | description |",
        "|---|---|---|---|",
    ]
    for field in schema:
        description = (field.metadata or {}).get(b"description", b"").decode().replace("|", "\\|")
        lines.append(f"| `{field.name}` | `{type_name(field.type)}` | {'yes' if field.nullable else 'no'} | "
                     f"{description} |")
    return "\n".join(lines)
