"""Label documents with every task of a model bundle, through Beam's ``RunInference``.

``DocumentModelHandler`` is the framework glue (load once per worker process, label a
batch); ``Classify`` wires it into ``RunInference`` with exception handling, so a batch
that fails to classify becomes dead-letter rows rather than a failed run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from models.bundle import read_bundle_spec
from models.routing import route
from transforms.records import Document, Failure

METRICS_NAMESPACE = "undertone_classify"
CPU_TOKEN_BUDGET = 8192
"""Tokens per batch on CPU: matmuls of this many rows already run near the machine's ceiling; more only costs memory.
4,096 peaked 100 MiB lower but made the bench job 7 % slower on 2 cores (model stage 5 %; two A/B pairs)."""
CUDA_TOKEN_BUDGET = 65536
"""Tokens per batch on a GPU: big batches keep its many cores busy; MiniLM at this size needs well under 2 GiB."""


def default_token_budget(device: str) -> int:
    """The batch token budget for a device; auto is judged on the machine that builds the pipeline."""
    import torch

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return CUDA_TOKEN_BUDGET if cuda else CPU_TOKEN_BUDGET


class DocumentModelHandler(ModelHandler[Document, PredictionResult, Any]):
    """Loads a model bundle and labels batches of documents with all of its tasks in one pass."""

    def __init__(
        self,
        model_dir: str,
        tasks: Sequence[str] | None = None,
        device: str = "auto",
        zero_shot: dict[str, dict[str, str]] | None = None,
        token_budget: int | None = None,
        precision: str = "auto",
        threads: int | None = None,
    ) -> None:
        # With element_size_fn, BatchElements sizes batches in tokens: a batch of tweets holds
        # hundreds of documents, a batch of long emails a few dozen, and padding stays small.
        self.max_length = read_bundle_spec(Path(model_dir)).max_length
        self.token_budget = token_budget or default_token_budget(device)
        super().__init__(min_batch_size=max(1, self.token_budget // 4), max_batch_size=self.token_budget,
                         element_size_fn=self.estimated_tokens)
        self.model_dir = model_dir
        self.tasks = tuple(tasks) if tasks else None
        self.device = device
        self.zero_shot = zero_shot
        self.precision = precision
        self.threads = threads

    def estimated_tokens(self, document: Document) -> int:
        """Tokens the document will take in the model (about 4 characters a token), capped by the window."""
        return min(self.max_length, 2 + len(document["text"]) // 4)

    def load_model(self) -> Any:
        """The classifier object itself (Beam keeps a weak reference to it, so not a tuple)."""
        from models.classifier import Classifier

        return Classifier.load(self.model_dir, device=self.device, tasks=self.tasks, zero_shot=self.zero_shot,
                               precision=self.precision, threads=self.threads)

    def run_inference(
        self, batch: Sequence[Document], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        """Tokenise once, then one encoder pass for every task per group of similar lengths; counts real and
        padded tokens and model time so that a run can report its padding overhead and model FLOP utilisation,
        and documents per precision, the one a worker resolved ``auto`` to."""
        token_ids, truncated = model.tokenize([document["text"] for document in batch])
        predictions: list[Any] = [None] * len(batch)
        lengths = [len(ids) for ids in token_ids]
        for group in length_groups(lengths, min_tokens=self.token_budget // 8, max_tokens=self.token_budget):
            encoded = model.pad([token_ids[index] for index in group])
            started = time.perf_counter()
            answers = model.decode(model.logits_for(encoded))
            Metrics.counter(METRICS_NAMESPACE, "model_microseconds").inc(int((time.perf_counter() - started) * 1e6))
            Metrics.counter(METRICS_NAMESPACE, "real_tokens").inc(int(encoded["attention_mask"].sum()))
            Metrics.counter(METRICS_NAMESPACE, "padded_tokens").inc(encoded["attention_mask"].numel())
            Metrics.distribution(METRICS_NAMESPACE, "pass_tokens").update(encoded["attention_mask"].numel())
            for index, answer in zip(group, answers, strict=True):
                predictions[index] = answer
        for document, answer, cut in zip(batch, predictions, truncated, strict=True):
            tasks = model.spec.tasks
            labels = {
                task: (p.label, p.score) if applies(tasks[task].sources, document["source"]) else (None, None)
                for task, p in answer.items()
            }
            yield PredictionResult({**document, "truncated": cut}, labels, model.model_version)
        Metrics.counter(METRICS_NAMESPACE, f"documents_{model.precision}").inc(len(batch))
        model.trim_heap()

    def get_num_bytes(self, batch: Sequence[Document]) -> int:
        return sum(len(document["text"].encode("utf-8", errors="replace")) for document in batch)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE


def length_groups(lengths: Sequence[int], min_tokens: int, max_tokens: int | None = None, slack: float = 0.1
                  ) -> list[list[int]]:
    """Split a batch into encoder passes of similar lengths (indices, shortest first).

    A batch of length-sorted documents can still straddle a jump in length (tweets then emails): padding
    every tweet to an email's length would waste most of the pass. A group closes when adding the next
    document would pad it beyond ``slack`` over its real tokens, once it holds ``min_tokens`` real tokens
    (smaller groups would make matmuls too small to run efficiently), and always before its padded tokens
    would pass ``max_tokens``: batches are sized by *estimated* tokens, and text the estimate undercounts
    (CJK, digits, URLs) would otherwise make a pass several times the budget, and a memory peak with it.
    """
    groups: list[list[int]] = []
    current: list[int] = []
    real = 0
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        length = lengths[index]
        padded = length * (len(current) + 1)
        if current and ((real >= min_tokens and padded > (1 + slack) * (real + length))
                        or (max_tokens is not None and padded > max_tokens)):
            groups.append(current)
            current, real = [], 0
        current.append(index)
        real += length
    if current:
        groups.append(current)
    return groups


def applies(sources: Sequence[str] | None, source: str) -> bool:
    """Whether a task labels documents of this source (spam is for email only)."""
    return sources is None or source in sources


def labeled_row(result: PredictionResult, run_id: str) -> dict[str, Any]:
    """A labeled-output row: the document, label and score per task (null where the task does not apply),
    the routing team when intent is labeled, and the run columns."""
    row = dict(result.example)
    for task, (label, score) in result.inference.items():
        row[task], row[f"{task}_score"] = label, score
    if "intent" in result.inference:
        row["team"] = route(*result.inference["intent"])
    row.update(model_version=result.model_id, run_id=run_id, processed_at=datetime.now(UTC))
    return row


def failed_batch_rows(failed: tuple[Sequence[Document], tuple[type, str, list[str]]]) -> Iterable[Failure]:
    """A batch that raised in the model (Beam gives ``(batch, (type, repr, traceback))``): one failure per document."""
    batch, (error_type, error_repr, _traceback) = failed
    for document in batch:
        yield Failure(document["source"], document["input_ref"], "classify", "inference_error",
                      f"{error_type.__name__}: {error_repr}", document["text"][:500], document["doc_id"])


class SortByLength(beam.DoFn):
    """Reorder documents in windows of ``window`` so consecutive ones (one batch) have similar lengths.

    Memory stays bounded by the window, whatever the corpus size.
    """

    def __init__(self, window: int = 4096) -> None:
        self.window = window

    def start_bundle(self) -> None:
        self._buffer: list[Document] = []

    def process(self, document: Document) -> Iterable[Document]:
        self._buffer.append(document)
        if len(self._buffer) >= self.window:
            yield from self._drain()

    def finish_bundle(self) -> Iterable[WindowedValue]:
        for document in self._drain():
            yield GlobalWindows.windowed_value_at_end_of_window(document)

    def _drain(self) -> list[Document]:
        documents = sorted(self._buffer, key=lambda document: len(document["text"]))
        self._buffer = []
        return documents


class Classify(beam.PTransform):
    """Documents in; ``labeled`` rows and ``failed`` :class:`Failure` records out."""

    def __init__(self, handler: DocumentModelHandler, run_id: str) -> None:
        super().__init__()
        self.handler = handler
        self.run_id = run_id

    def expand(self, documents: beam.PCollection) -> dict[str, beam.PCollection]:
        ordered = documents | "SortByLength" >> beam.ParDo(SortByLength())
        main, other = ordered | "RunInference" >> RunInference(self.handler).with_exception_handling()
        labeled = main | "ToLabeledRow" >> beam.Map(labeled_row, run_id=self.run_id)
        failed = other.failed_inferences | "FailedBatchRows" >> beam.FlatMap(failed_batch_rows)
        return {"labeled": labeled, "failed": failed}
