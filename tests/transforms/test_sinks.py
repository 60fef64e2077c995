"""Labeled and dead-letter files per source; the crash-safe partition swap: commit journal, recovery, date markers."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import apache_beam as beam
import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from apache_beam.io import fileio
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.testing.util import assert_that, equal_to

from schemas import DEAD_LETTER_PARTITION_KEYS, DEAD_LETTER_SCHEMA, LABELED_PARTITION_KEYS, LABELED_SCHEMA, file_schema
from tests.conftest import REPO
from tests.object_store import FakeObjectStore, objects
from transforms import sinks
from transforms.records import Failure
from transforms.sinks import (
    BATCH_ROWS,
    DEAD_LETTER_TEMP_DIR,
    LABELED_TEMP_DIR,
    LABELED_WRITTEN_DIR,
    Recovery,
    WriteDeadLetters,
    WriteLabeled,
    clear_date_marker,
    commit_run,
    dead_letter_partition,
    labeled_partition,
    mark_date_complete,
    read_date_marker,
    recover_staging,
    staging_root,
)

DATE = "2026-11-20"
OLD = "20261120T010000Z-00000000"
NEW = "20261121T010000Z-11111111"


def write_part(folder: Path, run_id: str, ids: list[str], prefix: str = "part-") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"doc_id": ids, "run_id": [run_id] * len(ids)}),
                   folder / f"{prefix}{run_id}-00000-of-00001.parquet")


def visible(output: Path) -> dict[str, list[str]]:
    """What a hive reader of ``labeled/`` sees: run ids of the rows, per source."""
    table = ds.dataset(output / "labeled", partitioning="hive").to_table()
    rows: dict[str, list[str]] = {}
    for source, run_id in zip(table["source"].to_pylist(), table["run_id"].to_pylist(), strict=True):
        rows.setdefault(source, []).append(run_id)
    return rows


def globbed_rows(output: Path) -> int:
    """Rows of ``labeled/`` as the README's DuckDB query reads them: a glob, which also lists hidden folders."""
    query = f"SELECT count(*) FROM read_parquet('{output}/labeled/**/*.parquet', hive_partitioning = true)"
    return duckdb.sql(query).fetchall()[0][0]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def stage_new_run(output: Path) -> None:
    """The old run's partitions in place, and a finished new run staged with a dead owner."""
    for source in ("email", "social"):
        write_part(labeled_partition(output, source, DATE), OLD, [f"{source}-1", f"{source}-2"])
    write_part(dead_letter_partition(output, DATE), OLD, ["bad-email"], prefix="email-")
    write_part(dead_letter_partition(output, DATE), OLD, ["bad-review"], prefix="review-")
    staging = staging_root(output, NEW)
    for source in ("email", "social"):
        write_part(labeled_partition(staging, source, DATE), NEW, [f"{source}-1", f"{source}-2"])
    write_part(dead_letter_partition(staging, DATE), NEW, ["bad-email"], prefix="email-")
    (staging / sinks.OWNER_FILE).write_text(json.dumps({"host": sinks.socket.gethostname(), "pid": dead_pid(),
                                                         "started": 0}))


def test_commit_replaces_owned_sources_and_keeps_other_dead_letters(tmp_path: Path) -> None:
    stage_new_run(tmp_path)
    counts = commit_run(tmp_path, NEW, DATE, owned_sources=["email", "social"])
    assert counts == {"labeled": {"email": 2, "review": 0, "social": 2}, "dead_letter": {"email": 1}}
    assert {source: set(ids) for source, ids in visible(tmp_path).items()} == {"email": {NEW}, "social": {NEW}}
    dead = sorted(path.name.split("-", 1)[0] + ":" + path.name.split("-", 1)[1][:16]
                  for path in dead_letter_partition(tmp_path, DATE).glob("*.parquet"))
    assert dead == [f"email:{NEW[:16]}", f"review:{OLD[:16]}"]
    assert not (tmp_path / "_staging" / NEW).exists()
    assert not list(labeled_partition(tmp_path, "email", DATE).parent.glob(".*"))


