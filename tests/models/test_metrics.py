"""Metrics on hand-made cases whose answers are worked out by hand."""

from __future__ import annotations

import pytest

from models.metrics import classification_report, expected_calibration_error


def test_report_on_a_hand_made_case() -> None:
    gold = ["pos", "pos", "pos", "neg", "neg", "neu"]
    predicted = ["pos", "pos", "neg", "neg", "pos", "neu"]
    report = classification_report(gold, predicted, ["neg", "neu", "pos"])
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["per_class"]["pos"]["recall"] == pytest.approx(2 / 3)
    assert report["per_class"]["pos"]["precision"] == pytest.approx(2 / 3)
    assert report["per_class"]["neg"]["recall"] == pytest.approx(1 / 2)
    assert report["macro_recall"] == pytest.approx((1 / 2 + 1 + 2 / 3) / 3)
    assert report["confusion_matrix"] == [[1, 0, 1], [0, 1, 0], [1, 0, 2]]


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident() -> None:
    assert expected_calibration_error([0.75] * 4, [True, True, True, False]) == pytest.approx(0.0)
    assert expected_calibration_error([0.99] * 4, [False] * 4) == pytest.approx(0.99)
