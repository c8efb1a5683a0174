"""EXP3 for rewards chosen by an adversary (Auer, Cesa-Bianchi, Freund & Schapire, "The Nonstochastic
Multiarmed Bandit Problem", SIAM J. Computing 32, 2002)."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from bandits.policy import Policy
from bandits.state import StateStore, Stats, Update


def exp3_gamma(n_arms: int, horizon: int) -> float:
    """Corollary 3.2's ``gamma = min(1, sqrt(K ln K / ((e - 1) g)))`` with ``g = horizon`` >= the best arm's total."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    return min(1.0, math.sqrt(n_arms * math.log(n_arms) / ((math.e - 1.0) * horizon)))


class EXP3(Policy):
    """EXP3, rewards in [0, 1].

    ``p_i = (1 - gamma) w_i / sum_j w_j + gamma / K``; draw the arm from ``p``; on reward ``x`` of arm
    ``i`` set ``w_i *= exp(gamma x / (p_i K))`` (importance-weighted estimate ``x / p_i``). Weights are
    kept as logarithms. Against any oblivious reward sequence the expected regret to the best fixed arm
    is at most ``2 sqrt(e - 1) sqrt(g K ln K)`` when ``gamma = exp3_gamma(K, g)`` and the best arm's
    total is <= ``g`` (Corollary 3.2; :func:`bandits.regret.exp3_regret_bound`).

    ``p_i`` of the update is the distribution this worker sampled its last arm from (other workers'
    updates in between do not change the importance weight of a draw already made). The estimate is
    unbiased only for the arm drawn, once: :meth:`update` takes exactly one reward per :meth:`select`,
    for the arm it returned, and raises ``ValueError`` otherwise (a new ``select`` replaces a draw not
    updated).

    :param gamma: exploration in (0, 1]; default from ``horizon`` via :func:`exp3_gamma`.
    :param horizon: ``g`` for the default ``gamma``.
    """

    unit_rewards = True
    one_update_per_choice = True

    def __init__(
        self,
        n_arms: int,
        gamma: float | None = None,
        *,
        horizon: int = 10_000,
        seed: int | None = None,
        store: StateStore | None = None,
    ):
        self.gamma = float(exp3_gamma(n_arms, horizon) if gamma is None else gamma)
        if not (0.0 < self.gamma <= 1.0 or (n_arms == 1 and self.gamma == 0.0)):
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        self._last_probs: np.ndarray | None = None  # the pending draw: its distribution and arm
        self._last_arm: int | None = None
        super().__init__(n_arms, seed=seed, store=store)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"log_weight": (), "count": ()}

    def hyperparameters(self) -> dict[str, Any]:
        return {"gamma": self.gamma}

    def probabilities(self, stats: Stats | None = None) -> np.ndarray:
        """The sampling distribution ``p`` ``(K,)`` from the current weights."""
        log_w = (stats or self.store.read())["log_weight"]
        w = np.exp(log_w - log_w.max())
        return (1.0 - self.gamma) * w / w.sum() + self.gamma / self.n_arms

    def _choose(self, stats: Stats, context: np.ndarray | None) -> int:
        p = self.probabilities(stats)
        self._last_probs = p
        arm = int(np.searchsorted(np.cumsum(p), self.rng.random() * p.sum(), side="right"))
        self._last_arm = min(arm, self.n_arms - 1)
        return self._last_arm

    def _update_for(self, arm: int, reward: float, context: np.ndarray | None) -> Update:
        p, drawn = self._last_probs, self._last_arm
        if p is None or drawn is None:
            raise ValueError(f"EXP3: update for arm {arm} with no draw pending; one update per select(), for its arm")
        if arm != drawn:
            raise ValueError(f"EXP3: update for arm {arm}, but the pending draw is arm {drawn} (x / p_i is unbiased "
                             "only for the arm drawn)")
        self._last_probs = self._last_arm = None
        return Update(arm, {"log_weight": self.gamma * reward / (p[arm] * self.n_arms), "count": 1.0})

    def describe_arm(self, arm: int, context: np.ndarray | None = None) -> dict[str, float]:
        stats = self.store.read()
        return {"pulls": float(stats["count"][arm]), "probability": float(self.probabilities(stats)[arm])}

    def _local_state(self) -> dict[str, Any]:
        probs = None if self._last_probs is None else self._last_probs.tolist()
        return {"last_probs": probs, "last_arm": self._last_arm}

    def _load_local_state(self, state: Mapping[str, Any]) -> None:
        probs, arm = state.get("last_probs"), state.get("last_arm")
        if probs is None or arm is None:  # no draw pending (or a state saved before the arm was kept)
            self._last_probs = self._last_arm = None
        else:
            self._last_probs, self._last_arm = np.asarray(probs, dtype=np.float64), int(arm)
