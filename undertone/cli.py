"""``undertone`` command line: each subcommand runs a Prefect flow.

Local ephemeral Prefect by default; set ``PREFECT_API_URL`` to report to a Prefect server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing.util
import os
import reprlib
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import fields
from datetime import date
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn

import yaml
from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError

import undertone  # noqa: F401 - sets offline and Prefect defaults before Prefect is imported
from models.bundle import PRECISIONS, read_bundle_spec
from transforms.ingest.read import SOURCE_CHOICES
from transforms.ingest.tabular import ColumnMap
from transforms.pipeline import DEFAULT_MODEL_DIR, check_logical_date, labeling_tasks, runner_options
from transforms.sinks import check_output_root
from undertone.guard import guard_temporary_server, signal_own_servers

COLUMN_FIELDS = tuple(field.name for field in fields(ColumnMap))
"""Document fields a table column can be mapped to, one ``--<field>-column`` flag each."""


def _iso_date(value: str) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {value!r} ({error})") from None


def _logical_date(value: str) -> str:
    """A date a run may write: far-off years are refused as typos (:func:`check_logical_date`)."""
    try:
        return check_logical_date(_iso_date(value))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _at_least(minimum: int, number: type[int] | type[float]) -> Callable[[str], int | float]:
    """An argparse type for a count or a delay: below ``minimum`` is a usage error, where the backfill took
    ``--retries -1`` as 0 and ``--max-concurrency 0`` as 1 without a word."""
    def parse(value: str) -> int | float:
        try:
            parsed = number(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
        if not parsed >= minimum:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return parsed

    return parse


def _comma_list(value: str) -> list[str]:
    return [item for item in value.split(",") if item]


def _label_map(value: str) -> dict[str, str]:
    pairs = [pair.split("=", 1) for pair in value.split(",") if pair.strip()]
    if not pairs or any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected DATA=TASK pairs separated by commas, got {value!r}")
    return {data.strip(): task.strip() for data, task in pairs}


def build_parser(run_defaults: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    """The CLI; ``run_defaults`` (from ``--config``) become the run command's defaults."""
    parser = argparse.ArgumentParser(prog="undertone", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="label raw inputs and write partitioned Parquet")
    run.add_argument("--config", metavar="YAML",
                     help="run options from a file (keys as the flags: source, tasks, runner, columns, ...); "
                          "flags given on the command line win")
    run.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or globs")
    run.add_argument("--output", required=True, metavar="DIR", help="output root")
    add_run_settings(run)
    run.set_defaults(zero_shot=None)  # zero-shot task taxonomies come only from --config files
    if run_defaults:
        run.set_defaults(**run_defaults)
    add_model_commands(commands)
    add_schedule_commands(commands)
    report = commands.add_parser("report", help="render the analyst report (one self-contained HTML page)")
    report.add_argument("--output", required=True, metavar="DIR", help="output root holding aggregates/ and labeled/")
    report.add_argument("--html", required=True, metavar="FILE", help="the page to write")
    report.add_argument("--start", type=_logical_date, help="first logical date (default: the earliest)")
    report.add_argument("--end", type=_logical_date, help="last logical date (default: the latest)")
    report.add_argument("--registry", metavar="JSON",
                        help="model registry with each model version's evaluation (default: models/registry.json)")
    return parser


