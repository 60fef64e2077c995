"""Readers for the labeled public datasets in ``../shared/data`` (see its README for the traps)."""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from transforms.clean import normalise_social, normalise_text

log = logging.getLogger(__name__)

#: SemEval-2016 test: held out from sentiment training, the figure quoted in the model card.
SEMEVAL_TEST_FILE = "twitter-2016test-A.tsv"
SENTIMENT_LABELS = ("negative", "neutral", "positive")

_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_PTB = [
    (re.compile(r"-lrb-", re.I), "("),
    (re.compile(r"-rrb-", re.I), ")"),
    (re.compile(r"\s+(n't|'s|'re|'ve|'ll|'d|'m)\b"), r"\1"),
    (re.compile(r"\s+([.,!?;:%)])"), r"\1"),
    (re.compile(r"([($])\s+"), r"\1"),
    (re.compile(r"``\s*|\s*''"), '"'),
]


@dataclass(frozen=True)
class Example:
    """One labeled text."""

    text: str
    label: str
    candidates: tuple[str, ...] | None = None
    """Labels this example chooses between (None: all of the task's). A binary dataset on a 3-class task
    names its two, so it trains their margin and says nothing about the third."""


def default_data_dir() -> Path:
    """``../shared/data`` next to the repository root."""
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def read_semeval(path: Path) -> list[tuple[str, Example]]:
    """(tweet id, example) pairs from one SemEval-2017 Task 4A file, text normalised like social posts."""
    rows = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[1] not in SENTIMENT_LABELS:
            continue
        text = _ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), parts[2])
        if len(text) > 1 and text.startswith('"') and text.endswith('"'):
            text = text[1:-1]
        rows.append((parts[0], Example(normalise_social(text), parts[1])))
    return rows


def semeval_examples(data_dir: Path, include_test: bool = False) -> list[Example]:
    """All SemEval tweets, deduplicated by id; the 2016 test file only when ``include_test``."""
    folder = data_dir / "sentiment" / "semeval2017"
    seen: set[str] = set()
    examples = []
    for path in sorted(folder.glob("twitter-*.tsv")):
        if path.name == SEMEVAL_TEST_FILE and not include_test:
            continue
        for tweet_id, example in read_semeval(path):
            if tweet_id not in seen and example.text:
                seen.add(tweet_id)
                examples.append(example)
    return examples


def semeval_test(data_dir: Path) -> list[Example]:
    return [example for _, example in read_semeval(data_dir / "sentiment" / "semeval2017" / SEMEVAL_TEST_FILE)]


def detokenize_ptb(text: str) -> str:
    """Undo SST's Penn-Treebank tokenisation (``it 's`` → ``it's``) so it reads like a review."""
    for pattern, replacement in _PTB:
        text = pattern.sub(replacement, text)
    return text.strip()


def read_sst2(path: Path, min_words: int = 1) -> list[Example]:
    """SST-2 rows as negative/positive examples (no quoting in these TSVs)."""
    examples = []
    seen: set[str] = set()
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            text = normalise_text(detokenize_ptb(row["sentence"]))
            if len(text.split()) < min_words or text in seen:
                continue
            seen.add(text)
            examples.append(Example(text, "positive" if row["label"].strip() == "1" else "negative"))
    return examples


def read_banking77(data_dir: Path) -> list[Example]:
    """BANKING77 customer inquiries and their intent (CSV ``text,category``)."""
    with (data_dir / "intent" / "banking77" / "train.csv").open(encoding="utf-8", newline="") as handle:
        return [Example(normalise_text(row["text"]), row["category"]) for row in csv.DictReader(handle)]


def read_spamassassin(data_dir: Path) -> list[tuple[str, Example]]:
    """(file name, example) for every SpamAssassin message, as the pipeline would see its text.

    The text is what ingest produces (subject and newest body, cleaned), never the relay
    headers, so the model cannot key on 2002-era mail routes.
    """
    from transforms.clean import clean_document
    from transforms.ingest.email import parse_email
    from transforms.records import Failure

    examples = []
    for label in ("ham", "spam"):
        for path in sorted((data_dir / "email" / "spamassassin" / label).iterdir()):
            document = parse_email(path.read_bytes(), path.name)
            if not isinstance(document, Failure):
                document = clean_document(document, 200_000)
            if not isinstance(document, Failure):
                examples.append((f"{label}/{path.name}", Example(document["text"], label)))
    return examples


LABEL_COLUMNS = ("label", "category", "intent", "sentiment", "class", "target")
"""Column names taken as the gold labels, in order of preference: ``label`` wins over ``sentiment``, which in a
scored export is often an earlier model's prediction."""


def pick_label_column(path: Path, columns: list[str]) -> tuple[str | None, str | None]:
    """The label column by :data:`LABEL_COLUMNS` priority (not file order), and a note naming it when several
    candidates were found, so that a wrong pick is seen and can be overridden."""
    candidates = sorted((c for c in columns if str(c).lower() in LABEL_COLUMNS),
                        key=lambda c: LABEL_COLUMNS.index(str(c).lower()))
    if len(candidates) < 2:
        return (candidates[0] if candidates else None), None
    return candidates[0], (f"{path}: took column {candidates[0]!r} as the gold labels, not "
                           f"{', '.join(map(repr, candidates[1:]))}; name another with --label-column "
                           "(and the text with --text-column)")


