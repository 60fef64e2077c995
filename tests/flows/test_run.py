"""The labeling flow under Prefect's test harness, and the CLI that runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client

from flows.run import run_flow
from tests.conftest import REPO, SAMPLES
from transforms.sinks import mark_date_complete, read_date_marker


def test_flow_returns_run_id_inputs_and_counts(prefect_harness, tiny_bundle: Path, tmp_path: Path) -> None:
    state = run_flow(inputs=[str(SAMPLES / "reviews"), str(SAMPLES / "social")], output=str(tmp_path),
                     date="2026-11-19", model_dir=str(tiny_bundle), return_state=True)
    assert state.is_completed()
    result = state.result()
    assert result["counts"]["review"] == {"input": 36, "labeled": 36, "dead_letter": 0}
    assert result["reconciled"] is True and len(result["inputs"]) == 2
    assert Path(result["manifest_path"]).name == f"{result['run_id']}.json"
    assert len(pd.read_parquet(tmp_path / "labeled")) == 72

    async def flow_run_name() -> str:
        async with get_client() as client:
            return (await client.read_flow_run(state.state_details.flow_run_id)).name

    import asyncio

    assert asyncio.run(flow_run_name())
    artifact = Artifact.get("undertone-run-2026-11-19")
    assert artifact is not None and result["run_id"] in artifact.description
    assert "| review | 36 | 36 | 0 |" in artifact.data and "| social | 38 | 36 | 2 |" in artifact.data


def test_a_run_into_a_completed_date_withdraws_its_completion_record(prefect_harness, tiny_bundle: Path,
                                                                   tmp_path: Path) -> None:
    """The record's totals described the whole date; after a run replaced one source's partition they no longer
    held, and a backfill skipped the date quoting them."""
    mark_date_complete(tmp_path, "2026-11-19", {"run_id": "daily-run", "totals": {"input": 86}})
    mark_date_complete(tmp_path, "2026-11-18", {"run_id": "other-day"})
    state = run_flow(inputs=[str(SAMPLES / "social")], output=str(tmp_path), date="2026-11-19",
                     model_dir=str(tiny_bundle), return_state=True)
    assert state.is_completed()
    assert read_date_marker(tmp_path, "2026-11-19") is None
    assert read_date_marker(tmp_path, "2026-11-18")["run_id"] == "other-day"


def test_cli_run_prints_summary_and_json(tiny_bundle: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    command = [sys.executable, "-m", "undertone.cli", "run", str(SAMPLES / "social" / "*.jsonl"), "--output",
               str(tmp_path / "out"), "--date", "2026-11-18", "--model", str(tiny_bundle), "--json"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["counts"] == {"social": {"input": 38, "labeled": 36, "dead_letter": 2}}
    assert result["logical_date"] == "2026-11-18"