def add_run_settings(run: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The ``run`` options a ``--config`` file may set too, by destination in the order of ``--help``:
    :func:`config_defaults` parses its values with them."""
    settings = [
        run.add_argument("--date", type=_logical_date,
                         help="logical date partition, 1970-01-01 to tomorrow (default: today, UTC)"),
        run.add_argument("--source", choices=SOURCE_CHOICES, default="auto", help="force the source of every file"),
        run.add_argument("--runner", default="local", metavar="NAME", help="runner option set in deploy/runners/"),
        run.add_argument("--model", default=str(DEFAULT_MODEL_DIR), metavar="DIR", help="model bundle folder"),
        run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                         help="torch device of the workers (auto: cuda when there is a GPU)"),
        run.add_argument("--precision", choices=PRECISIONS, default="auto",
                         help="encoder precision (auto: bf16 on GPUs and on CPUs with native bf16 where the model "
                              "card measured it within a point of fp32, else fp32; int8: CPU only; see README)"),
        run.add_argument("--tasks", type=_comma_list, help="comma-separated task list"),
        run.add_argument("--beam-arg", action="append", default=[], metavar="FLAG",
                         help="extra Beam pipeline option, e.g. --beam-arg=--job_endpoint=localhost:8099"),
        *(run.add_argument(f"--{name.replace('_', '-')}-column", metavar="COLUMN",
                           help=f"input column holding the {name}") for name in COLUMN_FIELDS),
        run.add_argument("--keep-addresses", action="store_true",
                         help="store email sender and recipient addresses in clear instead of sha256 pseudonyms"),
        run.add_argument("--redact-pii", action="store_true",
                         help="replace emails, phone/card/IBAN numbers and URL secrets in all text before writing"),
        run.add_argument("--json", action="store_true", help="print the run summary as JSON"),
    ]
    return {action.dest: action for action in settings}

def add_model_commands(commands: argparse._SubParsersAction) -> None:
    """``finetune`` and ``evaluate``: train and measure the classifiers."""
    finetune = commands.add_parser("finetune", help="train a shared-encoder bundle from ../shared/data")
    finetune.add_argument("--tasks", type=_comma_list,
                          help="comma-separated tasks trained together (default: sentiment,intent,spam)")
    finetune.add_argument("--output", required=True, metavar="DIR", help="bundle folder to write")
    finetune.add_argument("--version", default="1.0.0")
    finetune.add_argument("--seed", type=int, default=13)
    finetune.add_argument("--epochs", type=float, default=1.0)
    finetune.add_argument("--learning-rate", type=float,
                          help="peak learning rate (default: TrainingArguments.learning_rate; the card records it)")
    finetune.add_argument("--init-from", metavar="DIR",
                          help="continue training this bundle's adapter and heads instead of starting fresh")
    finetune.add_argument("--sst2-binary", action="store_true",
                          help="SST-2 phrases as negative-or-positive evidence only (silent on neutral)")
    finetune.add_argument("--soup-of", type=_comma_list, metavar="DIR,DIR",
                          help="train nothing: average these bundles (same base and seed) into one, then "
                               "calibrate and evaluate it")
    finetune.add_argument("--soup", action="store_true",
                          help="train one run per SST-2 recipe (3-class targets, binary evidence) with these "
                               "settings, then ship their soup: the shipped bundle in one command")
    finetune.add_argument("--ingredients-dir", metavar="DIR",
                          help="where --soup keeps its runs (default training_runs/<output name>-<version>)")
    finetune.add_argument("--data-dir", metavar="DIR", help="labeled data root (default ../shared/data)")
    finetune.add_argument("--promote", action="store_true", help="make it the default model of `undertone run`")

    evaluate = commands.add_parser("evaluate", help="measure one task of a bundle on labeled data")
    evaluate.add_argument("--task", required=True)
    evaluate.add_argument("--data", required=True, metavar="FILE", help="labeled file, or a folder of label folders")
    evaluate.add_argument("--model", metavar="DIR", help="bundle folder (default: the registry's default)")
    evaluate.add_argument("--output", metavar="JSON", help="also write the report here")
    evaluate.add_argument("--only-gold-labels", action="store_true",
                          help="predict only among labels present in the data (e.g. binary SST-2)")
    evaluate.add_argument("--text-column")
    evaluate.add_argument("--label-column")
    evaluate.add_argument("--precision", choices=PRECISIONS, default="auto",
                          help="encoder precision, as for run (auto: what runs on this machine use)")
    evaluate.add_argument("--label-map", type=_label_map, metavar="DATA=TASK,...",
                          help="rename the data's labels to the task's, e.g. 0=negative,1=positive")

    fewshot = commands.add_parser("fewshot", help="add a task to a bundle from ~8 labeled examples per label")
    fewshot.add_argument("--task", required=True, help="name of the new task (its output column)")
    fewshot.add_argument("--examples", required=True, metavar="FILE", help="labeled CSV/JSONL/Parquet (text, label)")
    fewshot.add_argument("--output", required=True, metavar="DIR", help="folder for the new bundle version")
    fewshot.add_argument("--model", metavar="DIR", help="bundle to extend (default: the registry's default)")
    fewshot.add_argument("--promote", action="store_true", help="make the new bundle the default model")
    fewshot.add_argument("--registry", metavar="JSON",
                         help="model registry to add the new bundle to and take the default --model from "
                              "(default: models/registry.json)")
    fewshot.add_argument("--text-column")
    fewshot.add_argument("--label-column")


def run_model_command(args: argparse.Namespace) -> int:
    """``fewshot``, ``finetune`` or ``evaluate``; a bad data file, column, label or task is a usage error (exit 2)
    found before the flow starts, so it prints one line rather than Prefect's traceback of a failed run."""
    if args.command == "fewshot":
        from models.datasets import read_labeled
        from models.fewshot import add_fewshot_task, fewshot_labels
        from models.registry import default_model_dir, register

        try:
            examples = read_labeled(Path(args.examples), args.text_column, args.label_column)
        except (OSError, ValueError) as error:
            build_parser().error(str(error))
        try:
            fewshot_labels(examples)
        except ValueError as error:
            build_parser().error(f"{args.examples}: {error}")
        registry = fewshot_registry(args)
        output = add_fewshot_task(Path(args.model or default_model_dir(registry)), args.task, examples,
                                  Path(args.output))
        try:
            print(json.dumps(register(output, promote=args.promote, path=registry), indent=2))
        except ValueError as error:  # its version is registered with other weights
            print(f"fewshot: {output} was written but not registered: {error}", file=sys.stderr)
            return 1
        return 0
    if args.command == "finetune":
        from flows.finetune import finetune_flow

        guard_temporary_server()
        result = finetune_flow(output=args.output, tasks=args.tasks, version=args.version, seed=args.seed,
                               epochs=args.epochs, data_dir=args.data_dir, promote=args.promote,
                               learning_rate=args.learning_rate, init_from=args.init_from,
                               sst2_binary=args.sst2_binary, soup_of=args.soup_of, soup=args.soup,
                               ingredients_dir=args.ingredients_dir)
        print(json.dumps(result, indent=2))
        return 0
    from flows.evaluate import evaluate_flow, evaluation_examples
    from models.registry import default_model_dir

    try:  # its note on the label column is left to the flow, which reports it
        evaluation_examples(str(args.model or default_model_dir()), args.task, args.data, args.text_column,
                            args.label_column, args.label_map, notes=[])
    except (OSError, ValueError) as error:  # UnsafeModelError is a ValueError
        build_parser().error(str(error))
    guard_temporary_server()
    state = evaluate_flow(task_name=args.task, data=args.data, model_dir=args.model, output=args.output,
                          only_gold_labels=args.only_gold_labels, text_column=args.text_column,
                          label_column=args.label_column, precision=args.precision, label_map=args.label_map,
                          return_state=True)
    if not state.is_completed():  # Prefect has logged the traceback; one line says why it stopped
        print(f"evaluate failed: {state.result(raise_on_failure=False)}", file=sys.stderr)
        return 1
    report = state.result()
    print(json.dumps({key: report[key] for key in ("model_version", "task", "n", "precision", "accuracy", "macro_f1",
                                                    "macro_recall", "ece", "notes") if key in report}, indent=2))
    return 0


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be blank")
    return text


_TEXT = Annotated[str, AfterValidator(_not_blank)]
ZERO_SHOT_TASKS = TypeAdapter(dict[str, Annotated[dict[_TEXT, _TEXT], Field(min_length=2)]],
                              config=ConfigDict(strict=True))
"""A config's ``zero_shot:`` block: task → {label: one-line description}, two labels at least. A blank label
(``"": ...``) wrote empty labels to the output, and a blank description matched nothing in particular."""


def config_defaults(path: str) -> dict[str, Any]:
    """Run settings from a YAML file, keyed like the flags' destinations.

    Each value is parsed by its flag's own argparse action (type, choices), so a bad value is a usage error naming
    the key before anything starts, as it is on the command line; a ValueError says which. A key with no value or
    given twice is one too: YAML would read the first as null and keep the last of the second without a word."""
    try:
        settings = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        raise ValueError(f"not valid YAML: {error}") from None
    if settings is None:  # an empty file sets nothing
        return {}
    if not isinstance(settings, dict):
        raise ValueError(f"expected a mapping of run settings (source: email, ...), got {type(settings).__name__} "
                         f"{reprlib.repr(settings)}")
    columns = settings.pop("columns", {})
    if isinstance(columns, dict):
        _check_not_empty({f"columns: {field}": column for field, column in columns.items()})
    _check_not_empty({"columns": columns, **settings})
    if not isinstance(columns, dict):
        raise ValueError("columns: expected a mapping of field to input column (text: body, id: uid)")
    keys = {str(key).replace("-", "_"): str(key) for key in settings}
    keys.update({f"{field}_column": f"columns: {field}" for field in columns})
    values = {str(key).replace("-", "_"): value for key, value in settings.items()}
    values.update({f"{field}_column": column for field, column in columns.items()})
    zero_shot = values.pop("zero_shot", None)
    parser = argparse.ArgumentParser(prog="undertone run", add_help=False, exit_on_error=False)
    actions = add_run_settings(parser)
    unknown = sorted(keys[dest] for dest in values if dest not in actions)
    if unknown:
        raise ValueError(f"unknown run settings {unknown}; a config sets {', '.join(_config_keys(actions))}")
    defaults: dict[str, Any] = {}
    for dest, value in values.items():
        try:
            parsed = parser.parse_args(_config_arguments(actions[dest], value))
        except (argparse.ArgumentError, ValueError) as error:
            raise ValueError(f"{keys[dest]}: {getattr(error, 'message', error)}") from None
        defaults[dest] = getattr(parsed, dest)
    if zero_shot is not None:
        try:
            defaults["zero_shot"] = ZERO_SHOT_TASKS.validate_python(zero_shot)
        except ValidationError as error:
            first = error.errors()[0]
            where = "".join(f"[{part!r}]" for part in first["loc"] if part != "[key]")  # pydantic's mark of a key
            raise ValueError(f"zero_shot{where}: {first['msg']} (expected task: {{label: description, ...}}, "
                             "two labels at least)") from None
    return defaults


def _check_not_empty(settings: dict[Any, Any]) -> None:
    """A key with no value (``tasks:``) is a mistake, not a setting: YAML reads it as null."""
    for key, value in settings.items():
        if value is None:
            raise ValueError(f"{key}: the value is empty; give one or delete the line")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (it keeps the last, dropping the other)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # a << merge key's values may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            with contextlib.suppress(TypeError):  # an unhashable key: the loader's own error names it
                if key in lines:
                    raise ValueError(f"{key}: given twice (lines {lines[key]} and {line}); keep one")
                lines[key] = line
        return super().construct_mapping(node, deep=deep)


def _config_keys(actions: dict[str, argparse.Action]) -> list[str]:
    """The keys a config file may hold, spelled as in the shipped one."""
    flags = [action.option_strings[0].removeprefix("--") for action in actions.values()]
    return [flag for flag in flags if not flag.endswith("-column")] + [f"columns ({', '.join(COLUMN_FIELDS)})",
                                                                       "zero_shot"]


def _config_arguments(action: argparse.Action, value: Any) -> list[str]:
    """The command-line arguments that give ``action`` a config's ``value``, which YAML may have typed: a bool for
    an on/off flag, a date for a date, a list for a repeatable flag or a comma-separated one (``tasks``)."""
    flag = action.option_strings[0]
    if action.nargs == 0:  # --redact-pii and the like
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return [flag] if value == action.const else []
    if isinstance(action.default, list):  # a repeatable flag (action="append", default=[]): --beam-arg
        items = value if isinstance(value, list) else [value]
        return [f"{flag}={_config_text(item)}" for item in items]
    if isinstance(value, list) and action.type is _comma_list:
        return [f"{flag}={','.join(_config_text(item) for item in value)}"]
    return [f"{flag}={_config_text(value)}"]


def _config_text(value: Any) -> str:
    """A config value as the command line would give it: YAML's dates are the text they were written as (a
    timestamp too, which the date flag then refuses as it would on the command line)."""
    if isinstance(value, str):
        return value
    if isinstance(value, date):
        return value.isoformat()
    raise ValueError(f"expected text, got {type(value).__name__} {value!r}")


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


def add_schedule_commands(commands: argparse._SubParsersAction) -> None:
    """``daily`` and ``backfill``: label an input root laid out by date, one date or a range of dates."""
    daily = commands.add_parser("daily", help="label one date of an input root laid out by <source>/<date>/")
    daily.add_argument("--date", type=_logical_date,
                       help="logical date, 1970-01-01 to tomorrow (default: yesterday, UTC)")
    backfill = commands.add_parser("backfill", help="label a range of dates; complete dates are skipped")
    backfill.add_argument("--start", type=_logical_date, required=True, help="first date (included)")
    backfill.add_argument("--end", type=_logical_date, required=True, help="last date (included)")
    backfill.add_argument("--force", action="store_true", help="redo dates that are already complete")
    backfill.add_argument("--max-concurrency", type=_at_least(1, int), default=2, metavar="N",
                          help="days processed at once")
    backfill.add_argument("--retries", type=_at_least(0, int), default=2, metavar="N", help="retries of a failed day")
    backfill.add_argument("--retry-delay", type=_at_least(0, float), default=30.0, metavar="SECONDS",
                          help="first retry delay; doubles with each retry")
    for command in (daily, backfill):
        command.add_argument("--input-root", required=True, metavar="DIR",
                             help="folder holding <source>/<YYYY-MM-DD>/ or .../date=<YYYY-MM-DD>/ folders")
        command.add_argument("--output", required=True, metavar="DIR", help="output root")
        command.add_argument("--runner", default="local", metavar="NAME", help="runner option set in deploy/runners/")
        command.add_argument("--model", default=str(DEFAULT_MODEL_DIR), metavar="DIR", help="model bundle folder")
        command.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                             help="torch device of the workers (auto: cuda when there is a GPU)")
        command.add_argument("--precision", choices=PRECISIONS, default="auto",
                             help="encoder precision, as for run (pin fp32 for labels identical across CPU types)")
        command.add_argument("--tasks", type=_comma_list, help="comma-separated task list")
        command.add_argument("--beam-arg", action="append", default=[], metavar="FLAG",
                             help="extra Beam pipeline option, e.g. --beam-arg=--job_endpoint=localhost:8099")
        command.add_argument("--json", action="store_true", help="print the result as JSON")


