"""``undertone`` command line: each subcommand runs a Prefect flow.

Local ephemeral Prefect by default; set ``PREFECT_API_URL`` to report to a Prefect server.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import date
from typing import Any

import undertone  # noqa: F401 - sets offline and Prefect defaults before Prefect is imported
from transforms.ingest.read import SOURCE_CHOICES
from transforms.pipeline import DEFAULT_MODEL_DIR


def _iso_date(value: str) -> str:
    return date.fromisoformat(value).isoformat()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="undertone", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="label raw inputs and write partitioned Parquet")
    run.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or globs")
    run.add_argument("--output", required=True, metavar="DIR", help="output root")
    run.add_argument("--date", type=_iso_date, help="logical date partition (default: today, UTC)")
    run.add_argument("--source", choices=SOURCE_CHOICES, default="auto", help="force the source of every file")
    run.add_argument("--runner", default="local", metavar="NAME", help="runner option set in deploy/runners/")
    run.add_argument("--model", default=str(DEFAULT_MODEL_DIR), metavar="DIR", help="model bundle folder")
    run.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="torch device of the workers")
    run.add_argument("--tasks", type=lambda v: [t for t in v.split(",") if t], help="comma-separated task list")
    run.add_argument("--beam-arg", action="append", default=[], metavar="FLAG",
                     help="extra Beam pipeline option, e.g. --beam-arg=--job_endpoint=localhost:8099")
    for name in ("text", "id", "created-at", "author", "rating", "product", "title"):
        run.add_argument(f"--{name}-column", metavar="COLUMN", help=f"input column holding the {name}")
    run.add_argument("--json", action="store_true", help="print the run summary as JSON")
    return parser


def summary_lines(result: dict[str, Any], output: str) -> list[str]:
    lines = [f"run {result['run_id']} for {result['logical_date']}: {len(result['inputs'])} input files",
             f"{'source':<8} {'input':>7} {'labeled':>8} {'dead':>6}"]
    for source, row in result["counts"].items():
        lines.append(f"{source:<8} {row['input']:>7} {row['labeled']:>8} {row['dead_letter']:>6}")
    total = result["totals"]
    lines.append(f"{'total':<8} {total['input']:>7} {total['labeled']:>8} {total['dead_letter']:>6}"
                 f"  reconciled: {result['reconciled']}")
    lines += [f"labeled:     {output}/labeled/source=*/date={result['logical_date']}/",
              f"dead-letter: {output}/dead_letter/date={result['logical_date']}/",
              f"manifest:    {result['manifest_path']}"]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "run":
        from flows.run import run_flow

        columns = {field: getattr(args, f"{field}_column") for field in
                   ("text", "id", "created_at", "author", "rating", "product", "title")
                   if getattr(args, f"{field}_column")}
        result = run_flow(inputs=args.inputs, output=args.output, date=args.date, source=args.source,
                          runner=args.runner, model_dir=args.model, tasks=args.tasks, device=args.device,
                          beam_args=args.beam_arg, columns=columns or None)
        print(json.dumps(result, indent=2) if args.json else "\n".join(summary_lines(result, args.output)))
        return 0 if result["reconciled"] is not False else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
