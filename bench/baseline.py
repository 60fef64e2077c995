"""The baseline: a plain ``transformers.pipeline("text-classification", batch_size=16)`` in arrival order.

It classifies with exactly the bundle's weights: the encoder with the LoRA adapter merged (loaded by
``Classifier.load``), mean pooling and the bundle's ``sentiment`` head and temperature, the same tokenizer and
the same ``max_length``, the same torch threads; attention is transformers' default (SDPA) and the linear
layers stock ``nn.Linear`` (not Undertone's packed ones). Only one head runs
(Undertone runs every default task), so the comparison, if anything, favours the baseline.

    python -m bench.baseline --model DIR --texts texts.json --output result.json [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import sys
import time
from pathlib import Path

import torch
from transformers import PreTrainedModel, pipeline
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import logging as hf_logging

import undertone  # noqa: F401 - offline defaults before transformers loads models
from models.classifier import Classifier, mean_pool


class PooledSequenceClassifier(PreTrainedModel):
    """A sequence classifier made of an existing encoder, mean pooling and a linear head, so that the stock
    text-classification pipeline can run the bundle unchanged."""

    _supports_sdpa = True  # the wrapped encoder's attention implementation is used as loaded

    def __init__(self, classifier: Classifier, task: str) -> None:
        config = copy.deepcopy(classifier.model.encoder.config)
        labels = classifier.spec.tasks[task].labels
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: index for index, label in enumerate(labels)}
        config.problem_type = "single_label_classification"
        super().__init__(config)
        self.encoder = classifier.model.encoder
        self.head = classifier.model.heads[task]
        self.temperature = classifier.spec.tasks[task].temperature

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                **_: torch.Tensor) -> SequenceClassifierOutput:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return SequenceClassifierOutput(logits=self.head(mean_pool(hidden, attention_mask)) / self.temperature)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--texts", required=True, type=Path, help="JSON list of texts, in arrival order")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    texts = json.loads(args.texts.read_text(encoding="utf-8"))
    hf_logging.set_verbosity(hf_logging.CRITICAL)  # the stock pipeline lists every model class it knows otherwise
    classifier = Classifier.load(args.model, device=args.device, tasks=["sentiment"], precision="fp32",
                                 pack_linear=False)
    classifier.model.encoder.set_attn_implementation("sdpa")  # transformers' default, not Undertone's CPU choice
    model = PooledSequenceClassifier(classifier, "sentiment").eval()
    classify = pipeline("text-classification", model=model, tokenizer=classifier.tokenizer,
                        device=classifier.device, batch_size=args.batch_size)
    options = {"truncation": True, "max_length": classifier.spec.max_length}
    classify(texts[: args.batch_size], **options)  # warm-up, untimed, like the model load
    started = time.perf_counter()
    with torch.inference_mode():
        results = classify(texts, **options)
    seconds = time.perf_counter() - started
    report = {"docs": len(texts), "seconds": seconds, "docs_per_s": len(texts) / seconds,
              "batch_size": args.batch_size, "max_length": classifier.spec.max_length,
              "threads": torch.get_num_threads(), "device": str(classifier.device),
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "labels": [result["label"] for result in results]}
    args.output.write_text(json.dumps(report) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
