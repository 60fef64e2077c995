"""Records shared by every stage: excerpts of raw input in dead letters."""

from __future__ import annotations

from transforms.records import EXCERPT_CHARS, excerpt


def test_an_excerpt_shows_undecodable_bytes_and_control_characters_escaped() -> None:
    """The start of a gzip file saved as .eml: raw NUL and backspace in a dead-letter cell read as nothing."""
    assert excerpt(b"\x1f\x8b\x08\x00\xffname\tcolumn\r\n") == "\\x1f\\x8b\\x08\\x00\\xffname\tcolumn\r\n"
    assert excerpt("ok\x00\x07 fine\nnext line") == "ok\\x00\\x07 fine\nnext line"


def test_an_excerpt_is_cut_after_escaping() -> None:
    assert excerpt("\x00" * 1000) == "\\x00" * (EXCERPT_CHARS // 4)
    assert len(excerpt("a" * 100_000)) == EXCERPT_CHARS
    assert excerpt(None) is None
