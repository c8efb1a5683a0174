"""Training runs: vectorized envs (optionally under the safety wrapper), SB3 learning with checkpoints and resume,
and the final evaluation on the test clips (bypass, defaults, best static setting, the policy).

``train.py`` is the command line over :func:`run`; everything a run needs is in :class:`RunConfig`,
saved as ``run.json`` under the output folder so that ``--resume`` continues the same run.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

import scenarios
from agents.callbacks import (
    QualityCallback,
    WeightAveraging,
    checkpoint_callback,
    checkpoint_steps,
    clear_checkpoints,
    held_out_eval_callback,
    latest_checkpoints,
)
from agents.ensemble import checkpoint_ensemble, seed_ensemble
from agents.evaluation import CLIP_METRICS, best_static_params, evaluate_policy, evaluate_static, mean_scores
from agents.factory import ALGORITHMS, agent_config, load_agent, make_agent, read_config, save_agent
from feedback_env.envs.audio_enhancement import AudioEnhancementEnv, check_augment
from feedback_env.pipeline import PARAMETER_SPACE, transparent_params
from feedback_env.wrappers import SafetyWrapper

DENOISING = ("highpass_hz", "hum_depth_db", "hum_width_hz", "nr_oversubtraction", "nr_floor_db", "nr_noise_window_s", "nr_smoothing_ms")
"""The parameters tuned by default: the filtering and noise-reduction stages. The compressor, EQ and level
stages only cost SI-SDR; one static setting of these 7 found by CMA on the train clips (120 evaluations)
scores 12.06 dB mean test SI-SDR, against 11.66 dB for all 19 (300 evaluations): the larger space is
harder to search and adds nothing."""

AUGMENT = {"snr_shift_db": [-10.0, 10.0], "splice": 0.5, "fresh_noise": 0.5}
"""Default training variants: noise rescaled by -10..+10 dB of SNR, half the episodes two clips long, and
half the parts with a new noise in place of the clip's (see :class:`RunConfig`'s ``augment``)."""

ENSEMBLE = 4
"""TD3 runs act with the mean action of the last 4 checkpoints and the final (weight-averaged) model
(:func:`~agents.ensemble.checkpoint_ensemble`); see :class:`RunConfig`'s ``ensemble``."""

MEMBERS = 2
"""TD3 runs train two agents side by side, from seeds ``seed`` and ``seed + SEED_STRIDE``, and act with the
mean action of both (:func:`~agents.ensemble.seed_ensemble`); see :class:`RunConfig`'s ``members``."""

SEED_STRIDE = 1000
"""Member ``k`` of a run trains with seed ``seed + k * SEED_STRIDE``, so the runs of nearby seeds share no member."""

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


TRAINABLE_ENVS = ("feedback_env/AudioEnhancement-v0", "feedback_env/AudioEnhancementDelta-v0")
"""The env ids a run trains on: continuous parameters as actions (absolute, or changes)."""


