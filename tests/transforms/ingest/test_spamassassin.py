"""Every one of the 2,400 real SpamAssassin messages parses into usable text."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from transforms.clean import clean_document
from transforms.ingest.read import read_path
from transforms.records import Failure

TAG = re.compile(r"<\s*/?\s*(html|head|body|p|div|span|table|tr|td|font|br|a|img|style|script)\b[^>]*>", re.I)


def test_whole_corpus_parses_with_text_and_decoded_subjects(shared_data: Path) -> None:
    files = sorted((shared_data / "email" / "spamassassin").glob("*/*"))
    assert len(files) == 2400
    outcomes: Counter[str] = Counter()
    html_with_tags, encoded_subjects, with_body = [], [], 0
    for path in files:
        for record in read_path(str(path)):
            document = record if isinstance(record, Failure) else clean_document(record, 200_000)
            if isinstance(document, Failure):
                outcomes[f"{document.stage}:{document.error_type}"] += 1
                continue
            outcomes["ok"] += 1
            with_body += bool((document["full_text"] or "").strip())
            if "html converted to text" in document["ingest_notes"] and TAG.search(document["full_text"] or ""):
                html_with_tags.append(path.name)
            if document["subject"] and "=?" in document["subject"]:
                encoded_subjects.append(path.name)
    assert outcomes == {"ok": 2400}
    assert with_body / 2400 >= 0.99
    assert html_with_tags == []
    assert encoded_subjects == []
