"""Reading and cleaning on every core of a local run: small input files go to worker processes a chunk at a time.

Beam's in-process local runner runs the whole fused stage in one thread, so reading and cleaning
(single-threaded Python: MIME, reply stripping, language identification) kept every core but one idle before the
model stage. Worker processes fork from a forkserver that imported only the ingest modules, so none inherits
the runner's threads, locks or torch. While the workers read one chunk, the calling thread passes the records of
the chunk before it downstream (tokenising them, and labeling them when a sorting window fills); workers run at
a lower priority, so the job's thread and the model keep the cores they need.

Compressed files, files over ``SMALL_FILE_BYTES`` and paths that are not local files stream through the calling
thread as before, so a chunk's results stay small. A worker that dies breaks only its pool: the files it had
not finished are read in the calling thread and the next chunk starts a new pool. Workers exit when the process
that started them does, also when it is killed.

A run can hand its first chunk's worth of files to the workers before its job starts (:func:`read_ahead`):
Beam then builds, translates and starts the pipeline (about a second of the job's thread) while the workers read.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import stat
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field

from transforms.clean import clean_document, detect_language
from transforms.ingest.read import is_compressed, read_path
from transforms.ingest.tabular import ColumnMap
from transforms.records import Document, Failure

log = logging.getLogger(__name__)

SMALL_FILE_BYTES = 256 << 10
"""Files up to this size (uncompressed, on local disk) may be read in a worker process; larger ones stream. A
worker returns a file's records at once, and records weigh far more than their bytes: 9 MiB of tweets as JSON
lines are 60,000 records, 194 MiB of Python objects (26 MiB pickled on their way back). At 2 MiB, a run's two
1-1.5 MiB tables (20,000 posts and reviews) arrived at once and left 40 MiB more of Python's memory in use to the
end of a 25,000-document run; at 256 KiB a file brings at most about 1,700 short posts (6 MiB), while emails,
mostly far smaller, still go to the workers. Reading a 10,000-row table here costs the job's thread about 1 s."""
CHUNK_FILES = 256
"""Files handed to the workers at once: enough that one slow file does not leave the other workers idle long."""
CHUNK_BYTES = 4 << 20
"""Bytes of files handed to the workers at once: bounds the records a chunk holds in memory (one chunk read and the
rest of the one being passed on: about 90 MiB of records per chunk of short posts, far less for emails) while
still giving two workers seconds of work (4 MiB are about 1,000 of the bench corpus's emails)."""
WORKER_NICENESS = 10
"""Workers yield the CPU to the job's thread (Beam building and starting a job while they read ahead, the model
labeling a sorting window while they read the next chunk)."""


@dataclass(frozen=True)
class IngestOptions:
    """How a run reads and cleans its files (from ``PipelineConfig``)."""

    source: str = "auto"
    """auto detects each file's source; email, review or social forces it."""
    columns: ColumnMap = field(default_factory=ColumnMap)
    """Explicit column mapping for tables."""
    hash_addresses: bool = True
    """Store email addresses as sha256 pseudonyms."""
    max_chars: int = 200_000
    """Longer raw texts become ``text_too_large`` failures."""


def ingest_records(path: str, options: IngestOptions) -> Iterator[Document | Failure]:
    """Every record of one file, cleaned: a document, or a failure with its reason (read or clean)."""
    for record in read_path(path, options.source, options.columns, options.hash_addresses):
        yield record if isinstance(record, Failure) else clean_document(record, options.max_chars)


def _ingest_file(path: str, options: IngestOptions) -> list[Document | Failure]:
    return list(ingest_records(path, options))


def _start_worker() -> None:
    """Load the language model once, and leave with the process that owns the pool: a worker otherwise
    outlives a job killed without cleanup (its task queue never closes), and with it the forkserver. Ctrl-C, which
    a terminal sends to every process of the command, is the owner's to handle: each worker printed a
    KeyboardInterrupt traceback under the command's own message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(WORKER_NICENESS)
    detect_language("loads the language model once per worker process")
    threading.Thread(target=_exit_with_owner, name="undertone-owner-watch", daemon=True).start()


def _exit_with_owner() -> None:
    owner = multiprocessing.parent_process()  # for a forkserver child: the process that asked for it
    if owner is not None:
        owner.join()
        os._exit(0)


class _Workers:
    """This process's ingest pool, shared by every run and step in it, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._size = 0

    def get(self, processes: int) -> ProcessPoolExecutor | None:
        """A warmed-up pool of ``processes`` workers; None where this platform has no forkserver or the
        workers cannot start (the files are then read in the calling thread)."""
        if "forkserver" not in multiprocessing.get_all_start_methods():
            return None
        with self._lock:
            if self._pool is None or self._size != processes:
                self.shut_down()
                try:
                    self._pool, self._size = _started_pool(processes), processes
                except (OSError, BrokenProcessPool) as error:
                    log.warning("ingest worker processes did not start (%s); reading in the job's thread", error)
            return self._pool

    def discard(self, pool: ProcessPoolExecutor) -> None:
        """Drop a broken pool (if it is still the current one); the next ``get`` starts another."""
        with self._lock:
            if self._pool is pool:
                self.shut_down()

    def shut_down(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool, self._size = None, 0


def _started_pool(processes: int) -> ProcessPoolExecutor:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_start_worker)
    with _main_script_hidden():
        futures = [pool.submit(int) for _ in range(processes)]  # every worker starts now, not at the first file
    for future in futures:
        future.result()
    return pool


