"""The daily aggregates reconcile with the committed partitions, and the README's queries run on them."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import (
    AGGREGATES_PARTITION_KEYS,
    AGGREGATES_SCHEMA,
    LABELED_PARTITION_KEYS,
    describe,
    file_schema,
    labeled_schema,
)
from tests.conftest import REPO, SENTIMENT
from tests.sample_output import SAMPLE_DATE, sample_output
from transforms.aggregates import (
    aggregate_date,
    aggregates_partition,
    compute_aggregates,
    read_aggregates,
    read_dead_letter,
    read_labeled,
)

EARLIER_DATE = "2026-11-13"


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path) -> Path:
    root, _ = sample_output(tmp_path_factory, tiny_encoder)
    copy = tmp_path_factory.mktemp("aggregates") / "out"
    shutil.copytree(root, copy)
    aggregate_date(copy, SAMPLE_DATE)
    return copy


@pytest.fixture(scope="module")
def mixed_output(output: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``output`` plus an earlier date labeled with sentiment only (``--tasks sentiment``): its files, the
    first of each source, lack the spam, topic, intent and team columns of ``SAMPLE_DATE``'s."""
    copy = tmp_path_factory.mktemp("mixed") / "out"
    shutil.copytree(output, copy)
    schema = file_schema(labeled_schema({"sentiment": SENTIMENT}), LABELED_PARTITION_KEYS)
    for path in copy.glob(f"labeled/source=*/date={SAMPLE_DATE}/*.parquet"):
        folder = path.parent.with_name(f"date={EARLIER_DATE}")
        folder.mkdir()
        pq.write_table(pq.read_table(path, columns=schema.names).cast(schema), folder / path.name)
    aggregate_date(copy, EARLIER_DATE)
    return copy


def assert_reconciles(output: Path, date: str) -> pd.DataFrame:
    """Every metric of the stored table equals what the labeled and dead-letter partitions hold."""
    aggregates = read_aggregates(output, date, date)
    labeled = read_labeled(output, date)
    labeled["event_date"] = labeled["created_at"].dt.date
    labels = aggregates[aggregates["metric"] == "label"]
    for task in ("sentiment", "spam", "topic", "intent", "team"):
        rows = labels[labels["task"] == task]
        expected = labeled.dropna(subset=[task]).groupby(["source", task]).size()
        assert rows.groupby(["source", "label"])["count"].sum().to_dict() == expected.to_dict(), task
        by_day = labeled.dropna(subset=[task]).groupby(["source", "event_date"]).size()
        assert rows.groupby(["source", "event_date"])["count"].sum().to_dict() == by_day.to_dict(), task
        shares = rows.groupby(["source", "event_date"], dropna=False)["share"].sum()
        assert shares.round(9).eq(1).all(), task
    sentiment = labels[labels["task"] == "sentiment"].set_index(["source", "event_date", "label"])["mean_score"]
    means = labeled.groupby(["source", "event_date", "sentiment"])["sentiment_score"].mean()
    assert sentiment.sort_index().to_numpy() == pytest.approx(means.sort_index().to_numpy(), rel=1e-6)
    per_source = labeled.groupby("source").size().to_dict()
    for metric in ("language", "model_version"):
        rows = aggregates[aggregates["metric"] == metric]
        assert rows.groupby("source")["count"].sum().to_dict() == per_source, metric
        assert rows.groupby("source")["share"].sum().round(9).eq(1).all(), metric
    negative = labeled[labeled["sentiment"] == "negative"]
    for metric, task in (("negative_topic", "topic"), ("negative_intent", "intent")):
        rows = aggregates[aggregates["metric"] == metric]
        assert rows.groupby(["source", "label"])["count"].sum().to_dict() == negative.groupby(
            ["source", task]).size().to_dict(), metric
    dead = read_dead_letter(output, date)
    expected_dead = (dead["stage"] + "/" + dead["error_type"]).groupby(dead["source"].fillna("unknown")).value_counts()
    rows = aggregates[aggregates["metric"] == "dead_letter"]
    assert rows.groupby(["source", "label"])["count"].sum().to_dict() == expected_dead.to_dict()
    return aggregates


