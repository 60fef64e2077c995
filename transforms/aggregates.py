"""Daily aggregates for dashboards: counts, shares and mean scores per source, event day and label.

The table of a logical date is always recomputed from that date's *committed* labeled and dead-letter
partitions (never from one run's rows), so it reconciles with them even when a run replaced only some
sources. It is written next to them as ``OUTPUT/aggregates/date=<YYYY-MM-DD>/aggregates.parquet``:
a temporary file renamed over the old one, under a per-date lock, so readers see the old table or the
new one, never a mix, and the last of two concurrent recomputations has seen both runs' partitions.
Contract: :data:`schemas.aggregates.AGGREGATES_SCHEMA`.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.aggregates import AGGREGATES_PARTITION_KEYS, AGGREGATES_SCHEMA
from schemas.contracts import file_schema
from transforms.sinks import UNKNOWN_SOURCE, dead_letter_partition, file_lock

AGGREGATES_DIR = "aggregates"
AGGREGATES_FILE = "aggregates.parquet"
UNKNOWN_LANGUAGE = "unknown"
NEGATIVE = "negative"
COLUMNS = [field.name for field in AGGREGATES_SCHEMA]
LABELED_INPUTS = ("created_at", "language", "model_version", "team")
"""The labeled columns the aggregates read, besides the task columns."""


def aggregates_partition(root: str | Path, date: str) -> Path:
    return Path(root) / AGGREGATES_DIR / f"date={date}"


def read_labeled(output: str | Path, date: str, columns: Collection[str] | None = None) -> pd.DataFrame:
    """Every committed labeled row of ``date``, all sources, with ``source`` from the path.

    ``columns`` (None: all) limits what is read, besides the task columns (``<task>``, ``<task>_score``)
    which are always read, so aggregating skips the texts. Files are read one by one because sources may
    carry different task columns (spam on email only, opt-in intent on some runs); missing ones become null.
    """
    frames = []
    for path in sorted(Path(output).glob(f"labeled/source=*/date={date}/*.parquet")):
        names = pq.read_schema(path).names
        wanted = None if columns is None else [name for name in names if name in columns or name.endswith("_score")
                                               or f"{name}_score" in names]
        frame = pq.read_table(path, columns=wanted).to_pandas()
        frame.insert(0, "source", path.parent.parent.name.removeprefix("source="))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"source": pd.Series(dtype=str)})


def read_dead_letter(output: str | Path, date: str) -> pd.DataFrame:
    """Every committed dead-letter row of ``date``."""
    paths = sorted(dead_letter_partition(output, date).glob("*.parquet"))
    if not paths:
        return pd.DataFrame({"source": pd.Series(dtype=str), "stage": pd.Series(dtype=str),
                             "error_type": pd.Series(dtype=str)})
    return pd.concat([pq.read_table(path).to_pandas() for path in paths], ignore_index=True)


def task_columns(frame: pd.DataFrame) -> list[str]:
    """The task columns of a labeled frame: those with a ``<task>_score`` beside them."""
    return [column for column in frame.columns if f"{column}_score" in frame.columns]


def _finish(counts: pd.DataFrame, metric: str, group: list[str]) -> pd.DataFrame:
    """Add metric, share within ``group`` and rank within ``group`` (most frequent first, ties by label)."""
    if counts.empty:
        return pd.DataFrame(columns=COLUMNS[:-1])
    counts = counts.sort_values([*group, "count", "label"], ascending=[True] * len(group) + [False, True],
                                na_position="first")
    grouped = counts.groupby(group, dropna=False, sort=False)
    counts["share"] = counts["count"] / grouped["count"].transform("sum")
    counts["rank"] = grouped.cumcount() + 1
    counts["metric"] = metric
    for column in ("event_date", "task", "mean_score"):
        if column not in counts:
            counts[column] = None
    return counts[COLUMNS[:-1]]


def label_counts(labeled: pd.DataFrame) -> pd.DataFrame:
    """Per source, event day (UTC day of ``created_at``) and task: documents, share and mean score per label.

    Rows where a task does not apply (spam on reviews) are null and not counted, so the shares of a
    task sum to 1 over the documents it labeled. ``team`` (intent routing) is counted like a task.
    """
    parts = []
    event_date = (pd.to_datetime(labeled["created_at"], utc=True).dt.date if "created_at" in labeled
                  else pd.Series(None, index=labeled.index, dtype=object))
    for task in [*task_columns(labeled), *(["team"] if "team" in labeled else [])]:
        score = labeled.get(f"{task}_score", pd.Series(float("nan"), index=labeled.index))
        rows = pd.DataFrame({"source": labeled["source"], "event_date": event_date, "label": labeled[task],
                             "score": score.astype("float64")}).dropna(subset=["label"])
        if rows.empty:
            continue
        grouped = rows.groupby(["source", "event_date", "label"], dropna=False)
        counts = grouped.agg(count=("label", "size"), mean_score=("score", "mean")).reset_index()
        counts["task"] = task
        parts.append(counts)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return _finish(frame, "label", ["source", "event_date", "task"])


def value_counts(frame: pd.DataFrame, column: str, metric: str, missing: str) -> pd.DataFrame:
    """Per source: how many rows hold each value of ``column`` (``missing`` for null)."""
    if frame.empty or column not in frame:
        return _finish(pd.DataFrame(), metric, ["source"])
    values = frame[column].astype(object).where(frame[column].notna(), missing)
    counts = pd.DataFrame({"source": frame["source"], "label": values}).groupby(["source", "label"]).size()
    return _finish(counts.rename("count").reset_index(), metric, ["source"])


def dead_letter_counts(dead: pd.DataFrame) -> pd.DataFrame:
    """Per source (``unknown`` for files whose source could not be told): records per ``stage/error_type``."""
    reasons = dead.assign(source=dead["source"].fillna(UNKNOWN_SOURCE),
                          reason=dead["stage"].astype(str) + "/" + dead["error_type"].astype(str))
    return value_counts(reasons, "reason", "dead_letter", missing="")


def negative_breakdown(labeled: pd.DataFrame, task: str, metric: str) -> pd.DataFrame:
    """Per source: the ``task`` labels (topic, intent) of documents whose sentiment is negative."""
    if "sentiment" not in labeled or task not in labeled:
        return _finish(pd.DataFrame(), metric, ["source"])
    negative = labeled[(labeled["sentiment"] == NEGATIVE) & labeled[task].notna()]
    rows = pd.DataFrame({"source": negative["source"], "label": negative[task],
                         "score": negative[f"{task}_score"].astype("float64")})
    counts = rows.groupby(["source", "label"]).agg(count=("label", "size"), mean_score=("score", "mean"))
    return _finish(counts.reset_index().assign(task=task), metric, ["source"])


def compute_aggregates(labeled: pd.DataFrame, dead: pd.DataFrame, computed_at: datetime | None = None) -> pa.Table:
    """The aggregates table of one date from its labeled and dead-letter rows (pure: no files)."""
    parts = [
        label_counts(labeled),
        dead_letter_counts(dead),
        value_counts(labeled, "language", "language", missing=UNKNOWN_LANGUAGE),
        value_counts(labeled, "model_version", "model_version", missing=UNKNOWN_LANGUAGE),
        negative_breakdown(labeled, "topic", "negative_topic"),
        negative_breakdown(labeled, "intent", "negative_intent"),
    ]
    schema = file_schema(AGGREGATES_SCHEMA, AGGREGATES_PARTITION_KEYS)
    stamp = pd.Timestamp(computed_at or datetime.now(UTC))
    table = pa.concat_tables([pa.Table.from_pandas(part.assign(computed_at=stamp), schema=schema, preserve_index=False)
                              for part in parts if not part.empty] or [schema.empty_table()])
    return table.replace_schema_metadata(schema.metadata)  # the contract's, without pandas' description of a frame


def _date_lock(output: str | Path, date: str) -> AbstractContextManager[None]:
    """Serialise recomputations of one date, so the last writer has read every committed partition."""
    return file_lock(Path(output) / AGGREGATES_DIR / f".date={date}.lock")


def write_aggregates(output: str | Path, date: str, table: pa.Table) -> Path:
    """Write a date's table atomically: a synced hidden temporary file renamed over ``aggregates.parquet``."""
    folder = aggregates_partition(output, date)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / AGGREGATES_FILE
    temporary = folder / f".{AGGREGATES_FILE}.{os.getpid()}.tmp"
    pq.write_table(table, temporary, compression="zstd")
    with temporary.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    return target


def aggregate_date(output: str | Path, date: str) -> Path:
    """Recompute and write the aggregates of ``date`` from its committed partitions; returns the file."""
    with _date_lock(output, date):
        table = compute_aggregates(read_labeled(output, date, LABELED_INPUTS), read_dead_letter(output, date))
        return write_aggregates(output, date, table)


def read_aggregates(output: str | Path, start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """The aggregates of every date from ``start`` to ``end`` (both included, None: unbounded), with ``date``."""
    frames = []
    for path in sorted(Path(output).glob(f"{AGGREGATES_DIR}/date=*/{AGGREGATES_FILE}")):
        date = path.parent.name.removeprefix("date=")
        if (start is None or date >= start) and (end is None or date <= end):
            frames.append(pq.read_table(path).to_pandas().assign(date=date))
    if not frames:
        return pd.DataFrame(columns=[*COLUMNS, "date"])
    return pd.concat(frames, ignore_index=True)
