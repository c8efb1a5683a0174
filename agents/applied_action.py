"""Off-policy agents that learn from the action that ran, not the one the policy proposed.

A wrapper may replace or limit the policy's action (the SafetyWrapper's rollbacks and its change limit)
and says so in ``info["applied_action"]``; the reward belongs to that action, so the replay buffer must
hold it. SB3 stores the action it sampled; :class:`StoresAppliedAction` swaps it in where a wrapper
reported one. (PPO, on-policy, cannot: its log-probabilities are of the sampled action.)
"""

from __future__ import annotations

import numpy as np
from stable_baselines3 import SAC


class StoresAppliedAction:
    """Mixin for an SB3 off-policy algorithm: ``_store_transition`` stores ``info["applied_action"]``."""

    def _store_transition(self, replay_buffer, buffer_action, new_obs, reward, dones, infos) -> None:
        applied = [info.get("applied_action") for info in infos]
        if any(a is not None for a in applied):
            buffer_action = np.array(buffer_action, copy=True)
            for i, action in enumerate(applied):
                if action is not None:
                    buffer_action[i] = action
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)


class AppliedActionSAC(StoresAppliedAction, SAC):
    """SB3's SAC storing the action that ran (see :class:`StoresAppliedAction`); otherwise SB3's SAC."""