def test_aggregates_reconcile_with_the_labeled_and_dead_letter_partitions(output: Path) -> None:
    aggregates = assert_reconciles(output, SAMPLE_DATE)
    assert set(aggregates["metric"]) == {"label", "dead_letter", "language", "model_version", "negative_topic",
                                         "negative_intent"}
    labels = aggregates[aggregates["metric"] == "label"]
    assert labels.loc[labels["task"] == "sentiment", "count"].sum() == 83
    assert set(labels.loc[labels["task"] == "spam", "source"]) == {"email"}
    assert labels["event_date"].notna().all()
    assert labels.loc[labels["task"] != "team", "mean_score"].between(0, 1).all()
    assert aggregates.loc[aggregates["metric"] == "dead_letter", "count"].sum() == 3
    top = aggregates[(aggregates["metric"] == "negative_topic") & (aggregates["rank"] == 1)]
    assert len(top) == top["source"].nunique()
    written = pq.read_schema(aggregates_partition(output, SAMPLE_DATE) / "aggregates.parquet")
    assert written.names == [field.name for field in AGGREGATES_SCHEMA]
    contract = file_schema(AGGREGATES_SCHEMA, AGGREGATES_PARTITION_KEYS)
    assert written.metadata == contract.metadata  # the contract's version, not pandas' index description


