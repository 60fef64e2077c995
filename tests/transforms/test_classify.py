"""The Beam model handler on a tiny random-weight model built from a config."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import SENTIMENT
from transforms.classify import Classify, DocumentModelHandler
from transforms.records import new_document


def documents() -> list[dict]:
    texts = ["I love it", "terrible, never again", "it arrived on Tuesday", "word " * 200]
    return [new_document("review", f"f:{i}", text) for i, text in enumerate(texts)]


def test_handler_loads_an_object_and_labels_every_document(tiny_bundle: Path) -> None:
    handler = DocumentModelHandler(str(tiny_bundle))
    model = handler.load_model()
    assert not isinstance(model, tuple)
    results = list(handler.run_inference(documents(), model))
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
