"""The seed's ``RLFeedbackOptimizer``: online TD3 for the feedback loop, built on SB3's TD3.

The seed sketched its own actor, critic and TD3 update; here the networks, the target policy
smoothing, the clipped double-Q target and the delayed policy updates are SB3's
(:class:`~agents.prioritized.PrioritizedTD3`), and the replay is the prioritized buffer the seed asks
for. What this class adds is the online interface a feedback loop needs when it drives learning
itself, one chunk at a time, instead of handing SB3 an env:

* :meth:`select_action` (the policy's action plus Gaussian exploration noise, in the unit cube),
* :meth:`store` (one transition), :meth:`update_policy` (one TD3 gradient step),
* :meth:`q_value` (the critic's estimate, for explanations), :meth:`save` / :meth:`load`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.logger import Logger

from agents.factory import load_agent, make_agent, save_agent
from agents.prioritized import PrioritizedReplayBuffer, PrioritizedTD3

HORIZON = 40_000
"""Default ``horizon`` of :class:`RLFeedbackOptimizer`: gradient updates from the start of training to its end,
as many as a default ``train.py`` run takes steps (``RunConfig.timesteps``, one update per step)."""


class _SpacesOnly(gym.Env):
    """Carries the spaces into SB3's constructor: the optimizer is fed transitions, it never steps an env."""

    def __init__(self, observation_space: spaces.Box, action_space: spaces.Box):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        raise RuntimeError("RLFeedbackOptimizer has no env: feed it transitions with store()")

    def step(self, action):
        raise RuntimeError("RLFeedbackOptimizer has no env: feed it transitions with store()")


def _box(space_or_dim: spaces.Box | int, name: str) -> spaces.Box:
    if isinstance(space_or_dim, spaces.Box):
        return space_or_dim
    if isinstance(space_or_dim, (int, np.integer)) and space_or_dim > 0:
        return spaces.Box(-1.0, 1.0, (int(space_or_dim),), dtype=np.float32)
    raise TypeError(f"{name} must be a gymnasium Box or a positive int, got {space_or_dim!r}")


def _check_horizon(horizon: int) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon <= 0:
        raise ValueError(f"horizon must be a positive number of updates, got {horizon!r}")
    return int(horizon)


