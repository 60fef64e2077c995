"""The whole Beam job on the real samples with a tiny model: layout, reconciliation, idempotency."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import apache_beam as beam
import pandas as pd
import pyarrow.dataset as ds
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from models import preload
from models.bundle import BundleSpec
from models.classifier import Classifier
from tests.conftest import SAMPLES, SENTIMENT, build_tiny_bundle
from transforms import pipeline
from transforms.ingest import parallel
from transforms.pipeline import (
    PipelineConfig,
    beam_flags,
    default_threads,
    local_workers,
    run_pipeline,
    runner_options,
    warm_up_workers,
)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("out")
    config = PipelineConfig(inputs=(str(SAMPLES),), output=str(output), logical_date="2026-11-20",
                            model_dir=str(tiny_bundle), ingest_processes=2)
    return output, run_pipeline(config)


def test_layout_and_manifest_reconcile(first_run: tuple[Path, dict]) -> None:
    output, manifest = first_run
    for source in ("email", "review", "social"):
        assert list((output / "labeled" / f"source={source}" / "date=2026-11-20").glob("*.parquet"))
    assert list((output / "dead_letter" / "date=2026-11-20").glob("*.parquet"))
    assert not (output / "_staging" / manifest["run_id"]).exists()
    saved = json.loads((output / "_runs" / f"{manifest['run_id']}.json").read_text())
    assert saved["counts"] == {
        "email": {"input": 12, "labeled": 11, "dead_letter": 1},
        "review": {"input": 36, "labeled": 36, "dead_letter": 0},
        "social": {"input": 38, "labeled": 36, "dead_letter": 2},
    }
    assert saved["reconciled"] is True and saved["totals"]["input"] == 86
    assert saved["reused_ids"] == {}  # every sample record has an id of its own
    assert len(parallel._READ_AHEAD) == 0  # the files read ahead were taken or dropped


def test_output_reads_back_with_pyarrow_and_pandas(first_run: tuple[Path, dict]) -> None:
    output, manifest = first_run
    table = ds.dataset(output / "labeled", partitioning="hive").to_table()
    assert table.num_rows == 83
    for column in ("doc_id", "source", "source_id", "created_at", "text", "sentiment", "sentiment_score",
                   "model_version", "run_id", "date"):
        assert column in table.column_names
    frame = pd.read_parquet(output / "labeled")
    assert set(frame["source"].astype(str)) == {"email", "review", "social"}
    assert frame["doc_id"].is_unique
    assert set(frame["sentiment"]) <= {"negative", "neutral", "positive"}
    assert (frame["model_version"] == "tiny-test@0.0.1").all() and (frame["run_id"] == manifest["run_id"]).all()
    assert str(frame["created_at"].dtype) == "datetime64[us, UTC]"
    social = frame[frame["source"] == "social"]
    assert set(social["source_id"]) >= {"619950566786113536"}


def test_dead_letter_rows_say_where_and_why(first_run: tuple[Path, dict]) -> None:
    output, _ = first_run
    dead = pd.read_parquet(output / "dead_letter").sort_values("input_ref")
    reasons = {(Path(r.input_ref).name, r.stage, r.error_type) for r in dead.itertuples()}
    assert reasons == {("forwarded-by-mistake.eml", "parse", "binary"), ("posts.jsonl:12", "parse", "invalid_json"),
                       ("posts.jsonl:23", "clean", "empty_text")}
    assert dead["raw_excerpt"].str.len().gt(0).all()


def test_dead_letters_are_stamped_when_they_fail_not_when_the_job_was_built(
        tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``failed_at`` ("when the record failed") was the moment the pipeline was built, before any record was read."""
    posts = tmp_path / "in" / "posts.jsonl"
    posts.parent.mkdir()
    posts.write_text('{"text": "fine"}\n{"text": "cut off\n{"text": "   "}\n', encoding="utf-8")
    run = beam.Pipeline.run
    job_started: list[datetime] = []

    def run_a_second_later(self: beam.Pipeline, *args: object, **kwargs: object) -> object:
        time.sleep(1.0)
        job_started.append(datetime.now(UTC))
        return run(self, *args, **kwargs)

    monkeypatch.setattr(beam.Pipeline, "run", run_a_second_later)
    output = tmp_path / "out"
    manifest = run_pipeline(PipelineConfig(inputs=(str(posts.parent),), output=str(output),
                                           logical_date="2026-11-20", model_dir=str(tiny_bundle)))
    dead = pd.read_parquet(output / "dead_letter")
    assert sorted(dead["error_type"]) == ["empty_text", "invalid_json"]
    assert (dead["failed_at"] >= pd.Timestamp(job_started[0])).all()
    assert (dead["failed_at"] <= pd.Timestamp(manifest["finished_at"])).all()


