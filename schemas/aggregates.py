"""The aggregates contract: small daily tables for dashboards, recomputed from the committed output.

One long ("tidy") table per logical date, ``OUTPUT/aggregates/date=<YYYY-MM-DD>/aggregates.parquet``:
each row is one count of one ``metric``, so a dashboard filters on ``metric`` instead of joining
several tables, and a new metric needs no schema change.
"""

from __future__ import annotations

import pyarrow as pa

from schemas.contracts import TIMESTAMP, _field, _schema

AGGREGATES_VERSION = "1.0"

AGGREGATE_METRICS = ("label", "dead_letter", "language", "model_version", "negative_topic", "negative_intent")
"""What a row counts; see the ``metric`` field's description."""

AGGREGATES_PARTITION_KEYS = ("date",)
"""Aggregates are stored under ``date=<YYYY-MM-DD>/`` (the logical date of the labeled partitions they sum)."""

AGGREGATES_SCHEMA = _schema(
    "aggregates",
    AGGREGATES_VERSION,
    (
        _field("metric", pa.string(),
               "label: documents per source, event day, task and label | dead_letter: records per source and "
               "stage/error_type | language: documents per source and language | model_version: documents per "
               "source and model | negative_topic, negative_intent: topics and intents of a source's negative "
               "documents.", False),
        _field("source", pa.string(), "email | review | social (unknown for dead letters of unknown files).", False),
        _field("event_date", pa.date32(),
               "Day (UTC) of created_at, for metric label; null for other metrics and for documents without one."),
        _field("task", pa.string(),
               "The labeled column counted: a task (sentiment, spam, topic, intent) or team; null for dead_letter, "
               "language and model_version."),
        _field("label", pa.string(),
               "The value counted: a task label, team, stage/error_type, language code (unknown when not "
               "detected), model version, or the topic/intent of negative documents.", False),
        _field("count", pa.int64(), "Documents (dead-letter records for metric dead_letter).", False),
        _field("share", pa.float64(),
               "count / the group's total, so each group sums to 1. Groups: label: source, event_date and task; "
               "dead_letter, language, model_version: source; negative_topic/negative_intent: the source's "
               "negative documents with that task labeled.", False),
        _field("mean_score", pa.float64(),
               "Mean calibrated probability of the label (<task>_score); null where there is no score."),
        _field("rank", pa.int32(),
               "1 for the most frequent label of its group, 2 for the next (ties by label); top N: rank <= N.",
               False),
        _field("computed_at", TIMESTAMP, "When the table was recomputed from the labeled and dead-letter partitions.",
               False),
    ),
)