def run_schedule_command(args: argparse.Namespace) -> int:
    """Run the daily or backfill flow; the exit status is 1 if the flow failed (a failed day, no inputs)."""
    options = {"input_root": args.input_root, "output": args.output, "runner": args.runner, "model_dir": args.model,
               "tasks": args.tasks, "device": args.device, "precision": args.precision, "beam_args": args.beam_arg}
    guard_temporary_server()
    if args.command == "daily":
        from flows.daily import daily_flow

        state = daily_flow(date=args.date, **options, return_state=True)
    else:
        from flows.backfill import backfill_flow

        state = backfill_flow(start=args.start, end=args.end, force=args.force, max_concurrency=args.max_concurrency,
                              retries=args.retries, retry_delay_s=args.retry_delay, **options, return_state=True)
    if not state.is_completed():
        error = state.result(raise_on_failure=False)
        if args.json and hasattr(error, "summary"):  # a backfill's failed days: every day's row all the same
            print(json.dumps(error.summary, indent=2))
        print(f"{args.command} failed: {error}", file=sys.stderr)
        return 1
    result = state.result()
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.command == "daily":
        totals = result["totals"]
        print(f"{result['date']}: run {result['run_id']}, input {totals['input']}, labeled {totals['labeled']}, "
              f"dead-letter {totals['dead_letter']}, reconciled: {result['reconciled']}")
    else:
        for day in result["days"]:
            note = f"  ({day['note']}; --force relabels it)" if day.get("note") else ""
            print(f"{day['date']}  {day['status']:<8}  run {day['run_id']}  input {day.get('input')}  "
                  f"labeled {day.get('labeled')}  dead-letter {day.get('dead_letter')}{note}")
    return 0


