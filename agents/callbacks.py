"""SB3 callbacks for the enhancement envs: quality and safety to TensorBoard, evaluation on held-out
clips, checkpoints that carry the replay buffer (so a killed run resumes where it was)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback, EvalCallback
from stable_baselines3.common.monitor import Monitor

CHECKPOINT_PREFIX = "model"
_CHECKPOINT = re.compile(rf"^{CHECKPOINT_PREFIX}_(\d+)_steps\.zip$")


class QualityCallback(BaseCallback):
    """Logs, averaged between dumps: ``quality/<metric>`` of each processed chunk and
    ``quality/<metric>_gain`` over the unprocessed chunk (from ``info["metrics"]`` and
    ``info["baseline_metrics"]``; chunks the reward could not score left out); under the safety wrapper ``safety/rollback_rate`` (per step),
    ``safety/cost`` and ``safety/rollbacks`` (total over all envs)."""

    def __init__(self, verbose: int = 0):
        super().__init__(verbose)
        self._rollbacks: dict[int, int] = {}

    def _on_step(self) -> bool:
        for index, info in enumerate(self.locals.get("infos", [])):
            baseline = info.get("baseline_metrics", {})
            measured = info.get("metrics", {}) if info.get("scored", True) else {}  # not a pause's undefined values
            for name, value in measured.items():
                self.logger.record_mean(f"quality/{name}", value)
                if name in baseline:
                    self.logger.record_mean(f"quality/{name}_gain", value - baseline[name])
            if "rollbacks" in info:
                self.logger.record_mean("safety/rollback_rate", float(info["rollback"]))
                self.logger.record_mean("safety/cost", float(info["cost"]))
                self._rollbacks[index] = int(info["rollbacks"])
        if self._rollbacks:
            self.logger.record("safety/rollbacks", sum(self._rollbacks.values()))
        return True


class ClipCycle(gym.Wrapper):
    """Each reset plays the next of ``clip_ids`` in order (so an evaluation of ``len(clip_ids)``
    episodes sees every clip once, the same clips every time)."""

    def __init__(self, env: gym.Env, clip_ids: Sequence[str]):
        super().__init__(env)
        if not clip_ids:
            raise ValueError("ClipCycle needs at least one clip id")
        self.clip_ids, self._next = list(clip_ids), 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        clip = self.clip_ids[self._next % len(self.clip_ids)]
        self._next += 1
        return self.env.reset(seed=seed, options={**(options or {}), "clip": clip})


def held_out_eval_callback(env: gym.Env, clip_ids: Sequence[str], eval_freq: int, log_path: str | Path) -> EvalCallback:
    """``EvalCallback`` over every clip of ``clip_ids`` once (deterministic policy), results under ``log_path``.

    For monitoring only: no best model is kept, because choosing a model on the test clips would
    leak them into the final evaluation.
    """
    eval_env = Monitor(ClipCycle(env, clip_ids))
    return EvalCallback(eval_env, n_eval_episodes=len(clip_ids), eval_freq=eval_freq, log_path=str(log_path), deterministic=True, verbose=0)


def checkpoint_callback(save_path: str | Path, save_freq: int, n_envs: int = 1) -> CheckpointCallback:
    """Model and replay buffer every ``save_freq`` env steps (summed over the ``n_envs`` envs)."""
    return CheckpointCallback(max(save_freq // n_envs, 1), str(save_path), name_prefix=CHECKPOINT_PREFIX, save_replay_buffer=True)


def checkpoint_steps(path: str | Path) -> int:
    """The env steps at which the checkpoint ``path`` (``model_<steps>_steps.zip``) was saved."""
    if (m := _CHECKPOINT.match(Path(path).name)) is None:
        raise ValueError(f"{path} is not a checkpoint ({CHECKPOINT_PREFIX}_<steps>_steps.zip)")
    return int(m.group(1))


def latest_checkpoints(save_path: str | Path) -> list[tuple[Path, Path | None]]:
    """``(model.zip, replay_buffer.pkl or None)`` of each checkpoint under ``save_path``, latest first."""
    folder = Path(save_path)
    found = [(checkpoint_steps(p), p) for p in folder.glob("*.zip") if _CHECKPOINT.match(p.name)] if folder.is_dir() else []
    out = []
    for steps, model in sorted(found, reverse=True):
        buffer = folder / f"{CHECKPOINT_PREFIX}_replay_buffer_{steps}_steps.pkl"
        out.append((model, buffer if buffer.exists() else None))
    return out


def clear_checkpoints(save_path: str | Path) -> int:
    """Delete the checkpoints (models and replay buffers) under ``save_path``; returns how many files went.
    A fresh run clears those of an earlier run in the same folder, which ``--resume`` and the
    checkpoint ensemble would otherwise take for its own."""
    folder = Path(save_path)
    stale = list(folder.glob(f"{CHECKPOINT_PREFIX}_*_steps.*")) if folder.is_dir() else []
    for path in stale:
        path.unlink()
    return len(stale)


class WeightAveraging(BaseCallback):
    """Replaces the policy's weights at the end of training by their average over the last part of it.

    Stochastic weight averaging for RL (E. Nikishin et al., "Improving stability in deep reinforcement
    learning with weight averaging", 2018): a snapshot of the actor (``model.policy.actor``, or the
    whole policy for PPO) every ``every`` env steps from ``start_fraction`` of the run on, averaged
    uniformly. Here the deployed TD3 policy's per-clip results swing by +-0.5 dB SI-SDR between
    nearby checkpoints; the average sits in the middle of that swing (see the issue note). The average
    is kept in memory: a run resumed after a kill averages the steps after the resume.

    :param start_fraction: fraction of the run's steps after which snapshots are taken.
    :param every: env steps (summed over envs) between snapshots.
    """

    def __init__(self, start_fraction: float = 0.5, every: int = 500, verbose: int = 0):
        super().__init__(verbose)
        if not 0.0 <= start_fraction < 1.0 or every < 1:
            raise ValueError(f"need 0 <= start_fraction < 1 and every >= 1, got {start_fraction}, {every}")
        self.start_fraction, self.every = start_fraction, every
        self.average: dict[str, Any] | None = None
        self.snapshots = 0

    def _module(self):
        return getattr(self.model.policy, "actor", self.model.policy)

    def _on_training_start(self) -> None:
        self._start = self.start_fraction * self.model._total_timesteps
        self._next = 0

    def _on_step(self) -> bool:
        if self.num_timesteps < self._start or self.num_timesteps < self._next:
            return True
        self._next = self.num_timesteps + self.every
        state = {k: v.detach().clone() for k, v in self._module().state_dict().items()}
        self.snapshots += 1
        if self.average is None:
            self.average = state
        else:
            for k, v in state.items():
                if v.is_floating_point():
                    self.average[k] += (v - self.average[k]) / self.snapshots
        return True

    def _on_training_end(self) -> None:
        if self.average is not None:
            self._module().load_state_dict(self.average)
            self.logger.record("train/averaged_snapshots", self.snapshots)
