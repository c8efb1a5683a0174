"""Play a bandit policy on ``feedback_env/StrategySelection-v0`` and record the reward of every step.

One episode streams one clip chunk by chunk (0.5 s chunks: 8 steps for a 4 s clip, 16 for 8 s); the
runner cycles episodes over the clips of the env's split in a fixed order, so a policy meets every clip
in turn and two policies run for the same number of steps see the same chunks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from bandits.policy import Policy
from bandits.rewards import RewardAdapter
from feedback_env.features import ChunkFeatures


#: The chunk features LinUCB uses by default: level, noise and hum, not the 6-band spectral profile.
#: On the train split they earned LinUCB more than all 13 features (`benchmarks/bandits.py --robustness`).
SUMMARY_FEATURES = (
    "level_dbfs",
    "noise_floor_dbfs",
    "snr_estimate_db",
    "noise_floor_change_db",
    "hum_score_db",
    "spectral_flatness",
    "clipping_ratio",
)


class ObservationContext:
    """LinUCB's context from the env's (or the feedback loop's) observation: chosen chunk features
    (normalized entries at the start of the observation, see :mod:`feedback_env.observation`) and a
    constant 1 for the intercept.

    The default keeps the 7 :data:`SUMMARY_FEATURES`, what tells the presets apart (how loud and how
    stationary the noise is, whether there is hum), and leaves out the 6 band energies: fewer
    dimensions are learnt faster, and on the train split this set earned more. The rest of the
    observation (the parameters of the preset played last, and its result) describes the policy's own
    last choice rather than the coming chunk; it is left out too (22 more dimensions; not measured).

    :param features: feature names, a subset of ``feature_names``.
    :param feature_names: the names of the observation's leading feature entries, in order
        (default: :class:`~feedback_env.features.ChunkFeatures`' names).
    """

    def __init__(self, features: Sequence[str] = SUMMARY_FEATURES, feature_names: Sequence[str] | None = None):
        names = list(feature_names) if feature_names is not None else list(ChunkFeatures(16000).names)
        unknown = [f for f in features if f not in names]
        if unknown or not features:
            raise ValueError(f"unknown context features {unknown}; the observation starts with {names}")
        self.features = tuple(features)
        self.indices = np.array([names.index(f) for f in features])

    @property
    def dim(self) -> int:
        return len(self.features) + 1

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        obs = np.asarray(observation, dtype=np.float64).reshape(-1)
        if obs.size <= self.indices.max():
            raise ValueError(f"observation has {obs.size} entries; the context reads entries {self.indices.tolist()}")
        return np.append(obs[self.indices], 1.0)


class FixedArm:
    """The reference that never learns: always ``arm`` (a preset played on every chunk)."""

    unit_rewards = False
    contextual = False

    def __init__(self, arm: int):
        self.arm = int(arm)

    @property
    def name(self) -> str:
        return f"FixedArm({self.arm})"

    def select(self, context: np.ndarray | None = None) -> int:
        return self.arm

    def update(self, arm: int, reward: float, context: np.ndarray | None = None) -> None:
        """Nothing to learn."""


@dataclass
class RunLog:
    """Per-step record of a run: ``arms``, ``rewards`` (the env's reward), ``clips``, ``chunks``, ``episodes``."""

    arms: np.ndarray
    rewards: np.ndarray
    clips: list[str]
    chunks: np.ndarray
    episodes: np.ndarray

    @property
    def cumulative(self) -> np.ndarray:
        return np.cumsum(self.rewards)

    @property
    def total(self) -> float:
        return float(self.rewards.sum())

    def per_clip(self) -> dict[str, float]:
        """Total reward per clip."""
        out: dict[str, float] = {}
        for clip, r in zip(self.clips, self.rewards):
            out[clip] = out.get(clip, 0.0) + float(r)
        return out


def _scenario_set(env: gym.Env):
    import scenarios  # imported here: scenarios depends on feedback_env

    config = env.unwrapped.config
    return scenarios.load(config["scenarios"], sample_rate=config["sample_rate"])


def split_clips(env: gym.Env) -> list[str]:
    """Ids of the clips the env draws from (its ``clips`` config, else its ``split``), in set order."""
    config = env.unwrapped.config
    if config["clips"]:
        return list(config["clips"])
    return [c.id for c in _scenario_set(env) if config["split"] is None or c.tags.get("split") == config["split"]]


def chunks_per_pass(env: gym.Env, clips: Sequence[str]) -> int:
    """Env steps to play each of ``clips`` once (one step per chunk, the last chunk may be short)."""
    scenario_set, chunk = _scenario_set(env), env.unwrapped.chunk_size
    return sum(math.ceil(scenario_set[c].noisy.size / chunk) for c in clips)


def run_on_env(
    env: gym.Env,
    policy: Policy | FixedArm,
    n_steps: int,
    *,
    context: ObservationContext | None = None,
    adapter: RewardAdapter | None = None,
    clips: Sequence[str] | None = None,
    seed: int = 0,
) -> RunLog:
    """Play ``policy`` for ``n_steps`` env steps, one clip per episode, cycling over ``clips``.

    :param env: a ``StrategySelection-v0`` env (any env with a ``Discrete`` action space works).
    :param context: builds the policy's context from each observation (required for contextual policies).
    :param adapter: maps the env reward into [0, 1] for policies with ``unit_rewards``
        (default :meth:`RewardAdapter.for_env_reward`); other policies get the raw reward.
    :param clips: clip ids to cycle over; default :func:`split_clips`.
    :param seed: passed to the first ``reset``.

    Steps the env could not score (``info["scored"]`` False: a silent clean reference) are logged, not learnt from.
    """
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise ValueError(f"run_on_env needs a Discrete action space, got {env.action_space}")
    if getattr(policy, "contextual", False) and context is None:
        raise ValueError(f"{policy.name} is contextual: pass context=ObservationContext(...)")
    n_arms = int(env.action_space.n)
    if getattr(policy, "n_arms", n_arms) != n_arms:
        raise ValueError(f"{policy.name} has {policy.n_arms} arms, the env {n_arms} actions")
    if getattr(policy, "unit_rewards", False) and adapter is None:
        adapter = RewardAdapter.for_env_reward()
    order = list(clips) if clips is not None else split_clips(env)
    arms = np.empty(n_steps, dtype=np.int64)
    rewards = np.empty(n_steps)
    chunks = np.empty(n_steps, dtype=np.int64)
    episodes = np.empty(n_steps, dtype=np.int64)
    clip_ids: list[str] = []
    episode, needs_reset = 0, True
    for t in range(n_steps):
        if needs_reset:
            options: dict[str, Any] = {"clip": order[episode % len(order)]}
            obs, _ = env.reset(seed=seed if episode == 0 else None, options=options)
            needs_reset = False
        x = context(obs) if context is not None else None
        arm = policy.select(x)
        obs, reward, terminated, truncated, info = env.step(arm)
        if info.get("scored", True):  # a chunk the env could not score (a pause) pays a placeholder: no information
            policy.update(arm, adapter(reward) if adapter is not None and policy.unit_rewards else reward, x)
        arms[t], rewards[t], chunks[t], episodes[t] = arm, reward, info["chunk"], episode
        clip_ids.append(info["clip"])
        if terminated or truncated:
            episode, needs_reset = episode + 1, True
    return RunLog(arms, rewards, clip_ids, chunks, episodes)