def test_a_run_that_replaced_one_source_is_reflected_and_the_table_is_swapped_whole(output: Path,
                                                                                   tmp_path: Path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(output, copy)
    social = copy / "labeled" / "source=social" / f"date={SAMPLE_DATE}"
    rows = pa.concat_tables([pq.read_table(path) for path in sorted(social.glob("*.parquet"))]).slice(0, 10)
    shutil.rmtree(social)
    social.mkdir()
    pq.write_table(rows, social / "part-20991231T000000Z-feedbeef-00000-of-00001.parquet")
    for path in (copy / "dead_letter" / f"date={SAMPLE_DATE}").glob("social-*.parquet"):
        path.unlink()
    before = read_aggregates(copy, SAMPLE_DATE, SAMPLE_DATE)
    aggregate_date(copy, SAMPLE_DATE)
    after = assert_reconciles(copy, SAMPLE_DATE)
    models = after[after["metric"] == "model_version"].groupby("source")["count"].sum().to_dict()
    assert models == {"email": 11, "review": 36, "social": 10}
    assert set(after.loc[after["metric"] == "dead_letter", "source"]) == {"email"}
    unchanged = ["metric", "source", "task", "label", "count"]
    email = before[before["source"] == "email"][unchanged].reset_index(drop=True)
    assert after[after["source"] == "email"][unchanged].reset_index(drop=True).equals(email)
    assert sorted(path.name for path in aggregates_partition(copy, SAMPLE_DATE).iterdir()) == ["aggregates.parquet"]


def test_pure_aggregation_of_nulls_and_inapplicable_tasks() -> None:
    labeled = pd.DataFrame({
        "source": ["email", "email", "review", "review"],
        "created_at": pd.to_datetime(["2026-11-19T23:30:00Z", "2026-11-20T00:10:00Z", None, None], utc=True),
        "language": ["en", None, "de", "de"],
        "sentiment": ["negative", "negative", "positive", "negative"],
        "sentiment_score": [0.9, 0.7, 0.6, 0.8],
        "spam": ["ham", "spam", None, None],
        "spam_score": [0.8, 0.9, None, None],
        "model_version": ["m@1"] * 4,
    })
    dead = pd.DataFrame({"source": [None, "review"], "stage": ["read", "parse"],
                         "error_type": ["unknown_format", "invalid_json"]})
    table = compute_aggregates(labeled, dead, computed_at=datetime(2026, 11, 21, tzinfo=UTC)).to_pandas()
    rows = {(r.metric, r.source, str(r.event_date), r.task, r.label): (r.count, round(r.share, 4),
                                                                       None if pd.isna(r.mean_score)
                                                                       else round(r.mean_score, 4), r.rank)
            for r in table.itertuples()}
    assert rows == {
        ("label", "email", "2026-11-19", "sentiment", "negative"): (1, 1.0, 0.9, 1),
        ("label", "email", "2026-11-20", "sentiment", "negative"): (1, 1.0, 0.7, 1),
        ("label", "email", "2026-11-19", "spam", "ham"): (1, 1.0, 0.8, 1),
        ("label", "email", "2026-11-20", "spam", "spam"): (1, 1.0, 0.9, 1),
        ("label", "review", "None", "sentiment", "negative"): (1, 0.5, 0.8, 1),
        ("label", "review", "None", "sentiment", "positive"): (1, 0.5, 0.6, 2),
        ("dead_letter", "review", "None", None, "parse/invalid_json"): (1, 1.0, None, 1),
        ("dead_letter", "unknown", "None", None, "read/unknown_format"): (1, 1.0, None, 1),
        ("language", "email", "None", None, "en"): (1, 0.5, None, 1),
        ("language", "email", "None", None, "unknown"): (1, 0.5, None, 2),
        ("language", "review", "None", None, "de"): (2, 1.0, None, 1),
        ("model_version", "email", "None", None, "m@1"): (2, 1.0, None, 1),
        ("model_version", "review", "None", None, "m@1"): (2, 1.0, None, 1),
    }


def readme_section() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    return readme.split("## Dashboards and queries", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize(("fixture", "dates"), [("output", (SAMPLE_DATE,)),
                                               ("mixed_output", (EARLIER_DATE, SAMPLE_DATE))])
def test_the_readme_queries_run_and_agree(fixture: str, dates: tuple[str, ...], request: pytest.FixtureRequest) -> None:
    output: Path = request.getfixturevalue(fixture)
    section = readme_section()
    weekly_sql, intents_sql = re.findall(r"```sql\n(.*?)```", section, re.S)
    (python_block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    root = output.as_posix()
    weekly = duckdb.sql(weekly_sql.replace("'out/", f"'{root}/")).df()
    intents = duckdb.sql(intents_sql.replace("'out/", f"'{root}/")).df()
    namespace: dict = {}
    exec(python_block.replace('"out', f'"{root}'), namespace)

    labeled = pd.concat([read_labeled(output, date) for date in dates], ignore_index=True)
    labeled["week"] = labeled["created_at"].dt.tz_localize(None).dt.to_period("W-SUN").dt.start_time
    expected = labeled.groupby(["source", "week"])["sentiment"].agg(lambda s: (s == "negative").mean())
    got = weekly.assign(week=pd.to_datetime(weekly["week"])).set_index(["source", "week"])["negative_share"]
    assert got.sort_index().to_numpy() == pytest.approx(expected.sort_index().to_numpy())
    assert weekly["documents"].sum() == 83 * len(dates)
    read = namespace["labeled"]
    assert len(read) == len(labeled) and read["intent"].count() == labeled["intent"].count() > 0
    assert namespace["weekly"]["negative_share"].sort_index().to_numpy() == pytest.approx(
        expected.sort_index().to_numpy())

    negative_emails = labeled[(labeled["source"] == "email") & (labeled["sentiment"] == "negative")]
    assert dict(zip(intents["intent"], intents["documents"], strict=True)) == negative_emails[
        "intent"].value_counts().to_dict()
    assert namespace["top_intents"].to_dict() == negative_emails["intent"].value_counts().to_dict()


def test_schema_readme_lists_the_aggregates_fields() -> None:
    readme = (REPO / "schemas" / "README.md").read_text(encoding="utf-8")
    assert describe(AGGREGATES_SCHEMA) in readme, "run `python -m schemas` and paste its output into schemas/README.md"
