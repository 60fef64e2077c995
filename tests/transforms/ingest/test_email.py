"""Email parsing on real SpamAssassin messages from samples/ and on broken input."""

from __future__ import annotations

import base64
import io
import random
import re
import struct
import time
import zlib
from email import policy
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import SAMPLES
from transforms.clean import clean_document
from transforms.ingest import email as email_ingest
from transforms.ingest.email import (
    detect_charset,
    drop_quoted_lines,
    hash_address,
    is_mbox,
    looks_binary,
    own_text,
    parse_date,
    parse_email,
    split_mbox,
    strip_reply,
)
from transforms.ingest.read import read_path
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


def test_body_lines_with_a_time_after_from_do_not_split_the_mbox() -> None:
    """"From 9:00 to 17:00" after a blank line matched the envelope pattern ("From ", a word, a time of day): the
    message was cut there and its second half became a record of its own, while envelopes are asctime dates."""
    mbox = (b"From MAILER-DAEMON Fri Jul  8 12:08:34 2011\nFrom: shop@example.com\nSubject: opening hours\n\n"
            b"Dear customers,\n\nFrom 9:00 to 17:00 we are open on weekdays.\n\n"
            b"From Monday 10:30 the office moves to Main Street 5.\n\n"
            b"From user@example.com Sat Jan  3 01:05:34 1996\nSubject: two\n\nsecond\n\n"
            b"From 1598765432101234567@xxx Tue Nov 10 09:15:00 +0000 2026\nSubject: three\n\nthird\n\n"
            b"From - Tue Nov 10 2026 09:16:00\nSubject: four\n\nfourth\n")
    messages = [parse_email(raw, ref) for ref, raw in split_mbox(io.BytesIO(mbox), "box")]
    assert [m["subject"] for m in messages] == ["opening hours", "two", "three", "four"]
    assert "From 9:00 to 17:00" in messages[0]["text"] and "From Monday 10:30" in messages[0]["text"]


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


TEXT_AND_CONTROL_BYTES = st.lists(st.sampled_from(b"ab\t\n\r\x0c\x00\x01\x1b\x7f\xff"), max_size=300).map(bytes)


@given(st.binary(max_size=5000) | TEXT_AND_CONTROL_BYTES)
def test_binary_means_nuls_over_one_in_1000_with_other_control_bytes_or_a_tenth_control_bytes_in_the_first_4_kib(
        raw: bytes) -> None:
    head = raw[:4096]
    control = sum(1 for byte in head if byte < 9 or 13 < byte < 32)  # tab, line breaks, FF and CR are text
    nuls = head.count(0)
    assert looks_binary(raw) == ((nuls > max(1, len(head) / 1000) and control - nuls >= nuls)
                                 or (bool(head) and control / len(head) > 0.1))


def test_the_binary_threshold_is_a_tenth_of_the_bytes() -> None:
    assert not looks_binary(b"\x01" * 10 + b"a" * 90 + b"\t\n\r" * 30)
    assert looks_binary(b"\x01" * 11 + b"a" * 89)
    assert not looks_binary(b"a" * 4096 + b"\x01" * 4096)  # only the first 4 KiB are read
    assert not looks_binary(b"a" * 4000 + b"\x00\x01" * 4) and looks_binary(b"a" * 4000 + b"\x00\x01" * 5)
    assert not looks_binary(b"a" * 4000 + b"\x00" * 5)  # NULs alone, no other control byte: an export's, in text


def test_binary_and_headerless_input_are_failures_with_reasons(tmp_path: Path) -> None:
    binary = parse_email((EMAILS / "forwarded-by-mistake.eml").read_bytes(), "gz")
    assert isinstance(binary, Failure) and binary.error_type == "binary" and binary.stage == "parse"
    headerless = parse_email(b"just some words\nwithout any header\n", "plain")
    assert isinstance(headerless, Failure) and headerless.error_type == "not_email"
    assert headerless.raw_excerpt.startswith("just some words")


def corpus_message(shared_data: Path, name: str, hash_addresses: bool = False):
    """A real SpamAssassin message, chosen for the MIME feature its test names."""
    return parse_email((shared_data / "email" / "spamassassin" / name).read_bytes(), name, hash_addresses)


def test_multipart_alternative_reads_the_plain_part(shared_data: Path) -> None:
    document = corpus_message(shared_data, "spam/00124.db848e36f1b4c2705cbc16ef33a302d4")
    assert "html converted to text" not in document["ingest_notes"]
    assert "Slim Patch - Weight Loss Patches\n<http://www.adclick.ws/p.cfm?o=249&s=pk007>" in document["full_text"]
    assert document["subject"] == "Guaranteed to lose 10-12 lbs in 30 days with Slim Patch 10.24"


def test_html_only_message_has_text_and_no_tags(shared_data: Path) -> None:
    document = corpus_message(shared_data, "spam/00288.8c8bc71976c3b67d900ebd8eeab8a0f5")
    assert "html converted to text" in document["ingest_notes"]
    assert document["full_text"].startswith("Click Here")
    assert "<" not in document["full_text"]


def test_base64_latin1_body_and_date_converted_to_utc(shared_data: Path) -> None:
    raw = (shared_data / "email" / "spamassassin" / "spam/00128.721b6b20d5834d490662e2ae8c5c0684").read_bytes()
    assert b'charset="iso-8859-1"\nContent-Transfer-Encoding: base64' in raw and b"+0100" in raw
    document = corpus_message(shared_data, "spam/00128.721b6b20d5834d490662e2ae8c5c0684")
    assert "We are looking for individuals who\nwant to work from home." in document["text"]
    assert document["created_at"].isoformat() == "2002-08-28T02:04:00+00:00"


def test_rfc2047_subjects_in_big5_and_gb2312_are_decoded(shared_data: Path) -> None:
    assert corpus_message(shared_data, "spam/00329.af4af411fb1268d1461b29fa2d2145a3")["subject"] == "拾金不昧~~別傻了~~"
    chinese = corpus_message(shared_data, "spam/00397.1a99f98a5b996f99f3661e9609782932")
    assert chinese["subject"] == "50元获得一亿五千万EMAIL地址的机会"
    assert chinese["text"].startswith("50元获得一亿五千万EMAIL地址的机会\n\n您好")


def test_raw_8bit_subject_is_decoded_with_the_message_charset(shared_data: Path) -> None:
    turkish = corpus_message(shared_data, "spam/00244.5cac9708afd7f9f00e9bf64eeb127f0a")
    assert turkish["subject"] == "[WM] GREEN CARD CEKİLİSİ KACIRMAYIN"
    assert "header subject: decoded as windows-1254, the message's declared charset" in turkish["ingest_notes"]


def test_bottom_posted_reply_drops_quotes_and_signature(shared_data: Path) -> None:
    document = corpus_message(shared_data, "ham/00203.b5773afbae12d0d79df74b32b2f46697")
    assert document["text"] == ("Re: [ILUG] find the biggest file\n\n\n"
                                "You might want to put a '-type f' on that find.\n\nPaul.")
    assert "Philip Reynolds wrote:\n>> Does anyone know how to list the biggest file in my\n>>" in document["full_text"]
    assert "Irish Linux Users' Group" in document["full_text"]
    supercite = corpus_message(shared_data, "ham/01700.03a577fc11e0a5121098e0dc83c97d6c")
    assert "Skip> I'll try" not in supercite["text"] and "Which didn't help." in supercite["text"]
    below_a_quoted_attribution = corpus_message(shared_data, "ham/01193.5b3aa2609dfb823e754b1407d451f97f")
    assert " ".join(below_a_quoted_attribution["text"].split()) == (
        "Re: [gst-devel] Red Hat 8.0 Looks like a problem with the avifile you've rebuilt... I've been unable to "
        "recompile successfully the latest version on 8.0 :-/ Matthias")
    below_a_quoted_header = corpus_message(shared_data, "ham/00945.e6eb589db145071f678c95f19b162b9b")
    assert " ".join(below_a_quoted_header["text"].split()) == (
        "Re: New Sequences Window I'll fix this in CVS this afternoon.")


def test_a_thread_shares_the_root_message_id(shared_data: Path) -> None:
    names = ["ham/01693.5f6c04f93ace9da3b5f9e0906ba608c2", "ham/01696.70dc9da58ada190c2c66f34986636594",
             "ham/01697.75f57c5146462b574d13349e5c0c4bcc", "ham/01700.03a577fc11e0a5121098e0dc83c97d6c"]
    root, *replies = [corpus_message(shared_data, name) for name in names]
    assert root["in_reply_to"] is None
    assert {d["thread_id"] for d in (root, *replies)} == {root["source_id"]}
    assert [d["in_reply_to"] for d in replies] == [root["source_id"], replies[0]["source_id"],
                                                    replies[1]["source_id"]]


def test_to_and_cc_recipients_in_clear_or_hashed(shared_data: Path) -> None:
    clear = corpus_message(shared_data, "ham/00046.c8491e68aa5652272d6511bb7d848d37")
    assert clear["author"] == "quinlan@pathname.com"
    assert clear["recipients"] == ["zzzz@spamassassin.taint.org", "craig@deersoft.com", "quinlan@pathname.com"]
    hashed = corpus_message(shared_data, "ham/00046.c8491e68aa5652272d6511bb7d848d37", hash_addresses=True)
    assert hashed["recipients"] == [hash_address(a) for a in clear["recipients"]]
    undisclosed = corpus_message(shared_data, "spam/00329.af4af411fb1268d1461b29fa2d2145a3")
    assert undisclosed["recipients"] == []


def test_attachment_names_and_attached_emails(shared_data: Path) -> None:
    assert corpus_message(shared_data, "ham/01096.0ecf28b2697d77f7039d82f8838bcf8d")["attachments"] == [
        "signature.asc"]
    inner = b"From: c@d.e\nSubject: inner\nContent-Type: multipart/mixed; boundary=in\n\n--in\n" \
            b"Content-Type: text/plain\n\nhi\n--in\nContent-Type: image/png\nContent-Disposition: attachment; " \
            b"filename=inner.png\n\nxx\n--in--\n"
    raw = (b"From: a@b.c\nSubject: fwd\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=out\n\n--out\n"
           b"Content-Type: text/plain\n\nsee both attached\n--out\nContent-Type: application/pdf\n"
           b"Content-Disposition: attachment; filename*=utf-8''R%C3%A9sum%C3%A9.pdf\n\n%PDF\n--out\n"
           b"Content-Type: message/rfc822\n\n" + inner + b"\n--out--\n")
    document = parse_email(raw, "inline")
    assert document["attachments"] == ["Résumé.pdf", "message.eml"]
    assert document["text"] == "fwd\n\nsee both attached"


