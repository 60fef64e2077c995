"""Fine-tuning: a LoRA adapter on the shared encoder plus a head per task, trained together.

LoRA (peft) rather than full fine-tuning because the shipped artefact must stay a few MB
(the adapter and heads) while the 90 MB base encoder comes from a PyPI package; with the
adapter on every linear layer it comes close to full fine-tuning. After training, each
head's temperature is fitted on the dev split so scores are calibrated probabilities.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.bundle import ADAPTER_DIR, BundleSpec, read_bundle_spec, resolve_base_path
from models.classifier import Classifier, MultiTaskModel, load_encoder, load_heads, load_tokenizer
from models.datasets import Example

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingArguments:
    """How a bundle is trained; stored in its metrics so a run can be repeated."""

    seed: int = 13
    """Seeds python, numpy and torch: the same data and seed give the same weights."""
    epochs: float = 1.0
    """Passes over the training data (fractions allowed)."""
    batch_size: int = 32
    """Examples per step; batches are grouped by length to avoid padding."""
    learning_rate: float = 1e-3
    """Peak learning rate of the adapter and heads (linear warm-up then decay)."""
    warmup_ratio: float = 0.06
    """Share of steps spent warming up the learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    max_length: int = 128
    """Tokens kept per text, in training and when the trained bundle labels (its ``max_length``)."""
    lora_rank: int = 16
    """LoRA rank; 0 freezes the encoder and trains heads only."""
    lora_alpha: int = 32
    """LoRA scaling numerator."""
    lora_dropout: float = 0.1
    """Dropout inside the LoRA layers."""
    lora_targets: tuple[str, ...] = ("query", "key", "value", "dense")
    """Encoder modules that get an adapter (all linear layers of a BERT block)."""
    log_every: int = 50
    """Steps between progress lines."""
    threads: int | None = None
    """torch threads; None keeps torch's default (all cores)."""
    init_from: str | None = None
    """A bundle folder whose adapter and heads training continues from (same base encoder and labels);
    None starts from the base encoder with a fresh adapter and heads. The LoRA settings above then come
    from that bundle's adapter."""


@dataclass
class TaskData:
    """Training and dev examples for one task, and its label order."""

    labels: tuple[str, ...]
    train: list[Example]
    dev: list[Example] = field(default_factory=list)
    repeat: float = 1.0
    """Passes over this task's data per epoch: small tasks see their data more often."""


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, then sort within windows of 50 batches so each batch holds similar lengths."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def candidate_mask(examples: Sequence[Example], labels: tuple[str, ...]) -> torch.Tensor | None:
    """True where a label is among an example's ``candidates`` (None when every example allows all labels):
    masked logits keep an example's loss, and the temperature fitted on it, to the labels its dataset
    decides between."""
    if all(example.candidates is None for example in examples):
        return None
    return torch.tensor([[example.candidates is None or label in example.candidates for label in labels]
                         for example in examples])


def restrict(logits: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """``logits`` with the labels ``allowed`` rules out set to -inf."""
    return logits if allowed is None else logits.masked_fill(~allowed, float("-inf"))


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, allowed: torch.Tensor | None = None) -> float:
    """The softmax temperature minimising dev-set NLL (Guo et al. 2017), over each row's ``allowed`` labels
    (masked after scaling: -inf divided by the temperature would give a NaN gradient)."""
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)
    loss_fn = nn.CrossEntropyLoss()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(restrict(logits / log_t.exp(), allowed), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def build_model(spec: BundleSpec, args: TrainingArguments) -> MultiTaskModel:
    """Base encoder (with LoRA when ``lora_rank`` > 0) plus fresh heads, or the adapter and heads of
    ``init_from``."""
    encoder = load_encoder(spec)
    if args.init_from:
        return continue_from(Path(args.init_from), spec, encoder)
    if args.lora_rank > 0:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=args.lora_rank,
            lora_alpha=args.lora_alpha,
            lora_dropout=args.lora_dropout,
            target_modules=list(args.lora_targets),
        )
        encoder = get_peft_model(encoder, config)
    else:
        encoder.requires_grad_(False)
    return MultiTaskModel(encoder, spec.tasks)