def test_rerun_replaces_the_partition_and_ids_are_stable(first_run: tuple[Path, dict], tiny_bundle: Path,
                                                         tmp_path: Path) -> None:
    output, manifest = first_run
    copy = tmp_path / "out"
    shutil.copytree(output, copy)
    before = pd.read_parquet(copy / "labeled")
    dead_before = pd.read_parquet(copy / "dead_letter")
    # the first run read and cleaned in two worker processes, this one in the job's thread: same rows
    second = run_pipeline(PipelineConfig(inputs=(str(SAMPLES),), output=str(copy), logical_date="2026-11-20",
                                         model_dir=str(tiny_bundle), ingest_processes=1))
    after = pd.read_parquet(copy / "labeled")
    assert len(after) == len(before) == 83
    assert set(after["run_id"]) == {second["run_id"]} != {manifest["run_id"]}
    assert sorted(after["doc_id"]) == sorted(before["doc_id"])
    assert rows_without(after, "run_id", "processed_at") == rows_without(before, "run_id", "processed_at")
    dead_after = pd.read_parquet(copy / "dead_letter")
    assert len(dead_after) == 3
    assert rows_without(dead_after, "run_id", "failed_at") == rows_without(dead_before, "run_id", "failed_at")
    assert len(list((copy / "_runs").glob("*.json"))) == 2


def rows_without(frame: pd.DataFrame, *columns: str) -> list[str]:
    """A table's rows minus ``columns``, as sorted JSON lines: comparable across runs whatever the row order."""
    return sorted(frame.drop(columns=list(columns)).astype(str).to_json(orient="records", lines=True).splitlines())


def test_a_run_replaces_only_the_sources_it_read(first_run: tuple[Path, dict], tiny_bundle: Path,
                                                 tmp_path: Path) -> None:
    output, _ = first_run
    copy = tmp_path / "out"
    shutil.copytree(output, copy)
    social_only = run_pipeline(PipelineConfig(inputs=(str(SAMPLES / "social"),), output=str(copy),
                                              logical_date="2026-11-20", model_dir=str(tiny_bundle)))
    frame = pd.read_parquet(copy / "labeled")
    runs = frame.groupby(frame["source"].astype(str))["run_id"].unique().map(list).to_dict()
    assert runs["social"] == [social_only["run_id"]]
    assert runs["email"] != [social_only["run_id"]] and runs["review"] != [social_only["run_id"]]
    assert len(frame) == 83
    dead = pd.read_parquet(copy / "dead_letter")
    assert sorted(dead["source"]) == ["email", "social", "social"]
    assert set(dead.loc[dead["source"] == "social", "run_id"]) == {social_only["run_id"]}