def test_missing_date_falls_back_to_the_received_stamp() -> None:
    raw = (b"Received: from mx.example.com by mail.example.org; Thu, 22 Aug 2002 12:36:23 +0200\n"
           b"From: a@b.c\nSubject: no date\n\nbody text\n")
    document = parse_email(raw, "inline")
    assert document["created_at"].isoformat() == "2002-08-22T10:36:23+00:00"
    assert "date taken from the Received header" in document["ingest_notes"]
    assert parse_email(b"From: a@b.c\nDate: Thu, 22 Aug 2002 12:36:23 -0000\n\nx", "z")["created_at"].isoformat() \
        == "2002-08-22T12:36:23+00:00"


def test_lone_surrogates_from_utf7_never_reach_the_document() -> None:
    raw = b"From: a@b.c\nSubject: x\nContent-Type: text/plain; charset=utf-7\n\n+2AA- hello there"
    document = parse_email(raw, "inline")
    assert document["full_text"] == "\ufffd hello there"
    document["full_text"].encode("utf-8")


def test_undeclared_western_text_is_read_as_cp1252_not_cp1250(shared_data: Path) -> None:
    """The detector ranks cp1250 level with cp1252 on French; cp1250 reads ``à`` as ``ŕ``."""
    assert detect_charset("Crème brûlée, voilà".encode("cp1252")) == "cp1252"
    assert detect_charset("Zażółć gęślą jaźń, dziękuję".encode("cp1250")) == "cp1250"
    french = corpus_message(shared_data, "ham/00599.94c013ab7037d45045aafbac3389bef0")
    assert "jusqu'à ma mort" in french["text"] and "ŕ" not in french["text"]


def test_short_8bit_header_is_never_read_as_utf16() -> None:
    """Four bytes of Latin-1 are valid UTF-16 too; mail charsets are ASCII-compatible."""
    assert detect_charset(b"Caf\xe9") == "cp1252"
    raw = b"From: a@b.c\nSubject: Caf\xe9\nContent-Type: text/plain; charset=unknown-8bit\n\nCr\xe8me br\xfbl\xe9e\n"
    document = parse_email(raw, "inline")
    assert document["subject"] == "Café" and document["text"].endswith("Crème brûlée")


def test_raw_8bit_subjects_are_read_with_the_body(shared_data: Path) -> None:
    """Undeclared 8-bit subjects in Thai, Big5 and Turkish spam, once shown as half-width katakana."""
    subjects = {name: corpus_message(shared_data, f"spam/{name}")["subject"] for name in (
        "00072.d519a73b92f487519c2bc5ba45f5eb2c", "00243.c6e70273fe1cf9e56e26bb6bbeef415d",
        "00336.92409253178027f58e2c072a7e82791e")}
    assert list(subjects.values()) == ["future business สำหรับคุณ!", "[ILUG] 純商業辦公室出租", "Yeni sürümde"]


def test_base64_body_with_a_list_footer_is_decoded(shared_data: Path) -> None:
    """The list server appended its plain-text footer to a base64 body; the email package gave up on it."""
    document = corpus_message(shared_data, "spam/00313.fab744bfd5a128fca39b69df9811c086")
    assert "Degerli SMSTR kullanicimiz" in document["text"] and "PGh0bWw" not in document["full_text"]
    assert "plain text after the base64 body (a list footer) kept as text" in document["ingest_notes"]


def test_a_megabyte_header_is_cut_before_parsing() -> None:
    """The email package parses a header in time quadratic in its length: 1 MB took 32 s of one core."""
    raw = b"From: a@b.c\nSubject: " + b"win " * 250_000 + b"\n\nbody\n"
    document = parse_email(raw, "inline")
    assert 65_000 < len(document["subject"]) <= 65_536 and document["full_text"].strip() == "body"
    assert "header subject cut at 65,536 of 1,000,000 characters" in document["ingest_notes"]


ORDER_HEADERS = (b"From: Claire Martin <claire@example.fr>\nTo: support@shop.example\nSubject: Commande 4411\n"
                 b"Date: Tue, 3 Mar 2026 09:12:00 +0100\nMessage-ID: <4411@example.fr>\nMIME-Version: 1.0\n")


def test_declared_utf8_with_a_stray_byte_stays_utf8() -> None:
    """One bad byte made the whole body fail strict UTF-8, and detection read it as another charset."""
    body = "Bonjour,\nje suis très déçu: la pièce reçue est cassée.\n".encode() + b"\xff"
    document = parse_email(ORDER_HEADERS + b"Content-Type: text/plain; charset=utf-8\n\n" + body, "x.eml")
    assert document["full_text"] == "Bonjour,\nje suis très déçu: la pièce reçue est cassée.\n\ufffd"
    assert document["ingest_notes"] == ["declared charset utf-8 kept: 1 undecodable byte sequence replaced"]


def test_a_broken_quoted_printable_escape_keeps_the_declared_utf8() -> None:
    body = (b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
            b"Je suis tr=C3=A8s d=C3=A9=C3=A7u =E2=80=94 la pi=C3=A8ce re=C3=A7ue est cass=C3=A9e =E2=80=9\n"
            b"Merci de me rembourser.\n")
    document = parse_email(ORDER_HEADERS + body, "x.eml")
    assert document["full_text"].startswith("Je suis très déçu — la pièce reçue est cassée \ufffd")
    assert document["full_text"].count("\ufffd") == 1 and "Merci de me rembourser." in document["full_text"]
    assert "declared charset utf-8 kept: 1 undecodable byte sequence replaced" in document["ingest_notes"]


def test_a_wrong_declared_charset_still_falls_back_to_detection() -> None:
    """cp1252 text declared UTF-8 fails on every accent; one accent and no valid UTF-8 is no evidence either."""
    wrong = "Le colis est arrivé cassé, je suis très déçu. Merci de me rembourser.\n"
    utf8 = ORDER_HEADERS + b"Content-Type: text/plain; charset=utf-8\n\n"
    document = parse_email(utf8 + wrong.encode("cp1252"), "x.eml")
    assert document["full_text"] == wrong
    assert document["ingest_notes"] == ["declared charset utf-8 failed (UnicodeDecodeError)",
                                        "charset detected: cp1252"]
    single = parse_email(utf8 + b"Thanks for the caf\xe9 voucher.\n", "x.eml")
    assert single["full_text"] == "Thanks for the café voucher.\n"
    ascii_declared = parse_email(ORDER_HEADERS + b"Content-Type: text/plain; charset=us-ascii\n\nThe president\x92s "
                                 b"speech was long, and the order never came.\n", "x.eml")
    assert ascii_declared["full_text"].startswith("The president’s speech")


FRENCH = "Le colis est arrivé cassé, je suis très déçu… Merci de me rembourser."


def test_undeclared_french_cp1252_is_not_read_as_iso8859_10() -> None:
    """iso8859_10 scored less chaos (it takes ``…`` for an unprinted control) and won: ``trčs déįu``."""
    assert detect_charset(FRENCH.encode("cp1252")) == "cp1252"
    for content_type in (b"", b'Content-Type: text/plain; charset="x-unknown"\n'):
        document = parse_email(ORDER_HEADERS + content_type + b"\n" + FRENCH.encode("cp1252"), "x.eml")
        assert document["full_text"] == FRENCH
        assert "charset detected: cp1252" in document["ingest_notes"]


def test_western_european_cp1252_text_is_read_as_cp1252() -> None:
    """Italian was read as Vietnamese cp1258 (``così`` with a combining accent); the others must stay right."""
    texts = ["Die Straße war gesperrt, die Lieferung kam zu spät. Schöne Grüße, Jürgen Müller",
             "Das Gerät ist kaputt – ich möchte mein Geld zurück. Grüße aus München",
             "¿Dónde está mi pedido? El señor de la tienda no contestó. ¡Qué desastre! Atentamente, Iñaki",
             "Perché il pacco è arrivato così tardi? Non è possibile, è già la terza volta.",
             "Não recebi o produto… A atenção do serviço foi péssima – vocês vão devolver o dinheiro?"]
    assert [detect_charset(text.encode("cp1252")) for text in texts] == ["cp1252"] * len(texts)


def test_near_ties_do_not_override_central_european_or_japanese() -> None:
    """A code page that misreads the letters scores well behind; multi-byte charsets are never near-tied."""
    polish = "Zażółć gęślą jaźń, dziękuję za szybką odpowiedź. Przesyłka dotarła uszkodzona."
    assert detect_charset(polish.encode("iso8859_2")) == "iso8859_2"
    japanese = "注文した商品がまだ届きません。至急確認してください。よろしくお願いします。"
    assert detect_charset(japanese.encode("euc_jp")) == "euc_jp"
    assert detect_charset("Спасибо за быструю доставку, всё отлично работает.".encode("cp1251")) == "cp1251"


def test_utf16_declared_on_an_ascii_body_is_read_as_ascii() -> None:
    """Any even number of bytes decodes as UTF-16: ``Hello, my order...`` read as ``效汬...``."""
    body = b"Hello, my order never arrived and nobody answers.\n"
    document = parse_email(ORDER_HEADERS + b"Content-Type: text/plain; charset=utf-16\n\n" + body, "x.eml")
    assert document["full_text"] == "Hello, my order never arrived and nobody answers.\n"
    assert document["ingest_notes"] == ["declared charset utf-16 does not fit an ASCII body"]


def test_real_utf16_bodies_still_decode_as_utf16() -> None:
    """With a BOM, or without one but with the NUL bytes Latin text has in UTF-16."""
    for charset, payload, text in (
            ("utf-16", "Grüße aus Köln, die Lieferung fehlt.".encode("utf-16"), "Grüße aus Köln, die Lieferung fehlt."),
            ("utf-16-le", "Hello, my order never arrived.".encode("utf-16-le"), "Hello, my order never arrived.")):
        raw = (ORDER_HEADERS + f"Content-Type: text/plain; charset={charset}\n".encode()
               + b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(payload))
        document = parse_email(raw, "x.eml")
        assert document["full_text"] == text and document["ingest_notes"] == []