@pytest.mark.parametrize("refusal", [errno.EPERM, errno.ENOTSUP])
def test_a_commit_on_a_mount_without_hard_links_copies_the_dead_letters_it_keeps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: int) -> None:
    """GCS FUSE and other object-store mounts refuse ``link``; keeping another source's dead letters failed the
    commit there. Any other link error (a missing file) still fails it."""
    stage_new_run(tmp_path)

    def no_hard_links(existing: object, new: object) -> None:
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(sinks.os, "link", no_hard_links)
    commit_run(tmp_path, NEW, DATE, owned_sources=["email", "social"])
    dead = pq.read_table(dead_letter_partition(tmp_path, DATE))
    assert sorted(zip(dead["doc_id"].to_pylist(), dead["run_id"].to_pylist(), strict=True)) == [
        ("bad-email", NEW), ("bad-review", OLD)]
    stage_new_run(tmp_path / "again")
    def missing(existing: object, new: object) -> None:
        raise FileNotFoundError(errno.ENOENT, "gone", existing)

    monkeypatch.setattr(sinks.os, "link", missing)
    with pytest.raises(FileNotFoundError):
        commit_run(tmp_path / "again", NEW, DATE, owned_sources=["email", "social"])


class Killed(BaseException):
    """Stands for SIGKILL: nothing after the rename that raises it runs."""


def renames_in_a_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    stage_new_run(tmp_path / "count")
    calls: list[tuple[str, str]] = []
    real_rename = sinks.os.rename
    monkeypatch.setattr(sinks.os, "rename", lambda src, dst: (calls.append((src, dst)), real_rename(src, dst)))
    commit_run(tmp_path / "count", NEW, DATE, owned_sources=["email", "social"])
    monkeypatch.setattr(sinks.os, "rename", real_rename)
    return len(calls)


@pytest.mark.parametrize("atomic", [True, False], ids=["exchange", "two-renames"])
def test_a_commit_killed_at_any_rename_is_rolled_forward(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        atomic: bool) -> None:
    if not atomic:
        monkeypatch.setattr(sinks, "_exchange", lambda staged, target: False)
    total = renames_in_a_commit(tmp_path, monkeypatch)
    assert total == (3 if atomic else 6)  # three partitions: an exchange and a rename, or two renames each
    real_rename = sinks.os.rename
    for kill_at in range(total):
        output = tmp_path / f"kill-{kill_at}"
        stage_new_run(output)
        calls: list[str] = []

        def rename(src: str | Path, dst: str | Path, kill_at: int = kill_at, calls: list[str] = calls) -> None:
            if len(calls) == kill_at:
                raise Killed
            calls.append(str(dst))
            real_rename(src, dst)

        monkeypatch.setattr(sinks.os, "rename", rename)
        with pytest.raises(Killed):
            commit_run(output, NEW, DATE, owned_sources=["email", "social"])
        monkeypatch.setattr(sinks.os, "rename", real_rename)
        for source, run_ids in visible(output).items():  # every partition is all old or all new, never mixed
            assert len(run_ids) == 2 and len(set(run_ids)) == 1, (kill_at, source, run_ids)
        # the replaced partitions wait in the staging folder: a glob of the dataset never meets them
        assert globbed_rows(output) == sum(map(len, visible(output).values())), kill_at
        assert not [path for folder in ("labeled", "dead_letter") for path in (output / folder).rglob(".*")], kill_at
        if atomic:
            assert set(visible(output)) == {"email", "social"}, kill_at

        assert recover_staging(output) == {NEW: Recovery("rolled_forward", DATE)}
        assert visible(output) == {"email": [NEW, NEW], "social": [NEW, NEW]}, kill_at
        assert not (output / "_staging" / NEW).exists()
        assert not [path for path in output.rglob(".*") if path.is_dir()]
        dead = sorted(path.name[:6] for path in dead_letter_partition(output, DATE).glob("*.parquet"))
        assert dead == ["email-", "review"], kill_at


