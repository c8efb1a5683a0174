"""Agents for the enhancement envs: SB3 TD3 (default), SAC and PPO; the online TD3 feedback optimizer
with prioritized replay; checkpoint and seed ensembles; the policy as a feedback-loop strategy; callbacks, training
runs and the whole-clip evaluation.

Names are imported lazily, so ``import agents`` stays cheap until torch is needed.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ALGORITHMS": "agents.factory",
    "DEFAULTS": "agents.factory",
    "make_agent": "agents.factory",
    "save_agent": "agents.factory",
    "load_agent": "agents.factory",
    "PrioritizedReplayBuffer": "agents.prioritized",
    "PrioritizedTD3": "agents.prioritized",
    "RLFeedbackOptimizer": "agents.feedback_optimizer",
    "PolicyStrategy": "agents.strategy",
    "EnsembleTD3Policy": "agents.ensemble",
    "checkpoint_ensemble": "agents.ensemble",
    "seed_ensemble": "agents.ensemble",
    "QualityCallback": "agents.callbacks",
    "RunConfig": "agents.training",
    "evaluate_policy": "agents.evaluation",
    "evaluate_static": "agents.evaluation",
    "best_static_params": "agents.evaluation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    try:  # a submodule (agents.strategy, ...) reached as an attribute after a bare ``import agents``
        return import_module(f"agents.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"agents.{name}":
            raise
    raise AttributeError(f"module 'agents' has no attribute {name!r}")
