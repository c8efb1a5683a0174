"""The built-in update strategies: SPSA with Adam steps, CMA-ES, Optuna TPE and random search.

All work in the unit cube of the loop's tuned space and score parameters with ``loop.evaluate`` (the
last chunk re-processed from the pipeline state before it), so trying a setting never disturbs the
live stream; the loop's safety checks then move the live parameters (see ``FeedbackLoopSystem``).
Every strategy spends two evaluations per update:

* ``gradient`` (SPSA, Spall 1992): ``g = (R(x + c D) - R(x - c D)) / (2c) * D`` with Rademacher ``D``,
  both sides on the same chunk (common random numbers); Adam moments (Kingma & Ba 2015) turn ``g``
  into a step of about ``learning_rate`` per coordinate when its sign is consistent, less when noisy.
  Gains: ``c_k = c / (k + 1)^0.101`` and ``a_k = learning_rate / (1 + k / A)^0.602`` (Spall's
  exponents), floored at ``min_rate * learning_rate`` so the loop keeps tracking a changing input.
* ``cma``, ``bayesian`` (Optuna TPE), ``random``: one candidate per update, scored by its paired gain
  over a fixed reference (the parameters the strategy started from) on the same chunk, which removes
  the chunk-to-chunk difference in difficulty; the live parameters follow the search's incumbent
  (CMA's mean; the best-scored trial for TPE and random search).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from feedback_env.feedback_loop.strategies import Proposal

if TYPE_CHECKING:  # pragma: no cover
    from feedback_env.feedback_loop.records import FeedbackRecord
    from feedback_env.feedback_loop.system import FeedbackLoopSystem


def _unit(loop: "FeedbackLoopSystem") -> np.ndarray:
    params = loop.parameters
    return loop.space.to_unit({n: params[n] for n in loop.space.names}).astype(np.float64)


def _largest_moves(loop: "FeedbackLoopSystem", x_old: np.ndarray, x_new: np.ndarray, k: int = 3) -> str:
    old, new = loop.space.from_unit(x_old), loop.space.from_unit(x_new)
    order = np.argsort(-np.abs(x_new - x_old))[:k]
    names = loop.space.names
    return ", ".join(f"{names[i]} {old[names[i]]:.4g}->{new[names[i]]:.4g}" for i in order if x_new[i] != x_old[i])


class GradientStrategy:
    """SPSA gradient ascent on the reward with Adam steps (``gradient``; see the module docstring).

    :param loop: the feedback loop (its ``learning_rate`` is the Adam step, unit-cube units).
    :param perturbation: ``c``, half-width of the two-sided probe in unit-cube units.
    :param decay: ``A``: updates over which the step size falls by ``2^0.602``.
    :param min_rate: floor of the step-size schedule, as a fraction of ``learning_rate``.
    :param beta1: Adam's first-moment decay. :param beta2: Adam's second-moment decay.
    :param pairs: two-sided probes averaged per update (Spall's gradient averaging; 2 evaluations each).
    """

    name = "gradient"

    def __init__(
        self,
        loop: "FeedbackLoopSystem",
        perturbation: float = 0.3,
        decay: float = 30.0,
        min_rate: float = 0.25,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        pairs: int = 1,
        estimator: str = "spsa",
        forget: float = 0.9,
        ridge: float = 1.0,
    ):
        if not (0 < perturbation <= 1 and decay > 0 and 0 <= min_rate <= 1 and 0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(
                f"gradient strategy: need 0 < perturbation <= 1, decay > 0, 0 <= min_rate <= 1, betas in [0, 1); got "
                f"{perturbation}, {decay}, {min_rate}, {beta1}, {beta2}"
            )
        self.perturbation, self.decay, self.min_rate = float(perturbation), float(decay), float(min_rate)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.pairs = max(1, int(pairs))
        self.estimator, self.forget, self.ridge = estimator, float(forget), float(ridge)
        self.reset(loop.space.dim)

    def reset(self, dim: int) -> None:
        """Forget the moments and restart the gain schedule."""
        self.m = np.zeros(dim)
        self.v = np.zeros(dim)
        self.k = 0
        self.gram = np.zeros((dim, dim))
        self.moment = np.zeros(dim)

    def step_size(self) -> float:
        """``a_k`` for the coming update, unit-cube units (times ``loop.learning_rate``)."""
        return max(self.min_rate, (1.0 + self.k / self.decay) ** -0.602)

    def propose(self, loop: "FeedbackLoopSystem") -> Proposal:
        x = _unit(loop)
        if self.m.shape != x.shape:
            self.reset(x.size)
        c = self.perturbation / (self.k + 1) ** 0.101
        center = np.clip(x, -1.0 + c, 1.0 - c)  # both probes inside the cube
        g = np.zeros_like(x)
        for _ in range(self.pairs):
            delta = loop.rng.choice([-1.0, 1.0], size=x.size)
            plus = loop.evaluate(loop.space.from_unit(center + c * delta))
            minus = loop.evaluate(loop.space.from_unit(center - c * delta))
            g += (plus - minus) / (2.0 * c) * delta / self.pairs
            if self.estimator == "regression":
                self.gram = self.forget * self.gram + np.outer(delta, delta)
                self.moment = self.forget * self.moment + delta * (plus - minus) / (2.0 * c)
        if self.estimator == "regression":
            g = np.linalg.solve(self.gram + self.ridge * np.eye(x.size), self.moment)
        self.k += 1
        self.m = self.beta1 * self.m + (1.0 - self.beta1) * g
        self.v = self.beta2 * self.v + (1.0 - self.beta2) * g * g
        m_hat = self.m / (1.0 - self.beta1**self.k)
        v_hat = self.v / (1.0 - self.beta2**self.k)
        rate = loop.learning_rate * self.step_size()
        step = rate * m_hat / (np.sqrt(v_hat) + self.eps)
        x_new = np.clip(x + step, -1.0, 1.0)
        consistency = np.abs(m_hat) / (np.sqrt(v_hat) + self.eps)  # 1 = the same sign every time
        confidence = float(np.mean(consistency))
        expected = float(g @ (x_new - x))
        explanation = (
            f"SPSA on {loop.reward_description}: probes +-{c:.3f} (unit cube) on the last chunk scored "
            f"{plus:+.3f} / {minus:+.3f}, gradient norm {np.linalg.norm(g):.3f}; Adam step {rate:.3f}, "
            f"sign consistency {confidence:.2f}; first-order expected gain {expected:+.4f}; "
            f"moves: {_largest_moves(loop, x, x_new) or 'none'}"
        )
        return Proposal(
            loop.space.from_unit(x_new),
            explanation,
            {
                "expected_gain": expected,
                "gradient_norm": float(np.linalg.norm(g)),
                "confidence": confidence,
                "perturbation": c,
                "reward_plus": float(plus),
                "reward_minus": float(minus),
            },
            gradient=m_hat.copy(),
        )

    def observe(self, loop: "FeedbackLoopSystem", record: "FeedbackRecord") -> None:
        """SPSA learns from its own probes; the live records add nothing."""

    def on_rollback(self, loop: "FeedbackLoopSystem") -> None:
        self.reset(loop.space.dim)

    def state_dict(self) -> dict[str, Any]:
        return {"m": self.m.tolist(), "v": self.v.tolist(), "k": self.k}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.m = np.asarray(state["m"], dtype=np.float64)
        self.v = np.asarray(state["v"], dtype=np.float64)
        self.k = int(state["k"])


class _PairedSearch:
    """One candidate per update, scored by its gain over a fixed reference on the same chunk."""

    name = "search"
    label = "search"

    def __init__(self, loop: "FeedbackLoopSystem"):
        self.reference = {n: loop.parameters[n] for n in loop.space.names}
        self.evaluated = 0
        self.best_gain = 0.0

    def _score(self, loop: "FeedbackLoopSystem", x: np.ndarray) -> tuple[float, float]:
        """``(gain over the reference, the candidate's reward)`` on the last chunk (two evaluations)."""
        reference = loop.evaluate(self.reference)
        reward = loop.evaluate(loop.space.from_unit(x))
        self.evaluated += 1
        return float(reward - reference), float(reward)

    def observe(self, loop: "FeedbackLoopSystem", record: "FeedbackRecord") -> None:
        """The search learns from its own paired evaluations; the live records add nothing."""

    def _proposal(self, loop, x_old, x_new, gain, reward, detail, confidence) -> Proposal:
        explanation = (
            f"{self.label} on {loop.reward_description}: candidate {self.evaluated} scored {reward:+.3f}, "
            f"{gain:+.3f} over the starting parameters on the last chunk; best gain so far {self.best_gain:+.3f}; "
            f"{detail}; moves: {_largest_moves(loop, x_old, x_new) or 'none'}"
        )
        return Proposal(
            loop.space.from_unit(x_new),
            explanation,
            {"expected_gain": float(self.best_gain), "candidate_gain": gain, "confidence": float(confidence),
             "evaluations": float(self.evaluated)},
        )  # fmt: skip


class CMAStrategy(_PairedSearch):
    """CMA-ES (``cma`` package, ask/tell) on the paired gain; the live parameters follow its mean.

    :param sigma0: initial step size, unit-cube units. :param popsize: population (cma's default if None).
    """

    name = "cma"
    label = "CMA-ES"

    def __init__(self, loop: "FeedbackLoopSystem", sigma0: float = 0.3, popsize: int | None = None):
        import cma

        super().__init__(loop)
        options = {"bounds": [-1.0, 1.0], "seed": int(loop.rng.integers(1, 2**31 - 1)), "verbose": -9}
        if popsize:
            options["popsize"] = int(popsize)
        self.sigma0 = float(sigma0)
        self.es = cma.CMAEvolutionStrategy(_unit(loop), self.sigma0, options)
        self._pending: list[np.ndarray] = []
        self._scored: list[tuple[np.ndarray, float]] = []

    def propose(self, loop: "FeedbackLoopSystem") -> Proposal:
        x_old = _unit(loop)
        if not self._pending:
            self._pending = [np.asarray(c) for c in self.es.ask()]
        candidate = self._pending.pop(0)
        gain, reward = self._score(loop, candidate)
        self.best_gain = max(self.best_gain, gain)
        self._scored.append((candidate, gain))
        if len(self._scored) == self.es.popsize:
            self.es.tell([c for c, _ in self._scored], [-g for _, g in self._scored])
            self._scored = []
        mean = np.clip(np.asarray(self.es.mean, dtype=np.float64), -1.0, 1.0)
        sigma = float(self.es.sigma)
        detail = f"generation {self.es.countiter}, sigma {sigma:.3f}, live parameters follow the distribution mean"
        return self._proposal(loop, x_old, mean, gain, reward, detail, 1.0 - min(1.0, sigma / self.sigma0))


class BayesianStrategy(_PairedSearch):
    """Optuna's TPE sampler (ask/tell) on the paired gain; the live parameters follow the best trial."""

    name = "bayesian"
    label = "Optuna TPE"

    def __init__(self, loop: "FeedbackLoopSystem", **sampler_options: Any):
        import optuna

        super().__init__(loop)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=int(loop.rng.integers(0, 2**31 - 1)), **sampler_options)
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self.distributions = {n: optuna.distributions.FloatDistribution(-1.0, 1.0) for n in loop.space.names}
        self.study.enqueue_trial({n: float(v) for n, v in zip(loop.space.names, _unit(loop))})
        self.best_x = _unit(loop)

    def propose(self, loop: "FeedbackLoopSystem") -> Proposal:
        x_old = _unit(loop)
        trial = self.study.ask(self.distributions)
        candidate = np.array([trial.params[n] for n in loop.space.names])
        gain, reward = self._score(loop, candidate)
        self.study.tell(trial, gain)
        if gain > self.best_gain:
            self.best_gain, self.best_x = gain, candidate
        detail = f"{len(self.study.trials)} trials, live parameters follow the best trial"
        confidence = min(1.0, len(self.study.trials) / 50.0)
        return self._proposal(loop, x_old, self.best_x, gain, reward, detail, confidence)


class RandomSearchStrategy(_PairedSearch):
    """Uniform random candidates in the unit cube; the live parameters follow the best-scored one."""

    name = "random"
    label = "random search"

    def __init__(self, loop: "FeedbackLoopSystem"):
        super().__init__(loop)
        self.best_x = _unit(loop)

    def propose(self, loop: "FeedbackLoopSystem") -> Proposal:
        x_old = _unit(loop)
        candidate = loop.rng.uniform(-1.0, 1.0, size=loop.space.dim)
        gain, reward = self._score(loop, candidate)
        if gain > self.best_gain:
            self.best_gain, self.best_x = gain, candidate
        confidence = 1.0 - math.exp(-self.evaluated / 50.0)
        return self._proposal(loop, x_old, self.best_x, gain, reward, f"{self.evaluated} candidates drawn", confidence)
