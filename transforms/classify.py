"""Label documents with every task of a model bundle, through Beam's ``RunInference``.

``TokenizeInLengthOrder`` tokenises documents once and orders them by length, so that batches are cut
by real tokens; ``DocumentModelHandler`` is the framework glue (load once per worker process, label a
batch); ``Classify`` wires them into ``RunInference`` with exception handling, so a batch that fails to
classify becomes dead-letter rows rather than a failed run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from models.bundle import read_bundle_spec
from models.registry import bundle_on_this_machine
from models.routing import route
from transforms.records import Document, Failure

METRICS_NAMESPACE = "undertone_classify"
CPU_TOKEN_BUDGET = 4096
"""Tokens per batch on CPU. On 2 cores a pass labels about as many tokens a second at 512 as at 16,384 tokens
(MiniLM-L6, bf16 and fp32 alike, seq 16-128), so the budget only needs to be big enough for matmuls to run
well; a smaller one lets each batch span fewer lengths (less padding) and peaks lower."""
SORT_WINDOW_DOCUMENTS = 4096
"""Documents :class:`TokenizeInLengthOrder` sorts together: enough for batches of nearly equal lengths (a window
of 2,048 made the model stage about 5 % slower)."""
SORT_WINDOW_CHARS = 8_000_000
"""...and the characters (text and full email body) they may hold: 4,096 documents of the 200,000 characters
``max_text_chars`` lets through would hold 1.6 GB of text. A window of tweets and reviews closes by count long
before this; one of emails at a few thousand characters each, near its count."""
CUDA_TOKEN_BUDGET = 65536
"""Tokens per batch on a GPU: big batches keep its many cores busy; MiniLM at this size needs well under 2 GiB."""


class TokenizedDocument(NamedTuple):
    """A document with its token ids, cut to the model window: tokenised once, before batching, so that
    batches are cut by real tokens and every task shares the ids."""

    document: Document
    token_ids: list[int]
    truncated: bool


def token_count(item: TokenizedDocument) -> int:
    return len(item.token_ids)


def default_token_budget(device: str) -> int:
    """The batch token budget for a device; auto is judged on the machine that builds the pipeline."""
    import torch

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return CUDA_TOKEN_BUDGET if cuda else CPU_TOKEN_BUDGET


def local_bundle(model_dir: str, model_version: str | None) -> str:
    """The bundle's folder on this worker: ``model_dir``, or where this worker keeps the same version
    (:func:`models.registry.bundle_on_this_machine`) when the version is known."""
    return model_dir if model_version is None else str(bundle_on_this_machine(model_dir, model_version))


class DocumentModelHandler(ModelHandler[TokenizedDocument, PredictionResult, Any]):
    """Loads a model bundle and labels batches of tokenised documents with all of its tasks in one pass."""

    def __init__(
        self,
        model_dir: str,
        tasks: Sequence[str] | None = None,
        device: str = "auto",
        zero_shot: dict[str, dict[str, str]] | None = None,
        token_budget: int | None = None,
        precision: str = "auto",
        threads: int | None = None,
        model_version: str | None = None,
    ) -> None:
        # With element_size_fn, BatchElements sizes batches in tokens: a batch of tweets holds hundreds of
        # documents, a batch of long emails a few dozen. A fixed size (min = max) fills every batch to the
        # budget; BatchElements' adaptive sizing started each bundle at a quarter of it.
        self.token_budget = token_budget or default_token_budget(device)
        super().__init__(min_batch_size=self.token_budget, max_batch_size=self.token_budget,
                         element_size_fn=token_count)
        self.model_dir = model_dir
        self.tasks = tuple(tasks) if tasks else None
        self.device = device
        self.zero_shot = zero_shot
        self.precision = precision
        self.threads = threads
        self.model_version = model_version

    def local_model_dir(self) -> str:
        return local_bundle(self.model_dir, self.model_version)

    def load_model(self) -> Any:
        """The classifier object itself (Beam keeps a weak reference to it, so not a tuple); the one the launcher
        preloaded (:meth:`preload_model`) where this worker runs in its process."""
        from models.classifier import load_classifier

        return load_classifier(self.local_model_dir(), **self._load_options())

    def preload_model(self) -> None:
        """Load the model now, for an in-process worker's :meth:`load_model` to take over."""
        from models.classifier import preload_classifier

        preload_classifier(self.local_model_dir(), **self._load_options())

    def _load_options(self) -> dict[str, Any]:
        return {"device": self.device, "tasks": self.tasks, "zero_shot": self.zero_shot, "precision": self.precision,
                "threads": self.threads}

    def run_inference(
        self, batch: Sequence[TokenizedDocument], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        """One encoder pass for every task per group of similar lengths; counts real and padded tokens and
        model time so that a run can report its padding overhead and model FLOP utilisation, and documents
        per precision, the one a worker resolved ``auto`` to."""
        predictions: list[Any] = [None] * len(batch)
        lengths = [len(item.token_ids) for item in batch]
        # A pass closes on the padding slack only once it holds half the budget: smaller ones (an eighth: 77 passes
        # of the bench corpus instead of 43) made AMX's bf16 model stage a tenth slower for 1.4 points less padding.
        for group in length_groups(lengths, min_tokens=self.token_budget // 2, max_tokens=self.token_budget):
            encoded = model.pad([batch[index].token_ids for index in group])
            started = time.perf_counter()
            answers = model.decode(model.logits_for(encoded))
            Metrics.counter(METRICS_NAMESPACE, "model_microseconds").inc(int((time.perf_counter() - started) * 1e6))
            Metrics.counter(METRICS_NAMESPACE, "real_tokens").inc(int(encoded["attention_mask"].sum()))
            Metrics.counter(METRICS_NAMESPACE, "padded_tokens").inc(encoded["attention_mask"].numel())
            Metrics.distribution(METRICS_NAMESPACE, "pass_tokens").update(encoded["attention_mask"].numel())
            for index, answer in zip(group, answers, strict=True):
                predictions[index] = answer
        tasks = model.spec.tasks
        for (document, _, cut), answer in zip(batch, predictions, strict=True):
            labels = {
                task: (p.label, p.score) if applies(tasks[task].sources, document["source"]) else (None, None)
                for task, p in answer.items()
            }
            yield PredictionResult({**document, "truncated": cut}, labels, model.model_version)
        Metrics.counter(METRICS_NAMESPACE, f"documents_{model.precision}").inc(len(batch))
        model.trim_heap()

    def get_num_bytes(self, batch: Sequence[TokenizedDocument]) -> int:
        return sum(len(item.document["text"].encode("utf-8", errors="replace")) for item in batch)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE


def length_groups(lengths: Sequence[int], min_tokens: int, max_tokens: int | None = None, slack: float = 0.02
                  ) -> list[list[int]]:
    """Split a batch into encoder passes of similar lengths (indices, shortest first).

    A batch of length-sorted documents still spans a range of lengths (a batch of tweets runs from 10 to 20
    tokens, say), and it can straddle a jump (tweets then emails): padding every document to the longest would
    waste much of the pass. A group closes when adding the next document would pad it beyond ``slack`` over its
    real tokens, once it holds ``min_tokens`` real tokens (smaller groups would make matmuls too small to run
    efficiently), and always before its padded tokens would pass ``max_tokens``, the memory a pass may take.
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


def classify_failure(document: Document, error_type: str, error: str) -> Failure:
    return Failure(document["source"], document["input_ref"], "classify", error_type, error, document["text"][:500],
                   document["doc_id"])


def failed_batch_rows(failed: tuple[Sequence[TokenizedDocument], tuple[type, str, list[str]]]
                      ) -> Iterable[Failure]:
    """A batch that raised in the model (Beam gives ``(batch, (type, repr, traceback))``): one failure per document."""
    batch, (error_type, error_repr, _traceback) = failed
    for document, _, _ in batch:
        yield classify_failure(document, "inference_error", f"{error_type.__name__}: {error_repr}")


def unreadable_failure(document: Document, token_ids: Sequence[int], unknown_id: int, max_word_chars: int | None
                       ) -> Failure:
    """The dead letter of a text of which the model's window holds no token but [UNK] (or none at all): its labels
    would come from ``[CLS] [UNK] [SEP]``, the same for a hash dump as for an emoji, and look confident.
    ``max_word_chars``: the WordPiece tokenizer's longest word, None for other tokenizers."""
    unknown = sum(token == unknown_id for token in token_ids)
    long_word = f"over {max_word_chars} characters" if max_word_chars else "too long for the tokenizer"
    return classify_failure(
        document, "unreadable_text",
        f"the model reads no word of this text: its window holds {unknown} [UNK] token(s) and nothing else (a run "
        f"of {long_word} without space or punctuation, such as a hash or key dump, or only characters outside "
        "the model's vocabulary, such as emoji)")


class TokenizeInLengthOrder(beam.DoFn):
    """Tokenise documents in windows of ``window`` documents (or ``window_chars`` characters, whichever comes
    first) and emit each window shortest first, so that consecutive documents, which ``BatchElements`` puts in
    one batch, have nearly the same number of tokens.

    Documents are tokenised ``TOKENIZE_CHUNK`` at a time as they arrive, so that on the local runner the job's
    thread tokenises while the ingest workers read. Memory stays bounded by the window, whatever the corpus size or
    document size. A chunk the tokenizer rejects is tokenised one document at a time; a document it still rejects
    goes to the ``failed`` output, as does one whose window holds only special and [UNK] tokens
    (:func:`unreadable_failure`).
    """

    def __init__(self, model_dir: str, window: int = SORT_WINDOW_DOCUMENTS,
                 window_chars: int = SORT_WINDOW_CHARS, model_version: str | None = None) -> None:
        self.model_dir = model_dir
        self.model_version = model_version
        self.window = window
        self.window_chars = window_chars

    def setup(self) -> None:
        from models.classifier import TOKENIZE_CHUNK, load_tokenizer

        self.tokenize_chunk = TOKENIZE_CHUNK
        spec = read_bundle_spec(Path(local_bundle(self.model_dir, self.model_version)))
        self.tokenizer = load_tokenizer(spec)
        self.max_length = spec.max_length
        self.unreadable_ids = frozenset(self.tokenizer.all_special_ids)  # [UNK] is one of them
        self.max_word_chars = getattr(self.tokenizer.backend_tokenizer.model, "max_input_chars_per_word", None)

    def start_bundle(self) -> None:
        self._pending: list[Document] = []
        self._window: list[TokenizedDocument | beam.pvalue.TaggedOutput] = []
        self._window_chars = 0

    def process(self, document: Document) -> Iterable[TokenizedDocument | beam.pvalue.TaggedOutput]:
        self._pending.append(document)
        self._window_chars += len(document["text"]) + len(document.get("full_text") or "")
        if len(self._pending) >= self.tokenize_chunk:
            self._tokenize_pending()
        if len(self._window) + len(self._pending) >= self.window or self._window_chars >= self.window_chars:
            yield from self._drain()

    def finish_bundle(self) -> Iterable[WindowedValue | beam.pvalue.TaggedOutput]:
        for item in self._drain():
            if isinstance(item, beam.pvalue.TaggedOutput):
                yield beam.pvalue.TaggedOutput(item.tag, GlobalWindows.windowed_value_at_end_of_window(item.value))
            else:
                yield GlobalWindows.windowed_value_at_end_of_window(item)

    def _drain(self) -> list[TokenizedDocument | beam.pvalue.TaggedOutput]:
        """The window, shortest first, then its tokenizer failures."""
        self._tokenize_pending()
        window, self._window, self._window_chars = self._window, [], 0
        tokenized = [item for item in window if isinstance(item, TokenizedDocument)]
        return sorted(tokenized, key=token_count) + [item for item in window if not isinstance(item, TokenizedDocument)]

    def _tokenize_pending(self) -> None:
        documents, self._pending = self._pending, []
        try:
            self._window.extend(self._tokenize(documents))
        except Exception:  # noqa: BLE001 - one text the tokenizer rejects must not lose the others
            for document in documents:
                try:
                    self._window.extend(self._tokenize([document]))
                except Exception as error:  # noqa: BLE001 - any tokenizer error is this document's failure
                    self._window.append(beam.pvalue.TaggedOutput(
                        "failed", classify_failure(document, "tokenize_error", f"{type(error).__name__}: {error}")))

    def _tokenize(self, documents: Sequence[Document]) -> list[TokenizedDocument | beam.pvalue.TaggedOutput]:
        """Documents with their window's ids; one with no readable token (the first one past [CLS] usually is,
        so the check costs next to nothing) as an ``unreadable_text`` failure."""
        from models.classifier import window_token_ids

        token_ids, truncated = window_token_ids(self.tokenizer, [d["text"] for d in documents], self.max_length)
        return [TokenizedDocument(d, ids, cut) if any(token not in self.unreadable_ids for token in ids)
                else beam.pvalue.TaggedOutput("failed", unreadable_failure(d, ids, self.tokenizer.unk_token_id,
                                                                           self.max_word_chars))
                for d, ids, cut in zip(documents, token_ids, truncated, strict=True)]


class Classify(beam.PTransform):
    """Documents in; ``labeled`` rows and ``failed`` :class:`Failure` records out."""

    def __init__(self, handler: DocumentModelHandler, run_id: str) -> None:
        super().__init__()
        self.handler = handler
        self.run_id = run_id

    def expand(self, documents: beam.PCollection) -> dict[str, beam.PCollection]:
        ordered = documents | "TokenizeInLengthOrder" >> beam.ParDo(
            TokenizeInLengthOrder(self.handler.model_dir, model_version=self.handler.model_version)
        ).with_outputs("failed", main="tokenized")
        main, other = ordered.tokenized | "RunInference" >> RunInference(self.handler).with_exception_handling()
        labeled = main | "ToLabeledRow" >> beam.Map(labeled_row, run_id=self.run_id)
        failed_batches = other.failed_inferences | "FailedBatchRows" >> beam.FlatMap(failed_batch_rows)
        failed = (ordered.failed, failed_batches) | "AllClassifyFailures" >> beam.Flatten()
        return {"labeled": labeled, "failed": failed}
