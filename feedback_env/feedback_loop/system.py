"""FeedbackLoopSystem: learns the pipeline's parameters from the quality of its own output, while it runs.

One iteration per audio chunk::

    loop = FeedbackLoopSystem(seed=0)
    for noisy, clean in chunks:                 # clean may be None (then non-intrusive metrics)
        record = loop.step(noisy, clean)        # enhance, score, record, update when due, roll back if worse

or, with audio enhanced elsewhere (the seed API)::

    loop.collect_feedback(input_audio=x, output_audio=y, metrics={"si_sdr": 7.1})
    analysis = loop.analyze_performance(window=100)   # .trend, .best_params, ...
    update = loop.update_parameters(strategy="gradient")
    if loop.should_rollback():
        loop.rollback()

The quality signal is the reward of :class:`~feedback_env.objectives.QualityReward`: the improvement
of the processed chunk over the unprocessed one (intrusive default when a clean reference is given,
else the non-intrusive default). Updates go through the strategy registry (:mod:`.strategies`) and the
safety checks of :mod:`.guards`; rollback uses the CUSUM test of :mod:`.checkpoints`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from feedback_env.audio import as_audio, check_same_length
from feedback_env.errors import FeedbackEnvError, MetricError
from feedback_env.feedback_loop.analysis import PerformanceAnalysis, analyze
from feedback_env.feedback_loop.checkpoints import CheckpointMonitor
from feedback_env.feedback_loop.convergence import ConvergenceAnalyzer, ConvergenceReport
from feedback_env.feedback_loop.guards import StepGuard
from feedback_env.feedback_loop.history import ProcessingHistory
from feedback_env.feedback_loop.objective import MIN_SCORED_S
from feedback_env.feedback_loop.parallel import ParallelScorer
from feedback_env.feedback_loop.records import FeedbackRecord, RollbackEvent, UpdateRecord
from feedback_env.feedback_loop.replay import ChunkReplay, DelayLine, snapshot
from feedback_env.feedback_loop.storage import LoopFileError, read_checked, write_atomic
from feedback_env.feedback_loop.strategies import (
    UpdateStrategy,
    available_strategies,
    canonical_strategy,
    check_strategy_options,
    make_strategy,
)
from feedback_env.features import ChunkFeatures
from feedback_env.metrics import METRICS, compute_metrics
from feedback_env.objectives import Objective, QualityReward
from feedback_env.observation import build_observation, feedback_vector
from feedback_env.parameters import ParameterSpace
from feedback_env.pipeline import EnhancementPipeline, PipelineConfig

CURVATURE_BLOCK = 10
"""Updates averaged into each end of the convergence analyzer's secant pairs. SPSA's gradient on one chunk
is mostly the chunk's: after 100 iterations on 4 train clips (Hadamard pairs), BFGS fed update by update finds
curvatures 24-72x those of a finite-difference Hessian of the clip objective, averaged over blocks of 10 updates
0.5-2.9x (blocks of 5: 6-44x; blocks of 20 make 2-3 pairs in 100 updates; Adam's first moment fed as the
gradient, as before: 1.8-6.2x, and biased on a noise-free quadratic too, where the blocks are exact:
``test_loop_curvature_is_the_reward_hessian``) (``python benchmarks/feedback_loop.py --skip latency memory
convergence --curvature``)."""

DEFAULT_TUNED = (
    "highpass_hz",
    "hum_depth_db",
    "hum_width_hz",
    "nr_oversubtraction",
    "nr_floor_db",
    "nr_noise_window_s",
    "nr_smoothing_ms",
    "eq_low_db",
    "eq_mid_db",
    "eq_mid_hz",
    "eq_high_db",
)
"""Parameters tuned by default (11 of 19): the high-pass, hum, noise-reduction and EQ stages. The
compressor, the loudness leveller and the limiter stay at their defaults: they change the gain from one
chunk to the next, which a per-chunk reward cannot see (SI-SDR is scale-invariant within a chunk) while
the level-sensitive LSD term rewards it, so tuning them games the reward. Measured on the 19 train
clips (``python benchmarks/feedback_loop.py --skip latency memory convergence --subset``): CMA-ES over
all 19 (400 evaluations) lifts the loop's objective from 0.74 (defaults) to 1.01 while whole-clip
SI-SDR falls from 10.8 to 7.5 dB; the cached oracle over these 11 reaches 1.03 and 12.9 dB. ``tuned=None`` tunes all 19."""


class NoChunkError(FeedbackEnvError, RuntimeError):
    """An operation that needs a collected audio chunk was called before any was collected."""


def _as_reward(value: QualityReward | Sequence[Objective] | None, intrusive: bool) -> QualityReward:
    if value is None:
        return QualityReward.default(intrusive=intrusive)
    if isinstance(value, QualityReward):
        return value
    return QualityReward(list(value))


class FeedbackLoopSystem:
    """Online feedback loop around an :class:`~feedback_env.pipeline.EnhancementPipeline`.

    :param learning_rate: Adam step of the ``gradient`` strategy per update, in unit-cube units (a
        coordinate moves about this much per update while its gradient sign is consistent; the cube
        is 2 wide). 0.1 is tuned on the built-in train clips; the seed's 0.01 works, 10x slower.
    :param pipeline: the pipeline to run and tune; a new 16 kHz one if None.
    :param objectives: reward for chunks with a clean reference: a QualityReward or a list of
        Objective (intrusive default if None). A non-intrusive reward here is used for every chunk.
    :param history_size: records kept (bounded memory).
    :param seed: seeds the loop's random generator (perturbations, candidate draws).
    :param tuned: parameter names the loop tunes, a non-empty list (:data:`DEFAULT_TUNED` if not given; None = all).
    :param start_params: physical overrides of the pipeline's current parameters at the start.
    :param strategy: default strategy of :meth:`update_parameters` and :meth:`step`.
    :param strategy_options: ``{name: kwargs}`` passed to a strategy's factory (options under an alias, ``spsa`` or
        ``optuna``, apply to the strategy it names). Unknown names here or in ``strategy`` raise ``ValueError``.
    :param update_every: :meth:`step` updates after this many records.
    :param max_step: trust region: largest change of any tuned parameter per update (unit cube).
    :param false_alarm_rate: of the rollback test, per record on a stationary stream.
    :param min_shift: drop the rollback test detects quickly, in baseline standard deviations.
    :param checkpoint_interval: records between checkpoint candidates.
    :param blind_objectives: reward for chunks without a clean reference (non-intrusive default; its WADA-SNR
        rewards suppressed pauses, so a loop learning from it alone drifts towards over-suppression).
    :param mode: ``"online"`` (:meth:`step` updates) or ``"offline"`` (:meth:`step` only records;
        :meth:`update_parameters` defaults to the ``offline`` surrogate strategy).
    :param replay_warmup: chunks before the last one that :meth:`evaluate` re-processes first with the
        parameters tried, so that slow state (noise estimate, SNR smoothing) is theirs; the early ones only
        advance the noise tracker (:meth:`EnhancementPipeline.track`). 0 replays the last chunk alone from
        the live state, which learns markedly worse (``benchmarks/feedback_loop.py --ablation``). 7 (3.5 s)
        lets probes see the steady-state cost of slow noise tracking; with one scored chunk it learns no
        better than 1 (``gradient`` with ``design="hadamard"``, its default when measured: train clips at
        >= 90 % of the oracle: 17 / 15 / 14 of 19 on seeds 0 / 1 / 2, at >= 95 %: 12 / 13 / 11; 1: 17 / 16 / 15
        and 12 / 11 / 9) nor than the default (1, two scored chunks:
        15 / 16 / 16 and 12 / 12 / 12), at 1.9x the cost of an update.
    :param replay_scored: chunks whose rewards :meth:`evaluate` averages: the last one and the
        ``replay_scored - 1`` warm-up chunks before it (at most ``replay_warmup + 1``; None: 2, or 1 without
        a warm-up). 2 damps the chunk-to-chunk noise of the reward for one more metric computation per
        evaluation: train clips at >= 95 % of the oracle on 12 / 12 / 12 of 19 (seeds 0 / 1 / 2; 1:
        12 / 11 / 9; at >= 90 %: 15 / 16 / 16, 1: 17 / 16 / 15), the worst clip at 0.69 / 0.79 / 0.80 of it
        (1: 0.69 / 0.70 / 0.76); 30 iterations after a noise change, the 24 runs of the non-stationary clips
        at 0.79 of the new oracle on average (1: 0.77) (``--ablation``, ``--adaptation-seeds``; the
        ``gradient`` strategy's defaults then, with ``design="hadamard"``). With random-sign probes, one
        scored chunk learned markedly worse (13 / 11 / 9 against 15 / 15 / 12 at >= 90 %, stop 16).
    :param min_scored_s: chunks shorter than this (seconds) are recorded without a score and not learnt from:
        SI-SDR and LSD of a few milliseconds are noise, and an update after every 10 ms chunk (16 replays of it)
        cannot keep up with real time. A service with short frames passes blocks of them to :meth:`step` (0.5 s,
        as the envs and every figure here use).
    :param feature_context: :class:`~feedback_env.features.ChunkFeatures` ``context``: the per-chunk
        decay of the averaged features appended to each record's and observation's features (0: none).
        A TD3 policy needs the value it was trained with (its config's ``env_config["feature_context"]``).
    :param workers: processes that score an update's settings (:meth:`evaluate_many`; this one included):
        ``gradient`` scores its 16 probes on 2 cores with the same numbers as 1, its update p50 at 0.56-0.91 of
        one process's on a 2-core machine over four runs (p99 0.56-0.85, once 1.12: one slow update;
        ``benchmarks/feedback_loop.py``'s ``_2_workers`` rows against ``gradient_0.5s`` and ``_hum``); see
        ``feedback_loop.parallel`` (a script needs the ``__main__`` guard). A resource, not state: :meth:`save`
        does not keep it; :meth:`close` (or ``with``) stops the workers.
    """

    def __init__(
        self,
        learning_rate: float = 0.1,
        pipeline: EnhancementPipeline | None = None,
        objectives: QualityReward | Sequence[Objective] | None = None,
        history_size: int = 10_000,
        seed: int | None = None,
        *,
        tuned: Sequence[str] | None | str = "default",
        start_params: Mapping[str, float] | None = None,
        strategy: str = "gradient",
        strategy_options: Mapping[str, Mapping[str, Any]] | None = None,
        update_every: int = 1,
        max_step: float = 0.2,
        false_alarm_rate: float = 1e-3,
        min_shift: float = 1.5,
        checkpoint_interval: int = 16,
        blind_objectives: QualityReward | Sequence[Objective] | None = None,
        mode: str = "online",
        replay_warmup: int = 1,
        replay_scored: int | None = None,
        feature_context: float = 0.0,
        min_scored_s: float = MIN_SCORED_S,
        workers: int = 1,
    ):
        if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
        if mode not in ("online", "offline"):
            raise ValueError(f"mode must be 'online' or 'offline', got {mode!r}")
        if int(update_every) < 1:
            raise ValueError(f"update_every must be at least 1, got {update_every}")
        if not (isinstance(min_scored_s, (int, float)) and 0.0 <= min_scored_s < math.inf):
            raise ValueError(f"min_scored_s must be a number of seconds >= 0, got {min_scored_s!r}")
        self.min_scored_s = float(min_scored_s)
        self.learning_rate = float(learning_rate)
        self.pipeline = pipeline if pipeline is not None else EnhancementPipeline(16000)
        self.sample_rate = self.pipeline.sample_rate
        self.full_space: ParameterSpace = self.pipeline.space
        if tuned is not None and len(tuned) == 0:
            raise ValueError("tuned is empty: name at least one parameter ('default' for the default set, None for all)")
        names = DEFAULT_TUNED if tuned == "default" else (tuned or self.full_space.names)
        self.space: ParameterSpace = self.full_space.subspace(names)
        if start_params:
            self.pipeline.set_params(start_params)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        reward = _as_reward(objectives, intrusive=True)
        blind = reward if not reward.intrusive else _as_reward(blind_objectives, intrusive=False)
        if blind.intrusive:
            raise MetricError(f"blind_objectives must be non-intrusive, got {blind!r}")
        self.rewards: dict[bool, QualityReward] = {True: reward, False: blind}
        self.n_objectives = max(len(r.objectives) for r in self.rewards.values())
        self.features = ChunkFeatures(self.sample_rate, context=feature_context)
        self.history = ProcessingHistory(history_size, self.full_space.names, self.features.names)
        known = available_strategies()
        unknown = [n for n in (strategy, *(strategy_options or {})) if n not in known]
        if unknown:  # caught here, not mid-stream at the first update
            raise ValueError(f"unknown strategy name(s) {unknown} in strategy/strategy_options; registered: "
                             f"{', '.join(known)} (register_strategy() before building the loop)")
        self.default_strategy = strategy
        self.strategy_options = {canonical_strategy(k): dict(v) for k, v in (strategy_options or {}).items()}
        for name, options in self.strategy_options.items():
            check_strategy_options(name, options)
        self.update_every = int(update_every)
        self.mode = mode
        self.monitor = CheckpointMonitor(false_alarm_rate, min_shift, interval=checkpoint_interval)
        self.guard = StepGuard(self.space, max_step)
        self.convergence = ConvergenceAnalyzer(self.learning_rate, curvature_block=CURVATURE_BLOCK)
        self.strategies: dict[str, UpdateStrategy] = {}
        self.updates: deque[UpdateRecord] = deque(maxlen=1000)
        self.rollbacks: deque[RollbackEvent] = deque(maxlen=1000)
        self.events: deque[dict[str, Any]] = deque(maxlen=1000)
        self.last_record: FeedbackRecord | None = None
        self.evaluations = 0
        self.replay_warmup = int(replay_warmup)
        self._replays: deque[ChunkReplay] = deque(maxlen=4)
        self._recent_inputs: deque[tuple[EnhancementPipeline, np.ndarray]] = deque(maxlen=self.replay_warmup + 1)
        if replay_scored is None:
            replay_scored = min(2, self.replay_warmup + 1)
        if not 1 <= int(replay_scored) <= self.replay_warmup + 1:
            raise ValueError(
                f"replay_scored must be in [1, replay_warmup + 1 = {self.replay_warmup + 1}], got {replay_scored}"
            )
        self.replay_scored = int(replay_scored)
        self._recent_scores: deque[tuple[np.ndarray | None, dict] | None] = deque(maxlen=self.replay_scored)
        self._scratch = EnhancementPipeline(self.sample_rate, space=self.full_space, config=self.pipeline.config)
        self._scorer = ParallelScorer(workers)
        self._coming: np.ndarray | None = None
        self.last_output: np.ndarray | None = None  # the enhanced chunk of the last step(), float32 (n,)
        self._since_update = 0
        self._noisy_delay = DelayLine(self.pipeline.latency)
        self._clean_delay: DelayLine | None = None

    # ------------------------------------------------------------------ state
    @property
    def parameters(self) -> dict[str, float]:
        """The current full physical parameters (a copy)."""
        return dict(self.pipeline.params)

    @property
    def checkpoint(self) -> dict[str, float] | None:
        """The last known-good parameters (full, physical), or None before the first checkpoint."""
        return None if self.monitor.checkpoint is None else dict(self.monitor.checkpoint)

    @property
    def reward_description(self) -> str:
        """Which objective the latest rewards measure (for explanations)."""
        intrusive = True if self.last_record is None else self.last_record.intrusive
        return repr(self.rewards[intrusive])

    def set_parameters(self, params: Mapping[str, float]) -> dict[str, float]:
        """Set physical values (any names of the full space; validated) outside the update path."""
        return self.pipeline.set_params(params)

    def _unit(self) -> np.ndarray:
        p = self.pipeline.params
        return self.space.to_unit({n: p[n] for n in self.space.names}, dtype=np.float64)

    # ------------------------------------------------------------------ feedback
    def collect_feedback(
        self,
        input_audio: np.ndarray,
        output_audio: np.ndarray,
        metrics: Mapping[str, float] | None = None,
        clean_audio: np.ndarray | None = None,
        params: Mapping[str, float] | None = None,
    ) -> FeedbackRecord:
        """Validate, score and record one chunk; returns the record.

        :param input_audio: the unprocessed audio, time-aligned with ``output_audio``, ``(n,)``.
        :param output_audio: the processed audio, ``(n,)``.
        :param metrics: metrics of the output already known (used as given; the others the reward
            needs are computed). A NaN, infinite or missing (None) value, or one outside the metric's
            ``valid_range`` in :data:`~feedback_env.metrics.METRICS` (e.g. si_sdr beyond +-100 dB), makes
            the record a failure, kept in the history but never used for learning.
        :param clean_audio: clean reference aligned with both, ``(n,)``: intrusive metrics and reward. A
            silent one (a pause) leaves the intrusive reward undefined: the record is kept, not learned from.
        :param params: the full or partial physical parameters the output was made with (the loop's
            current ones by default).
        :raises InvalidAudioError, ParameterError: bad audio or parameters (nothing is recorded).
        """
        inp = as_audio(input_audio, "input_audio")
        out = as_audio(output_audio, "output_audio")
        check_same_length(inp, out, ("input_audio", "output_audio"))
        clean = None
        if clean_audio is not None:
            clean = as_audio(clean_audio, "clean_audio")
            check_same_length(clean, out, ("clean_audio", "output_audio"))
        used = {**self.pipeline.params, **self.full_space.validate(params or {})}
        given = self._check_metrics(metrics)
        return self._record(inp, out, clean, used, given, self.features(inp), streamed=False)

    @staticmethod
    def _check_metrics(metrics: Mapping[str, float] | None) -> dict[str, Any]:
        if metrics is None:
            return {}
        if not isinstance(metrics, Mapping):
            raise MetricError(f"metrics must be a mapping of name to value, got {type(metrics).__name__}")
        return {str(k): v for k, v in metrics.items()}

    def _record(self, inp, out, clean, params, given, features, streamed: bool, unscored: str | None = None
                ) -> FeedbackRecord:  # fmt: skip
        """Score and store one chunk; ``streamed``: it came through :meth:`step` (replayable from snapshots);
        ``unscored``: why it must not be scored, known before its metrics (they are still computed and kept)."""
        intrusive = clean is not None
        reward_fn = self.rewards[intrusive]
        needed = list(reward_fn.metric_names)
        _warn_unused(given, needed, intrusive)
        metrics: dict[str, float] = {}
        errors = []
        for name, value in given.items():
            try:
                v, numeric = float(value), True
            except (TypeError, ValueError):
                v, numeric = float("nan"), False
            if value is None:
                errors.append(f"metric {name!r} is missing (None)")
            elif not numeric:
                errors.append(f"metric {name!r} is not a number ({value!r})")
            elif not math.isfinite(v):
                errors.append(f"metric {name!r} is {v}")
            elif name in METRICS:
                lo, hi = METRICS[name].valid_range
                tol = 1e-9 * max(1.0, hi - lo)
                if not lo - tol <= v <= hi + tol:
                    errors.append(f"metric {name!r} = {v} is outside [{lo}, {hi}], its valid range")
            metrics[name] = v
        baseline: dict[str, float] = {}
        reward = None
        if not errors:
            try:
                todo = [n for n in needed if n not in metrics]
                if todo:
                    metrics.update(compute_metrics(out, clean, self.sample_rate, names=todo))
                baseline = compute_metrics(inp, clean, self.sample_rate, names=needed)
                reward = float(reward_fn(metrics, baseline))
            except FeedbackEnvError as exc:
                errors.append(str(exc))
        if not errors and unscored:
            errors.append(unscored)
        if not errors and out.size < self.min_scored_s * self.sample_rate:
            errors.append(f"too short to score: {out.size} samples ({out.size / self.sample_rate:.3g} s) < min_scored_s "
                          f"= {self.min_scored_s:g} s; pass longer chunks (blocks of frames)")
        if not errors and not reward_fn.can_score(clean):
            errors.append("not scored: the clean reference is silent (a pause), so the intrusive reward is undefined "
                          "here (SI-SDR -100 processed or not; LSD alone would reward any suppression)")
        ok = not errors
        record = FeedbackRecord(
            index=self.history.total,
            time=time.time(),
            params=dict(params),
            metrics=metrics,
            baseline=baseline,
            reward=reward if ok else None,
            features=np.asarray(features, dtype=np.float32),
            intrusive=intrusive,
            ok=ok,
            error="; ".join(errors) if errors else None,
        )
        self.history.append(record)
        self.last_record = record
        self._since_update += 1
        if streamed:
            self._recent_scores.append((clean, baseline) if ok else None)
        if ok:
            if streamed:  # from the state before the oldest kept chunk, the others as warm-up
                states, chunks = zip(*self._recent_inputs)
                earlier = list(self._recent_scores)[:-1]
                earlier = earlier[len(earlier) - min(len(earlier), len(chunks) - 1) :]  # scored warm-up chunks
                usable = all(e is not None and (e[0] is None) == (clean is None) for e in earlier)
                scored = tuple(earlier) if usable else ()
                replay = ChunkReplay(
                    chunks[-1], clean, baseline, reward_fn, self.sample_rate, states[0], chunks[:-1], reward, scored
                )
            else:
                replay = ChunkReplay(inp, clean, baseline, reward_fn, self.sample_rate, live_reward=reward)
            self._replays.append(replay)
            self.monitor.observe(record.reward, record.params)
            for strategy in self.strategies.values():
                strategy.observe(self, record)
        return record

    def step(self, noisy_chunk: np.ndarray, clean_chunk: np.ndarray | None = None) -> FeedbackRecord:
        """One iteration on a stream: update when due, enhance the chunk, score and record it, roll back if worse.

        The update comes first so that a strategy sees the features of the chunk it sets parameters
        for (as in the environments). The output is ``pipeline.latency`` samples behind the input; the
        metrics compare it with the equally delayed noisy and clean streams.

        :param noisy_chunk: the next chunk of the noisy stream, ``(n,)``.
        :param clean_chunk: the matching clean chunk, or None (non-intrusive metrics).
        :return: the chunk's record; the enhanced chunk itself, float32 ``(n,)``, is :attr:`last_output`.
        :raises: what a failing update raised, after the chunk was enhanced with the current parameters and
            recorded (an ``update_failed`` event is logged).
        """
        x = as_audio(noisy_chunk, "noisy_chunk")
        clean = None
        if clean_chunk is not None:
            clean = as_audio(clean_chunk, "clean_chunk")
            check_same_length(x, clean, ("noisy_chunk", "clean_chunk"))
        self._coming = self.features(x)
        last = self.last_record  # an update needs a fresh scored chunk: after a failed one it waits for the next
        failed: Exception | None = None
        if self.mode == "online" and last is not None and last.ok and self._since_update >= self.update_every:
            if self._replays:  # none after reset_stream()
                try:
                    self.update_parameters(self.default_strategy)
                except Exception as exc:  # raised once the chunk is enhanced and recorded: a live stream loses nothing
                    failed = exc
        self._recent_inputs.append((snapshot(self.pipeline), x))
        out = self.pipeline.process(x)
        noisy_ref = self._noisy_delay.push(x)
        clean_ref, unscored = None, None
        if clean is not None:
            if self._clean_delay is None:
                self._clean_delay = DelayLine(self.pipeline.latency)
                if self.last_output is not None and self.pipeline.latency:  # mid-stream, after chunks without one
                    unscored = (f"not scored: the clean reference resumed after a gap, so its first "
                                f"{self.pipeline.latency} samples (the pipeline's latency) are unknown; the next chunk is scored")
            clean_ref = self._clean_delay.push(clean)
        else:
            self._clean_delay = None
        self.last_output = out
        record = self._record(noisy_ref, out, clean_ref, self.pipeline.params, {}, self._coming, True, unscored)
        if failed is not None:
            self.events.append({"kind": "update_failed", "iteration": record.index, "strategy": self.default_strategy,
                                "reason": f"{type(failed).__name__}: {failed}"})  # fmt: skip
            failed.add_note("FeedbackLoopSystem.step(): the update failed; the chunk was still enhanced with the current "
                            "parameters and recorded (loop.last_output, loop.last_record)")  # fmt: skip
            raise failed
        if record.ok and self.should_rollback():
            self.rollback()
        return record

    def reset_stream(self) -> None:
        """Start a new stream: clear the pipeline state and the delay lines (parameters and history stay)."""
        self.pipeline.reset()
        self.last_output = None
        self._noisy_delay.reset()
        self._clean_delay = None
        self.features.reset()
        self._replays.clear()
        self._recent_inputs.clear()
        self._recent_scores.clear()

    # ------------------------------------------------------------------ services for strategies
    def evaluate(self, params: Mapping[str, float]) -> float:
        """The reward ``params`` (merged into the current ones) would have got on the last collected chunk
        (in streaming mode averaged with the ``replay_scored - 1`` chunks before it).

        In streaming mode the chunk is re-processed from a copy of the pipeline state taken before
        it (``replay_warmup`` chunks earlier, those re-processed first with the same parameters); for a
        chunk given to :meth:`collect_feedback` it is processed as a clip from a reset state. The live
        pipeline is never touched. :raises NoChunkError: no usable chunk collected yet.
        """
        replay = self._last_replay()
        full = {**self.pipeline.params, **self.full_space.validate(params)}
        self.evaluations += 1
        return replay.reward(full, self._scratch)

    def evaluate_many(self, settings: Sequence[Mapping[str, float]]) -> list[float]:
        """:meth:`evaluate` of each of ``settings``, in order: one after another here with ``workers=1``; else
        shared among the worker processes, after every setting is validated (a bad one raises
        :class:`~feedback_env.errors.ParameterError` before any is scored). The numbers are the same either way."""
        if self._scorer.workers == 1 or len(settings) < 2:
            return [self.evaluate(params) for params in settings]
        replay = self._last_replay()
        full = [{**self.pipeline.params, **self.full_space.validate(params)} for params in settings]
        self.evaluations += len(full)
        return self._scorer.score(replay, full, self._scratch)

    def _last_replay(self) -> ChunkReplay:
        if not self._replays:
            raise NoChunkError(
                "evaluate() needs a collected audio chunk: call step(chunk) or collect_feedback(...) with a "
                "usable record first (after load() too: the chunks themselves are not saved)"
            )
        return self._replays[-1]

    def close(self) -> None:
        """Stop the worker processes of ``workers > 1`` (the loop stays usable: the next update starts them)."""
        self._scorer.close()

    def __enter__(self) -> "FeedbackLoopSystem":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def observation(self) -> np.ndarray:
        """Float32 observation with the envs' layout (``tuned=self.space.names``): features of the coming
        chunk (or of the last one before any :meth:`step`), the tuned parameters, the last feedback."""
        last = self.last_record
        if self._coming is not None:
            features = self._coming
        elif last is not None:
            features = last.features
        else:
            features = np.zeros(self.features.dim, dtype=np.float32)
        if last is not None and last.ok:
            feedback = feedback_vector(
                self.rewards[last.intrusive], last.metrics, last.baseline, last.reward, self.n_objectives
            )
        else:
            feedback = feedback_vector(None, None, None, 0.0, self.n_objectives)
        return build_observation(features, self.space, self.pipeline.params, feedback)

    # ------------------------------------------------------------------ analysis and updates
    def analyze_performance(self, window: int = 100, alpha: float = 0.05, min_change: float = 0.05) -> PerformanceAnalysis:
        """Analyse the last ``window`` records (trend, best parameters, summaries, errors, patterns, Pareto)."""
        return analyze(self.history, window, self.space, self.rewards, alpha, min_change)

    def strategy(self, name: str) -> UpdateStrategy:
        """The loop's instance of strategy ``name`` (created on first use)."""
        if name not in self.strategies:
            self.strategies[name] = make_strategy(name, self, self.strategy_options.get(canonical_strategy(name)))
        return self.strategies[name]

    def update_parameters(self, strategy: str | None = None) -> UpdateRecord:
        """Ask ``strategy`` for new parameters, apply them through the safety checks, and explain.

        :param strategy: a registered name (the loop's default strategy if None; ``offline`` in offline mode).
        """
        name = strategy or ("offline" if self.mode == "offline" else self.default_strategy)
        chosen = self.strategy(name)
        x_old = self._unit()
        old = {n: self.pipeline.params[n] for n in self.space.names}
        proposal = chosen.propose(self)
        guarded = self.guard.apply(x_old, proposal.params, step_limits=getattr(chosen, "step_limits", True))
        if guarded.rejected is None:
            self.pipeline.set_params(self.space.from_unit(guarded.x_new))
        new = {n: self.pipeline.params[n] for n in self.space.names}
        gradient = getattr(proposal, "gradient", None)
        gradient_at = getattr(proposal, "gradient_at", None)
        if guarded.rejected is None:
            self.convergence.update(x_old if gradient_at is None else gradient_at, gradient, step=guarded.step)
        names = self.space.names
        update = UpdateRecord(
            iteration=self.history.total,
            strategy=name,
            old_params=old,
            new_params=new,
            step=dict(zip(names, map(float, guarded.step))),
            proposed_step=dict(zip(names, map(float, guarded.proposed_step))),
            explanation=proposal.explanation,
            estimate=dict(proposal.estimate),
            trust_region_scale=guarded.trust_region_scale,
            damped=guarded.damped,
            rejected=guarded.rejected,
        )
        self.updates.append(update)
        self._since_update = 0
        return update

    def convergence_report(self, window: int = 50) -> ConvergenceReport:
        """Converged? Iterations left? Curvature? (with the trend of the last ``window`` records)."""
        return self.convergence.report(self.analyze_performance(window).trend if len(self.history) else None)

    # ------------------------------------------------------------------ rollback
    def should_rollback(self) -> bool:
        """True when recent quality dropped significantly below the checkpoint's and the parameters are to blame.

        The test is the CUSUM of :class:`~.checkpoints.CheckpointMonitor` (stated false-alarm rate per
        record, at least ``min_samples`` baseline records). An alarm is dismissed, and a fresh baseline
        measured, when the parameters are the checkpoint's or when, re-processed from the same states,
        the checkpoint would not have done better on the recent chunks: then the input got harder.
        """
        m = self.monitor
        if not m.alarm or m.checkpoint is None:
            return False
        tuned_now = {n: self.pipeline.params[n] for n in self.full_space.names}
        if all(abs(tuned_now[n] - v) <= 1e-12 for n, v in m.checkpoint.items()):
            self._dismiss("the checkpoint's own parameters are running: the input changed")
            return False
        replays = [r for r in self._replays if r.state is not None]
        if replays:
            gains = [r.reward(m.checkpoint, self._scratch) - r.reward(self.pipeline.params, self._scratch) for r in replays]
            self.evaluations += 2 * len(gains)
            if float(np.mean(gains)) <= 0.0:
                self._dismiss(
                    f"re-processed, the checkpoint would not have done better than the current parameters on the "
                    f"last {len(gains)} chunk(s) (mean gain {np.mean(gains):+.3f}): the input changed"
                )
                return False
        return True

    def _dismiss(self, why: str) -> None:
        self.events.append({"kind": "alarm_dismissed", "iteration": self.history.total, "reason": why,
                            "test": self.monitor.explain()})  # fmt: skip
        self.monitor.rebaseline()
        self._notify("on_input_change")

    def _notify(self, hook_name: str) -> None:
        """Call the optional hook ``hook_name(loop)`` of every strategy made so far."""
        for strategy in self.strategies.values():
            hook = getattr(strategy, hook_name, None)
            if callable(hook):
                hook(self)

    def rollback(self) -> RollbackEvent:
        """Restore the last known-good parameters and record why. :raises NoChunkError: no checkpoint yet."""
        m = self.monitor
        if m.checkpoint is None:
            raise NoChunkError(f"rollback(): no checkpoint yet (the first is made after {m.min_samples} usable records)")
        reason = f"quality dropped below the checkpoint's: {m.explain()}" if m.alarm else "requested"
        event = RollbackEvent(self.history.total, self.parameters, dict(m.checkpoint), reason)
        self.pipeline.set_params(m.checkpoint)
        m.after_rollback()
        self.guard.reset()
        self.convergence.reset()
        self._notify("on_rollback")
        self.rollbacks.append(event)
        self.events.append({"kind": "rollback", **event.to_dict()})
        return event

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the history and the loop's state atomically (temporary file + rename).

        ``strategy_options`` are saved as JSON, paths (``os.PathLike``) as text. An option that is a live object
        (a bandit policy, say one sharing its statistics through Redis, a reward adapter, a callable) cannot be
        saved: the file records that it is missing, and :meth:`load` asks for it again (its ``strategy_options``).
        :raises TypeError: a strategy's ``state_dict()`` is not JSON (named; the previous file is left as it was).
        """
        arrays, history_meta = self.history.to_arrays()
        strategies = {}  # every strategy made, in order (None: nothing to restore), so load() makes them all again
        for name, s in self.strategies.items():
            getter = getattr(s, "state_dict", None)
            strategies[name] = _jsonable(getter()) if callable(getter) else None
            try:
                json.dumps(strategies[name])
            except (TypeError, ValueError) as exc:
                raise TypeError(f"strategy {name!r}: its state_dict() is not JSON ({exc}); nothing was written") from None
            if callable(getattr(s, "state_arrays", None)):  # state too big for JSON (a learning policy's networks)
                arrays.update({f"strategy.{name}.{k}": np.asarray(v) for k, v in s.state_arrays().items()})
        meta = {
            "history": history_meta,
            "config": {
                "learning_rate": self.learning_rate,
                "tuned": list(self.space.names),
                "history_size": self.history.capacity,
                "seed": self.seed,
                "strategy": self.default_strategy,
                "strategy_options": _jsonable(self.strategy_options, options=True),
                "update_every": self.update_every,
                "max_step": self.guard.max_step,
                "false_alarm_rate": self.monitor.detector.false_alarm_rate,
                "min_shift": self.monitor.detector.min_shift,
                "checkpoint_interval": self.monitor.interval,
                "mode": self.mode,
                "replay_warmup": self.replay_warmup,
                "replay_scored": self.replay_scored,
                "feature_context": self.features.context,
                "min_scored_s": self.min_scored_s,
                "sample_rate": self.sample_rate,
                "pipeline_config": dataclasses.asdict(self.pipeline.config),
            },
            "objectives": {str(k): _reward_spec(v) for k, v in self.rewards.items()},
            "parameters": self.parameters,
            "monitor": self.monitor.state_dict(),
            "guard": self.guard.state_dict(),
            "convergence": self.convergence.state_dict(),
            "strategies": strategies,
            "rng": self.rng.bit_generator.state,
            "evaluations": self.evaluations,
            "updates": [u.to_dict() for u in self.updates],
            "rollbacks": [r.to_dict() for r in self.rollbacks],
            "events": list(self.events),
        }
        return write_atomic(path, arrays, _jsonable(meta))

    @classmethod
    def load(
        cls,
        path: str | Path,
        pipeline: EnhancementPipeline | None = None,
        objectives: QualityReward | Sequence[Objective] | None = None,
        blind_objectives: QualityReward | Sequence[Objective] | None = None,
        workers: int = 1,
        strategy_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> "FeedbackLoopSystem":
        """A loop restored from :meth:`save`: history, parameters, checkpoint, rollback test, events, and the
        strategies' states: ``gradient``, ``bandit`` and a learning ``policy`` (networks, optimizers, replay buffer,
        progress) resume exactly, ``random`` and ``bayesian`` go on
        with their incumbent and (TPE) every trial of the study (TPE's random stream seeded anew), ``cma``
        at the centre it sampled around and its step size (its covariance and paths start afresh: ``cma``
        keeps them private).

        The pipeline is rebuilt with the saved sample rate and :class:`~feedback_env.pipeline.PipelineConfig` (a
        ``pipeline`` given here is used as it is, with a warning if its config differs); a custom parameter space is
        not saved. Its streaming state is not saved either (a restarted process starts a new stream).
        Weighted-sum rewards are restored from the file; pass ``objectives``/``blind_objectives`` again
        for the other scalarizations (their ideal points and bounds are not saved). ``workers`` is this
        process's choice (not saved).
        ``strategy_options`` (``{name: {option: value}}``) are merged over the saved ones, option by option: give
        here the options :meth:`save` could not keep (live objects such as a bandit policy: the error names each).
        A bandit policy given here gets the saved statistics (with a shared store, the shared ones are overwritten).
        :raises LoopFileError: a missing, damaged or inconsistent file, or a strategy option that was not saved and
            is not given again (nothing is half-restored).
        """
        scorer = ParallelScorer(workers)  # a bad count fails as itself, before the file is read
        arrays, meta = read_checked(path)
        try:
            history = ProcessingHistory.from_arrays(arrays, meta["history"], str(path))
            c = meta["config"]
            given = {True: objectives, False: blind_objectives}
            rewards = {}
            for key, spec in meta["objectives"].items():
                flag = key == "True"
                if given[flag] is not None:
                    rewards[flag] = _as_reward(given[flag], flag)
                elif spec["scalarization"] == "weighted_sum":
                    rewards[flag] = _reward_from_spec(spec)
                else:
                    raise LoopFileError(
                        f"{path}: the saved {'intrusive' if flag else 'blind'} reward uses {spec['scalarization']}; "
                        "pass it again to load()"
                    )
            options = {k: dict(v) for k, v in c["strategy_options"].items()}
            for name, given_options in (strategy_options or {}).items():
                key = canonical_strategy(name)  # an unknown name: cls() below names it
                options[key] = {**options.get(key, {}), **given_options}
            missing = list(_unsaved(options))
            if missing:
                raise LoopFileError(
                    f"{path}: {'; '.join(f'strategy_options{where} (a {kind})' for where, kind in missing)} could not "
                    "be saved (a live object, not JSON); pass it again: FeedbackLoopSystem.load(..., "
                    "strategy_options={name: {option: value}})"
                )
            saved = c.get("pipeline_config")  # files from before it was saved: the default
            config = PipelineConfig() if saved is None else PipelineConfig(**saved)
            if pipeline is None:
                pipeline = EnhancementPipeline(int(c["sample_rate"]), config=config)
            elif pipeline.config != config:
                given = dataclasses.asdict(pipeline.config)
                differ = [f"{k}: saved {v}, given {given[k]}" for k, v in dataclasses.asdict(config).items() if given[k] != v]
                warnings.warn(f"{path}: the pipeline given to load() differs from the saved one ({'; '.join(differ)}); "
                              "using the given one", UserWarning, stacklevel=2)  # fmt: skip
            loop = cls(
                learning_rate=c["learning_rate"],
                pipeline=pipeline,
                objectives=rewards[True],
                history_size=c["history_size"],
                seed=c["seed"],
                tuned=c["tuned"],
                start_params=meta["parameters"],
                strategy=c["strategy"],
                strategy_options=options,
                update_every=c["update_every"],
                max_step=c["max_step"],
                false_alarm_rate=c["false_alarm_rate"],
                min_shift=c["min_shift"],
                checkpoint_interval=c["checkpoint_interval"],
                blind_objectives=rewards[False],
                mode=c["mode"],
                replay_warmup=c.get("replay_warmup", 1),  # files from before these were saved
                replay_scored=c.get("replay_scored", 1),
                feature_context=c.get("feature_context", 0.0),
                min_scored_s=c.get("min_scored_s", 0.0),  # files from before it: everything was scored
            )
            loop.history = history
            loop.monitor.load_state_dict(meta["monitor"])
            loop.guard.load_state_dict(meta["guard"])
            loop.convergence.load_state_dict(meta["convergence"])
            loop.evaluations = int(meta["evaluations"])
            loop.updates.extend(UpdateRecord(**{**u, "damped": tuple(u["damped"])}) for u in meta["updates"])
            loop.rollbacks.extend(RollbackEvent(**r) for r in meta["rollbacks"])
            loop.events.extend(meta.get("events", []))  # files from before the events were saved have none
            for name, state in meta["strategies"].items():
                strategy = loop.strategy(name)
                loader = getattr(strategy, "load_state_dict", None)
                if state is not None and callable(loader):
                    loader(state)
                if callable(getattr(strategy, "load_state_arrays", None)):
                    prefix = f"strategy.{name}."
                    strategy.load_state_arrays({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
            loop.rng.bit_generator.state = meta["rng"]  # last: making the strategies above draws from it
            if len(history):
                loop.last_record = history.record(int(history.slots(1)[0]))
        except LoopFileError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise LoopFileError(f"{path}: loop state is inconsistent ({type(exc).__name__}: {exc})") from exc
        loop._scorer = scorer
        return loop


def _warn_unused(given: Mapping[str, Any], needed: Sequence[str], intrusive: bool) -> None:
    """Warn about given metrics the record's reward does not use (they are recorded, never learnt from)."""
    for name in given:
        if name in needed:
            continue
        if not intrusive and name in METRICS and METRICS[name].intrusive:
            why = (f"it needs a clean reference and no clean_audio was given, so the blind reward "
                   f"({', '.join(needed)}) scores this record")  # fmt: skip
        else:
            why = f"it is not used by the reward ({', '.join(needed)})"
        warnings.warn(f"metric {name!r} is recorded but not learnt from: {why}", UserWarning, stacklevel=4)


def _reward_spec(reward: QualityReward) -> dict[str, Any]:
    return {
        "objectives": [
            {"metric": o.metric, "direction": o.direction, "scale": o.scale, "weight": o.weight, "target": o.target}
            for o in reward.objectives
        ],
        "scalarization": reward.scalarization,
        "clip": reward.clip,
        "rho": reward.rho,
    }


def _reward_from_spec(spec: dict[str, Any]) -> QualityReward:
    objectives = [Objective(**o) for o in spec["objectives"]]
    return QualityReward(objectives, spec["scalarization"], rho=spec["rho"], clip=spec["clip"])


_UNSAVED = "__unsaved__"  # marks a strategy option save() could not write: {"__unsaved__": its type's name}


def _unsaved(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """``(where, type name)`` of each :data:`_UNSAVED` marker in ``value``, ``where`` as ``['bandit']['policy']``."""
    if isinstance(value, Mapping):
        if set(value) == {_UNSAVED}:
            yield where, str(value[_UNSAVED])
            return
        for k, v in value.items():
            yield from _unsaved(v, f"{where}[{k!r}]")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _unsaved(v, f"{where}[{i}]")


def _jsonable(value: Any, options: bool = False) -> Any:
    """Numpy scalars and arrays inside ``value`` as plain Python (for JSON). ``options``: strategy options, whose
    paths are written as text and anything else that is not JSON as an :data:`_UNSAVED` marker."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, options) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, options) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
    if options and isinstance(value, os.PathLike):
        return os.fspath(value)
    if options and not (value is None or isinstance(value, (str, int, float))):  # bool is an int
        return {_UNSAVED: type(value).__name__}
    return value
