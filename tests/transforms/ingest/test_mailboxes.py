"""Mailboxes built with the standard library's ``mailbox`` from real SpamAssassin messages."""

from __future__ import annotations

import io
import mailbox
from pathlib import Path

import pytest

from transforms.ingest.email import split_mbox
from transforms.ingest.read import detect_format, expand_inputs, read_path
from transforms.records import Failure

MESSAGES = ("ham/00046.c8491e68aa5652272d6511bb7d848d37", "ham/01693.5f6c04f93ace9da3b5f9e0906ba608c2",
            "spam/00124.db848e36f1b4c2705cbc16ef33a302d4", "spam/00329.af4af411fb1268d1461b29fa2d2145a3")
SUBJECTS = {"FYI - gone this weekend", "[Spambayes] can't write to CVS...",
            "Guaranteed to lose 10-12 lbs in 30 days with Slim Patch 10.24", "拾金不昧~~別傻了~~"}


@pytest.fixture
def real_messages(shared_data: Path) -> list[bytes]:
    return [(shared_data / "email" / "spamassassin" / name).read_bytes() for name in MESSAGES]


def test_maildir_reads_cur_and_new_and_skips_tmp_and_server_files(tmp_path: Path, real_messages: list[bytes]) -> None:
    root = tmp_path / "Maildir"
    inbox = mailbox.Maildir(root)
    for raw in real_messages[:2]:
        message = mailbox.MaildirMessage(raw)
        message.set_subdir("cur")
        message.set_flags("S")
        inbox.add(message)
    inbox.add(mailbox.MaildirMessage(real_messages[2]))
    sent = inbox.add_folder("Sent")
    sent.add(mailbox.MaildirMessage(real_messages[3]))
    (root / "tmp" / "1700000000.M1P2.host").write_bytes(b"From: half@written\nSubject: in flight\n\npartial")
    (root / "dovecot-uidlist").write_text("3 V1700000000 N4\n", encoding="utf-8")
    (root / ".Sent" / "maildirfolder").write_text("", encoding="utf-8")

    files = expand_inputs([str(tmp_path)])
    assert [Path(f).parent.name for f in files].count("cur") == 2
    assert {Path(f).parent.name for f in files} == {"cur", "new"} and len(files) == 4
    assert all(":2,S" in Path(f).name for f in files if Path(f).parent.name == "cur")
    assert all(detect_format(f, b"") == "email" for f in files if Path(f).parent.name == "cur")
    documents = [record for path in files for record in read_path(path)]
    assert not any(isinstance(d, Failure) for d in documents)
    assert {d["subject"] for d in documents} == SUBJECTS
    assert {d["input_ref"] for d in documents} == set(files)


def test_maildir_tmp_files_are_skipped_when_globbed(tmp_path: Path, real_messages: list[bytes]) -> None:
    inbox = mailbox.Maildir(tmp_path / "Maildir")
    inbox.add(mailbox.MaildirMessage(real_messages[0]))
    (tmp_path / "Maildir" / "tmp" / "1700000000.M1P2.host").write_bytes(real_messages[1])
    files = expand_inputs([str(tmp_path / "Maildir" / "*" / "*")])
    assert [Path(f).parent.name for f in files] == ["new"]


def test_mbox_with_several_real_messages(tmp_path: Path, real_messages: list[bytes]) -> None:
    box = mailbox.mbox(tmp_path / "archive")
    for raw in real_messages:
        box.add(mailbox.mboxMessage(raw))
    box.flush()
    documents = list(read_path(str(tmp_path / "archive")))
    assert len(documents) == 4 and not any(isinstance(d, Failure) for d in documents)
    assert {d["subject"] for d in documents} == SUBJECTS
    offsets = [int(d["input_ref"].rsplit("@", 1)[1]) for d in documents]
    raw = (tmp_path / "archive").read_bytes()
    assert offsets[0] == 0 and all(raw[offset:].startswith(b"From ") for offset in offsets)


def test_every_spamassassin_envelope_starts_a_message_and_no_body_line_does(shared_data: Path) -> None:
    raws = [path.read_bytes() for path in sorted((shared_data / "email" / "spamassassin").glob("*/*"))]
    with_envelope = [raw for raw in raws if raw.startswith(b"From ")]
    assert len(with_envelope) > 2000
    archive = b"".join(raw.rstrip(b"\n") + b"\n\n" for raw in with_envelope)
    messages = [raw for _, raw in split_mbox(io.BytesIO(archive), "corpus")]
    assert [raw.split(b"\n", 1)[0] for raw in messages] == [raw.split(b"\n", 1)[0] for raw in with_envelope]