def test_a_job_that_fails_leaves_no_staging_and_drops_its_read_ahead(tiny_bundle: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("the pipeline could not be built")

    monkeypatch.setattr(pipeline, "build", broken)
    handed: list[list[str]] = []
    read_ahead = pipeline.read_ahead
    monkeypatch.setattr(pipeline, "read_ahead", lambda *args: handed.append(read_ahead(*args)) or handed[-1])
    with pytest.raises(RuntimeError, match="could not be built"):
        run_pipeline(PipelineConfig(inputs=(str(SAMPLES),), output=str(tmp_path), logical_date="2026-11-20",
                                    model_dir=str(tiny_bundle), ingest_processes=2))
    assert len(handed[0]) > 10  # the samples' files went to the workers before the job failed
    assert len(parallel._READ_AHEAD) == 0
    assert not list((tmp_path / "_staging").glob("*"))


def test_an_interrupt_inside_the_job_stays_an_interrupt(tiny_bundle: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Beam reports what a transform raised as a RuntimeError naming the step. Ctrl-C, or Prefect's exception
    for SIGTERM, landing in the model stage came out as that RuntimeError: the flow failed as if a bug had
    stopped it and the command exited 1, not as a stopped command."""
    def interrupted(self: Classifier, batch: dict) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Classifier, "logits_for", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(PipelineConfig(inputs=(str(SAMPLES),), output=str(tmp_path), logical_date="2026-11-20",
                                    model_dir=str(tiny_bundle)))
    assert not list((tmp_path / "_staging").glob("*"))
    assert not (tmp_path / "labeled").exists()


def test_a_runner_without_metrics_replaces_only_the_sources_it_wrote(first_run: tuple[Path, dict], tiny_bundle: Path,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Without input counters a run owned every source of its date: a social-only run on such a runner deleted
    that date's emails and reviews. It now owns what it staged; reconciliation stays unknown."""
    output, _ = first_run
    copy = tmp_path / "out"
    shutil.copytree(output, copy)
    monkeypatch.setattr(pipeline, "_counters", lambda *args, **kwargs: None)
    social_only = run_pipeline(PipelineConfig(inputs=(str(SAMPLES / "social"),), output=str(copy),
                                              logical_date="2026-11-20", model_dir=str(tiny_bundle)))
    assert social_only["reconciled"] is None
    frame = pd.read_parquet(copy / "labeled")
    runs = frame.groupby(frame["source"].astype(str))["run_id"].unique().map(list).to_dict()
    assert runs["social"] == [social_only["run_id"]]
    assert runs["email"] != [social_only["run_id"]] and runs["review"] != [social_only["run_id"]]
    assert len(frame) == 83
    assert sorted(pd.read_parquet(copy / "dead_letter")["source"]) == ["email", "social", "social"]


def test_forced_source_and_task_validation(tmp_path: Path, tiny_bundle: Path) -> None:
    manifest = run_pipeline(PipelineConfig(inputs=(str(SAMPLES / "reviews"),), output=str(tmp_path),
                                           logical_date="2026-11-21", source="social", model_dir=str(tiny_bundle)))
    assert manifest["counts"] == {"social": {"input": 36, "labeled": 36, "dead_letter": 0}}
    with pytest.raises(ValueError, match="no task"):
        run_pipeline(PipelineConfig(inputs=(str(SAMPLES / "reviews"),), output=str(tmp_path),
                                    model_dir=str(tiny_bundle), tasks=("spam",)))


def test_a_bundle_with_a_task_named_like_a_column_fails_before_writing(tmp_path: Path, tiny_encoder: Path) -> None:
    """A few-shot ``language`` task from before fewshot refused the name wrote a partition with two ``language``
    columns and a complete manifest, and nothing could read the output afterwards."""
    bundle = build_tiny_bundle(tmp_path / "old-bundle", tiny_encoder,
                               {"sentiment": SENTIMENT, "language": ("de", "en", "fr")})
    output = tmp_path / "out"
    with pytest.raises(ValueError, match=r"tiny-test@0\.0\.1: task 'language' would write a column 'language'"):
        run_pipeline(PipelineConfig(inputs=(str(SAMPLES / "reviews"),), output=str(output),
                                    logical_date="2026-11-20", model_dir=str(bundle), tasks=("sentiment", "language")))
    assert not (output / "labeled").exists() and not (output / "_runs").exists()


@pytest.mark.parametrize("logical_date", ["0001-01-01", "1969-12-31", "9999-12-31", "in two days"])
def test_a_far_off_logical_date_is_refused(tmp_path: Path, logical_date: str) -> None:
    """A mistyped year wrote a ``date=9999-12-31`` partition, which dashboards then showed."""
    if logical_date == "in two days":
        logical_date = (datetime.now(UTC).date() + timedelta(days=2)).isoformat()
    with pytest.raises(ValueError, match=f"logical date {logical_date} is (before 1970-01-01|after tomorrow)"):
        PipelineConfig(inputs=("inbox/",), output=str(tmp_path), logical_date=logical_date)
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()  # today east of UTC
    for accepted in ("1970-01-01", tomorrow):
        assert PipelineConfig(inputs=("inbox/",), output=str(tmp_path), logical_date=accepted).logical_date == accepted


def test_the_manifest_counts_ids_that_different_records_share(tmp_path: Path, tiny_bundle: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    posts = tmp_path / "in" / "posts.jsonl"
    posts.parent.mkdir()
    posts.write_text('{"id": "p1", "text": "loving the new update"}\n{"id": "p1", "text": "the update broke login"}\n'
                     '{"id": "p2", "text": "meh"}\n', encoding="utf-8")
    manifest = run_pipeline(PipelineConfig(inputs=(str(posts.parent),), output=str(tmp_path / "out"),
                                           logical_date="2026-11-21", model_dir=str(tiny_bundle)))
    assert manifest["counts"]["social"] == {"input": 3, "labeled": 3, "dead_letter": 0}
    assert manifest["reused_ids"] == {"social": 1}
    assert "doc_ids shared by records of different texts" in caplog.text


def test_runner_option_sets() -> None:
    assert runner_options("local") == ["--runner=FnApiRunner"]
    assert "--runner=PortableRunner" in runner_options("portable")
    with pytest.raises(ValueError, match="option sets"):
        runner_options("nonexistent")


def test_an_extra_beam_flag_replaces_the_option_sets_value_and_adds_to_a_list() -> None:
    """``--runner portable --beam-arg=--job_endpoint=...`` (the README's example) recorded two job_endpoints."""
    assert beam_flags("portable", ["--job_endpoint=localhost:8099"]) == runner_options("portable")
    assert beam_flags("portable", ["--job_endpoint=jobs:9000", "--job_endpoint=jobs:9001"]) == [
        "--runner=PortableRunner", "--job_endpoint=jobs:9001", "--environment_type=LOOPBACK"]
    dataflow = beam_flags("dataflow", ["--experiments=use_runner_v2", "--experiments=enable_hot_key_logging"])
    assert [flag for flag in dataflow if flag.startswith("--experiments=")] == [
        "--experiments=use_runner_v2", "--experiments=no_use_multiple_sdk_containers",
        "--experiments=enable_hot_key_logging"]  # Beam collects every experiment
    assert beam_flags("local", ["--undertone_unknown=1", "--undertone_unknown=2"]) == [
        "--runner=FnApiRunner", "--undertone_unknown=2"]


def test_the_manifest_records_each_beam_option_once(tmp_path: Path, tiny_bundle: Path) -> None:
    posts = tmp_path / "in" / "posts.jsonl"
    posts.parent.mkdir()
    posts.write_text('{"id": "p1", "text": "loving the new update"}\n', encoding="utf-8")
    manifest = run_pipeline(PipelineConfig(inputs=(str(posts.parent),), output=str(tmp_path / "out"),
                                           logical_date="2026-11-21", model_dir=str(tiny_bundle),
                                           beam_args=("--runner=FnApiRunner",)))
    assert manifest["beam_options"] == ["--runner=FnApiRunner"]


@pytest.mark.parametrize(("option_set", "extra", "cores", "threads"), [
    ("local", [], 2, None),                                     # one in-process worker takes every core
    ("multiprocess", [], 2, 1),                                 # two worker processes on 2 cores: 1 thread each
    ("multiprocess", [], 16, 8),
    ("multiprocess", ["--direct_num_workers=4"], 2, 1),         # never fewer than 1
    ("local", ["--direct_running_mode=multi_threading", "--direct_num_workers=2"], 8, 4),
    ("portable", [], 2, None),                                  # remote workers have cores of their own
])
def test_default_threads_split_the_cores_among_local_workers(option_set: str, extra: list[str], cores: int,
                                                             threads: int | None) -> None:
    options = PipelineOptions(runner_options(option_set) + extra)
    assert default_threads(options, cores) == threads


def test_local_workers_reads_zero_as_one_per_core() -> None:
    options = PipelineOptions([*runner_options("multiprocess"), "--direct_num_workers=0"])
    assert local_workers(options) == os.cpu_count()


def test_a_run_reads_its_bundle_spec_once(tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tasks labeled and the model version stamped on the rows come from one read of bundle.json; the model
    handler read it a second time, and a bundle rewritten in between would label one version's tasks as another."""
    reads: list[Path] = []
    read = pipeline.read_bundle_spec

    def counted(folder: Path) -> BundleSpec:
        reads.append(folder)
        return read(folder)

    monkeypatch.setattr(pipeline, "read_bundle_spec", counted)
    (tmp_path / "reviews.csv").write_text("review_id,review_text\n1,Great phone\n2,Awful battery\n", encoding="utf-8")
    manifest = run_pipeline(PipelineConfig(inputs=(str(tmp_path / "reviews.csv"),), output=str(tmp_path / "out"),
                                           logical_date="2026-11-20", model_dir=str(tiny_bundle)))
    assert manifest["totals"]["labeled"] == 2
    assert reads == [tiny_bundle]
    assert set(pd.read_parquet(tmp_path / "out" / "labeled")["model_version"]) == {read(tiny_bundle).model_version}


def test_warm_up_preloads_the_runs_model_for_in_process_workers(tiny_bundle: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The launcher's warm-up loads the model the run's worker will ask for, and the worker takes it over
    instead of loading its own, waiting for it when it asks first; a preload for other settings is dropped."""
    loads: list[dict] = []
    load = Classifier.load.__func__

    def counted(cls: type[Classifier], folder: str, **options: object) -> Classifier:
        loads.append(options)
        if threading.current_thread().name == "undertone-warm-up":
            time.sleep(2)  # still loading when the worker asks
        return load(cls, folder, **options)

    monkeypatch.setattr(Classifier, "load", classmethod(counted))
    (tmp_path / "reviews.csv").write_text("review_id,review_text\n1,Great phone\n2,Awful battery\n", encoding="utf-8")

    def run(name: str) -> dict:
        return run_pipeline(PipelineConfig(inputs=(str(tmp_path / "reviews.csv"),), output=str(tmp_path / name),
                                           logical_date="2026-11-20", model_dir=str(tiny_bundle)))

    warm_up = warm_up_workers("local", str(tiny_bundle))
    assert run("taken")["totals"]["labeled"] == 2  # started at once: the worker asks while the warm-up loads
    warm_up.join()
    assert len(loads) == 1  # the worker's model is the preloaded one
    warm_up_workers("local", str(tiny_bundle), precision="fp32").join()
    assert run("dropped")["totals"]["labeled"] == 2
    assert [options["precision"] for options in loads] == ["auto", "fp32", "auto"]
    assert not preload._models  # nothing left held
    assert warm_up_workers("multiprocess", str(tiny_bundle)) is None  # its workers are other processes
    assert warm_up_workers("portable", str(tiny_bundle)) is None
    assert warm_up_workers("nonexistent", str(tiny_bundle)) is None  # left for the job to report