def continue_from(folder: Path, spec: BundleSpec, encoder: nn.Module) -> MultiTaskModel:
    """A trainable model holding ``folder``'s adapter and heads, for continued training on ``spec``'s tasks.

    Refuses a bundle on another base encoder or with other labels: its weights would not mean the same.
    """
    from peft import PeftModel

    previous = read_bundle_spec(folder)
    if previous.base.sha256 != spec.base.sha256:
        raise ValueError(f"{folder} was trained on another base encoder ({previous.base.name})")
    for task, task_spec in spec.tasks.items():
        if task in previous.tasks and previous.tasks[task].labels != task_spec.labels:
            raise ValueError(f"{folder}: task {task!r} has other labels than the data to train")
    if (folder / ADAPTER_DIR).is_dir():
        encoder = PeftModel.from_pretrained(encoder, folder / ADAPTER_DIR, is_trainable=True)
        for config in encoder.peft_config.values():  # the bundle holds a portable name; peft checks it on save
            config.base_model_name_or_path = str(resolve_base_path(spec.base))
    else:  # a heads-only bundle: the encoder stays frozen as it was trained
        encoder.requires_grad_(False)
    model = MultiTaskModel(encoder, spec.tasks)
    trained = [task for task in spec.tasks if task in previous.tasks and not previous.tasks[task].zero_shot]
    load_heads(model, folder, trained)
    return model


def train_bundle(
    spec: BundleSpec,
    data: dict[str, TaskData],
    args: TrainingArguments,
    on_progress: Callable[[int, int, float], None] | None = None,
) -> tuple[BundleSpec, MultiTaskModel, dict]:
    """Train adapter and heads on every task, calibrate each head, return (spec, model, stats).

    Each step draws a batch from one task, in proportion to the task's training size. The returned
    spec reads ``args.max_length`` tokens per text: heads trained on one window drift on another
    (spam F1 lost 2.5-4 points when 128-token bundles were read at 256).
    """
    spec = replace(spec, max_length=args.max_length)
    set_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    tokenizer = load_tokenizer(spec)
    model = build_model(spec, args)
    label_index = {task: {label: i for i, label in enumerate(d.labels)} for task, d in data.items()}

    def encode(texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return tokenizer(list(texts), padding=True, truncation=True, max_length=spec.max_length, return_tensors="pt")

    schedule: list[tuple[str, list[int]]] = []
    for task, task_data in data.items():
        lengths = [len(example.text) for example in task_data.train]
        share = args.epochs * task_data.repeat
        passes = max(1, math.ceil(share))
        task_batches = [b for _ in range(passes) for b in length_grouped_batches(lengths, args.batch_size, rng)]
        keep = int(len(task_batches) * share / passes)
        schedule.extend((task, batch) for batch in task_batches[:keep])
    rng.shuffle(schedule)

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=args.weight_decay)
    total = len(schedule)
    warmup = max(1, int(total * args.warmup_ratio))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))
    )
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    started = time.monotonic()
    running = 0.0
    for step, (task, batch) in enumerate(schedule, start=1):
        examples = [data[task].train[i] for i in batch]
        inputs = encode([e.text for e in examples])
        targets = torch.tensor([label_index[task][e.label] for e in examples])
        pooled = model.dropout(model.embed(inputs["input_ids"], inputs["attention_mask"]))
        loss = loss_fn(restrict(model.heads[task](pooled), candidate_mask(examples, data[task].labels)), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        running += loss.item()
        if step % args.log_every == 0 or step == total:
            elapsed = time.monotonic() - started
            log.info("step %d/%d loss %.4f %.1f s (eta %.0f s)", step, total, running / args.log_every, elapsed,
                     elapsed / step * (total - step))
            if on_progress:
                on_progress(step, total, running / args.log_every)
            running = 0.0
    train_seconds = time.monotonic() - started

    model.eval()
    temperatures = calibrate(Classifier(spec, model, tokenizer), data)
    spec = replace(
        spec,
        tasks={task: replace(spec.tasks[task], temperature=temperatures[task]) for task in spec.tasks},
    )
    stats = {"train_seconds": round(train_seconds, 1), "steps": total, "temperatures": temperatures}
    return spec, model, stats


def calibrate(classifier: Classifier, data: dict[str, TaskData]) -> dict[str, float]:
    """Each task's temperature fitted on its dev split (1.0 without one), on the classifier's logits as they are."""
    temperatures = {}
    for task, task_data in data.items():
        if not task_data.dev:
            temperatures[task] = 1.0
            continue
        logits = batched_logits(classifier, task, [e.text for e in task_data.dev])
        targets = torch.tensor([task_data.labels.index(e.label) for e in task_data.dev])
        temperatures[task] = fit_temperature(logits, targets, candidate_mask(task_data.dev, task_data.labels))
    return temperatures


def batched_logits(classifier: Classifier, task: str, texts: Sequence[str], batch_size: int = 128) -> torch.Tensor:
    """Uncalibrated-by-spec logits (the spec's current temperature applied) for many texts, by length."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.empty((len(texts), len(classifier.spec.tasks[task].labels)))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        out[rows] = classifier.logits([texts[i] for i in rows])[task]
    return out

