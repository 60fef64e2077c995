"""Run reports for Prefect artifacts: what a run read, labeled and rejected, how fast, with what model.

The figures come from the manifest and from this run's own Parquet files (found by run id), so a
report describes exactly one run even when the partition also holds other sources' runs.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow.parquet as pq

from transforms.sinks import dead_letter_partition, labeled_partition


def label_counts(output: str, manifest: dict[str, Any]) -> dict[str, dict[str, dict[str, int]]]:
    """``{source: {task: {label: n}}}`` over the rows this run wrote."""
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for source, row in manifest["counts"].items():
        folder = labeled_partition(output, source, manifest["logical_date"])
        files = sorted(folder.glob(f"part-{manifest['run_id']}-*.parquet")) if row.get("labeled") else []
        for task in manifest["tasks"]:
            tally: Counter[str] = Counter()
            for path in files:
                tally.update(pq.read_table(path, columns=[task])[task].to_pylist())
            if tally:
                counts.setdefault(source, {})[task] = dict(sorted(tally.items()))
    return counts


def dead_letter_reasons(output: str, manifest: dict[str, Any]) -> dict[str, int]:
    """``{"source/stage/error_type": n}`` over the dead letters this run wrote."""
    folder = dead_letter_partition(output, manifest["logical_date"])
    reasons: Counter[str] = Counter()
    for path in sorted(folder.glob(f"*-{manifest['run_id']}-*.parquet")):
        table = pq.read_table(path, columns=["source", "stage", "error_type"]).to_pylist()
        reasons.update(f"{row['source'] or 'unknown'}/{row['stage']}/{row['error_type']}" for row in table)
    return dict(sorted(reasons.items()))


def run_report(output: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Everything the run artifact shows, as plain data (also returned by the daily flow)."""
    seconds = float(manifest.get("seconds") or 0)
    records = manifest["totals"]["input"]
    return {
        "run_id": manifest["run_id"],
        "date": manifest["logical_date"],
        "counts": manifest["counts"],
        "totals": manifest["totals"],
        "reconciled": manifest["reconciled"],
        "labels": label_counts(output, manifest),
        "dead_letter_reasons": dead_letter_reasons(output, manifest),
        "seconds": seconds,
        "records_per_second": round(records / seconds, 2) if seconds else None,
        "model_version": manifest["model_version"],
        "runner": manifest["runner"],
        "outputs": {**manifest["outputs"], "manifest": manifest["manifest_path"]},
    }


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def report_markdown(report: dict[str, Any]) -> str:
    """The run report as Markdown: counts, labels, dead-letter reasons, throughput, model, paths."""
    lines = [f"# Undertone run `{report['run_id']}` for {report['date']}", "",
             f"model **{report['model_version']}**, runner `{report['runner']}`, {report['seconds']} s, "
             f"{report['records_per_second']} records/s, reconciled: **{report['reconciled']}**", "", "## Counts", ""]
    lines += _table(["source", "input", "labeled", "dead letter"],
                    [[source, row["input"], row["labeled"], row["dead_letter"]]
                     for source, row in report["counts"].items()]
                    + [["total", *report["totals"].values()]])
    lines += ["", "## Labels", ""]
    lines += _table(["source", "task", "label", "documents"],
                    [[source, task, label, n] for source, tasks in report["labels"].items()
                     for task, labels in tasks.items() for label, n in labels.items()])
    lines += ["", "## Dead-letter reasons", ""]
    lines += _table(["source/stage/reason", "records"], [[reason, n] for reason, n in
                                                         report["dead_letter_reasons"].items()])
    lines += ["", "## Outputs", ""]
    lines += [f"- {name}: `{path}`" for name, paths in report["outputs"].items()
              for path in (paths if isinstance(paths, list) else [paths])]
    return "\n".join(lines) + "\n"


def backfill_markdown(days: list[dict[str, Any]]) -> str:
    """One row per day of a backfill: what happened, which run, how many records."""
    rows = [[day["date"], day["status"], day.get("run_id") or "", day.get("input", ""), day.get("labeled", ""),
             day.get("dead_letter", ""), day.get("seconds", ""), (day.get("error") or "").replace("|", "/")[:200]]
            for day in days]
    failed = [day["date"] for day in days if day["status"] == "failed"]
    head = [f"# Undertone backfill {days[0]['date']} .. {days[-1]['date']}" if days else "# Undertone backfill", "",
            f"failed days: {', '.join(failed) or 'none'}", ""]
    return "\n".join(head + _table(["date", "status", "run", "input", "labeled", "dead letter", "seconds", "error"],
                                   rows)) + "\n"


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow only lowercase letters, digits and dashes."""
    return "-".join("".join(c if c.isascii() and c.isalnum() else "-" for c in part.lower()) for part in parts)

