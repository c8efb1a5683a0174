"""The strategies the evaluation harness runs, by name (DESIGN.md): how each turns a budget of feedback
iterations on one clip into a reward curve and a final parameter schedule.

* ``bypass``, ``defaults``: one static setting (the transparent one, the pipeline defaults).
* ``spsa``, ``cma``, ``optuna``, ``random``, ``ucb``, ``thompson``, ``td3:MODEL.zip``: a
  :class:`~feedback_env.FeedbackLoopSystem` with that update strategy, stepped once per chunk of the
  clip, cycled (``optuna`` is Optuna's TPE and ``random`` random search, the loop's peers at the same
  budget; ``ucb``/``thompson`` pick among the presets, each cut to the loop's tuned parameters; ``td3`` acts with a trained SB3 policy).
  ``NAME:key=value,...`` gives options to the update strategy of one of these (``spsa:perturbation=0.15``).
* ``noisereduce``: the peer library with its defaults, on the whole clip (it does not take feedback).
* ``oracle``: the upper bound: the best static setting of the loop's tuned parameters for the clip,
  CMA-ES with at least 1,000 evaluations and restarts on the loop's own objective (many evaluations,
  not a budget of iterations).

Every run is scored the same way: the reward of each iteration is the loop's reward (the
:class:`~feedback_env.objectives.QualityReward` of a chunk over the unprocessed chunk), and the
final output is the clip rendered with the parameter schedule of the last pass over the clip.
"""

from __future__ import annotations

import math
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

ORACLE_BUDGET = 1200


@dataclass
class ClipRun:
    """What one strategy did on one clip.

    :param curve: reward per feedback iteration (``budget`` values).
    :param schedule: physical parameters per chunk of the clip for the final rendering; one entry
        means one static setting. Empty for strategies that produce audio themselves (``final_output``).
    :param final_output: the enhanced clip, aligned with the input, when not rendered from ``schedule``.
    :param objective: the loop's objective reached: mean reward over the last pass of the clip
        (:func:`last_pass_mean`; every strategy is compared on this, over the same ``budget``).
    :param rollbacks: rollbacks the loop made.
    :param seconds_per_iteration: wall time per feedback iteration (None when it does not iterate).
    :param unscored: iterations (0-based) not scored by the loop's rule (a chunk shorter than ``min_scored_s``
        or with a silent clean reference): NaN in ``curve`` like a failed iteration, but not a failure.
    """

    curve: list[float]
    schedule: list[dict[str, float]] = field(default_factory=list)
    final_output: np.ndarray | None = None
    objective: float | None = None
    rollbacks: int = 0
    seconds_per_iteration: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    unscored: list[int] = field(default_factory=list)


class Strategy(ABC):
    """Base: ``run(clip, budget, seed, context) -> ClipRun``. ``context`` holds per-clip shared pieces."""

    name = "strategy"
    adaptive = False
    # expected wall ms per feedback iteration on the built-in clips at --budget 100 (the harness table's
    # ms/iter; s per clip / 100 for the oracle), only to hand the dearest runs out first when clips run in
    # parallel: a wrong value costs balance, never results
    relative_cost = 1.5

    @abstractmethod
    def run(self, clip, budget: int, seed: int, context: "ClipContext") -> ClipRun:
        """Spend ``budget`` feedback iterations on ``clip``."""


@dataclass
class ClipContext:
    """Per-clip pieces shared by the strategies: the loop's objective on the clip and chunking."""

    clip: Any
    chunk: int
    objective: Any  # feedback_env.feedback_loop.objective.StreamObjective

    @property
    def n_chunks(self) -> int:
        return len(self.objective)


class StaticStrategy(Strategy):
    """One setting for every chunk. :param params: physical overrides of the defaults."""

    def __init__(self, name: str, params: dict[str, float]):
        self.name, self.params = name, dict(params)

    def run(self, clip, budget, seed, context) -> ClipRun:
        started = time.perf_counter()
        curve = context.objective.cycled(self.params, budget)
        elapsed = time.perf_counter() - started
        return ClipRun(list(map(float, curve)), [self.params], objective=last_pass_mean(curve, context.n_chunks),
                       seconds_per_iteration=elapsed / max(budget, 1), unscored=_nan_at(curve))  # fmt: skip


