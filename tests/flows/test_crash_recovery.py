"""A run killed with SIGKILL (mid Beam write, mid partition swap) shows no partial partition, and the
next run leaves exactly one copy of every record. Every kill point of the swap itself is covered,
without Beam, in tests/transforms/test_sinks.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from tests.conftest import REPO, SAMPLES
from transforms.pipeline import PipelineConfig, run_pipeline

DAY = "2026-11-20"
INPUTS = tuple(str(SAMPLES / "by_date" / folder) for folder in (f"email/{DAY}", f"reviews/date={DAY}", f"social/{DAY}"))
# Runs the job in a child process; with a rename index, SIGKILLs itself at that rename of the partition swap.
CHILD = """
import os, signal, sys
from transforms import pipeline
from transforms.pipeline import PipelineConfig, run_pipeline

output, model, run_id, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
real_commit, real_rename = pipeline.commit_run, os.rename

def commit_then_die(*args, **kwargs):
    renames = []
    def rename(src, dst):
        if len(renames) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        renames.append(dst)
        real_rename(src, dst)
    os.rename = rename
    return real_commit(*args, **kwargs)

if kill_at >= 0:
    pipeline.commit_run = commit_then_die
run_pipeline(PipelineConfig(inputs=tuple(sys.argv[5:]), output=output, logical_date="2026-11-20", model_dir=model,
                            run_id=run_id))
"""


def child(output: Path, model: Path, run_id: str, kill_at: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(output), str(model), run_id, str(kill_at), *INPUTS],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def assert_whole_partitions(output: Path, records: int) -> None:
    """Each source's partition comes from one run, and every record is there exactly once."""
    frame = pd.read_parquet(output / "labeled")
    assert (frame.groupby(frame["source"].astype(str))["run_id"].nunique() == 1).all()
    assert len(frame) == records and frame["doc_id"].is_unique


def test_killed_runs_leave_no_partial_partition_and_a_rerun_one_copy(tiny_bundle: Path, tmp_path: Path) -> None:
    first = run_pipeline(PipelineConfig(inputs=INPUTS, output=str(tmp_path), logical_date=DAY,
                                        model_dir=str(tiny_bundle)))
    records = first["totals"]["labeled"]
    assert records == 9

    # Killed in the middle of the partition swap (after its commit journal, between two renames).
    swapping = child(tmp_path, tiny_bundle, "20991231T000000Z-swapping", kill_at=1)
    assert swapping.wait(timeout=300) == -signal.SIGKILL
    assert (tmp_path / "_staging" / "20991231T000000Z-swapping" / "_commit.json").is_file()
    assert_whole_partitions(tmp_path, records)

    # Killed while Beam writes its files into staging (the run above is rolled forward first).
    writing = child(tmp_path, tiny_bundle, "20991231T000001Z-writing", kill_at=-1)
    staging = tmp_path / "_staging" / "20991231T000001Z-writing"
    deadline = time.monotonic() + 300
    while not any(path.is_file() for sub in ("labeled", "dead_letter") for path in (staging / sub).rglob("*")):
        assert writing.poll() is None and time.monotonic() < deadline, "the child ended before writing"
        time.sleep(0.02)
    os.kill(writing.pid, signal.SIGKILL)
    assert writing.wait(timeout=60) == -signal.SIGKILL
    assert not (tmp_path / "_staging" / "20991231T000000Z-swapping").exists()
    assert_whole_partitions(tmp_path, records)
    frame = pd.read_parquet(tmp_path / "labeled")
    assert set(frame["run_id"]) == {"20991231T000000Z-swapping"}  # rolled forward, never mixed with the first run

    rerun = run_pipeline(PipelineConfig(inputs=INPUTS, output=str(tmp_path), logical_date=DAY,
                                        model_dir=str(tiny_bundle)))
    assert_whole_partitions(tmp_path, records)
    assert rerun["reconciled"] is True
    assert set(pd.read_parquet(tmp_path / "labeled")["run_id"]) == {rerun["run_id"]}
    dead = pd.read_parquet(tmp_path / "dead_letter")
    assert len(dead) == 2 and set(dead["run_id"]) == {rerun["run_id"]}
    assert not list((tmp_path / "_staging").iterdir())
    assert not [path for path in tmp_path.rglob(".*") if path.is_dir()]

