"""MABWiser (an optional dev dependency) playing the same instances as our policies: the peer of the
regret cross-check and of the latency benchmark."""

from __future__ import annotations

from typing import Any

import numpy as np

from bandits.regret import Instance


def mabwiser_policy(kind: str, **settings: Any):
    """MABWiser's learning policy matching ours: ``"UCB1"`` (its ``alpha = sqrt(c / 2)``, so ``c = 2``
    is ``alpha = 1``), ``"ThompsonSampling"`` (binary rewards), ``"EpsilonGreedy"``, ``"LinUCB"``."""
    from mabwiser.mab import LearningPolicy

    factories = {
        "UCB1": lambda c=2.0: LearningPolicy.UCB1(alpha=float(np.sqrt(c / 2.0))),
        "ThompsonSampling": lambda: LearningPolicy.ThompsonSampling(),
        "EpsilonGreedy": lambda epsilon=0.1: LearningPolicy.EpsilonGreedy(epsilon=epsilon),
        "LinUCB": lambda alpha=1.0, ridge=1.0: LearningPolicy.LinUCB(alpha=alpha, l2_lambda=ridge),
    }
    if kind not in factories:
        raise ValueError(f"no MABWiser peer for {kind!r}; have {sorted(factories)}")
    return factories[kind](**settings)


def play_mabwiser(learning_policy, instance: Instance, seed: int) -> np.ndarray:
    """Arms MABWiser chooses on ``instance``, ``(T,)``: each arm once (it needs a first ``fit``), then
    ``predict`` / ``partial_fit`` one step at a time, as our policies play."""
    from mabwiser.mab import MAB

    n_arms = instance.rewards.shape[1]
    contexts = instance.contexts
    first = np.arange(n_arms)
    mab = MAB(list(range(n_arms)), learning_policy, seed=seed)
    mab.fit(first, instance.rewards[first, first], contexts=None if contexts is None else contexts[:n_arms])
    arms = np.empty(instance.horizon, dtype=np.int64)
    arms[:n_arms] = first
    for t in range(n_arms, instance.horizon):
        x = None if contexts is None else contexts[t : t + 1]
        arm = int(mab.predict(x) if x is not None else mab.predict())
        mab.partial_fit([arm], [instance.rewards[t, arm]], contexts=x)
        arms[t] = arm
    return arms
