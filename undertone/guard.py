"""Stops Prefect's temporary API server when the command that started it ends without stopping it.

Without ``PREFECT_API_URL`` a command's first flow starts a Prefect server as a child process, which an exit hook
stops on a normal exit, and the command itself on Ctrl-C and SIGTERM (``signal_own_servers``). SIGKILL (the OOM
killer, ``kill -9``, a CI runner's hard timeout) ends the command on the spot: the server ran on, adopted by init,
until the machine rebooted, one more uvicorn process per killed run. The guard is a small process in a session of
its own (a signal to the command's process group spares it) that holds the read end of a pipe whose write end only
the command holds. The command also puts a token of its own in its environment, which every process it starts
inherits; when the pipe closes (the command has ended, however it ended), the guard stops the servers that carry
the token. Linux only (``/proc``); elsewhere the guard finds nothing to stop.

    python -m undertone.guard TOKEN   # waits for its stdin to close
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "UNDERTONE_GUARD_TOKEN"
"""The environment variable that marks the processes a command started (its own value per command)."""
SERVER_MARK = b"prefect.server.api.server:create_app"
"""What the command line of Prefect's temporary server holds (``uvicorn --factory ...``): of the processes with the
token (ingest workers, the server), only servers are stopped."""
STOP_GRACE_S = 5.0
"""How long a server has to stop on SIGTERM (Prefect's own exit hook waits as long) before SIGKILL."""

_pipes: list[IO[bytes]] = []
"""The write ends of this process's guards' pipes, open for as long as it lives."""
_own_token: str | None = None
"""The token this command gave the processes it starts (``mark_servers``)."""


def mark_servers() -> str:
    """Give the processes this command starts from now on a token of its own (a fresh one per command, never
    one inherited from the process that started it); returns it."""
    global _own_token
    _own_token = secrets.token_hex(8)
    os.environ[TOKEN_VARIABLE] = _own_token
    return _own_token


def start_guard(token: str) -> None:
    """Start a guard that stops the servers carrying ``token`` once this process has ended."""
    read_end, write_end = os.pipe()  # not inherited by the processes this one execs (PEP 446)
    try:
        subprocess.Popen([sys.executable, "-m", "undertone.guard", token], stdin=read_end,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    _pipes.append(os.fdopen(write_end, "wb"))


def guard_temporary_server() -> None:
    """Mark and guard the temporary server this process's flows will start: no ``PREFECT_API_URL`` and Prefect's
    ephemeral mode on. Best effort: a guard that cannot start is a warning, never a failed command."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    try:
        start_guard(mark_servers())
    except OSError as error:
        log.warning("no guard for Prefect's temporary server (%s): a SIGKILL would leave it running", error)


def signal_own_servers() -> None:
    """Send SIGTERM to the temporary servers this command started. The way out of a command stopped by a signal,
    which leaves without Python's exit hooks (Prefect's among them: they wait for threads that the signal may have
    left blocked). A server finishes stopping once the command's connections to it close, when the command has
    ended; the guard makes sure it does."""
    if _own_token is not None:
        send(servers_with_token(_own_token), signal.SIGTERM)


def servers_with_token(token: str) -> list[int]:
    """The pids of live Prefect temporary servers whose environment holds ``token`` (this user's: others'
    environments cannot be read)."""
    marker = f"{TOKEN_VARIABLE}={token}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if _runs_server(int(entry.name)) and marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def _runs_server(pid: int) -> bool:
    """Whether ``pid`` runs a Prefect temporary server: a zombie's command line is empty, and a pid given again
    runs something else."""
    try:
        return SERVER_MARK in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def send(pids: list[int], signum: int) -> None:
    """Send ``signum`` to each of ``pids`` that still runs."""
    for pid in pids:
        with contextlib.suppress(OSError):  # already gone
            os.kill(pid, signum)


def stop(pids: list[int], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM, then SIGKILL after ``grace_s`` to those still running."""
    for sent in (signal.SIGTERM, signal.SIGKILL):
        send(pids, sent)
        deadline = time.monotonic() + grace_s
        while (pids := [pid for pid in pids if _runs_server(pid)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not pids:
            return


def main(token: str) -> int:
    """Wait for the command's end (the pipe closes), then stop the servers it left running."""
    sys.stdin.buffer.read()
    stop(servers_with_token(token))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