@dataclass
class RunConfig:
    """Everything that defines a training run (saved as ``run.json``).

    :param timesteps: env steps in total (chunks) of each member, summed over ``n_envs``. Default 40k: the seed-0 run's
        final model (feature context 0, before checkpoint ensembles) scores 12.49 dB mean test SI-SDR after
        20k steps (29 % of the static-to-oracle gap closed) and 12.75 dB after 40k (47 %), in 6 min 40 s
        on 2 shared cores; 50k-step runs took 8 min 0 s to 9 min 11 s, too close to the 10-minute budget
        (``benchmarks/learning.py``, whose docstring gives the default run before the hum notches' speech gate
        over seeds 0-4, and the current one over seeds 0-3). The default run
        of two members side by side took 5 min 29 s on an idle 2-core machine.
    :param ensemble: TD3: the saved policy acts with the mean action of the last ``ensemble`` checkpoints
        of the second half of the run and the final model (:func:`~agents.ensemble.checkpoint_ensemble`);
        0 for the final model alone; None: :data:`ENSEMBLE` for TD3, 0 for SAC and PPO. The default run
        (with fresh noise: see ``augment``) on seeds 0-4 closes 30.0 / 46.1 / 24.4 / 46.9 / 45.1 % of the
        gap with it and 6.0 / 47.2 / 4.1 / 48.4 / 41.8 % with the final model alone (mean 38.5 vs 29.5 %).
        Without fresh noise: 43.9 / 42.9 / 31.8 / 3.8 / -30.1 % against 40.6 / 38.1 / 33.9 / -11.3 / -35.2 %
        (mean 18.5 vs 13.2 %); with ``feature_context`` 0 too, 47.6 / 37.6 / 14.5 / -1.0 / -5.3 % against
        47.4 / 22.5 / 0.5 / -13.5 / -7.5 % (mean 18.7 vs 9.9 %). Better on 12 runs of 15, never worse by
        more than 2.1 points (``benchmarks/learning.py --run RUN``: ``policy`` and ``policy_final_model``).
    :param members: TD3: agents trained side by side (one process per CPU core), member ``k`` from seed
        ``seed + k * SEED_STRIDE`` as a one-agent run of its own under ``out/member_k``; the saved policy acts
        with the mean action of all their actors (:func:`~agents.ensemble.seed_ensemble`). None: :data:`MEMBERS`
        for TD3, 1 for SAC and PPO. The snapshots of one run err alike; runs of different seeds err
        differently on clips none of them saw. The default run (two members) on seeds 0-4 closes 56.7 / 59.4 /
        37.1 / 62.2 / 55.9 % of the static-to-oracle gap on the test clips against 52.4 / 55.2 / 26.9 / 39.1 /
        47.0 % for its first member alone (one agent, the default before this option; mean 54.2 vs 44.1 %),
        keeps PESQ above static on all five, and gains -0.12 / +0.42 / +0.30 / +0.44 / +0.62 dB over static
        on the non-stationary clips against +0.01 / +0.18 / +0.24 / +0.60 / +0.46 (mean +0.33 vs +0.30).
        Each figure: ``python train.py --seed N --out RUN`` then ``benchmarks/learning.py --run RUN``
        (``policy`` and ``policy_one_seed``). These and this docstring's other figures of seeds 0-4 moved
        between machines (the one-agent run of seed 0 closes 52.4 % on the machine of this option, 30.0 % on
        the one the ``augment`` figures come from; most likely training amplifying differences in the last
        bits of the arithmetic between CPUs and library builds): compare configurations over seeds on one machine.
    :param checkpoint_freq: env steps between checkpoints (model + replay buffer).
    :param eval_freq: env steps between evaluations on the test clips (TensorBoard ``eval/``).
    :param static_budget: CMA evaluations for the best static setting (each runs every train clip).
    :param smoothing: the low-pass on the policy's parameters where it is used (the evaluation env, and
        the saved model's config, which :class:`~agents.strategy.PolicyStrategy` follows); the absolute
        env's ``config["smoothing"]``. Training runs without it: the policy learns the raw map from
        what it hears to parameters; the low-pass then averages its chunk-to-chunk estimation noise
        (+0.33 and +0.19 dB mean test SI-SDR for the 20k-step runs of seeds 0 and 1; ablation
        ``policy_no_lowpass`` of ``benchmarks/learning.py``).
    :param augment: the training env's clip variants (``config["augment"]``); None for none. The default
        (:data:`AUGMENT`) adds ``fresh_noise`` 0.5 to the SNR shift and splicing: with only 19 train clips
        the policy fitted their noises (on two runs the test score of successive checkpoints fell while
        their train-clip score rose). With it, the default run on seeds 0-4 closes 30.0 / 46.1 / 24.4 / 46.9
        / 45.1 % of the static-to-oracle gap on the test clips, against 43.9 / 42.9 / 31.8 / 3.8 / -30.1 %
        without (mean 38.5 vs 18.5 %, worst seed 24.4 vs -30.1 %), beats the static SI-SDR and keeps PESQ
        above it on all five (without: 4), but gains less on the non-stationary clips: +0.33 / +0.17 /
        +0.08 / +0.12 / +0.46 dB over static against +0.20 / +0.82 / +0.46 / +0.14 / +0.74 (mean +0.23 vs
        +0.47). Each figure: ``python train.py --seed N --out RUN`` (without: ``--augment
        '{"snr_shift_db": [-10, 10], "splice": 0.5}'``), then ``benchmarks/learning.py --run RUN``. Also
        tried (same commands, other ``--augment``): ``fresh_noise`` 0.75: 25.9 / 34.9 / 32.7 / 34.3 / -19.4
        %, non-stationary mean -0.06 dB; new noises that change mid-part (-12..+12 dB, at 25-75 % of it)
        for half of them: 5.1 / 50.9 / 42.1 / 43.7 / -5.0 %, non-stationary mean +0.12 dB (branch
        ``fresh-change``).
    :param average_from: fraction of the run after which the actor's weights are averaged
        (:class:`~agents.callbacks.WeightAveraging`, a snapshot every 500 steps); None for the last weights.
    :param residual: absolute env: actions are offsets of at most this many unit-cube widths around the
        best static setting (found before training; ``config["action_center"]``/``["action_radius"]``),
        and episodes start there; None for actions over the whole cube. Off by default: radius 0.5 gained
        over the whole cube at 20k steps (non-stationary test clips +0.21 instead of -0.29 dB) but not
        at 40k-50k (mean test SI-SDR 12.76 vs 12.75 dB for seed 0 at 40k; 12.16 vs 12.40 for seed 1 at
        50k, PESQ lost); radius 1.0 at 20k: 12.39 dB, below the whole cube's 12.49.
    :param feature_context: the env's ``config["feature_context"]``: the per-chunk decay of a running
        mean of the chunk features the policy hears beside the coming chunk's (0.8: ~2.5 s), or 0 for
        none. Before fresh noise (see ``augment``), with the checkpoint ensemble, the run on seeds 0-4
        closes 43.9 / 42.9 / 31.8 / 3.8 / -30.1 % of the static-to-oracle gap on the test clips at 0.8 and
        47.6 / 37.6 / 14.5 / -1.0 / -5.3 % at 0 (mean 18.5 vs 18.7 %, median 31.8 vs 14.5 %); on the
        non-stationary clips it gains +0.20 / +0.82 / +0.46 / +0.14 / +0.74 dB over static against +0.18 /
        +0.41 / -0.05 / +0.02 / +0.29 (better on every seed), keeps PESQ above static on every seed (0: not
        on seed 3) and beats the static SI-SDR on 4 seeds of 5 (0: 3). Each figure: ``python train.py
        --seed N --feature-context A --augment '{"snr_shift_db": [-10, 10], "splice": 0.5}' --out RUN``,
        then ``benchmarks/learning.py --run RUN``.
    """

    algo: str = "td3"
    env_id: str = "feedback_env/AudioEnhancement-v0"
    scenarios: str = "builtin"
    timesteps: int = 40_000
    seed: int = 0
    n_envs: int = 1
    out: str = "runs/td3"
    safety: bool = False
    tuned: list[str] = field(default_factory=lambda: list(DENOISING))
    chunk_s: float = 0.5
    smoothing: float = 0.3
    augment: dict[str, Any] | None = field(default_factory=lambda: dict(AUGMENT))
    average_from: float | None = 0.5
    residual: float | None = None
    feature_context: float = 0.8
    ensemble: int | None = None
    members: int | None = None
    checkpoint_freq: int = 5_000
    eval_freq: int = 5_000
    static_budget: int = 120
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.env_id not in TRAINABLE_ENVS:
            raise ValueError(f"env {self.env_id!r} cannot be trained on here; train.py takes {', '.join(TRAINABLE_ENVS)} "
                             "(the preset env, StrategySelection-v0, is for bandits)")  # fmt: skip
        if self.algo not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algo!r}; known: {sorted(ALGORITHMS)}")
        if self.timesteps <= 0 or self.n_envs <= 0:
            raise ValueError(f"timesteps and n_envs must be positive, got {self.timesteps} and {self.n_envs}")
        if not 0.0 <= self.smoothing < 1.0:  # the env checks it too, but only once it is built
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")
        if self.env_id != "feedback_env/AudioEnhancement-v0" and (
            self.residual is not None or self.smoothing != RunConfig.smoothing
        ):
            raise ValueError(f"residual and smoothing act on the absolute env's actions; {self.env_id} has none of them "
                             f"(got residual {self.residual}, smoothing {self.smoothing})")  # fmt: skip
        if not 0.0 <= self.feature_context < 1.0:
            raise ValueError(f"feature context must be in [0, 1), got {self.feature_context}")
        if self.ensemble is None:
            self.ensemble = ENSEMBLE if self.algo == "td3" else 0
        if self.ensemble < 0 or (self.ensemble and self.algo != "td3"):
            raise ValueError(
                f"ensemble must be a number of checkpoints >= 0, and 0 unless the algorithm is td3; got {self.ensemble} for {self.algo}"
            )
        if self.members is None:
            self.members = MEMBERS if self.algo == "td3" else 1
        if self.members < 1 or (self.members > 1 and self.algo != "td3"):
            raise ValueError(f"members must be >= 1, and 1 unless the algorithm is td3; got {self.members} for {self.algo}")
        check_augment(self.augment)  # before anything is built
        PARAMETER_SPACE.subspace(self.tuned)  # unknown names raise here, naming them
        agent_config(self.algo, **self.hyperparameters)  # unknown hyperparameters raise here

    def env_config(self, split: str | None = None, training: bool = False) -> dict[str, Any]:
        """The env config for ``split``: for training (augmented, no low-pass) or for use. It names the sample rate
        (the envs' default: training runs at it), which the policy's feature bands depend on."""
        rate = AudioEnhancementEnv.default_config()["sample_rate"]
        config = {"scenarios": self.scenarios, "split": split, "tuned": list(self.tuned), "chunk_s": self.chunk_s,
                  "sample_rate": rate}  # fmt: skip
        if self.feature_context:
            config["feature_context"] = self.feature_context
        if training and self.augment:
            config["augment"] = dict(self.augment)
        if self.env_id == "feedback_env/AudioEnhancement-v0":
            if not training:
                config["smoothing"] = self.smoothing
            if self.residual is not None:
                static = static_baseline(self)["params"]
                config["fixed"] = config["action_center"] = {n: static[n] for n in self.tuned}
                config["action_radius"] = self.residual
        return config

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        saved = json.loads(Path(path).read_text())
        saved.setdefault("feature_context", 0.0)  # runs saved before the option trained without it
        saved.setdefault("members", 1)  # and as one agent before that option
        return cls(**saved)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    def member(self, k: int) -> "RunConfig":
        """The one-agent run of member ``k``: seed ``seed + k * SEED_STRIDE``, folder ``out/member_k``."""
        return replace(self, seed=self.seed + k * SEED_STRIDE, out=str(Path(self.out) / f"member_{k}"), members=1)