LABELING_COMMANDS = ("run", "daily", "backfill")
"""The commands that run the labeling job: they take ``--model``, ``--runner`` and ``--beam-arg``."""
OUTPUT_ROOT_COMMANDS = (*LABELING_COMMANDS, "report")
"""The commands whose ``--output`` is an output root (``labeled/``, ``dead_letter/``, ``aggregates/``)."""


def fewshot_registry(args: argparse.Namespace) -> Path:
    """The registry ``fewshot`` registers in: ``--registry``, else the repository's ``models/registry.json``."""
    from models.registry import REGISTRY_FILE

    return Path(args.registry) if args.registry else REGISTRY_FILE


def check_fewshot_args(args: argparse.Namespace) -> None:
    """A task name the bundle has or that clashes with an output column, or an ``--output`` that exists, is a usage
    error, found before the encoder loads and the head is fitted rather than by a traceback after them (or a run
    that writes an unreadable partition)."""
    from models.fewshot import check_new_task
    from models.registry import default_model_dir

    try:
        spec = read_bundle_spec(Path(args.model or default_model_dir(fewshot_registry(args))))
    except (OSError, ValueError) as error:  # UnsafeModelError is a ValueError
        build_parser().error(f"--model: {error}")
    try:
        check_new_task(spec, args.task)
    except ValueError as error:
        build_parser().error(f"--task: {error}")
    output = Path(args.output)
    if output.exists() or output.is_symlink():  # a dangling link too: copying the bundle there would fail
        build_parser().error(f"--output: {args.output} exists; choose a new folder for the new bundle version")


