"""Command-line pieces shared by the benchmark scripts (imported from the script's own folder)."""

from __future__ import annotations

import argparse

SPLITS = ("train", "test", "all")
"""``--split`` choices: a split of the built-in set, or ``all`` its clips."""


def positive_int(text: str) -> int:
    """argparse type: a count of at least 1 (0 would measure nothing, and its figures would be NaN)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (at least 1), got {value}")
    return value


def select_split(scenario_set, split: str):
    """The clips of ``split`` (one of :data:`SPLITS`); a split without clips raises ``ScenarioError``."""
    return scenario_set if split == "all" else scenario_set.split(split)