@contextmanager
def _main_script_hidden() -> Iterator[None]:
    """multiprocessing re-imports the launching script or module in every new process (as ``__mp_main__``)
    unless ``__main__`` has neither a file nor a module name; for the ``undertone`` command (or a Prefect
    worker's flow-run process) that would import the whole CLI, Prefect and Beam into each worker, which
    needs only the ingest modules the forkserver preloaded."""
    main = sys.modules["__main__"]
    saved = {name: main.__dict__[name] for name in ("__file__", "__spec__") if name in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)


_WORKERS = _Workers()
atexit.register(_WORKERS.shut_down)


def kill_workers() -> None:
    """Kill the forkserver and every worker it forked, for a command that leaves on a stop signal without Python's
    exit (``undertone.cli.leave_stopped``). That command then unlinks the pool's named semaphores itself, and a
    worker still starting (the first second or two of a command) failed to open them and printed a
    FileNotFoundError traceback among the command's last lines. Workers hold nothing a run needs back: a file
    whose records never arrived is read again by the next run. Linux only (``/proc``); elsewhere the workers
    leave with the command as before."""
    # The pid is private to multiprocessing (CPython 3.11 keeps it here, None until a pool starts the server); where
    # a release moves it, the workers leave with the command as before rather than the command failing to leave.
    server = getattr(getattr(multiprocessing.forkserver, "_forkserver", None), "_forkserver_pid", None)
    if server is None:
        return
    workers = _children(server)
    for pid in (server, *workers):  # the server first: it forks no more
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    children = []
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry.name}/stat", "rb") as stat_file:
                    fields = stat_file.read().rpartition(b")")[2].split()  # after the command's name, which may
                if int(fields[1]) == pid:                                 # hold spaces: state, ppid, ...
                    children.append(int(entry.name))
    return children


def start_workers(processes: int) -> None:
    """Start the pool ahead of the job (the launcher's warm-up); a no-op for fewer than two processes."""
    if processes > 1:
        _WORKERS.get(processes)


@dataclass
class _Chunk:
    """Files handed to the workers together, with a future per file (fewer where handing them over failed)."""

    paths: list[str]
    options: IngestOptions
    futures: list[Future]
    pool: ProcessPoolExecutor | None


def submit_chunk(paths: list[str], options: IngestOptions, processes: int) -> _Chunk:
    """Hand ``paths`` to ``processes`` worker processes (files read ahead for this run are taken over, not read
    again); :func:`chunk_records` collects them."""
    pool = _WORKERS.get(processes) if processes > 1 else None
    futures: list[Future] = []
    if pool is not None:
        try:
            for path in paths:
                futures.append(_READ_AHEAD.take(path, options) or pool.submit(_ingest_file, path, options))
        except (BrokenProcessPool, RuntimeError):  # a worker died, or another run shut the pool down
            log.warning("ingest workers unavailable; reading %d files in the job's thread", len(paths) - len(futures))
            _WORKERS.discard(pool)
    return _Chunk(paths, options, futures, pool)


def chunk_records(chunk: _Chunk) -> Iterator[Document | Failure]:
    """The records of a chunk, file by file in order, each file's as soon as its worker is done, let go as they are
    passed on; a file whose worker died (or that never reached one) is read in the calling thread."""
    warned = False
    for index, path in enumerate(chunk.paths):
        records = None
        if index < len(chunk.futures):
            try:
                records = chunk.futures[index].result()
            except (BrokenProcessPool, CancelledError):  # a worker died, or another run restarted the pool
                if chunk.pool is not None:
                    _WORKERS.discard(chunk.pool)
                if not warned:
                    log.warning("ingest workers failed; reading the rest of a chunk (%d files) in the job's thread",
                                len(chunk.paths) - index)
                    warned = True
        yield from ingest_records(path, chunk.options) if records is None else _let_go(records)


