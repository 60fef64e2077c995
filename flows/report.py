"""Dashboards: the daily aggregates table after every run, and the analyst report (HTML) as a flow.

The aggregates task runs after the labeling task in ``undertone-run`` and ``undertone-daily`` (so
backfills get it too), and before it for every date a dead run's commit was rolled forward into; the
daily flow also renders the report and publishes its key figures as an artifact.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.artifacts import artifact_key
from models.registry import REGISTRY_FILE
from transforms.aggregates import aggregate_date
from transforms.report import write_report

REPORTS_DIR = "_reports"
REPORT_DAYS = 28
"""The daily report covers this many logical dates, ending at the day just labeled."""


def daily_report_path(output: str, logical_date: str) -> str:
    """Where the daily flow writes the report that ends at ``logical_date``."""
    return str(Path(output) / REPORTS_DIR / f"undertone-{logical_date}.html")


def report_start(logical_date: str, days: int = REPORT_DAYS) -> str:
    """The first logical date of a report of ``days`` dates ending at ``logical_date``."""
    return (dt.date.fromisoformat(logical_date) - dt.timedelta(days=days - 1)).isoformat()


@task(name="aggregate-date", cache_policy=NO_CACHE)
def aggregate_partition(output: str, logical_date: str) -> str:
    """Recompute the date's aggregates from its committed partitions, so they reconcile with them."""
    return str(aggregate_date(output, logical_date))


@task(name="render-report", cache_policy=NO_CACHE)
def render_report(output: str, html: str, start: str | None = None, end: str | None = None,
                  registry: str | None = None) -> dict[str, Any]:
    """Write the self-contained HTML report of logical dates ``start``..``end``; returns its key figures.

    ``registry`` (default ``models/registry.json``) gives each model version's evaluation figures.
    """
    return write_report(output, html, start=start, end=end, registry=Path(registry or REGISTRY_FILE))


@task(name="publish-report-artifact", cache_policy=NO_CACHE)
def publish_report_artifact(logical_date: str, figures: dict[str, Any]) -> None:
    """Publish the report's key figures and where the page is, for people who start from the Prefect UI."""
    negative = ", ".join(f"{source} {share:.1%}" for source, share in figures["negative_share"].items()) or "n/a"
    lines = [f"# Undertone report up to {logical_date}", "",
             "| figure | value |", "|---|---|",
             f"| logical dates | {' .. '.join(figures['dates']) or 'none'} |",
             f"| documents labeled | {figures['documents']} |",
             f"| dead letters | {figures['dead_letter']} |",
             f"| negative share | {negative} |",
             f"| top negative topic | {figures['top_negative_topic'] or 'n/a'} |",
             f"| model versions | {', '.join(figures['model_versions']) or 'none'} |", "",
             f"Report: `{figures['path']}`"]
    create_markdown_artifact("\n".join(lines) + "\n", key=artifact_key("undertone-report", logical_date),
                             description=f"report up to {logical_date}")


@flow(name="undertone-report")
def report_flow(output: str, html: str, start: str | None = None, end: str | None = None,
                registry: str | None = None) -> dict[str, Any]:
    """Render the analyst report (one HTML page, no network needed) from the aggregates under ``output``.

    Returns the key figures (documents, dead letters, negative share per source, top negative topic,
    model versions) and the page's path.

    Example:
        python -c "from flows.report import report_flow; print(report_flow('out', 'out/report.html'))"
    """
    return render_report(output, html, start=start, end=end, registry=registry)
