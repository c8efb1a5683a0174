"""Adaptive audio enhancement: a streaming DSP pipeline, quality metrics and Gymnasium environments.

Importing the package registers the environment ids (cheaply: string entry points) and exposes the
pipeline, the parameter space and the feedback loop.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from feedback_env.errors import FeedbackEnvError, InvalidAudioError, MetricError, ParameterError, ScenarioError
from feedback_env.parameters import Parameter, ParameterSpace
from feedback_env.pipeline import PARAMETER_SPACE, EnhancementPipeline

ENV_IDS = {
    "feedback_env/AudioEnhancement-v0": "feedback_env.envs.audio_enhancement:AudioEnhancementEnv",
    "feedback_env/AudioEnhancementDelta-v0": "feedback_env.envs.audio_enhancement:AudioEnhancementDeltaEnv",
    "feedback_env/StrategySelection-v0": "feedback_env.envs.audio_enhancement:StrategySelectionEnv",
}


def register_envs() -> None:
    """Register the ids once (idempotent: SubprocVecEnv and Ray workers import the package again)."""
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point)


register_envs()

_LAZY = {
    "FeedbackLoopSystem": "feedback_env.feedback_loop",
    "ConvergenceAnalyzer": "feedback_env.feedback_loop",
    "register_strategy": "feedback_env.feedback_loop",
}


def __getattr__(name: str):
    """Import the feedback loop on first use, so that ``import feedback_env`` stays cheap."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'feedback_env' has no attribute {name!r}")


__all__ = [
    "ENV_IDS",
    "ConvergenceAnalyzer",
    "FeedbackLoopSystem",
    "PARAMETER_SPACE",
    "EnhancementPipeline",
    "FeedbackEnvError",
    "InvalidAudioError",
    "MetricError",
    "Parameter",
    "ParameterError",
    "ParameterSpace",
    "ScenarioError",
    "register_strategy",
    "register_envs",
]
