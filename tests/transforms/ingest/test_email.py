"""Email parsing on real SpamAssassin messages from samples/ and on broken input."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

from tests.conftest import SAMPLES
from transforms.ingest.email import hash_address, parse_email, split_mbox
from transforms.records import Failure

EMAILS = SAMPLES / "email"


def parse(name: str):
    return parse_email((EMAILS / name).read_bytes(), name)


def test_plain_message_has_subject_id_date_and_hashed_sender() -> None:
    document = parse("ham-00001")
    assert document["source"] == "email"
    assert document["subject"] == "Re: New Sequences Window"
    assert document["source_id"] == "<13258.1030015585@munnari.OZ.AU>"
    assert document["created_at"].isoformat() == "2002-08-22T11:26:25+00:00"
    assert document["author"].startswith("sha256:") and "@" not in document["author"]
    assert document["text"].startswith("Re: New Sequences Window\n\n")
    assert "Chris Garrigues" not in document["author"]


def test_sender_hash_is_stable_and_case_insensitive() -> None:
    assert hash_address("Alice@Example.com") == hash_address("alice@example.com ")
    assert hash_address("alice@example.com") != hash_address("bob@example.com")


def test_html_only_spam_becomes_text_without_tags() -> None:
    raw = (EMAILS / "spam-00001").read_bytes()
    assert b"<html" in raw.lower() or b"<HTML" in raw
    document = parse("spam-00001")
    assert "html converted to text" in document["ingest_notes"]
    assert not re.search(r"<\s*/?\s*(html|body|p|div|table|font|br)\b", document["full_text"], re.I)
    assert "Life Insurance" in document["text"]


def test_latin1_message_decodes_without_replacement_characters() -> None:
    raw = (EMAILS / "ham-00007").read_bytes()
    assert b"iso-8859-1" in raw.lower()
    document = parse("ham-00007")
    assert "\ufffd" not in document["full_text"]
    assert len(document["full_text"]) > 200


def test_mbox_splits_into_messages_with_offsets() -> None:
    path = EMAILS / "list-archive.mbox"
    with path.open("rb") as handle:
        messages = list(split_mbox(handle, str(path)))
    assert len(messages) == 3
    offsets = [int(ref.rsplit("@", 1)[1]) for ref, _ in messages]
    assert offsets[0] == 0 and offsets == sorted(offsets)
    raw = path.read_bytes()
    assert all(raw[offset:].startswith(b"From ") for offset in offsets)
    subjects = [parse_email(body, ref)["subject"] for ref, body in messages]
    assert all(subjects) and len(set(subjects)) == 3


def test_body_line_starting_with_from_does_not_split_the_mbox() -> None:
    mbox = (b"From alice@example.com Thu Aug 22 12:36:23 2002\nSubject: one\n\nhello\n\n"
            b"From the desk of the CEO: nothing here splits\n\n"
            b"From bob@example.com Thu Aug 22 13:00:00 2002\nSubject: two\n\n>From quoted\n")
    messages = list(split_mbox(io.BytesIO(mbox), "box"))
    assert [parse_email(raw, ref)["subject"] for ref, raw in messages] == ["one", "two"]
    assert b"From the desk" in messages[0][1]
    assert messages[1][1].endswith(b"\nFrom quoted\n")


def test_rfc2047_subject_and_base64_latin1_body_are_decoded() -> None:
    raw = (b"From: =?iso-8859-1?q?Andr=E9?= <andre@example.fr>\r\nSubject: =?utf-8?b?Q2Fmw6kgY3LDqG1l?=\r\n"
           b"Message-ID: <x@y>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode("Très bon café".encode("latin-1")))
    document = parse_email(raw, "inline")
    assert document["subject"] == "Café crème"
    assert "Très bon café" in document["text"]


def test_undeclared_8bit_body_is_detected_not_mangled() -> None:
    body = "Привет, как дела? Это письмо без указанной кодировки.".encode("koi8-r")
    raw = b"From: a@b.c\nSubject: hi\n\n" + body
    document = parse_email(raw, "inline")
    assert "undeclared 8-bit charset" in document["ingest_notes"]
    assert "\ufffd" not in document["full_text"]


def test_quoted_reply_and_signature_are_stripped_but_kept_in_full_text() -> None:
    raw = (b"From: a@b.c\nSubject: lunch\n\nTuesday works for me.\n\nBest,\nJohn\n--\nJohn Smith | ACME\n\n"
           b"On Mon, Jan 5, 2020 at 10:00 AM Jane <jane@x.com> wrote:\n> Does Tuesday work?\n")
    document = parse_email(raw, "inline")
    assert "Does Tuesday work" not in document["text"]
    assert "Tuesday works for me." in document["text"]
    assert "Does Tuesday work" in document["full_text"]


def test_binary_and_headerless_input_are_failures_with_reasons(tmp_path: Path) -> None:
    binary = parse_email((EMAILS / "forwarded-by-mistake.eml").read_bytes(), "gz")
    assert isinstance(binary, Failure) and binary.error_type == "binary" and binary.stage == "parse"
    headerless = parse_email(b"just some words\nwithout any header\n", "plain")
    assert isinstance(headerless, Failure) and headerless.error_type == "not_email"
    assert headerless.raw_excerpt.startswith("just some words")
