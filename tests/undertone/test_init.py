"""The process defaults that importing ``undertone`` sets before Prefect loads."""

from __future__ import annotations

import contextlib
import os
import pty
import subprocess
import sys
from pathlib import Path

from prefect._internal.analytics.ci_detection import CI_ENV_VARS

from tests.conftest import REPO


def test_prefect_telemetry_stays_off_for_a_new_user_on_a_terminal(tmp_path: Path) -> None:
    """Prefect's client telemetry acts only on a terminal outside CI: a new user's first import prints a usage-data
    notice and records milestones to send to Amplitude. A tool that promises no network at run time keeps it off
    (``DO_NOT_TRACK``), whatever the user's terminal."""
    env = {key: value for key, value in os.environ.items() if key not in CI_ENV_VARS and key != "DO_NOT_TRACK"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    leader, follower = pty.openpty()
    with subprocess.Popen([sys.executable, "-c", "import undertone, prefect; print('imported')"], stdout=follower,
                          stderr=follower, env=env, cwd=REPO) as importing:
        os.close(follower)
        printed = b""
        with contextlib.suppress(OSError):  # the terminal closes once the command has ended and all it wrote is read
            while chunk := os.read(leader, 4096):
                printed += chunk
        os.close(leader)
    assert importing.returncode == 0
    assert b"imported" in printed
    assert b"anonymous usage data" not in printed
    assert not (tmp_path / "prefect-home" / ".sdk_telemetry").exists()
