"""Regret: simulated bandit problems, regret curves, and the classical bounds as functions.

A problem draws a whole :class:`Instance` at once (vectorized): the reward every arm would pay at every
step, its expectation, and the contexts. A policy then plays it step by step; the regret is computed
from the arms it chose.

* pseudo-regret ``sum_t max_k E[r_t,k] - E[r_t,a_t]`` (stochastic problems: the oracle knows the
  means, per step, so for piecewise-stationary and contextual problems it is the dynamic oracle);
* hindsight regret ``max_k sum_t r_t,k - sum_t r_t,a_t`` (adversarial problems: the best fixed arm
  on the realized sequence, for every prefix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

from bandits.policy import Policy


@dataclass(frozen=True)
class Instance:
    """One drawn problem: ``rewards`` ``(T, K)``, their expectations ``(T, K)``, ``contexts`` ``(T, d)`` or None."""

    rewards: np.ndarray
    expected: np.ndarray
    contexts: np.ndarray | None = None

    @property
    def horizon(self) -> int:
        return self.rewards.shape[0]


class Problem(Protocol):
    n_arms: int

    def sample(self, horizon: int, rng: np.random.Generator) -> Instance: ...


def _means(means: Sequence[float], low: float = -np.inf, high: float = np.inf) -> np.ndarray:
    m = np.asarray(means, dtype=np.float64)
    if m.ndim != 1 or m.size < 1 or not np.all((m >= low) & (m <= high)):
        raise ValueError(f"means must be a 1-d array in [{low}, {high}], got {means!r}")
    return m


class BernoulliBandit:
    """Arm ``k`` pays 1 with probability ``means[k]``, else 0."""

    def __init__(self, means: Sequence[float]):
        self.means = _means(means, 0.0, 1.0)
        self.n_arms = self.means.size

    def sample(self, horizon: int, rng: np.random.Generator) -> Instance:
        rewards = (rng.random((horizon, self.n_arms)) < self.means).astype(np.float64)
        return Instance(rewards, np.broadcast_to(self.means, rewards.shape))


class GaussianBandit:
    """Arm ``k`` pays ``N(means[k], sigma^2)``."""

    def __init__(self, means: Sequence[float], sigma: float = 1.0):
        self.means, self.sigma = _means(means), float(sigma)
        self.n_arms = self.means.size

    def sample(self, horizon: int, rng: np.random.Generator) -> Instance:
        rewards = self.means + self.sigma * rng.standard_normal((horizon, self.n_arms))
        return Instance(rewards, np.broadcast_to(self.means, rewards.shape))


class PiecewiseStationaryBandit:
    """Bernoulli arms whose means change at breakpoints.

    :param means: ``(S, K)``: row ``s`` holds the means of segment ``s``.
    :param breakpoints: the ``S - 1`` steps at which a new segment starts (increasing).
    """

    def __init__(self, means: Sequence[Sequence[float]], breakpoints: Sequence[int]):
        self.means = np.asarray(means, dtype=np.float64)
        self.breakpoints = np.asarray(breakpoints, dtype=np.int64)
        if self.means.ndim != 2 or not np.all((self.means >= 0) & (self.means <= 1)):
            raise ValueError(f"means must be (segments, arms) in [0, 1], got shape {self.means.shape}")
        if self.breakpoints.shape != (self.means.shape[0] - 1,) or np.any(np.diff(self.breakpoints) <= 0):
            raise ValueError(f"need {self.means.shape[0] - 1} increasing breakpoints, got {list(breakpoints)}")
        self.n_arms = self.means.shape[1]

    def sample(self, horizon: int, rng: np.random.Generator) -> Instance:
        segment = np.searchsorted(self.breakpoints, np.arange(horizon), side="right")
        expected = self.means[segment]
        return Instance((rng.random(expected.shape) < expected).astype(np.float64), expected)


class LinearContextualBandit:
    """Bernoulli rewards whose means are linear in the context: ``p_k(x) = clip(theta_k . x, 0, 1)``.

    Contexts are ``x = (1, u)`` with ``u ~ Uniform[0, 1]^(d-1)``: a constant (intercept) and ``d - 1``
    features. :param theta: ``(K, d)``.
    """

    def __init__(self, theta: Sequence[Sequence[float]]):
        self.theta = np.asarray(theta, dtype=np.float64)
        if self.theta.ndim != 2 or self.theta.shape[1] < 2:
            raise ValueError(f"theta must be (arms, dim >= 2), got shape {self.theta.shape}")
        self.n_arms, self.dim = self.theta.shape

    def sample(self, horizon: int, rng: np.random.Generator) -> Instance:
        contexts = np.concatenate([np.ones((horizon, 1)), rng.random((horizon, self.dim - 1))], axis=1)
        expected = np.clip(contexts @ self.theta.T, 0.0, 1.0)
        return Instance((rng.random(expected.shape) < expected).astype(np.float64), expected, contexts)


class AdversarialSequence:
    """A fixed reward table ``(T, K)`` in [0, 1] (an oblivious adversary); its expectation is itself."""

    def __init__(self, rewards: np.ndarray):
        self.rewards = np.asarray(rewards, dtype=np.float64)
        if self.rewards.ndim != 2 or not np.all((self.rewards >= 0) & (self.rewards <= 1)):
            raise ValueError("rewards must be a (T, K) table in [0, 1]")
        self.n_arms = self.rewards.shape[1]

    def sample(self, horizon: int, rng: np.random.Generator) -> Instance:
        if horizon > self.rewards.shape[0]:
            raise ValueError(f"the sequence has {self.rewards.shape[0]} steps, {horizon} asked")
        r = self.rewards[:horizon]
        return Instance(r, r)

    @classmethod
    def against(cls, policy: Policy, horizon: int) -> "AdversarialSequence":
        """The sequence that pays 0 to the arm ``policy`` plays and 1 to every other arm, built by
        playing ``policy`` (which it updates) on it. Fixed in advance, so oblivious; a deterministic
        policy (UCB1 with the same seed) then earns nothing while the best fixed arm earns >= T (K-1)/K.
        """
        rewards = np.ones((horizon, policy.n_arms))
        for t in range(horizon):
            arm = policy.select()
            rewards[t, arm] = 0.0
            policy.update(arm, 0.0)
        return cls(rewards)


# --------------------------------------------------------------------------- playing and regret
def play(policy: Policy, instance: Instance) -> np.ndarray:
    """Let ``policy`` play ``instance``; the arms it chose, ``(T,)`` int."""
    arms = np.empty(instance.horizon, dtype=np.int64)
    rewards, contexts = instance.rewards, instance.contexts
    for t in range(instance.horizon):
        x = None if contexts is None else contexts[t]
        arm = policy.select(x)
        policy.update(arm, rewards[t, arm], x)
        arms[t] = arm
    return arms


def pseudo_regret(instance: Instance, arms: np.ndarray) -> np.ndarray:
    """Cumulative ``sum_t max_k E[r_t,k] - E[r_t,a_t]`` for every prefix, ``(T,)``."""
    e = instance.expected
    return np.cumsum(e.max(axis=1) - e[np.arange(arms.size), arms])


def hindsight_regret(instance: Instance, arms: np.ndarray) -> np.ndarray:
    """Cumulative ``max_k sum_{s<=t} r_s,k - sum_{s<=t} r_s,a_s`` for every prefix ``t``, ``(T,)``."""
    r = instance.rewards
    return np.cumsum(r, axis=0).max(axis=1) - np.cumsum(r[np.arange(arms.size), arms])


@dataclass(frozen=True)
class RegretCurves:
    """Cumulative regret ``curves`` ``(n_seeds, T)`` of one policy on one problem."""

    curves: np.ndarray
    seeds: tuple[int, ...]

    @property
    def mean(self) -> np.ndarray:
        return self.curves.mean(axis=0)

    @property
    def stderr(self) -> np.ndarray:
        n = self.curves.shape[0]
        return self.curves.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.zeros(self.curves.shape[1])

    def at(self, t: int) -> float:
        """Mean cumulative regret after ``t`` steps."""
        return float(self.mean[t - 1])


def regret_curves(
    make_policy: Callable[[int], Policy],
    problem: Problem,
    horizon: int,
    seeds: Sequence[int],
    kind: str = "pseudo",
) -> RegretCurves:
    """Regret of a fresh policy on ``problem.sample(horizon, default_rng(seed))`` for each seed.

    The policy is ``make_policy(seed + 1_000_003)``: its randomness is independent of the instance.

    Policies built by different callers with the same seeds play the same instances, so two policies'
    curves are paired. :param kind: ``"pseudo"`` or ``"hindsight"`` (see the module docstring).
    """
    regret = {"pseudo": pseudo_regret, "hindsight": hindsight_regret}[kind]
    curves = []
    for seed in seeds:
        instance = problem.sample(horizon, np.random.default_rng(seed))
        curves.append(regret(instance, play(make_policy(seed + 1_000_003), instance)))
    return RegretCurves(np.stack(curves), tuple(seeds))


# --------------------------------------------------------------------------- bounds
def _gaps(means: Sequence[float]) -> tuple[np.ndarray, float]:
    m = _means(means)
    return m.max() - m, float(m.max())


def ucb1_regret_bound(means: Sequence[float], n: int | np.ndarray) -> np.ndarray | float:
    """Auer et al. (2002) Theorem 1: ``8 sum_{gap_i>0} ln n / gap_i + (1 + pi^2/3) sum_j gap_j``."""
    gaps, _ = _gaps(means)
    suboptimal = gaps[gaps > 0]
    return 8.0 * np.log(n) * np.sum(1.0 / suboptimal) + (1.0 + math.pi**2 / 3.0) * gaps.sum()


def bernoulli_kl(p: float | np.ndarray, q: float | np.ndarray) -> np.ndarray | float:
    """``KL(Bern(p) || Bern(q)) = p ln(p/q) + (1-p) ln((1-p)/(1-q))`` in nats (0 ln 0 = 0)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    eps = 1e-15
    q = np.clip(q, eps, 1.0 - eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / q), 0.0)
        b = np.where(p < 1, (1 - p) * np.log(np.where(p < 1, 1 - p, 1.0) / (1 - q)), 0.0)
    out = a + b
    return float(out) if out.ndim == 0 else out


def lai_robbins_constant(means: Sequence[float]) -> float:
    """``sum_{gap_i>0} gap_i / KL(mu_i, mu*)`` (Bernoulli KL): any consistent policy's regret is at
    least this times ``ln n`` asymptotically (Lai & Robbins 1985)."""
    gaps, best = _gaps(means)
    m = _means(means, 0.0, 1.0)
    sub = gaps > 0
    return float(np.sum(gaps[sub] / bernoulli_kl(m[sub], best)))


def lai_robbins_lower_bound(means: Sequence[float], n: int | np.ndarray) -> np.ndarray | float:
    """The asymptotic lower bound ``ln n * sum_i gap_i / KL(mu_i, mu*)`` on Bernoulli arms."""
    return lai_robbins_constant(means) * np.log(n)


def exp3_regret_bound(n_arms: int, g: float) -> float:
    """Auer et al. (2002b) Corollary 3.2: ``2 sqrt(e - 1) sqrt(g K ln K)`` (EXP3 with its tuned gamma)."""
    return 2.0 * math.sqrt(math.e - 1.0) * math.sqrt(g * n_arms * math.log(n_arms))
