"""The Beam pipeline: read → clean → classify → write, with every failure routed to dead-letter.

``run_pipeline(config)`` builds and runs the job on the runner named in ``config.runner``
(an option set in ``deploy/runners/``), commits the staged partitions and writes the
run manifest. Changing runner is a change of options, never of code.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import apache_beam as beam
import yaml
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineState
from apache_beam.transforms.window import GlobalWindows

from models import preload
from models.bundle import PRECISIONS, BundleSpec, read_bundle_spec, with_zero_shot
from models.machine import available_cores
from models.registry import default_model_dir
from schemas import (
    SOURCES,
    check_task_names,
    labeled_schema,
)
from transforms.classify import METRICS_NAMESPACE, Classify, DocumentModelHandler
from transforms.clean import detect_language
from transforms.duplicates import DUPLICATES_METRICS, MarkDuplicates
from transforms.ingest.parallel import ChunkedIngest, IngestOptions, drop_read_ahead, read_ahead, start_workers
from transforms.ingest.read import expand_inputs
from transforms.ingest.tabular import ColumnMap
from transforms.pii import redact_dead_letter, redact_document
from transforms.records import Failure, printable
from transforms.sinks import (
    UNKNOWN_SOURCE,
    WriteDeadLetters,
    WriteLabeled,
    check_output_root,
    claim_staging,
    commit_run,
    dead_letter_partition,
    discard_remote,
    fetch_staged,
    labeled_partition,
    reconcile,
    recover_staging,
    remote_staging,
    staged_sources,
    totals,
    write_manifest,
)

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNNER_OPTION_SETS = REPO_ROOT / "deploy" / "runners"
DEFAULT_MODEL_DIR = default_model_dir()
INGEST_METRICS = "undertone_ingest"


EARLIEST_DATE = date(1970, 1, 1)
"""The first logical date a run may have: earlier ones (0001-01-01, 0226 for 2026) are a mistyped year."""
FUTURE_DAYS = 1
"""How many days after today (UTC) a logical date may be: tomorrow is today east of UTC. A later date has no data
yet; it is a mistyped year (9999, 2062 for 2026) whose partition dashboards would show as the latest."""


def check_logical_date(value: str) -> str:
    """``value`` as YYYY-MM-DD if it is a date a run may write (:data:`EARLIEST_DATE` to :data:`FUTURE_DAYS` after
    today, UTC), else ValueError: refused before anything is written, for the CLI, the flows and deployments alike."""
    day = date.fromisoformat(value)
    if day < EARLIEST_DATE:
        raise ValueError(f"logical date {day} is before {EARLIEST_DATE}: a mistyped year?")
    latest = datetime.now(UTC).date() + timedelta(days=FUTURE_DAYS)
    if day > latest:
        raise ValueError(f"logical date {day} is after tomorrow ({latest}, UTC), so it has no data yet: "
                         "a mistyped year?")
    return day.isoformat()


@dataclass(frozen=True)
class PipelineConfig:
    """One run of the labeling job."""

    inputs: tuple[str, ...]
    """Files, folders or globs to read."""
    output: str
    """Output root: ``labeled/``, ``dead_letter/`` and ``_runs/`` are written under it."""
    logical_date: str = field(default_factory=lambda: datetime.now(UTC).date().isoformat())
    """The ``date=`` partition this run writes and replaces (YYYY-MM-DD); default today, UTC."""
    whole_date: bool = False
    """The inputs are all of the date (the daily flow's, from its input root): the commit replaces every source
    of the date, labeled partitions and dead letters (``unknown`` included), so what the inputs no longer hold
    is removed. False (``undertone run``): only the sources the run read are replaced, so a partial re-run of
    one source leaves the others alone."""
    files: tuple[str, ...] | None = None
    """The files of ``inputs`` as :func:`expand_inputs` lists them, where the caller has listed them already (the
    daily flow, to keep the date's folders that hold a file): the job reads these rather than listing a large
    export a second time. None: the job lists ``inputs``."""
    source: str = "auto"
    """auto detects each file's source; email, review or social forces it."""
    runner: str = "local"
    """Name of a runner option set in ``deploy/runners/`` (local, multiprocess, portable, dataflow, flink)."""
    beam_args: tuple[str, ...] = ()
    """Extra Beam pipeline options, appended after the option set (e.g. ``--job_endpoint=...``)."""
    model_dir: str = str(DEFAULT_MODEL_DIR)
    """Model bundle folder (shared encoder + task heads)."""
    tasks: tuple[str, ...] | None = None
    """Tasks to label; None labels the bundle's default tasks (opt-in tasks such as intent excluded)."""
    device: str = "auto"
    """Torch device of the workers: auto (cuda when the worker sees a GPU, else cpu), cpu or cuda. On cuda the
    encoder runs under bf16/fp16 autocast with pinned-memory copies and a larger default token budget."""
    zero_shot: dict[str, dict[str, str]] | None = None
    """Zero-shot tasks from configuration (task → label → one-line description); replaces the bundle's
    ``topic`` taxonomy when named ``topic``."""
    token_budget: int | None = None
    """Most tokens per inference batch (documents are sorted by length first, so padding stays small);
    None: 4,096 on cpu, 65,536 on cuda."""
    precision: str = "auto"
    """Encoder precision (``--precision``): auto, fp32, bf16 or int8 (CPU only). auto is bf16 on CUDA, and on CPU
    bf16 where the worker's CPU computes bf16 natively and the bundle's card measured bf16 within 1 point of fp32,
    else fp32; the manifest's ``classify`` counts documents per precision the workers used."""
    threads: int | None = None
    """Torch threads per CPU worker; None uses every core the worker may run on, divided among the worker
    processes (or threads) when Beam's local runner runs several on this machine."""
    max_text_chars: int = 200_000
    """Longer raw texts are sent to dead-letter (``text_too_large``) instead of being classified."""
    ingest_processes: int | None = None
    """Worker processes that read and clean small input files (:mod:`transforms.ingest.parallel`); None: every
    core when Beam's workers run in this process (the local runner), else 1; 1 reads in the job's thread."""
    hash_addresses: bool = True
    """Store email addresses as unsalted sha256 pseudonyms, not in clear (``--keep-addresses`` turns it off)."""
    redact_pii: bool = False
    """Replace email addresses, phone, card and IBAN numbers and secret URL parameters in every text field
    (dead-letter excerpts and errors, and every ``input_ref``) before anything is classified or written; counts go to
    ``pii_redactions``."""
    columns: ColumnMap = field(default_factory=ColumnMap)
    """Explicit column mapping for tables; unmapped fields are auto-detected."""
    run_id: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8])
    """Unique id of this run; names the manifest and the Parquet files."""

    def __post_init__(self) -> None:
        check_logical_date(self.logical_date)
        check_output_root(self.output)
        runner_options(self.runner)  # a typo'd runner fails here, before the flow withdraws or writes anything
        if self.source not in ("auto", *SOURCES):
            raise ValueError(f"source must be auto or one of {SOURCES}, got {self.source!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


def runner_options(name: str) -> list[str]:
    """The Beam flags of a named option set (``deploy/runners/<name>.yaml``)."""
    path = RUNNER_OPTION_SETS / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in RUNNER_OPTION_SETS.glob("*.yaml"))
        raise ValueError(f"unknown runner {name!r}; option sets: {', '.join(known)}")
    options = yaml.safe_load(path.read_text(encoding="utf-8")).get("options") or {}
    flags = []
    for key, value in options.items():
        if isinstance(value, bool):
            flags.append(f"--{key}" if value else f"--no{key}")
        elif isinstance(value, list):
            flags.extend(f"--{key}={item}" for item in value)
        else:
            flags.append(f"--{key}={value}")
    return flags


