"""The daily and backfill flows through the CLI: resumable, idempotent, failing loudly, with artifacts."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.backfill import backfill_flow, date_range, labeled_otherwise
from flows.daily import daily_flow, find_date_inputs, resolve_date
from tests.conftest import SAMPLES
from tests.object_store import FakeObjectStore
from transforms import sinks
from transforms.aggregates import read_aggregates
from transforms.ingest.read import expand_inputs
from transforms.sinks import (
    claim_staging,
    commit_run,
    dead_letter_partition,
    labeled_partition,
    mark_date_complete,
    read_date_marker,
    staging_root,
)
from undertone.cli import main

BY_DATE = SAMPLES / "by_date"
DAYS = ("2026-11-18", "2026-11-19", "2026-11-20")
EXPECTED = {  # input, labeled, dead-letter per day
    "2026-11-18": (10, 10, 0),
    "2026-11-19": (11, 10, 1),  # a JSON line cut off mid-string
    "2026-11-20": (11, 9, 2),  # a gzip file saved as .eml, a blank post
}


def labeled(output: Path) -> pd.DataFrame:
    frame = pd.read_parquet(output / "labeled")
    frame["date"] = frame["date"].astype(str)
    return frame.sort_values("doc_id").reset_index(drop=True)


def backfill(capsys: pytest.CaptureFixture[str], output: Path, model: Path, *extra: str) -> dict:
    code = main(["backfill", "--input-root", str(BY_DATE), "--start", DAYS[0], "--end", DAYS[-1], "--output",
                 str(output), "--model", str(model), "--json", *extra])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_date_inputs_accept_both_layouts() -> None:
    found = find_date_inputs.fn(str(BY_DATE), "2026-11-19").folders
    assert [Path(path).relative_to(BY_DATE).as_posix() for path in found] == [
        "email/2026-11-19", "reviews/date=2026-11-19", "social/2026-11-19"]
    with pytest.raises(FileNotFoundError, match="2026-11-21"):
        find_date_inputs.fn(str(BY_DATE), "2026-11-21")
    assert date_range("2026-11-30", "2026-12-01") == ["2026-11-30", "2026-12-01"]


def test_a_far_off_date_or_range_is_refused() -> None:
    """A deployment's ``date`` parameter or a backfill's range with a mistyped year wrote far-off partitions."""
    with pytest.raises(ValueError, match="logical date 9999-12-31 is after tomorrow"):
        resolve_date("9999-12-31")
    with pytest.raises(ValueError, match="logical date 0226-11-18 is before 1970-01-01"):
        date_range("0226-11-18", "2026-11-20")
    with pytest.raises(ValueError, match="logical date 2062-11-20 is after tomorrow"):
        date_range("2026-11-18", "2062-11-20")


def test_a_date_whose_folders_hold_nothing_to_read_is_not_found(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """An export still being uploaded (hidden ``.part`` files only) was labeled as 0 records and marked complete,
    so the backfill skipped the date once the files arrived; an empty source folder beside full ones is left out."""
    shutil.copytree(BY_DATE, tmp_path / "in")
    for folder in ("email/2026-11-19", "social/2026-11-19", "reviews/date=2026-11-19"):
        for path in (tmp_path / "in" / folder).iterdir():
            path.rename(path.with_name(f".{path.name}.part"))
    with pytest.raises(FileNotFoundError, match=r"the 2026-11-19 folders under .* hold no file to read"):
        find_date_inputs.fn(str(tmp_path / "in"), "2026-11-19")
    for path in (tmp_path / "in" / "email" / "2026-11-19").iterdir():
        path.rename(path.with_name(path.name.removeprefix(".").removesuffix(".part")))
    assert find_date_inputs.fn(str(tmp_path / "in"), "2026-11-19").folders == (
        str(tmp_path / "in" / "email" / "2026-11-19"),)
    assert "social/2026-11-19 holds no file to read; the date is labeled without it" in caplog.text


def test_date_inputs_under_an_object_store_root_are_the_dates_files(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A bucket has no folders to find: both layouts become glob patterns that match the same files."""
    monkeypatch.setattr(FakeObjectStore, "root", tmp_path)
    shutil.copytree(BY_DATE, tmp_path / "bucket" / "in")
    for day in DAYS:
        remote = find_date_inputs.fn("fakestore://bucket/in/", day)
        local = find_date_inputs.fn(str(BY_DATE), day)
        assert [path.removeprefix("fakestore://bucket/in/") for path in remote.files] == [
            Path(path).relative_to(BY_DATE).as_posix() for path in local.files]
        assert list(remote.files) == expand_inputs(remote.folders)  # the files the job would list
    with pytest.raises(FileNotFoundError, match="no <source>/2026-11-21/ or date=2026-11-21/ files under"):
        find_date_inputs.fn("fakestore://bucket/in", "2026-11-21")


