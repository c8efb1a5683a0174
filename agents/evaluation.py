"""Whole-clip evaluation of static settings and of chunk-by-chunk policies on a scenario set.

A policy runs through the environment (deterministic actions) and its parameter schedule, one
setting per chunk, is replayed through a fresh :class:`~feedback_env.pipeline.EnhancementPipeline`
with the stream flushed at the end, so that the output is aligned with the clean reference and scored
as a whole clip (SI-SDR, PESQ, STOI), like the static settings and the per-clip oracle.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import gymnasium as gym
import numpy as np

from feedback_env.metrics import compute_metrics
from feedback_env.oracle import SearchResult, clip_objective, cma_search
from feedback_env.parameters import ParameterSpace
from feedback_env.pipeline import PARAMETER_SPACE, EnhancementPipeline

CLIP_METRICS = ("si_sdr", "pesq", "stoi")
Predict = Callable[[np.ndarray], np.ndarray]  # observation -> action


def render_schedule(noisy: np.ndarray, schedule: Sequence[Mapping[str, float]], chunk_size: int, sample_rate: int = 16000) -> np.ndarray:
    """Stream ``noisy`` through the pipeline, chunk ``i`` with ``schedule[i]``; aligned float32 output ``(n,)``."""
    n_chunks = -(-len(noisy) // chunk_size)
    if len(schedule) != n_chunks:
        raise ValueError(f"schedule has {len(schedule)} settings for {n_chunks} chunks of {chunk_size} samples")
    pipeline = EnhancementPipeline(sample_rate)
    pipeline.reset()
    out = [pipeline.process(noisy[i * chunk_size : (i + 1) * chunk_size], params) for i, params in enumerate(schedule)]
    out.append(pipeline.process(np.zeros(pipeline.latency, dtype=np.float32)))
    return np.concatenate(out)[pipeline.latency :]


def policy_schedule(env: gym.Env, predict: Predict, clip_id: str, scenarios: str | None = None) -> list[dict[str, float]]:
    """Run one episode of ``env`` on ``clip_id`` with ``predict``; the physical parameters of each chunk."""
    options = {"clip": clip_id} if scenarios is None else {"clip": clip_id, "scenarios": scenarios}
    obs, _ = env.reset(seed=0, options=options)
    schedule, truncated, terminated = [], False, False
    while not (truncated or terminated):
        obs, _, terminated, truncated, info = env.step(predict(obs))
        schedule.append(dict(info["params"]))
    return schedule


def clip_scores(output: np.ndarray, clean: np.ndarray, sample_rate: int, metrics: Iterable[str] = CLIP_METRICS) -> dict[str, float]:
    return compute_metrics(output, clean, sample_rate, names=list(metrics))


def evaluate_static(clips: Iterable, params: Mapping[str, float], metrics: Iterable[str] = CLIP_METRICS) -> dict[str, dict[str, float]]:
    """Whole-clip metrics of one static setting (merged over the defaults) on each clip: ``{clip_id: {metric: value}}``."""
    full = {**PARAMETER_SPACE.defaults(), **params}
    pipeline = EnhancementPipeline(params=full)
    return {c.id: clip_scores(pipeline.process_clip(c.noisy), c.clean, c.sample_rate, metrics) for c in clips}


def evaluate_policy(
    env: gym.Env, predict: Predict, clips: Iterable, metrics: Iterable[str] = CLIP_METRICS, scenarios: str | None = None
) -> tuple[dict[str, dict[str, float]], dict[str, list[dict[str, float]]]]:
    """Whole-clip metrics of a policy on each clip, and its parameter schedules.

    :param env: an unwrapped-or-wrapped AudioEnhancement env (its chunk size is used for the replay).
    :return: ``({clip_id: {metric: value}}, {clip_id: [params per chunk]})``.
    """
    chunk_size = env.unwrapped.chunk_size
    scores, schedules = {}, {}
    for clip in clips:
        schedule = policy_schedule(env, predict, clip.id, scenarios)
        output = render_schedule(clip.noisy, schedule, chunk_size, clip.sample_rate)
        scores[clip.id] = clip_scores(output, clip.clean, clip.sample_rate, metrics)
        schedules[clip.id] = schedule
    return scores, schedules


def best_static_params(
    clips: Sequence, space: ParameterSpace = PARAMETER_SPACE, budget: int = 200, seed: int = 0, metric: str = "si_sdr"
) -> SearchResult:
    """One setting for all ``clips``: CMA-ES on the mean whole-clip ``metric`` (the static baseline to beat).

    The defaults are scored first, so the result is never worse than them on ``clips``.

    :param space: the parameters searched (others stay at their defaults).
    :param budget: objective evaluations (the defaults' included); each processes every clip once.
    """
    objectives = [clip_objective(c.noisy, c.clean, c.sample_rate, metric) for c in clips]
    score = lambda p: float(np.mean([f(p) for f in objectives]))  # noqa: E731
    result = cma_search(score, space, budget=budget, seed=seed)  # scores the defaults (its start) first
    return SearchResult({**PARAMETER_SPACE.defaults(), **result.params}, result.score, result.evaluations, result.history)


def mean_scores(per_clip: Mapping[str, Mapping[str, float]], clip_ids: Iterable[str] | None = None) -> dict[str, float]:
    """Mean of each metric over ``clip_ids`` (all clips if None)."""
    ids = list(per_clip) if clip_ids is None else list(clip_ids)
    names = next(iter(per_clip.values())).keys()
    return {m: float(np.mean([per_clip[i][m] for i in ids])) for m in names}
