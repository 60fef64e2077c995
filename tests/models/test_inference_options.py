"""Load options for inference: device resolution, worker threads, int8 and the device-dependent token budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from models.classifier import Classifier, autocast_dtype, available_cores, resolve_device
from models.recipes import INT8_FIGURES, SPAM_LABELS, evaluate_bundle, int8_check, spam_data
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


def test_half_precision_only_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    assert autocast_dtype(torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert autocast_dtype(torch.device("cuda")) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert autocast_dtype(torch.device("cuda", 0)) is torch.float16


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


def test_int8_quantises_every_encoder_linear_and_keeps_the_labels(tiny_bundle: Path) -> None:
    fp32 = Classifier.load(tiny_bundle, device="cpu")
    int8 = Classifier.load(tiny_bundle, device="cpu", quantize=True)
    assert int8.quantized and not fp32.quantized
    linear = [m for m in int8.model.encoder.modules() if type(m) is nn.Linear]
    quantised = [m for m in int8.model.encoder.modules() if "quantized" in type(m).__module__]
    assert not linear and len(quantised) >= 12  # 2 layers x 6 linear layers
    weights = [m.weight() for m in quantised if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(weights) >= 12 and {w.qscheme() for w in weights} == {torch.per_channel_affine}  # scale per row
    assert all(type(head) is nn.Linear for head in int8.model.heads.values())
    expected, actual = fp32.logits(TEXTS)["sentiment"], int8.logits(TEXTS)["sentiment"]
    assert not torch.equal(expected, actual)
    assert torch.allclose(torch.softmax(expected, -1), torch.softmax(actual, -1), atol=0.02)


def test_int8_check_compares_the_quantised_bundle_with_fp32_on_the_held_out_split(
        tiny_encoder: Path, shared_data: Path, tmp_path: Path) -> None:
    bundle = build_tiny_bundle(tmp_path / "bundle", tiny_encoder, {"spam": SPAM_LABELS})
    quantised = evaluate_bundle(Classifier.load(bundle, quantize=True), shared_data, seed=13)
    assert list(quantised) == ["spam_heldout"] and quantised["spam_heldout"]["n"] == 480
    held_out = {"spam": spam_data(shared_data, 13)[1]}  # the split evaluate_bundle made; read once more only
    same = int8_check(bundle, shared_data, 13, fp32=quantised, tests=held_out)
    assert same["within_rule"] and same["largest_loss"]["points"] == 0
    assert same["figures"]["spam_heldout"]["accuracy"] == quantised["spam_heldout"]["accuracy"]
    two_points_better = {name: {figure: report[figure] + 0.02 for figure in INT8_FIGURES}
                         for name, report in quantised.items()}
    worse = int8_check(bundle, shared_data, 13, fp32=two_points_better, tests=held_out)
    assert not worse["within_rule"] and worse["largest_loss"]["points"] == -2.0


def test_int8_is_refused_on_cuda(tiny_bundle: Path, gpu_present: None) -> None:
    with pytest.raises(ValueError, match="int8"):
        Classifier.load(tiny_bundle, device="cuda", quantize=True)


def test_cli_device_defaults_to_auto_and_int8_is_opt_in() -> None:
    from undertone.cli import build_parser

    parser = build_parser()
    run = parser.parse_args(["run", "samples", "--output", "out"])
    assert (run.device, run.int8) == ("auto", False)
    assert parser.parse_args(["run", "samples", "--output", "out", "--int8", "--device", "cpu"]).int8
    assert parser.parse_args(["evaluate", "--task", "sentiment", "--data", "d.tsv", "--int8"]).int8
