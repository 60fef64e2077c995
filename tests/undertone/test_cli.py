"""The command line: `--config` files (the shipped example, flags that override it, broken files), a `--model`
that is not a bundle, and how a failed run exits."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import REPO, SENTIMENT, build_tiny_bundle
from undertone.cli import main, parse_args

BANK_INBOX = REPO / "deploy" / "configs" / "bank-support-inbox.yaml"


def test_the_shipped_config_sets_run_options_and_flags_win(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_args(["run", "--config", str(BANK_INBOX), "inbox/", "--output", "out"])
    assert (args.source, args.tasks, args.redact_pii) == ("email", ["sentiment", "spam", "intent", "topic"], True)
    assert "fraud" in args.zero_shot["topic"]
    overridden = parse_args(["run", "--config", str(BANK_INBOX), "inbox/", "--output", "out", "--source", "auto",
                             "--tasks", "sentiment"])
    assert (overridden.source, overridden.tasks) == ("auto", ["sentiment"])
    assert "--tasks leaves out the config's zero-shot topic; its labels are not used" in capsys.readouterr().err


def test_a_config_whose_tasks_leave_out_its_zero_shot_task_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped bank-inbox config did this: its topic taxonomy was ignored without a word."""
    config = tmp_path / "inbox.yaml"
    config.write_text(BANK_INBOX.read_text(encoding="utf-8").replace("intent, topic]", "intent]"), encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["run", "--config", str(config), "inbox/", "--output", "out"])
    assert exit_info.value.code == 2
    assert "zero_shot defines topic, which its tasks (sentiment, spam, intent) leave out" in capsys.readouterr().err