def check_finetune_args(args: argparse.Namespace) -> None:
    """Options that would train nothing or fail inside the flow (a typo'd task, a soup of one bundle, a missing
    ``--init-from``) are a usage error found before Prefect starts, not a traceback after loading or training."""
    from flows.finetune import check_finetune_options

    try:
        check_finetune_options(args.tasks or None, args.epochs, args.data_dir, args.learning_rate, args.init_from,
                               args.sst2_binary, args.soup_of, args.soup)
    except ValueError as error:
        build_parser().error(str(error))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with a ``--config`` file's settings as defaults that flags override.

    A labeling command's ``--model`` must be a bundle folder and its ``--tasks`` tasks the bundle has (or the
    config's zero-shot tasks): a usage error here, before Prefect's server starts (seconds), rather than a failed
    flow run, which for ``daily`` would also have withdrawn the date's completion record."""
    args = build_parser().parse_args(argv)
    defaults: dict[str, Any] = {}
    if getattr(args, "config", None):
        try:
            defaults = config_defaults(args.config)
        except (OSError, ValueError) as error:
            build_parser().error(f"--config {args.config}: {error}")
        args = build_parser(defaults).parse_args(argv)
    if args.command in OUTPUT_ROOT_COMMANDS:
        try:
            check_output_root(args.output)
        except ValueError as error:
            build_parser().error(f"--output: {error}")
    if args.command in ("report", "backfill") and args.start and args.end and args.start > args.end:
        empty = "the report would be empty" if args.command == "report" else "the backfill would run no day"
        build_parser().error(f"--end {args.end} is before --start {args.start}: {empty}")
    if args.command == "fewshot":
        check_fewshot_args(args)
    if args.command == "finetune":
        check_finetune_args(args)
    if args.command in LABELING_COMMANDS:
        try:
            runner_options(args.runner)
        except ValueError as error:  # else a failed flow run, after daily had withdrawn the date's record
            build_parser().error(f"--runner: {error}")
        try:
            spec = read_bundle_spec(Path(args.model))
        except (OSError, ValueError) as error:  # UnsafeModelError is a ValueError
            build_parser().error(f"--model: {error}")
        zero_shot = getattr(args, "zero_shot", None) or {}
        known = {*spec.tasks, *zero_shot}
        unknown = [task for task in args.tasks or () if task not in known]
        if unknown:
            build_parser().error(f"--tasks: {spec.model_version} has no task {', '.join(unknown)}; "
                                 f"it has {', '.join(sorted(known))}")
        try:
            labeling_tasks(args.model, args.tasks, zero_shot)
        except ValueError as error:
            build_parser().error(f"--model: {error}")
        left_out = [task for task in zero_shot if args.tasks and task not in args.tasks]
        if left_out and args.tasks == defaults.get("tasks"):  # the config's block would change nothing
            build_parser().error(f"--config {args.config}: zero_shot defines {', '.join(left_out)}, which its tasks "
                                 f"({', '.join(args.tasks)}) leave out: add it to tasks or drop the block")
        if left_out:
            print(f"undertone: --tasks leaves out the config's zero-shot {', '.join(left_out)}; "
                  "its labels are not used", file=sys.stderr)
    return args


