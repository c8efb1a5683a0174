"""The per-clip upper bound: the best static parameters for one clip, found offline by CMA-ES.

"Static" means one setting for the whole clip; adaptive strategies are judged by how much of the
oracle's improvement over the defaults they reach. The search runs in the unit cube with the ``cma``
package (IPOP restarts: each restart doubles the population), starting from the defaults; the oracles
(:func:`oracle_search`) run it at two initial step sizes and keep the better result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import cma
import numpy as np

from feedback_env.metrics import compute_metrics
from feedback_env.parameters import ParameterSpace
from feedback_env.pipeline import PARAMETER_SPACE, EnhancementPipeline

ORACLE_SIGMAS = (0.3, 0.5)
"""Initial step sizes of the oracles' CMA-ES runs in the unit cube (:func:`oracle_search`). The objective has a
basin with the hum notches off, at the edge of the cube, that is the best on hum clips at high SNR (a notch
also takes the speech harmonics that cross it); from the defaults (30 dB notches) a run at 0.3 settled on deep
narrow notches on two built-in hum clips, below a setting with them off, which a run at 0.5 found. Neither
step size is the better on every clip, so an oracle runs both and keeps the best."""


@dataclass
class SearchResult:
    """Best parameters found, their score, and the score of every evaluation in order."""

    params: dict[str, float]
    score: float
    evaluations: int
    history: list[float] = field(default_factory=list)

    def best_so_far(self) -> np.ndarray:
        """Running maximum of the scores: the search's quality after each evaluation."""
        return np.maximum.accumulate(np.asarray(self.history)) if self.history else np.zeros(0)


def clip_objective(
    noisy: np.ndarray,
    clean: np.ndarray,
    sample_rate: int = 16000,
    metric: str = "si_sdr",
    fixed: Mapping[str, float] | None = None,
) -> Callable[[Mapping[str, float]], float]:
    """Score of a static setting on a whole clip: ``metric`` of the aligned output (higher is better).

    :param fixed: physical overrides applied under every evaluated setting.
    """
    pipeline = EnhancementPipeline(sample_rate)
    defaults = {**pipeline.space.defaults(), **(fixed or {})}

    def score(params: Mapping[str, float]) -> float:
        pipeline.set_params({**defaults, **params})
        out = pipeline.process_clip(noisy)
        return compute_metrics(out, clean, sample_rate, names=[metric])[metric]

    return score


def cma_search(
    objective: Callable[[Mapping[str, float]], float],
    space: ParameterSpace = PARAMETER_SPACE,
    budget: int = 1000,
    seed: int = 0,
    sigma0: float = 0.3,
    restarts: int = 2,
    start: Mapping[str, float] | None = None,
) -> SearchResult:
    """Maximize ``objective`` (physical params -> score) over ``space`` with CMA-ES and IPOP restarts.

    :param budget: total objective evaluations, across restarts, the start's included.
    :param start: starting point (physical); the space's defaults if None. It is scored first, so the
        result is at least as good as the start whatever the budget.
    """
    if int(budget) < 1:
        raise ValueError(f"cma_search: budget must be at least 1 evaluation, got {budget}")
    x0 = space.to_unit({**space.defaults(), **(start or {})}, dtype=np.float64)
    first = float(objective(space.from_unit(x0)))  # the start is a candidate: the result is never worse than it
    history: list[float] = [first]
    best_x, best = x0, (first if np.isfinite(first) else -np.inf)
    popsize = None
    for restart in range(restarts + 1):
        if len(history) >= budget:
            break
        options = {"bounds": [-1.0, 1.0], "seed": seed + 1 + restart, "verbose": -9}
        if popsize:
            options["popsize"] = popsize
        es = cma.CMAEvolutionStrategy(x0 if restart == 0 else best_x, sigma0, options)
        while not es.stop() and len(history) < budget:
            candidates = es.ask()[: budget - len(history)]  # the last generation may be cut to the budget
            scores = [float(objective(space.from_unit(np.asarray(x)))) for x in candidates]
            history.extend(scores)
            for x, value in zip(candidates, scores):
                if np.isfinite(value) and value > best:
                    best, best_x = value, np.asarray(x)
            if len(candidates) == es.popsize:
                es.tell(candidates, [-v if np.isfinite(v) else np.inf for v in scores])
        popsize = 2 * es.popsize
    return SearchResult(space.from_unit(best_x), float(best), len(history), history)


def oracle_search(
    objective: Callable[[Mapping[str, float]], float],
    space: ParameterSpace,
    budget: int,
    seed: int = 0,
    restarts: int = 2,
    sigmas: Sequence[float] = ORACLE_SIGMAS,
) -> SearchResult:
    """The per-clip upper bound: :func:`cma_search` from the defaults once per initial step size in ``sigmas``,
    ``budget`` evaluations each (same seed); the best result, with every run's evaluations and history."""
    runs = [cma_search(objective, space, budget, seed, sigma, restarts) for sigma in sigmas]
    best = max(runs, key=lambda r: r.score)
    return SearchResult(best.params, best.score, sum(r.evaluations for r in runs), [h for r in runs for h in r.history])