def read_labeled(path: Path, text_column: str | None = None, label_column: str | None = None,
                 notes: list[str] | None = None) -> list[Example]:
    """Labeled examples from a file or folder, for evaluation.

    Understands SemEval TSV (``id<TAB>label<TAB>text``), SST-2 TSV (``sentence<TAB>label`` with 0/1),
    a folder whose subfolders are labels holding raw emails (SpamAssassin layout), and CSV, TSV,
    JSONL, JSON, Parquet or Excel (its first sheet) tables with a text column and a label column (names
    auto-detected); suffixes match in any case, a UTF-8 byte-order mark is dropped, and a CSV in a Windows code page
    is read in it as a run reads it. A file that is not UTF-8 or does not parse raises ``ValueError``
    naming it (the parsers' own errors do not). Labels lose the spaces around them. Which column was taken when
    several could hold the labels, and how many rows or files were skipped (no text or label, not an email), go to
    ``notes`` when given (a report shows them), else to the log.
    """
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        from transforms.clean import clean_document
        from transforms.ingest.read import read_path
        from transforms.records import Failure

        examples = []
        folders = sorted(p for p in path.iterdir() if p.is_dir())
        files = [file for folder in folders for file in sorted(folder.iterdir())]
        failures = []
        for file in files:
            for record in read_path(str(file), source="email"):
                document = record if isinstance(record, Failure) else clean_document(record, 200_000)
                if isinstance(document, Failure):
                    failures.append(f"{file.relative_to(path).as_posix()}: {document.error}")
                else:
                    examples.append(Example(document["text"], file.parent.name))
        if failures:
            _note(notes, f"{path}: skipped {len(failures)} of {len(files)} files that are not readable emails "
                         f"({failures[0]})")
        return examples
    suffix = path.suffix.lower()  # data.CSV from a Windows share is a CSV
    encoding = _text_encoding(path, notes) if suffix in (".csv", ".tsv") else "utf-8-sig"
    readers = {  # labels stay as written: a 0/1 column must not come back as 0.0/1.0 because one cell is empty
        ".csv": lambda p: pd.read_csv(p, dtype=str, keep_default_na=False, encoding=encoding),
        ".tsv": lambda p: pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False, encoding=encoding),
        # the first sheet, read by openpyxl; cells as text, as a CSV's are
        ".xlsx": lambda p: pd.read_excel(p, dtype=str, keep_default_na=False),
        ".xlsm": lambda p: pd.read_excel(p, dtype=str, keep_default_na=False),
        # typed formats: nullable dtypes keep an integer column with a null (JSON's null, Parquet's) integers
        ".jsonl": lambda p: pd.read_json(p, lines=True, dtype=False, encoding="utf-8-sig",
                                         dtype_backend="numpy_nullable"),
        ".json": lambda p: pd.read_json(p, dtype=False, encoding="utf-8-sig", dtype_backend="numpy_nullable"),
        ".parquet": lambda p: pd.read_parquet(p, dtype_backend="numpy_nullable"),
    }
    if suffix not in readers:
        raise ValueError(f"{path}: unsupported evaluation file type {path.suffix!r}")
    try:  # the parsers' errors (a row with extra fields, a cut JSON line) do not say which file they read
        if suffix == ".tsv":
            with path.open(encoding=encoding) as handle:
                header = handle.readline().rstrip("\r\n").split("\t")
            if header == ["sentence", "label"]:
                return read_sst2(path)
            if len(header) >= 3 and header[1] in SENTIMENT_LABELS:
                return [example for _, example in read_semeval(path)]
        frame = readers[suffix](path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: empty file, no header row with a text and a label column") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error}); save it as UTF-8") from None
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    from transforms.ingest.tabular import ColumnMap

    text = text_column or ColumnMap().resolve(list(frame.columns)).text
    label, note = (label_column, None) if label_column else pick_label_column(path, list(frame.columns))
    if note:
        _note(notes, note)
    if text is None or label is None or text not in frame or label not in frame:
        raise ValueError(f"{path}: need a text and a label column, found {list(frame.columns)}")
    labels = frame[label].astype(object).where(frame[label].notna(), None)  # pandas' NA has no truth value
    examples = [Example(normalise_text(t), str(lab).strip()) for t, lab in zip(frame[text], labels, strict=True)
                if isinstance(t, str) and t.strip() and _present(lab)]
    if len(examples) < len(frame):  # the report's n must not silently differ from the file's row count
        _note(notes, f"{path}: skipped {len(frame) - len(examples)} of {len(frame)} rows without a text or a label")
    return examples


def _text_encoding(path: Path, notes: list[str] | None) -> str:
    """A CSV's or TSV's encoding as a run reads it (:func:`transforms.ingest.tabular.csv_encoding`): a byte-order
    mark's, else UTF-8, else the Windows code page Excel's plain "CSV" wrote, with a note."""
    from transforms.ingest.tabular import csv_encoding

    with path.open("rb") as handle:
        encoding, guessed = csv_encoding(handle)
    if guessed:
        _note(notes, f"{path}: {guessed}")
    return "utf-8-sig" if encoding == "utf-8" else encoding


def _present(label: object) -> bool:
    """A label cell that holds a label: not empty, None or NaN (a row without one is not evaluated)."""
    return label is not None and label == label and str(label).strip() != ""


def _note(notes: list[str] | None, note: str) -> None:
    """A note on what was read: to ``notes`` when the caller reports them, else to the log."""
    if notes is None:
        log.warning(note)
    else:
        notes.append(note)