class LoopStrategy(Strategy):
    """A :class:`~feedback_env.FeedbackLoopSystem` with update strategy ``strategy``, one step per chunk.

    :param relative_cost: expected ms per iteration (see :attr:`Strategy.relative_cost`): about 50 for the
        search strategies, 235 for Optuna's TPE (its own sampler ~185 of it), 3 for a bandit, 6 for a TD3 policy.
    :param loop_options: extra keyword arguments of :class:`FeedbackLoopSystem` (``strategy_options``...).
    """

    adaptive = True

    def __init__(self, name: str, strategy: str, relative_cost: float = 50.0, trained_chunk_s: float | None = None,
                 **loop_options: Any):  # fmt: skip
        self.name, self.strategy, self.loop_options = name, strategy, loop_options
        self.relative_cost = relative_cost
        self.trained_chunk_s = trained_chunk_s  # a policy's: it hears and acts per chunk of this length

    def make_loop(self, clip, seed: int):
        from feedback_env import FeedbackLoopSystem
        from feedback_env.pipeline import EnhancementPipeline

        return FeedbackLoopSystem(pipeline=EnhancementPipeline(clip.sample_rate), seed=seed, strategy=self.strategy,
                                  **self.loop_options)  # fmt: skip

    def run(self, clip, budget, seed, context) -> ClipRun:
        from feedback_env.feedback_loop.objective import chunk_stream

        loop = self.make_loop(clip, seed)
        chunk_s = context.chunk / clip.sample_rate
        if self.trained_chunk_s is not None and not math.isclose(chunk_s, self.trained_chunk_s, rel_tol=1e-6):
            warnings.warn(f"{self.name}: trained on {self.trained_chunk_s:g} s chunks, run on {chunk_s:g} s: its features' "
                          "per-chunk context and what it learnt per chunk do not carry over", UserWarning, stacklevel=2)
        n = context.n_chunks
        curve, used = [], []
        started = time.perf_counter()
        for noisy, clean in chunk_stream(clip.noisy, clip.clean, context.chunk, budget):
            record = loop.step(noisy, clean)
            curve.append(float(record.reward) if record.ok else float("nan"))
            used.append(dict(record.params))
        elapsed = time.perf_counter() - started
        # the schedule of the last pass: for each chunk of the clip, the parameters last used on it
        schedule = [dict(loop.parameters) for _ in range(n)]
        for i, params in enumerate(used):
            schedule[i % n] = params
        # an unscored step is one the objective does not score either; any other without a reward failed
        scored = context.objective.scored_iterations(budget)
        unscored = [i for i in _nan_at(curve) if not scored[i]]
        return ClipRun(curve, schedule, objective=last_pass_mean(curve, n), rollbacks=len(loop.rollbacks),
                       seconds_per_iteration=elapsed / max(budget, 1), extra={"updates": len(loop.updates)},
                       unscored=unscored)  # fmt: skip


class NoisereduceStrategy(Strategy):
    """``noisereduce.reduce_noise`` with its defaults on the whole clip (the peer library)."""

    name = "noisereduce"

    def run(self, clip, budget, seed, context) -> ClipRun:
        import noisereduce

        started = time.perf_counter()
        output = noisereduce.reduce_noise(y=clip.noisy, sr=clip.sample_rate).astype(np.float32)
        elapsed = time.perf_counter() - started
        rewards = aligned_chunk_rewards(output, clip, context.chunk, context.objective.reward,
                                        context.objective.min_scored_s)  # fmt: skip
        curve = [float(rewards[i % rewards.size]) for i in range(budget)]
        # over the chunks played, as every run (with a budget shorter than one pass: not the whole clip)
        return ClipRun(curve, final_output=output, objective=last_pass_mean(curve, context.n_chunks),
                       extra={"seconds": elapsed}, unscored=_nan_at(curve))  # fmt: skip


