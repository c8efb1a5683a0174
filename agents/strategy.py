"""A TD3 policy as a strategy of the FeedbackLoopSystem (its ``policy`` strategy).

Registered as ``policy`` in :mod:`feedback_env.feedback_loop.strategies`; the contract it implements:

* ``name``; ``propose(loop) -> Proposal(params, explanation, estimate)``;
  ``observe(loop, record)`` with ``record.reward`` (and ``.metrics``, ``.features``, ``.params``);
* the loop offers ``loop.parameters`` (physical dict), ``loop.observation()`` (the env's observation
  layout, :mod:`feedback_env.observation`), ``loop.last_record`` and ``loop.evaluate(params)``.

``propose`` maps the policy's action on ``loop.observation()`` to parameters exactly as the env the
policy was trained on does (absolute or delta, same tuned parameters); ``observe`` optionally stores
the transition and takes a TD3 step (:class:`~agents.feedback_optimizer.RLFeedbackOptimizer`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from agents.factory import read_config
from agents.feedback_optimizer import RLFeedbackOptimizer
from feedback_env.envs.actions import AbsoluteAction, DeltaAction
from feedback_env.feedback_loop.strategies import Proposal
from feedback_env.pipeline import PARAMETER_SPACE

DELTA_ENV_IDS = ("feedback_env/AudioEnhancementDelta-v0",)


def policy_loop_options(path: str | Path) -> dict[str, Any]:
    """Keyword arguments of :class:`~feedback_env.FeedbackLoopSystem` for a loop that acts with the policy
    saved at ``path``: its ``policy`` strategy, and the tuned parameters and features (``feature_context``)
    the policy was trained to observe. ``FeedbackLoopSystem(seed=0, **policy_loop_options(path))``.

    :raises ValueError: the model is not a TD3 one (the strategy acts through :class:`RLFeedbackOptimizer`).
    """
    config = read_config(path)
    algo = config.get("algo", "td3")
    if algo != "td3":
        raise ValueError(f"{path} is a {algo.upper()} model: the policy strategy (and the harness's td3:MODEL.zip) "
                         f"acts with TD3 models; train.py's final table evaluates {algo.upper()} runs")  # fmt: skip
    env_config = config.get("env_config", {})
    return {
        "strategy": "policy",
        "strategy_options": {"policy": {"model": str(path)}},
        "tuned": env_config.get("tuned"),  # None: all parameters
        "feature_context": env_config.get("feature_context", 0.0),
    }


class PolicyStrategy:
    """Propose the parameters a TD3 policy chooses for what the loop hears; optionally keep learning.

    :param optimizer: the policy (trained, or learning online).
    :param tuned: the parameter names the policy's actions set, in action order.
    :param mode: ``"absolute"`` (actions are positions in the unit cube) or ``"delta"`` (changes).
    :param max_step: delta mode: unit-cube change per proposal at ``|action| = 1``.
    :param smoothing: absolute mode: the env's action low-pass (``config["smoothing"]``).
    :param center: absolute mode: physical tuned parameters at action 0 (``config["action_center"]``).
    :param radius: absolute mode: unit-cube widths at ``|action| = 1`` (``config["action_radius"]``).
    :param learn: store each transition and take ``updates_per_observation`` TD3 steps in :meth:`observe`.
    :param exploration_noise: standard deviation of the action noise while learning (unit cube).
    :param batch_size: TD3 batch size while learning.
    """

    name = "policy"
    step_limits = False  # acts exactly as in the env it was trained in (a delta env has its own max_step)

    def __init__(
        self,
        optimizer: RLFeedbackOptimizer,
        tuned: Sequence[str],
        mode: str = "absolute",
        max_step: float = 0.2,
        smoothing: float = 0.0,
        center: Mapping[str, float] | None = None,
        radius: float = 1.0,
        learn: bool = False,
        exploration_noise: float = 0.1,
        batch_size: int = 64,
        updates_per_observation: int = 1,
    ):
        if mode not in ("absolute", "delta"):
            raise ValueError(f"mode must be 'absolute' or 'delta', got {mode!r}")
        self.optimizer = optimizer
        if mode == "delta":
            self.action: AbsoluteAction = DeltaAction(PARAMETER_SPACE, tuned, max_step)
        else:
            self.action = AbsoluteAction(PARAMETER_SPACE, tuned, smoothing, center, radius)
        if self.action.tuned.dim != optimizer.action_space.shape[0]:
            raise ValueError(f"{self.action.tuned.dim} tuned parameters for a policy with {optimizer.action_space.shape[0]} actions")
        self.mode, self.learn = mode, learn
        self.exploration_noise, self.batch_size, self.updates_per_observation = exploration_noise, batch_size, updates_per_observation
        self._pending: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_model(cls, path: str | Path, *, sample_rate: int | None = None, **kwargs: Any) -> "PolicyStrategy":
        """The policy saved by ``train.py`` (its config names the env, the tuned parameters, max_step,
        smoothing and the action centre and radius).

        :param sample_rate: Hz the policy will run at: a ``UserWarning`` when the model was trained at another
            (its features' band edges scale with the rate). Models saved before the rate was recorded in
            ``env_config["sample_rate"]`` are not checked (no warning).
        """
        config = read_config(path)
        env_config = config.get("env_config", {})
        trained = env_config.get("sample_rate")
        if sample_rate is not None and trained is not None and int(trained) != int(sample_rate):
            warnings.warn(f"{path}: trained at {int(trained)} Hz, run at {int(sample_rate)} Hz: its features' band "
                          "edges scale with the rate, so it hears other bands than it learnt on", UserWarning, stacklevel=2)  # fmt: skip
        mode = "delta" if config.get("env_id") in DELTA_ENV_IDS else "absolute"
        tuned = env_config.get("tuned") or list(PARAMETER_SPACE.names)
        steps = {
            "max_step": env_config.get("max_step", 0.2),
            "smoothing": env_config.get("smoothing", 0.0),
            "center": env_config.get("action_center"),
            "radius": env_config.get("action_radius", 1.0),
        }
        return cls(RLFeedbackOptimizer.load(path), tuned, mode, **steps, **kwargs)

    def _observation(self, loop: Any) -> np.ndarray:
        names = tuple(getattr(getattr(loop, "space", None), "names", self.action.tuned.names))
        if names != self.action.tuned.names:
            raise ValueError(f"the loop tunes {list(names)}; the policy was trained to set {list(self.action.tuned.names)}")
        obs = np.asarray(loop.observation(), dtype=np.float32).reshape(-1)
        expected = self.optimizer.observation_space.shape
        if obs.shape != expected:
            raise ValueError(
                f"loop.observation() has shape {obs.shape}, the policy expects {expected}: the loop must observe the "
                f"{self.action.tuned.dim} tuned parameters {list(self.action.tuned.names)} and the features the policy "
                f"was trained on: build it with FeedbackLoopSystem(**agents.strategy.policy_loop_options(model_path))"
            )
        return obs

    def propose(self, loop: Any) -> Proposal:
        obs = self._observation(loop)
        action = self.optimizer.select_action(obs, self.exploration_noise if self.learn else 0.0)
        current = {**PARAMETER_SPACE.defaults(), **loop.parameters}
        params = self.action.apply(action, current)
        self._pending = (obs, action)
        q = self.optimizer.q_value(obs, action)
        tuned = {name: params[name] for name in self.action.tuned.names}  # the loop takes only what it tunes
        return Proposal(tuned, self._explain(current, params, q), {"q_value": q})

    def _explain(self, current: Mapping[str, float], params: Mapping[str, float], q: float) -> str:
        tuned = self.action.tuned
        moves = tuned.to_unit({n: params[n] for n in tuned.names}) - tuned.to_unit({n: current[n] for n in tuned.names})
        order = np.argsort(-np.abs(moves))[:3]
        changes = [f"{tuned.names[i]} {current[tuned.names[i]]:.3g} -> {params[tuned.names[i]]:.3g}" for i in order if abs(moves[i]) > 1e-3]
        what = "; ".join(changes) if changes else "no change"
        members = getattr(self.optimizer.model.policy, "n_members", None)  # a checkpoint ensemble (agents.ensemble)
        kind = f"mean action of {members} TD3 actors" if members else "TD3 policy"
        return f"{kind} ({self.mode}, {'learning' if self.learn else 'fixed'}): {what}; critic value {q:.3f}"

    def state_arrays(self) -> dict[str, np.ndarray]:
        """A learning policy's online state (:meth:`RLFeedbackOptimizer.state_arrays`) and the proposal awaiting
        its outcome; nothing for a fixed policy (its model file is all of it)."""
        if not self.learn:
            return {}
        out = self.optimizer.state_arrays()
        if self._pending is not None:
            out["pending.observation"], out["pending.action"] = self._pending
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        if not arrays:
            return
        self.optimizer.load_state_arrays(arrays)
        if "pending.action" in arrays:
            self._pending = (arrays["pending.observation"], arrays["pending.action"])

    def observe(self, loop: Any, record: Any) -> None:
        """Learn from the outcome of the last proposal (when ``learn``): store it and take TD3 steps."""
        if not self.learn or self._pending is None:
            return
        obs, action = self._pending
        self._pending = None
        self.optimizer.store(obs, action, float(record.reward), self._observation(loop))
        for _ in range(self.updates_per_observation):
            self.optimizer.update_policy(self.batch_size)
