"""The guard stops Prefect's temporary server once the command that started it is gone, however it ended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, temporary_settings

import undertone.guard
from undertone.guard import SERVER_MARK, TOKEN_VARIABLE, guard_temporary_server, mark_servers, start_guard

REPO = Path(__file__).resolve().parents[2]
OWNER = """
import os, subprocess, sys, time
from undertone.guard import SERVER_MARK, TOKEN_VARIABLE, mark_servers, start_guard
sleep = [sys.executable, "-c", "import time; time.sleep(120)"]
start_guard(mark_servers())
server = subprocess.Popen([*sleep, SERVER_MARK.decode()])
worker = subprocess.Popen(sleep)
print(server.pid, worker.pid, flush=True)
time.sleep(120)
"""


def test_a_killed_commands_server_is_stopped_and_nothing_else() -> None:
    """SIGKILL runs no exit hook: the server outlived the command. The guard stops the servers the command started
    (they carry its token), not its other processes nor another command's server."""
    env = {name: value for name, value in os.environ.items() if name != TOKEN_VARIABLE}
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", SERVER_MARK.decode()], env=env)
    owner = subprocess.Popen([sys.executable, "-c", OWNER], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    server, worker = (psutil.Process(int(pid)) for pid in owner.stdout.readline().split())
    others = [worker, psutil.Process(stranger.pid)]
    try:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
        _, alive = psutil.wait_procs([server], timeout=30)
        assert not alive
        assert all(process.is_running() and process.status() != psutil.STATUS_ZOMBIE for process in others)
    finally:
        for process in (server, *others):
            if process.is_running():
                process.kill()
        stranger.wait()
        owner.stdout.close()


def test_a_guard_that_cannot_start_is_a_warning_not_a_failed_command(monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The guard is a safety net: a run must not fail because its process could not be started (no
    ``sys.executable``, a process limit reached), and no pipe may be left open for a guard that is not there."""
    def cannot_start(*args: object, **kwargs: object) -> None:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(undertone.guard.subprocess, "Popen", cannot_start)
    open_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError):
        start_guard("0123456789abcdef")
    assert len(os.listdir("/proc/self/fd")) == open_before
    with temporary_settings(updates={PREFECT_SERVER_EPHEMERAL_ENABLED: True}, restore_defaults={PREFECT_API_URL}):
        guard_temporary_server()
    assert "no guard for Prefect's temporary server" in caplog.text


def test_a_stopped_command_signals_its_own_servers_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command stopped by a signal leaves without exit hooks, so it tells its temporary server to stop itself.
    A token inherited from the command that started this one (a flow that shells out to ``undertone``) is not its
    own: that command's server must be left alone."""
    env = {name: value for name, value in os.environ.items() if name != TOKEN_VARIABLE}
    sleep = [sys.executable, "-c", "import time; time.sleep(120)", SERVER_MARK.decode()]
    monkeypatch.setenv(TOKEN_VARIABLE, "inherited0000000")
    monkeypatch.setattr(undertone.guard, "_own_token", None)
    inherited = subprocess.Popen(sleep, env=env | {TOKEN_VARIABLE: "inherited0000000"})
    try:
        undertone.guard.signal_own_servers()
        mark_servers()
        own = subprocess.Popen(sleep)
        try:
            while not Path(f"/proc/{own.pid}/cmdline").read_bytes():  # /proc shows it a moment after the exec
                time.sleep(0.01)
            undertone.guard.signal_own_servers()
            assert own.wait(timeout=30) == -signal.SIGTERM
        finally:
            own.kill()
        assert inherited.poll() is None
    finally:
        inherited.kill()
        inherited.wait()
