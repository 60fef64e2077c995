"""``prefect deploy --all`` registers the deployments of deploy/prefect.yaml against a real local server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO

PREFECT = [sys.executable, "-m", "prefect"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``prefect server start`` on a free port with its own PREFECT_HOME; stopped (whole process group) after."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}
    log = (home / "server.log").open("w")
    server = subprocess.Popen([*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300  # a cold start takes ~20 s, much longer on a busy machine
        while True:
            try:
                if httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield env
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()


def prefect(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*PREFECT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_deploy_all_registers_daily_backfill_and_finetune(prefect_server: dict[str, str]) -> None:
    prefect(prefect_server, "work-pool", "create", "undertone-local", "--type", "process")
    prefect(prefect_server, "work-pool", "create", "undertone-gpu", "--type", "kubernetes",
            "--base-job-template", str(Path("deploy") / "k8s-gpu-job-template.json"))
    prefect(prefect_server, "--no-prompt", "deploy", "--prefect-file", "deploy/prefect.yaml", "--all")

    api = prefect_server["PREFECT_API_URL"]
    deployments = httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
    flows = {flow["id"]: flow["name"] for flow in httpx.post(f"{api}/flows/filter", json={}, timeout=10).json()}
    by_name = {f"{flows[d['flow_id']]}/{d['name']}": d for d in deployments}
    assert set(by_name) == {"undertone-daily/daily", "undertone-backfill/backfill", "undertone-finetune/finetune"}

    daily = by_name["undertone-daily/daily"]
    assert [s["schedule"]["cron"] for s in daily["schedules"]] == ["0 3 * * *"]
    assert daily["work_pool_name"] == "undertone-local" and daily["entrypoint"] == "flows/daily.py:daily_flow"
    assert {"input_root", "output", "date", "runner"} <= set(daily["parameter_openapi_schema"]["properties"])
    backfill = by_name["undertone-backfill/backfill"]
    assert {"start", "end"} <= set(backfill["parameter_openapi_schema"]["required"])
    assert backfill["parameters"]["max_concurrency"] == 2 and not backfill["schedules"]
    finetune = by_name["undertone-finetune/finetune"]
    assert finetune["work_pool_name"] == "undertone-gpu"
    assert finetune["job_variables"]["image"].endswith("worker-gpu:latest")


def test_a_worker_loading_an_entrypoint_gets_the_process_defaults() -> None:
    """A process worker imports ``flows/daily.py`` by path, not through the ``undertone`` command: Arrow must still
    allocate through glibc (else the model's heap trims miss the writers' memory) and models load offline."""
    entrypoints = [line.split(":", 1)[1].strip() for line in (REPO / "deploy" / "prefect.yaml").read_text().splitlines()
                   if line.strip().startswith("entrypoint:")]
    assert len(entrypoints) == 3
    defaults = ("ARROW_DEFAULT_MEMORY_POOL", "HF_HUB_OFFLINE", "ONEDNN_PRIMITIVE_CACHE_CAPACITY",
                "TOKENIZERS_PARALLELISM", "DO_NOT_TRACK")
    env = {key: value for key, value in os.environ.items() if key not in defaults}
    probe = ("import os, sys\n"
             "from prefect.flows import load_flow_from_entrypoint\n"
             "for entrypoint in sys.argv[1:]:\n"
             "    load_flow_from_entrypoint(entrypoint)\n"
             "import pyarrow\n"
             f"print(pyarrow.default_memory_pool().backend_name, *(os.environ.get(key) for key in {defaults!r}))\n")
    loaded = subprocess.run([sys.executable, "-c", probe, *entrypoints], env=env, cwd=REPO, capture_output=True,
                            text=True, check=True)
    assert loaded.stdout.split() == ["system", "system", "1", "16", "false", "1"]