def beam_flags(runner: str, extra: Sequence[str] = ()) -> list[str]:
    """The Beam flags of a run, each option once, as its manifest records them: the option set's, then ``extra``
    (``--beam-arg``). An extra flag replaces the value of an option that takes one (Beam keeps the last, so the
    manifest listed ``--job_endpoint`` twice, the set's and the one that won) and adds to an option that collects
    values (``experiments``); a flag given twice counts once."""
    by_name: dict[str, list[str]] = {}
    for flag in [*runner_options(runner), *extra]:
        given = by_name.setdefault(flag.lstrip("-").split("=", 1)[0], [])
        if flag in given:
            continue
        if given and not _collects_values([given[-1], flag]):
            given.clear()
        given.append(flag)
    return [flag for given in by_name.values() for flag in given]


def _collects_values(flags: list[str]) -> bool:
    """Whether Beam keeps every value of an option given as ``flags`` (two flags of one name), not the last."""
    name = flags[0].lstrip("-").split("=", 1)[0]
    return "=" in flags[0] and "=" in flags[1] and isinstance(
        PipelineOptions(flags).get_all_options(retain_unknown_options=True).get(name), list)


LOCAL_RUNNERS = (None, "DirectRunner", "FnApiRunner", "SwitchingDirectRunner")


