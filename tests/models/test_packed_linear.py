"""Packed linear layers for CPU inference: same results as ``nn.Linear``, GELU fused only where it is exact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import models.packed_linear
from models.classifier import Classifier
from models.packed_linear import PackedLinear, is_exact_gelu, pack_linear_layers, packing_works
from tests.conftest import build_tiny_bundle, build_tiny_encoder

TEXTS = ["I love it", "terrible, never again", "it arrived on Tuesday", "refund please " * 30, "meh",
         "Votre colis est arrivé ? Toujours rien.", "ok"]


def load_unpacked(folder: Path, precision: str) -> Classifier:
    return Classifier.load(folder, device="cpu", precision=precision, pack_linear=False)


def encoder_linears(classifier: Classifier) -> list[nn.Module]:
    return [m for m in classifier.model.encoder.modules() if isinstance(m, nn.Linear | PackedLinear)]


def test_fp32_packing_replaces_every_encoder_linear_and_keeps_the_logits(tiny_bundle: Path) -> None:
    plain = load_unpacked(tiny_bundle, "fp32")
    packed = Classifier.load(tiny_bundle, device="cpu", precision="fp32")
    layers = packed.model.encoder.config.num_hidden_layers
    linears = encoder_linears(packed)
    # query, key, value, attention output, feed-forward in and out; the pooler's dense too.
    assert len(linears) == 6 * layers + 1 and all(type(m) is PackedLinear for m in linears)
    assert all(type(m) is nn.Linear for m in packed.model.heads.values())
    fused = [m for m in linears if m.activation == "gelu"]
    assert len(fused) == layers
    layer_modules = packed.model.encoder.encoder.layer
    assert all(type(layer.intermediate.intermediate_act_fn) is nn.Identity for layer in layer_modules)
    expected, actual = plain.logits(TEXTS), packed.logits(TEXTS)
    for task in expected:
        assert torch.allclose(expected[task], actual[task], atol=1e-5), task


@pytest.mark.skipif(not packing_works(torch.bfloat16), reason="this CPU or PyTorch build has no oneDNN bf16")
def test_bf16_packing_agrees_with_autocast_and_with_fp32(tiny_bundle: Path) -> None:
    fp32 = load_unpacked(tiny_bundle, "fp32")
    autocast = load_unpacked(tiny_bundle, "bf16")
    packed = Classifier.load(tiny_bundle, device="cpu", precision="bf16")
    assert {m.weight.dtype for m in encoder_linears(packed)} == {torch.bfloat16}
    reference, autocast_logits, packed_logits = fp32.logits(TEXTS), autocast.logits(TEXTS), packed.logits(TEXTS)
    for task in reference:
        # bf16 rounds differently (GELU before the one rounding, not after), never further from fp32 than autocast.
        packed_error = (packed_logits[task] - reference[task]).abs().max()
        autocast_error = (autocast_logits[task] - reference[task]).abs().max()
        assert packed_error <= 2 * autocast_error + 1e-3, task
        assert torch.allclose(torch.softmax(packed_logits[task], -1), torch.softmax(reference[task], -1), atol=0.02)


def test_a_tanh_gelu_stays_a_separate_activation(tmp_path: Path) -> None:
    encoder_dir = build_tiny_encoder(tmp_path / "encoder")
    config_path = encoder_dir / "config.json"
    config_path.write_text(config_path.read_text().replace('"hidden_act": "gelu"', '"hidden_act": "gelu_new"'))
    bundle = build_tiny_bundle(tmp_path / "bundle", encoder_dir)
    plain = load_unpacked(bundle, "fp32")
    packed = Classifier.load(bundle, device="cpu", precision="fp32")
    assert not is_exact_gelu(packed.model.encoder.encoder.layer[0].intermediate.intermediate_act_fn)
    assert all(m.activation == "none" for m in encoder_linears(packed))
    assert torch.allclose(plain.logits(TEXTS)["sentiment"], packed.logits(TEXTS)["sentiment"], atol=1e-5)


def test_layers_stay_plain_where_packing_does_not_work(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.packed_linear, "packing_works", lambda dtype: False)
    classifier = Classifier.load(tiny_bundle, device="cpu", precision="fp32")
    assert all(type(m) is nn.Linear for m in encoder_linears(classifier))
    assert classifier.predict("fine, thanks")["sentiment"].label


def test_the_probe_refuses_an_operator_that_fails_or_disagrees(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = packing_works.__wrapped__
    assert probe(torch.float32)

    def fails(self: PackedLinear, hidden: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("no oneDNN kernel for this dtype")

    monkeypatch.setattr(PackedLinear, "forward", fails)
    assert not probe(torch.float32)
    def disagrees(self: PackedLinear, hidden: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*hidden.shape[:-1], self.out_features, dtype=hidden.dtype)

    monkeypatch.setattr(PackedLinear, "forward", disagrees)
    assert not probe(torch.float32)


def test_int8_encoders_are_not_packed(tiny_bundle: Path) -> None:
    int8 = Classifier.load(tiny_bundle, device="cpu", precision="int8")
    assert not any(isinstance(m, PackedLinear) for m in int8.model.modules())


def test_every_plain_linear_child_is_packed_and_counted() -> None:
    encoder = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    probe = torch.randn(3, 4)
    expected = encoder(probe)
    assert pack_linear_layers(encoder) == 2
    assert [type(m) for m in encoder] == [PackedLinear, nn.ReLU, PackedLinear]
    with torch.inference_mode():
        assert torch.allclose(encoder(probe), expected, atol=1e-6)


def test_a_packed_layer_refuses_to_run_where_gradients_would_be_lost() -> None:
    packed = PackedLinear(nn.Linear(4, 2))
    needs_grad = torch.randn(3, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match="for inference"):
        packed(needs_grad)
    with torch.no_grad():
        assert packed(needs_grad).shape == (3, 2)
