"""Bundle save/load, refusal of unsafe folders, and a training loop on a tiny random model."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from models.bundle import UnsafeModelError, read_bundle_spec
from models.classifier import CHARS_PER_WINDOW_TOKEN, TOKENIZE_CHUNK, Classifier, save_bundle
from models.datasets import Example
from models.training import TaskData, TrainingArguments, length_grouped_batches, train_bundle
from tests.conftest import SENTIMENT, build_tiny_bundle

TEXTS = ["I love this phone", "worst delivery ever", "the parcel came on Monday", "meh"]


def test_predict_accepts_one_text_or_many(tiny_bundle: Path) -> None:
    classifier = Classifier.load(tiny_bundle)
    one = classifier.predict(TEXTS[0])
    many = classifier.predict(TEXTS)
    assert isinstance(one, dict) and isinstance(many, list) and len(many) == len(TEXTS)
    # Alone or padded in a batch: the same label, the score equal up to float rounding (kernels pick their
    # blocking by shape, and on some CPUs that changes the last bits).
    assert one["sentiment"].label == many[0]["sentiment"].label
    assert one["sentiment"].score == pytest.approx(many[0]["sentiment"].score, abs=1e-5)
    assert classifier.predict([]) == []


def test_long_texts_are_cut_and_tokenised_in_chunks_with_the_same_ids(tiny_bundle: Path, shared_data: Path) -> None:
    classifier = Classifier.load(tiny_bundle)
    limit = classifier.spec.max_length
    reviews = [line.split("\t")[0] for line in
               (shared_data / "sentiment" / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    texts = [
        " ".join(reviews[:40]),                         # a long review thread: cut, fills the window
        reviews[40][:150],                              # short enough to be tokenised whole
        " " * 5000 + " ".join(reviews[43:60]),          # the cut holds only spaces: tokenised whole
        "退款订单" * 2000,                               # no space to cut at
        "Crème brûlée, naïve café! " * 400,             # accents and punctuation at the cut
        "=" * 3000 + " ok",                             # a symbol run that yields few tokens
    ]
    texts += reviews[60:60 + 2 * TOKENIZE_CHUNK]        # more texts than one tokenizer call takes
    whole = classifier.tokenizer(texts, truncation=True, max_length=limit + 1)["input_ids"]
    expected_cut = [len(ids) > limit for ids in whole]
    expected = [ids[: limit - 1] + ids[-1:] if cut else ids for ids, cut in zip(whole, expected_cut, strict=True)]
    assert classifier.tokenize(texts) == (expected, expected_cut)
    assert expected_cut[0] and not expected_cut[1] and len(texts[0]) > limit * CHARS_PER_WINDOW_TOKEN


def test_training_then_save_and_load_give_identical_outputs(tiny_bundle: Path, tmp_path: Path) -> None:
    spec = read_bundle_spec(tiny_bundle)
    train = [Example(text, label) for text, label in zip(TEXTS * 8, SENTIMENT * 11, strict=False)]
    data = {"sentiment": TaskData(SENTIMENT, train, dev=train[:12])}
    args = TrainingArguments(epochs=1, batch_size=8, lora_rank=4, max_length=32, log_every=1000)
    trained_spec, model, stats = train_bundle(spec, data, args)
    assert stats["steps"] == 4 and trained_spec.tasks["sentiment"].temperature > 0
    assert spec.max_length == 64 and trained_spec.max_length == 32  # labels on the window it was trained on
    save_bundle(tmp_path / "trained", trained_spec, model)
    assert (tmp_path / "trained" / "adapter" / "adapter_model.safetensors").is_file()
    config = json.loads((tmp_path / "trained" / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny-random-bert"
    in_memory = Classifier(trained_spec, model.eval(), Classifier.load(tiny_bundle).tokenizer).logits(TEXTS)
    reloaded_classifier = Classifier.load(tmp_path / "trained")
    assert reloaded_classifier.spec.max_length == 32
    reloaded = reloaded_classifier.logits(TEXTS)
    torch.testing.assert_close(in_memory["sentiment"], reloaded["sentiment"], rtol=1e-4, atol=1e-5)


def test_same_seed_same_weights(tiny_bundle: Path) -> None:
    spec = read_bundle_spec(tiny_bundle)
    data = {"sentiment": TaskData(SENTIMENT, [Example(t, "neutral") for t in TEXTS * 4])}
    args = TrainingArguments(epochs=1, batch_size=4, lora_rank=0, log_every=1000)
    first = train_bundle(spec, data, args)[1].heads["sentiment"].weight
    second = train_bundle(spec, data, args)[1].heads["sentiment"].weight
    torch.testing.assert_close(first, second)


def test_binary_evidence_trains_only_the_labels_it_decides_between(tiny_bundle: Path) -> None:
    spec = read_bundle_spec(tiny_bundle)
    polar = [Example(t, s) for t, s in zip(TEXTS * 4, ("negative", "positive") * 8, strict=False)]
    binary = [replace(e, candidates=("negative", "positive")) for e in polar]
    args = TrainingArguments(epochs=1, batch_size=4, lora_rank=0, weight_decay=0.0, log_every=1000)

    def head_after(examples: list[Example], learning_rate: float) -> torch.Tensor:
        data = {"sentiment": TaskData(SENTIMENT, examples, dev=examples[:8])}
        trained_spec, model, _ = train_bundle(spec, data, replace(args, learning_rate=learning_rate))
        assert math.isfinite(trained_spec.tasks["sentiment"].temperature)  # -inf logits did not poison the fit
        head = model.heads["sentiment"]
        return torch.cat([head.weight, head.bias[:, None]], dim=1).detach()

    initial, as_binary, as_three_class = head_after(polar, 0.0), head_after(binary, 0.01), head_after(polar, 0.01)
    neutral = SENTIMENT.index("neutral")
    torch.testing.assert_close(as_binary[neutral], initial[neutral], rtol=0, atol=0)
    assert not torch.equal(as_binary[SENTIMENT.index("positive")], initial[SENTIMENT.index("positive")])
    assert not torch.equal(as_three_class[neutral], initial[neutral])  # 3-class targets push neutral down


def test_continued_training_starts_from_the_bundle_weights(tiny_bundle: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    spec = read_bundle_spec(tiny_bundle)
    data = {"sentiment": TaskData(SENTIMENT, [Example(t, s) for t, s in zip(TEXTS * 4, SENTIMENT * 6, strict=False)])}
    args = TrainingArguments(epochs=1, batch_size=4, lora_rank=4, log_every=1000)
    first = save_bundle(tmp_path / "first", *train_bundle(spec, data, args)[:2])
    # with a zero learning rate, continued training must hand back exactly the weights it started from
    frozen = replace(args, learning_rate=0.0, seed=7, init_from=str(first))
    again = save_bundle(tmp_path / "again", *train_bundle(spec, data, frozen)[:2])
    fresh = save_bundle(tmp_path / "fresh", *train_bundle(spec, data, replace(frozen, init_from=None))[:2])
    for name in ("heads.safetensors", "adapter/adapter_model.safetensors"):
        before, after = load_file(first / name), load_file(again / name)
        assert before.keys() == after.keys()
        for key in before:
            torch.testing.assert_close(before[key], after[key], rtol=0, atol=0)
    assert not torch.equal(load_file(first / "heads.safetensors")["sentiment.weight"],
                           load_file(fresh / "heads.safetensors")["sentiment.weight"])


def test_continued_training_refuses_other_labels(tiny_bundle: Path) -> None:
    spec = read_bundle_spec(tiny_bundle)
    other = replace(spec, tasks={"sentiment": replace(spec.tasks["sentiment"], labels=("bad", "good"))})
    data = {"sentiment": TaskData(("bad", "good"), [Example(t, "good") for t in TEXTS])}
    with pytest.raises(ValueError, match="other labels"):
        train_bundle(other, data, TrainingArguments(init_from=str(tiny_bundle), log_every=1000))


def test_length_grouped_batches_cover_every_index_once() -> None:
    import random

    lengths = [random.Random(1).randint(1, 300) for _ in range(1000)]
    batches = length_grouped_batches(lengths, 32, random.Random(0))
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    assert max(len(batch) for batch in batches) == 32


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def test_pickle_only_heads_are_refused(bundle_copy: Path) -> None:
    (bundle_copy / "heads.safetensors").rename(bundle_copy / "heads.bin")
    with pytest.raises(UnsafeModelError, match="pickled"):
        Classifier.load(bundle_copy)


def test_missing_metadata_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / "bundle.json").unlink()
    with pytest.raises(UnsafeModelError, match=r"bundle\.json is missing"):
        Classifier.load(bundle_copy)


def test_remote_code_in_base_config_is_refused(tiny_encoder: Path, tmp_path: Path) -> None:
    encoder = Path(shutil.copytree(tiny_encoder, tmp_path / "encoder"))
    config = json.loads((encoder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (encoder / "config.json").write_text(json.dumps(config))
    bundle = build_tiny_bundle(tmp_path / "b", tiny_encoder)
    spec_file = bundle / "bundle.json"
    spec_file.write_text(spec_file.read_text().replace(str(tiny_encoder), str(encoder)))
    with pytest.raises(UnsafeModelError, match="remote code"):
        Classifier.load(bundle)


def test_pickled_base_weights_and_wrong_hash_are_refused(tiny_encoder: Path, tmp_path: Path) -> None:
    encoder = Path(shutil.copytree(tiny_encoder, tmp_path / "encoder"))
    bundle = build_tiny_bundle(tmp_path / "b", encoder)
    spec = json.loads((bundle / "bundle.json").read_text())
    spec["base"]["sha256"] = "0" * 64
    (bundle / "bundle.json").write_text(json.dumps(spec))
    with pytest.raises(UnsafeModelError, match="sha256"):
        Classifier.load(bundle)
    (encoder / "model.safetensors").rename(encoder / "pytorch_model.bin")
    with pytest.raises(UnsafeModelError, match="only pickled weights"):
        Classifier.load(bundle)
