"""The same job on other runners gives the same output as the local runner: Beam's portable job API
(its own job service, LOOPBACK workers) and the local multi-process option set."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from models.machine import available_cores
from tests.conftest import SAMPLES
from transforms.pipeline import PipelineConfig, run_pipeline

DAY = "2026-11-20"
INPUTS = tuple(str(SAMPLES / "by_date" / folder) for folder in (f"email/{DAY}", f"reviews/date={DAY}", f"social/{DAY}"))
VOLATILE = ["run_id", "processed_at"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def job_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Beam's own job service on a free port, stopped with its process group after the module."""
    port = free_port()
    log = (tmp_path_factory.mktemp("job-service") / "log.txt").open("w")
    service = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
                                "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert service.poll() is None and time.monotonic() < deadline, "job service did not start"
            time.sleep(0.2)
        yield f"localhost:{port}"
    finally:
        os.killpg(service.pid, signal.SIGTERM)
        service.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("local")
    return output, run_pipeline(PipelineConfig(inputs=INPUTS, output=str(output), logical_date=DAY,
                                               model_dir=str(tiny_bundle)))


def rows(output: Path, table: str, key: str) -> pd.DataFrame:
    frame = pd.read_parquet(output / table).drop(columns=VOLATILE, errors="ignore")
    return frame.sort_values(key).reset_index(drop=True)


def assert_same_output(local: tuple[Path, dict], other: tuple[Path, dict]) -> None:
    (local_out, local_manifest), (other_out, other_manifest) = local, other
    assert other_manifest["counts"] == local_manifest["counts"]
    assert other_manifest["reconciled"] is True
    pd.testing.assert_frame_equal(rows(other_out, "labeled", "doc_id"), rows(local_out, "labeled", "doc_id"))
    dead_columns = ["source", "input_ref", "stage", "error_type", "doc_id"]
    pd.testing.assert_frame_equal(rows(other_out, "dead_letter", "input_ref")[dead_columns],
                                  rows(local_out, "dead_letter", "input_ref")[dead_columns])


def test_portable_runner_on_beams_job_service_matches_local(job_endpoint: str, local_run: tuple[Path, dict],
                                                            tiny_bundle: Path, tmp_path: Path) -> None:
    manifest = run_pipeline(PipelineConfig(inputs=INPUTS, output=str(tmp_path), logical_date=DAY,
                                           model_dir=str(tiny_bundle), runner="portable",
                                           beam_args=(f"--job_endpoint={job_endpoint}",)))
    assert "--runner=PortableRunner" in manifest["beam_options"]
    assert f"--job_endpoint={job_endpoint}" in manifest["beam_options"]
    assert_same_output(local_run, (tmp_path, manifest))


def test_multiprocess_runner_matches_local(local_run: tuple[Path, dict], tiny_bundle: Path, tmp_path: Path) -> None:
    manifest = run_pipeline(PipelineConfig(inputs=INPUTS, output=str(tmp_path), logical_date=DAY,
                                           model_dir=str(tiny_bundle), runner="multiprocess"))
    assert "--direct_running_mode=multi_processing" in manifest["beam_options"]
    assert manifest["config"]["threads"] == max(1, available_cores() // 2)  # two workers share the cores
    assert local_run[1]["config"]["threads"] is None
    assert_same_output(local_run, (tmp_path, manifest))