def _env_factory(config: RunConfig, split: str, safety: bool) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        # "module:id" makes SubprocVecEnv workers import feedback_env (and so register the ids) first
        env = gym.make(f"feedback_env:{config.env_id}", config=config.env_config(split, training=split == "train"))
        return Monitor(SafetyWrapper(env) if safety else env)

    return make


def make_vec_env(config: RunConfig) -> VecEnv:
    """The training envs: ``n_envs`` copies on the train clips (SubprocVecEnv when more than one)."""
    factories = [_env_factory(config, "train", config.safety) for _ in range(config.n_envs)]
    venv = SubprocVecEnv(factories) if config.n_envs > 1 else DummyVecEnv(factories)
    venv.seed(config.seed)
    return venv


def resume_seed(seed: int, num_timesteps: int) -> int:
    """The seed of a run resumed at step ``num_timesteps``: a 32-bit draw of ``SeedSequence((seed, num_timesteps))``.

    Reseeding with the run's own seed would replay the env draws (clips, augmentations) and the replay and
    noise samples of step 0; this one gives new draws, the same each time the run resumes at that step.
    """
    if seed < 0 or num_timesteps < 0:
        raise ValueError(f"seed and num_timesteps must be >= 0, got {seed} and {num_timesteps}")
    return int(np.random.SeedSequence((seed, num_timesteps)).generate_state(1)[0])


