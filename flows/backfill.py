"""The backfill flow: the daily flow over a date range, resumable, a few days at a time, with retries.

Each day runs as a task that calls the daily flow (so every day is its own flow run with its own
artifact); a day whose completion record exists is skipped unless ``force``. Days that still fail
after their retries are listed in the backfill artifact, and the backfill then fails.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff
from pydantic import Field

from flows.artifacts import artifact_key, backfill_markdown
from flows.daily import NoInputs, RunOptions, daily_flow
from transforms.pipeline import DEFAULT_MODEL_DIR, check_logical_date, labeling_tasks
from transforms.sinks import read_date_marker

log = logging.getLogger(__name__)


class BackfillFailed(RuntimeError):
    """Some days failed after their retries; the message lists them with their errors, ``summary`` is what a
    successful backfill returns (every day's row), so ``--json`` can print it all the same."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary


def worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """A day's failure is retried unless the day has no input: its folders will not fill in seconds, and the
    retries only held the backfill up (a minute and a half for each such day by default)."""
    return not isinstance(state.result(raise_on_failure=False), NoInputs)


def date_range(start: str, end: str) -> list[str]:
    """Every day from ``start`` to ``end``, both included; both must be dates a run may write
    (:func:`check_logical_date`), so that a mistyped year fails the backfill before its first day."""
    first, last = dt.date.fromisoformat(check_logical_date(start)), dt.date.fromisoformat(check_logical_date(end))
    if last < first:
        raise ValueError(f"end {end} is before start {start}")
    return [(first + dt.timedelta(days=offset)).isoformat() for offset in range((last - first).days + 1)]


@task(name="find-complete-days", cache_policy=NO_CACHE)
def find_complete_days(output: str, days: list[str]) -> dict[str, dict[str, Any]]:
    """The days of ``days`` whose completion record exists in ``output``, with that record."""
    return {day: marker for day in days if (marker := read_date_marker(output, day)) is not None}


@task(name="process-day", cache_policy=NO_CACHE)
def process_day(logical_date: str, input_root: str, output: str, options: RunOptions) -> dict[str, Any]:
    """One day: the daily flow as a subflow run; a failure fails the task, which the backfill retries."""
    return daily_flow(input_root=input_root, output=output, date=logical_date, runner=options.runner,
                      model_dir=options.model_dir, tasks=list(options.tasks) if options.tasks else None,
                      device=options.device, precision=options.precision, beam_args=list(options.beam_args))


@task(name="publish-backfill-artifact", cache_policy=NO_CACHE)
def publish_backfill_artifact(start: str, end: str, days: list[dict[str, Any]]) -> None:
    """Publish the per-day table (status, run, counts, errors) of the backfill."""
    create_markdown_artifact(backfill_markdown(days), key=artifact_key("undertone-backfill", start, end),
                             description=f"backfill {start} .. {end}")


def labeled_otherwise(done: dict[str, dict[str, Any]], model_dir: str, tasks: list[str] | None) -> dict[str, str]:
    """The complete days whose record names another model version or other tasks than this backfill would label
    with (day → what differs): skipped all the same, since redoing a day is ``force``'s call, but said."""
    bundle, chosen = labeling_tasks(model_dir, tasks, None)
    notes = {}
    for day, record in done.items():
        differences = []
        if record.get("model_version", bundle.model_version) != bundle.model_version:
            differences.append(f"model {record['model_version']}")
        if sorted(record.get("tasks", chosen)) != sorted(chosen):
            differences.append(f"tasks {','.join(record['tasks'])}")
        if differences:
            notes[day] = f"labeled with {' and '.join(differences)}, not {bundle.model_version} with tasks " \
                         f"{','.join(chosen)}"
    return notes


def _day_row(logical_date: str, status: str, report: dict[str, Any] | None = None, error: str | None = None
             ) -> dict[str, Any]:
    row: dict[str, Any] = {"date": logical_date, "status": status, "run_id": (report or {}).get("run_id")}
    row.update((report or {}).get("totals", {}))
    if report and "seconds" in report:
        row["seconds"] = report["seconds"]
    if error:
        row["error"] = error
    return row


@flow(name="undertone-backfill")
def backfill_flow(
    input_root: str,
    output: str,
    start: str,
    end: str,
    force: bool = False,
    max_concurrency: Annotated[int, Field(ge=1)] = 2,
    retries: Annotated[int, Field(ge=0)] = 2,
    retry_delay_s: Annotated[float, Field(ge=0)] = 30.0,
    runner: str = "local",
    model_dir: str = str(DEFAULT_MODEL_DIR),
    tasks: list[str] | None = None,
    device: str = "auto",
    precision: str = "auto",
    beam_args: list[str] | None = None,
) -> dict[str, Any]:
    """Run the daily flow for every day from ``start`` to ``end``, skipping complete days unless ``force``.

    At most ``max_concurrency`` days run at once; a failed day is retried ``retries`` times with
    exponential backoff starting at ``retry_delay_s``, unless it has no input (:func:`worth_retrying`).
    Returns ``{"days": [...], "complete": [...], "skipped": [...], "failed": []}``; raises
    :class:`BackfillFailed` naming the failed days. A negative count or delay fails the run before any day (it
    was taken as the nearest allowed value without a word); a deployment's form shows the minimums.

    Example:
        undertone backfill --input-root samples/by_date --start 2026-11-18 --end 2026-11-20 --output out
    """
    days = date_range(start, end)
    options = RunOptions(runner=runner, model_dir=model_dir, tasks=tuple(tasks) if tasks else None, device=device,
                         precision=precision, beam_args=tuple(beam_args or ()))
    done = {} if force else find_complete_days(output, days)
    day_task = process_day.with_options(retries=retries, retry_delay_seconds=exponential_backoff(retry_delay_s)
                                        if retry_delay_s > 0 else 0, retry_condition_fn=worth_retrying)
    rows: dict[str, dict[str, Any]] = {day: _day_row(day, "skipped", done[day]) for day in done}
    for day, note in labeled_otherwise(done, model_dir, tasks).items():
        log.warning("backfill skips %s, %s; --force relabels it", day, note)
        rows[day]["note"] = note
    with ThreadPoolTaskRunner(max_workers=max_concurrency) as pool:
        futures = {day: pool.submit(day_task, {"logical_date": day, "input_root": input_root, "output": output,
                                               "options": options})
                   for day in days if day not in done}
        for day, future in futures.items():
            future.wait()
            state = future.state
            if state.is_completed():
                rows[day] = _day_row(day, "complete", state.result())
            else:
                rows[day] = _day_row(day, "failed", error=str(state.result(raise_on_failure=False)))
    ordered = [rows[day] for day in days]
    publish_backfill_artifact(start, end, ordered)
    summary = {"days": ordered, **{status: [row["date"] for row in ordered if row["status"] == status]
                                   for status in ("complete", "skipped", "failed")}}
    if summary["failed"]:
        raise BackfillFailed("failed days: " + "; ".join(f"{row['date']}: {row['error']}" for row in ordered
                                                          if row["status"] == "failed"), summary)
    return summary
