"""In-flight records: a document is a dict shaped like ``schemas.DOCUMENT_SCHEMA``; a failure is a
:class:`Failure` that becomes one dead-letter row. Stages yield one or the other, never nothing."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from schemas import DOCUMENT_SCHEMA

EXCERPT_CHARS = 500
Document = dict[str, Any]
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Failure:
    """A record that could not be read, parsed, cleaned or classified, and why."""

    source: str | None
    """email | review | social, or None when not even the file's source is known."""
    input_ref: str
    """File path with line, row or message index."""
    stage: str
    """read | parse | clean | classify."""
    error_type: str
    """Short machine-readable reason, e.g. ``invalid_json``."""
    error: str
    """Human-readable explanation."""
    raw_excerpt: str | None = None
    """Start of the raw record, bytes escaped."""
    doc_id: str | None = None
    """Set once the record has an id."""

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, str) and _SURROGATE.search(value):
                object.__setattr__(self, item.name, printable(value))

    def to_row(self, run_id: str, failed_at: datetime) -> dict[str, Any]:
        return {**asdict(self), "run_id": run_id, "failed_at": failed_at}


_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""Control characters other than tab and line breaks: shown escaped in excerpts, where they would garble a terminal
or a dashboard cell and read as nothing."""


def excerpt(raw: bytes | str | None, limit: int = EXCERPT_CHARS) -> str | None:
    """A short excerpt of a raw record; undecodable bytes and control characters shown as ``\\xNN`` (lone
    surrogates of text by :class:`Failure`)."""
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw[: limit * 4].decode("utf-8", errors="backslashreplace")
    return _CONTROL_CHARACTER.sub(lambda control: f"\\x{ord(control.group()):02x}", raw[: limit * 4])[:limit]


def printable(text: str) -> str:
    """Text that encodes as UTF-8, for names and excerpts: bytes kept by ``surrogateescape``
    (undecodable file names, CSV cells) as ``\\xNN``, other lone surrogates as ``\\udNNN``.

    Beam's coders and Parquet reject lone surrogates, so one in a file name would fail the whole run.
    """
    return _SURROGATE.sub(_escape_surrogate, text)


def _escape_surrogate(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def without_surrogates(text: str) -> str:
    """Lone surrogates (an emoji cut in half by a JSON exporter, UTF-7 tricks) become U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def make_doc_id(source: str, source_id: str) -> str:
    """Stable id: the same source record gets the same id on every run and every machine."""
    return hashlib.sha256(f"{source}\x1f{source_id}".encode("utf-8", errors="surrogatepass")).hexdigest()[:32]


def new_document(source: str, input_ref: str, text: str, source_id: str | None = None, **values: Any) -> Document:
    """A document dict with every schema field present.

    Without an id of its own, ``source_id`` hashes the record's place (file name with its line, row or
    offset, from ``input_ref``) and its text: a content hash alone gave two id-less rows with the same
    text ("Great product!") one ``doc_id``, and the folder part is left out so a moved file keeps its ids.

    Every string is made encodable here, the one place all readers pass through: lone surrogates in
    text fields become U+FFFD (and a note says where), in ids and refs they are escaped.
    """
    source_id = printable(source_id) if source_id else content_hash(f"{PurePosixPath(input_ref).name}\x1f{text}")
    document: Document = {name: None for name in DOCUMENT_SCHEMA.names}
    document.update(values)
    document.update(
        source=source,
        source_id=source_id,
        doc_id=make_doc_id(source, source_id),
        input_ref=printable(input_ref),
        text=text,
        truncated=bool(values.get("truncated", False)),
        ingest_notes=[printable(note) for note in values.get("ingest_notes") or []],
    )
    repaired = [name for name, value in document.items()
                if isinstance(value, str) and name not in ("source_id", "input_ref") and _SURROGATE.search(value)]
    for name in repaired:
        document[name] = without_surrogates(document[name])
    if repaired:
        document["ingest_notes"].append(f"lone surrogates replaced with U+FFFD in {', '.join(repaired)}")
    return document
