"""The benchmark's parts: corpus files that ingest reads back exactly, FLOP counting and a fair baseline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.baseline import PooledSequenceClassifier
from bench.corpus import Item, sample_items, with_message_id, write_corpus
from bench.flops import corpus_flops, linear_weights
from bench.memory import TreePeak, process_tree, pss_kib
from bench.run import fastest
from models.classifier import Classifier
from transforms.ingest.read import expand_inputs, read_path

MESSAGE = b"From a@example.com  Wed Aug 28 10:48:11 2002\nMessage-ID: <old@x>\nSubject: hi\n\nHello there\n"


def test_message_id_is_replaced_or_added_after_the_envelope() -> None:
    assert with_message_id(MESSAGE, "new@y").splitlines()[:3] == [
        b"From a@example.com  Wed Aug 28 10:48:11 2002", b"Message-ID: <new@y>", b"Subject: hi"]
    assert with_message_id(b"Subject: hi\n\nbody\n", "n@y").startswith(b"Message-ID: <n@y>\nSubject: hi\n")


def test_every_copy_is_a_distinct_document_that_ingest_reads_back(tmp_path: Path) -> None:
    items = [Item("email", "bench-0@undertone.invalid", MESSAGE), Item("review", "r0", "a fine, quiet film"),
             Item("social", "t1", "@user loving it #sunday")]
    description = write_corpus(tmp_path, items, copies=3)
    assert description["counts"] == {"email": 3, "review": 3, "social": 3}
    expected = {(d["source"], d["source_id"]) for d in description["documents"]}
    assert len(expected) == 9
    records = [record for path in expand_inputs((str(tmp_path),)) for record in read_path(path, "auto")]
    assert {(r["source"], r["source_id"]) for r in records} == expected
    assert json.loads((tmp_path / "_corpus.json").read_text())["documents"] == description["documents"]


def test_a_corpus_past_the_2400_emails_draws_messages_again_as_distinct_documents(shared_data: Path) -> None:
    items = sample_items(shared_data, 12_600)  # a fifth are emails: 2,520, of 2,400 messages
    emails = [item for item in items if item.source == "email"]
    assert len(items) == 12_600 and len(emails) == 2_520
    assert len({(item.source, item.source_id) for item in items}) == 12_600
    assert len({item.payload for item in emails}) == 2_400  # every message once, then 120 drawn again


def test_flops_count_linear_weights_per_token_and_attention_per_pair() -> None:
    assert corpus_flops([2, 3], weights=10, layers=1, hidden=4) == 2 * 10 * 5 + 4 * (4 + 9) * 4


def test_each_side_keeps_its_fastest_round_and_reports_every_round() -> None:
    rounds = [{"job_s": 15.7, "model_s": 9.4}, {"job_s": 14.9, "model_s": 9.0}, {"job_s": 16.2, "model_s": 9.9}]
    assert fastest(rounds, "job_s") == {"job_s": 14.9, "model_s": 9.0, "job_s_rounds": [15.7, 14.9, 16.2]}


def test_baseline_model_is_the_bundle_and_labels_like_it(tiny_bundle: Path) -> None:
    from transformers import pipeline

    classifier = Classifier.load(tiny_bundle, pack_linear=False)  # as bench.baseline loads it
    # Tiny encoder: 2 layers of 4 x 32x32 attention and 32x64, 64x32 feed-forward weights; pooler excluded.
    assert linear_weights(classifier.model.encoder) == 2 * (4 * 32 * 32 + 2 * 32 * 64)
    assert linear_weights(Classifier.load(tiny_bundle).model.encoder) == 2 * (4 * 32 * 32 + 2 * 32 * 64)  # packed
    texts = ["I love it", "terrible, never again", "it arrived on Tuesday", "word " * 200, "ok"]
    classify = pipeline("text-classification", model=PooledSequenceClassifier(classifier, "sentiment").eval(),
                        tokenizer=classifier.tokenizer, device=classifier.device, batch_size=2)
    results = classify(texts, truncation=True, max_length=classifier.spec.max_length)
    expected = classifier.predict(texts)
    assert [r["label"] for r in results] == [p["sentiment"].label for p in expected]
    assert all(abs(r["score"] - p["sentiment"].score) < 1e-4 for r, p in zip(results, expected, strict=True))


def test_tree_peak_counts_the_memory_of_child_processes() -> None:
    """A parent that holds little while its child holds 200 MiB: the tree's peak sees the child's."""
    child = "import time; block = b'x' * (200 << 20); time.sleep(3)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}], check=True)"
    with subprocess.Popen([sys.executable, "-c", parent]) as process, TreePeak(process.pid, period_s=0.1) as tree:
        process.wait(timeout=60)
    assert tree.peak_mib is not None and tree.peak_mib > 200
    assert process_tree(os.getpid())[0] == os.getpid() and pss_kib(os.getpid()) > 0


def test_tree_peak_tells_when_in_the_run_memory_rose() -> None:
    """A command that holds 20 MiB for 2 s, then 170 MiB for 2 s: its last quarter peaks 150 MiB above its first."""
    child = "import time; a = b'x' * (20 << 20); time.sleep(2); b = b'y' * (150 << 20); time.sleep(2)"
    with subprocess.Popen([sys.executable, "-c", child]) as process, TreePeak(process.pid, period_s=0.05) as tree:
        process.wait(timeout=60)
    quarters = tree.peaks_by_part(4)["rss_mib"]
    assert quarters[0] < 100 and quarters[-1] - quarters[0] > 140
    assert len(tree.peaks_by_part(10)["tree_pss_mib"]) == 10


def test_modern_mail_set_reads_as_labeled_emails_for_evaluate() -> None:
    """``bench/modern-mail`` is the set the README and model card measure spam on; every file must parse, as a
    wanted or a spam email, with its subject and body text, or the figure quoted would cover fewer emails."""
    from models.datasets import read_labeled

    examples = read_labeled(Path(__file__).resolve().parents[2] / "bench" / "modern-mail")
    assert sorted(e.label for e in examples) == ["ham"] * 8 + ["spam"] * 4
    museum = next(e.text for e in examples if "City Museum" in e.text)
    assert museum.startswith("This month at the City Museum") and "Rivers of Light" in museum
    assert all(len(e.text) > 100 for e in examples)
