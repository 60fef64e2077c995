"""The labeled folder reads whole with every file's columns when runs labeled different task sets."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from schemas import (
    DEAD_LETTER_PARTITION_KEYS,
    DEAD_LETTER_SCHEMA,
    LABELED_PARTITION_KEYS,
    file_schema,
    labeled_dataset,
    labeled_schema,
)
from tests.conftest import REPO, SENTIMENT

LABELS = {"sentiment": SENTIMENT, "spam": ("ham", "spam"), "topic": ("billing", "delivery"),
          "intent": ("card_arrival", "exchange_rate")}
RUNS = (  # as QA's runs: --tasks sentiment, then the default tasks, then an inbox config that adds intent
    ("email", "2026-11-18", ("sentiment",)),
    ("review", "2026-11-18", ("sentiment",)),
    ("email", "2026-11-19", ("sentiment", "spam", "topic")),
    ("review", "2026-11-19", ("sentiment", "spam", "topic")),
    ("email", "2026-11-20", ("sentiment", "spam", "topic", "intent")),
)
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def write_labeled(output: Path, source: str, date: str, tasks: tuple[str, ...]) -> None:
    """One labeled file of one row, with the columns of ``tasks`` only, each task's first label."""
    schema = file_schema(labeled_schema({task: LABELS[task] for task in tasks}), LABELED_PARTITION_KEYS)
    row = {"doc_id": f"{source}-{date}", "source_id": date, "input_ref": f"{source}.jsonl:1", "created_at": NOW,
           "text": "hello", "model_version": "m@1", "run_id": f"run-{date}", "processed_at": NOW, "team": "cards"}
    row |= {task: LABELS[task][0] for task in tasks} | {f"{task}_score": 0.9 for task in tasks}
    folder = output / "labeled" / f"source={source}" / f"date={date}"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row], schema=schema), folder / f"part-run-{date}-00000-of-00001.parquet")


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """An output whose dates were labeled with three task sets, and one dead letter."""
    for source, date, tasks in RUNS:
        write_labeled(tmp_path, source, date, tasks)
    dead = {"source": "review", "input_ref": "reviews.jsonl:2", "stage": "parse", "error": "not JSON",
            "error_type": "invalid_json", "run_id": "run-2026-11-19", "failed_at": NOW}
    folder = tmp_path / "dead_letter" / "date=2026-11-19"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([dead], schema=file_schema(DEAD_LETTER_SCHEMA, DEAD_LETTER_PARTITION_KEYS)),
                   folder / "review-run-2026-11-19-00000-of-00001.parquet")
    return tmp_path


def test_every_column_of_every_file_null_where_a_file_lacks_it(mixed: Path) -> None:
    table = labeled_dataset(mixed).to_table()
    assert set(table.column_names) == {*labeled_schema(LABELS).names, "date"}
    assert table.schema.field("spam_score").type == pa.float32() and table.schema.field("date").type == pa.string()
    rows = {row["doc_id"]: row for row in table.to_pylist()}
    assert len(rows) == len(RUNS)
    for source, date, tasks in RUNS:
        row = rows[f"{source}-{date}"]
        assert (row["source"], row["date"]) == (source, date)
        for task in LABELS:
            assert row[task] == (LABELS[task][0] if task in tasks else None), (source, date, task)
        assert row["team"] == ("cards" if "intent" in tasks else None)


def test_columns_filters_and_duckdb_reach_the_files_without_them(mixed: Path) -> None:
    dataset = labeled_dataset(mixed)
    early = dataset.to_table(columns=["source", "intent"], filter=ds.field("date") < "2026-11-20")
    assert early.num_rows == 4 and early["intent"].null_count == 4
    routed = dataset.to_table(columns=["date", "team"], filter=ds.field("intent") == "card_arrival").to_pylist()
    assert routed == [{"date": "2026-11-20", "team": "cards"}]
    assert duckdb.sql("SELECT count(*), count(spam), count(intent) FROM dataset").fetchall() == [(5, 3, 1)]


def test_a_column_whose_type_differs_between_files_raises(mixed: Path) -> None:
    path = mixed / "labeled" / "source=social" / "date=2026-11-20" / "part.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"doc_id": ["s"], "sentiment_score": pa.array([0.5], pa.float64())}), path)
    with pytest.raises(pa.ArrowTypeError):
        labeled_dataset(mixed)


def test_the_readme_reading_examples_run_on_mixed_task_sets(mixed: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Reading the output", 1)[1].split("\n## ", 1)[0]
    (python_block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    (sql,) = re.findall(r"```sql\n(.*?)```", section, re.S)
    root = mixed.as_posix()
    namespace: dict = {}
    exec(python_block.replace('"out', f'"{root}'), namespace)
    frame = namespace["frame"]
    assert len(frame) == len(RUNS) and {"spam", "topic", "intent", "team"} <= set(frame.columns)
    assert frame.groupby(["source", "sentiment"]).size().to_dict() == {("email", "negative"): 3,
                                                                        ("review", "negative"): 2}
    assert namespace["emails"].to_dict("list") == {"date": ["2026-11-19", "2026-11-20"],
                                                   "sentiment": ["negative", "negative"],
                                                   "intent": [None, "card_arrival"], "team": [None, "cards"]}
    assert namespace["dead"]["error_type"].tolist() == ["invalid_json"]

    rows = duckdb.sql(sql.replace("'out/", f"'{root}/")).fetchall()
    assert sum(row[-1] for row in rows) == len(RUNS)
    assert [row[3] for row in rows if row[3] is not None] == ["card_arrival"]
