"""Load options for inference: device resolution, worker threads, precision and the device-dependent token budget."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import models.classifier
import models.recipes
from models.bundle import read_metrics, write_metrics
from models.classifier import Classifier, resolve_device, resolve_precision
from models.machine import available_cores
from models.packed_linear import PackedLinear
from models.recipes import (
    CHECKED_FIGURES,
    SPAM_LABELS,
    evaluate_bundle,
    finalize_bundle,
    precision_check,
    spam_data,
    task_labels,
)
from tests.conftest import build_tiny_bundle
from transforms.classify import CPU_TOKEN_BUDGET, CUDA_TOKEN_BUDGET, DocumentModelHandler, default_token_budget

TEXTS = ["I love it", "terrible, never again", "it arrived on Tuesday", "refund please " * 30, "meh"]


@pytest.fixture
def gpu_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_auto_is_cpu_without_a_gpu_and_cuda_with_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("cpu") == "cpu"


def test_cuda_without_a_gpu_and_unknown_devices_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("meta")


def test_auto_precision_is_half_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", torch.device("cuda"), bf16_measured=False) == "bf16"
    assert resolve_precision("fp32", torch.device("cuda"), bf16_measured=True) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", torch.device("cuda", 0), bf16_measured=True) == "fp16"
    with pytest.raises(ValueError, match="int8"):
        resolve_precision("int8", torch.device("cuda"), bf16_measured=True)


@pytest.mark.parametrize(("native", "measured", "expected"), [
    (True, True, "bf16"), (True, False, "fp32"), (False, True, "fp32"), (False, False, "fp32")])
def test_auto_precision_on_cpu_needs_native_bf16_and_a_card_within_the_rule(
        monkeypatch: pytest.MonkeyPatch, native: bool, measured: bool, expected: str) -> None:
    monkeypatch.setattr(models.classifier, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, bf16_measured=measured) == expected
    assert [resolve_precision(p, cpu, measured) for p in ("fp32", "bf16", "int8")] == ["fp32", "bf16", "int8"]
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", cpu, measured)


def test_auto_reads_the_bf16_verdict_from_the_bundle_card(
        tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.classifier, "cpu_has_native_bf16", lambda: True)
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    assert Classifier.load(bundle, device="cpu").precision == "fp32"  # no bf16 check on its card
    for verdict, expected in ((True, "bf16"), (False, "fp32")):
        write_metrics(bundle, {"bf16": {"within_rule": verdict}})
        assert Classifier.load(bundle, device="cpu").precision == expected


def test_token_budget_follows_the_device(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_token_budget("auto") == default_token_budget("cpu") == CPU_TOKEN_BUDGET
    assert default_token_budget("cuda") == CUDA_TOKEN_BUDGET > CPU_TOKEN_BUDGET
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_token_budget("auto") == CUDA_TOKEN_BUDGET
    handler = DocumentModelHandler(str(tiny_bundle), device="cuda")
    assert handler.batch_elements_kwargs()["max_batch_size"] == CUDA_TOKEN_BUDGET
    assert DocumentModelHandler(str(tiny_bundle), device="cuda", token_budget=1000).token_budget == 1000


def test_threads_default_to_the_cores_this_process_may_use(tiny_bundle: Path) -> None:
    before = torch.get_num_threads()
    try:
        Classifier.load(tiny_bundle, threads=1)
        assert torch.get_num_threads() == 1
        Classifier.load(tiny_bundle)
        assert torch.get_num_threads() == available_cores() >= 1
    finally:
        torch.set_num_threads(before)


def test_bf16_runs_the_encoder_in_bf16_and_the_heads_in_fp32(tiny_bundle: Path) -> None:
    fp32 = Classifier.load(tiny_bundle, device="cpu", precision="fp32")
    bf16 = Classifier.load(tiny_bundle, device="cpu", precision="bf16")
    assert (fp32.precision, fp32.autocast, bf16.precision, bf16.autocast) == ("fp32", None, "bf16", torch.bfloat16)
    dtypes: dict[str, torch.dtype] = {}

    def record(name: str):  # a forward hook that keeps its module's output dtype
        return lambda module, args, output: dtypes.update({name: output.dtype})

    encoder_linear = [m for m in bf16.model.encoder.modules() if isinstance(m, nn.Linear | PackedLinear)]
    encoder_linear[0].register_forward_hook(record("encoder"))
    next(iter(bf16.model.heads.values())).register_forward_hook(record("head"))
    projection_inputs: list[torch.Tensor] = []
    attention = next(m for m in bf16.model.encoder.modules() if hasattr(m, "query"))
    for projection in (attention.query, attention.key, attention.value):
        projection.register_forward_hook(lambda module, args, output: projection_inputs.append(args[0]))
    expected, actual = fp32.logits(TEXTS)["sentiment"], bf16.logits(TEXTS)["sentiment"]
    assert dtypes == {"encoder": torch.bfloat16, "head": torch.float32}
    # Query, key and value share one bf16 copy of their input instead of each casting it.
    assert len(projection_inputs) == 3 and projection_inputs[0].dtype == torch.bfloat16
    assert projection_inputs[0] is projection_inputs[1] is projection_inputs[2]
    # Linear weights are stored in bf16 once instead of being cast on every pass.
    assert {m.weight.dtype for m in encoder_linear} == {torch.bfloat16}
    assert not torch.equal(expected, actual)
    assert torch.allclose(torch.softmax(expected, -1), torch.softmax(actual, -1), atol=0.02)


def test_task_labels_match_predict_for_every_task(tiny_bundle: Path) -> None:
    classifier = Classifier.load(tiny_bundle, device="cpu", precision="fp32")
    labels = task_labels(classifier, TEXTS, batch_size=2)
    predictions = classifier.predict(TEXTS)
    assert labels == {task: [p[task].label for p in predictions] for task in classifier.tasks}


def test_int8_quantises_every_encoder_linear_and_keeps_the_labels(tiny_bundle: Path) -> None:
    fp32 = Classifier.load(tiny_bundle, device="cpu", precision="fp32")
    int8 = Classifier.load(tiny_bundle, device="cpu", precision="int8")
    assert (int8.precision, fp32.precision) == ("int8", "fp32")
    linear = [m for m in int8.model.encoder.modules() if type(m) is nn.Linear]
    quantised = [m for m in int8.model.encoder.modules() if "quantized" in type(m).__module__]
    assert not linear and len(quantised) >= 12  # 2 layers x 6 linear layers
    weights = [m.weight() for m in quantised if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(weights) >= 12 and {w.qscheme() for w in weights} == {torch.per_channel_affine}  # scale per row
    assert all(type(head) is nn.Linear for head in int8.model.heads.values())
    expected, actual = fp32.logits(TEXTS)["sentiment"], int8.logits(TEXTS)["sentiment"]
    assert not torch.equal(expected, actual)
    assert torch.allclose(torch.softmax(expected, -1), torch.softmax(actual, -1), atol=0.02)


def test_precision_check_compares_figures_and_labels_with_fp32_on_the_held_out_split(
        tiny_encoder: Path, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = build_tiny_bundle(tmp_path / "bundle", tiny_encoder, {"spam": SPAM_LABELS})
    reduced = evaluate_bundle(Classifier.load(bundle, precision="bf16"), shared_data, seed=13)
    assert list(reduced) == ["spam_heldout"] and reduced["spam_heldout"]["n"] == 480
    held_out = {"spam": spam_data(shared_data, 13)[1]}  # the split evaluate_bundle made; read once more only
    # Labels as fp32 gives them, so that the verdict turns on the figures alone.
    monkeypatch.setattr(models.recipes, "task_labels", lambda classifier, texts: {"spam": ["ham"] * len(texts)})
    same = precision_check(bundle, shared_data, 13, fp32=reduced, precision="bf16", tests=held_out)
    assert same["precision"] == "bf16" and same["within_rule"] and same["largest_loss"]["points"] == 0
    assert same["figures"]["spam_heldout"]["accuracy"] == reduced["spam_heldout"]["accuracy"]
    assert same["label_agreement"] == {"texts": 480, "spam": 1.0}
    two_points_better = {name: {figure: report[figure] + 0.02 for figure in CHECKED_FIGURES}
                         for name, report in reduced.items()}
    worse = precision_check(bundle, shared_data, 13, fp32=two_points_better, precision="bf16", tests=held_out)
    assert not worse["within_rule"] and worse["largest_loss"]["points"] == -2.0
    # Equal figures, but 2 % of the labels flip (a zero-shot task would show nothing else): outside the rule.
    flips = iter([["ham"] * 480, ["spam"] * 10 + ["ham"] * 470])
    monkeypatch.setattr(models.recipes, "task_labels", lambda classifier, texts: {"spam": next(flips)})
    flipped = precision_check(bundle, shared_data, 13, fp32=reduced, precision="bf16", tests=held_out)
    assert flipped["largest_loss"]["points"] == 0 and flipped["label_agreement"]["spam"] == pytest.approx(470 / 480)
    assert not flipped["within_rule"]


def test_finalize_records_bf16_and_int8_checks_against_one_fp32_reference(
        tiny_encoder: Path, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = build_tiny_bundle(tmp_path / "bundle", tiny_encoder, {"spam": SPAM_LABELS})
    fp32 = evaluate_bundle(Classifier.load(bundle, precision="fp32"), shared_data, seed=13)
    write_metrics(bundle, {"evaluation": fp32})
    labelled: list[str] = []
    real_task_labels = models.recipes.task_labels

    def counted(classifier: Classifier, texts: list[str]) -> dict[str, list[str]]:
        labelled.append(classifier.precision)
        return real_task_labels(classifier, texts)

    monkeypatch.setattr(models.recipes, "task_labels", counted)
    metrics = finalize_bundle(bundle, shared_data)
    assert labelled == ["fp32", "bf16", "int8"]  # the fp32 labels are computed once for both checks
    assert read_metrics(bundle) == metrics
    for precision in ("bf16", "int8"):
        check = metrics[precision]
        assert check["precision"] == precision and check["label_agreement"]["texts"] == 480
        assert 0 < check["label_agreement"]["spam"] <= 1
        assert check["delta_points"]["spam_heldout"].keys() == set(CHECKED_FIGURES)


def test_int8_is_refused_on_cuda(tiny_bundle: Path, gpu_present: None) -> None:
    with pytest.raises(ValueError, match="int8"):
        Classifier.load(tiny_bundle, device="cuda", precision="int8")


def test_cli_device_and_precision_default_to_auto() -> None:
    from undertone.cli import build_parser

    parser = build_parser()
    run = parser.parse_args(["run", "samples", "--output", "out"])
    assert (run.device, run.precision) == ("auto", "auto")
    assert parser.parse_args(["run", "samples", "--output", "out", "--precision", "int8"]).precision == "int8"
    evaluate = parser.parse_args(["evaluate", "--task", "sentiment", "--data", "d.tsv", "--precision", "bf16"])
    assert evaluate.precision == "bf16"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "samples", "--output", "out", "--precision", "fp16"])