def test_a_zero_shot_task_named_with_a_space_is_a_usage_error(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``my topic:`` wrote columns named ``my topic`` and ``my topic_score``, which SQL must quote."""
    config = tmp_path / "inbox.yaml"
    config.write_text(BANK_INBOX.read_text(encoding="utf-8").replace("intent, topic]", "intent, my topic]")
                      .replace("\n  topic:\n", "\n  my topic:\n"), encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["run", "--config", str(config), "inbox/", "--output", "out"])
    assert exit_info.value.code == 2
    assert "task name 'my topic' is not lower-case letters" in capsys.readouterr().err


@pytest.mark.parametrize(("content", "message"), [
    ("sorce: email\n", "unknown run settings ['sorce']; a config sets date, source, runner"),
    ("output: out\n", "unknown run settings ['output']"),
    ("columns:\n  txt: body\n", "unknown run settings ['columns: txt']"),
    ("- source\n- email\n", "expected a mapping of run settings"),
    ("columns: body\n", "columns: expected a mapping"),
    ("tasks: [sentiment\n", "not valid YAML"),
    (None, "No such file or directory"),
])
def test_a_broken_config_is_a_usage_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          content: str | None, message: str) -> None:
    config = tmp_path / "run.yaml"
    if content is not None:
        config.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["run", "--config", str(config), "inbox/", "--output", "out"])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(("content", "message"), [
    ("tasks: 5\n", "tasks: expected text, got int 5"),
    ("tasks: [sentiment, 5]\n", "tasks: expected text, got int 5"),
    ("zero_shot: [urgent, routine]\n", "zero_shot: Input should be a valid dictionary"),
    ("zero_shot:\n  urgency:\n    urgent: needs an answer today\n", "zero_shot['urgency']: Dictionary should have at "
                                                                      "least 2 items"),
    ("zero_shot:\n  urgency:\n    urgent: today\n    routine:\n", "zero_shot['urgency']['routine']: Input should "
                                                                   "be a valid string"),
    ("zero_shot:\n  urgency:\n    '': today\n    routine: later\n", "zero_shot['urgency']['']: Value error, must "
                                                                     "not be blank"),
    ("zero_shot:\n  urgency:\n    urgent: ' '\n    routine: later\n", "zero_shot['urgency']['urgent']: Value "
                                                                      "error, must not be blank"),
    ("date: 1900-01-01\n", "date: logical date 1900-01-01 is before 1970-01-01"),
    ("date: 9999-12-31\n", "date: logical date 9999-12-31 is after tomorrow"),
    ("date: 2026-11-20 10:00:00\n", "date: expected a date as YYYY-MM-DD, got '2026-11-20T10:00:00'"),
    ("source: tweets\n", "source: invalid choice: 'tweets' (choose from 'auto', 'email', 'review', 'social')"),
    ("precision: fp16\n", "precision: invalid choice: 'fp16'"),
    ("redact-pii: maybe\n", "redact-pii: expected true or false, got 'maybe'"),
    ("beam_arg: 8099\n", "beam_arg: expected text, got int 8099"),
    ("columns:\n  text: 3\n", "columns: text: expected text, got int 3"),
    ("tasks:\n", "tasks: the value is empty; give one or delete the line"),
    ("source: email\ndate:\n", "date: the value is empty"),
    ("redact-pii:\n", "redact-pii: the value is empty"),
    ("beam_arg:\n", "beam_arg: the value is empty"),
    ("columns:\n", "columns: the value is empty"),
    ("columns:\n  text:\n", "columns: text: the value is empty"),
    ("zero_shot:\n", "zero_shot: the value is empty"),
    ("source: email\ntasks: [sentiment]\nsource: review\n", "source: given twice (lines 1 and 3); keep one"),
    ("columns:\n  text: body\n  text: subject\n", "text: given twice (lines 2 and 3)"),
    ("[]\n", "expected a mapping of run settings (source: email, ...), got list []"),
    ("email\n", "expected a mapping of run settings (source: email, ...), got str 'email'"),
])
def test_a_bad_config_value_is_a_usage_error_naming_its_key_and_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str) -> None:
    """Config values skipped the flags' types and choices: ``tasks: 5`` and ``zero_shot: [..]`` crashed with a
    TypeError, ``source: tweets`` and ``date: 1900-01-01`` failed the flow after Prefect had started. A key with
    no value said "got NoneType None", an empty ``columns:`` or ``zero_shot:``, a key given twice (the last won)
    and an empty list for the whole file were taken without a word."""
    config = tmp_path / "run.yaml"
    config.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["run", "--config", str(config), "inbox/", "--output", "out"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"undertone: error: --config {config}: {message}" in err
    assert "Traceback" not in err


def test_config_values_are_what_the_same_flags_give(tmp_path: Path) -> None:
    """YAML's own types that mean what the flag means are taken: an unquoted date (a ``datetime.date``, which
    Prefect refused), a single string for a repeatable flag (a list of its characters before), a list of tasks."""
    config = tmp_path / "run.yaml"
    config.write_text("date: 2026-11-20\nbeam_arg: --direct_num_workers=2\ntasks: [sentiment, spam]\n"
                      "keep-addresses: true\ncolumns:\n  text: body\n", encoding="utf-8")
    from_config = parse_args(["run", "--config", str(config), "inbox/", "--output", "out"])
    from_flags = parse_args(["run", "inbox/", "--output", "out", "--date", "2026-11-20",
                             "--beam-arg=--direct_num_workers=2", "--tasks", "sentiment,spam", "--keep-addresses",
                    "--text-column", "body"])
    assert vars(from_config) == {**vars(from_flags), "config": str(config)}
    assert (from_config.date, from_config.beam_arg) == ("2026-11-20", ["--direct_num_workers=2"])
    overridden = parse_args(["run", "--config", str(config), "inbox/", "--output", "out", "--date", "2026-11-19",
                             "--beam-arg=--direct_running_mode=multi_processing"])
    assert overridden.date == "2026-11-19"
    assert overridden.beam_arg == ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


@pytest.mark.parametrize("command", [["run", "inbox/"], ["daily", "--input-root", "inbox/"]])
def test_a_model_folder_that_is_not_a_bundle_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              command: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args([*command, "--output", "out", "--model", str(tmp_path)])
    assert exit_info.value.code == 2 and "bundle.json is missing; not a model bundle" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["run", "inbox/"], ["daily", "--input-root", "inbox/"]])
def test_a_task_the_model_does_not_have_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                                         command: list[str]) -> None:
    """A misspelled task failed the flow after Prefect started, and ``daily`` had withdrawn the date's completion
    record by then."""
    with pytest.raises(SystemExit) as exit_info:
        parse_args([*command, "--output", "out", "--tasks", "sentiment,sentimnt"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "--tasks: undertone-base@" in err and "has no task sentimnt; it has intent, sentiment, spam, topic" in err
    assert parse_args([*command, "--output", "out", "--tasks", "sentiment,intent"]).tasks == ["sentiment", "intent"]


@pytest.mark.parametrize("command", [["run", "inbox/"], ["daily", "--input-root", "inbox/"],
                                     ["backfill", "--input-root", "inbox/", "--start", "2026-11-18", "--end",
                             "2026-11-20"]])
def test_a_runner_without_an_option_set_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                                         command: list[str]) -> None:
    """``--runner dataflw`` failed the flow run after Prefect started; ``daily`` had withdrawn the date's completion
    record by then, and a backfill retried every day for it."""
    with pytest.raises(SystemExit) as exit_info:
        parse_args([*command, "--output", "out", "--runner", "dataflw"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "--runner: unknown runner 'dataflw'; option sets: dataflow, flink, local, multiprocess, portable" in err
    assert parse_args([*command, "--output", "out", "--runner", "multiprocess"]).runner == "multiprocess"


@pytest.mark.parametrize("command", [["run", "inbox/"], ["daily", "--input-root", "inbox/"],
                                     ["report", "--html", "report.html"]])
def test_an_object_store_output_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    """``gs://bucket/out`` became a local folder ``gs:/bucket/out``: the run "succeeded" and wrote nothing where
    the user looked."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        parse_args([*command, "--output", "gs://bucket/out"])
    assert exit_info.value.code == 2
    assert "--output: output 'gs://bucket/out' is a URL; object-store outputs are not supported yet" in (
        capsys.readouterr().err)
    assert not any(tmp_path.iterdir())
    assert parse_args([*command, "--output", "out/gs:data"]).output == "out/gs:data"


