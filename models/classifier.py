"""A shared encoder with one head per task: one transformer pass labels every task.

``Classifier.load(folder)`` reads a bundle (see :mod:`models.bundle`), merges its LoRA
adapter into the encoder weights and returns an object that labels one text or many.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import overload

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from models import preload
from models.attention import cpu_attention
from models.bundle import (
    ADAPTER_DIR,
    HEADS_FILE,
    PRECISIONS,
    BundleSpec,
    TaskSpec,
    UnsafeModelError,
    check_hf_folder,
    read_bundle_spec,
    read_metrics,
    resolve_base_path,
    sha256_file,
    with_zero_shot,
    write_bundle_spec,
)
from models.feed_forward import chunk_feed_forward
from models.machine import HeapTrimmer, available_cores
from models.packed_linear import pack_linear_layers


@dataclass(frozen=True)
class Prediction:
    """One task's answer for one text: the label and its calibrated probability."""

    label: str
    score: float


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average token vectors over real tokens (how all-MiniLM-L6-v2 was trained to embed), summed in fp32
    so that a half-precision encoder output loses nothing to the sum."""
    hidden = hidden.float()
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class MultiTaskModel(nn.Module):
    """Encoder + mean pooling + a linear head per task."""

    def __init__(self, encoder: nn.Module, tasks: dict[str, TaskSpec], dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({task: nn.Linear(hidden, len(spec.labels)) for task, spec in tasks.items()})
        self.zero_shot = frozenset(task for task, spec in tasks.items() if spec.zero_shot)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled fp32 embeddings, whatever precision the encoder ran in (:func:`mean_pool` sums in fp32:
        up to a window of token vectors, which bf16's 8-bit mantissa would blur)."""
        output = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return mean_pool(output.last_hidden_state, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw (uncalibrated) logits per task. The heads run in fp32 even under autocast: they are tiny, and
        zero-shot cosines of neighbouring labels can differ by less than bf16 resolves."""
        pooled = self.dropout(self.embed(input_ids, attention_mask))
        with torch.autocast(pooled.device.type, enabled=False):
            normed = nn.functional.normalize(pooled, dim=-1) if self.zero_shot else pooled
            return {task: head(normed if task in self.zero_shot else pooled) for task, head in self.heads.items()}


DEVICES = ("auto", "cpu", "cuda")
"""Device choices: auto is cuda when torch sees a GPU, else cpu."""


def resolve_device(device: str = "auto") -> str:
    """The torch device to load onto; asking for cuda where there is none is an error, not a silent CPU run."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device must be one of {DEVICES} (or cuda:N), got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but torch sees no CUDA GPU")
    return device


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX tiles: there bf16 matmuls run at several times fp32 (413 against 129 GFLOP/s on two
    AMD EPYC cores at the model's shapes); elsewhere bf16 has no kernels that beat fp32."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_precision(precision: str, device: torch.device, bf16_measured: bool) -> str:
    """The precision a load runs in: fp32, bf16, fp16 (CUDA without bf16) or int8.

    ``bf16_measured``: the bundle's card holds a bf16 check within the precision rule, which auto requires on CPU
    (on CUDA, half precision is the norm and the only way to use the GPU's matrix units)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if device.type == "cuda":
        if precision == "int8":
            raise ValueError("int8 quantisation is for CPU inference; on cuda the model runs in bf16/fp16")
        if precision == "fp32":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "auto":
        return "bf16" if bf16_measured and cpu_has_native_bf16() else "fp32"
    return precision


def cast_linear_weights(encoder: nn.Module, dtype: torch.dtype) -> None:
    """Store the encoder's linear layers in the autocast dtype once, and cast each attention block's input once
    for its query, key and value projections. Autocast would cast every weight again on each forward pass (about
    a tenth of a bf16 pass on CPU) and make three identical copies of the attention input, one per projection
    (about 1 % of a bf16 model stage on the bench corpus); the logits are bit-identical."""
    for module in encoder.modules():
        if isinstance(module, nn.Linear):
            module.to(dtype)
    for module in encoder.modules():
        if all(isinstance(getattr(module, name, None), nn.Linear) for name in ("query", "key", "value")):
            module.register_forward_pre_hook(_cast_hidden_states, with_kwargs=True)


def _cast_hidden_states(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook: ``hidden_states`` (first argument or keyword) in the projections' weight dtype."""
    dtype = module.query.weight.dtype
    if "hidden_states" in kwargs:
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"].to(dtype)}
    return (args[0].to(dtype), *args[1:]), kwargs


def bf16_within_rule(folder: Path) -> bool:
    """Whether the bundle's ``metrics.json`` records a bf16 check within the rule (figures and labels kept)."""
    try:
        return bool(read_metrics(folder).get("bf16", {}).get("within_rule"))
    except (OSError, ValueError):
        return False


def quantize_int8(model: MultiTaskModel) -> MultiTaskModel:
    """Dynamic int8 quantisation of the encoder's linear layers (CPU only): weights stored as int8 with a
    scale per output channel, activations quantised per batch. The task heads stay fp32, they are tiny and
    set the scores.

    Per-channel rather than one scale per weight matrix: on undertone-base@1.4.1 the largest held-out loss
    against fp32 fell from 1.30 to 0.63 points (SST-2 dev from -1.26 to -0.23), for a model stage 4 % slower
    than per-tensor int8 and still about 1.4x faster than fp32 on 2 cores.
    """
    with warnings.catch_warnings():  # torch.ao's eager quantisation is deprecated in favour of torchao
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_channel.*")
        model.encoder = torch.ao.quantization.quantize_dynamic(
            model.encoder, {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8)
    return model


def load_encoder(spec: BundleSpec, verify_hash: bool = True) -> nn.Module:
    """Load the base encoder from a local folder, safetensors only, no remote code."""
    path = resolve_base_path(spec.base)
    check_hf_folder(path)
    if verify_hash and spec.base.sha256:
        actual = sha256_file(path / "model.safetensors")
        if actual != spec.base.sha256:
            raise UnsafeModelError(
                f"base model at {path} has sha256 {actual[:12]}…, bundle expects {spec.base.sha256[:12]}…"
            )
    return AutoModel.from_pretrained(path, trust_remote_code=False, use_safetensors=True, local_files_only=True)


def load_tokenizer(spec: BundleSpec) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(resolve_base_path(spec.base), trust_remote_code=False, local_files_only=True)


CHARS_PER_WINDOW_TOKEN = 16
"""Characters of text kept per window token before tokenising: English runs about 4.5 a token, so a cut at
16 still fills the window for all but texts of long symbol runs (which are then tokenised whole)."""


TOKENIZE_CHUNK = 256
"""Texts per tokenizer call. The fast tokenizer builds a full encoding (tokens, offsets, masks) of every text of a
call before returning: a 4,096-text sorting window in one call raised RSS by about 130 MiB while it ran (25,000
documents, tiny model: peak 941 MiB, 891 MiB in chunks of 256). Same ids, same speed (0.46-0.68 s a window)."""


def input_ids(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids only (no masks), at most ``max_length`` per text, tokenised ``TOKENIZE_CHUNK`` texts a call."""
    ids: list[list[int]] = []
    for start in range(0, len(texts), TOKENIZE_CHUNK):
        ids.extend(tokenizer(list(texts[start:start + TOKENIZE_CHUNK]), truncation=True, max_length=max_length,
                             return_attention_mask=False, return_token_type_ids=False)["input_ids"])
    return ids


def window_token_ids(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], limit: int
                     ) -> tuple[list[list[int]], list[bool]]:
    """Token ids cut to a window of ``limit`` tokens (keeping the final [SEP]), and per text whether it was cut.

    The tokenizer cuts only after tokenising a whole text, so a long text is first cut at a space
    near ``CHARS_PER_WINDOW_TOKEN`` characters a token: words before a space tokenise the same
    whatever follows, so the ids are those of the whole text; where the cut text does not fill
    the window (long runs of spaces or symbols), the whole text is tokenised.
    """
    chars = limit * CHARS_PER_WINDOW_TOKEN
    prefixes = [text if len(text) <= chars else text[: max(text.rfind(" ", 0, chars), 1)] for text in texts]
    token_ids = input_ids(tokenizer, prefixes, limit + 1)
    unfilled = [i for i, (text, prefix) in enumerate(zip(texts, prefixes, strict=True))
                if prefix is not text and len(token_ids[i]) <= limit]
    if unfilled:
        for i, ids in zip(unfilled, input_ids(tokenizer, [texts[i] for i in unfilled], limit + 1), strict=True):
            token_ids[i] = ids
    truncated = [len(ids) > limit for ids in token_ids]
    kept = [ids[: limit - 1] + ids[-1:] if cut else ids for ids, cut in zip(token_ids, truncated, strict=True)]
    return kept, truncated


class Classifier:
    """Labels texts with every task of a bundle in one encoder pass."""

    def __init__(self, spec: BundleSpec, model: MultiTaskModel, tokenizer: PreTrainedTokenizerBase,
                 precision: str = "fp32") -> None:
        self.spec = spec
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.precision = precision
        """What the encoder runs in: fp32, bf16 or fp16 (autocast over linear weights stored in that dtype) or int8
        (quantised)."""
        self.autocast = AUTOCAST_DTYPES.get(precision)
        self.trim_heap = HeapTrimmer()
        """Call between batches of a long job: keeps peak memory independent of how many batches ran."""

    @property
    def model_version(self) -> str:
        return self.spec.model_version

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.spec.tasks)

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu", tasks: Sequence[str] | None = None,
             zero_shot: dict[str, dict[str, str]] | None = None, precision: str = "auto",
             threads: int | None = None, pack_linear: bool = True) -> Classifier:
        """Load a bundle for inference: adapter merged into the encoder, heads restricted to ``tasks``, and on CPU
        the encoder's linear layers packed for oneDNN (:mod:`models.packed_linear`) and its feed-forward blocks run in
        token chunks (:mod:`models.feed_forward`).

        ``zero_shot`` adds or replaces zero-shot tasks from configuration (task → label → description).
        ``device`` is auto, cpu or cuda[:N]; ``precision`` one of :data:`PRECISIONS` (see
        :func:`resolve_precision`); ``threads`` sets torch's intra-op threads on CPU (default: the cores this
        process may use); ``pack_linear=False`` keeps stock ``nn.Linear`` layers (the bench's baseline).
        """
        device = resolve_device(device)
        folder = Path(folder)
        on_cpu = torch.device(device).type == "cpu"
        precision = resolve_precision(precision, torch.device(device), bf16_within_rule(folder))
        if on_cpu:
            torch.set_num_threads(threads or available_cores())
        spec = read_bundle_spec(folder)
        if zero_shot:
            spec = with_zero_shot(spec, zero_shot)
        if tasks is not None:
            unknown = sorted(set(tasks) - set(spec.tasks))
            if unknown:
                raise ValueError(f"bundle {spec.model_version} has no task {unknown}; it has {sorted(spec.tasks)}")
            spec = replace(spec, tasks={task: spec.tasks[task] for task in tasks})
        encoder = load_encoder(spec)
        if (folder / ADAPTER_DIR).exists():
            from peft import PeftModel

            with warnings.catch_warnings():  # peft calls a transformers API deprecated for v6
                warnings.filterwarnings("ignore", category=FutureWarning)
                encoder = PeftModel.from_pretrained(encoder, folder / ADAPTER_DIR, is_trainable=False)
                encoder = encoder.merge_and_unload()
        if on_cpu:
            encoder.set_attn_implementation(cpu_attention(precision))
        model = MultiTaskModel(encoder, spec.tasks)
        load_heads(model, folder, [task for task in model.heads if task not in model.zero_shot])
        model = quantize_int8(model) if precision == "int8" else model.to(device)
        if precision in AUTOCAST_DTYPES:
            cast_linear_weights(model.encoder, AUTOCAST_DTYPES[precision])
        if pack_linear and on_cpu and precision != "int8":
            pack_linear_layers(model.encoder)
        if on_cpu and precision != "int8":
            chunk_feed_forward(model.encoder)
        classifier = cls(spec, model, load_tokenizer(spec), precision=precision)
        for task in model.zero_shot:
            classifier.set_prototypes(task)
        return classifier

    def set_prototypes(self, task: str) -> None:
        """A zero-shot head: the normalised embeddings of "label: description", so logits are cosines."""
        spec = self.spec.tasks[task]
        prompts = [f"{label.replace('_', ' ')}: {text}" for label, text in zip(spec.labels, spec.descriptions or (),
                                                                                 strict=True)]
        batch, _ = self.encode(prompts)
        with torch.inference_mode(), self._autocast():
            prototypes = nn.functional.normalize(self.model.embed(batch["input_ids"], batch["attention_mask"]), dim=-1)
        head = self.model.heads[task]
        head.weight.data.copy_(prototypes.float())
        head.bias.data.zero_()

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids cut to the model window, and per text whether it was cut (:func:`window_token_ids`)."""
        return window_token_ids(self.tokenizer, texts, self.spec.max_length)

    def pad(self, token_ids: Sequence[list[int]]) -> dict[str, torch.Tensor]:
        """Tokenised texts as padded tensors on the model's device."""
        features = [{"input_ids": ids, "attention_mask": [1] * len(ids)} for ids in token_ids]
        padded = self.tokenizer.pad(features, return_tensors="pt")
        if self.device.type == "cuda":
            # Page-locked host memory lets the copy run asynchronously, ordered on the current stream.
            return {key: tensor.pin_memory().to(self.device, non_blocking=True) for key, tensor in padded.items()}
        return dict(padded)

    def encode(self, texts: Sequence[str]) -> tuple[dict[str, torch.Tensor], list[bool]]:
        """Tokenise once: padded tensors, and per text whether it was cut to the model window."""
        token_ids, truncated = self.tokenize(texts)
        return self.pad(token_ids), truncated

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast)

    def logits_for(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Calibrated fp32 logits per task for an encoded batch: one encoder pass, every head."""
        with torch.inference_mode(), self._autocast():
            raw = self.model(batch["input_ids"], batch["attention_mask"])
        return {task: raw[task].float() / self.spec.tasks[task].temperature for task in self.tasks}

    def logits(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.logits_for(self.encode(texts)[0])

    def label(self, texts: Sequence[str]) -> tuple[list[dict[str, Prediction]], list[bool]]:
        """Predictions for many texts and whether each was truncated, from one tokenisation."""
        batch, truncated = self.encode(texts)
        return self.decode(self.logits_for(batch)), truncated

    def decode(self, logits: dict[str, torch.Tensor]) -> list[dict[str, Prediction]]:
        best = {task: torch.softmax(logit, dim=-1).max(dim=-1) for task, logit in logits.items()}
        # Python lists first: indexing a tensor element by element costs microseconds per call.
        columns = {task: (self.spec.tasks[task].labels, top.indices.tolist(), top.values.tolist())
                   for task, top in best.items()}
        rows = len(next(iter(logits.values()))) if logits else 0
        return [
            {task: Prediction(labels[indices[row]], values[row]) for task, (labels, indices, values) in columns.items()}
            for row in range(rows)
        ]

    @overload
    def predict(self, texts: str) -> dict[str, Prediction]: ...
    @overload
    def predict(self, texts: Sequence[str]) -> list[dict[str, Prediction]]: ...

    def predict(self, texts: str | Sequence[str]) -> dict[str, Prediction] | list[dict[str, Prediction]]:
        """Label one text (returns one dict) or many (returns a list of dicts, in order)."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        if not batch:
            return []
        results = self.decode(self.logits(batch))
        return results[0] if single else results


def _load_key(folder: str | Path, options: dict) -> str:
    return json.dumps([str(Path(folder).resolve()), options], sort_keys=True, default=list)


def preload_classifier(folder: str | Path, **options) -> None:
    """Load a classifier for a worker of this process that will ask :func:`load_classifier` for it with the same
    arguments (``Classifier.load``'s); the CLI's warm-up does it while Prefect's server starts."""
    preload.offer(_load_key(folder, options), Classifier.load(folder, **options))


def load_classifier(folder: str | Path, **options) -> Classifier:
    """``Classifier.load(folder, **options)``, or the classifier preloaded with the same arguments, handed over
    once (a worker that asks while the warm-up runs waits for it rather than load a second copy beside it)."""
    classifier = preload.take(_load_key(folder, options))
    if classifier is None:
        return Classifier.load(folder, **options)
    if classifier.device.type == "cpu":  # torch keeps OpenMP's thread count per calling thread
        torch.set_num_threads(options.get("threads") or available_cores())
    return classifier


def load_heads(model: MultiTaskModel, folder: Path, tasks: Sequence[str]) -> None:
    """Copy the trained heads of ``tasks`` from a bundle folder's heads file into ``model``."""
    heads = load_file(folder / HEADS_FILE)
    for task in tasks:
        model.heads[task].load_state_dict({"weight": heads[f"{task}.weight"], "bias": heads[f"{task}.bias"]})


def save_bundle(folder: str | Path, spec: BundleSpec, model: MultiTaskModel) -> Path:
    """Write a bundle: metadata, heads, and the LoRA adapter when the encoder carries one."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    heads = {}
    for task, head in model.heads.items():
        if task in model.zero_shot:
            continue
        heads[f"{task}.weight"] = head.weight.detach().cpu().contiguous()
        heads[f"{task}.bias"] = head.bias.detach().cpu().contiguous()
    save_file(heads, folder / HEADS_FILE)
    if hasattr(model.encoder, "peft_config"):
        model.encoder.save_pretrained(folder / ADAPTER_DIR, safe_serialization=True)
        # peft records the training machine's absolute base path; keep the portable name instead.
        config_path = folder / ADAPTER_DIR / "adapter_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["base_model_name_or_path"] = spec.base.name
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (folder / ADAPTER_DIR / "README.md").unlink(missing_ok=True)  # peft's empty card template
    write_bundle_spec(folder, spec)
    return folder