def test_a_commit_killed_under_a_relative_output_is_rolled_forward_from_another_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--output out`` journaled paths relative to the run's working folder. The next run, started elsewhere (cron,
    a deployment's own folder) with the output's full path, found none of them, created their folders in its own
    working folder, deleted the staging folder and left the date half-committed for good: the emails of the dead
    run, the social posts of the run before."""
    monkeypatch.setattr(sinks, "_exchange", lambda staged, target: False)  # two renames a partition
    output = tmp_path / "out"
    stage_new_run(output)
    monkeypatch.chdir(tmp_path)
    real_rename = sinks.os.rename
    calls: list[str] = []

    def rename(src: str | Path, dst: str | Path) -> None:
        if len(calls) == 2:  # the emails are swapped in, the social posts not yet
            raise Killed
        calls.append(str(dst))
        real_rename(src, dst)

    monkeypatch.setattr(sinks.os, "rename", rename)
    with pytest.raises(Killed):
        commit_run("out", NEW, DATE, owned_sources=["email", "social"])
    monkeypatch.setattr(sinks.os, "rename", real_rename)
    assert visible(output) == {"email": [NEW, NEW], "social": [OLD, OLD]}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    assert recover_staging(output) == {NEW: Recovery("rolled_forward", DATE)}
    assert visible(output) == {"email": [NEW, NEW], "social": [NEW, NEW]}
    dead = sorted(path.name.split("-", 1)[0] + ":" + path.name.split("-", 1)[1][:16]
                  for path in dead_letter_partition(output, DATE).glob("*.parquet"))
    assert dead == [f"email:{NEW[:16]}", f"review:{OLD[:16]}"]
    assert not list(elsewhere.iterdir()) and not staging_root(output, NEW).exists()


def test_a_journal_naming_trash_beside_the_partitions_is_replayed_and_its_trash_removed(tmp_path: Path) -> None:
    """Journals written before the trash moved into the staging folder name ``.date=D.old-<run>`` beside each
    partition. A run killed mid-swap left the old partition there; recovery completes the swap and removes that
    trash, also where it skips the step because a later run has replaced the partition since."""
    stage_new_run(tmp_path)
    staging = staging_root(tmp_path, NEW)
    steps = []
    for source in ("email", "social"):
        target = labeled_partition(tmp_path, source, DATE)
        trash = target.with_name(f".{target.name}.old-{NEW}")
        os.rename(target, trash)  # the first of the two renames of the old swap
        steps.append({"staged": str(labeled_partition(staging, source, DATE)), "target": str(target),
                      "trash": str(trash), "files": [f"part-{NEW}-00000-of-00001.parquet"]})
    later = "20261123T000000Z-33333333"
    write_part(labeled_partition(tmp_path, "social", DATE), later, ["social-1", "social-2"])
    (staging / sinks.COMMIT_JOURNAL).write_text(json.dumps({"run_id": NEW, "date": DATE, "steps": steps}))
    assert recover_staging(tmp_path) == {NEW: Recovery("rolled_forward", DATE)}
    assert visible(tmp_path) == {"email": [NEW, NEW], "social": [later, later]}
    assert globbed_rows(tmp_path) == 4
    assert not [path for path in tmp_path.rglob(".*") if path.is_dir()]


def test_a_rolled_forward_run_gets_a_manifest_and_its_date_stays_incomplete(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A run killed mid-commit wrote no manifest, so its rows named a run nothing described: recovery writes one
    from the committed files' footers (its input counts died with it: not reconciled) and leaves the date to the
    next backfill."""
    stage_new_run(tmp_path)
    write_part(dead_letter_partition(staging_root(tmp_path, NEW), DATE), NEW, ["x.bin", "y.txt"], prefix="unknown-")
    mark_date_complete(tmp_path, DATE, {"run_id": OLD})  # a run outside the flows withdraws none
    def killed(journal: dict) -> None:
        raise Killed

    monkeypatch.setattr(sinks, "_apply_journal", killed)
    with pytest.raises(Killed):  # killed once its journal is written, before any rename
        commit_run(tmp_path, NEW, DATE, owned_sources=["email", "social", "unknown"])
    monkeypatch.undo()
    later = "20261123T000000Z-33333333"  # has replaced the social partition since: those rows stay its own
    write_part(labeled_partition(tmp_path, "social", DATE), later, ["social-1"])
    (labeled_partition(tmp_path, "social", DATE) / f"part-{OLD}-00000-of-00001.parquet").unlink()

    assert recover_staging(tmp_path) == {NEW: Recovery("rolled_forward", DATE)}
    manifest = json.loads((tmp_path / "_runs" / f"{NEW}.json").read_text(encoding="utf-8"))
    assert {key: manifest[key] for key in ("run_id", "logical_date", "status", "counts", "totals", "reconciled")} == {
        "run_id": NEW, "logical_date": DATE, "status": "recovered", "reconciled": None,
        "counts": {"email": {"labeled": 2, "dead_letter": 1}, "unknown": {"labeled": 0, "dead_letter": 2}},
        "totals": {"labeled": 2, "dead_letter": 3}}
    assert manifest["outputs"]["labeled"] == [str(labeled_partition(tmp_path, "email", DATE))]
    assert read_date_marker(tmp_path, DATE) is None


def test_recovery_discards_dead_uncommitted_runs_and_keeps_live_ones(tmp_path: Path) -> None:
    stage_new_run(tmp_path)
    live = sinks.claim_staging(tmp_path, "20261122T000000Z-22222222")
    assert recover_staging(tmp_path) == {NEW: Recovery("discarded")}
    assert visible(tmp_path) == {"email": [OLD, OLD], "social": [OLD, OLD]}
    assert live.is_dir() and not (tmp_path / "_staging" / NEW).exists()


