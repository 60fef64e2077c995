"""The daily flow: label one logical date of an input root laid out by date, and mark the date complete.

Inputs live under ``INPUT_ROOT/<source>/<YYYY-MM-DD>/`` or ``INPUT_ROOT/<source>/.../date=<YYYY-MM-DD>/``.
The date's completion record (``OUTPUT/_dates/<date>.json``) is withdrawn before the job and written
only after its partitions are swapped in and its counts reconcile, so backfills can trust it.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.report import aggregate_partition, daily_report_path, publish_report_artifact, render_report, report_start
from flows.run import finish_dead_runs, label_documents, publish_run_artifact, withdraw_date_marker
from transforms.ingest.read import expand_inputs, is_output, one_path_per_file
from transforms.pipeline import DEFAULT_MODEL_DIR, PipelineConfig, check_logical_date, runner_options
from transforms.sinks import is_url, mark_date_complete

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DateInputs:
    """A date's input folders (under an object store, glob patterns) and their files, listed once: the job reads
    these files rather than listing the folders again."""

    folders: tuple[str, ...]
    files: tuple[str, ...]

    @classmethod
    def listed(cls, files_by_folder: dict[str, list[str]]) -> DateInputs:
        """The folders holding a file, and their files as :func:`expand_inputs` would list them together."""
        folders = tuple(folder for folder, files in files_by_folder.items() if files)
        files = {file for folder in folders for file in files_by_folder[folder]}
        return cls(folders, tuple(one_path_per_file(sorted(files))))


@dataclass(frozen=True)
class RunOptions:
    """How to run the labeling job; the same for every date of a schedule or backfill."""

    runner: str = "local"
    """Runner option set in ``deploy/runners/`` (local, multiprocess, portable, dataflow, flink)."""
    model_dir: str = str(DEFAULT_MODEL_DIR)
    """Model bundle folder."""
    tasks: tuple[str, ...] | None = None
    """Tasks to label; None labels every task of the bundle."""
    device: str = "auto"
    """Torch device of the workers: auto (cuda where a worker sees a GPU, as ``undertone run``), cpu or cuda."""
    precision: str = "auto"
    """Encoder precision: auto, fp32, bf16 or int8 (see ``PipelineConfig.precision``); pin fp32 where workers
    of different CPU types must give identical labels from day to day."""
    beam_args: tuple[str, ...] = ()
    """Extra Beam pipeline options appended to the option set (e.g. ``--job_endpoint=...``)."""

    def __post_init__(self) -> None:
        """A typo'd runner fails the flow at once: the job found it only after the date's completion record was
        withdrawn, and a backfill retried every day for it."""
        runner_options(self.runner)

    def pipeline_config(self, inputs: DateInputs, output: str, logical_date: str) -> PipelineConfig:
        """The run of a whole date: ``inputs`` are all of its folders, so the run replaces every source of it."""
        return PipelineConfig(inputs=inputs.folders, files=inputs.files, output=output, logical_date=logical_date,
                              whole_date=True, **asdict(self))


class NoInputs(FileNotFoundError):
    """The input root holds no folder for the date: a schedule pointing at the wrong place fails loudly."""


def resolve_date(value: str | None) -> str:
    """A YYYY-MM-DD date, validated (:func:`check_logical_date`) before the date's record is withdrawn; None means
    yesterday in UTC, the last complete day."""
    if value:
        return check_logical_date(value)
    return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()


@task(name="find-date-inputs", cache_policy=NO_CACHE)
def find_date_inputs(input_root: str, logical_date: str, output: str | None = None) -> DateInputs:
    """The folders holding ``logical_date``'s files, with those files: ``<source>/<date>/`` and any
    ``.../date=<date>/``, never one that a run wrote in ``output`` (an output under the input root has ``date=``
    partitions of its own, which a re-run of the date would otherwise take for input; :func:`is_output`). Under an
    object-store root (``gs://``, which has no folders) the same two layouts as glob patterns of the date's files."""
    if is_url(input_root):
        return remote_date_inputs(input_root, logical_date, output)
    root = Path(input_root)
    if not root.is_dir():
        raise NoInputs(f"input root {input_root} is not a folder")
    folders = {*root.glob(f"*/{logical_date}"), *root.glob(f"**/date={logical_date}")}
    found = sorted(str(path) for path in folders
                   if path.is_dir() and not any(part.startswith((".", "_")) for part in path.relative_to(root).parts)
                   and not (output and is_output(str(path), output)))
    if not found:
        raise NoInputs(f"no <source>/{logical_date}/ or date={logical_date}/ folder under {input_root}")
    inputs = DateInputs.listed({folder: _files_of(folder, output) for folder in found})
    if not inputs.folders:  # an export not written yet, or still being uploaded: never a complete date
        raise NoInputs(f"the {logical_date} folders under {input_root} hold no file to read (hidden and _-prefixed "
                       f"files are skipped): {', '.join(found)}")
    for folder in sorted(set(found) - set(inputs.folders)):
        log.warning("%s holds no file to read; the date is labeled without it", folder)
    return inputs


def _files_of(folder_or_pattern: str, output: str | None) -> list[str]:
    """Its files to read (:func:`expand_inputs`); none where it holds or matches none."""
    try:
        return expand_inputs([folder_or_pattern], output=output)
    except FileNotFoundError:
        return []


def remote_date_inputs(input_root: str, logical_date: str, output: str | None = None) -> DateInputs:
    root = input_root.rstrip("/")
    patterns = [f"{root}/*/{logical_date}/**", f"{root}/**/date={logical_date}/**"]
    inputs = DateInputs.listed({pattern: _files_of(pattern, output) for pattern in patterns})
    if not inputs.folders:
        raise NoInputs(f"no <source>/{logical_date}/ or date={logical_date}/ files under {input_root}")
    return inputs


@task(name="mark-date-complete", cache_policy=NO_CACHE)
def mark_complete(output: str, logical_date: str, manifest: dict[str, Any], input_root: str) -> str:
    """Record the date as done by this run, only if every input record is accounted for."""
    if manifest["reconciled"] is False:
        raise RuntimeError(f"run {manifest['run_id']} for {logical_date} does not reconcile: {manifest['counts']}")
    record = {key: manifest[key] for key in ("run_id", "manifest_path", "model_version", "tasks", "totals",
                                             "reconciled")}
    return str(mark_date_complete(output, logical_date, {**record, "input_root": input_root,
                                                         "inputs": manifest["inputs"]}))


@flow(name="undertone-daily")
def daily_flow(
    input_root: str,
    output: str,
    date: str | None = None,
    runner: str = "local",
    model_dir: str = str(DEFAULT_MODEL_DIR),
    tasks: list[str] | None = None,
    device: str = "auto",
    precision: str = "auto",
    beam_args: list[str] | None = None,
) -> dict[str, Any]:
    """Label every file of one logical date (default yesterday, UTC) and replace all of that date's partitions:
    a source, or a file of unknown source, that its inputs no longer hold leaves no rows or dead letters behind.

    Returns the run report that is also published as the ``undertone-daily-<date>`` artifact. Fails if
    the date has no input folder or its counts do not reconcile (the date then stays incomplete).
    Also refreshes the date's aggregates and renders ``OUTPUT/_reports/undertone-<date>.html`` (the last
    28 dates), whose key figures are published as the ``undertone-report-<date>`` artifact.

    Example:
        python -c "from flows.daily import daily_flow; print(daily_flow('samples/by_date', 'out', date='2026-11-19'))"
    """
    logical_date = resolve_date(date)
    options = RunOptions(runner=runner, model_dir=model_dir, tasks=tuple(tasks) if tasks else None, device=device,
                         precision=precision, beam_args=tuple(beam_args or ()))
    inputs = find_date_inputs(input_root, logical_date, output)
    finish_dead_runs(output)
    withdraw_date_marker(output, logical_date)
    manifest = label_documents(options.pipeline_config(inputs, output, logical_date))
    aggregate_partition(output, logical_date)
    report = publish_run_artifact(output, manifest, "undertone-daily")
    mark_complete(output, logical_date, manifest, input_root)
    publish_report_artifact(logical_date, render_report(output, daily_report_path(output, logical_date),
                                                        start=report_start(logical_date), end=logical_date))
    return report
