"""Re-processing a collected chunk with other parameters, without touching the live stream.

:class:`ChunkReplay` keeps what is needed to score any parameters on one collected chunk: a copy of
the pipeline state taken just before the chunk (streaming mode), the chunk, its time-aligned
references, and the unprocessed metrics the reward compares against. :class:`DelayLine` delays a
stream by the pipeline latency, chunk by chunk (the streaming form of :func:`~feedback_env.pipeline.aligned`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from feedback_env.metrics import compute_metrics
from feedback_env.objectives import QualityReward
from feedback_env.pipeline import EnhancementPipeline


def snapshot(pipeline: EnhancementPipeline) -> EnhancementPipeline:
    """A deep copy of ``pipeline`` (its state and parameters) sharing what no call changes: the filter
    cache, the parameter space and the config (sharing the space halves the copy's cost)."""
    shared = (pipeline._static_cache, pipeline.space, pipeline.config)
    return copy.deepcopy(pipeline, {id(obj): obj for obj in shared})


class DelayLine:
    """Delays a stream by ``delay`` samples; ``push(chunk)`` returns the delayed chunk, same length."""

    def __init__(self, delay: int):
        self.delay = int(delay)
        self.reset()

    def reset(self) -> None:
        self._held = np.zeros(self.delay, dtype=np.float32)

    def push(self, chunk: np.ndarray) -> np.ndarray:
        buffer = np.concatenate([self._held, np.asarray(chunk, dtype=np.float32)])
        self._held = buffer[buffer.size - self.delay :] if self.delay else buffer[:0]
        return buffer[: buffer.size - self.delay] if self.delay else buffer


@dataclass
class ChunkReplay:
    """One collected chunk, ready to be re-processed with other parameters.

    :param chunk: the pipeline's input, float32 ``(n,)`` (not delayed).
    :param reference: clean reference aligned with the output, ``(n,)``, or ``None`` (non-intrusive).
    :param baseline: the unprocessed metrics of the chunk (the reward's comparison point).
    :param reward_fn: the reward the chunk was scored with.
    :param state: the pipeline just before ``warmup`` (streaming); ``None`` when the chunk came from
        :meth:`FeedbackLoopSystem.collect_feedback` with outside audio: then it is processed as a
        clip from a reset state, and ``chunk`` is already aligned with ``reference``.
    :param warmup: the chunks that preceded ``chunk``, re-processed (unscored) with the same
        parameters first, so that the state the parameters build up (noise estimate, smoothed SNR)
        is theirs and not the live one's: without it, slow parameters are judged by one chunk of
        switching from another setting's state, which favours the wrong side of them. All but the
        last only advance the noise tracker (its memory is seconds; the output side's is far shorter),
        at about half the cost of processing them.
    :param live_reward: the reward the chunk got in the live stream.
    """

    chunk: np.ndarray
    reference: np.ndarray | None
    baseline: Mapping[str, float]
    reward_fn: QualityReward
    sample_rate: int
    state: EnhancementPipeline | None = None
    warmup: tuple[np.ndarray, ...] = ()
    live_reward: float = float("nan")

    def output(self, params: Mapping[str, float], scratch: EnhancementPipeline) -> np.ndarray:
        """The chunk processed with ``params`` (full physical dict), aligned with ``reference``."""
        if self.state is not None:
            pipeline = snapshot(self.state)
            pipeline.set_params(params)
            for piece in self.warmup[:-1]:  # the noise tracker's memory is seconds long; the rest's is short
                pipeline.track(piece)
            for piece in self.warmup[-1:]:
                pipeline.process(piece)
            return pipeline.process(self.chunk)
        scratch.set_params(params)
        return scratch.process_clip(self.chunk)

    def reward(self, params: Mapping[str, float], scratch: EnhancementPipeline) -> float:
        """The reward ``params`` would have got on this chunk (finite, in the reward's clip range)."""
        out = self.output(params, scratch)
        metrics = compute_metrics(out, self.reference, self.sample_rate, names=self.reward_fn.metric_names)
        value = self.reward_fn(metrics, self.baseline)
        return value if np.isfinite(value) else -self.reward_fn.clip
