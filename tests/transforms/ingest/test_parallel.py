"""Reading and cleaning in worker processes gives exactly what the job's thread gives, bad files included."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLES
from transforms.ingest import parallel
from transforms.ingest.parallel import ChunkedIngest, IngestOptions, ingest_in_workers, ingest_records
from transforms.records import Failure


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The real samples plus the bad inputs a run must survive: binary, invalid JSON, wrong charset, empty."""
    bad = tmp_path_factory.mktemp("bad")
    (bad / "binary.eml").write_bytes(bytes(range(256)) * 40)
    (bad / "posts.jsonl").write_bytes(b'{"id": "p1", "text": "fine post here"}\n{"id": "p2", "text": \n')
    (bad / "latin1.csv").write_bytes("review_id,review_text\n1,caf\xe9 tr\xe8s bon\n2,\n".encode("latin-1"))
    (bad / "empty.eml").write_bytes(b"")
    paths = sorted(str(path) for path in SAMPLES.rglob("*") if path.is_file() and path.suffix != ".py")
    return paths + sorted(str(path) for path in bad.iterdir())


def in_thread(paths: list[str], options: IngestOptions) -> list:
    return [record for path in paths for record in ingest_records(path, options)]


def test_workers_give_the_same_records_in_the_same_order(files: list[str]) -> None:
    options = IngestOptions()
    expected = in_thread(files, options)
    assert sum(isinstance(record, Failure) for record in expected) >= 5  # the bad files are in the comparison
    assert list(ingest_in_workers(files, options, processes=2)) == expected
    hashed_off = IngestOptions(source="email", hash_addresses=False, max_chars=300)
    email_files = [path for path in files if "/email/" in path]
    assert list(ingest_in_workers(email_files, hashed_off, processes=2)) == in_thread(email_files, hashed_off)


def test_a_dead_worker_loses_no_record_and_the_next_chunk_gets_new_workers(files: list[str]) -> None:
    options = IngestOptions()
    broken = parallel._WORKERS.get(2)
    assert broken is not None
    broken.submit(os._exit, 1)  # a worker dies as a crashing C library would take it down
    assert list(ingest_in_workers(files, options, processes=2)) == in_thread(files, options)
    fresh = parallel._WORKERS.get(2)
    assert fresh is not broken
    assert list(ingest_in_workers(files[:3], options, processes=2)) == in_thread(files[:3], options)


