"""Prioritized experience replay for SB3's TD3: proportional priorities, importance weights in the critic loss.

T. Schaul, J. Quan, I. Antonoglou and D. Silver, "Prioritized Experience Replay", ICLR 2016, the
proportional variant: transition ``i`` is sampled with probability ``P(i) = p_i^alpha / sum_j p_j^alpha``,
``p_i = |delta_i| + epsilon`` (its last TD error; new transitions get the largest priority seen), and its
update is weighted by ``w_i = (N P(i))^-beta / max_j w_j`` to undo the bias of non-uniform sampling,
with ``beta`` annealed from ``beta`` to 1 over training.

SB3 has no prioritized buffer and its ``TD3.train`` takes no weights, so :class:`PrioritizedTD3`
overrides ``train`` with the one change (weighted critic loss, priorities from TD errors) and keeps
everything else of SB3's TD3 (target policy smoothing, clipped double Q, delayed policy updates). It
also stores the action that actually ran when a wrapper replaced the policy's (``info["applied_action"]``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import TD3
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.common.vec_env import VecNormalize

from agents.applied_action import StoresAppliedAction


class PrioritizedReplayBufferSamples(NamedTuple):
    """SB3's ``ReplayBufferSamples`` plus the importance weights ``(batch, 1)`` and the sampled slots."""

    observations: th.Tensor
    actions: th.Tensor
    next_observations: th.Tensor
    dones: th.Tensor
    rewards: th.Tensor
    discounts: th.Tensor | None
    weights: th.Tensor
    indices: np.ndarray  # (batch,) buffer positions
    env_indices: np.ndarray  # (batch,) env columns