def test_a_run_whose_process_exited_but_was_never_collected_is_dead(tmp_path: Path) -> None:
    """A run started by a scheduler that has not waited for it stays a zombie: ``kill(pid, 0)`` succeeds and its
    start tick is the one recorded, so its staging was kept as a live run's for as long as the scheduler lived."""
    stage_new_run(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
    owner = {"host": sinks.socket.gethostname(), "pid": child.pid, "process": sinks.process_identity(child.pid),
             "started": time.time()}
    (staging_root(tmp_path, NEW) / sinks.OWNER_FILE).write_text(json.dumps(owner))
    try:
        assert recover_staging(tmp_path) == {}  # still running
        deadline = time.monotonic() + 10
        stat = Path(f"/proc/{child.pid}/stat")  # poll() would collect it: read its state instead
        while stat.read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert recover_staging(tmp_path) == {NEW: Recovery("discarded")}
    finally:
        child.wait()


def test_a_dead_run_whose_pid_another_process_now_holds_is_rolled_forward(tmp_path: Path) -> None:
    """A container restarted in place (same host name, a fresh pid namespace) gives its new process the pid of the
    run that died in it, so the dead run looked alive for ever: its journaled commit was never completed and its
    staging folder never removed. The owner file names the process, not only its pid."""
    stage_new_run(tmp_path)
    killed_mid_commit = textwrap.dedent(f"""
        import undertone
        from transforms import sinks
        sinks.claim_staging({str(tmp_path)!r}, {NEW!r})
        def killed(journal): raise SystemExit(9)
        sinks._apply_journal = killed
        sinks.commit_run({str(tmp_path)!r}, {NEW!r}, {DATE!r}, ["email", "social"])
        """)
    run = subprocess.run([sys.executable, "-c", killed_mid_commit], cwd=REPO, check=False)
    assert run.returncode == 9
    owner_file = staging_root(tmp_path, NEW) / sinks.OWNER_FILE
    owner_file.write_text(json.dumps({**json.loads(owner_file.read_text(encoding="utf-8")), "pid": os.getpid()}))

    assert recover_staging(tmp_path) == {NEW: Recovery("rolled_forward", DATE)}
    assert visible(tmp_path) == {"email": [NEW, NEW], "social": [NEW, NEW]}
    assert not staging_root(tmp_path, NEW).exists()


def test_recovery_empties_the_remote_staging_folder_of_a_dead_run(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A run killed while its Dataflow job ran leaves its workers' files in the bucket; the next run removes
    them with the dead run's local staging folder, and leaves a live run's alone."""
    monkeypatch.setattr(FakeObjectStore, "root", tmp_path / "store")
    output = tmp_path / "out"
    live_run = "20261122T000000Z-22222222"
    for run_id in (NEW, live_run):
        remote = sinks.remote_staging(run_id, "fakestore://bucket/tmp")
        sinks.claim_staging(output, run_id, remote)
        with FileSystems.create(f"{remote}/labeled/source=email/date={DATE}/part.parquet") as handle:
            handle.write(b"rows")
    owner = json.loads((staging_root(output, NEW) / sinks.OWNER_FILE).read_text())
    (staging_root(output, NEW) / sinks.OWNER_FILE).write_text(json.dumps({**owner, "pid": dead_pid()}))
    assert recover_staging(output) == {NEW: Recovery("discarded")}
    assert objects() == [f"fakestore://bucket/tmp/staging/{live_run}/labeled/source=email/date={DATE}/part.parquet"]


def test_rolling_forward_never_overwrites_a_later_run(tmp_path: Path) -> None:
    stage_new_run(tmp_path)
    journal = {"run_id": NEW, "date": DATE, "steps": [
        {"staged": str(labeled_partition(staging_root(tmp_path, NEW), "email", DATE)),
         "target": str(labeled_partition(tmp_path, "email", DATE)), "trash": str(tmp_path / ".trash"),
         "replace": True}]}
    (staging_root(tmp_path, NEW) / sinks.COMMIT_JOURNAL).write_text(json.dumps(journal))
    later = "20261123T000000Z-33333333"
    target = labeled_partition(tmp_path, "email", DATE)
    for path in target.glob("*.parquet"):
        path.unlink()
    write_part(target, later, ["email-1", "email-2"])
    assert recover_staging(tmp_path) == {NEW: Recovery("rolled_forward", DATE)}
    assert visible(tmp_path)["email"] == [later, later]


def kill_before_swap(output: Path, run_id: str, owned: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Commit ``run_id`` but die once its journal is written, before any rename (its owner is dead already)."""
    def killed(journal: dict, output: Path | None = None) -> None:
        raise Killed

    monkeypatch.setattr(sinks, "_apply_journal", killed)
    with pytest.raises(Killed):
        commit_run(output, run_id, DATE, owned_sources=owned)
    monkeypatch.undo()


def commit_later_run(output: Path, run_id: str, labeled: dict[str, list[str]], dead: dict[str, list[str]],
                     owned: list[str]) -> None:
    """A run that starts after the dead one and commits normally (the dead one's owner is on another host, so
    nobody may roll it forward for hours)."""
    staging = sinks.claim_staging(output, run_id)
    for source, ids in labeled.items():
        write_part(labeled_partition(staging, source, DATE), run_id, ids)
    for source, ids in dead.items():
        write_part(dead_letter_partition(staging, DATE), run_id, ids, prefix=f"{source}-")
    commit_run(output, run_id, DATE, owned_sources=owned)


def test_a_late_roll_forward_never_brings_back_a_partition_a_later_run_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A later run of the whole date found no email that day and removed the email partition and its dead
    letters: the empty partition has no file to say so, and rolling the dead run forward brought its emails back."""
    stage_new_run(tmp_path)
    kill_before_swap(tmp_path, NEW, ["email", "social"], monkeypatch)
    later = "20261123T000000Z-33333333"
    commit_later_run(tmp_path, later, {"social": ["social-9"]}, {}, owned=["email", "review", "social", "unknown"])
    assert visible(tmp_path) == {"social": [later]}

    assert recover_staging(tmp_path) == {NEW: Recovery("rolled_forward", DATE)}
    assert visible(tmp_path) == {"social": [later]}
    assert not dead_letter_partition(tmp_path, DATE).exists()


def test_a_late_roll_forward_merges_the_dead_letters_every_source_shares(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dead-letter partition holds every source's files. The dead run owned email; a later run owning only
    reviews committed its own review dead letters since. Rolling forward must bring the dead run's email dead
    letters (its labeled emails are rolled forward) and keep the later run's reviews: before, the whole step was
    skipped, leaving the old run's email dead letters beside the dead run's labeled emails."""
    stage_new_run(tmp_path)
    kill_before_swap(tmp_path, NEW, ["email", "social"], monkeypatch)
    later = "20261123T000000Z-33333333"
    commit_later_run(tmp_path, later, {}, {"review": ["bad-review-2"]}, owned=["review"])

    assert recover_staging(tmp_path) == {NEW: Recovery("rolled_forward", DATE)}
    assert visible(tmp_path) == {"email": [NEW, NEW], "social": [NEW, NEW]}
    dead = pq.read_table(dead_letter_partition(tmp_path, DATE))
    assert sorted(zip(dead["doc_id"].to_pylist(), dead["run_id"].to_pylist(), strict=True)) == [
        ("bad-email", NEW), ("bad-review-2", later)]


def test_two_runs_of_one_date_committing_at_once_keep_each_others_dead_letters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ad-hoc runs of one date, one over emails and one over posts, finishing together: each built the shared
    dead-letter partition from the files it found there, and whichever swapped last dropped the other's dead letters.
    The email run is held just after its commit journal while the social run commits."""
    emails, posts = "20261121T010000Z-aaaaaaaa", "20261121T010000Z-bbbbbbbb"
    write_part(dead_letter_partition(staging_root(tmp_path, emails), DATE), emails, ["bad-email"], prefix="email-")
    write_part(dead_letter_partition(staging_root(tmp_path, posts), DATE), posts, ["bad-post"], prefix="social-")
    journaled, posts_committed = threading.Event(), threading.Event()
    write_json = sinks._write_json

    def held_after_journal(path: Path, payload: dict) -> Path:
        written = write_json(path, payload)
        if path.name == sinks.COMMIT_JOURNAL and payload["run_id"] == emails:
            journaled.set()
            posts_committed.wait(timeout=2)  # the posts' commit waits for this one to end, or ends first
        return written

    monkeypatch.setattr(sinks, "_write_json", held_after_journal)
    email_commit = threading.Thread(target=commit_run, args=(tmp_path, emails, DATE, ["email"]))
    email_commit.start()
    assert journaled.wait(timeout=10)
    commit_run(tmp_path, posts, DATE, ["social"])
    posts_committed.set()
    email_commit.join()
    dead = pq.read_table(dead_letter_partition(tmp_path, DATE))
    assert sorted(zip(dead["doc_id"].to_pylist(), dead["run_id"].to_pylist(), strict=True)) == [
        ("bad-email", emails), ("bad-post", posts)]


def test_a_commit_on_a_filesystem_without_locks_goes_on_unlocked_with_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """NFS without its lock daemon answers ``flock`` with ENOLCK: every commit there would have failed."""
    def no_locks(handle: object, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(sinks.fcntl, "flock", no_locks)
    write_part(dead_letter_partition(staging_root(tmp_path, NEW), DATE), NEW, ["bad-email"], prefix="email-")
    commit_run(tmp_path, NEW, DATE, ["email"])
    assert pq.read_table(dead_letter_partition(tmp_path, DATE))["doc_id"].to_pylist() == ["bad-email"]
    assert "keeps no locks (No locks available); going on unlocked" in caplog.text

    def broken(handle: object, operation: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(sinks.fcntl, "flock", broken)  # any other failure is the filesystem's, and is raised
    with pytest.raises(OSError, match="Input/output error"), sinks.file_lock(tmp_path / ".lock"):
        pass


def test_date_markers(tmp_path: Path) -> None:
    assert read_date_marker(tmp_path, DATE) is None
    mark_date_complete(tmp_path, DATE, {"run_id": NEW})
    assert read_date_marker(tmp_path, DATE) == {"date": DATE, "status": "complete", "run_id": NEW}
    clear_date_marker(tmp_path, DATE)
    clear_date_marker(tmp_path, DATE)
    assert read_date_marker(tmp_path, DATE) is None


def test_arrow_allocates_through_glibc_once_undertone_is_imported() -> None:
    """The model worker's malloc_trim can only return the Parquet writers' memory if Arrow uses glibc."""
    env = {key: value for key, value in os.environ.items() if key != "ARROW_DEFAULT_MEMORY_POOL"}
    probe = "import undertone, pyarrow; print(pyarrow.default_memory_pool().backend_name)"
    backend = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert backend.stdout.strip() == "system"


def test_dead_letters_are_written_once_a_file_per_source_in_row_groups(tmp_path: Path) -> None:
    failed_at = datetime(2026, 11, 20, tzinfo=UTC)
    failures = [Failure("email", f"mail/{i}.eml", "parse", "binary", "binary content", None) for i in range(2500)]
    failures += [Failure(None, "x.bin", "read", "unknown_format", "no reader for .bin", "\\x00"),
                 Failure("social", "posts.jsonl:3", "read", "invalid_json", "Expecting value", "{oops")]
    folder, temp = dead_letter_partition(tmp_path, DATE), tmp_path / DEAD_LETTER_TEMP_DIR
    with beam.Pipeline() as pipeline:
        _ = (pipeline | beam.Create(failures) | beam.Map(lambda failure: failure.to_row(NEW, failed_at))
             | WriteDeadLetters(str(tmp_path), DATE, NEW))
    files = {path.name: pq.ParquetFile(path) for path in folder.iterdir()}
    assert set(files) == {f"{source}-{NEW}-00000-of-00001.parquet" for source in ("email", "unknown", "social")}
    assert {name.split("-", 1)[0]: file.metadata.num_rows for name, file in files.items()} == {
        "email": 2500, "unknown": 1, "social": 1}
    email = files[f"email-{NEW}-00000-of-00001.parquet"]
    assert email.metadata.num_row_groups == -(-2500 // BATCH_ROWS)
    assert email.schema_arrow == file_schema(DEAD_LETTER_SCHEMA, DEAD_LETTER_PARTITION_KEYS)
    assert sorted(email.read().column("input_ref").to_pylist()) == sorted(f"mail/{i}.eml" for i in range(2500))
    unknown = files[f"unknown-{NEW}-00000-of-00001.parquet"].read().to_pylist()
    assert unknown[0]["source"] is None and unknown[0]["error_type"] == "unknown_format"
    assert not any(path.is_file() for path in temp.rglob("*"))  # temporary files all moved


def labeled_rows(source: str, count: int) -> list[dict]:
    """Rows of the labeled schema, every field filled as its type allows."""
    def value(field: pa.Field, index: int) -> object:
        if pa.types.is_timestamp(field.type):
            return datetime(2026, 11, 20, tzinfo=UTC)
        if pa.types.is_list(field.type):
            return [f"{field.name}-{index}"]
        if pa.types.is_map(field.type):
            return {"email": index}
        if pa.types.is_floating(field.type):
            return index / count
        if pa.types.is_integer(field.type):
            return index
        if pa.types.is_boolean(field.type):
            return index % 2 == 0
        return f"{field.name}-{source}-{index}"

    return [{**{field.name: value(field, index) for field in LABELED_SCHEMA}, "source": source, "date": DATE}
            for index in range(count)]


@pytest.mark.parametrize("row_group_bytes", [1, sinks.ROW_GROUP_BYTES])
def test_labeled_rows_are_written_once_into_their_sources_partitions(tmp_path: Path, row_group_bytes: int,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sinks, "ROW_GROUP_BYTES", row_group_bytes)
    rows = labeled_rows("email", 2500) + labeled_rows("social", 3)
    with beam.Pipeline() as pipeline:
        paths = pipeline | beam.Create(rows) | WriteLabeled(str(tmp_path), LABELED_SCHEMA, DATE, NEW)
        name = f"part-{NEW}-00000-of-00001.parquet"
        assert_that(paths, equal_to([str(labeled_partition(tmp_path, source, DATE) / name)
                                     for source in ("email", "social")]))
    files = sorted(path.relative_to(tmp_path / "labeled") for path in (tmp_path / "labeled").rglob("*.parquet"))
    assert files == [Path(f"source={source}/date={DATE}/part-{NEW}-00000-of-00001.parquet")
                     for source in ("email", "social")]  # no folder for a source without rows
    email = pq.ParquetFile(labeled_partition(tmp_path, "email", DATE) / files[0].name)
    assert email.schema_arrow == file_schema(LABELED_SCHEMA, LABELED_PARTITION_KEYS)
    assert email.metadata.num_row_groups == (3 if row_group_bytes == 1 else 1)  # batches of 1,000 rows
    table = ds.dataset(tmp_path / "labeled", partitioning="hive").to_table()
    assert sorted(table["doc_id"].to_pylist()) == sorted(row["doc_id"] for row in rows)
    assert not any(path.is_file() for folder in (LABELED_TEMP_DIR, LABELED_WRITTEN_DIR)
                   for path in (tmp_path / folder).rglob("*"))


def test_a_writer_turns_long_rows_into_arrow_by_their_characters_not_only_their_count(tmp_path: Path) -> None:
    rows = [{**row, "text": "x" * 300_000} for row in labeled_rows("email", 10)]
    row_chars = sum(len(value) for value in rows[0].values() if isinstance(value, str))
    sink = sinks.ParquetRowsSink(file_schema(LABELED_SCHEMA, LABELED_PARTITION_KEYS))  # a row group per batch
    with open(tmp_path / "part.parquet", "wb") as handle:
        sink.open(handle)
        for row in rows:
            sink.write(row)
        sink.flush()
    written = pq.ParquetFile(tmp_path / "part.parquet")
    groups = [written.metadata.row_group(index).num_rows for index in range(written.num_row_groups)]
    per_batch = -(-sinks.BATCH_CHARS // row_chars)
    assert per_batch < BATCH_ROWS and groups == [per_batch, per_batch, len(rows) - 2 * per_batch]
    assert written.read()["text"].to_pylist() == [row["text"] for row in rows]


def test_placing_a_labeled_file_again_finds_it_in_place(tmp_path: Path) -> None:
    """A retried step moves nothing twice and reports the same path; a file in neither place is an error."""
    written = tmp_path / LABELED_WRITTEN_DIR
    written.mkdir()
    name = f"review-part-{NEW}-00000-of-00001.parquet"
    pq.write_table(pa.table({"doc_id": ["r1"]}), written / name)
    result = fileio.FileResult(name, 0, 1, None, None, "review")
    placed = sinks.place_labeled(result, str(written), str(tmp_path), DATE)
    assert placed == str(labeled_partition(tmp_path, "review", DATE) / f"part-{NEW}-00000-of-00001.parquet")
    assert sinks.place_labeled(result, str(written), str(tmp_path), DATE) == placed
    assert pq.read_table(placed)["doc_id"].to_pylist() == ["r1"] and not list(written.iterdir())
    with pytest.raises(OSError, match="was not written into"):
        sinks.place_labeled(fileio.FileResult(f"social-part-{NEW}-00000-of-00001.parquet", 0, 1, None, None, "social"),
                            str(written), str(tmp_path), DATE)


def test_a_labeled_file_left_behind_by_fileio_fails_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(sources: list[str], destinations: list[str]) -> None:
        raise BeamIOError("rename refused", {})

    monkeypatch.setattr(FileSystems, "rename", refuse)  # fileio logs this at debug level and goes on
    with pytest.raises(Exception, match="was not written into"), beam.Pipeline() as pipeline:
        _ = pipeline | beam.Create(labeled_rows("review", 1)) | WriteLabeled(str(tmp_path), LABELED_SCHEMA, DATE, NEW)


def test_a_dead_letter_file_left_behind_by_fileio_fails_the_job(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(sources: list[str], destinations: list[str]) -> None:
        raise BeamIOError("rename refused", {})

    monkeypatch.setattr(FileSystems, "rename", refuse)  # fileio logs this at debug level and goes on
    row = Failure("email", "mail/1.eml", "parse", "binary", "binary content", None).to_row(
        NEW, datetime(2026, 11, 20, tzinfo=UTC))
    with pytest.raises(Exception, match="was not moved into"), beam.Pipeline() as pipeline:
        _ = pipeline | beam.Create([row]) | WriteDeadLetters(str(tmp_path), DATE, NEW)


@pytest.mark.parametrize("output", ["gs://bucket/out", "s3://bucket/out", "file:///tmp/out", "hdfs://namenode/out"])
def test_a_scheduled_run_into_an_object_store_is_refused_before_it_starts(output: str) -> None:
    """Flows build the config without the CLI's check; the run must not write into a local ``gs:`` folder."""
    from transforms.pipeline import PipelineConfig

    with pytest.raises(ValueError, match="object-store outputs are not supported yet"):
        PipelineConfig(inputs=("inbox/",), output=output)


@pytest.mark.parametrize("below", [None, "sub"])
def test_an_output_through_a_dangling_symlink_is_refused_before_it_starts(tmp_path: Path, below: str | None) -> None:
    """A link to a missing folder failed the run with mkdir's bare ``FileExistsError`` after Prefect had started."""
    from transforms.pipeline import PipelineConfig

    link = tmp_path / "out"
    link.symlink_to(tmp_path / "missing" / "folder")
    output = str(link / below if below else link)
    with pytest.raises(ValueError, match=f"{link} is a symbolic link to {tmp_path / 'missing' / 'folder'}, which "
                                         "does not exist"):
        PipelineConfig(inputs=("inbox/",), output=output)
    assert not (tmp_path / "missing").exists()


def test_an_output_that_is_a_file_is_refused_before_it_starts(tmp_path: Path) -> None:
    from transforms.pipeline import PipelineConfig

    (tmp_path / "out").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        PipelineConfig(inputs=("inbox/",), output=str(tmp_path / "out" / "sub"))


def test_files_staged_in_an_object_store_are_fetched_into_the_runs_staging_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dataflow's workers cannot see the submitting machine's disk: they stage under the runner's ``gs://``
    temp_location, and the commit works on a local copy; fileio's temporary files are not copied, and the
    remote folder is emptied."""
    monkeypatch.setattr(FakeObjectStore, "root", tmp_path / "store")
    remote = sinks.remote_staging(NEW, "fakestore://bucket/tmp")
    assert remote == f"fakestore://bucket/tmp/staging/{NEW}"
    assert sinks.remote_staging(NEW, "/tmp/beam") is None and sinks.remote_staging(NEW, None) is None
    staged = {f"labeled/source=review/date={DATE}/part-{NEW}-00000-of-00001.parquet": b"review rows",
              f"dead_letter/date={DATE}/email-{NEW}-00000-of-00001.parquet": b"dead letters",
              f"{sinks.LABELED_TEMP_DIR}/123_abc": b"fileio's temporary file"}
    for name, content in staged.items():
        with FileSystems.create(f"{remote}/{name}") as handle:
            handle.write(content)
    with FileSystems.create(f"fakestore://bucket/tmp/staging/{NEW}-other/labeled/x.parquet") as handle:
        handle.write(b"another run's")
    local = tmp_path / "out" / "_staging" / NEW
    assert sinks.fetch_staged(remote, local) == 2
    assert {path.relative_to(local).as_posix(): path.read_bytes() for path in local.rglob("*") if path.is_file()
            } == {name: content for name, content in staged.items() if name.endswith(".parquet")}
    assert objects() == [f"fakestore://bucket/tmp/staging/{NEW}-other/labeled/x.parquet"]


def test_two_threads_writing_one_json_file_at_once_both_succeed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """Backfill days run as threads of one process, and each rolls a dead run forward: with one temporary name per
    process, both threads wrote the same temporary file and the second rename found it gone."""
    both_written = threading.Barrier(2, timeout=10)
    fsync = os.fsync

    def held_fsync(descriptor: int) -> None:
        fsync(descriptor)
        both_written.wait()  # each thread has written its temporary file before either renames it

    monkeypatch.setattr(sinks.os, "fsync", held_fsync)
    target = tmp_path / "_runs" / "run-1.json"
    errors: list[OSError] = []

    def write(n: int) -> None:
        try:
            sinks._write_json(target, {"run_id": "run-1", "writer": n})
        except OSError as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert json.loads(target.read_text(encoding="utf-8"))["writer"] in (0, 1)
    assert [path.name for path in target.parent.iterdir()] == ["run-1.json"]