def check_splits(scenario_set) -> str | None:
    """The trainer trains on the clips tagged ``split: train`` and evaluates on those tagged ``test``: raise
    ValueError when there are no train clips; return a warning (else None) when no clip with a clean
    reference is tagged test, so that the evaluation scores the training clips."""
    if not any(clip.split == "train" for clip in scenario_set):
        raise ValueError(
            f"scenario set {scenario_set.name!r} has no clips tagged split 'train' (the trainer trains on them and "
            f"tests on those tagged 'test'): add \"split\": \"train\" or \"test\" to the clips' tags in its manifest"
        )
    if not any(clip.split == "test" and clip.clean is not None for clip in scenario_set):
        return (
            f"scenario set {scenario_set.name!r} has no clips tagged split 'test' with a clean reference: the "
            f"evaluation (during training and in the final table) scores the training clips"
        )
    return None


def split_ids(scenario_set, split: str) -> list[str]:
    """Clip ids of ``split`` that have a clean reference (every clip with a reference if none is tagged so)."""
    clips = [c for c in scenario_set if c.clean is not None]
    tagged = [c.id for c in clips if c.split == split]
    return tagged or [c.id for c in clips]


def _resume(config: RunConfig, venv: VecEnv) -> BaseAlgorithm | None:
    """The model of the latest readable checkpoint with its replay buffer, or None."""
    off_policy = hasattr(ALGORITHMS[config.algo], "load_replay_buffer")
    for model_path, buffer_path in latest_checkpoints(Path(config.out) / "checkpoints"):
        if off_policy and buffer_path is None:  # killed between the model and its buffer
            continue
        try:
            model = ALGORITHMS[config.algo].load(model_path, env=venv, tensorboard_log=str(Path(config.out) / "tb"))
            if off_policy:
                model.load_replay_buffer(buffer_path)
        except Exception as error:  # a checkpoint cut short by the kill: fall back to the one before
            print(f"skipping unreadable checkpoint {model_path.name}: {error}")
            continue
        model.agent_config = {"algo": config.algo, "hyperparameters": agent_config(config.algo, **config.hyperparameters)}
        return model
    return None


