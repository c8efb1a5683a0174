"""SB3 agents for the enhancement envs: TD3 (default), SAC and PPO, with defaults tuned for this env.

Hyperparameters are plain JSON-able dicts (:data:`DEFAULTS`), so the exact configuration of a run is
saved next to its model (:func:`save_agent`) and read back by :func:`load_agent`. Start points were the
rl-zoo3 settings for continuous control (TD3/SAC: lr 1e-3, batch 256, tau 0.005, train every step;
TD3: Gaussian exploration noise, target policy smoothing 0.2 clipped at 0.5, policy delay 2); what
differs for this env and why:

* small nets ([64, 64]): 2 CPU cores; the policy maps 13 features and a few parameters to a few
  parameters, and rl-zoo3's [400, 300] is ~5x slower per update (FACTS.md).
* ``gamma`` 0.5: a chunk's parameters mostly decide that chunk's reward (the noise estimate carries
  a little over); long horizons only add critic variance on 8-16-chunk episodes.
* ``learning_starts`` 1000 and Gaussian noise of 0.3 in the unit cube: ~100 episodes of broad
  exploration before learning; the rewards of one clip vary little between nearby settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.noise import NormalActionNoise

from agents.applied_action import AppliedActionSAC
from agents.prioritized import PrioritizedReplayBuffer, PrioritizedTD3

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"td3": PrioritizedTD3, "sac": AppliedActionSAC, "ppo": PPO}

_OFF_POLICY: dict[str, Any] = {
    "learning_rate": 1e-3,
    "buffer_size": 100_000,
    "learning_starts": 1000,
    "batch_size": 256,
    "tau": 0.005,
    "gamma": 0.5,
    "train_freq": 1,
    "gradient_steps": 1,
    "net_arch": [64, 64],
}

DEFAULTS: dict[str, dict[str, Any]] = {
    "td3": {
        **_OFF_POLICY,
        "policy_delay": 2,
        "target_policy_noise": 0.2,
        "target_noise_clip": 0.5,
        "action_noise_std": 0.3,  # Gaussian exploration noise, unit-cube widths
        "prioritized": False,  # PrioritizedReplayBuffer (alpha 0.6, beta 0.4 -> 1)
    },
    "sac": {**_OFF_POLICY, "ent_coef": "auto"},
    "ppo": {
        "learning_rate": 1e-3,
        "n_steps": 512,
        "batch_size": 64,
        "n_epochs": 10,
        "gamma": 0.5,
        "gae_lambda": 0.95,
        "clip_range": 0.2,
        "ent_coef": 0.0,
        "net_arch": [64, 64],
    },
}


def agent_config(algo: str, **overrides: Any) -> dict[str, Any]:
    """The hyperparameters of ``algo`` with ``overrides`` merged in (unknown keys raise)."""
    if algo not in DEFAULTS:
        raise ValueError(f"unknown algorithm {algo!r}; known: {sorted(DEFAULTS)}")
    unknown = set(overrides) - set(DEFAULTS[algo])
    if unknown:
        raise ValueError(f"unknown {algo} hyperparameters {sorted(unknown)}; known: {sorted(DEFAULTS[algo])}")
    return {**DEFAULTS[algo], **overrides}


def _sb3_kwargs(algo: str, config: dict[str, Any], env: gym.Env | Any) -> dict[str, Any]:
    """Translate the JSON config into SB3 constructor arguments."""
    kwargs = dict(config)
    kwargs["policy_kwargs"] = {"net_arch": list(kwargs.pop("net_arch"))}
    if algo == "td3":
        d = int(np.prod(env.action_space.shape))
        std = kwargs.pop("action_noise_std")
        kwargs["action_noise"] = NormalActionNoise(np.zeros(d), std * np.ones(d)) if std > 0 else None
        if kwargs.pop("prioritized"):
            kwargs["replay_buffer_class"] = PrioritizedReplayBuffer
    return kwargs


def make_agent(
    algo: str,
    env: gym.Env | Any,
    *,
    seed: int | None = 0,
    tensorboard_log: str | None = None,
    verbose: int = 0,
    **overrides: Any,
) -> BaseAlgorithm:
    """A new SB3 model of ``algo`` (``"td3"``, ``"sac"`` or ``"ppo"``) on ``env`` (an env or a VecEnv).

    :param overrides: hyperparameters replacing :data:`DEFAULTS` (same names).
    The merged config is kept on the model as ``model.agent_config`` for :func:`save_agent`.
    """
    config = agent_config(algo, **overrides)
    model = ALGORITHMS[algo]("MlpPolicy", env, seed=seed, tensorboard_log=tensorboard_log, verbose=verbose, **_sb3_kwargs(algo, config, env))
    model.agent_config = {"algo": algo, "hyperparameters": config}
    return model


def config_path(model_path: str | Path) -> Path:
    """Where the config of the model at ``model_path`` (``.zip`` or not) is kept: ``<stem>.config.json``."""
    p = Path(model_path)
    return p.with_name(p.name.removesuffix(".zip") + ".config.json")


def save_agent(model: BaseAlgorithm, path: str | Path, **extra: Any) -> Path:
    """Save ``model`` to ``path`` (.zip) and its config (algo, hyperparameters, ``extra`` such as the env)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    config = {**getattr(model, "agent_config", {}), **extra}
    config_path(path).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    return path


def read_config(path: str | Path) -> dict[str, Any]:
    """The config saved with the model at ``path``."""
    p = config_path(path)
    if not (Path(path).is_file() or Path(f"{path}.zip").is_file()):  # SB3 loads "run/model" as "run/model.zip"
        raise FileNotFoundError(f"no model file {path}: train one (python train.py --out DIR gives DIR/model.zip)")
    if not p.exists():
        raise FileNotFoundError(f"no config {p} next to model {path}: save models with agents.save_agent")
    return json.loads(p.read_text())


def load_agent(path: str | Path, env: gym.Env | Any | None = None, **kwargs: Any) -> BaseAlgorithm:
    """Load a model saved by :func:`save_agent` (the algorithm is read from its config)."""
    config = read_config(path)
    model = ALGORITHMS[config["algo"]].load(path, env=env, **kwargs)
    model.agent_config = config
    return model