class OracleStrategy(Strategy):
    """CMA-ES per clip on the loop's objective: the best static setting of the parameters the loop
    tunes (an upper bound, not a peer).

    Over the loop's tuned parameters (:data:`~feedback_env.feedback_loop.system.DEFAULT_TUNED`), not all
    19: the per-chunk reward cannot see gain that changes from chunk to chunk (SI-SDR per chunk is
    scale-invariant), so an all-parameter search buys chunk reward with a pumping compressor and
    leveller that whole-clip SI-SDR punishes (measured on the 19 built-in train clips: mean whole-clip SI-SDR
    7.5 dB after CMA-ES over all 19 (400 evaluations a clip), 10.8 for the defaults, 12.9 for the cached oracle
    over the tuned ones; ``benchmarks/feedback_loop.py --skip latency memory convergence --subset``).
    """

    name = "oracle"
    relative_cost = 350.0

    def __init__(self, budget: int = ORACLE_BUDGET, restarts: int = 2, tuned: tuple[str, ...] | None = None):
        from feedback_env.feedback_loop.system import DEFAULT_TUNED

        self.budget, self.restarts = max(int(budget), 1000), restarts
        self.tuned = tuple(tuned) if tuned is not None else DEFAULT_TUNED

    def run(self, clip, budget, seed, context) -> ClipRun:
        from feedback_env.oracle import ORACLE_SIGMAS, oracle_search
        from feedback_env.pipeline import PARAMETER_SPACE

        started = time.perf_counter()
        space = PARAMETER_SPACE.subspace(self.tuned)
        per_run = -(-self.budget // len(ORACLE_SIGMAS))  # the budget shared by the runs, rounded up
        result = oracle_search(context.objective, space, per_run, seed, self.restarts)
        curve = context.objective.cycled(result.params, budget)
        return ClipRun(list(map(float, curve)), [result.params], objective=last_pass_mean(curve, context.n_chunks),
                       extra={"evaluations": result.evaluations, "seconds": time.perf_counter() - started},
                       unscored=_nan_at(curve))  # fmt: skip


def last_pass_mean(curve, chunks_per_pass: int) -> float | None:
    """The objective a run reached: mean reward over its last pass of the clip (failed iterations left out)."""
    last = [r for r in curve[-chunks_per_pass:] if np.isfinite(r)]
    return float(np.mean(last)) if last else None


def _nan_at(curve) -> list[int]:
    """Iterations (0-based) without a reward in ``curve``."""
    return np.flatnonzero(~np.isfinite(np.asarray(curve, dtype=float))).tolist()


def aligned_chunk_rewards(output: np.ndarray, clip, chunk: int, reward, min_scored_s: float | None = None) -> np.ndarray:
    """The loop's reward of each chunk of an output aligned with the clip (no pipeline latency); NaN where the
    loop does not score the chunk: shorter than ``min_scored_s`` seconds (the loop's
    :data:`~feedback_env.feedback_loop.objective.MIN_SCORED_S` if None), or a silent clean reference."""
    from feedback_env.feedback_loop.objective import MIN_SCORED_S
    from feedback_env.metrics import compute_metrics

    shortest = (MIN_SCORED_S if min_scored_s is None else min_scored_s) * clip.sample_rate
    names = list(reward.metric_names)
    rewards = []
    for start in range(0, clip.noisy.size, chunk):
        part = slice(start, start + chunk)
        reference = None if clip.clean is None else clip.clean[part]
        if clip.noisy[part].size < shortest or not reward.can_score(reference):
            rewards.append(np.nan)
            continue
        rewards.append(reward(compute_metrics(output[part], reference, clip.sample_rate, names=names),
                              compute_metrics(clip.noisy[part], reference, clip.sample_rate, names=names)))  # fmt: skip
    return np.asarray(rewards, dtype=float)


def _policy(path: str) -> Strategy:
    """A loop acting with the SB3 policy saved at ``path``, observing and setting the parameters it was trained on."""
    from pathlib import Path

    from agents.factory import read_config
    from agents.strategy import policy_loop_options

    if not Path(path).is_file():
        raise ValueError(f"strategy td3:{path}: no model file {path!r} (train one with `python train.py`)")
    options = policy_loop_options(path)
    chunk_s = read_config(path).get("env_config", {}).get("chunk_s")
    return LoopStrategy(f"td3:{path}", options.pop("strategy"), relative_cost=6.0, trained_chunk_s=chunk_s, **options)


def make_strategy(name: str) -> Strategy:
    """The strategy called ``name`` (see the module docstring); ``td3:PATH`` loads an SB3 model, and
    ``NAME:key=value,...`` is a loop strategy with options of its update strategy (:func:`with_options`)."""
    from feedback_env.pipeline import transparent_params

    if name.startswith("td3:"):
        return _policy(name.split(":", 1)[1])
    if ":" in name:
        return with_options(*name.split(":", 1))
    factories: dict[str, Callable[[], Strategy]] = {
        "bypass": lambda: StaticStrategy("bypass", transparent_params()),
        "defaults": lambda: StaticStrategy("defaults", {}),
        "spsa": lambda: LoopStrategy("spsa", "gradient"),
        "cma": lambda: LoopStrategy("cma", "cma"),
        "optuna": lambda: LoopStrategy("optuna", "bayesian", relative_cost=235.0),
        "random": lambda: LoopStrategy("random", "random"),
        "ucb": lambda: LoopStrategy("ucb", "bandit", relative_cost=3.0, strategy_options={"bandit": {"policy": "ucb1"}}),
        "thompson": lambda: LoopStrategy("thompson", "bandit", relative_cost=3.0, strategy_options={"bandit": {"policy": "thompson"}}),
        "noisereduce": NoisereduceStrategy,
        "oracle": OracleStrategy,
    }
    if name not in factories:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(factories)}, td3:MODEL.zip")
    return factories[name]()