def _let_go(records: list[Document | Failure]) -> Iterator[Document | Failure]:
    """``records`` in order, each taken out of the list before it is passed on: the list (also held by its future)
    would otherwise keep a whole file's records alive until the chunk is done, and the last chunk's until the
    job ends (40 MiB of Python objects for 20,000 posts and reviews)."""
    records.reverse()
    while records:
        yield records.pop()


def ingest_in_workers(paths: list[str], options: IngestOptions, processes: int) -> Iterator[Document | Failure]:
    """The records of ``paths``, file by file in order, read and cleaned by ``processes`` worker processes."""
    yield from chunk_records(submit_chunk(paths, options, processes))


class _ReadAhead:
    """Futures of files handed to the workers before the job asked for them, by path and options."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[tuple[str, IngestOptions], Future] = {}

    def put(self, path: str, options: IngestOptions, future: Future) -> None:
        with self._lock:
            self._futures[path, options] = future

    def take(self, path: str, options: IngestOptions) -> Future | None:
        with self._lock:
            return self._futures.pop((path, options), None)

    def __len__(self) -> int:
        return len(self._futures)


_READ_AHEAD = _ReadAhead()


def read_ahead(paths: Sequence[str], options: IngestOptions, processes: int) -> list[str]:
    """Hand the first small local files of ``paths``, up to one chunk (``CHUNK_FILES``, ``CHUNK_BYTES``), to
    ``processes`` workers now, for this process's ``IngestFiles`` to take when its job reaches them; the paths
    handed over. The caller ends with :func:`drop_read_ahead` on them, so that records a job never asked for
    (it failed first, or read elsewhere) are not held."""
    pool = _WORKERS.get(processes) if processes > 1 else None
    if pool is None:
        return []
    handed: list[str] = []
    chunk_bytes = 0
    for path in paths:
        if chunk_full(len(handed), chunk_bytes):
            break
        size = pooled_size(path)
        if size is None:
            continue
        try:
            future = pool.submit(_ingest_file, path, options)
        except (BrokenProcessPool, RuntimeError):  # the pool broke or shut down: the job reads these itself
            break
        _READ_AHEAD.put(path, options, future)
        handed.append(path)
        chunk_bytes += size
    return handed


def drop_read_ahead(paths: Sequence[str], options: IngestOptions) -> None:
    """Forget the files of ``paths`` read ahead and not taken (cancelled where not started)."""
    for path in paths:
        future = _READ_AHEAD.take(path, options)
        if future is not None:
            future.cancel()


def chunk_full(files: int, size: int) -> bool:
    """Whether ``files`` files of ``size`` bytes in all are a chunk to hand to the workers."""
    return files >= CHUNK_FILES or size >= CHUNK_BYTES


def pooled_size(path: str) -> int | None:
    """The size of a file that may go to a worker; None for compressed, large or non-local ones."""
    if is_compressed(path):
        return None
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) and info.st_size <= SMALL_FILE_BYTES else None


class ChunkedIngest:
    """Files in, cleaned records out: small local files gathered into chunks for the workers, others read here.

    A full chunk goes to the workers at once, and ``add`` then yields the records of the chunk before it (and a
    streamed file's), so the workers read the next chunk while the job's thread passes the last one downstream
    (at most two chunks of records are held). ``flush`` yields the rest. Both are generators, so a file counts as
    added once its ``add`` has been iterated.
    """

    def __init__(self, options: IngestOptions, processes: int) -> None:
        self.options = options
        self.processes = processes
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._in_flight: _Chunk | None = None

    def add(self, path: str) -> Iterator[Document | Failure]:
        size = pooled_size(path) if self.processes > 1 else None
        if size is None:
            yield from ingest_records(path, self.options)
            return
        self._pending.append(path)
        self._pending_bytes += size
        if chunk_full(len(self._pending), self._pending_bytes):
            yield from self._hand_over()

    def flush(self) -> Iterator[Document | Failure]:
        if self._pending:
            yield from self._hand_over()
        last, self._in_flight = self._in_flight, None
        if last is not None:
            yield from chunk_records(last)

    def _hand_over(self) -> Iterator[Document | Failure]:
        """Send the pending files to the workers; the records of the chunk sent before them."""
        previous = self._in_flight
        self._in_flight = submit_chunk(self._pending, self.options, self.processes)
        self._pending, self._pending_bytes = [], 0
        if previous is not None:
            yield from chunk_records(previous)