def train(config: RunConfig, resume: bool = False, progress_bar: bool = True) -> BaseAlgorithm:
    """Train (or continue) the run of ``config``; saves ``model.zip`` and its config under ``config.out``.

    With ``members`` > 1, each member is a one-agent run under ``out/member_k`` (up to one process per
    CPU core, the progress bar on the first); ``--resume`` continues the unfinished members and takes the
    finished ones as they are. The run's model acts with the mean action of all members' actors.
    """
    if config.members == 1:
        if resume and _finished(config):  # nothing to train; re-saving the last checkpoint would undo the averaging
            path = Path(config.out) / "model.zip"
            print(f"--resume: the run in {config.out} already finished ({read_config(path)['timesteps']} steps); its "
                  "model is kept")  # fmt: skip
            return load_agent(path)
        return _train_one(config, resume, progress_bar)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "run.json")
    if not resume:
        _clear_stale_checkpoints(out / "checkpoints")  # a one-agent run's, which nothing here reads
    members = [config.member(k) for k in range(config.members)]
    _train_members([m for m in members if not (resume and _finished(m))], resume, progress_bar)
    model = seed_ensemble([load_agent(Path(m.out) / "model.zip") for m in members])
    _save_policy(config, model, member_seeds=[m.seed for m in members])
    return model


def _save_policy(config: RunConfig, model: BaseAlgorithm, **extra: Any) -> None:
    """``model.zip`` under the run's folder, with what its users need in its config (the env, seed, steps)."""
    save_agent(
        model,
        Path(config.out) / "model.zip",
        env_id=config.env_id,
        env_config=config.env_config(None),
        seed=config.seed,
        timesteps=int(model.num_timesteps),
        safety=config.safety,
        **extra,
    )


