"""In-flight records: a document is a dict shaped like ``schemas.DOCUMENT_SCHEMA``; a failure is a
:class:`Failure` that becomes one dead-letter row. Stages yield one or the other, never nothing."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from schemas import DOCUMENT_SCHEMA

EXCERPT_CHARS = 500
Document = dict[str, Any]


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

    def to_row(self, run_id: str, failed_at: datetime) -> dict[str, Any]:
        return {**asdict(self), "run_id": run_id, "failed_at": failed_at}


def excerpt(raw: bytes | str | None, limit: int = EXCERPT_CHARS) -> str | None:
    """A short, printable excerpt of a raw record; undecodable bytes shown as ``\\xNN``."""
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw[: limit * 4].decode("utf-8", errors="backslashreplace")
    return raw[:limit]


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def make_doc_id(source: str, source_id: str) -> str:
    """Stable id: the same source record gets the same id on every run and every machine."""
    return hashlib.sha256(f"{source}\x1f{source_id}".encode("utf-8", errors="surrogatepass")).hexdigest()[:32]


def new_document(source: str, input_ref: str, text: str, source_id: str | None = None, **fields: Any) -> Document:
    """A document dict with every schema field present; ``source_id`` defaults to a content hash."""
    source_id = source_id or content_hash(text)
    document: Document = {name: None for name in DOCUMENT_SCHEMA.names}
    document.update(fields)
    document.update(
        source=source,
        source_id=source_id,
        doc_id=make_doc_id(source, source_id),
        input_ref=input_ref,
        text=text,
        truncated=bool(fields.get("truncated", False)),
        ingest_notes=list(fields.get("ingest_notes") or []),
    )
    return document