def local_workers(options: PipelineOptions) -> int:
    """How many workers Beam's local runner runs side by side on this machine (1 on other runners, whose
    workers are machines or containers with cores of their own)."""
    direct = options.view_as(DirectOptions)
    if options.view_as(StandardOptions).runner not in LOCAL_RUNNERS or direct.direct_running_mode == "in_memory":
        return 1
    return direct.direct_num_workers or os.cpu_count() or 1  # 0 means one per core, as Beam reads it


def runs_in_this_process(options: PipelineOptions) -> bool:
    """Whether Beam's workers for ``options`` run inside the launching process (the local runner in memory or
    in threads), so that what the launcher loads (modules, a preloaded model) is there for them."""
    return (options.view_as(StandardOptions).runner in LOCAL_RUNNERS
            and options.view_as(DirectOptions).direct_running_mode != "multi_processing")


def warm_up_workers(runner: str, model_dir: str, beam_args: Sequence[str] = (), *, tasks: Sequence[str] | None = None,
                    device: str = "auto", precision: str = "auto", zero_shot: dict[str, dict[str, str]] | None = None
                    ) -> threading.Thread | None:
    """Start loading the language identifier and the run's model in a daemon thread, and the ingest worker
    processes in another, if the runner's workers run in this process; the model's thread, or None.

    The CLI calls it with the run's settings before the run flow, which on 2 cores waits about 3 s for Prefect's
    ephemeral server with the CPU idle; a worker would otherwise spend about 3.5 s of the job on the same work
    (imports of transformers' encoder and peft, then the bundle's load). The worker takes the preloaded model
    over (``DocumentModelHandler.load_model``, waiting if it is still loading), so the work is moved, never
    doubled. The ingest workers' forkserver imports the ingest modules meanwhile (about 1 s, on the core the
    model's thread leaves idle). Best effort: an error is left for the job to meet and report.
    """
    try:
        options = PipelineOptions(beam_flags(runner, beam_args))
    except ValueError:  # an unknown runner: the job reports it
        return None
    if not runs_in_this_process(options):
        return None

    def warm_up() -> None:
        try:
            detect_language("loads the language model once per process")
            config = PipelineConfig(inputs=(), output="", runner=runner, model_dir=model_dir,
                                    tasks=tuple(tasks) if tasks else None, device=device, precision=precision,
                                    zero_shot=zero_shot, threads=default_threads(options))
            model_handler(config, *labeling_tasks(model_dir, config.tasks, zero_shot)).preload_model()
        except Exception:
            log.debug("worker warm-up failed", exc_info=True)
        finally:
            preload.finish()

    preload.begin()  # before the thread: a worker that asks early waits instead of loading a second model

    thread = threading.Thread(target=warm_up, name="undertone-warm-up", daemon=True)
    thread.start()
    threading.Thread(target=start_workers, args=(available_cores(),), name="undertone-ingest-workers",
                     daemon=True).start()
    return thread