def _clear_stale_checkpoints(folder: Path) -> None:
    """Delete an earlier run's checkpoints under ``folder``, which ``--resume`` and the ensembles would take for this run's."""
    if stale := clear_checkpoints(folder):
        print(f"removed {stale} checkpoint files of an earlier run under {folder}")


def _finished(config: RunConfig) -> bool:
    """Whether the one-agent run of ``config`` saved its model after all of its steps."""
    path = Path(config.out) / "model.zip"
    return path.exists() and read_config(path).get("timesteps", 0) >= config.timesteps


def _die_with(parent: int) -> None:
    """Linux: this process gets SIGTERM when ``parent`` dies, however it dies (``kill -9`` included), so that
    no member trains on alone beside a resumed run; elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the request was made
            os.kill(os.getpid(), signal.SIGTERM)


def _train_member(config: dict[str, Any], resume: bool, progress_bar: bool, parent: int) -> None:
    """One member's run in a worker process (one torch thread: the members share the cores)."""
    _die_with(parent)
    import torch

    torch.set_num_threads(1)
    _train_one(RunConfig(**config), resume, progress_bar)


def _train_members(members: list[RunConfig], resume: bool, progress_bar: bool) -> None:
    """Train ``members`` (one-agent runs), as many at a time as there are CPU cores, each in its own process."""
    jobs = min(len(members), os.cpu_count() or 1)
    if jobs <= 1:
        for k, member in enumerate(members):
            _train_one(member, resume, progress_bar and k == 0)
        return
    context = multiprocessing.get_context("spawn")  # torch and forked threads do not mix
    for start in range(0, len(members), jobs):
        batch = members[start : start + jobs]
        workers = [context.Process(target=_train_member, args=(asdict(m), resume, progress_bar and start + i == 0, os.getpid()))
                   for i, m in enumerate(batch)]  # fmt: skip
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        failed = [f"{m.out} (seed {m.seed}, exit code {w.exitcode})" for m, w in zip(batch, workers) if w.exitcode != 0]
        if failed:
            raise RuntimeError(f"member run(s) failed: {'; '.join(failed)}; their checkpoints are kept, rerun with --resume")


def _train_one(config: RunConfig, resume: bool, progress_bar: bool) -> BaseAlgorithm:
    """Train (or continue) one agent; saves ``model.zip`` (with its checkpoint ensemble) under ``config.out``.
    A continued run reseeds its envs and generators with :func:`resume_seed` of its seed and step count."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "run.json")
    venv = make_vec_env(config)
    model = _resume(config, venv) if resume else None
    resumed = model is not None
    if resumed:  # SB3's load reseeded everything with the run's seed, which would replay the first episodes
        model.set_random_seed(resume_seed(config.seed, model.num_timesteps))
    if resume and not resumed:
        print(f"--resume: no readable checkpoint under {out / 'checkpoints'}; starting from scratch")
    if not resumed:
        _clear_stale_checkpoints(out / "checkpoints")
    if model is None:
        model = make_agent(config.algo, venv, seed=config.seed, tensorboard_log=str(out / "tb"), **config.hyperparameters)
    scenario_set = scenarios.load(config.scenarios)
    eval_env = gym.make(config.env_id, config=config.env_config(None))
    callbacks = [
        QualityCallback(),
        checkpoint_callback(out / "checkpoints", config.checkpoint_freq, config.n_envs),
        held_out_eval_callback(eval_env, split_ids(scenario_set, "test"), max(config.eval_freq // config.n_envs, 1), out / "eval"),
    ]
    if config.average_from is not None:
        callbacks.append(WeightAveraging(config.average_from, every=500))
    remaining = config.timesteps - (model.num_timesteps if resumed else 0)
    if remaining > 0:
        model.learn(remaining, callback=CallbackList(callbacks), progress_bar=progress_bar, reset_num_timesteps=not resumed, tb_log_name=config.algo)
    venv.close()
    second_half = [path for path, _ in latest_checkpoints(out / "checkpoints") if checkpoint_steps(path) >= model.num_timesteps / 2]
    if config.ensemble and second_half:  # no checkpoint in the second half: the final model alone
        checkpoint_ensemble(model, second_half[: config.ensemble][::-1])
    _save_policy(config, model)
    return model


def policy_predictor(model: BaseAlgorithm) -> Callable[[np.ndarray], np.ndarray]:
    """Observation -> the model's deterministic action."""
    return lambda obs: model.predict(obs, deterministic=True)[0]


