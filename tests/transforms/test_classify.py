"""The Beam model handler on a tiny random-weight model built from a config."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import SENTIMENT
from transforms.classify import Classify, DocumentModelHandler, TokenizedDocument
from transforms.records import new_document


def documents() -> list[dict]:
    texts = ["I love it", "terrible, never again", "it arrived on Tuesday", "word " * 200]
    return [new_document("review", f"f:{i}", text) for i, text in enumerate(texts)]


def tokenized(batch: list[dict], model) -> list[TokenizedDocument]:
    token_ids, truncated = model.tokenize([document["text"] for document in batch])
    return [TokenizedDocument(*item) for item in zip(batch, token_ids, truncated, strict=True)]


def test_handler_loads_an_object_and_labels_every_document(tiny_bundle: Path) -> None:
    handler = DocumentModelHandler(str(tiny_bundle))
    model = handler.load_model()
    assert not isinstance(model, tuple)
    results = list(handler.run_inference(tokenized(documents(), model), model))
    assert [r.example["doc_id"] for r in results] == [d["doc_id"] for d in documents()]
    assert all(r.model_id == "tiny-test@0.0.1" for r in results)
    assert all(r.inference["sentiment"][0] in SENTIMENT and 1 / 3 <= r.inference["sentiment"][1] <= 1 for r in results)
    assert [r.example["truncated"] for r in results] == [False, False, False, True]


def test_classify_transform_in_a_pipeline(tiny_bundle: Path) -> None:
    with TestPipeline(runner="FnApiRunner") as pipeline:
        out = pipeline | beam.Create(documents()) | Classify(DocumentModelHandler(str(tiny_bundle)), "run-1")
        assert_that(out["labeled"] | beam.Map(lambda r: (r["source_id"] is not None, r["run_id"], r["sentiment"] in
                                                          SENTIMENT)),
                    equal_to([(True, "run-1", True)] * 4), label="labeled")
        assert_that(out["failed"], equal_to([]), label="failed")


class ExplodingHandler(DocumentModelHandler):
    def run_inference(self, batch, model, inference_args=None):
        raise RuntimeError("CUDA out of memory (simulated)")


def test_a_failing_batch_becomes_dead_letter_not_a_crash(tiny_bundle: Path) -> None:
    with TestPipeline(runner="FnApiRunner") as pipeline:
        out = pipeline | beam.Create(documents()) | Classify(ExplodingHandler(str(tiny_bundle)), "run-1")
        assert_that(out["labeled"], equal_to([]), label="labeled")
        assert_that(out["failed"] | beam.Map(lambda f: (f.stage, f.error_type, "out of memory" in f.error)),
                    equal_to([("classify", "inference_error", True)] * 4), label="failed")


def test_tasks_apply_only_to_their_sources_and_intent_is_routed(tiny_encoder: Path, tmp_path: Path) -> None:
    import json

    from tests.conftest import build_tiny_bundle
    from transforms.classify import labeled_row

    bundle = build_tiny_bundle(tmp_path / "b", tiny_encoder,
                               {"spam": ("ham", "spam"), "intent": ("card_arrival", "exchange_rate")})
    spec = json.loads((bundle / "bundle.json").read_text())
    spec["tasks"]["spam"]["sources"] = ["email"]
    (bundle / "bundle.json").write_text(json.dumps(spec))
    handler = DocumentModelHandler(str(bundle))
    batch = [new_document("email", "m:1", "Win a FREE prize now"), new_document("review", "r:1", "good value")]
    model = handler.load_model()
    email, review = (labeled_row(r, "run") for r in handler.run_inference(tokenized(batch, model), model))
    assert email["spam"] in ("ham", "spam") and email["spam_score"] >= 0.5
    assert review["spam"] is None and review["spam_score"] is None
    assert email["team"] in ("cards", "exchange", "unrouted") and review["team"] is not None


def varied_documents(count: int = 300) -> list[dict]:
    import random

    rng = random.Random(7)
    words = "good bad parcel refund late love broken screen price support".split()
    return [new_document("social", f"p:{i}", " ".join(rng.choices(words, k=rng.choice([2, 5, 20, 80, 200]))),
                         source_id=f"post-{i}") for i in range(count)]


def test_batches_respect_the_token_budget_and_keep_every_document_once(tiny_bundle: Path) -> None:
    from models.classifier import Classifier
    from transforms.classify import TokenizeInLengthOrder, token_count

    handler = DocumentModelHandler(str(tiny_bundle), token_budget=512)
    documents = varied_documents()
    real = dict(zip((d["doc_id"] for d in documents),
                    (len(ids) for ids in Classifier.load(tiny_bundle).tokenize([d["text"] for d in documents])[0]),
                    strict=True))
    with TestPipeline(runner="FnApiRunner") as pipeline:
        ordered = pipeline | beam.Create(documents) | beam.ParDo(
            TokenizeInLengthOrder(str(tiny_bundle), window=64)).with_outputs("failed", main="tokenized")
        batches = ordered.tokenized | beam.BatchElements(**handler.batch_elements_kwargs())
        sizes = batches | "Sizes" >> beam.Map(lambda batch: sum(map(token_count, batch)))
        assert_that(sizes | beam.Filter(lambda size: size > 512), equal_to([]), label="budget")
        counted = batches | beam.FlatMap(lambda batch: [(item.document["doc_id"], token_count(item)) for item in batch])
        assert_that(counted, equal_to(list(real.items())), label="once, with its real token count")
        assert_that(ordered.failed, equal_to([]), label="failed")


@pytest.mark.parametrize("chunk", [2, 256])
def test_a_text_the_tokenizer_rejects_fails_alone_and_its_window_is_still_tokenized(tiny_bundle: Path,
                                                                                    chunk: int) -> None:
    """A lone surrogate (half an emoji) makes the Rust tokenizer raise. ``new_document`` and Beam's coders keep
    them out of a pipeline, so the DoFn is driven directly, as a worker would."""
    from transforms.classify import TokenizeInLengthOrder

    broken = {**new_document("social", "p:9", "half an emoji", source_id="p-9"), "text": "half an emoji \udcff"}
    step = TokenizeInLengthOrder(str(tiny_bundle), window=3)
    step.setup()
    step.tokenize_chunk = chunk
    step.start_bundle()
    out = [item for document in [*documents(), broken] for item in step.process(document)]
    for item in step.finish_bundle():  # windowed values, tagged or not
        out.append(beam.pvalue.TaggedOutput(item.tag, item.value.value) if isinstance(item, beam.pvalue.TaggedOutput)
                   else item.value)
    failed = [item.value for item in out if isinstance(item, beam.pvalue.TaggedOutput)]
    labeled = [item for item in out if isinstance(item, TokenizedDocument)]
    assert [(f.doc_id, f.stage, f.error_type) for f in failed] == [(broken["doc_id"], "classify", "tokenize_error")]
    assert sorted(item.document["doc_id"] for item in labeled) == sorted(d["doc_id"] for d in documents())
    first_window = [len(item.token_ids) for item in labeled[:3]]
    assert first_window == sorted(first_window)


def test_documents_are_tokenized_as_they_arrive_and_emitted_when_the_window_closes(tiny_bundle: Path) -> None:
    from transforms.classify import TokenizeInLengthOrder

    step = TokenizeInLengthOrder(str(tiny_bundle), window=9)
    step.setup()
    step.tokenize_chunk = 4
    calls: list[int] = []
    tokenize = step._tokenize
    step._tokenize = lambda documents: calls.append(len(documents)) or tokenize(documents)
    step.start_bundle()
    emitted = [list(step.process(document)) for document in varied_documents(12)]
    assert calls == [4, 4, 1]  # two chunks as they came, the ninth when the window closed
    assert [len(out) for out in emitted] == [0] * 8 + [9] + [0] * 3
    lengths = [len(item.token_ids) for item in emitted[8]]
    assert lengths == sorted(lengths)
    assert len([item.value for item in step.finish_bundle()]) == 3
    assert calls == [4, 4, 1, 3]


def test_a_window_of_long_documents_closes_at_its_character_budget(tiny_bundle: Path) -> None:
    """Memory is bounded by characters as well as documents: 4,096 long emails would otherwise sit in one window."""
    from transforms.classify import TokenizeInLengthOrder

    long_documents = [new_document("email", f"m:{i}", "refund " * (100 + 40 * (i % 3)), full_text="body " * 100)
                      for i in range(7)]
    step = TokenizeInLengthOrder(str(tiny_bundle), window=100, window_chars=2_500)
    step.setup()
    step.start_bundle()
    emitted_after = [len(list(step.process(document))) for document in long_documents]
    # 700-1,260 characters of text and 500 of body each: every second document reaches the budget.
    assert emitted_after == [0, 2, 0, 2, 0, 2, 0]
    rest = [item.value for item in step.finish_bundle()]
    assert [item.document["doc_id"] for item in rest] == [long_documents[6]["doc_id"]]


def test_bucketed_pipeline_labels_equal_one_by_one_labels(tiny_bundle: Path) -> None:
    from models.classifier import Classifier

    documents = varied_documents(120)
    classifier = Classifier.load(tiny_bundle)
    expected = {d["doc_id"]: classifier.predict(d["text"])["sentiment"] for d in documents}
    with TestPipeline(runner="FnApiRunner") as pipeline:
        out = pipeline | beam.Create(documents) | Classify(DocumentModelHandler(str(tiny_bundle), token_budget=2048),
                                                          "run")
        triples = out["labeled"] | beam.Map(lambda r: (r["doc_id"], r["sentiment"], r["sentiment_score"]))

        def same_as_one_by_one(actual: list[tuple[str, str, float]]) -> None:
            assert sorted(doc_id for doc_id, _, _ in actual) == sorted(expected)
            for doc_id, label, score in actual:
                assert label == expected[doc_id].label and abs(score - expected[doc_id].score) < 1e-4

        assert_that(triples, same_as_one_by_one)


def test_a_worker_without_the_launchers_bundle_folder_uses_its_own_copy_of_the_version(tmp_path: Path) -> None:
    """On Dataflow the handler arrives with the launcher's path, which the worker image does not have; the
    registered bundle of the same version there is loaded, by the tokenizer and the model alike."""
    from models.bundle import read_bundle_spec
    from models.registry import SHIPPED_DEFAULT
    from transforms.classify import TokenizeInLengthOrder

    spec = read_bundle_spec(SHIPPED_DEFAULT)
    launcher_folder = str(tmp_path / "home" / "undertone" / "models" / "shipped" / "base")
    handler = DocumentModelHandler(launcher_folder, model_version=spec.model_version)
    assert handler.local_model_dir() == str(SHIPPED_DEFAULT)
    step = TokenizeInLengthOrder(launcher_folder, model_version=spec.model_version)
    step.setup()
    assert step.max_length == spec.max_length
    with pytest.raises(FileNotFoundError, match="build the worker image with it"):
        DocumentModelHandler(launcher_folder, model_version="undertone-base@0.0.0").load_model()


HEX_DUMP = "\n".join(f"{index:02x}" * 64 for index in range(20))
"""An email body of SHA-512 checksums, 128 hex digits a line: each line is one WordPiece word over 100 characters."""
BASE64_BODY = "\n".join(["iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E",
                         "rkJggg+/9j4AAQSkZJRgABAQEASABIAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHR8e"] * 30)
"""A pasted base64 image, 76-92 characters a line: WordPiece splits it at ``+`` and ``/`` and reads word pieces."""


def unreadable_documents() -> list[dict]:
    return [
        new_document("review", "r:1", "A" * 5000),  # a keyboard smash: one 5,000-character word
        new_document("email", "m:1", HEX_DUMP, subject=None),
        new_document("social", "p:1", "😍😍😍"),  # no emoji in the vocabulary: [CLS] [UNK] [SEP]
    ]


def readable_documents() -> list[dict]:
    token = "aZ3kQ9" * 30
    return [
        new_document("review", "r:2", f"Parcel never came, the tracking page https://track.example.com/{token} "
                                      "still says out for delivery. Refund please."),
        new_document("email", "m:2", BASE64_BODY),
        new_document("social", "p:2", "love it 😍😍😍"),
    ]


def test_a_text_the_model_sees_only_as_unk_is_a_dead_letter_not_a_confident_label(tiny_bundle: Path) -> None:
    from transforms.classify import TokenizeInLengthOrder

    step = TokenizeInLengthOrder(str(tiny_bundle))
    step.setup()
    step.start_bundle()
    for document in [*unreadable_documents(), *readable_documents()]:
        assert list(step.process(document)) == []  # the window is still open
    out = [item.value.value if isinstance(item, beam.pvalue.TaggedOutput) else item.value
           for item in step.finish_bundle()]  # windowed values, tagged or not
    failed = {item.doc_id: item for item in out if not isinstance(item, TokenizedDocument)}
    assert set(failed) == {d["doc_id"] for d in unreadable_documents()}
    assert {(f.stage, f.error_type) for f in failed.values()} == {("classify", "unreadable_text")}
    smash = failed[unreadable_documents()[0]["doc_id"]]
    assert smash.error.startswith("the model reads no word of this text: its window holds 1 [UNK] token(s)")
    assert "over 100 characters without space or punctuation" in smash.error
    assert smash.raw_excerpt == "A" * 500
    assert failed[unreadable_documents()[1]["doc_id"]].error.startswith("the model reads no word of this text: its "
                                                                        "window holds 20 [UNK]")
    labeled = [item for item in out if isinstance(item, TokenizedDocument)]
    assert sorted(item.document["doc_id"] for item in labeled) == sorted(d["doc_id"] for d in readable_documents())


def test_unreadable_texts_leave_the_classify_step_as_failures_and_every_document_is_counted(tiny_bundle: Path
                                                                                            ) -> None:
    with TestPipeline(runner="FnApiRunner") as pipeline:
        out = (pipeline | beam.Create(unreadable_documents() + readable_documents())
               | Classify(DocumentModelHandler(str(tiny_bundle)), "run-1"))
        assert_that(out["labeled"] | beam.Map(lambda row: row["input_ref"]), equal_to(["r:2", "m:2", "p:2"]),
                    label="labeled")
        assert_that(out["failed"] | beam.Map(lambda f: (f.input_ref, f.error_type)),
                    equal_to([("r:1", "unreadable_text"), ("m:1", "unreadable_text"), ("p:1", "unreadable_text")]),
                    label="failed")