def default_threads(options: PipelineOptions, cores: int | None = None) -> int | None:
    """Torch threads per worker when none are configured: ``cores`` (default: this process's) split among
    local workers, since each loads its own model and two workers of 2 threads on 2 cores run slower than one
    (measured on the bench corpus: job 58.7 s against 44-51 s with 1 thread each); None lets a lone worker,
    or a remote one, take every core it has."""
    workers = local_workers(options)
    if workers == 1:
        return None
    return max(1, (cores or available_cores()) // workers)


class IngestFiles(beam.DoFn):
    """A file path in; cleaned documents out, failures (unreadable records, unusable texts) to ``failed``, and a
    counter per source of the records read. With ``processes`` above 1, small files are read and cleaned in
    worker processes a chunk at a time (:mod:`transforms.ingest.parallel`); a chunk's records come out once the
    next chunk has gone to the workers, or when the bundle ends."""

    def __init__(self, options: IngestOptions, processes: int) -> None:
        self.options = options
        self.processes = processes

    def start_bundle(self) -> None:
        self._files = ChunkedIngest(self.options, self.processes)

    def process(self, path: bytes):
        for record in self._files.add(os.fsdecode(path)):
            yield _routed(record)

    def finish_bundle(self):
        for record in self._files.flush():
            yield _routed(record, at_bundle_end=True)


def _routed(record: dict[str, Any] | Failure, at_bundle_end: bool = False) -> Any:
    """Count a record read and route it: documents to the main output, failures to ``failed`` (at the end of a
    bundle as windowed values, which Beam requires there; a batch job has the one global window)."""
    Metrics.counter(INGEST_METRICS, f"input_{record_source(record)}").inc()
    value = GlobalWindows.windowed_value(record) if at_bundle_end else record
    return beam.pvalue.TaggedOutput("failed", value) if isinstance(record, Failure) else value


def record_source(record: dict[str, Any] | Failure) -> str:
    source = record.source if isinstance(record, Failure) else record["source"]
    return source or UNKNOWN_SOURCE


def ingest_processes(config: PipelineConfig, options: PipelineOptions) -> int:
    """Worker processes for reading and cleaning: the configured number, else every core of this machine when
    the runner's workers run in this process (one thread runs the stage there), else 1 (other runners spread
    files over their own workers)."""
    if config.ingest_processes is not None:
        return config.ingest_processes
    return available_cores() if runs_in_this_process(options) else 1


def ingest_options(config: PipelineConfig) -> IngestOptions:
    """How a run reads and cleans its files; also the key its files read ahead are taken by."""
    return IngestOptions(config.source, config.columns, config.hash_addresses, config.max_text_chars)


def labeling_tasks(model_dir: str, tasks: Sequence[str] | None, zero_shot: dict[str, dict[str, str]] | None
                   ) -> tuple[BundleSpec, dict[str, tuple[str, ...]]]:
    """The bundle and the tasks a run labels (task → labels): ``tasks``, else the bundle's default ones."""
    bundle = read_bundle_spec(Path(model_dir))
    if zero_shot:
        bundle = with_zero_shot(bundle, zero_shot)
    chosen = tasks or bundle.default_tasks or tuple(bundle.tasks)
    unknown = sorted(set(chosen) - set(bundle.tasks))
    if unknown:
        raise ValueError(f"model {bundle.model_version} has no task {unknown}; it has {sorted(bundle.tasks)}")
    try:  # a bundle from before fewshot refused such names would write an unreadable partition
        check_task_names(chosen)
    except ValueError as error:
        raise ValueError(f"model {bundle.model_version}: {error}") from None
    return bundle, {task: bundle.tasks[task].labels for task in chosen}


def model_handler(config: PipelineConfig, bundle: BundleSpec, tasks: dict[str, tuple[str, ...]]
                  ) -> DocumentModelHandler:
    """The workers' model of a run: ``bundle`` and ``tasks`` as :func:`labeling_tasks` read them, so the version
    stamped on the rows is that of the bundle.json whose tasks are labeled, not of a second read."""
    return DocumentModelHandler(config.model_dir, tuple(tasks), config.device, config.zero_shot,
                                token_budget=config.token_budget, precision=config.precision, threads=config.threads,
                                model_version=bundle.model_version)


def build(pipeline: beam.Pipeline, config: PipelineConfig, files: list[str], bundle: BundleSpec,
          tasks: dict[str, tuple[str, ...]], staging: str) -> None:
    """Add the labeling job to ``pipeline``, writing into ``staging`` (the run's staging folder, or a remote one);
    ``bundle`` and ``tasks`` are :func:`labeling_tasks`'."""
    ingested = (
        pipeline
        | "Files" >> beam.Create([os.fsencode(file) for file in files])  # a file name need not be UTF-8
        | "SpreadFiles" >> beam.Reshuffle()
        | "Ingest" >> beam.ParDo(IngestFiles(ingest_options(config), ingest_processes(config, pipeline.options))
                                 ).with_outputs("failed", main="documents")
    )
    documents = ingested.documents
    if config.redact_pii:
        documents = documents | "RedactPII" >> beam.Map(redact_document)
    handler = model_handler(config, bundle, tasks)
    classified = documents | "Classify" >> Classify(handler, config.run_id)

    labeled_files = classified["labeled"] | "WriteLabeled" >> WriteLabeled(
        staging, labeled_schema(tasks), config.logical_date, config.run_id)
    _ = labeled_files | "MarkDuplicates" >> MarkDuplicates()

    dead_rows = (
        (ingested.failed, classified["failed"])
        | "AllFailures" >> beam.Flatten()
        # Stamped as each failure arrives, in the stage that produced it: the job's build time, used before, was
        # minutes or hours off for a long run's later records.
        | "DeadLetterRows" >> beam.Map(lambda failure: failure.to_row(config.run_id, datetime.now(UTC)))
    )
    if config.redact_pii:
        dead_rows = dead_rows | "RedactDeadLetters" >> beam.Map(redact_dead_letter)
    _ = dead_rows | "WriteDeadLetters" >> WriteDeadLetters(staging, config.logical_date, config.run_id)


def run_pipeline(config: PipelineConfig) -> dict[str, Any]:
    """Run the job, commit its partitions and return the manifest (also written to ``_runs/``)."""
    started = datetime.now(UTC)
    clock = time.monotonic()
    files = list(config.files) if config.files is not None else expand_inputs(config.inputs, output=config.output)
    bundle, tasks = labeling_tasks(config.model_dir, config.tasks, config.zero_shot)
    flags = beam_flags(config.runner, config.beam_args)
    options = PipelineOptions(flags)
    log.info("run %s: %d files, date %s, runner %s (%s)", config.run_id, len(files), config.logical_date,
             config.runner, shlex.join(flags))
    recovered = recover_staging(config.output)
    if recovered:
        log.warning("finished or discarded the staging folders of dead runs: %s", recovered)
    remote = remote_staging(config.run_id, options.view_as(GoogleCloudOptions).temp_location)
    if config.threads is None:
        config = replace(config, threads=default_threads(options))
    pipeline = beam.Pipeline(options=options)
    reading = ingest_options(config)
    staging = claim_staging(config.output, config.run_id, remote)
    read_early: list[str] = []
    try:  # from the claim on: a run stopped anywhere (SIGTERM included) removes its staging folder
        # The ingest workers read the first files while Beam builds and starts the job in this thread (about 1 s).
        if runs_in_this_process(options):
            read_early = read_ahead(files, reading, ingest_processes(config, options))
        build(pipeline, config, files, bundle, tasks, remote or str(staging))
        result = pipeline.run()
        state = result.wait_until_finish()
        if state != PipelineState.DONE:
            raise RuntimeError(f"Beam job of run {config.run_id} ended {state}")
        if remote:
            log.info("run %s: %d files fetched from %s", config.run_id, fetch_staged(remote, staging), remote)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if remote:
            discard_remote(remote)
        stop = interruption_behind(error)
        if stop is not error:
            raise stop from None
        raise
    finally:
        drop_read_ahead(read_early, reading)
    inputs = _counters(result, INGEST_METRICS, prefix="input_")  # records read per source
    if config.whole_date:
        owned: Iterable[str] = (*SOURCES, UNKNOWN_SOURCE)
    else:  # without counters (a runner that reports no metrics), the sources it wrote anything for
        owned = inputs if inputs is not None else staged_sources(config.output, config.run_id, config.logical_date)
    committed = commit_run(config.output, config.run_id, config.logical_date, owned_sources=owned)
    counts = reconcile(inputs or {}, committed["labeled"], committed["dead_letter"])
    manifest = {
        "run_id": config.run_id,
        "logical_date": config.logical_date,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "seconds": round(time.monotonic() - clock, 2),
        "status": "complete",
        "model_version": bundle.model_version,
        "tasks": list(tasks),
        "runner": config.runner,
        "beam_options": flags,
        "worker_staging": remote or str(staging),
        "inputs": [printable(file) for file in files],
        "counts": counts,
        "totals": totals(counts),
        "reconciled": None if inputs is None else all(
            row["input"] == row["labeled"] + row["dead_letter"] for row in counts.values()),
        "outputs": {
            "labeled": [str(labeled_partition(config.output, s, config.logical_date)) for s in SOURCES
                        if counts.get(s, {}).get("labeled")],
            "dead_letter": str(dead_letter_partition(config.output, config.logical_date)),
        },
        "config": {k: v for k, v in asdict(config).items() if k not in ("run_id", "files")},  # files: "inputs"
        "classify": _counters(result, METRICS_NAMESPACE),  # real/padded tokens, model time: padding and MFU
        "reused_ids": _counters(result, DUPLICATES_METRICS, prefix="reused_ids_"),
    }
    if manifest["reused_ids"]:
        log.warning("run %s: doc_ids shared by records of different texts (a source id used twice), per source: %s",
                    config.run_id, manifest["reused_ids"])
    path = write_manifest(config.output, config.run_id, manifest)
    return {**manifest, "manifest_path": str(path)}


def interruption_behind(error: BaseException) -> BaseException:
    """The interrupt (Ctrl-C, a termination signal turned into an exception) that ``error`` reports, else
    ``error``. Beam reports whatever a transform raised as a RuntimeError naming the step, so a SIGTERM or Ctrl-C
    that lands inside the job came out as an ordinary failure: the flow failed, and the command exited 1 instead
    of stopping as an interrupted command does."""
    cause: BaseException | None = error
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        if not isinstance(cause, (Exception, GeneratorExit)):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return error


def _counters(result: beam.runners.runner.PipelineResult, namespace: str, prefix: str = ""
              ) -> dict[str, int] | None:
    """Counters of one namespace summed over steps (name without ``prefix``); None when the runner
    reports no metrics."""
    try:
        counters = result.metrics().query(MetricsFilter().with_namespace(namespace))["counters"]
    except (NotImplementedError, AttributeError, KeyError):
        return None
    summed: dict[str, int] = {}
    for counter in counters:
        name = counter.key.metric.name.removeprefix(prefix)
        value = counter.committed if counter.committed is not None else counter.attempted
        summed[name] = summed.get(name, 0) + int(value or 0)
    return summed
