"""The common shape of every bandit policy: seeded, ``select``/``update``, statistics in a store.

A policy computes its index (or samples) in the client from the statistics it reads from its
:class:`~bandits.state.StateStore`, and changes them only through atomic updates, so the same object
works alone (in-memory store, the default) or as one of several workers sharing a bandit (Redis store).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Mapping

import numpy as np

from bandits.state import InMemoryStateStore, StateStore, Stats, StatsSpec, Update


class Policy(ABC):
    """Base class: ``select(context=None) -> arm``, ``update(arm, reward, context=None)``.

    :param n_arms: number of arms, >= 1.
    :param seed: seed of the policy's ``numpy.random.Generator`` (tie-breaking, exploration, samples).
    :param store: where the statistics live; a fresh :class:`InMemoryStateStore` by default.

    Subclasses set :attr:`unit_rewards` (True when rewards must lie in [0, 1]: use a
    :class:`~bandits.rewards.RewardAdapter`) and implement :meth:`shapes`, :meth:`_choose`,
    :meth:`_update_for` and :meth:`describe_arm`.
    """

    unit_rewards: bool = False
    contextual: bool = False
    #: True when an update is an importance-weighted estimate of the choice just drawn (EXP3): a caller must
    #: update once per :meth:`select`, for the arm selected, never for records the choice did not draw (EXP3 raises)
    one_update_per_choice: bool = False
    #: how the statistics forget (see :class:`~bandits.state.StatsSpec`); set before ``__init__`` runs
    stats_discount: float | None = None
    stats_window: int | None = None

    def __init__(self, n_arms: int, *, seed: int | None = None, store: StateStore | None = None):
        if int(n_arms) != n_arms or n_arms < 1:
            raise ValueError(f"n_arms must be a positive integer, got {n_arms!r}")
        self.n_arms = int(n_arms)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.store = store if store is not None else InMemoryStateStore()
        forgetting = {"discount": self.stats_discount, "window": self.stats_window}
        self.store.attach(StatsSpec(type(self).__name__, self.n_arms, self.shapes(), self.hyperparameters(), **forgetting))

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-arm shape of each statistic, e.g. ``{"count": (), "reward_sum": ()}``."""

    def hyperparameters(self) -> dict[str, Any]:
        """Settings that must agree between workers sharing a store (JSON-ready)."""
        return {}

    @abstractmethod
    def _choose(self, stats: Stats, context: np.ndarray | None) -> int:
        """The arm to play given the statistics (and the context, for contextual policies)."""

    @abstractmethod
    def _update_for(self, arm: int, reward: float, context: np.ndarray | None) -> Update:
        """The atomic update that records ``reward`` for ``arm``."""

    @abstractmethod
    def describe_arm(self, arm: int, context: np.ndarray | None = None) -> dict[str, float]:
        """What the policy currently believes about ``arm`` (index, mean, pulls...), for explanations."""

    # ------------------------------------------------------------------ public API
    @property
    def name(self) -> str:
        return type(self).__name__

    def select(self, context: np.ndarray | None = None) -> int:
        """The arm to play now, in ``[0, n_arms)``."""
        return self._choose(self.store.read(), self._check_context(context))

    def update(self, arm: int, reward: float, context: np.ndarray | None = None) -> None:
        """Record ``reward`` (finite; in [0, 1] when :attr:`unit_rewards`) for ``arm``."""
        arm = self._check_arm(arm)
        reward = self._check_reward(reward)
        self.store.apply(self._update_for(arm, reward, self._check_context(context)))

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state: statistics (from the store), RNG state and settings."""
        return {
            "policy": self.name,
            "n_arms": self.n_arms,
            "hyperparameters": self.hyperparameters(),
            "stats": self.store.dump(),
            "rng": self.rng.bit_generator.state,
            "local": self._local_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output of a policy with the same class and settings.

        With a shared store this overwrites the shared statistics.
        """
        mine = {"policy": self.name, "n_arms": self.n_arms, "hyperparameters": self.hyperparameters()}
        theirs = {k: state.get(k) for k in mine}
        if theirs != mine:
            raise ValueError(f"load_state_dict: state is for {theirs}, this policy is {mine}")
        self.store.restore(state["stats"])
        self.rng.bit_generator.state = state["rng"]
        self._load_local_state(state.get("local") or {})

    def _local_state(self) -> dict[str, Any]:
        """Per-worker state outside the store (e.g. EXP3's last sampling distribution)."""
        return {}

    def _load_local_state(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`_local_state`."""

    # ------------------------------------------------------------------ helpers
    def _argmax(self, values: np.ndarray) -> int:
        """Index of the largest value, ties broken uniformly at random with :attr:`rng`."""
        best = int(values.argmax())
        ties = values == values[best]
        if ties.sum() == 1:
            return best
        candidates = np.flatnonzero(ties)
        return int(candidates[self.rng.integers(candidates.size)])

    def _check_arm(self, arm: int) -> int:
        try:
            a = int(arm)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name}: arm must be an integer, got {arm!r}") from None
        if a != arm or not 0 <= a < self.n_arms:
            raise ValueError(f"{self.name}: arm {arm!r} not in [0, {self.n_arms})")
        return a

    def _check_reward(self, reward: float) -> float:
        try:
            r = float(reward)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name}: reward must be a number, got {reward!r}") from None
        if not math.isfinite(r):
            raise ValueError(f"{self.name}: reward is {r}; rewards must be finite")
        if self.unit_rewards and not 0.0 <= r <= 1.0:
            raise ValueError(f"{self.name}: reward {r} is outside [0, 1]; map it with bandits.RewardAdapter")
        return r

    def _check_context(self, context: np.ndarray | None) -> np.ndarray | None:
        return None  # non-contextual policies ignore the context


class IndexPolicy(Policy):
    """A policy that plays the arm of largest index ``mean + bonus`` (UCB family); an arm whose index
    is ``inf`` has not been played (or has left the window) and goes first."""

    @abstractmethod
    def _indices(self, stats: Stats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-arm ``(means, bonuses, indices)``, each ``(K,)``."""

    def _choose(self, stats: Stats, context: np.ndarray | None) -> int:
        return self._argmax(self._indices(stats)[2])

    def describe_arm(self, arm: int, context: np.ndarray | None = None) -> dict[str, float]:
        stats = self.store.read()
        means, bonus, index = self._indices(stats)
        return {
            "pulls": float(stats["count"][arm]),
            "mean": float(means[arm]),
            "bonus": float(bonus[arm]),
            "index": float(index[arm]),
        }


def empirical_means(count: np.ndarray, reward_sum: np.ndarray) -> np.ndarray:
    """Per-arm ``reward_sum / count`` (0 where the count is 0)."""
    return reward_sum / np.where(count > 0, count, 1.0)