def test_chunks_hold_small_local_files_and_stream_the_rest(files: list[str], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "CHUNK_FILES", 3)
    compressed = tmp_path / "posts.jsonl.gz"
    compressed.write_bytes(gzip.compress(b'{"id": "z1", "text": "a compressed post streams at once"}\n'))
    chunks = ChunkedIngest(IngestOptions(), processes=2)
    assert [record["source_id"] for record in chunks.add(str(compressed))] == ["z1"]
    assert list(chunks.add(files[0])) == list(chunks.add(files[1])) == []  # waiting for the chunk to fill
    assert list(chunks.add(files[2])) == []  # the full chunk went to the workers, and none went before it
    assert list(chunks.add(files[3])) == list(chunks.add(files[4])) == []
    # the next chunk went to the workers, so the records of the one before come out (read while it was pending)
    assert list(chunks.add(files[5])) == in_thread(files[:3], IngestOptions())
    assert list(chunks.add(files[6])) == []
    assert list(chunks.flush()) == in_thread(files[3:7], IngestOptions())
    assert list(chunks.flush()) == []
    alone = ChunkedIngest(IngestOptions(), processes=1)
    assert list(alone.add(files[0])) == in_thread(files[:1], IngestOptions())  # one process: nothing waits
    assert parallel.pooled_size(str(tmp_path / "missing.eml")) is None
    assert parallel.pooled_size(str(compressed)) is None
    table = tmp_path / "posts.jsonl"
    table.write_bytes(b'{"id": "t", "text": "a post"}\n' * (parallel.SMALL_FILE_BYTES // 30))
    assert parallel.pooled_size(str(table)) == table.stat().st_size
    table.write_bytes(table.read_bytes() * 2)  # over the bound: streams, a record at a time
    assert parallel.pooled_size(str(table)) is None


def test_records_passed_on_are_no_longer_held_by_their_chunk() -> None:
    """A worker's result lets go of each record as it is passed on: a run's last chunk (its tables, often) was
    otherwise held, every record of it, until the job ended."""
    options = IngestOptions()
    table = str(SAMPLES / "reviews" / "movie-reviews.csv")
    expected = in_thread([table], options)
    assert len(expected) > 10
    chunk = parallel.submit_chunk([table], options, processes=2)
    records = parallel.chunk_records(chunk)
    first = next(records)
    held = chunk.futures[0].result()
    assert len(held) == len(expected) - 1
    assert [first, *records] == expected
    assert held == []


def test_workers_leave_with_a_killed_job(tmp_path: Path) -> None:
    """A job killed without cleanup (OOM killer, a cancelled flow run) leaves no ingest worker behind."""
    pids = tmp_path / "workers"
    script = ("import os, signal, sys\n"
              "from pathlib import Path\n"
              "from transforms.ingest import parallel\n"
              "pool = parallel._WORKERS.get(2)\n"
              "Path(sys.argv[1]).write_text(' '.join(map(str, pool._processes)))\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    job = subprocess.run([sys.executable, "-c", script, str(pids)], cwd=REPO, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, timeout=120)
    assert job.returncode == -signal.SIGKILL
    workers = [int(pid) for pid in pids.read_text().split()]
    assert len(workers) == 2
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(map(running, workers)):
        time.sleep(0.2)
    assert not any(map(running, workers))


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for its reaper is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_workers_import_no_beam() -> None:
    """The forkserver preloads this module: without Beam (about 110 MiB a process), as workers get local files."""
    probe = subprocess.run([sys.executable, "-c", "import sys, transforms.ingest.parallel; "
                            "print('apache_beam' in sys.modules, 'torch' in sys.modules)"],
                           cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    assert probe.stdout.split() == ["False", "False"]


def test_files_read_ahead_are_taken_as_read_and_the_rest_dropped(files: list[str], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A run hands its first chunk to the workers before its job starts; the job takes those records (read when
    handed over, not again) and the run drops what its job never asked for."""
    monkeypatch.setattr(parallel, "CHUNK_FILES", 4)
    options = IngestOptions()
    table = tmp_path / "reviews.csv"
    table.write_text("review_id,review_text\nr1,The battery died within a week\n", encoding="utf-8")
    compressed = tmp_path / "posts.jsonl.gz"
    compressed.write_bytes(gzip.compress(b'{"id": "z1", "text": "streams in the job"}\n'))
    paths = [str(compressed), str(table), *files]
    handed = parallel.read_ahead(paths, options, processes=2)
    assert handed == [str(table), *files[:3]]  # small local files only, one chunk's worth
    assert len(parallel._READ_AHEAD) == 4
    parallel._READ_AHEAD._futures[str(table), options].result()
    table.write_text("review_id,review_text\nr2,Changed after it was read\n", encoding="utf-8")
    first = list(ingest_in_workers([str(table), files[0]], options, processes=2))
    assert [record["source_id"] for record in first[:1]] == ["r1"]  # as read ahead
    assert first[1:] == in_thread(files[:1], options)
    assert len(parallel._READ_AHEAD) == 2
    other = IngestOptions(hash_addresses=False)  # records read with other options are not served
    assert list(ingest_in_workers(files[1:2], other, processes=2)) == in_thread(files[1:2], other)
    assert len(parallel._READ_AHEAD) == 2
    parallel.drop_read_ahead(handed, options)
    assert len(parallel._READ_AHEAD) == 0
    assert parallel.read_ahead(paths, options, processes=1) == []


def test_workers_yield_the_cpu_to_the_job() -> None:
    pool = parallel._WORKERS.get(2)
    assert pool is not None
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in pool._processes} == {
        min(own + parallel.WORKER_NICENESS, 19)}


def test_killing_workers_where_multiprocessing_keeps_no_server_pid_leaves_them_be(monkeypatch: pytest.MonkeyPatch
                                                                                  ) -> None:
    """``kill_workers`` reads a pid private to multiprocessing; a release that moves it must not turn a stopped
    command's way out into a traceback."""
    import multiprocessing.forkserver

    monkeypatch.setattr(multiprocessing.forkserver, "_forkserver", object())
    parallel.kill_workers()