def with_options(base: str, options: str) -> "LoopStrategy":
    """The loop strategy ``base`` (``spsa``, ``cma``, ``optuna``, ``random``, ``ucb``, ``thompson``) with ``options``,
    ``key=value`` pairs separated by commas, given to its update strategy's factory (e.g. ``spsa:perturbation=0.15``
    for :class:`~feedback_env.feedback_loop.optimizers.GradientStrategy`'s ``perturbation``). Values are read as
    JSON (``0.15``, ``true``, ``["gentle","voice_focus"]``), else kept as text (``design=hadamard``). The run is
    named ``base:options``, so variants of one strategy compare in one run.

    :raises ValueError: naming the part that is wrong (a base with no update strategy, a pair without ``=``, a
        repeated key, an option the strategy does not take, or a value it refuses), before any work.
    """
    from feedback_env import FeedbackLoopSystem

    label = f"{base}:{options}"
    strategy = make_strategy(base)
    if not isinstance(strategy, LoopStrategy):
        raise ValueError(f"strategy {label!r}: {base!r} has no update strategy to take options; those that do: "
                         "spsa, cma, optuna, random, ucb, thompson")  # fmt: skip
    given = _parse_options(label, options)
    loop_options = dict(strategy.loop_options)
    every = dict(loop_options.get("strategy_options", {}))
    every[strategy.strategy] = {**every.get(strategy.strategy, {}), **given}
    loop_options["strategy_options"] = every
    try:  # the strategy's own checks of its options, now rather than in the first update of a run
        FeedbackLoopSystem(strategy=strategy.strategy, **loop_options).strategy(strategy.strategy)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"strategy {label!r}: {exc}") from None
    return LoopStrategy(label, strategy.strategy, strategy.relative_cost, strategy.trained_chunk_s, **loop_options)


def _parse_options(label: str, text: str) -> dict[str, Any]:
    """``key=value,...`` as a dict. A value that is JSON up to the next comma after it is that JSON (a list or a
    quoted string may hold commas); any other value is its text up to the next comma.

    :raises ValueError: naming the pair that is not ``key=value`` or the key given twice.
    """
    import json

    decoder = json.JSONDecoder()
    given: dict[str, Any] = {}
    pos = 0
    while True:
        comma = text.find(",", pos)
        equals = text.find("=", pos)
        key = text[pos:equals].strip()
        if equals < 0 or not key or 0 <= comma < equals:
            raise ValueError(f"strategy {label!r}: {text[pos:None if comma < 0 else comma]!r} is not key=value")
        if key in given:
            raise ValueError(f"strategy {label!r}: option {key!r} given twice")
        start = len(text) - len(text[equals + 1:].lstrip())
        try:
            value, end = decoder.raw_decode(text, start)
            end = len(text) - len(text[end:].lstrip())
            if end < len(text) and text[end] != ",":
                raise ValueError("more after the JSON")
        except ValueError:  # not JSON (json.JSONDecodeError is a ValueError): the text up to the next comma
            end = len(text) if text.find(",", start) < 0 else text.find(",", start)
            value = text[start:end].strip()
        given[key] = value
        if end >= len(text):
            return given
        pos = end + 1


STRATEGY_NAMES = ("bypass", "defaults", "spsa", "cma", "ucb", "thompson", "noisereduce", "optuna", "random", "oracle")
