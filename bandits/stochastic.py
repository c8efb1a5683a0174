"""Policies for stationary stochastic rewards: epsilon-greedy, UCB1 and two Thompson samplers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bandits.policy import IndexPolicy, Policy, empirical_means
from bandits.state import StateStore, Stats, Update

_COUNT_AND_SUM = {"count": (), "reward_sum": ()}


class EpsilonGreedy(Policy):
    """Epsilon-greedy: explore a uniformly random arm with probability ``eps_t``, else the best mean.

    ``eps_t = epsilon`` (constant), or with ``c`` and ``d`` given the eps_n-greedy schedule of Auer,
    Cesa-Bianchi & Fischer, "Finite-time Analysis of the Multiarmed Bandit Problem", Machine Learning
    47 (2002): ``eps_t = min(1, c K / (d^2 t))`` with ``0 < d <= min gap``, which has logarithmic regret
    for ``c > 5`` (Theorem 3). Each arm is played once before the greedy step (no made-up initial means).

    :param epsilon: constant exploration probability in [0, 1] (ignored when ``c`` is given).
    :param c, d: the eps_n schedule's constants (``c > 0``, ``0 < d < 1``).
    """

    def __init__(
        self,
        n_arms: int,
        epsilon: float = 0.1,
        *,
        c: float | None = None,
        d: float | None = None,
        seed: int | None = None,
        store: StateStore | None = None,
    ):
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        if (c is None) != (d is None):
            raise ValueError("the eps_n schedule needs both c and d")
        if c is not None and not (c > 0 and 0 < d < 1):
            raise ValueError(f"eps_n schedule needs c > 0 and 0 < d < 1, got c={c}, d={d}")
        # floats, as every policy's settings: the spec is compared as JSON, where 6 and 6.0 differ
        self.epsilon = float(epsilon)
        self.c, self.d = (None, None) if c is None else (float(c), float(d))
        super().__init__(n_arms, seed=seed, store=store)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(_COUNT_AND_SUM)

    def hyperparameters(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon, "c": self.c, "d": self.d}

    def exploration_rate(self, t: int) -> float:
        """``eps_t`` at total pull count ``t``."""
        if self.c is None:
            return self.epsilon
        return min(1.0, self.c * self.n_arms / (self.d**2 * max(t, 1)))

    def _choose(self, stats: Stats, context: np.ndarray | None) -> int:
        count = stats["count"]
        if (count == 0).any():
            return self._argmax((count == 0).astype(float))
        if self.rng.random() < self.exploration_rate(int(count.sum())):
            return int(self.rng.integers(self.n_arms))
        return self._argmax(empirical_means(count, stats["reward_sum"]))

    def _update_for(self, arm: int, reward: float, context: np.ndarray | None) -> Update:
        return Update(arm, {"count": 1.0, "reward_sum": reward})

    def describe_arm(self, arm: int, context: np.ndarray | None = None) -> dict[str, float]:
        s = self.store.read()
        n = float(s["count"][arm])
        return {"pulls": n, "mean": float(empirical_means(s["count"], s["reward_sum"])[arm])}


class UCB1(IndexPolicy):
    """UCB1 (Auer, Cesa-Bianchi & Fischer, Machine Learning 47, 2002), rewards in [0, 1].

    Play each arm once, then the arm maximizing ``mean_i + sqrt(c ln t / n_i)``: ``t`` total pulls,
    ``n_i`` pulls of arm ``i``. With ``c = 2`` (the paper's) the expected regret after ``n`` pulls is at
    most ``8 sum_{i: gap>0} ln n / gap_i + (1 + pi^2/3) sum_j gap_j`` (Theorem 1;
    :func:`bandits.regret.ucb1_regret_bound`).

    :param c: exploration constant (2 in the paper).
    """

    unit_rewards = True

    def __init__(self, n_arms: int, c: float = 2.0, *, seed: int | None = None, store: StateStore | None = None):
        if not c >= 0:
            raise ValueError(f"c must be >= 0, got {c}")
        self.c = float(c)
        super().__init__(n_arms, seed=seed, store=store)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(_COUNT_AND_SUM)

    def hyperparameters(self) -> dict[str, Any]:
        return {"c": self.c}

    def _indices(self, stats: Stats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        count = stats["count"]
        log_t = math.log(max(stats.updates, 1))  # every update is one pull
        if count.min() > 0:
            means = stats["reward_sum"] / count
            bonus = np.sqrt(self.c * log_t / count)
            return means, bonus, means + bonus
        played = count > 0
        safe = np.where(played, count, 1.0)
        means = stats["reward_sum"] / safe
        bonus = np.sqrt(self.c * log_t / safe)
        return means, bonus, np.where(played, means + bonus, np.inf)

    def _update_for(self, arm: int, reward: float, context: np.ndarray | None) -> Update:
        return Update(arm, {"count": 1.0, "reward_sum": reward})


class ThompsonSampling(Policy):
    """Beta-Bernoulli Thompson sampling for rewards in [0, 1] (Agrawal & Goyal, "Analysis of Thompson
    Sampling for the Multi-armed Bandit Problem", COLT 2012, Algorithm 2).

    Sample ``theta_i ~ Beta(S_i + 1, F_i + 1)`` and play the largest. On a reward ``r`` in [0, 1] draw
    ``r' ~ Bernoulli(r)`` and set ``S_i += r'``, ``F_i += 1 - r'``: the posterior stays Beta, the
    Bernoulli means equal the reward means, and the Bernoulli regret bound
    ``O(sum_i ln T / gap_i)`` carries over. (Adding ``r`` and ``1 - r`` directly, or only counting
    ``r > 0``, is not this algorithm.)
    """

    unit_rewards = True

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"successes": (), "failures": ()}

    def _choose(self, stats: Stats, context: np.ndarray | None) -> int:
        return self._argmax(self.rng.beta(stats["successes"] + 1.0, stats["failures"] + 1.0))

    def _update_for(self, arm: int, reward: float, context: np.ndarray | None) -> Update:
        success = 1.0 if self.rng.random() < reward else 0.0
        return Update(arm, {"successes": success, "failures": 1.0 - success})

    def describe_arm(self, arm: int, context: np.ndarray | None = None) -> dict[str, float]:
        s = self.store.read()
        a, b = s["successes"][arm] + 1.0, s["failures"][arm] + 1.0
        return {"pulls": float(a + b - 2.0), "posterior_mean": float(a / (a + b))}


class GaussianThompsonSampling(Policy):
    """Gaussian Thompson sampling for unbounded rewards (Agrawal & Goyal, "Further Optimal Regret
    Bounds for Thompson Sampling", AISTATS 2013, Algorithm 2).

    With ``n_i`` pulls and reward sum ``s_i``: ``mu_i = s_i / (n_i + 1)``; sample
    ``theta_i ~ N(mu_i, sigma^2 / (n_i + 1))`` and play the largest (a N(0, sigma^2) prior and a Gaussian
    likelihood of variance ``sigma^2``). Regret ``O(sqrt(K T ln K))`` for rewards whose noise is
    ``sigma``-sub-Gaussian.

    :param sigma: reward noise scale, in reward units.
    """

    def __init__(self, n_arms: int, sigma: float = 1.0, *, seed: int | None = None, store: StateStore | None = None):
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)
        super().__init__(n_arms, seed=seed, store=store)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(_COUNT_AND_SUM)

    def hyperparameters(self) -> dict[str, Any]:
        return {"sigma": self.sigma}

    def _posterior(self, stats: Stats) -> tuple[np.ndarray, np.ndarray]:
        n1 = stats["count"] + 1.0
        return stats["reward_sum"] / n1, self.sigma / np.sqrt(n1)

    def _choose(self, stats: Stats, context: np.ndarray | None) -> int:
        mean, std = self._posterior(stats)
        return self._argmax(mean + std * self.rng.standard_normal(self.n_arms))

    def _update_for(self, arm: int, reward: float, context: np.ndarray | None) -> Update:
        return Update(arm, {"count": 1.0, "reward_sum": reward})

    def describe_arm(self, arm: int, context: np.ndarray | None = None) -> dict[str, float]:
        stats = self.store.read()
        mean, std = self._posterior(stats)
        return {"pulls": float(stats["count"][arm]), "posterior_mean": float(mean[arm]), "posterior_std": float(std[arm])}
