"""Raw RFC-822 messages (single files, ``.eml``, mbox) to documents.

Bytes in, never assumed UTF-8: the standard library's ``email`` package (``policy.default``)
does MIME, RFC 2047 headers, quoted-printable and base64; declared charsets are tried
strictly and ``charset-normalizer`` detects the rest; HTML-only bodies go through
``inscriptis``; ``mail-parser-reply`` strips quoted replies and signatures.
"""

from __future__ import annotations

import email.utils
import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import BinaryIO

import charset_normalizer
from inscriptis import get_text
from mailparser_reply import EmailReplyParser

from transforms.records import Document, Failure, excerpt, new_document

_HEADERS_THAT_MAKE_AN_EMAIL = ("from", "to", "subject", "date", "message-id", "received", "mime-version")
_ENVELOPE = re.compile(rb"From \S+ .*\d{1,2}:\d{2}")
_QUOTED_FROM = re.compile(rb"(?m)^>(>*From )")
_REPLY_PARSER = EmailReplyParser(languages=["en", "de", "fr", "es", "it", "nl"])


def hash_address(address: str) -> str:
    """Pseudonymise an address: the same sender hashes the same everywhere, the address is not stored."""
    return "sha256:" + hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()[:16]


def looks_binary(raw: bytes) -> bool:
    """NUL bytes or mostly control characters in the first 4 KiB: not text of any charset."""
    head = raw[:4096]
    if b"\x00" in head:
        return True
    control = sum(1 for byte in head if byte < 9 or 13 < byte < 32)
    return bool(head) and control / len(head) > 0.1


def decode_bytes(payload: bytes, declared: str | None, notes: list[str]) -> str:
    """Decode with the declared charset when it fits, else detect; say what was done in ``notes``."""
    if declared:
        try:
            return payload.decode(declared)
        except (LookupError, UnicodeDecodeError) as error:
            notes.append(f"declared charset {declared} failed ({type(error).__name__})")
    else:
        try:
            return payload.decode("ascii")
        except UnicodeDecodeError:
            notes.append("undeclared 8-bit charset")
    best = charset_normalizer.from_bytes(payload).best()
    if best is not None:
        notes.append(f"charset detected: {best.encoding}")
        return str(best)
    notes.append("charset unknown: decoded as utf-8 with replacement")
    return payload.decode("utf-8", errors="replace")


def header(message: EmailMessage, name: str, notes: list[str]) -> str | None:
    """A decoded header (RFC 2047 words resolved); None when absent, raw text when malformed."""
    try:
        value = message.get(name)
    except Exception as error:  # noqa: BLE001 - any header defect must not lose the message
        notes.append(f"header {name} unparseable ({type(error).__name__})")
        raw = message.get_all(name, failobj=[None])
        value = raw[0] if raw else None
    return " ".join(str(value).split()) if value is not None else None


def part_text(part: EmailMessage, notes: list[str]) -> str:
    payload = part.get_payload(decode=True) or b""
    return decode_bytes(payload, part.get_content_charset(), notes)


def body_text(message: EmailMessage, notes: list[str]) -> str:
    """text/plain when present, else HTML turned into readable text."""
    try:
        body = message.get_body(preferencelist=("plain", "html"))
    except Exception as error:  # noqa: BLE001 - a broken MIME tree falls back to the first text part
        notes.append(f"MIME structure broken ({type(error).__name__})")
        body = None
    if body is None:
        body = next((p for p in message.walk() if p.get_content_maintype() == "text"), None)
    if body is None:
        return ""
    text = part_text(body, notes)
    if body.get_content_subtype() == "html":
        notes.append("html converted to text")
        text = get_text(text)
    return text


def attachment_names(message: EmailMessage) -> list[str]:
    names = []
    for part in message.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        if filename or part.get_content_disposition() == "attachment":
            names.append(str(filename or f"unnamed.{part.get_content_subtype()}"))
    return names


def strip_reply(text: str) -> str:
    """The newest reply without quoted history or signature; the whole text if nothing is left."""
    try:
        replies = _REPLY_PARSER.read(text).replies
    except Exception:  # noqa: BLE001 - a regex failure keeps the full body rather than losing it
        return text
    newest = replies[0].body if replies else ""
    return newest if newest.strip() else text


def parse_date(value: str | None, notes: list[str]) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        notes.append("date unparseable")
        return None
    if parsed.tzinfo is None:
        notes.append("date without timezone: taken as UTC")
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def addresses(value: str | None, hash_addresses: bool) -> list[str]:
    found = [address for _, address in email.utils.getaddresses([value or ""]) if address]
    return [hash_address(a) if hash_addresses else a for a in found]


def parse_email(raw: bytes, input_ref: str, hash_addresses: bool = True) -> Document | Failure:
    """One raw message to a document, or a failure saying why it is not a usable email."""
    if looks_binary(raw):
        return Failure("email", input_ref, "parse", "binary", "binary content, not an RFC-822 message", excerpt(raw))
    notes: list[str] = []
    message = BytesParser(policy=policy.default).parsebytes(raw)
    if not any(key.lower() in _HEADERS_THAT_MAKE_AN_EMAIL for key in message.keys()):
        return Failure("email", input_ref, "parse", "not_email", "no RFC-822 headers found", excerpt(raw))
    subject = header(message, "subject", notes)
    body = body_text(message, notes)
    sender = addresses(header(message, "from", notes), hash_addresses)
    recipients = addresses(", ".join(filter(None, (header(message, n, notes) for n in ("to", "cc")))), hash_addresses)
    message_id = (header(message, "message-id", notes) or "").strip() or None
    reply = strip_reply(body)
    text = f"{subject}\n\n{reply}" if subject else reply
    return new_document(
        "email",
        input_ref,
        text,
        source_id=message_id,
        full_text=body,
        subject=subject,
        author=sender[0] if sender else None,
        recipients=recipients,
        thread_id=(header(message, "in-reply-to", notes) or "").strip() or None,
        attachments=attachment_names(message),
        created_at=parse_date(header(message, "date", notes), notes),
        ingest_notes=notes,
    )


def split_mbox(handle: BinaryIO, name: str) -> Iterator[tuple[str, bytes]]:
    """(input_ref, raw message) for each message of an mbox stream, one message in memory at a time.

    A message starts at a ``From `` envelope line (with a time of day in it) at the top of the
    file or after a blank line, so a body line that happens to start with "From " does not
    split a message. ``>From `` quoting (mboxrd) is undone.
    """
    buffer: list[bytes] = []
    start = 0
    offset = 0
    previous_blank = True
    for line in handle:
        if previous_blank and _ENVELOPE.match(line) and buffer:
            yield f"{name}@{start}", _unquote_from(b"".join(buffer))
            buffer, start = [], offset
        buffer.append(line)
        previous_blank = not line.strip()
        offset += len(line)
    if buffer:
        yield f"{name}@{start}", _unquote_from(b"".join(buffer))


def _unquote_from(raw: bytes) -> bytes:
    return _QUOTED_FROM.sub(rb"\1", raw)


def is_mbox(raw_head: bytes) -> bool:
    """An mbox starts with a ``From `` envelope line (SpamAssassin single messages do too)."""
    return raw_head.startswith(b"From ")