def test_an_output_linked_to_a_missing_folder_is_a_usage_error(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """It failed the run with mkdir's ``FileExistsError`` traceback once Prefect had started."""
    (tmp_path / "out").symlink_to(tmp_path / "missing")
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["run", "inbox/", "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert f"is a symbolic link to {tmp_path / 'missing'}, which does not exist" in capsys.readouterr().err


def test_a_zero_shot_task_from_the_config_is_a_known_task(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("zero_shot:\n  urgency:\n    urgent: needs an answer today\n    routine: can wait\n",
                      encoding="utf-8")
    args = parse_args(["run", "--config", str(config), "inbox/", "--output", "out", "--tasks", "sentiment,urgency"])
    assert args.tasks == ["sentiment", "urgency"]


def test_an_impossible_date_names_the_expected_form(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["run", "inbox/", "--output", "out", "--date", "2026-02-30"])
    assert exit_info.value.code == 2 and "expected a date as YYYY-MM-DD, got '2026-02-30'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["run", "inbox/", "--date"], ["daily", "--input-root", "inbox/", "--date"],
                                     ["backfill", "--input-root", "inbox/", "--start", "2026-11-18", "--end"],
                            ["report", "--html", "report.html", "--start", "2026-11-18", "--end"],
                                     ["report", "--html", "report.html", "--start"]])
def test_a_far_off_date_is_a_usage_error(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    """``--date 9999-12-31`` wrote a far-future partition that dashboards then showed; a report's typo'd year
    (``--start 2062-11-18``) rendered an empty page."""
    with pytest.raises(SystemExit) as exit_info:
        parse_args([*command, "9999-12-31", "--output", "out"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "logical date 9999-12-31 is after tomorrow" in err
    assert "Traceback" not in err


def test_a_report_whose_start_is_after_its_end_is_a_usage_error(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """``report --start 2026-11-20 --end 2026-11-18`` wrote an empty page and exited 0."""
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--output", str(tmp_path), "--html", str(tmp_path / "report.html"),
              "--start", "2026-11-20", "--end", "2026-11-18"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--end 2026-11-18 is before --start 2026-11-20" in err
    assert not (tmp_path / "report.html").exists()


def test_a_report_of_a_missing_output_root_is_a_usage_error(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A typo'd ``--output`` started Prefect, failed its flow run and left the command with an uncaught traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--output", str(tmp_path / "ouput"), "--html", str(tmp_path / "report.html")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert f"--output: no output root at {tmp_path / 'ouput'}: point it at the folder `undertone run` wrote" in err
    assert "Traceback" not in err and not (tmp_path / "report.html").exists()


def test_a_report_that_fails_at_run_time_exits_1_with_the_reason(prefect_harness, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A page that cannot be written (``--html`` names a folder) ended the command with an uncaught traceback."""
    (tmp_path / "out").mkdir()
    (tmp_path / "report.html").mkdir()
    code = main(["report", "--output", str(tmp_path / "out"), "--html", str(tmp_path / "report.html")])
    err = capsys.readouterr().err
    assert code == 1 and "report failed: [Errno 21] Is a directory" in err


def test_a_backfill_whose_start_is_after_its_end_is_a_usage_error(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``backfill --start 2026-11-20 --end 2026-11-18`` started Prefect and failed its flow run (exit 1, a
    traceback); like the report's, swapped dates are a usage error now, before anything starts."""
    with pytest.raises(SystemExit) as exit_info:
        main(["backfill", "--input-root", str(tmp_path), "--output", str(tmp_path / "out"),
              "--start", "2026-11-20", "--end", "2026-11-18"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--end 2026-11-18 is before --start 2026-11-20" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--retries", "-1", "must be at least 0, got -1"),
    ("--max-concurrency", "0", "must be at least 1, got 0"),
    ("--retry-delay", "-3", "must be at least 0, got -3"),
    ("--retry-delay", "nan", "must be at least 0, got nan"),
    ("--retries", "two", "expected a number, got 'two'"),
])
def test_a_backfills_negative_count_or_delay_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               flag: str, value: str, message: str) -> None:
    """``--retries -1`` ran with no retry and ``--max-concurrency 0`` with one day at a time, without a word."""
    with pytest.raises(SystemExit) as exit_info:
        main(["backfill", "--input-root", str(tmp_path), "--output", str(tmp_path / "out"),
              "--start", "2026-11-18", "--end", "2026-11-20", flag, value])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"argument {flag}: {message}" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("inputs", "message"), [
    (["no-such-*.eml"], "input 'TMP/no-such-*.eml' matches no file"),
    (["missing.csv"], "input 'TMP/missing.csv' matches no file"),
    (["empty"], "input folder 'TMP/empty' holds no file to read"),
])
def test_an_input_that_yields_no_file_is_a_usage_error(tiny_bundle: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str], inputs: list[str],
                                              message: str) -> None:
    """A typo'd glob failed the run with Prefect's traceback and exit 1; the README calls it a usage error."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["run", *(str(tmp_path / i) for i in inputs), "--output", str(tmp_path / "out"),
              "--model", str(tiny_bundle)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message.replace("TMP", str(tmp_path)) in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_the_command_starts_without_beams_bigquery_notice_and_keeps_other_warnings() -> None:
    """Beam without its gcp extra logs that apitools is missing on every import; the command's output starts clean,
    while other root-logger warnings still print."""
    probe = "import undertone, logging, apache_beam; logging.warning('a warning of our own')"
    started = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert started.stderr.splitlines() == ["WARNING:root:a warning of our own"]
    plain = subprocess.run([sys.executable, "-c", "import apache_beam"], capture_output=True, text=True, check=True)
    assert "apitools not found" in plain.stderr  # the notice this filters still exists in the pinned Beam


@pytest.mark.parametrize(("content", "task", "message"), [
    ("text,label\nlovely,positive\nit was fine I guess,mixed\n", "sentiment",
     "DATA: labels ['mixed'] are not labels of task 'sentiment'"),
    ("text,score\nlovely,5\n", "sentiment", "DATA: need a text and a label column, found ['text', 'score']"),
    ("", "sentiment", "DATA: empty file"),
    ("text,label\nlovely,positive\n", "sentimnt", "--task: tiny-test@0.0.1 has no task 'sentimnt'; it has"),
])
def test_a_bad_evaluation_input_is_a_usage_error_in_one_line(tiny_bundle: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str], content: str,
                                                   task: str, message: str) -> None:
    """These failed the flow: Prefect's traceback, then ``evaluate failed: ...`` (an empty file's without its name)."""
    data = tmp_path / "gold.csv"
    data.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--task", task, "--data", str(data), "--model", str(tiny_bundle)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message.replace("DATA", str(data)) in err and "Traceback" not in err


def test_an_evaluation_says_which_of_several_columns_it_took_as_the_labels(
        prefect_harness, tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "scored.csv"
    data.write_text("text,sentiment,label\nlovely,negative,positive\nawful,positive,negative\n", encoding="utf-8")
    assert main(["evaluate", "--task", "sentiment", "--data", str(data), "--model", str(tiny_bundle)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 2 and report["notes"] == [
        f"{data}: took column 'label' as the gold labels, not 'sentiment'; name another with --label-column "
        "(and the text with --text-column)"]


def test_an_evaluation_that_fails_at_run_time_exits_1_with_the_reason(
        prefect_harness, tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("the encoder ran out of memory")

    monkeypatch.setattr("flows.evaluate.predict_task", broken)
    data = tmp_path / "gold.csv"
    data.write_text("text,label\nlovely,positive\n", encoding="utf-8")
    code = main(["evaluate", "--task", "sentiment", "--data", str(data), "--model", str(tiny_bundle)])
    assert code == 1 and "evaluate failed: the encoder ran out of memory" in capsys.readouterr().err


@pytest.mark.parametrize(("content", "message"), [
    ("text,score\nlovely,5\n", "DATA: need a text and a label column, found ['text', 'score']"),
    ("text,label\nlovely,positive\ngreat,positive\n",
     "DATA: a few-shot task needs examples of at least two labels, got ['positive']"),
    ("text,label\nthe bill is wrong,billing\ncharged twice,Billing\nparcel late,delivery\n",
     "DATA: labels 'Billing' and 'billing' differ only in case; write each label one way"),
])
def test_bad_fewshot_examples_are_a_usage_error_in_one_line(tiny_bundle: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str], content: str,
                                                   message: str) -> None:
    examples = tmp_path / "examples.csv"
    examples.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["fewshot", "--task", "complaint", "--examples", str(examples), "--model", str(tiny_bundle),
              "--output", str(tmp_path / "new"), "--registry", str(tmp_path / "registry.json")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message.replace("DATA", str(examples)) in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("task", ["language", "date", "sentiment_score", "sentiment"])
def test_a_fewshot_task_named_like_an_output_column_is_a_usage_error(tiny_bundle: Path, tmp_path: Path, task: str,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """``fewshot --task language`` made a bundle whose runs wrote two ``language`` columns; ``--task date`` one
    whose labels the partition's date replaced."""
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["fewshot", "--task", task, "--examples", "ex.csv", "--output", str(tmp_path / "new"),
                    "--model", str(tiny_bundle), "--registry", str(tmp_path / "registry.json")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--task: " in err and repr(task) in err
    assert not (tmp_path / "new").exists()


def test_a_fewshot_output_that_exists_is_a_usage_error_before_the_model_loads(
        tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It was a FileExistsError traceback after the encoder had loaded and the head had been fitted."""
    output = tmp_path / "complaints-1"
    output.mkdir()
    (output / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["fewshot", "--task", "complaint", "--examples", "ex.csv", "--output", str(output),
                    "--model", str(tiny_bundle), "--registry", str(tmp_path / "registry.json")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert f"--output: {output} exists; choose a new folder for the new bundle version" in err
    assert [p.name for p in output.iterdir()] == ["notes.txt"]


def test_fewshot_registers_the_new_bundle_in_the_registry_it_is_given(
        tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """fewshot always wrote the repository's models/registry.json: a test of it (or a trial run) changed the
    default model of every run from that clone."""
    repository_registry = REPO / "models" / "registry.json"
    before = repository_registry.read_bytes() if repository_registry.exists() else None
    examples = tmp_path / "examples.csv"
    examples.write_text("text,label\n" + "".join(f"refund problem {i},billing\ncannot login {i},access\n"
                                                 for i in range(4)), encoding="utf-8")
    registry = tmp_path / "registry.json"
    assert main(["fewshot", "--task", "complaint", "--examples", str(examples), "--model", str(tiny_bundle),
                 "--output", str(tmp_path / "new"), "--registry", str(registry), "--promote"]) == 0
    entry = json.loads(capsys.readouterr().out)
    assert entry["model_version"].startswith("tiny-test@0.0.1+complaint.")
    assert entry["default"] == entry["model_version"]
    assert json.loads(registry.read_text(encoding="utf-8"))["default"] == entry["model_version"]
    after = repository_registry.read_bytes() if repository_registry.exists() else None
    assert after == before


@pytest.mark.parametrize(("options", "message"), [
    (["--tasks", "sentiment,sentimnt"],
     "--tasks: no training recipe for 'sentimnt'; finetune trains sentiment, intent, spam"),
    (["--tasks", "topic"], "--tasks: no training recipe for 'topic'"),
    (["--epochs", "0"], "--epochs: expected a number of epochs above 0, got 0.0"),
    (["--learning-rate=-1e-4"], "--learning-rate: expected a learning rate above 0, got -0.0001"),
    (["--soup", "--sst2-binary"], "--soup trains its own ingredients"),
    (["--soup-of", "BUNDLE"], "--soup-of: a soup needs at least two bundles"),
    (["--soup-of", "BUNDLE,TMP/missing"], "--soup-of: TMP/missing: bundle.json is missing"),
    (["--init-from", "TMP/missing"], "--init-from: TMP/missing: bundle.json is missing"),
    (["--data-dir", "TMP/missing"], "--data-dir: TMP/missing is not a folder"),
])
def test_bad_finetune_options_are_a_usage_error_before_anything_trains(
        tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        options: list[str], message: str) -> None:
    """A typo'd task trained nothing and wrote (and registered) a bundle without it; the other options failed the
    flow with a traceback, some of them after hours of training (a soup of one bundle)."""
    def must_not_run(**_: object) -> None:
        raise AssertionError("the finetune flow started")

    monkeypatch.setattr("flows.finetune.finetune_flow", must_not_run)
    arguments = [option.replace("BUNDLE", str(tiny_bundle)).replace("TMP", str(tmp_path)) for option in options]
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "--output", str(tmp_path / "new"), *arguments])
    err = capsys.readouterr().err
    expected = message.replace("BUNDLE", str(tiny_bundle)).replace("TMP", str(tmp_path))
    assert exit_info.value.code == 2 and expected in err and "Traceback" not in err
    assert len(err.strip().splitlines()[-1]) < 300 and not (tmp_path / "new").exists()


def test_running_an_old_bundle_whose_task_clashes_with_a_column_is_a_usage_error(
        tmp_path: Path, tiny_encoder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = build_tiny_bundle(tmp_path / "old-bundle", tiny_encoder,
                               {"sentiment": SENTIMENT, "language": ("de", "en", "fr")})
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["run", "inbox/", "--output", str(tmp_path / "out"), "--model", str(bundle),
                    "--tasks", "sentiment,language"])
    assert exit_info.value.code == 2
    assert "tiny-test@0.0.1: task 'language' would write a column 'language'" in capsys.readouterr().err


def test_python_dash_m_undertone_is_the_command() -> None:
    """``python -m undertone`` failed ("'undertone' is a package and cannot be directly executed")."""
    done = subprocess.run([sys.executable, "-m", "undertone", "report", "--help"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0 and "--start" in done.stdout


def write_tweets(folder: Path, count: int) -> Path:
    """A JSON Lines file of ``count`` short tweets in ``folder``, an input to stop a command in."""
    folder.mkdir()
    tweets = folder / "tweets.jsonl"
    tweets.write_text("".join(json.dumps({"id": str(n), "text": f"the delivery {n} was late again"}) + "\n"
                              for n in range(count)))
    return tweets


def own_temporary_server(tmp_path: Path) -> dict[str, str]:
    """An environment in which a command starts a temporary Prefect server of its own (no ``PREFECT_API_*``)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_API")}
    return env | {"PREFECT_HOME": str(tmp_path / "prefect")}


def prefect_servers(pid: int) -> list[psutil.Process]:
    """The temporary Prefect servers among ``pid``'s descendants; one that exits meanwhile (a zombie has no
    command line to read) is not one."""
    servers = []
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "uvicorn" in " ".join(child.cmdline()):
                servers.append(child)
    return servers


@contextlib.contextmanager
def running(command: list[str], **options: Any) -> Iterator[subprocess.Popen[str]]:
    """``subprocess.Popen`` for a test that stops the command itself. ``Popen``'s own exit waits for the child with
    no timeout, so an assertion that failed while the command ran on (a hung command, one that finished before the
    test could stop it) hung the whole suite instead of failing one test; the command and what it started (its
    Prefect server) are killed first."""
    with subprocess.Popen(command, **options) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                with contextlib.suppress(psutil.Error):
                    for descendant in psutil.Process(process.pid).children(recursive=True):
                        descendant.kill()
                process.kill()


def test_sigterm_unwinds_the_run_and_stops_prefects_temporary_server(tiny_bundle: Path, tmp_path: Path) -> None:
    """`kill`, `timeout` or a stopped container sends SIGTERM. Its default action ended the command
    at once: Prefect's temporary API server, which only an exit hook stops, lived on (one uvicorn per cancelled run)
    and the run's staging folder waited for the next run to clean it up."""
    tweets = write_tweets(tmp_path / "in", 5_000)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "undertone", "run", str(tweets.parent), "--output", str(out),
               "--model", str(tiny_bundle), "--date", "2026-11-20"]
    with running(command, cwd=REPO, env=own_temporary_server(tmp_path),
                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as run:
        deadline = time.monotonic() + 240
        while not any((out / "_staging").glob("*/*")):  # the job has claimed its staging folder: it is running
            assert run.poll() is None, run.stderr.read() if run.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        servers = prefect_servers(run.pid)
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=120) == 128 + signal.SIGTERM
    assert len(servers) == 1
    _, alive = psutil.wait_procs(servers, timeout=30)
    assert not alive
    assert not list((out / "_staging").iterdir())
    assert not (out / "labeled").exists()


STOPPED_HOLDING_THE_IMPORT_LOCK = """
import _imp, multiprocessing.util, threading
from undertone import cli

cli.LEAVE_DEADLINE_S = 2.0
_imp.acquire_lock()  # as the main thread holds it inside importlib when a signal lands there
importer = threading.Thread(target=__import__, args=("colorsys",))  # a late import in another thread: it waits
importer.start()
multiprocessing.util.Finalize(importer, importer.join, exitpriority=10)  # a pool's finalizer joins its threads
cli.leave_stopped(143)
"""


def test_a_stopped_command_leaves_even_when_its_cleanup_waits_for_good() -> None:
    """A SIGTERM that landed while the main thread held the import lock (a late import, after the run had committed)
    left multiprocessing's exit finalizers joining a thread that waited for that lock: the command never ended
    (seen once in ``make test``: the SIGTERM test's run hung for 8 minutes, its output committed)."""
    stopped = subprocess.run([sys.executable, "-c", STOPPED_HOLDING_THE_IMPORT_LOCK], cwd=REPO, capture_output=True,
                             text=True, timeout=120)
    assert stopped.returncode == 143 and "undertone: stopped by SIGTERM" in stopped.stderr


STOPPED_IN_THE_MODEL_STAGE = """
import sys, threading, time
from pathlib import Path
from models.classifier import Classifier
from undertone.cli import main

def slow_pass(self, batch):  # the model stage, where the SIGTERM lands
    Path(sys.argv[1]).touch()
    time.sleep(300)

Classifier.logits_for = slow_pass
threading.Thread(target=threading.Event().wait, name="left-blocked").start()  # as Beam's threads can be
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_signal_in_the_model_stage_stops_the_command_and_nothing_waits_on_its_threads(
        stop: signal.Signals, tiny_bundle: Path, tmp_path: Path) -> None:
    """Prefect turns SIGTERM into an exception inside the flow, Ctrl-C is a KeyboardInterrupt; raised in the model
    stage, Beam reported either as a RuntimeError, so the run "failed" and the command exited 1. After Ctrl-C,
    which a terminal sends to the whole process group, Prefect's temporary server among them, the client spent a
    minute retrying to report that failure to the gone server. And once the command unwound, Python's shutdown
    waited for every thread still running: a thread the signal left blocked made it hang (one in the test suite
    did), a thread inside native code made it abort. Now it exits 128 + the signal within seconds, its server
    stopped."""
    tweets = write_tweets(tmp_path / "in", 50)
    out, labeling = tmp_path / "out", tmp_path / "labeling"
    command = [sys.executable, "-c", STOPPED_IN_THE_MODEL_STAGE, str(labeling), "run", str(tweets.parent),
               "--output", str(out), "--model", str(tiny_bundle), "--date", "2026-11-20"]
    with running(command, cwd=REPO, env=own_temporary_server(tmp_path),
                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                 start_new_session=True) as run:  # its own process group, as a terminal's job has
        deadline = time.monotonic() + 240
        while not labeling.exists():
            assert run.poll() is None, run.stderr.read() if run.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        servers = prefect_servers(run.pid)
        if stop == signal.SIGINT:
            os.killpg(run.pid, stop)
        else:
            run.send_signal(stop)
        status = run.wait(timeout=30)
        stderr = run.stderr.read() if run.stderr else ""
    assert status == 128 + stop
    assert f"stopped by {stop.name}" in stderr and "run failed" not in stderr
    assert len(servers) == 1
    _, alive = psutil.wait_procs(servers, timeout=30)
    assert not alive
    assert not list((out / "_staging").iterdir())
    assert not (out / "labeled").exists()


STOPPED_WHILE_PREFECT_IMPORTS = """
import importlib.abc, os, signal, sys
from undertone.cli import main

class StopDuringImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):  # prefect.context is half made when it imports this module
        if name == "prefect._flow_run_suspension":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGTERM)
        return None

sys.meta_path.insert(0, StopDuringImport())
sys.exit(main(sys.argv[1:]))
"""


def test_a_signal_while_the_command_imports_stops_it_at_once(tiny_bundle: Path, tmp_path: Path) -> None:
    """A SIGTERM in the command's first seconds lands in an import (Prefect's takes about 2 s). The handler's own
    import of Prefect's settings then met the half-made ``prefect.context`` and raised ImportError, which Prefect's
    plugin loader caught and logged ("Failed to initialize plugins ... partially initialized module"): the whole run
    went on and only its end said "stopped by SIGTERM". Nothing has started that needs unwinding: it stops there."""
    tweets = write_tweets(tmp_path / "in", 50)
    out = tmp_path / "out"
    command = [sys.executable, "-c", STOPPED_WHILE_PREFECT_IMPORTS, "run", str(tweets.parent), "--output", str(out),
               "--model", str(tiny_bundle), "--date", "2026-11-20"]
    stopped = subprocess.run(command, cwd=REPO, env=own_temporary_server(tmp_path), capture_output=True, text=True,
                             timeout=240)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert "stopped by SIGTERM" in stopped.stderr
    assert "Traceback" not in stopped.stderr and "Failed to initialize plugins" not in stopped.stderr
    assert not out.exists()


def test_a_stopped_run_sends_its_last_log_lines_to_the_prefect_server_it_reports_to(
        prefect_harness: None, tiny_bundle: Path, tmp_path: Path) -> None:
    """With ``PREFECT_API_URL`` set (a deployment's flow run, a shared server), the server is where the run's logs
    are read, and the last ones, Prefect's "Crash detected! Execution was aborted by a termination signal." among
    them, were still in its client's batch when the stopped command left: the UI showed a Crashed run and no line
    saying why."""
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    tweets = write_tweets(tmp_path / "in", 50)
    out, labeling = tmp_path / "out", tmp_path / "labeling"
    command = [sys.executable, "-c", STOPPED_IN_THE_MODEL_STAGE, str(labeling), "run", str(tweets.parent),
               "--output", str(out), "--model", str(tiny_bundle), "--date", "2026-11-20"]
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "prefect")}
    with running(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                 text=True) as run:
        deadline = time.monotonic() + 240
        while not labeling.exists():
            assert run.poll() is None, run.stderr.read() if run.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=30) == 128 + signal.SIGTERM
    flow_runs = httpx.post(f"{api}/flow_runs/filter", json={"limit": 200}, timeout=30).json()
    (flow_run,) = [flow_run for flow_run in flow_runs if flow_run["parameters"].get("output") == str(out)]
    assert flow_run["state"]["type"] == "CRASHED"
    logs = httpx.post(f"{api}/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run["id"]]}}},
                      timeout=30).json()
    assert "Crash detected! Execution was aborted by a termination signal." in [log["message"] for log in logs]


def test_sigkill_leaves_no_prefect_server_behind(tiny_bundle: Path, tmp_path: Path) -> None:
    """SIGKILL (the OOM killer, ``kill -9``, a CI runner's hard timeout) runs no exit hook: the temporary server
    ran on, adopted by init, one uvicorn per killed run. Its guard stops it."""
    tweets = write_tweets(tmp_path / "in", 5_000)
    command = [sys.executable, "-m", "undertone", "run", str(tweets.parent), "--output", str(tmp_path / "out"),
               "--model", str(tiny_bundle), "--date", "2026-11-20"]
    with running(command, cwd=REPO, env=own_temporary_server(tmp_path),
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as run:
        deadline = time.monotonic() + 240
        servers: list[psutil.Process] = []
        while not servers:
            assert run.poll() is None and time.monotonic() < deadline
            servers = prefect_servers(run.pid)
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
        assert run.wait(timeout=60) == -signal.SIGKILL
    _, alive = psutil.wait_procs(servers, timeout=30)
    assert not alive
