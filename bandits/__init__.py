"""Bandit policies for strategy selection, regret tools, and state stores (in memory, Redis).

Every policy: ``select(context=None) -> arm``, ``update(arm, reward, context=None)``,
``state_dict()`` / ``load_state_dict()``, seeded with a ``numpy.random.Generator``.
"""

from bandits.adversarial import EXP3, exp3_gamma
from bandits.contextual import LinUCB
from bandits.nonstationary import DiscountedUCB, SlidingWindowUCB, discount_for, window_for
from bandits.policy import Policy
from bandits.rewards import RewardAdapter
from bandits.state import InMemoryStateStore, StateStore, StateStoreError, StateStoreUnavailable
from bandits.stochastic import UCB1, EpsilonGreedy, GaussianThompsonSampling, ThompsonSampling

__all__ = [
    "EXP3",
    "UCB1",
    "DiscountedUCB",
    "EpsilonGreedy",
    "GaussianThompsonSampling",
    "InMemoryStateStore",
    "LinUCB",
    "Policy",
    "RewardAdapter",
    "SlidingWindowUCB",
    "StateStore",
    "StateStoreError",
    "StateStoreUnavailable",
    "ThompsonSampling",
    "discount_for",
    "exp3_gamma",
    "window_for",
]
