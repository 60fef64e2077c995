"""Every BANKING77 intent has a team, and unsure predictions are not routed."""

from __future__ import annotations

import csv
from pathlib import Path

from models.routing import INTENT_TEAM, UNROUTED, route


def test_every_banking77_intent_maps_to_exactly_one_team(shared_data: Path) -> None:
    with (shared_data / "intent" / "banking77" / "train.csv").open(encoding="utf-8", newline="") as handle:
        intents = {row["category"] for row in csv.DictReader(handle)}
    assert len(intents) == 77
    assert set(INTENT_TEAM) == intents


def test_low_confidence_is_unrouted() -> None:
    assert route("lost_or_stolen_card", 0.93) == "security"
    assert route("lost_or_stolen_card", 0.31) == UNROUTED
    assert route("not_a_banking_intent", 0.99) == UNROUTED
    assert route(None, None) is None
