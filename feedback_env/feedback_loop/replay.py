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
    """A deep copy of ``pipeline`` (its state and parameters) sharing what no call changes: the parameter
    space and the config (sharing the space halves the copy's cost) and, by their own rule, the stages'
    :class:`~feedback_env.cache.SharedCache` memos."""
    shared = (pipeline.space, pipeline.config)
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
    :param warmup: the chunks that preceded ``chunk``, re-processed with the same parameters first, so
        that the state the parameters build up (noise estimate, smoothed SNR) is theirs and not the live
        one's: without it, slow parameters are judged by one chunk of switching from another setting's
        state, which favours the wrong side of them. The early ones only advance the noise tracker (its
        memory is seconds; the output side's is far shorter), at about half the cost of processing them;
        the last ``len(scored) + 1`` of them are processed.
    :param live_reward: the reward the chunk got in the live stream.
    :param scored: ``(reference, baseline)`` of the last ``len(scored)`` warm-up chunks, which are scored
        too: the reward is the mean over them and ``chunk``, so a search sees less of the chunk-to-chunk
        noise of a one-chunk reward. Each costs a metric computation (and the processing of a chunk that
        would otherwise only have been tracked).
    """

    chunk: np.ndarray
    reference: np.ndarray | None
    baseline: Mapping[str, float]
    reward_fn: QualityReward
    sample_rate: int
    state: EnhancementPipeline | None = None
    warmup: tuple[np.ndarray, ...] = ()
    live_reward: float = float("nan")
    scored: tuple[tuple[np.ndarray | None, Mapping[str, float]], ...] = ()

    def outputs(self, params: Mapping[str, float], scratch: EnhancementPipeline) -> list[np.ndarray]:
        """The scored chunks (the last ``len(scored)`` warm-up chunks, then the chunk) processed with
        ``params`` (full physical dict), each aligned with its reference."""
        if self.state is not None:
            pipeline = snapshot(self.state)
            pipeline.set_params(params)
            # the first processed chunk after tracked ones only refills the output side, so it is never scored
            processed = min(len(self.warmup), len(self.scored) + 1)
            for piece in self.warmup[: len(self.warmup) - processed]:  # the noise tracker's memory is seconds long
                pipeline.track(piece)
            early = [pipeline.process(piece) for piece in self.warmup[len(self.warmup) - processed :]]
            return [*early[len(early) - len(self.scored) :], pipeline.process(self.chunk)]
        scratch.set_params(params)
        return [scratch.process_clip(self.chunk)]

    def reward(self, params: Mapping[str, float], scratch: EnhancementPipeline) -> float:
        """The reward ``params`` would have got on this chunk, averaged with the scored warm-up chunks
        (finite, in the reward's clip range)."""
        values = []
        pairs = [*self.scored, (self.reference, self.baseline)]
        for out, (reference, baseline) in zip(self.outputs(params, scratch), pairs):
            metrics = compute_metrics(out, reference, self.sample_rate, names=self.reward_fn.metric_names)
            values.append(self.reward_fn(metrics, baseline))
        value = float(np.mean(values))
        return value if np.isfinite(value) else -self.reward_fn.clip
