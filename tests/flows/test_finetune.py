"""The finetune flow's orchestration: which runs it trains, what it averages, what it registers.

Training and evaluation themselves are tested in tests/models on tiny models; here they are recorded
instead of run, so the test checks the flow's wiring in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import flows.finetune as finetune
from models.recipes import SOUP_RECIPES


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(name: str, result: Any) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, {"args": args, **kwargs}))
            return result
        return call

    monkeypatch.setattr(finetune, "train_base", record("train", {}))
    monkeypatch.setattr(finetune, "soup_base", record("soup", {}))
    monkeypatch.setattr(finetune, "finalize_bundle", record("finalize", {"evaluation": {}}))
    monkeypatch.setattr(finetune, "write_card", record("card", None))
    monkeypatch.setattr(finetune, "register", record("register", {"model_version": "m@1", "default": False,
                                                                     "metrics": {}}))
    return calls


def test_soup_trains_one_run_per_recipe_then_ships_only_their_average(prefect_harness, recorded: list,
                                                                       tmp_path: Path) -> None:
    finetune.finetune_flow(output=str(tmp_path / "base"), tasks=["sentiment", "spam"], version="2.0.0", seed=7,
                           epochs=0.5, data_dir=str(tmp_path), soup=True, ingredients_dir=str(tmp_path / "runs"),
                           promote=True)
    names = [name for name, _ in recorded]
    assert names == ["train", "train", "soup", "finalize", "card", "register"]
    trained = [call for name, call in recorded if name == "train"]
    folders = [str(tmp_path / "runs" / recipe) for recipe in SOUP_RECIPES]
    assert [str(call["args"][0]) for call in trained] == folders
    assert [call["args"][3] for call in trained] == [f"2.0.0+{recipe}" for recipe in SOUP_RECIPES]
    assert [call["sst2_binary"] for call in trained] == list(SOUP_RECIPES.values()) == [False, True]
    assert trained[0]["args"][2] == trained[1]["args"][2]  # the same TrainingArguments: same seed, same batches
    assert trained[0]["args"][2].seed == 7 and trained[0]["args"][2].epochs == 0.5
    assert trained[0]["args"][4] == ("sentiment", "spam")
    soup = next(call for name, call in recorded if name == "soup")
    assert [str(folder) for folder in soup["args"][2]] == folders and soup["args"][3] == "2.0.0"
    register = next(call for name, call in recorded if name == "register")
    assert str(register["args"][0]) == str(tmp_path / "base") and register["promote"] is True  # ingredients are not
    command = next(call for name, call in recorded if name == "card")["args"][1]
    assert command.startswith("undertone finetune --soup --tasks sentiment,spam --output ")
    assert "--seed 7 --epochs 0.5 --ingredients-dir" in command and command.endswith("--promote")


def test_soup_refuses_options_that_would_make_its_runs_differ(prefect_harness, recorded: list,
                                                               tmp_path: Path) -> None:
    for option in ({"sst2_binary": True}, {"init_from": str(tmp_path)}, {"soup_of": ["a", "b"]}):
        with pytest.raises(ValueError, match="--soup trains its own ingredients"):
            finetune.finetune_flow(output=str(tmp_path / "base"), soup=True, **option)
    assert recorded == []
