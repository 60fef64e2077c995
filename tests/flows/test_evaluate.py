"""The evaluate flow's reading of a labeled file against a bundle's task, before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.evaluate import evaluation_examples


def test_labels_written_in_another_case_or_with_spaces_are_the_tasks_labels(tiny_bundle: Path,
                                                                            tmp_path: Path) -> None:
    """A spreadsheet export's ``Positive `` and ``NEGATIVE`` were refused as labels the task does not have."""
    data = tmp_path / "gold.csv"
    data.write_bytes("\ufefftext,label\r\nlovely,Positive \r\nawful, NEGATIVE\r\nit is Tuesday,neutral\r\n"
                     "great,positive\r\n".encode())
    notes: list[str] = []
    examples = evaluation_examples(str(tiny_bundle), "sentiment", str(data), notes=notes)
    assert [e.label for e in examples] == ["positive", "negative", "neutral", "positive"]
    assert notes == [f"{data}: took labels 'NEGATIVE', 'Positive' as the task's 'negative', 'positive'"]


def test_labels_the_task_does_not_have_are_still_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    data = tmp_path / "gold.csv"
    data.write_text("text,label\nlovely,Positive\nmeh,Mixed\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"labels \['Mixed'\] are not labels of task 'sentiment'"):
        evaluation_examples(str(tiny_bundle), "sentiment", str(data), notes=[])


def test_rows_left_out_of_an_evaluation_are_counted(tiny_bundle: Path, tmp_path: Path) -> None:
    """Rows without a text or a label were skipped without a word: n was smaller than the file and nothing said so."""
    data = tmp_path / "gold.csv"
    data.write_text("text,label\nlovely,positive\n,\n\nawful,negative\n,negative\nno label yet,\n", encoding="utf-8")
    notes: list[str] = []
    examples = evaluation_examples(str(tiny_bundle), "sentiment", str(data), notes=notes)
    assert len(examples) == 2
    assert notes == [f"{data}: skipped 3 of 5 rows without a text or a label"]


def test_label_map_keys_match_labels_in_any_case(tiny_bundle: Path, tmp_path: Path) -> None:
    """Labels were taken in any case but ``--label-map pos=positive`` did not rename a ``POS`` cell."""
    data = tmp_path / "gold.csv"
    data.write_text("text,label\nlovely,POS\nawful,neg\ngreat,Pos\n", encoding="utf-8")
    examples = evaluation_examples(str(tiny_bundle), "sentiment", str(data),
                                   label_map={"pos": "positive", "NEG": "negative"}, notes=[])
    assert [e.label for e in examples] == ["positive", "negative", "positive"]


def test_a_label_map_with_keys_that_differ_only_in_case_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    data = tmp_path / "gold.csv"
    data.write_text("text,label\nlovely,pos\nawful,POS\n", encoding="utf-8")
    with pytest.raises(ValueError, match="--label-map: keys 'POS' and 'pos' differ only in case"):
        evaluation_examples(str(tiny_bundle), "sentiment", str(data),
                            label_map={"pos": "positive", "POS": "negative"}, notes=[])