def check_inputs(args: argparse.Namespace) -> None:
    """A ``run`` INPUT that does not exist or yields no file (a typo'd path or glob) is a usage error found before
    Prefect starts, not a failed flow run with a traceback."""
    from transforms.ingest.read import expand_inputs

    try:
        expand_inputs(args.inputs, output=args.output)
    except FileNotFoundError as error:
        build_parser().error(f"INPUT: {error}")


_stopped_by: int | None = None
"""The signal that is stopping this command, once its handler has run."""


def stop_on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (``kill``, ``timeout``, a stopped container) and SIGINT (Ctrl-C) unwind the command, so the run's
    staging folder is removed, then ``main`` leaves through ``leave_stopped``; a second one (the unwinding is
    stuck) leaves at once. SIGTERM's default action ended the process on the spot and left Prefect's temporary
    server running. Ctrl-C in a terminal reaches that server too (it shares the command's process group), and
    Prefect's client then spent a minute retrying to report the crashed run to it: after a stop signal, each API
    call is tried once."""
    global _stopped_by
    if _stopped_by is not None or _inside_an_import(frame):
        leave_stopped(128 + signum)
    _stopped_by = signum
    from prefect.settings import get_current_settings

    get_current_settings().client.max_retries = 0
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _inside_an_import(frame: FrameType | None) -> bool:
    """Whether the signal interrupted a module's import (the command's first seconds are mostly Prefect's, Beam's and
    torch's). An exception raised there leaves half-made modules, and code that imports one next trips on them: the
    handler's own import of Prefect's settings raised ImportError, which Prefect's plugin loader logged and went on
    from, so the whole run went on. Nothing that needs unwinding has started then, or a dead run's staging
    folder is left for the next run to clear: leave at once."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def leave_stopped(code: int) -> NoReturn:
    """End a command that a signal stopped, after its cleanup, without the interpreter's shutdown. That shutdown
    joins every thread still running and then destroys native objects, and a signal leaves threads blocked for good
    (Beam's, the ingest pool's manager) or inside native code (the model's warm-up): the command then hung, or
    aborted ("terminate called without an active exception"). What the exit hooks would have done that matters
    is done here: the temporary server is told to stop, the ingest workers are killed and their pool's named
    semaphores unlinked (the multiprocessing finalizers an exit runs first; the joins that follow them are what can
    hang). Log lines still buffered for Prefect's API are sent only to a server of its own (``send_buffered_logs``).

    The cleanup is best effort and has :data:`LEAVE_DEADLINE_S` to finish: a SIGTERM that landed while the main
    thread held Python's import lock (a late import at the end of a run) left a finalizer joining a thread that
    waited for that lock, and the command hung for good after its run had committed."""
    deadline = threading.Timer(LEAVE_DEADLINE_S, os._exit, args=(code,))
    deadline.daemon = True
    deadline.start()
    print(f"undertone: stopped by {signal.Signals(code - 128).name}", file=sys.stderr)
    send_buffered_logs()
    signal_own_servers()
    ingest = sys.modules.get("transforms.ingest.parallel")  # not imported here: no pool then, and no import
    if ingest is not None:                                   # belongs in a signal's path
        ingest.kill_workers()
    multiprocessing.util._run_finalizers(0)  # the first step of multiprocessing's exit hook
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


LOG_SEND_S = 3.0
"""How long a stopped command waits for Prefect's client to send the log lines it still holds."""
LEAVE_DEADLINE_S = 15.0
"""How long a stopped command's cleanup may take before it leaves anyway (the log lines' :data:`LOG_SEND_S`
included)."""


def send_buffered_logs() -> None:
    """Send the log lines Prefect's client still holds (it sends a batch every 2 s), for up to :data:`LOG_SEND_S`,
    where the command reports to a server of its own (``PREFECT_API_URL``: a deployment's flow run, a shared
    server): there the run's logs are read, and a stopped run's last lines ("Crash detected! Execution was aborted
    by a termination signal.") were dropped. Not to a temporary server: Ctrl-C, which a terminal sends to the whole
    process group, has stopped it, and sending took 5 s of failed connections. Best effort: the command is leaving."""
    handlers = sys.modules.get("prefect.logging.handlers")  # not imported: no log line went to Prefect
    if handlers is None:
        return
    with contextlib.suppress(Exception):
        from prefect.settings import PREFECT_API_URL

        if PREFECT_API_URL.value():
            handlers.APILogWorker.drain_all(timeout=LOG_SEND_S)


def main(argv: list[str] | None = None) -> int:
    """The ``undertone`` command; an exit status of 128 + N when signal N (SIGINT, SIGTERM) stopped it."""
    global _stopped_by
    _stopped_by = None
    handlers = {signum: signal.signal(signum, stop_on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = run_command(argv)
    except KeyboardInterrupt:
        leave_stopped(128 + signal.SIGINT)
    except BaseException:
        if _stopped_by is None:
            raise
        leave_stopped(128 + _stopped_by)
    finally:  # for a caller that runs ``main`` in its own process (tests)
        for signum, handler in handlers.items():
            if handler is not None:  # None: installed outside Python, cannot be put back
                signal.signal(signum, handler)
    if _stopped_by is not None:  # stopped, whatever the flow made of the signal's exception
        leave_stopped(128 + _stopped_by)
    return status


def run_command(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "run":
        check_inputs(args)
    if args.command in LABELING_COMMANDS:
        from transforms.pipeline import warm_up_workers

        warm_up_workers(args.runner, args.model, args.beam_arg, tasks=args.tasks, device=args.device,
                        precision=args.precision, zero_shot=getattr(args, "zero_shot", None))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # anyio imports its asyncio backend lazily, from whichever thread asks first; two of Prefect's event-loop threads
    # asking at once deadlocked on the import locks, and a run that had finished its flow hung for good (seen twice in
    # the SIGTERM test). Imported here, in the main thread, before Prefect starts them.
    import anyio._backends._asyncio  # noqa: F401
    if args.command == "run":
        from flows.run import run_flow

        columns = {field: getattr(args, f"{field}_column") for field in COLUMN_FIELDS
                   if getattr(args, f"{field}_column")}
        guard_temporary_server()
        state = run_flow(inputs=args.inputs, output=args.output, date=args.date, source=args.source,
                         runner=args.runner, model_dir=args.model, tasks=args.tasks, device=args.device,
                         precision=args.precision,
                         beam_args=args.beam_arg, columns=columns or None,
                         hash_addresses=not args.keep_addresses, redact_pii=args.redact_pii,
                         zero_shot=args.zero_shot, return_state=True)
        if not state.is_completed():  # Prefect has logged the traceback; one line says why it stopped
            print(f"run failed: {state.result(raise_on_failure=False)}", file=sys.stderr)
            return 1
        result = state.result()
        print(json.dumps(result, indent=2) if args.json else "\n".join(summary_lines(result, args.output)))
        return 0 if result["reconciled"] is not False else 1
    if args.command in ("finetune", "evaluate", "fewshot"):
        return run_model_command(args)
    if args.command in ("daily", "backfill"):
        return run_schedule_command(args)
    if args.command == "report":
        from flows.report import report_flow

        if not os.path.isdir(args.output):  # a typo far more often than a deployment that has labeled nothing yet
            build_parser().error(f"--output: no output root at {args.output}: point it at the folder `undertone run` "
                                 "wrote")
        guard_temporary_server()
        state = report_flow(output=args.output, html=args.html, start=args.start, end=args.end,
                            registry=args.registry, return_state=True)
        if not state.is_completed():  # Prefect has logged the traceback; one line says why it stopped
            print(f"report failed: {state.result(raise_on_failure=False)}", file=sys.stderr)
            return 1
        print(json.dumps(state.result(), indent=2))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
