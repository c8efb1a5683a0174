"""The objective the feedback loop optimizes, for a static setting: mean chunk reward over a clip stream.

``StreamObjective(noisy, clean)(params)`` streams the clip, cycled, through a reset
:class:`~feedback_env.pipeline.EnhancementPipeline` in chunks (0.5 s by default), scores every chunk
with the loop's reward (the :class:`~feedback_env.objectives.QualityReward` of the processed chunk
over the unprocessed one, both against the clean reference delayed by the pipeline latency exactly
as :meth:`FeedbackLoopSystem.step` delays them; like the loop, it leaves out a chunk shorter than
:data:`MIN_SCORED_S` and one whose clean reference is silent) and returns the mean over the *second* pass: the
first pass is an unscored warm-up. That is the steady state the loop works in when it cycles a clip
for more iterations than it has chunks; from a reset the noise tracker's start-up (the first ~2 s)
favours other settings (shorter SNR smoothing, for one: the first pass ranks settings differently from
every later pass, which all agree).

The per-clip oracle is the CMA-ES maximum of this (:mod:`.oracle_cache`); "fraction of the oracle
improvement" compares ``objective(x) - objective(defaults)`` with ``objective(oracle) - objective(defaults)``.
:meth:`StreamObjective.cycled` gives the chunk rewards of any number of iterations of the cycled clip.
"""

from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np

from feedback_env.audio import as_audio
from feedback_env.metrics import compute_metrics
from feedback_env.objectives import QualityReward
from feedback_env.feedback_loop.replay import DelayLine
from feedback_env.pipeline import EnhancementPipeline

MIN_SCORED_S = 0.1
"""Chunks shorter than this (seconds) are not scored: SI-SDR and LSD of a few milliseconds are noise. The
loop's rule (:class:`~feedback_env.FeedbackLoopSystem`'s ``min_scored_s`` default), applied by the static
objective and the harness so that every run is scored on the same chunks."""


def chunk_stream(
    noisy: np.ndarray, clean: np.ndarray | None, chunk: int, iterations: int
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """``iterations`` consecutive ``(noisy, clean)`` chunks of ``chunk`` samples, cycling the clip."""
    starts = range(0, len(noisy), chunk)
    pieces = [(noisy[s : s + chunk], None if clean is None else clean[s : s + chunk]) for s in starts]
    for i in range(iterations):
        yield pieces[i % len(pieces)]


class StreamObjective:
    """Mean chunk reward of a static setting over a clip stream (see the module docstring).

    :param noisy: the clip, ``(n,)``. :param clean: its clean reference or None (non-intrusive reward).
    :param sample_rate: Hz. :param chunk_s: chunk length, seconds.
    :param reward: the reward (the intrusive or non-intrusive default if None).
    :param fixed: physical overrides applied under every setting.
    :param min_scored_s: chunks shorter than this (seconds) are not scored, as the loop does not score them.
    """

    def __init__(
        self,
        noisy: np.ndarray,
        clean: np.ndarray | None,
        sample_rate: int = 16000,
        chunk_s: float = 0.5,
        reward: QualityReward | None = None,
        fixed: Mapping[str, float] | None = None,
        min_scored_s: float = MIN_SCORED_S,
    ):
        self.noisy = as_audio(noisy, "noisy")
        self.min_scored_s = float(min_scored_s)
        self.clean = None if clean is None else as_audio(clean, "clean")
        self.sample_rate = int(sample_rate)
        self.chunk = int(round(chunk_s * self.sample_rate))
        self.reward = reward or QualityReward.default(intrusive=self.clean is not None)
        self.pipeline = EnhancementPipeline(self.sample_rate)
        self.defaults = {**self.pipeline.space.defaults(), **(fixed or {})}
        self.noisy_chunks = [self.noisy[i : i + self.chunk] for i in range(0, len(self.noisy), self.chunk)]
        # references of the first two passes, delayed as in the loop (from the second pass on they repeat)
        n = len(self.noisy_chunks)
        noisy_delay, clean_delay = DelayLine(self.pipeline.latency), DelayLine(self.pipeline.latency)
        names = list(self.reward.metric_names)
        self.references: list[np.ndarray | None] = []
        self.baselines: list[dict[str, float]] = []
        for i, (x, c) in enumerate(chunk_stream(self.noisy, self.clean, self.chunk, 2 * n)):
            unprocessed = noisy_delay.push(x)
            ref = None if c is None else clean_delay.push(c)
            self.references.append(ref)
            self.baselines.append(compute_metrics(unprocessed, ref, self.sample_rate, names=names))
        long_enough = [x.size >= self.min_scored_s * self.sample_rate for x in self.noisy_chunks]
        if self.noisy.size > self.chunk and self.chunk < self.min_scored_s * self.sample_rate:
            raise ValueError(f"chunks of {self.chunk / self.sample_rate:.3g} s ({self.chunk} samples) are shorter than "
                             f"min_scored_s = {self.min_scored_s:g} s, so none is scored: pass a longer chunk_s")
        if not any(long_enough):
            raise ValueError(f"too short to score: {self.noisy.size} samples ({self.noisy.size / self.sample_rate:.3g} s); "
                             f"the loop scores chunks of at least min_scored_s = {self.min_scored_s:g} s")
        self.scored = np.array([self.reward.can_score(ref) and long_enough[t % n] for t, ref in enumerate(self.references)])
        if not self.scored[n:].any():
            raise ValueError("the clean reference is silent in every chunk: the intrusive reward scores none of them "
                             "(pass clean=None for the non-intrusive reward)")

    def __len__(self) -> int:
        return len(self.noisy_chunks)

    def _pass_index(self, i: int) -> int:
        """Index into :attr:`references` of iteration ``i`` (0-based): from the second pass on they repeat."""
        return i if i < len(self) else len(self) + i % len(self)

    def scored_iterations(self, iterations: int) -> np.ndarray:
        """Whether each of ``iterations`` chunks of the cycled clip is scored (bool), as by the loop: not when
        it is shorter than ``min_scored_s`` or its delayed clean reference is silent."""
        return np.array([self.scored[self._pass_index(i)] for i in range(iterations)], dtype=bool)

    def cycled(self, params: Mapping[str, float], iterations: int) -> np.ndarray:
        """Reward of each of ``iterations`` chunks of the cycled clip with ``params`` fixed, from a reset pipeline;
        NaN for a chunk that is not scored (:meth:`scored_iterations`: shorter than ``min_scored_s``, or
        :meth:`QualityReward.can_score` fails: a silent clean reference)."""
        self.pipeline.reset()
        self.pipeline.set_params({**self.defaults, **params})
        names = list(self.reward.metric_names)
        out = np.empty(iterations)
        for i in range(iterations):
            t = self._pass_index(i)
            y = self.pipeline.process(self.noisy_chunks[i % len(self)])
            if not self.scored[t]:
                out[i] = np.nan
                continue
            metrics = compute_metrics(y, self.references[t], self.sample_rate, names=names)
            out[i] = self.reward(metrics, self.baselines[t])
        return out

    def __call__(self, params: Mapping[str, float]) -> float:
        """Mean chunk reward of the second pass of the cycled clip with ``params`` (merged over the defaults),
        over the chunks the reward can score."""
        return float(np.nanmean(self.cycled(params, 2 * len(self))[len(self) :]))