class RLFeedbackOptimizer:
    """Online TD3 with prioritized replay: choose parameters, store what happened, learn a step.

    :param observation_space: a Box, or the state dimension (then ``Box(-1, 1, (n,))``, as the envs').
    :param action_space: a Box in [-1, 1], or the action dimension.
    :param seed: seeds SB3 (networks, replay sampling) and the exploration noise.
    :param prioritized: use :class:`~agents.prioritized.PrioritizedReplayBuffer` (the seed's choice).
    :param horizon: gradient updates over which training runs from start to end: each
        :meth:`update_policy` advances SB3's progress (``1 - _current_progress_remaining``) by ``1 / horizon``,
        so the prioritized replay's importance exponent goes from ``beta`` to 1 in ``horizon`` updates (SB3's
        ``learn`` does this by env steps; this class never calls it). Default :data:`HORIZON`.
    :param hyperparameters: TD3 hyperparameters of :data:`agents.factory.DEFAULTS` (e.g. ``gamma``).

    ``select_action`` adds its own noise, so the model's action noise is off. With an ``env`` already
    made, build a model with :func:`agents.make_agent` and wrap it with :meth:`from_model`.
    """

    def __init__(
        self,
        observation_space: spaces.Box | int,
        action_space: spaces.Box | int,
        *,
        seed: int = 0,
        prioritized: bool = True,
        horizon: int = HORIZON,
        **hyperparameters: Any,
    ):
        _check_horizon(horizon)
        env = _SpacesOnly(_box(observation_space, "observation_space"), _box(action_space, "action_space"))
        model = make_agent("td3", env, seed=seed, **{"prioritized": prioritized, "action_noise_std": 0.0, **hyperparameters})
        self._attach(model, seed, horizon)

    def _attach(self, model: PrioritizedTD3, seed: int, horizon: int) -> None:
        if not isinstance(model, PrioritizedTD3):
            raise TypeError(f"RLFeedbackOptimizer needs an agents PrioritizedTD3 model, got {type(model).__name__}")
        self.model = model
        if getattr(model, "_logger", None) is None:
            model.set_logger(Logger(folder=None, output_formats=[]))  # silent: losses are read back, not printed
        self._rng = np.random.default_rng(seed)
        self.horizon = _check_horizon(horizon)
        self.updates = 0

    @classmethod
    def from_model(cls, model: PrioritizedTD3, seed: int = 0, horizon: int = HORIZON) -> "RLFeedbackOptimizer":
        """Wrap a TD3 model made by :func:`agents.make_agent` (trained or not); updates go on from its
        training progress (a finished ``train.py`` run's: the end, importance exponent 1)."""
        self = cls.__new__(cls)
        self._attach(model, seed, horizon)
        return self

    @classmethod
    def load(
        cls,
        path: str | Path,
        replay_buffer: str | Path | None = None,
        seed: int = 0,
        horizon: int = HORIZON,
        prioritized: bool = True,
    ) -> "RLFeedbackOptimizer":
        """Load a TD3 model saved by :func:`agents.save_agent` (and optionally its replay buffer .pkl);
        the model keeps its training progress, so updates go on annealing from where it was saved. A model
        trained with uniform replay (``train.py``'s default) learns on with prioritized replay when
        ``prioritized``, its buffer's transitions carried over (:meth:`PrioritizedReplayBuffer.from_uniform`)."""
        model = load_agent(path)
        if replay_buffer is not None:
            model.load_replay_buffer(replay_buffer)
        if prioritized and not isinstance(model.replay_buffer, PrioritizedReplayBuffer):
            model.replay_buffer = PrioritizedReplayBuffer.from_uniform(model.replay_buffer)
            model.beta_start = model.replay_buffer.beta
        return cls.from_model(model, seed, horizon)

    @property
    def observation_space(self) -> spaces.Box:
        return self.model.observation_space

    @property
    def action_space(self) -> spaces.Box:
        return self.model.action_space

    def _obs(self, state: np.ndarray) -> np.ndarray:
        obs = np.asarray(state, dtype=np.float32).reshape(-1)
        if obs.shape != self.observation_space.shape:
            raise ValueError(f"state has shape {obs.shape}; the policy expects {self.observation_space.shape}")
        if not np.all(np.isfinite(obs)):
            raise ValueError(f"state has non-finite entries: {obs.tolist()}")
        return obs

    def select_action(self, state: np.ndarray, exploration_noise: float = 0.1) -> np.ndarray:
        """The policy's action for ``state`` plus N(0, ``exploration_noise``^2) per entry, clipped to [-1, 1].

        :param exploration_noise: standard deviation in unit-cube widths (0 = the deterministic policy).
        """
        action, _ = self.model.predict(self._obs(state), deterministic=True)
        if exploration_noise > 0:
            action = action + self._rng.normal(0.0, exploration_noise, size=action.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def store(self, state: np.ndarray, action: np.ndarray, reward: float, next_state: np.ndarray, done: bool = False) -> None:
        """Add one transition to the replay buffer (new transitions get the largest priority)."""
        if not np.isfinite(reward):
            raise ValueError(f"reward must be finite, got {reward}")
        act = np.asarray(action, dtype=np.float32).reshape(1, -1)
        if act.shape[1] != self.action_space.shape[0]:
            raise ValueError(f"action has {act.shape[1]} entries; the policy has {self.action_space.shape[0]}")
        self.model.replay_buffer.add(
            self._obs(state)[None], self._obs(next_state)[None], act, np.array([reward], np.float32), np.array([done], np.float32), [{}]
        )

    def update_policy(self, batch_size: int = 64) -> dict[str, float] | None:
        """One TD3 gradient step on a prioritized batch; None while the buffer holds fewer than ``batch_size``.
        Each step advances the training progress by ``1 / horizon`` (see the class's ``horizon``).

        :return: the critic loss (importance-weighted) and, on policy-update steps, the actor loss.
        """
        if self.model.replay_buffer.size() < batch_size:
            return None
        self.model.train(gradient_steps=1, batch_size=batch_size)
        # what SB3's learn() does by env steps: the importance exponent (and any schedule) follow this progress
        self.model._current_progress_remaining = max(0.0, self.model._current_progress_remaining - 1.0 / self.horizon)
        self.updates += 1
        values = self.model.logger.name_to_value
        out = {"critic_loss": float(values["train/critic_loss"])}
        if self.model._n_updates % self.model.policy_delay == 0:
            out["actor_loss"] = float(values["train/actor_loss"])
        return out

    def q_value(self, state: np.ndarray, action: np.ndarray) -> float:
        """The first critic's estimate of the return of ``action`` in ``state``."""
        obs = th.as_tensor(self._obs(state)[None], device=self.model.device)
        act = th.as_tensor(np.asarray(action, dtype=np.float32).reshape(1, -1), device=self.model.device)
        with th.no_grad():
            return float(self.model.critic.q1_forward(obs, act).item())

    BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts", "priorities")

    def state_arrays(self) -> dict[str, np.ndarray]:
        """What online learning changed, as arrays (for :meth:`FeedbackLoopSystem.save`, which takes no pickles):
        the networks and their optimizers (``torch.save`` bytes, read back with ``weights_only``), the counters
        and training progress, the exploration noise's random state, and the filled part of the replay buffer
        (with its priorities)."""
        blob = io.BytesIO()
        th.save(self.model.get_parameters(), blob)
        buffer = self.model.replay_buffer
        filled = buffer.buffer_size if buffer.full else buffer.pos
        out = {
            "parameters": np.frombuffer(blob.getvalue(), dtype=np.uint8),
            "counters": np.array([self.updates, self.model._n_updates, self.model.num_timesteps, buffer.pos,
                                  buffer.full], dtype=np.int64),  # fmt: skip
            "progress": np.array([self.model._current_progress_remaining, getattr(buffer, "max_priority", 1.0)]),
            "rng": np.frombuffer(json.dumps(self._rng.bit_generator.state).encode(), dtype=np.uint8),
        }
        for field in self.BUFFER_FIELDS:
            if hasattr(buffer, field):
                out[f"buffer.{field}"] = getattr(buffer, field)[:filled]
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state_arrays` into this optimizer (same spaces and buffer kind)."""
        params = th.load(io.BytesIO(arrays["parameters"].tobytes()), weights_only=True)
        self.model.set_parameters(params, exact_match=True, device=self.model.device)
        self.updates, self.model._n_updates, self.model.num_timesteps, pos, full = map(int, arrays["counters"])
        self.model._current_progress_remaining, max_priority = map(float, arrays["progress"])
        self._rng.bit_generator.state = json.loads(arrays["rng"].tobytes().decode())
        buffer = self.model.replay_buffer
        for field in self.BUFFER_FIELDS:
            if f"buffer.{field}" in arrays:
                saved = arrays[f"buffer.{field}"]
                getattr(buffer, field)[: len(saved)] = saved
        buffer.pos, buffer.full = pos, bool(full)
        if hasattr(buffer, "max_priority"):
            buffer.max_priority = max_priority

    def save(self, path: str | Path, replay_buffer: str | Path | None = None, **config: Any) -> Path:
        """Save the model (and its config, with ``config`` added); optionally the replay buffer."""
        out = save_agent(self.model, path, **config)
        if replay_buffer is not None:
            self.model.save_replay_buffer(replay_buffer)
        return out
