"""The observation vector shared by the environments and the feedback loop (so a policy trained on one
runs on the other): features of the coming chunk, current parameters, and the last step's feedback.

Layout (float32, every entry in [-1, 1]): ``ChunkFeatures`` (13, or 26 with their running mean) | tuned
parameters in the unit cube (d) | each objective's normalized improvement on the last chunk (m,
zero-padded) | last reward / 2.
"""

from __future__ import annotations

import numpy as np

from feedback_env.features import ChunkFeatures
from feedback_env.objectives import QualityReward
from feedback_env.parameters import ParameterSpace


def observation_size(features: ChunkFeatures, tuned: ParameterSpace, n_objectives: int) -> int:
    return features.dim + tuned.dim + n_objectives + 1


def feedback_vector(
    reward_fn: QualityReward | None,
    processed: dict[str, float] | None,
    baseline: dict[str, float] | None,
    reward: float,
    n_objectives: int,
) -> np.ndarray:
    """The last-step part: normalized improvements (zero-padded to ``n_objectives``) and reward / 2.

    With no step yet (``reward_fn`` None) it is all zeros.
    """
    out = np.zeros(n_objectives + 1)
    if reward_fn is not None and processed is not None:
        improvements = reward_fn.normalized_improvements(processed, baseline)
        out[: improvements.size] = improvements
        out[-1] = reward / 2.0
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def build_observation(features: np.ndarray, tuned: ParameterSpace, params: dict[str, float], feedback: np.ndarray) -> np.ndarray:
    """Concatenate ``features`` (normalized), the tuned ``params`` in the unit cube and ``feedback``."""
    unit = tuned.to_unit({name: params[name] for name in tuned.names})
    return np.clip(np.concatenate([features, unit, feedback]).astype(np.float32), -1.0, 1.0)
