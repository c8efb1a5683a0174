"""UCB for rewards that drift: discounted and sliding-window UCB (Garivier & Moulines, "On
Upper-Confidence Bound Policies for Switching Bandit Problems", ALT 2011).

Both forget old rewards in the counts *and* the sums, so the means stay means and the exploration
bonus grows again for arms not played lately; rewards in [0, B] (B = 1 here: use a RewardAdapter).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import numpy as np

from bandits.policy import IndexPolicy, empirical_means
from bandits.state import StateStore, Stats, Update


def discount_for(horizon: int, n_breakpoints: int) -> float:
    """The paper's discount for ``n_breakpoints`` changes in ``horizon`` steps: ``1 - sqrt(Y/T) / 4``."""
    _check_tuning(horizon, n_breakpoints)
    return 1.0 - math.sqrt(n_breakpoints / horizon) / 4.0


def window_for(horizon: int, n_breakpoints: int) -> int:
    """The paper's window for ``n_breakpoints`` changes in ``horizon`` steps: ``2 sqrt(T ln T / Y)`` (B = 1)."""
    _check_tuning(horizon, n_breakpoints)
    return max(1, int(round(2.0 * math.sqrt(horizon * math.log(horizon) / n_breakpoints))))


def _check_tuning(horizon: int, n_breakpoints: int) -> None:
    if horizon < 2 or n_breakpoints < 1:
        raise ValueError(f"need horizon >= 2 and n_breakpoints >= 1, got {horizon}, {n_breakpoints}")


class _ForgettingUCB(IndexPolicy):
    """UCB on counts and sums that forget; subclasses give the forgetting and the padding."""

    unit_rewards = True

    def __init__(self, n_arms: int, xi: float, seed: int | None, store: StateStore | None):
        if not xi > 0:
            raise ValueError(f"xi must be > 0 (the analysis needs xi > 1/2), got {xi}")
        self.xi = float(xi)
        super().__init__(n_arms, seed=seed, store=store)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"count": (), "reward_sum": ()}

    @abstractmethod
    def _padding(self, stats: Stats, count: np.ndarray) -> np.ndarray:
        """The exploration bonus per arm, given the (positive) per-arm counts."""

    def _indices(self, stats: Stats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        count = stats["count"]
        played = count > 1e-12  # a discounted count never returns to 0 exactly
        means = empirical_means(np.where(played, count, 0.0), stats["reward_sum"])
        bonus = self._padding(stats, np.where(played, count, 1.0))
        return means, bonus, np.where(played, means + bonus, np.inf)



class DiscountedUCB(_ForgettingUCB):
    """Discounted UCB (D-UCB; Kocsis & Szepesvari 2006, analysed by Garivier & Moulines 2011).

    ``N_i = sum_s gamma^(t-s) 1{I_s = i}``, ``S_i = sum_s gamma^(t-s) X_s 1{I_s = i}``; index
    ``S_i / N_i + 2 B sqrt(xi ln n / N_i)`` with ``n = sum_i N_i`` and B = 1. Each update multiplies
    every arm's ``N`` and ``S`` by ``gamma`` and then adds the new pull (the store does it lazily). Regret
    ``O(sqrt(T Y) ln T)`` for ``Y`` breakpoints with ``gamma = 1 - sqrt(Y/T)/4``
    (:func:`discount_for`).

    :param gamma: discount in (0, 1]. :param xi: padding constant (> 1/2 in the analysis).
    """

    def __init__(
        self, n_arms: int, gamma: float = 0.99, xi: float = 0.6, *, seed: int | None = None, store: StateStore | None = None
    ):
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        self.gamma = self.stats_discount = float(gamma)
        super().__init__(n_arms, xi, seed, store)

    def hyperparameters(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "xi": self.xi}

    def _padding(self, stats: Stats, count: np.ndarray) -> np.ndarray:
        n = max(float(stats["count"].sum()), 1.0)
        return 2.0 * np.sqrt(self.xi * math.log(n) / count)

    def _update_for(self, arm: int, reward: float, context: np.ndarray | None) -> Update:
        return Update(arm, {"count": 1.0, "reward_sum": reward})  # the store discounts (spec.discount)


class SlidingWindowUCB(_ForgettingUCB):
    """Sliding-window UCB (SW-UCB; Garivier & Moulines 2011).

    Over the last ``tau`` plays: ``N_i`` pulls of arm ``i`` and their reward sum ``S_i``; index
    ``S_i / N_i + B sqrt(xi ln min(t, tau) / N_i)`` (B = 1; an arm absent from the window has an
    infinite index). Regret ``O(sqrt(T Y ln T))`` with ``tau = 2 B sqrt(T ln T / Y)``
    (:func:`window_for`).

    :param window: ``tau``, plays remembered. :param xi: padding constant (> 1/2 in the analysis).
    """

    def __init__(
        self, n_arms: int, window: int = 500, xi: float = 0.6, *, seed: int | None = None, store: StateStore | None = None
    ):
        if int(window) != window or window < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}")
        self.window = self.stats_window = int(window)
        super().__init__(n_arms, xi, seed, store)

    def hyperparameters(self) -> dict[str, Any]:
        return {"window": self.window, "xi": self.xi}

    def _padding(self, stats: Stats, count: np.ndarray) -> np.ndarray:
        return np.sqrt(self.xi * math.log(max(min(stats.updates, self.window), 1)) / count)

    def _update_for(self, arm: int, reward: float, context: np.ndarray | None) -> Update:
        return Update(arm, {"count": 1.0, "reward_sum": reward})  # the store windows (spec.window)