class PrioritizedReplayBuffer(ReplayBuffer):
    """SB3 ``ReplayBuffer`` with proportional prioritized sampling.

    Sampling is stratified (one draw per equal slice of the total priority, as in the paper) by a
    cumulative sum and a binary search: O(N) per batch, a few hundred microseconds for 10^5
    transitions, which is small next to a TD3 gradient step, so no sum tree is needed.
    Randomness comes from NumPy's global generator, which SB3 seeds, like the uniform buffer.

    :param alpha: how much the TD error shapes sampling (0 = uniform).
    :param beta: initial importance-sampling exponent (annealed to 1 by :class:`PrioritizedTD3`).
    :param epsilon: added to ``|delta|`` so that no transition has zero probability.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        alpha: float = 0.6,
        beta: float = 0.4,
        epsilon: float = 1e-3,
    ):
        if optimize_memory_usage:
            raise ValueError("PrioritizedReplayBuffer does not support optimize_memory_usage=True")
        if not 0.0 <= alpha <= 1.0 or not 0.0 <= beta <= 1.0 or epsilon <= 0.0:
            raise ValueError(f"need 0 <= alpha, beta <= 1 and epsilon > 0; got {alpha}, {beta}, {epsilon}")
        super().__init__(buffer_size, observation_space, action_space, device, n_envs, False, handle_timeout_termination)
        self.alpha, self.beta, self.epsilon = alpha, beta, epsilon
        self.priorities = np.zeros((self.buffer_size, self.n_envs), dtype=np.float64)  # p_i^alpha
        self.max_priority = 1.0  # largest p_i seen (before the exponent)

    @classmethod
    def from_uniform(cls, buffer: ReplayBuffer, **kwargs: Any) -> "PrioritizedReplayBuffer":
        """A prioritized buffer holding the transitions of SB3's uniform ``buffer``, each at the largest
        priority (as new transitions enter); ``kwargs``: ``alpha``, ``beta``, ``epsilon``."""
        new = cls(buffer.buffer_size, buffer.observation_space, buffer.action_space, buffer.device, buffer.n_envs,
                  handle_timeout_termination=buffer.handle_timeout_termination, **kwargs)  # fmt: skip
        for field in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
            getattr(new, field)[:] = getattr(buffer, field)
        new.pos, new.full = buffer.pos, buffer.full
        new.priorities[: buffer.buffer_size if buffer.full else buffer.pos] = new.max_priority**new.alpha
        return new

    def add(self, obs, next_obs, action, reward, done, infos: list[dict[str, Any]]) -> None:
        self.priorities[self.pos] = self.max_priority**self.alpha
        super().add(obs, next_obs, action, reward, done, infos)

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> PrioritizedReplayBufferSamples:
        """Draw ``batch_size`` transitions with probability proportional to their priority."""
        upper = self.buffer_size if self.full else self.pos
        if upper == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        flat = self.priorities[:upper].reshape(-1)
        cumulative = np.cumsum(flat)
        total = cumulative[-1]
        targets = (np.arange(batch_size) + np.random.random(batch_size)) * (total / batch_size)
        slots = np.minimum(np.searchsorted(cumulative, targets, side="right"), flat.size - 1)
        probabilities = flat[slots] / total
        weights = (flat.size * probabilities) ** -self.beta
        weights /= (flat.size * flat[flat > 0].min() / total) ** -self.beta  # the largest weight in the buffer
        indices, env_indices = np.divmod(slots, self.n_envs)
        base = self._get_samples_at(indices, env_indices, env)
        return PrioritizedReplayBufferSamples(
            *base, None, self.to_torch(weights.reshape(-1, 1).astype(np.float32)), indices, env_indices
        )

    def _get_samples_at(self, indices: np.ndarray, env_indices: np.ndarray, env: VecNormalize | None) -> tuple:
        """SB3's ``_get_samples`` for given env columns (SB3 draws the columns at random itself)."""
        dones = self.dones[indices, env_indices] * (1 - self.timeouts[indices, env_indices])
        data = (
            self._normalize_obs(self.observations[indices, env_indices, :], env),
            self.actions[indices, env_indices, :],
            self._normalize_obs(self.next_observations[indices, env_indices, :], env),
            dones.reshape(-1, 1),
            self._normalize_reward(self.rewards[indices, env_indices].reshape(-1, 1), env),
        )
        return tuple(map(self.to_torch, data))

    def update_priorities(self, indices: np.ndarray, env_indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Set ``p_i = |delta_i| + epsilon`` for the sampled transitions."""
        p = np.abs(np.asarray(td_errors, dtype=np.float64).reshape(-1)) + self.epsilon
        if not np.all(np.isfinite(p)):
            raise ValueError(f"TD errors must be finite, got {td_errors}")
        self.priorities[indices, env_indices] = p**self.alpha
        self.max_priority = max(self.max_priority, float(p.max()))


class PrioritizedTD3(StoresAppliedAction, TD3):
    """SB3's TD3 whose critic loss honours the importance weights of a :class:`PrioritizedReplayBuffer`
    and which feeds the TD errors back as priorities. With any other buffer it is SB3's TD3. It stores
    the action that ran (:class:`~agents.applied_action.StoresAppliedAction`).

    :param beta_final: the importance exponent reached at the end of training (1 = full correction).
        Training progress is SB3's ``_current_progress_remaining``: set by ``learn`` from env steps, and by
        :class:`~agents.feedback_optimizer.RLFeedbackOptimizer` from its gradient updates (its ``horizon``).
    """

    def __init__(self, *args: Any, beta_final: float = 1.0, **kwargs: Any):
        self.beta_final = beta_final
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        self.beta_start = getattr(self.replay_buffer, "beta", 1.0)

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        buffer = self.replay_buffer
        if not isinstance(buffer, PrioritizedReplayBuffer):
            return super().train(gradient_steps, batch_size)
        buffer.beta = self.beta_start + (self.beta_final - self.beta_start) * (1.0 - self._current_progress_remaining)
        self.policy.set_training_mode(True)
        self._update_learning_rate([self.actor.optimizer, self.critic.optimizer])
        actor_losses, critic_losses = [], []
        for _ in range(gradient_steps):
            self._n_updates += 1
            data = buffer.sample(batch_size, env=self._vec_normalize_env)
            with th.no_grad():
                noise = data.actions.clone().data.normal_(0, self.target_policy_noise)
                noise = noise.clamp(-self.target_noise_clip, self.target_noise_clip)
                next_actions = (self.actor_target(data.next_observations) + noise).clamp(-1, 1)
                next_q = th.min(th.cat(self.critic_target(data.next_observations, next_actions), dim=1), dim=1, keepdim=True)[0]
                target_q = data.rewards + (1 - data.dones) * self.gamma * next_q
            current_q = self.critic(data.observations, data.actions)
            # the one change to SB3's TD3.train: importance-weighted squared TD errors
            critic_loss = sum((data.weights * (q - target_q) ** 2).mean() for q in current_q)
            critic_losses.append(critic_loss.item())
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self.critic.optimizer.step()
            td_error = (current_q[0] - target_q).detach().cpu().numpy()
            buffer.update_priorities(data.indices, data.env_indices, td_error)

            if self._n_updates % self.policy_delay == 0:
                actor_loss = -self.critic.q1_forward(data.observations, self.actor(data.observations)).mean()
                actor_losses.append(actor_loss.item())
                self.actor.optimizer.zero_grad()
                actor_loss.backward()
                self.actor.optimizer.step()
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.actor.parameters(), self.actor_target.parameters(), self.tau)
                polyak_update(self.critic_batch_norm_stats, self.critic_batch_norm_stats_target, 1.0)
                polyak_update(self.actor_batch_norm_stats, self.actor_batch_norm_stats_target, 1.0)

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if actor_losses:
            self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        self.logger.record("train/per_beta", buffer.beta)
