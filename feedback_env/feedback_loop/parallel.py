"""Scoring several settings on the last chunk in several processes (``FeedbackLoopSystem(workers=N)``).

A ``gradient`` update scores 16 settings on the same chunk, each a re-processing of it from a copy of the
pipeline state (:class:`~feedback_env.feedback_loop.replay.ChunkReplay`), and nothing else: they are
independent, so ``N`` cores can score ``N`` at a time. The settings are cut into ``N`` shares in order; this
process scores the first share itself while ``N - 1`` worker processes score the others, each sent the
replay (pipeline state, chunks, references; the pipeline's memos travel by name, see
:mod:`feedback_env.cache`, and warm up in the worker). The rewards are the numbers serial scoring gives: the
same operations on the same data. Python threads would not help: the pipeline is many small numpy calls,
most of whose time holds the GIL. Two processes do not halve an update (``benchmarks/feedback_loop.py``'s
``_2_workers`` rows): each computes the chunk's shared memos (its spectra, the reference's) itself, the
replay is pickled and sent, and on a 2-core machine each process's evaluations run slower beside the other.

Workers start with the first parallel call, by ``forkserver`` where the platform has it (else ``spawn``): a
script that makes a loop with ``workers > 1`` needs the ``if __name__ == "__main__":`` guard, as for
SB3's ``SubprocVecEnv``.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Mapping, Sequence

import numpy as np

from feedback_env.feedback_loop.replay import ChunkReplay
from feedback_env.pipeline import EnhancementPipeline


Settings = Sequence[Mapping[str, float]]


def _score(replay: ChunkReplay, settings: Settings, scratch: EnhancementPipeline | None) -> list[float]:
    """Rewards of ``settings`` (full physical dicts) on ``replay``; runs in a worker."""
    return [replay.reward(s, scratch) for s in settings]


class ParallelScorer:
    """Scores settings on a replay in up to ``workers`` processes, this one included (1: all here)."""

    def __init__(self, workers: int = 1):
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
            raise ValueError(f"workers must be a whole number >= 1 (processes scoring an update), got {workers!r}")
        self.workers = int(workers)
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            self._executor = ProcessPoolExecutor(self.workers - 1, mp_context=multiprocessing.get_context(method))
        return self._executor

    def score(self, replay: ChunkReplay, settings: Settings, scratch: EnhancementPipeline) -> list[float]:
        """The reward of each of ``settings`` (full physical dicts) on ``replay``, in order."""
        if self.workers == 1 or len(settings) < 2:
            return _score(replay, settings, scratch)
        shares = np.array_split(np.arange(len(settings)), min(self.workers, len(settings)))
        sent_scratch = scratch if replay.state is None else None  # a streamed replay re-processes its own copy
        try:  # an error inside the scoring itself comes back as it is, as it would here
            pool = self._pool()
            futures = [pool.submit(_score, replay, [settings[i] for i in share], sent_scratch) for share in shares[1:]]
            here = _score(replay, [settings[i] for i in shares[0]], scratch)
            return here + [r for f in futures for r in f.result()]
        except BrokenProcessPool as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: Exception) -> RuntimeError:
        """The error to raise for a failed parallel call; the pool is dropped, so the next call starts a new one."""
        self.close()
        return RuntimeError(
            f"parallel evaluation failed in a worker process ({type(exc).__name__}: {exc}). A worker that dies at "
            "once is usually a script without the 'if __name__ == \"__main__\":' guard (its stderr then says "
            "'bootstrapping phase'): each worker imports the main script; FeedbackLoopSystem(workers=1) scores "
            "everything in this process"
        )

    def close(self) -> None:
        """Stop the worker processes (a later parallel call starts new ones)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