def static_baseline(config: RunConfig, scenario_set=None) -> dict[str, Any]:
    """The best static setting of the tuned parameters on the train clips (cached in ``static.json``)."""
    path = Path(config.out) / "static.json"
    key = {"scenarios": config.scenarios, "tuned": list(config.tuned), "budget": config.static_budget, "seed": config.seed}
    if path.exists():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached
    if scenario_set is None:
        scenario_set = scenarios.load(config.scenarios)
    train_clips = [scenario_set[i] for i in split_ids(scenario_set, "train")]
    start = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    result = best_static_params(train_clips, PARAMETER_SPACE.subspace(config.tuned), config.static_budget, config.seed)
    found = {"key": key, "params": result.params, "train_si_sdr": result.score, "seconds": time.perf_counter() - start}
    path.write_text(json.dumps(found, indent=2))
    return found


def evaluate_run(config: RunConfig, model: BaseAlgorithm, metrics: tuple[str, ...] = CLIP_METRICS, write: bool = True) -> dict[str, Any]:
    """Whole-clip metrics on the test clips: bypass, defaults, best static (train CMA), the policy.

    :param write: also save the result as ``evaluation.json`` under the run's folder.
    """
    scenario_set = scenarios.load(config.scenarios)
    test = [scenario_set[i] for i in split_ids(scenario_set, "test")]
    static = static_baseline(config, scenario_set)
    env = gym.make(config.env_id, config=config.env_config(None))
    policy, schedules = evaluate_policy(env, policy_predictor(model), test, metrics, config.scenarios)
    per_clip = {
        "bypass": evaluate_static(test, transparent_params(), metrics),
        "defaults": evaluate_static(test, PARAMETER_SPACE.defaults(), metrics),
        "best_static": evaluate_static(test, static["params"], metrics),
        "policy": policy,
    }
    non_stationary = [c.id for c in test if c.tags.get("stationary") is False]
    result = {
        "clips": [c.id for c in test],
        "non_stationary": non_stationary,
        "mean": {k: mean_scores(v) for k, v in per_clip.items()},
        "per_clip": per_clip,
        "static": static,
        "schedules": schedules,
    }
    if non_stationary:
        result["mean_non_stationary"] = {k: mean_scores(v, non_stationary) for k, v in per_clip.items()}
    if write:
        (Path(config.out) / "evaluation.json").write_text(json.dumps(result, indent=2))
    return result


def print_table(result: dict[str, Any]) -> None:
    """The evaluation as a rich table (mean over the test clips; non-stationary clips in brackets)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    ns = result.get("mean_non_stationary", {})
    title = f"Test clips ({len(result['clips'])}; [non-stationary: {len(result['non_stationary'])}]), whole-clip metrics"
    table = Table(title=escape(title))
    table.add_column("system")
    metrics = list(next(iter(result["mean"].values())))
    for m in metrics:
        table.add_column(m, justify="right")
    for system, means in result["mean"].items():
        cells = [f"{means[m]:.3f}" + (f" [{ns[system][m]:.3f}]" if system in ns else "") for m in metrics]
        table.add_row(system, *map(escape, cells))
    Console().print(table)


def run(config: RunConfig, resume: bool = False, progress_bar: bool = True) -> dict[str, Any]:
    """Train, then evaluate and print the table; returns the evaluation (also in ``evaluation.json``)."""
    start = time.perf_counter()
    model = train(config, resume, progress_bar)
    result = evaluate_run(config, model, write=False)
    result["wall_seconds"] = time.perf_counter() - start
    (Path(config.out) / "evaluation.json").write_text(json.dumps(result, indent=2))
    print_table(result)
    return result
