"""The labeling flow: one Beam job from raw inputs to labeled Parquet, as a Prefect task."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.artifacts import artifact_key, report_markdown, run_report
from flows.report import aggregate_partition
from transforms.ingest.tabular import ColumnMap
from transforms.pipeline import DEFAULT_MODEL_DIR, PipelineConfig, run_pipeline
from transforms.sinks import clear_date_marker, recover_staging


@task(name="publish-run-artifact", cache_policy=NO_CACHE)
def publish_run_artifact(output: str, manifest: dict[str, Any], key_prefix: str = "undertone-run") -> dict[str, Any]:
    """Publish the run report (counts, labels, dead-letter reasons, throughput, model, paths) as an artifact."""
    report = run_report(output, manifest)
    create_markdown_artifact(report_markdown(report), key=artifact_key(key_prefix, manifest["logical_date"]),
                             description=f"run {manifest['run_id']} for {manifest['logical_date']}")
    return report


@task(name="withdraw-date-marker", cache_policy=NO_CACHE)
def withdraw_date_marker(output: str, logical_date: str) -> None:
    """Mark the date incomplete while its partitions are rewritten: a run that dies midway leaves it to the next
    backfill, and a run of some sources into a completed date leaves no record whose totals no longer hold."""
    clear_date_marker(output, logical_date)


@task(name="recover-dead-runs", cache_policy=NO_CACHE)
def recover_dead_runs(output: str) -> list[str]:
    """Finish or discard the staging folders of dead runs, as the job does first (:func:`recover_staging`);
    returns the dates a dead run's commit was rolled forward into."""
    recovered = recover_staging(output)
    if recovered:
        get_run_logger().warning("finished or discarded the staging folders of dead runs: %s", recovered)
    return sorted({recovery.logical_date for recovery in recovered.values() if recovery.logical_date})


def finish_dead_runs(output: str) -> None:
    """Recover dead runs before this run's job, and recompute the aggregates of each date a dead run's commit
    was rolled forward into: that run died before its own flow recomputed them, and they must not wait on
    this run's job succeeding (its date may be another one)."""
    for recovered_date in recover_dead_runs(output):
        aggregate_partition(output, recovered_date)


@task(name="label-documents", cache_policy=NO_CACHE)
def label_documents(config: PipelineConfig) -> dict[str, Any]:
    """Run the Beam job for one logical date and commit its partitions; returns the manifest."""
    return run_pipeline(config)


@flow(name="undertone-run")
def run_flow(
    inputs: list[str],
    output: str,
    date: str | None = None,
    source: str = "auto",
    runner: str = "local",
    model_dir: str = str(DEFAULT_MODEL_DIR),
    tasks: list[str] | None = None,
    device: str = "auto",
    precision: str = "auto",
    zero_shot: dict[str, dict[str, str]] | None = None,
    beam_args: list[str] | None = None,
    columns: dict[str, str] | None = None,
    hash_addresses: bool = True,
    redact_pii: bool = False,
) -> dict[str, Any]:
    """Label every record under ``inputs`` and write the ``date`` partitions of ``output``.

    Returns the run id, the input files, per-source counts (input = labeled + dead-letter)
    and the manifest path. The date's completion record (``undertone daily``'s) is withdrawn: the partitions
    this run replaces no longer hold what it counted, and the next backfill redoes the date from its input root.

    Example:
        python -c "from flows.run import run_flow; print(run_flow(['samples'], 'out', date='2026-11-20'))"
    """
    options: dict[str, Any] = {
        "inputs": tuple(inputs),
        "output": output,
        "source": source,
        "runner": runner,
        "model_dir": model_dir,
        "tasks": tuple(tasks) if tasks else None,
        "device": device,
        "precision": precision,
        "zero_shot": zero_shot,
        "beam_args": tuple(beam_args or ()),
        "columns": ColumnMap(**(columns or {})),
        "hash_addresses": hash_addresses,
        "redact_pii": redact_pii,
    }
    if date:
        options["logical_date"] = date
    config = PipelineConfig(**options)
    finish_dead_runs(output)
    withdraw_date_marker(output, config.logical_date)
    manifest = label_documents(config)
    aggregate_partition(output, manifest["logical_date"])
    publish_run_artifact(output, manifest)
    return {key: manifest[key] for key in ("run_id", "logical_date", "inputs", "counts", "totals", "reconciled",
                                           "manifest_path")}