def test_a_stray_nul_in_the_body_does_not_reject_the_email() -> None:
    """Any NUL in the first 4 KiB made a valid email a ``parse/binary`` dead letter."""
    raw = ORDER_HEADERS + b"Content-Type: text/plain\n\nThe parcel arrived broken.\x00\nPlease refund me.\n"
    document = parse_email(raw, "x.eml")
    assert not isinstance(document, Failure)
    assert document["subject"] == "Commande 4411"
    assert document["full_text"] == "The parcel arrived broken.\x00\nPlease refund me.\n"


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes((x * y) % 256 for x in range(width * 3)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_real_binary_files_are_still_rejected() -> None:
    executable = Path("/bin/ls").read_bytes()[:4096]
    image = png(64, 64)
    assert looks_binary(executable) and looks_binary(image)
    for raw in (executable, image, ORDER_HEADERS + b"\n" + image):
        outcome = parse_email(raw, "x.eml")
        assert isinstance(outcome, Failure) and outcome.error_type == "binary"


@pytest.mark.parametrize("body", [
    "Hi,\n\nI tried your fix.\nThanks, but it did not help at all. The app still crashes and I am losing data.\n"
    "Please escalate.",
    "Hello,\nI got your reply.\nThank you, but no: the refund never arrived and I am still waiting after 30 days.",
    "Balance check:\n-50 EUR was taken from my account without reason.\nPlease refund immediately, I am furious.",
    "Three problems with my order:\n- the box was crushed\n- the manual is missing\n- wrong colour",
])
def test_a_sentence_or_a_list_is_not_taken_for_a_signature(body: str) -> None:
    """The reply parser dropped the rest of the body at a line starting "Thanks, but" or "- ": the sentiment of
    what was left flipped to positive."""
    assert strip_reply(body + "\n\nBest regards,\nAnna\n") == body
    assert strip_reply(body) == body


@pytest.mark.parametrize("closing", ["\n\nThanks,\nBob", "\n\n--\nJohn Doe\nACME Corp", "\nSent from my iPhone"])
def test_sign_offs_and_quoted_history_are_still_stripped(closing: str) -> None:
    text = "Great, it works now." + closing + "\n\nOn Tue, 10 Nov 2026 at 09:15, Support <s@acme.com> wrote:\n> fixed"
    assert strip_reply(text) == "Great, it works now."


@pytest.mark.parametrize(("body", "expected"), [
    ("Hi,\n" + "\n" * 20_000 + "The app crashes.", "Hi,\n" + "\n" * 20_000 + "The app crashes."),
    ("Hi,\n" + "\n" * 20_000 + "The app crashes.\nSent from my desk", "Hi,\n" + "\n" * 20_000 + "The app crashes."),
    ("Crashes.\n" + "> --\n> Thanks,\n" * 10_000 + "Still broken.",
     "Crashes.\n" + "> --\n> Thanks,\n" * 10_000 + "Still broken."),
    ("Crashes.\n" + "Thanks, but it did not help at all.\n" * 5_000,
     ("Crashes.\n" + "Thanks, but it did not help at all.\n" * 5_000).strip()),
])
def test_reply_stripping_takes_linear_time_on_blank_runs_and_rejected_sign_offs(body: str, expected: str) -> None:
    """The signature pattern read the rest of the body at every quoted or long sign-off line, and it and the app
    tagline pattern scanned a run of blank lines to its end from each of its positions: bodies like these took
    from 30 seconds to hours, in a worker that then held up the run."""
    started = time.perf_counter()
    assert strip_reply(body) == expected
    assert time.perf_counter() - started < 2

_ANSWERED = "On Mon, 1 Jan 2020 a@b.c wrote:\n> Is it fixed?\nNo, it still crashes.\n"
_QUOTED = "On Mon, 1 Jan 2020 a@b.c wrote:\n> Is it fixed?\n"


@pytest.mark.parametrize(("body", "expected"), [
    ("Still broken.\n" + _ANSWERED * 2_500,
     ("Still broken.\n" + "\n> Is it fixed?\nNo, it still crashes.\n" * 2_500).strip()),
    ("Still broken.\n" + _QUOTED * 3_000 + "And now?", "Still broken.\n" + "\n> Is it fixed?\n" * 3_000 + "And now?"),
    ("Great.\n" + ("_" * 40 + "\n") * 4_500 + "--", "Great.\n" + ("_" * 40 + "\n") * 4_500 + "--"),
    ("On Monday" + " it crashed again" * 1_800 + "\nJoe wrote:",
     "On Monday" + " it crashed again" * 1_800 + "\nJoe wrote:"),
    ("Am Montag" + " schrieb er nicht" * 200, "Am Montag" + " schrieb er nicht" * 200),
    ("Le " * 40_000 + "a \u00e9crit", "Le " * 40_000 + "a \u00e9crit"),
])
def test_reply_stripping_takes_linear_time_on_many_reply_headers_and_long_lines(body: str, expected: str) -> None:
    """The text below each reply header was built and read again down to the next cut, which an answered header
    is not (18 s for the first body, a minute at 200,000 characters); the divider lines that end a reply were
    looked for from every line; and the parser's attribution patterns try every split of a line opening with
    "On", "Am" or "Le" into their lazy parts (11 to 33 s for the last three bodies, the "Am" one in the cube of
    its length)."""
    started = time.perf_counter()
    assert strip_reply(body) == expected
    assert time.perf_counter() - started < 2


def test_dropping_quotes_takes_linear_time_on_many_attribution_lines() -> None:
    """Each "X said:" line looked for a quote below it in a copy of every line after it: four times the lines took
    sixteen times as long (3.5 s for 196,000 characters)."""

    def seconds(body: str) -> float:
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            assert drop_quoted_lines(body) == body
            timings.append(time.perf_counter() - started)
        return min(timings)

    small, large = ("Hi.\n" + "said:\n\n\n\n\n" * count for count in (4_900, 19_600))
    assert seconds(large) < 10 * seconds(small)



@pytest.mark.parametrize(("text", "expected"), [
    ("Great.\n\n\n\n--\nJohn Doe", "Great."),
    ("Great.\n\n\n\n" + "_" * 40 + "\nList footer", "Great.\n\nList footer"),
    ("Great.\n\n\nSent with Proton Mail secure email.", "Great."),
    ("Hi\n\n\n\nSent from my iPhone\n\n\nOn Mon, 1 Jan 2020 a@b.c wrote:\n> x", "Hi"),
    ("Great.\n> Thanks,\n> Bob\nMy answer.\n\n\nBest regards,\nAnna", "Great.\n> Thanks,\n> Bob\nMy answer."),
    ("Thanks, but no.\n--\nJohn", "Thanks, but no."),
])
def test_signatures_after_blank_runs_are_still_stripped(text: str, expected: str) -> None:
    assert strip_reply(text) == expected


def test_reply_stripping_builds_no_reply_parser_per_email(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each email built the reply parser, whose patterns depend only on the languages, and had it normalise a
    copy of the body that nothing read; the patterns are now built once, at import."""

    def no_parser(*args: object, **kwargs: object) -> None:
        raise AssertionError("a reply parser was built for one email")

    monkeypatch.setattr(email_ingest, "ReplyThread", no_parser)
    text = ("Tuesday works for me.\n\nThanks,\nBob\n\n"
            "On Tue, 10 Nov 2026 at 09:15, Support <s@acme.com> wrote:\n> Which day suits you?")
    assert strip_reply(text) == "Tuesday works for me."


@pytest.mark.parametrize("history", [
    "On Tue, Nov 10, 2026 at 9:15 AM Support <s@acme.com> wrote:",
    "> On Tue, Nov 10, 2026, Support wrote:",
    "Am Di., 10. Nov. 2026 um 09:15 Uhr schrieb Support <s@acme.com>:",
    "Le mar. 10 nov. 2026 à 09:15, Support <s@acme.com> a écrit :",
    "Il giorno mar 10 nov 2026 alle ore 09:15 Support <s@acme.com> ha scritto:",
    "Op 10-11-2026 09:15, Support <s@acme.com> schreef:",
    "From: Support <s@acme.com>\nSent: Tuesday, November 10, 2026 9:15 AM\nTo: Anna",
    "*From:* Support\n*Sent:* Tuesday\n*To:* Anna",
    "> From: Support\n> Date: Tue, 10 Nov 2026",
    "Von: Support\nGesendet: Dienstag, 10. November 2026\nAn: Anna",
    "De : Support\nEnvoyé : mardi 10 novembre 2026\nÀ : Anna",
    "De: Support\nEnviado: martes\nPara: Anna\nAsunto: Pedido",
    "Da: Support\nInviato: martedì\nA: Anna\nOggetto: Ordine",
    "Van: Support\nVerzonden: dinsdag\nAan: Anna\nOnderwerp: Bestelling",
    "-----Original Message-----",
    "----- ORIGINAL MESSAGE -----",
])
def test_every_reply_header_passes_the_quick_check_that_skips_the_parsers_pattern(history: str) -> None:
    """Bodies the quick check rejects skip the reply parser's header pattern (most of the stripping's time), so
    every header that pattern finds must pass the check, in each language the parser knows."""
    text = f"Thanks, that fixed it.\n\n{history}\n> old text"
    assert email_ingest._REPLY_HEADER.search(text)
    assert email_ingest._REPLY_HEADER_HINT.search(text)


def test_bodies_without_reply_headers_fail_the_quick_check() -> None:
    assert not email_ingest._REPLY_HEADER_HINT.search(
        "The parcel arrived broken: the box was crushed.\nPlease send a new one by Friday, or refund me.")


REPLY_HISTORIES = (
    "\n\nOn Tue, Nov 10, 2026 at 9:15 AM Support <s@acme.com> wrote:\n> We are sorry to hear that.",
    "\n\nFrom: Support <s@acme.com>\nSent: Tuesday, November 10, 2026 9:15 AM\nTo: Anna <anna@example.com>\n"
    "Subject: RE: Order 1234\n\nWe are sorry to hear that.",
    "\n\nAm Di., 10. Nov. 2026 um 09:15 Uhr schrieb Support <s@acme.com>:\n> Wir bedauern das sehr.",
)


@pytest.mark.parametrize("body", [
    "Hi Sarah,\n\nhere is the plan for the offsite:\nDate: Friday works for me\nTo: the whole team, bring laptops\n\n"
    "The room booking tool still fails with error 500 and I am fed up with it.",
    "Hello,\n\nOn your website you wrote:\nDelivery within 2 working days.\nIt took three weeks and nobody answers "
    "my calls. I want my money back.",
    "Sehr geehrte Damen und Herren,\n\nam Montag schrieb ich Ihnen:\nDie Lieferung kam beschädigt an.\n"
    "Bis heute habe ich keine Antwort erhalten. Ich erwarte eine Erstattung.",
])
def test_the_senders_own_header_like_lines_do_not_cut_the_reply(body: str) -> None:
    """The reply parser took two lines starting "Date:" and "To:", or any "On ... wrote:" / "Am ... schrieb ...:"
    line, for the header of quoted history and dropped everything after it: the complaint was lost."""
    assert strip_reply(body) == body
    for history in REPLY_HISTORIES:
        assert strip_reply(body + history) == body


@pytest.mark.parametrize("session", [
    "mysql> SELECT count(*) FROM orders WHERE created > '2026-11-09';\n+----------+\n| count(*) |\n+----------+\n"
    "|        0 |\n+----------+",
    "sqlite> SELECT id, status FROM jobs WHERE status = 'failed';\n17|failed",
    "shop=> SELECT count(*) FROM orders;\n count\n-------\n     0\nshop=# \\dt orders",
    "irb> Order.where(status: 'paid').count\n=> 0",
    "ftp> put invoice-4711.pdf\n553 Could not create file.",
    "gdb> bt\n#0  0x00007f3a2c in export_orders () at export.c:212",
])
def test_pasted_prompt_lines_are_not_taken_for_supercite_quotes(session: str) -> None:
    """``mysql> SELECT ...`` looks like Supercite's ``Name> text`` and was dropped as a quote: the command the
    customer asked about was lost. Supercite quotes are still dropped."""
    body = f"Hi,\n\nthe export shows no orders since Monday:\n\n{session}\n\nPlease check, we are losing sales."
    assert drop_quoted_lines(body) == body
    assert drop_quoted_lines("John> Did you run the nightly export?\n" + body) == body


def newest_words(body: str) -> str:
    """The sender's own words as ingest keeps them, blank lines and line breaks collapsed."""
    return " ".join(drop_quoted_lines(strip_reply(body)).split())


@pytest.mark.parametrize(("body", "own"), [
    ("Hi Joe,\n\nOn Mon, Aug 5, 2002 at 10:01 AM, Joe Smith <joe@example.com> wrote:\n> Did the parcel arrive?\n"
     "> It was sent on Friday.\n\nNo, it never arrived and nobody answers the phone.\n\nRegards,\nAnn\n",
     "Hi Joe, No, it never arrived and nobody answers the phone."),
    ("On Mon, Aug 5, 2002 at 10:01 AM, Joe Smith <joe@example.com> wrote:\n> Did the parcel arrive?\n\n"
     "No, it never arrived.\n\n> On Sun, Aug 4, 2002, Ann Lee <ann@example.com> wrote:\n>> I ordered it on July 1.\n"
     "> Did you call the depot?\n\nYes, twice, and nobody answers.\n",
     "No, it never arrived. Yes, twice, and nobody answers."),
    ("On Tue, 6 Aug 2002, Joe Smith wrote:\n> On Mon, 5 Aug 2002, Ann Lee wrote:\n>> The export fails every night.\n"
     "> Which version?\n>\n> Thanks,\n> --\n> Joe\n\n2.4.1, on Debian. It still crashes.\n\n-- \nAnn Lee\n",
     "2.4.1, on Debian. It still crashes."),
    ("Joe,\n\nOn Mon, Aug 5, 2002 at 10:01 AM, Joe Smith\n<joe@example.com> wrote:\n> Did the parcel arrive?\n\n"
     "No, it never did.\n", "Joe, No, it never did."),
    ("Hallo Joe,\n\nAm Mo., 5. Aug. 2002 um 10:01 Uhr schrieb Joe Smith <joe@example.com>:\n"
     "> Ist das Paket angekommen?\n\nNein, es ist nie angekommen.\n", "Hallo Joe, Nein, es ist nie angekommen."),
])
def test_bottom_posted_and_interleaved_replies_keep_the_senders_words(body: str, own: str) -> None:
    """The text was cut at the first "On ... wrote:" line, so a reply written below or between the quotes lost
    every answer: "Hi Joe," was all that was left of a complaint. The quotes go, the answers stay."""
    assert newest_words(body) == own


def test_the_wrapped_tails_of_quoted_lines_are_dropped_with_the_quotes() -> None:
    """A mailer that re-wraps quoted text spills a line's last words onto an unquoted line ("> ... glaciers" /
    "are" / "> melting ..."): those words reached the text as if the sender had written them (181 such lines in 62
    SpamAssassin ham messages). A short answer between two quotes is no tail and stays."""
    body = ("Ann Lee wrote:\n> I don't think it matters much; you would also need to explain why, worldwide, glaciers\n"
            "are\n> melting faster than they have previously.\n\nThey are, and the data says so.\n\n"
            "> Can you send the figures by Tuesday?\nYes.\n> And the sources?\nSure, all of them.\n")
    assert newest_words(body) == "They are, and the data says so. Yes. Sure, all of them."


@pytest.mark.parametrize("history", [
    "\n\nOn Mon, Aug 5, 2002 at 10:01 AM, Joe Smith <joe@example.com> wrote:\n> Does Tuesday work?\n> Joe\n",
    "\n\nOn Mon, Aug 5, 2002 at 10:01 AM, Joe Smith <joe@example.com> wrote:\n> Does Tuesday work?\n\n-- \n"
    "Ann Lee | ACME\n",
    "\n\nOn Mon, Aug 5, 2002 at 10:01 AM, Joe Smith <joe@example.com> wrote:\n> Does Tuesday work?\n\n"
    "-----Original Message-----\nFrom: Ann Lee <ann@example.com>\nSent: Monday, August 5, 2002 9:00 AM\n"
    "To: Joe Smith\nSubject: meeting\n\nCan we meet next week?\n",
    "\n\nFrom: Joe Smith <joe@example.com>\nSent: Monday, August 5, 2002 10:01 AM\nTo: Ann Lee\n"
    "Subject: meeting\n\n> Can we meet next week?\nDoes Tuesday work?\n",
])
def test_top_posted_replies_are_still_cut_at_the_history(history: str) -> None:
    """Quoted history followed by nothing but a signature, another header or a separator is history: cut there."""
    assert strip_reply("Tuesday works for me." + history) == "Tuesday works for me."


def test_a_python_session_is_not_taken_for_a_triple_quote() -> None:
    """``>>> json.loads(line)`` was dropped as a third-level quote. In a message with no other quoting and no
    attribution the prompt lines are the sender's; a real ``>>>`` quote under an attribution still goes."""
    body = ("Hi,\n\nthe importer fails on every line:\n\n>>> import json\n>>> json.loads(line)\n"
            "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)\n\nAny idea?")
    assert drop_quoted_lines(body) == body
    assert drop_quoted_lines("Joe wrote:\n>>> Did the import work?\nNo, it crashed.") == "No, it crashed."
    assert drop_quoted_lines(">> Did the import work?\n>>> Which file?\nNo, it crashed.") == "No, it crashed."


def mime(build) -> bytes:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "c@example.com", "support@acme.com", "Order 1234"
    message["Date"], message["Message-ID"] = "Tue, 10 Nov 2026 09:15:00 +0000", "<m1@example.com>"
    build(message)
    return message.as_bytes()


def test_attachments_and_attached_emails_are_not_the_messages_text() -> None:
    """A text attachment, an inline log with a file name, a calendar file or a forwarded .eml became ``text``."""
    def html_and_inline_log(message) -> None:
        message.set_content("<p>The app <b>crashes</b> on start, please help.</p>", subtype="html")
        message.add_attachment("Traceback: NullPointerException at line 42", filename="crash.log",
                               disposition="inline")
    def only_attachments(message) -> None:
        message.make_mixed()
        message.add_attachment("meeting notes: budget approved", filename="notes.txt")
    labeled = parse_email(mime(html_and_inline_log), "a.eml")
    assert "crashes on start" in labeled["full_text"] and "NullPointer" not in labeled["full_text"]
    subject_only = parse_email(mime(only_attachments), "b.eml")
    assert not (subject_only["full_text"] or "").strip() and subject_only["text"].strip() == "Order 1234"
    assert "notes.txt" in subject_only["attachments"]


def test_a_forwarded_email_attached_is_not_read_as_the_body() -> None:
    from email import message_from_bytes
    from email import policy as email_policy

    inner = message_from_bytes(mime(lambda m: m.set_content("words of someone else")), policy=email_policy.default)
    def forward(message) -> None:
        message.set_content("See below, the customer is angry.")
        message.add_attachment(inner)
    labeled = parse_email(mime(forward), "f.eml")
    assert labeled["full_text"].strip() == "See below, the customer is angry."


def test_a_blank_plain_alternative_falls_back_to_the_html_one() -> None:
    def alternative(message) -> None:
        message.set_content("   \n")
        message.add_alternative("<p>Your parcel was <b>delivered damaged</b>.</p>", subtype="html")
    labeled = parse_email(mime(alternative), "alt.eml")
    assert "delivered damaged" in labeled["text"] and "html converted to text" in labeled["ingest_notes"]


def test_a_body_split_around_an_image_keeps_every_text_part() -> None:
    """Apple Mail sends text, image, text: only the first part was kept, the complaint after the image lost."""
    def split(message) -> None:
        message.set_content("Here is a photo of the box:")
        message.add_attachment(b"\x89PNG\r\n\x1a\n" + bytes(64), maintype="image", subtype="png",
                               disposition="inline")
        message.add_attachment("It arrived completely crushed. I want a full refund.", disposition="inline")
    labeled = parse_email(mime(split), "split.eml")
    assert "photo of the box" in labeled["full_text"] and "full refund" in labeled["full_text"]


def test_a_root_whose_message_id_has_no_brackets_shares_its_replies_thread() -> None:
    root = parse_email(b"From: a@x.org\nSubject: q\nMessage-ID: nobrackets-123@example.com\n\nIs it open?", "r.eml")
    reply = parse_email(b"From: b@x.org\nSubject: Re: q\nMessage-ID: <r2@example.com>\n"
                        b"In-Reply-To: <nobrackets-123@example.com>\n\nYes.", "s.eml")
    bare_reply = parse_email(b"From: c@x.org\nSubject: Re: q\nMessage-ID: <r3@example.com>\n"
                             b"In-Reply-To: nobrackets-123@example.com\n\nNo.", "t.eml")
    assert root["thread_id"] == reply["thread_id"] == bare_reply["thread_id"] == "<nobrackets-123@example.com>"
    junk = parse_email(b"From: d@x.org\nSubject: q\nMessage-ID: <r4@example.com>\nIn-Reply-To: see below\n\n?", "u.eml")
    assert junk["in_reply_to"] is None and junk["thread_id"] == "<r4@example.com>"


def test_blank_lines_before_the_first_envelope_do_not_make_a_mailbox_one_broken_message() -> None:
    mailbox = (b"\n\nFrom a@x.org Tue Nov 10 09:15:00 2026\nFrom: a@x.org\nSubject: one\n\nfirst body\n\n"
               b"From b@x.org Tue Nov 10 09:16:00 2026\nFrom: b@x.org\nSubject: two\n\nsecond body\n")
    assert is_mbox(mailbox[:8192])
    messages = [parse_email(raw, ref) for ref, raw in split_mbox(io.BytesIO(mailbox), "box.mbox")]
    assert [m["subject"] for m in messages] == ["one", "two"]


@pytest.mark.parametrize(("written", "expected"), [
    ("Tue, 10 Nov 2026 09:15:00 +01:00", "2026-11-10T08:15:00+00:00"),
    ("Tue, 10 Nov 2026 09:15:00 GMT-0500", "2026-11-10T14:15:00+00:00"),
    ("Tuesday, November 10, 2026 9:15 PM", "2026-11-10T21:15:00+00:00"),
    ("Tue, 10 Nov 2026 09:15:00 +0100 (CET)", "2026-11-10T08:15:00+00:00"),
    ("Tue, 10 Nov 2026 09:15:00 EST", "2026-11-10T14:15:00+00:00"),
])
def test_dates_as_mailers_write_them(written: str, expected: str) -> None:
    """``+01:00`` and ``GMT-0500`` were read as no zone (so as UTC, with a note), ``9:15 PM`` as 09:15."""
    notes: list[str] = []
    assert parse_date(written, notes).isoformat() == expected
    assert notes == ([] if any(zone in written for zone in ("+", "-0", "EST")) else
                     ["date without timezone: taken as UTC"])


@pytest.mark.parametrize("written", ["Mon, 01 Jan 0001 00:00:00 +0000", "01 Jan 0000 10:00 -0000",
                                     "Sat, 1 Jan 001 10:00 GMT", "Monday, January 1, 0001 9:15 PM"])
def test_a_year_written_with_a_leading_zero_is_unparseable(written: str) -> None:
    """A mailer's unset clock (year 0001 or 0000) was read as a two-digit year: a message sent in 2001 or 2000."""
    notes: list[str] = []
    assert parse_date(written, notes) is None and notes == ["date unparseable"]
    assert parse_date("Mon, 01 Jan 01 00:00:00 +0000", notes).year == 2001  # a two-digit year, as RFC 5322 reads it


def test_headers_parsed_once_read_every_email_as_the_standard_policy_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reusing header factory is only faster: every bundled sample email, MIME-broken and mis-encoded ones
    included, becomes the same document as with ``policy.default``, also when read a second time from its cache."""
    emails = sorted(path for path in (SAMPLES / "email").iterdir() if path.is_file())
    assert len(emails) >= 10
    reusing = [repr(parse_email(path.read_bytes(), path.name)) for path in emails for _ in range(2)]
    factory = email_ingest.MAIL_POLICY.header_factory
    assert factory["Content-Type"] is factory["content-type"]
    monkeypatch.setattr(email_ingest, "MAIL_POLICY", policy.default)
    standard = [repr(parse_email(path.read_bytes(), path.name)) for path in emails for _ in range(2)]
    assert reusing == standard


COMPLAINT = ("Hi,\n\nthe blender I ordered (order 1234) arrived with a cracked jug and the lid missing. "
             "I want a refund, not a replacement.\n\nThanks,\nAlice\n")
GMAIL_FORWARD = ("---------- Forwarded message ---------\nFrom: Alice Smith <alice@example.com>\n"
                 "Date: Mon, Nov 9, 2026 at 6:02 PM\nSubject: Order 1234 arrived broken\n"
                 "To: <orders@acme.com>\n\n\n" + COMPLAINT)
APPLE_FORWARD = ("Begin forwarded message:\n\nFrom: Alice Smith <alice@example.com>\n"
                 "Subject: Order 1234 arrived broken\nDate: 9 November 2026 at 18:02:11 CET\n"
                 "To: orders@acme.com\n\n" + COMPLAINT)


@pytest.mark.parametrize("note", ["", "FYI", "see below\n\n--\nJoe Miller | ACME Sales",
                                  "Fwd from the shop, see below"])
@pytest.mark.parametrize("forward", [GMAIL_FORWARD, APPLE_FORWARD,
                                     GMAIL_FORWARD.replace("---------- Forwarded message ---------",
                                                           "-------- Forwarded Message --------")])
def test_a_forward_with_a_short_note_is_read_as_the_forwarded_message(note: str, forward: str) -> None:
    """Reply stripping took the forwarded message for quoted history: "FYI" or "Begin forwarded message:" was all
    that was classified. A note of a few words says nothing; the forwarded message's own words are the text."""
    labeled = parse_email(mime(lambda message: message.set_content(f"{note}\n\n{forward}")), "fwd.eml")
    assert labeled["text"] == ("Order 1234\n\nHi,\n\nthe blender I ordered (order 1234) arrived with a cracked jug "
                               "and the lid missing. I want a refund, not a replacement.")


def test_a_forward_with_its_own_message_or_inside_a_replys_history_keeps_the_senders_words() -> None:
    """A forwarder who writes something says it; a forward quoted in the history below a reply is history."""
    note = "Can you check with the warehouse whether the jug was broken before it shipped? We need to answer today."
    assert own_text(f"{note}\n\nThanks,\nJoe\n\n{GMAIL_FORWARD}") == note
    assert own_text(f"{note}\n\n{APPLE_FORWARD}") == note
    history = ("\n\nFrom: Joe Miller <joe@acme.com>\nSent: Monday, November 9, 2026 6:30 PM\nTo: Support\n"
               "Subject: Fwd: Order 1234 arrived broken\n\nFYI\n\n")
    assert own_text(f"Refund sent.{history}{GMAIL_FORWARD}") == "Refund sent."


NEWSLETTER_HEAD = (b"From: Acme Deals <news@mail.acme-deals.com>\nTo: jane@example.com\nSubject: Spring sale\n"
                   b"Date: Tue, 04 Mar 2025 15:02:11 +0000\nMessage-ID: <n1@mail.acme-deals.com>\n"
                   b"List-Unsubscribe: <https://acme-deals.com/u/abc>, <mailto:unsub@acme-deals.com>\n"
                   b"MIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n")


def test_a_newsletters_multi_column_layout_reads_each_column_in_order() -> None:
    """Marketing mail lays out columns with tables; inscriptis drew them as a grid, so two cells with line breaks came
    out interleaved line by line ("Our new shoes are  The winter jacket keeps" / "light and durable.  you warm.")."""
    html = (b'<table role="presentation" width="600"><tr>'
            b'<td width="300"><h2>Running shoes</h2>Our new running shoes are<br>light and made from recycled '
            b'materials.</td>'
            b'<td width="300"><h2>Winter jacket</h2>The winter jacket keeps you warm<br>and packs into its own '
            b'pocket.</td></tr></table>')
    document = clean_document(parse_email(NEWSLETTER_HEAD + html, "n.eml"), 200_000)
    assert "Our new running shoes are\nlight and made from recycled materials." in document["text"]
    assert "The winter jacket keeps you warm\nand packs into its own pocket." in document["text"]
    assert document["text"].index("recycled materials") < document["text"].index("Winter jacket")


def test_hidden_preheader_text_is_not_the_newsletters_text() -> None:
    """A preheader (the inbox preview line) is hidden with ``display: none !important`` (Postmark's and Litmus's
    templates) or the ``hidden`` attribute; inscriptis saw only a plain ``display:none``, so the hidden words were
    read as the first sentence of the message."""
    html = (b'<html><body><span class="preheader" style="display: none !important; visibility: hidden; '
            b'mso-hide: all; font-size: 1px; max-height: 0px; opacity: 0; overflow: hidden;">Last chance: '
            b'40% off everything ends tonight</span><div hidden>Open for a surprise</div>'
            b'<div style="display:none;max-height:0">Unseen in every client</div>'
            b'<p>Hi Jane, our spring sale is here.</p>'
            b'<img src="https://t.acme-deals.com/open.gif?id=abc" width="1" height="1" alt=""></body></html>')
    document = parse_email(NEWSLETTER_HEAD + html, "p.eml")
    assert document["full_text"].strip() == "Hi Jane, our spring sale is here."


@pytest.mark.parametrize(("content_type", "name"), [
    ('application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"', "smime.p7m"),  # Outlook, encrypted
    ('application/ms-tnef; name="winmail.dat"', "winmail.dat"),  # Outlook's rich text, sent whole
    ('application/pdf; name="scan_0001.pdf"', "scan_0001.pdf"),  # a scanner's scan-to-email
])
def test_a_message_that_is_one_attachment_lists_it(content_type: str, name: str) -> None:
    """A message whose whole body is a file (no multipart around it) is labeled by its subject, as one with only
    attachments is, but its file was not listed: ``attachments`` was empty and nothing said what the body was."""
    blob = base64.encodebytes(bytes(range(256)) * 4)
    raw = (b"From: Frank <frank@bank.example>\nTo: support@acme.com\nSubject: Fees\nMIME-Version: 1.0\n"
           b"Date: Fri, 07 Mar 2025 11:00:00 +0000\nContent-Type: " + content_type.encode()
           + b"\nContent-Transfer-Encoding: base64\n\n" + blob)
    document = parse_email(raw, "one.eml")
    assert document["attachments"] == [name]
    assert document["text"].strip() == "Fees" and not document["full_text"]


def test_a_message_that_is_one_attached_email_lists_it() -> None:
    raw = (b"From: gina@example.com\nSubject: Fwd: rude reply\nMIME-Version: 1.0\nContent-Type: message/rfc822\n\n"
           b"From: agent@acme.com\nSubject: whatever\n\nNot our problem.\n")
    document = parse_email(raw, "fwd.eml")
    assert document["attachments"] == ["message.eml"] and "problem" not in document["text"]


ORDER_HEAD = (b"From: Alice Smith <alice@example.com>\nTo: support@acme.com\nSubject: Order 1234\nMIME-Version: 1.0\n"
              b"Date: Tue, 10 Nov 2026 09:15:00 +0000\nMessage-ID: <m9@example.com>\n")
ALTERNATIVES_AT_XYZ = (b"This is a multi-part message in MIME format.\n\n"
                       b"--xyz\nContent-Type: text/plain; charset=utf-8\n\n"
                       b"The blender arrived with a cracked jug. I want a refund.\n\n--xyz\n"
                       b"Content-Type: text/html; charset=utf-8\n\n"
                       b"<p>The blender arrived with a <b>cracked jug</b>. I want a refund.</p>\n\n--xyz--\n")


@pytest.mark.parametrize("content_type", [b'multipart/alternative; boundary="abc"', b"multipart/alternative",
                                          b"multipart/alternative; charset=utf-8"])
def test_a_multipart_whose_boundary_is_wrong_or_missing_keeps_its_text(content_type: bytes) -> None:
    """A gateway that rewrote the Content-Type (``boundary="abc"`` over parts at ``--xyz``, or no boundary at all)
    left the email package with no parts: the body was lost without a note and the message labeled by its subject."""
    document = parse_email(ORDER_HEAD + b"Content-Type: " + content_type + b"\n\n" + ALTERNATIVES_AT_XYZ, "b.eml")
    assert document["full_text"].strip() == "The blender arrived with a cracked jug. I want a refund."
    assert any(note.startswith("MIME structure broken") for note in document["ingest_notes"])


def test_a_multipart_without_any_parts_is_read_as_one_text_part() -> None:
    body = b"The blender arrived with a cracked jug.\n\nI want a refund, not a replacement.\n"
    document = parse_email(ORDER_HEAD + b'Content-Type: multipart/mixed; boundary="abc"\n\n' + body, "p.eml")
    assert document["full_text"].strip() == body.decode().strip()
    html = parse_email(ORDER_HEAD + b"Content-Type: multipart/alternative\n\n<html><body><p>The jug is "
                       b"<b>cracked</b>.</p></body></html>\n", "h.eml")
    assert html["full_text"].strip() == "The jug is cracked."
    assert any(note.startswith("MIME structure broken") for note in html["ingest_notes"])


@pytest.mark.parametrize(("body", "subtype", "text"), [
    (b"<p>Hello,<p>The jug arrived cracked. I want a refund.\n", "html",
     "Hello,\n\nThe jug arrived cracked. I want a refund."),
    (b'<font face="Arial">The jug arrived cracked.<hr>Sent from my phone\n', "html",
     "The jug arrived cracked.\nSent from my phone"),
    (b"It could wrap the report with <pre></pre> for ease\nof reading?\n", "plain",
     "It could wrap the report with <pre></pre> for ease\nof reading?"),
    (b"The <p> tag in your form\nis not closed.\n", "plain", "The <p> tag in your form\nis not closed."),
])
def test_a_body_in_html_without_closing_tags_is_read_as_html(body: bytes, subtype: str, text: str) -> None:
    """A part-less multipart's body was HTML only with a closing tag or a ``<br>``: paragraphs without end tags and
    an attributed ``<font>`` kept their markup as text. Tags a message talks about stay its text, line breaks too."""
    document = parse_email(ORDER_HEAD + b"Content-Type: multipart/alternative\n\n" + body, "h.eml")
    assert document["full_text"].strip() == text
    assert f"MIME structure broken: no boundary parameter; body read as one text/{subtype} part" in \
        document["ingest_notes"]


NEWSLETTER_STUB = ("Spring sale at Acme\n\nView this email in your browser: "
                   "https://acme-deals.com/v/8f3a2c?utm_source=newsletter\n")
NEWSLETTER_HTML = ("<html><body><h1>Spring sale at Acme</h1><p>Hi Jane, our spring sale starts today: 40% off all "
                   "running shoes and winter jackets until Sunday.</p><p>Members get free shipping on every order "
                   "and free returns for 60 days. Your loyalty points double this week.</p><h2>New in store</h2>"
                   "<p>The trail runner 5 is lighter than ever, with a recycled upper and a sole that grips on wet "
                   "rock. Our rain jacket now packs into its own pocket.</p>"
                   "<p><a href='https://acme-deals.com/u/abc'>Unsubscribe</a></p></body></html>")


def test_a_newsletters_stub_plain_alternative_gives_way_to_its_html() -> None:
    """Mailchimp-style newsletters send a plain alternative of one line, "View this email in your browser", and the
    whole newsletter in HTML: the stub was the text that was classified."""
    def newsletter(message) -> None:
        message.set_content(NEWSLETTER_STUB)
        message.add_alternative(NEWSLETTER_HTML, subtype="html")
    document = parse_email(mime(newsletter), "n.eml")
    assert "40% off all running shoes" in document["text"] and "View this email" not in document["full_text"]
    assert "html converted to text" in document["ingest_notes"]


@pytest.mark.parametrize(("plain", "html"), [
    ("Thanks, the refund arrived.", "<p>Thanks, the <b>refund</b> arrived.</p>"),
    (COMPLAINT, f"<p>{COMPLAINT}</p><p>{NEWSLETTER_HTML}</p>"),
])
def test_a_plain_alternative_that_is_no_stub_is_still_the_text(plain: str, html: str) -> None:
    """A short message is short in both alternatives, and a plain part of more than a few words is the sender's."""
    def alternative(message) -> None:
        message.set_content(plain)
        message.add_alternative(html, subtype="html")
    document = parse_email(mime(alternative), "a.eml")
    assert document["full_text"].strip() == plain.strip() and "html converted to text" not in document["ingest_notes"]


PGP_MIME = (b'multipart/encrypted; protocol="application/pgp-encrypted"; boundary="pgp1"\n\n'
            b"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\n--pgp1\n"
            b"Content-Type: application/pgp-encrypted\nContent-Description: PGP/MIME version identification\n\n"
            b"Version: 1\n\n--pgp1\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\n"
            b"Content-Disposition: inline; filename=\"encrypted.asc\"\n\n-----BEGIN PGP MESSAGE-----\n\n"
            b"hQEMA6zBkUXc4s6vAQf/Y0nR4V2lOPBCkq3Ld8cfA6iaXG0UMlD+Lh0u6Zq9s1nS\n=Xq4T\n"
            b"-----END PGP MESSAGE-----\n\n--pgp1--\n")
TNEF_IN_MIXED = (b'multipart/mixed; boundary="tnef1"\n\n--tnef1\n'
                 b'Content-Type: application/ms-tnef; name="winmail.dat"\nContent-Transfer-Encoding: base64\n'
                 b'Content-Disposition: attachment; filename="winmail.dat"\n\n'
                 b"eJ8+IhAAAQaQCAAEAAAAAAABAAEAAQeQBgAIAAAA\n"
                 b"\n--tnef1--\n")
BLOB = b"\nContent-Transfer-Encoding: base64\n\n" + base64.encodebytes(bytes(range(256)) * 4)


@pytest.mark.parametrize(("content_type", "note"), [
    (b'application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"' + BLOB, "encrypted"),
    (b'application/x-pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"' + BLOB, "encrypted"),
    (b'application/pkcs7-mime; smime-type=signed-data; name="smime.p7m"' + BLOB, "signed"),
    (b'application/x-pkcs7-mime; name="smime.p7m"' + BLOB, "smime.p7m"),
    (PGP_MIME, "encrypted"),
    (b'application/ms-tnef; name="winmail.dat"' + BLOB, "winmail.dat"),
    (TNEF_IN_MIXED, "winmail.dat"),
])
def test_an_encrypted_or_winmail_only_message_says_why_it_has_no_text(content_type: bytes, note: str) -> None:
    """Labeled by the subject alone with no note, an encrypted message could not be told from one with an empty
    body; the note says the body is there but cannot be read."""
    document = parse_email(ORDER_HEAD + b"Content-Type: " + content_type, "e.eml")
    assert document["text"].strip() == "Order 1234" and not document["full_text"]
    assert [n for n in document["ingest_notes"] if note in n and "not readable" in n]


def test_a_clear_signed_mailing_list_message_keeps_its_words_not_its_signature(shared_data: Path) -> None:
    """20 SpamAssassin ham messages are clear-signed inline; the armour line, ``Hash:`` header and base64
    signature were read as the message's text."""
    document = corpus_message(shared_data, "ham/00096.3517ca839b03cdf37c14ff9b3667dd98")
    assert document["text"].startswith("Re: [ILUG] Serial number in hosts file\n\nYour actual serial number is")
    assert "PGP" not in document["text"] and "Hash: SHA1" not in document["full_text"]
    assert "=Rurr" not in document["full_text"] and "VIA NET.WORKS Inc. Group." in document["full_text"]
    assert document["ingest_notes"] == ["inline PGP signature removed"]


def test_unterminated_pgp_blocks_take_linear_time() -> None:
    """Each BEGIN line searched the rest of the body for its END line: 6,000 unterminated blocks took a second,
    eight times as many 64 times as long. They stay in the text, as an unterminated block does."""
    def seconds(count: int) -> float:
        body = "-----BEGIN PGP MESSAGE-----\n" * count
        started = time.perf_counter()
        assert email_ingest.without_pgp_armor(body, []) == body
        return time.perf_counter() - started

    assert seconds(16_000) < 20 * max(seconds(2_000), 1e-3)


def test_inline_pgp_dash_escapes_encrypted_blocks_and_keys() -> None:
    signed = ("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nThe list:\n- - first item\n- -----\nbye\n"
              "-----BEGIN PGP SIGNATURE-----\n\niQEzBAEBCAAdFiEE\n=a1b2\n-----END PGP SIGNATURE-----\n")
    notes: list[str] = []
    assert email_ingest.without_pgp_armor(signed, notes) == "The list:\n- first item\n-----\nbye\n"
    key = "My key:\n-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBF\n-----END PGP PUBLIC KEY BLOCK-----\nthanks"
    assert email_ingest.without_pgp_armor(key, notes) == "My key:\nthanks"
    assert notes == ["inline PGP signature removed", "inline PGP key block removed"]
    quoted_or_cut = "> -----BEGIN PGP SIGNATURE-----\n> iQEz\n-----BEGIN PGP MESSAGE-----\nhQEMA (cut off)"
    assert email_ingest.without_pgp_armor(quoted_or_cut, notes) == quoted_or_cut
    encrypted = ORDER_HEAD + b"Content-Type: text/plain\n\n-----BEGIN PGP MESSAGE-----\n\nhQEMA6zBkUXc4s6v\n=Xq4T\n" \
        b"-----END PGP MESSAGE-----\n"
    document = parse_email(encrypted, "e.eml")
    assert document["text"].strip() == "Order 1234"
    assert document["ingest_notes"] == ["inline PGP encrypted block removed, not readable",
                                        "body encrypted (inline PGP), not readable: labeled by its subject alone"]


def test_a_scan_or_a_readable_message_gets_no_unreadable_note() -> None:
    scan = parse_email(ORDER_HEAD + b'Content-Type: application/pdf; name="scan.pdf"' + BLOB, "s.eml")
    def outlook_with_tnef(message) -> None:
        message.set_content("Please see the attached invoice.")
        message.add_attachment(bytes(range(256)), maintype="application", subtype="ms-tnef", filename="winmail.dat")
    readable = parse_email(mime(outlook_with_tnef), "r.eml")
    assert "attached invoice" in readable["text"]
    assert not [n for document in (scan, readable) for n in document["ingest_notes"] if "not readable" in n]


@pytest.mark.parametrize("tagline", ["Sent with Proton Mail secure email.",
                                     "Sent with [Proton Mail](https://proton.me/) secure email.",
                                     "Sent from Yahoo Mail on Android", "Sent from Mail for Windows",
                                     "Envoy\u00e9 de mon iPhone", "Gesendet mit der WEB.DE Mail App"])
def test_a_mail_apps_tagline_is_not_the_senders_words(tagline: str) -> None:
    """The reply parser drops only "Sent from my ..." and "Get Outlook for ..."; the other apps' lines stayed."""
    assert own_text(f"Where is my refund? It has been two weeks.\n\n{tagline}") == \
        "Where is my refund? It has been two weeks."
    assert own_text("The parcel was damaged.\nSent from the warehouse on Monday.") == \
        "The parcel was damaged.\nSent from the warehouse on Monday."


def test_outlooks_divider_right_below_the_reply_is_not_left_in_the_text() -> None:
    """Outlook on the web puts its divider on the line after the reply: the history went, the line stayed."""
    history = ("\n________________________________\nFrom: Acme Support <support@acme.com>\n"
               "Sent: Monday, November 9, 2026 6:30 PM\nTo: Alice Smith <alice@example.com>\n"
               "Subject: RE: Order 1234\n\n"
               "Hi Alice,\n\nwe have sent the refund.\n")
    assert own_text("Thanks, the refund arrived today." + history) == "Thanks, the refund arrived today."
    german = history.replace("From:", "Von:").replace("Sent:", "Gesendet:").replace("To:", "An:")
    assert own_text("Danke, das Geld ist da." + german.replace("Subject:", "Betreff:")) == "Danke, das Geld ist da."


def test_gmails_dutch_attribution_goes_with_the_quotes_it_introduces() -> None:
    """Dutch Gmail writes "Op <date> schreef <name> <<address>>:", which neither the parser's "Op ... schreef:" nor
    the "X schreef:" line pattern matched: the line stayed in the text above the quotes that went."""
    body = ("Bedankt, het pakket is vandaag aangekomen, maar de doos was kapot.\n\n"
            "Op ma 9 nov. 2026 om 18:30 schreef Acme Support <support@acme.com>:\n\n"
            "> Hallo Alice,\n>\n> uw pakket is onderweg.\n")
    assert own_text(body).strip() == "Bedankt, het pakket is vandaag aangekomen, maar de doos was kapot."


def test_a_preheader_hidden_by_a_class_rule_in_the_style_sheet_is_not_the_text() -> None:
    """Templates (Litmus's, Campaign Monitor's) hide the preheader with a ``<style>`` rule, ``.preheader { display:
    none !important; }``, on ``<span class="preheader">``; inscriptis reads no style sheet, so the preview line was
    read as the message's first words. A rule inside ``@media`` hides on some screens only and is left alone."""
    html = (b'<html><head><style type="text/css">\n/* client resets */\nbody { margin: 0; }\n'
            b'.preheader, .spacer { display: none !important; visibility: hidden; mso-hide: all; }\n'
            b'@media only screen and (max-width: 600px) { .desktop-only { display: none; } }\n'
            b'.intro { display: block; }\n</style></head><body>'
            b'<span class="preheader">Last chance: 40% off everything ends tonight</span>'
            b'<p class="intro desktop-only">Hi Jane, our spring sale is here.</p>'
            b'<div class="spacer">&nbsp;unseen</div></body></html>')
    document = parse_email(NEWSLETTER_HEAD + html, "s.eml")
    assert document["full_text"].strip() == "Hi Jane, our spring sale is here."


def test_a_template_elements_content_is_not_the_text() -> None:
    """``<template>`` holds markup a page's script may copy in later and no mail client shows (ESP builders leave
    their row templates in): its words were read as the message's."""
    html = (b'<html><body><p>Your order #4411 has shipped.</p><template id="row"><tr><td>Product name</td>'
            b'<td>Qty</td></tr></template><p>Track it in your account.</p></body></html>')
    document = parse_email(NEWSLETTER_HEAD + html, "t.eml")
    assert document["full_text"].split() == "Your order #4411 has shipped. Track it in your account.".split()


NEWSLETTER_BODY = ("Hi Laura,\n\nOur spring sale is on: 30% off everything in store and online until Sunday at "
                   "midnight.\n\nNew this season: linen shirts, the Harbour rain jacket and our bestselling walking "
                   "boots in two new colours. Use code SPRING30 at checkout; delivery is free on orders over 50.")


@pytest.mark.parametrize("footer", [
    "You're receiving this email because you signed up for news and offers from Fieldhouse. Unsubscribe here.",
    "Unsubscribe | Manage preferences | View in browser\n\nFieldhouse Ltd, 12 Harbour Street, Bristol BS1 4RN\n"
    "\u00a9 2025 Fieldhouse. All rights reserved.\nThis email was sent to laura@example.org",
    "Fieldhouse, 548 Market St, San Francisco, CA\n"
    "You are receiving this because you are a member. Manage your email preferences or unsubscribe.",
])
def test_a_newsletters_footer_is_not_its_text_but_stays_in_full_text(footer: str) -> None:
    """The footer every marketing email ends with (why you get it, unsubscribe links, the postal address and
    copyright the law asks for) is the sender's boilerplate, not the message, and reads as spam to the classifier."""
    raw = mime(lambda message: message.set_content(f"{NEWSLETTER_BODY}\n\n{footer}\n"))
    document = parse_email(raw, "footer.eml")
    assert document["text"].endswith("delivery is free on orders over 50.")
    assert footer in document["full_text"]


def test_an_html_newsletters_footer_cell_is_not_its_text() -> None:
    html = (b'<table width="600"><tr><td><p>Hi Jane, our spring sale is here: 30% off all running shoes and '
            b'jackets until Sunday, in store and online.</p><p>Shop now</p></td></tr>'
            b'<tr><td><p><a href="https://acme-deals.com/u/abc">Unsubscribe</a> | <a href="#">View in browser</a>'
            b'</p><p>&copy; 2025 Acme Deals Ltd</p></td></tr></table>')
    document = parse_email(NEWSLETTER_HEAD + html, "f.eml")
    assert document["text"].startswith("Spring sale\n\nHi Jane, our spring sale is here")
    assert document["text"].endswith("Shop now")
    assert "Unsubscribe | View in browser" in document["full_text"]


@pytest.mark.parametrize("body", [
    # the customer's own words about unsubscribing end the message
    "Hi,\n\nI clicked unsubscribe three times and I still get your newsletter every day.\n"
    "I tried to unsubscribe here too. Please remove me now.",
    # footer-like lines above the sender's last words are not a trailing footer
    f"{NEWSLETTER_BODY}\n\nUnsubscribe | Manage preferences\n\nP.S. The sale ends on Sunday at midnight.",
    # a footer as long as the message itself is not cut: too much of the text would go
    "Thanks!\n\nTo unsubscribe from this list, reply with UNSUBSCRIBE in the subject line.\n"
    "You are receiving this email because you joined the list at our website.",
    # an address closing a letter, with no footer line, is the sender's signature
    f"{NEWSLETTER_BODY}\n\nFieldhouse Ltd, 12 Harbour Street, Bristol",
])
def test_text_that_only_looks_like_a_footer_stays(body: str) -> None:
    document = parse_email(mime(lambda message: message.set_content(body + "\n")), "own.eml")
    assert document["text"].endswith(body.rstrip().rsplit("\n", 1)[-1])


THUNDERBIRD_FLOWED = (
    b"From: Ann Lee <ann@example.com>\nSubject: Re: the venue\nMIME-Version: 1.0\n"
    b"Content-Type: text/plain; charset=UTF-8; format=flowed\nContent-Transfer-Encoding: 8bit\n\n"
    b"On 03/02/2026 09:14, Joe Smith wrote:\n"
    b"> Could we move the workshop to the bigger room? Forty people signed up \n"
    b"> and the small one seats twenty-five.\n\n"
    b"Yes, I booked it this morning. The caf\xc3\xa9 next door can do lunch for \n"
    b"everyone if we confirm numbers by Friday.\n"
    b" From the station it is a ten-minute walk.\n\n"
    b"-- \nAnn Lee | Events\n")


def test_a_flowed_body_is_unwrapped_into_the_paragraphs_its_writer_typed() -> None:
    """Thunderbird and Apple Mail send ``format=flowed``: a trailing space marks where the mailer broke a line.
    Read as fixed text, every paragraph reached ``text`` cut at 72 columns; the stuffed space before "From" stayed."""
    document = parse_email(THUNDERBIRD_FLOWED, "inline")
    assert document["text"].startswith("Re: the venue\n")
    assert document["text"].endswith(
        "\nYes, I booked it this morning. The café next door can do lunch for everyone if we confirm numbers by "
        "Friday.\nFrom the station it is a ten-minute walk.")
    assert "Forty people" not in document["text"]
    assert "> Could we move the workshop to the bigger room? Forty people signed up and the small one seats " \
           "twenty-five." in document["full_text"]


def test_delsp_joins_a_flowed_line_without_its_trailing_space() -> None:
    raw = (b"From: a@b.c\nSubject: note\nContent-Type: text/plain; charset=us-ascii; format=flowed; delsp=yes\n\n"
           b"A contrived example with a word- \nbreak that the mailer split.\n")
    assert parse_email(raw, "inline")["text"] == "note\n\nA contrived example with a word-break that the mailer split."


def test_a_fixed_body_keeps_its_line_breaks_even_where_lines_end_in_spaces() -> None:
    raw = b"From: a@b.c\nSubject: list\n\nMilk \nEggs \nBread\n"
    assert parse_email(raw, "inline")["text"] == "list\n\nMilk\nEggs\nBread"


def test_a_wrapped_flowed_attribution_is_read_whole_and_cut_with_the_quote(shared_data: Path) -> None:
    """Mulberry wraps its "--On <date> <name> <address> wrote:" over two flowed lines; read as fixed text, the
    first half stayed in ``text`` as if the sender had written it."""
    document = corpus_message(shared_data, "ham/01090.a6575cc193fe3bb9f143aa0eb4fed7ac")
    assert "--On Tuesday" not in document["text"]
    assert ("I did notice an rpm I made the other day didn't work, and just sat there for ages  seemingly doing "
            "nothing, which probably did this :(") in document["text"]


def test_buttons_options_and_inline_block_links_keep_their_words_apart() -> None:
    """An order notice's two button links (``display: inline-block``, as Mailchimp's and Shopify's templates draw
    them), a survey's buttons and a country picker: inscriptis ran their words together ("Track orderManage
    delivery", "SmallMediumLarge"), one unknown token where the reader sees two buttons. A plain link in a sentence
    keeps the full stop after it."""
    html = (b'<p>Your parcel ships today. See <a href="https://shop.example/terms">our delivery terms</a>.</p><p>'
            b'<a href="https://shop.example/track" style="display:inline-block;padding:12px 20px;'
            b'background:#1a73e8">Track order</a><a href="https://shop.example/manage" style="mso-padding-alt:0; '
            b'display: inline-block !important">Manage delivery</a></p><form><p>How was it?'
            b'<button>Great</button><button>Not great</button></p><select><option>Small</option><option>Medium'
            b'</option><option>Large</option></select></form>')
    document = parse_email(NEWSLETTER_HEAD + html, "order.eml")
    assert document["full_text"].split("\n\n") == [
        "Your parcel ships today. See our delivery terms.", "Track order Manage delivery",
        "How was it? Great Not great", "Small Medium Large"]


ENVELOPE = "From a@example.com Mon Nov 16 10:00:00 2026\n"


SENT = "Mon, 16 Nov 2026 10:00:00 +0000"


def complaint(number: int, extra_headers: str = "", body: str = "", date: str = SENT) -> str:
    return (f"From: a@example.com\nDate: {date}\nMessage-ID: <{number}@x>\nSubject: order {number}\n"
            f"{extra_headers}\n{body or f'My parcel {number} never arrived.'}\n")


LONG_BODY = "My parcel never arrived and nobody answers my emails. " * 5
ATTACHED = ('Content-Type: multipart/mixed; boundary="b"\n', '--b\nContent-Type: text/plain\n\nThe invoice is wrong.'
            "\n--b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename*={}''r%E9sum%E9.pdf\n\n"
            "JVBERi0=\n--b--")


@pytest.mark.parametrize(("headers", "body", "note"), [
    ("", "", "date unparseable"),
    ("Content-Type: text/plain; charset=undefined\n", LONG_BODY, "declared charset undefined failed (UnicodeError)"),
    ("Content-Type: text/plain; charset=punycode\n", LONG_BODY, "declared charset punycode failed (UnicodeError)"),
    ("Content-Type: text/plain; charset=idna\n", LONG_BODY + "Caf\xe9", "declared charset idna failed (UnicodeError)"),
    ('Content-Type: text/plain; charset="utf-8\x00"\n', LONG_BODY, "declared charset utf-8\x00 failed (ValueError)"),
    ("Content-Type: text/html; charset=undefined\n", f"<p>{LONG_BODY}</p>",
     "declared charset undefined failed (UnicodeError)"),
])
def test_a_message_with_an_impossible_date_or_charset_is_labeled_with_a_note_and_the_mbox_goes_on(
        tmp_path: Path, headers: str, body: str, note: str) -> None:
    """A date past year 9999 in UTC overflowed, and a codec that is no charset ("undefined", "punycode", "idna") or
    a NUL in the charset raised past the reader: the mbox became one ``corrupt_file`` record after the first
    message, and the messages after the broken one were lost."""
    mbox = tmp_path / "inbox.mbox"
    date = "Fri, 31 Dec 9999 23:59:59 -1200" if note == "date unparseable" else SENT
    broken = complaint(2, headers, body, date)
    mbox.write_bytes((ENVELOPE + complaint(1) + "\n" + ENVELOPE + broken + "\n" + ENVELOPE + complaint(3)).encode(
        "latin-1"))
    records = list(read_path(str(mbox)))
    assert not any(isinstance(record, Failure) for record in records)
    assert [record["subject"] for record in records] == ["order 1", "order 2", "order 3"]
    assert note in records[1]["ingest_notes"] and "My parcel" in records[1]["text"]
    assert records[2]["text"] == "order 3\n\nMy parcel 3 never arrived."


def test_a_date_past_the_calendars_end_is_unparseable_also_in_the_received_fallback() -> None:
    received = "Received: from mx.example.com by mail.example.com; Fri, 31 Dec 9999 23:59:59 -1200\n\nHi\n"
    document = parse_email(f"From: a@example.com\nSubject: s\n{received}".encode(), "x.eml")
    assert document["created_at"] is None and document["text"] == "s\n\nHi"
    notes: list[str] = []
    assert parse_date("Fri, 31 Dec 9999 11:59 PM -1200", notes) is None and notes == ["date unparseable"]  # dateutil


@pytest.mark.parametrize("charset", ["undefined", "idna", '"utf-8\x00'])
def test_an_attachment_name_in_a_codec_that_is_no_charset_is_kept_undecoded(charset: str) -> None:
    """The email package decodes an RFC 2231 name strictly and falls back only on an unknown charset: a header
    holding such a name raised at every fetch, and the message was lost."""
    content_type, body = ATTACHED
    document = parse_email(complaint(1, content_type, body.format(charset)).encode(), "x.eml")
    assert document["text"] == "order 1\n\nThe invoice is wrong."
    assert len(document["attachments"]) == 1 and document["attachments"][0].endswith("sum\xe9.pdf")


def test_mime_nested_too_deeply_is_a_dead_letter_of_its_own(tmp_path: Path) -> None:
    """The email package parses each MIME level a frame deeper: 1,500 levels raised RecursionError, which ended the
    mbox (a single file: a misleading "corrupt_file ... unreadable")."""
    nested = "".join(f'Content-Type: multipart/mixed; boundary="b{level}"\n\n--b{level}\n' for level in range(1500))
    deep = complaint(2, nested + "Content-Type: text/plain\n")
    mbox, single = tmp_path / "inbox.mbox", tmp_path / "deep.eml"
    mbox.write_text(ENVELOPE + complaint(1) + "\n" + ENVELOPE + deep + "\n" + ENVELOPE + complaint(3))
    single.write_text(deep)
    records = list(read_path(str(mbox)))
    assert [record["subject"] for record in records if not isinstance(record, Failure)] == ["order 1", "order 3"]
    for failure in (records[1], *read_path(str(single))):
        assert isinstance(failure, Failure) and failure.stage == "parse"
        assert failure.error_type == "unparseable_email"
        assert failure.error == "MIME parts or a MIME header's comments nested too deeply to parse"
        assert 'Content-Type: multipart/mixed; boundary="b0"' in failure.raw_excerpt


@pytest.mark.parametrize("name", ["To", "Cc"])
def test_an_address_header_nested_too_deeply_loses_only_its_addresses(name: str) -> None:
    """A To or Cc of 3,000 nested comments overflowed the address parser's recursion, and the whole message became
    a dead letter blamed on its MIME parts; it is labeled, without that header's addresses."""
    document = parse_email(complaint(1, f"{name}: {'(' * 3000}b@example.com\nCc: c@example.com\n"
                                     if name == "To" else f"{name}: {'(' * 3000}b@example.com\n").encode(), "x.eml")
    assert not isinstance(document, Failure) and document["text"] == "order 1\n\nMy parcel 1 never arrived."
    assert f"header {name.lower()} nested too deeply to read its addresses: left out" in document["ingest_notes"]
    assert document["author"] == hash_address("a@example.com")
    assert document["recipients"] == ([hash_address("c@example.com")] if name == "To" else [])


def test_a_sender_nested_too_deeply_leaves_the_author_empty() -> None:
    document = parse_email(f"From: {'(' * 3000}a@example.com\nSubject: refund\n\nWhere is it?\n".encode(), "x.eml")
    assert not isinstance(document, Failure) and document["author"] is None
    assert "header from nested too deeply to read its addresses: left out" in document["ingest_notes"]


@pytest.mark.parametrize("name", ["Content-Type", "Content-Disposition"])
def test_a_long_mime_header_is_read_up_to_its_limit_in_linear_time(name: str) -> None:
    """The email package parses a MIME header's parameters in time quadratic in its length, and again at each of
    its many fetches: a Content-Type of 24,000 characters of junk parameters took 17 s. It is read up to its
    last parameter within ``MIME_HEADER_CHARS``, with a note."""
    value = "text/plain; charset=utf-8" if name == "Content-Type" else "inline"
    junk = "; x" + "> " * 12_000
    started = time.perf_counter()
    document = parse_email(complaint(1, f"{name}: {value}{junk}\n").encode(), "x.eml")
    assert time.perf_counter() - started < 5
    assert document["text"] == "order 1\n\nMy parcel 1 never arrived."
    assert f"header {name.lower()} read up to 4,096 characters" in document["ingest_notes"]


def test_any_other_error_in_one_message_is_its_own_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> str:
        raise KeyError("part")

    monkeypatch.setattr(email_ingest, "body_text", broken)
    failure = parse_email(complaint(7).encode(), "box@120")
    assert isinstance(failure, Failure) and (failure.input_ref, failure.error_type) == ("box@120", "unparseable_email")
    assert failure.error == "message could not be parsed: KeyError: 'part'"
    assert failure.raw_excerpt.startswith("From: a@example.com")


def test_envelope_lines_split_an_mbox_without_blank_lines_between_messages() -> None:
    """An export that writes no blank line before the next ``From `` line: messages 2 and 3 were read as lines of
    the first message's body. A body line that is no envelope still does not split."""
    mbox = (ENVELOPE + complaint(1, body="From Monday on I waited.\nFrom me: nothing came.") + ENVELOPE + complaint(2)
            + ENVELOPE + complaint(3)).encode()
    messages = [parse_email(raw, ref) for ref, raw in split_mbox(io.BytesIO(mbox), "box")]
    assert [message["text"] for message in messages] == [
        "order 1\n\nFrom Monday on I waited.\nFrom me: nothing came.", "order 2\n\nMy parcel 2 never arrived.",
        "order 3\n\nMy parcel 3 never arrived."]


def test_an_empty_message_mid_mbox_is_a_dead_letter() -> None:
    """Two envelope lines in a row: the empty message vanished into the next one, where a trailing one was a
    ``not_email`` dead letter."""
    mbox = (ENVELOPE + complaint(1) + "\n" + ENVELOPE + ENVELOPE + complaint(2) + "\n" + ENVELOPE).encode()
    records = [parse_email(raw, ref) for ref, raw in split_mbox(io.BytesIO(mbox), "box")]
    assert [record.error_type if isinstance(record, Failure) else record["subject"] for record in records] == [
        "order 1", "not_email", "order 2", "not_email"]
    assert records[1].raw_excerpt == ENVELOPE


def test_stray_nuls_in_a_short_email_are_removed_with_a_note(tmp_path: Path) -> None:
    """Two NULs in an 80-byte message were over the one stray NUL allowed: a ``binary`` dead letter, where clean-up
    removes them with a note. Binary content has other control bytes with its NULs, and stays ``binary``."""
    path = tmp_path / "nul.eml"
    path.write_bytes(b"From: a@example.com\nSubject: nul\nMessage-ID: <n@x>\n\norder \x00 broken \x00 again\n")
    [document] = read_path(str(path))
    cleaned = clean_document(document, 200_000)
    assert cleaned["text"] == "nul\n\norder broken again"
    assert "2 control characters removed" in cleaned["ingest_notes"]
    compressed = parse_email(b"From: a@example.com\nSubject: log\n\n" + random.Random(0).randbytes(3000), "z.eml")
    assert isinstance(compressed, Failure) and compressed.error_type == "binary"


@pytest.mark.parametrize("depth", [300, 1200])
def test_html_nested_hundreds_deep_keeps_its_text_after_the_nesting(depth: int) -> None:
    """libxml2 stops at 256 nested elements unless told the tree is huge, and the text after that was dropped:
    "Start." was all that was read. Past inscriptis's recursion the text is read without layout."""
    html = "<p>Start.</p>" + "<font>" * depth + "<p>Broke after a week, want a refund.</p>"
    document = parse_email(complaint(1, "Content-Type: text/html; charset=utf-8\n", html).encode(), "x.eml")
    assert "Start." in document["text"] and document["text"].endswith("Broke after a week, want a refund.")

