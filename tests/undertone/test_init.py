"""The process defaults that importing ``undertone`` sets before Prefect loads."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from prefect._internal.analytics.ci_detection import CI_ENV_VARS

REPO = Path(__file__).resolve().parents[2]


def test_prefect_telemetry_stays_off_for_a_new_user_on_a_terminal(tmp_path: Path) -> None:
    """Prefect's client telemetry acts only on a terminal outside CI: a new user's first import prints a usage-data
    notice and records milestones to send to Amplitude. A tool that promises no network at run time keeps it off
    (``DO_NOT_TRACK``), whatever the user's terminal."""
    env = {key: value for key, value in os.environ.items() if key not in CI_ENV_VARS and key != "DO_NOT_TRACK"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    leader, follower = pty.openpty()
    try:
        imported = subprocess.run([sys.executable, "-c", "import undertone, prefect; print('imported')"],
                                  stdout=follower, stderr=follower, env=env, cwd=REPO, timeout=120, check=True)
    finally:
        os.close(follower)
    printed = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed once everything written to it was read
            break
        if not chunk:
            break
        printed += chunk
    os.close(leader)
    assert imported.returncode == 0
    assert b"imported" in printed
    assert b"anonymous usage data" not in printed
    assert not (tmp_path / "prefect-home" / ".sdk_telemetry").exists()