def test_backfill_writes_skips_then_force_rewrites_identically(prefect_harness, tiny_bundle: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    first = backfill(capsys, tmp_path, tiny_bundle)
    assert first["complete"] == list(DAYS) and not first["skipped"] and not first["failed"]
    frame = labeled(tmp_path)
    for day in first["days"]:
        expected = dict(zip(("input", "labeled", "dead_letter"), EXPECTED[day["date"]], strict=True))
        assert {key: day[key] for key in expected} == expected
        marker = read_date_marker(tmp_path, day["date"])
        assert marker and marker["run_id"] == day["run_id"] and marker["reconciled"] is True
        assert set(frame.loc[frame["date"] == day["date"], "run_id"]) == {day["run_id"]}
        assert (tmp_path / "_runs" / f"{day['run_id']}.json").is_file()
    assert len(frame) == 29 and frame["doc_id"].is_unique
    assert len(pd.read_parquet(tmp_path / "dead_letter")) == 3

    report = Artifact.get("undertone-daily-2026-11-20")
    assert report is not None
    for expected_text in ("email/parse/binary", "social/clean/empty_text", "tiny-test@0.0.1", "records/s",
                          "| sentiment |", f"date={DAYS[-1]}"):
        assert expected_text in report.data
    summary = Artifact.get("undertone-backfill-2026-11-18-2026-11-20")
    assert summary is not None and "failed days: none" in summary.data

    again = backfill(capsys, tmp_path, tiny_bundle)
    assert again["skipped"] == list(DAYS) and not again["complete"]
    assert not any("note" in day for day in again["days"])  # labeled as this backfill would label them
    assert [day["run_id"] for day in again["days"]] == [day["run_id"] for day in first["days"]]
    assert len(list((tmp_path / "_runs").glob("*.json"))) == 3

    forced = backfill(capsys, tmp_path, tiny_bundle, "--force", "--max-concurrency", "1", "--precision", "fp32")
    assert forced["complete"] == list(DAYS)
    for day in forced["days"]:  # the pinned precision reaches the workers of every day
        manifest = json.loads((tmp_path / "_runs" / f"{day['run_id']}.json").read_text(encoding="utf-8"))
        assert manifest["config"]["precision"] == "fp32"
        assert manifest["classify"]["documents_fp32"] == day["labeled"]
    rewritten = labeled(tmp_path)
    assert set(rewritten["run_id"]).isdisjoint(frame["run_id"])
    volatile = ["run_id", "processed_at"]
    pd.testing.assert_frame_equal(rewritten.drop(columns=volatile), frame.drop(columns=volatile))
    assert len(list((tmp_path / "_runs").glob("*.json"))) == 6


def process_day_runs(flow_run_id: object) -> list[int]:
    """How many times each day's task ran in a backfill flow run (1: never retried)."""
    async def read() -> list[int]:
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        return sorted(run.run_count for run in runs if run.name.startswith("process-day"))

    return asyncio.run(read())


def test_backfill_retries_then_fails_listing_the_failed_days(prefect_harness, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing day is retried, but not one without input: its folders do not fill in seconds, and its
    retries held the backfill up for a minute and a half by default."""
    mark_date_complete(tmp_path, "2026-11-18", {"run_id": "earlier"})

    def disk_full(output: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("flows.daily.finish_dead_runs", disk_full)
    state = backfill_flow(str(BY_DATE), str(tmp_path), "2026-11-18", "2026-11-21", retries=1, retry_delay_s=0,
                          return_state=True)
    assert state.is_failed()
    assert "failed days: 2026-11-19: " in state.message and "2026-11-18" not in state.message
    assert "No space left on device" in state.message and "no <source>/2026-11-21/" in state.message
    assert process_day_runs(state.state_details.flow_run_id) == [1, 2, 2]  # 11-21 ran once, 11-19 and 11-20 twice
    summary = state.result(raise_on_failure=False).summary  # what --json prints
    assert [(day["date"], day["status"]) for day in summary["days"]] == [
        ("2026-11-18", "skipped"), ("2026-11-19", "failed"), ("2026-11-20", "failed"), ("2026-11-21", "failed")]
    report = Artifact.get("undertone-backfill-2026-11-18-2026-11-21")
    assert report is not None and "| 2026-11-18 | skipped | earlier |" in report.data
    assert "failed days: 2026-11-19" in report.data


def test_backfill_json_still_lists_every_day_when_a_day_fails(prefect_harness, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``backfill --json`` printed nothing when a day failed, the case a script reading it most needs."""
    mark_date_complete(tmp_path, "2026-11-20", {"run_id": "earlier"})
    code = main(["backfill", "--input-root", str(BY_DATE), "--output", str(tmp_path), "--start", "2026-11-20",
                 "--end", "2026-11-21", "--retries", "0", "--json"])
    out, err = capsys.readouterr()
    assert code == 1 and "backfill failed: failed days: 2026-11-21" in err
    summary = json.loads(out)
    assert (summary["skipped"], summary["failed"], summary["complete"]) == (["2026-11-20"], ["2026-11-21"], [])
    assert "no <source>/2026-11-21/" in summary["days"][1]["error"]


def test_a_runner_without_an_option_set_fails_the_flows_before_the_date_is_withdrawn(prefect_harness,
                                                                                   tmp_path: Path) -> None:
    """A daily run with a typo'd runner withdrew the date's completion record before its job found the typo, and a
    backfill retried every day for it."""
    mark_date_complete(tmp_path, "2026-11-19", {"run_id": "earlier"})
    state = daily_flow(str(BY_DATE), str(tmp_path), date="2026-11-19", runner="dataflw", return_state=True)
    assert state.is_failed() and "unknown runner 'dataflw'" in state.message
    assert read_date_marker(tmp_path, "2026-11-19")["run_id"] == "earlier"
    state = backfill_flow(str(BY_DATE), str(tmp_path), "2026-11-18", "2026-11-20", runner="dataflw", retries=2,
                          retry_delay_s=0, return_state=True)
    assert state.is_failed() and "unknown runner 'dataflw'" in state.message
    assert process_day_runs(state.state_details.flow_run_id) == []
    assert read_date_marker(tmp_path, "2026-11-19")["run_id"] == "earlier"


def test_a_backfill_deployments_negative_count_fails_before_any_day(prefect_harness, tmp_path: Path) -> None:
    """A deployment run with ``max_concurrency: 0`` or ``retries: -1`` ran as 1 and 0 without a word; the
    parameter schema a deployment's form shows now carries the minimums."""
    state = backfill_flow(str(BY_DATE), str(tmp_path), "2026-11-18", "2026-11-20", max_concurrency=0, retries=-1,
                          return_state=True)
    assert state.is_failed() and "greater than or equal to 1" in state.message
    assert "greater than or equal to 0" in state.message and read_date_marker(tmp_path, "2026-11-18") is None
    schema = backfill_flow.parameters.properties
    assert (schema["max_concurrency"]["minimum"], schema["retries"]["minimum"], schema["retry_delay_s"]["minimum"]
            ) == (1, 0, 0)


def test_daily_cli_fails_loudly_without_inputs(prefect_harness, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["daily", "--input-root", str(BY_DATE), "--date", "2026-11-21", "--output", str(tmp_path)])
    assert code == 1
    assert "no <source>/2026-11-21/" in capsys.readouterr().err
    assert read_date_marker(tmp_path, "2026-11-21") is None


def test_a_skipped_day_labeled_with_another_model_or_other_tasks_is_said(tiny_bundle: Path) -> None:
    """``backfill --tasks sentiment,intent`` over days done with sentiment only skipped them without a word."""
    same = {"model_version": "tiny-test@0.0.1", "tasks": ["sentiment"]}
    done = {"2026-11-18": same, "2026-11-19": {**same, "tasks": ["intent", "sentiment"]},
            "2026-11-20": {**same, "model_version": "tiny-test@0.0.0"}, "2026-11-21": {"model_version": "x@1"}}
    assert labeled_otherwise(done, str(tiny_bundle), None) == {
        "2026-11-19": "labeled with tasks intent,sentiment, not tiny-test@0.0.1 with tasks sentiment",
        "2026-11-20": "labeled with model tiny-test@0.0.0, not tiny-test@0.0.1 with tasks sentiment",
        "2026-11-21": "labeled with model x@1, not tiny-test@0.0.1 with tasks sentiment",
    }


def test_a_daily_rerun_removes_what_the_dates_inputs_no_longer_hold(prefect_harness, tiny_bundle: Path,
                                                                    tmp_path: Path) -> None:
    """A daily run owns its whole date: files of unknown source deleted upstream, and a source folder emptied,
    leave no dead letters, rows or aggregates behind (a run owned only the sources it read, so they stayed while
    the completion record counted none of them)."""
    day, root, output = DAYS[-1], tmp_path / "in", tmp_path / "out"
    for folder in (f"email/{day}", f"reviews/date={day}"):
        shutil.copytree(BY_DATE / folder, root / folder)
    bad = [root / "reviews" / f"date={day}" / "blob.bin", root / "reviews" / f"date={day}" / "notes.txt"]
    bad[0].write_bytes(b"\x00\x01\x02")
    bad[1].write_text("a note of unknown format\n", encoding="utf-8")
    first = daily_flow(str(root), str(output), date=day, model_dir=str(tiny_bundle))
    assert first["counts"]["unknown"]["dead_letter"] == 2 and first["counts"]["email"]["labeled"] == 1

    for path in [*bad, *(root / "email" / day).iterdir()]:
        path.unlink()
    again = daily_flow(str(root), str(output), date=day, model_dir=str(tiny_bundle))
    assert set(again["counts"]) == {"review"}
    assert not labeled_partition(output, "email", day).exists()
    assert not list(dead_letter_partition(output, day).glob("*.parquet"))
    assert set(labeled(output)["source"].astype(str)) == {"review"}
    assert set(read_aggregates(output, day, day)["source"]) == {"review"}
    marker = read_date_marker(output, day)
    assert marker["run_id"] == again["run_id"] and marker["totals"]["dead_letter"] == 0
    assert marker["totals"]["labeled"] == len(labeled(output))


def email_label_counts(output: Path, day: str) -> int:
    """Emails the date's aggregates count sentiment labels of."""
    table = read_aggregates(output, day, day)
    return int(table.loc[(table["metric"] == "label") & (table["source"] == "email")
                         & (table["task"] == "sentiment"), "count"].sum())


def test_a_dead_run_rolled_forward_by_a_daily_run_of_another_date_gets_aggregates_and_a_manifest(
        prefect_harness, tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run of one date killed mid-commit, rolled forward by a run of another date: its date's aggregates kept
    the old counts and its rows named a run without a manifest. Now they are recomputed, the manifest says it was
    recovered, and the date stays incomplete for the next backfill."""
    day, other = DAYS[1], DAYS[0]
    daily_flow(str(BY_DATE), str(tmp_path), date=day, model_dir=str(tiny_bundle))
    assert email_label_counts(tmp_path, day) == 2

    dead_run = "20991231T000000Z-deadbeef"  # an ad-hoc run of 4 emails into the date, killed mid-commit
    staging = claim_staging(tmp_path, dead_run)
    emails = pq.read_table(next(labeled_partition(tmp_path, "email", day).glob("*.parquet")))
    emails = pa.concat_tables([emails, emails])
    emails = emails.set_column(emails.schema.get_field_index("doc_id"), "doc_id", pa.array(list("abcd")))
    emails = emails.set_column(emails.schema.get_field_index("run_id"), "run_id", pa.array([dead_run] * 4))
    labeled_partition(staging, "email", day).mkdir(parents=True)
    pq.write_table(emails, labeled_partition(staging, "email", day) / f"part-{dead_run}-00000-of-00001.parquet")

    def killed(journal: dict) -> None:
        raise InterruptedError("killed once the commit journal is written")

    monkeypatch.setattr(sinks, "_apply_journal", killed)
    with pytest.raises(InterruptedError):
        commit_run(tmp_path, dead_run, day, owned_sources=["email"])
    monkeypatch.undo()
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    (staging / sinks.OWNER_FILE).write_text(json.dumps({"host": sinks.socket.gethostname(), "pid": ended.pid,
                                                          "started": 0}))

    daily_flow(str(BY_DATE), str(tmp_path), date=other, model_dir=str(tiny_bundle))
    assert not staging_root(tmp_path, dead_run).exists()
    assert set(labeled(tmp_path).query("source == 'email' and date == @day")["run_id"]) == {dead_run}
    assert email_label_counts(tmp_path, day) == 4
    manifest = json.loads((tmp_path / "_runs" / f"{dead_run}.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "recovered" and manifest["logical_date"] == day
    assert manifest["counts"] == {"email": {"labeled": 4, "dead_letter": 0}} and manifest["reconciled"] is None
    assert read_date_marker(tmp_path, day) is None and read_date_marker(tmp_path, other) is not None


def test_the_output_inside_the_input_root_is_not_taken_for_the_dates_input(tmp_path: Path) -> None:
    """An output under the input root has ``date=`` partitions of its own: a re-run of the date took
    ``OUT/labeled/source=email/date=<date>`` for input, and the run then refused it, so the date failed for good."""
    root = tmp_path / "in"
    shutil.copytree(BY_DATE, root)
    first = find_date_inputs.fn(str(root), "2026-11-19", str(root / "out"))
    for partition in ("labeled/source=email/date=2026-11-19", "dead_letter/date=2026-11-19",
                      "aggregates/date=2026-11-19"):
        (root / "out" / partition).mkdir(parents=True)
        (root / "out" / partition / "part-0.parquet").write_bytes(b"PAR1")
    assert find_date_inputs.fn(str(root), "2026-11-19", str(root / "out")) == first
    assert any("/out/" in folder for folder in find_date_inputs.fn(str(root), "2026-11-19").folders)


def test_an_output_root_that_is_the_input_root_hides_only_what_runs_wrote(tmp_path: Path) -> None:
    """A lake whose raw exports and labeled output share one root (``gs://lake/``): every date folder lay under the
    output root, so every day failed with no inputs."""
    root = tmp_path / "lake"
    shutil.copytree(BY_DATE, root)
    first = find_date_inputs.fn(str(root), "2026-11-19")
    for partition in ("labeled/source=email/date=2026-11-19", "dead_letter/date=2026-11-19",
                      "aggregates/date=2026-11-19", "_staging/run-1/labeled/source=email/date=2026-11-19"):
        (root / partition).mkdir(parents=True)
        (root / partition / "part-0.parquet").write_bytes(b"PAR1")
    assert find_date_inputs.fn(str(root), "2026-11-19", str(root)) == first


def test_a_daily_run_lists_each_date_folder_once(prefect_harness, tiny_bundle: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The flow walked the date's folders to keep those holding a file, then the job walked them again to list
    the files: twice the listing of a large export. The files found are passed on; the same files are read."""
    day = DAYS[1]
    folders = [str(BY_DATE / folder) for folder in (f"email/{day}", f"reviews/date={day}", f"social/{day}")]
    expected = expand_inputs(folders)
    walked: list[str] = []
    walk = os.walk

    def counted_walk(top: str, *args, **kwargs):
        if Path(top).is_relative_to(BY_DATE):
            walked.append(Path(top).relative_to(BY_DATE).as_posix())
        return walk(top, *args, **kwargs)

    monkeypatch.setattr(os, "walk", counted_walk)
    report = daily_flow(str(BY_DATE), str(tmp_path), date=day, model_dir=str(tiny_bundle))
    assert sorted(walked) == [f"email/{day}", f"reviews/date={day}", f"social/{day}"]
    assert read_date_marker(tmp_path, day)["inputs"] == expected
    assert tuple(report["totals"][key] for key in ("input", "labeled", "dead_letter")) == EXPECTED[day]
