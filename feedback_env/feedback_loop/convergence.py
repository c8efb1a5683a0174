"""When have the parameters converged, how many iterations are left, and what is the local curvature?

:class:`ConvergenceAnalyzer` watches the iterates ``x_k`` (tuned parameters in the unit cube) and the
gradient estimates ``g_k`` of the reward at them:

* converged: the last ``patience`` steps were all shorter than ``step_tolerance`` and the reward trend
  is flat (neither improving nor degrading);
* iterations remaining: from the geometric decay of the recent step lengths (``log |s_k|`` regressed on
  ``k``; ``|s| r^n < tol``), else from the quasi-Newton model (Newton distance ``|B^-1 g|`` over the
  mean step length); ``inf`` when the steps do not shrink and no curvature is known;
* curvature: a BFGS estimate ``B`` of the Hessian of the loss ``f = -reward``, with ``s = x_{k+1} - x_k``
  and ``y = -(g_{k+1} - g_k)``, updated only when the curvature condition ``s.y > 0`` holds (which keeps
  ``B`` positive definite; Nocedal & Wright, *Numerical Optimization*, 2nd ed., eq. 6.19), started at
  ``(y.y / s.y) I`` (eq. 6.20). Its spectral radius is the largest curvature; ``contraction_factor``
  ``max_i |1 - eta lambda_i|`` is the linear rate a gradient step ``eta`` would have on that model.
  With noisy gradients (``curvature_block`` > 1) the pairs are made from the means of ``x`` and ``g`` over
  consecutive blocks of updates, as in stochastic quasi-Newton methods (Byrd, Hansen, Nocedal & Singer
  2016): on a quadratic the mean gradient is the gradient at the mean point, so the pairs stay exact,
  while the noise of ``y`` shrinks with the block and ``s`` spans the block's drift; a block whose mean
  moved less than ``step_tolerance`` gives no pair (its ``y`` would be noise over a near-zero ``s``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class ConvergenceReport:
    """A snapshot of :class:`ConvergenceAnalyzer`'s judgement."""

    converged: bool
    iterations_remaining: float
    spectral_radius: float
    contraction_factor: float
    last_step: float
    curvature_updates: int
    curvature_skips: int
    explanation: str


class ConvergenceAnalyzer:
    """Convergence test, iterations-remaining estimate and BFGS curvature of a feedback loop.

    :param learning_rate: step size ``eta`` used for the contraction factor (unit-cube units).
    :param step_tolerance: a step (Euclidean, unit cube) below this counts as small.
    :param patience: consecutive small steps needed (``k``).
    :param window: recent steps used for the decay fit.
    :param curvature_block: updates whose iterates and gradients are averaged into one end of a secant
        pair (1: every update's own; see the module docstring).
    """

    def __init__(
        self,
        learning_rate: float = 0.01,
        step_tolerance: float = 0.02,
        patience: int = 10,
        window: int = 20,
        curvature_block: int = 1,
    ):
        if not (learning_rate > 0 and step_tolerance > 0 and patience >= 1 and window >= 3 and curvature_block >= 1):
            raise ValueError(
                f"need learning_rate > 0, step_tolerance > 0, patience >= 1, window >= 3, curvature_block >= 1; got "
                f"{learning_rate}, {step_tolerance}, {patience}, {window}, {curvature_block}"
            )
        self.learning_rate = float(learning_rate)
        self.step_tolerance = float(step_tolerance)
        self.patience = int(patience)
        self.window = int(window)
        self.curvature_block = int(curvature_block)
        self.reset()

    def reset(self) -> None:
        """Forget the iterates and the curvature (after a rollback or a change of the tuned space)."""
        self.hessian: np.ndarray | None = None
        self._x: np.ndarray | None = None  # the last iterate (for the steps)
        self._g: np.ndarray | None = None  # the mean gradient of the last complete block, at ...
        self._g_at: np.ndarray | None = None  # ... the mean iterate of that block
        self._block: list[tuple[np.ndarray, np.ndarray]] = []  # (x, g) of the block being filled
        self.steps: deque[float] = deque(maxlen=max(self.window, self.patience))
        self.curvature_updates = 0
        self.curvature_skips = 0

    # ------------------------------------------------------------------ feeding
    def record_step(self, step: np.ndarray) -> None:
        """Record an applied step (unit cube) whose gradient is unknown (e.g. a CMA or bandit move)."""
        self.steps.append(float(np.linalg.norm(step)))

    def update(self, x: np.ndarray, gradient: np.ndarray | None, step: np.ndarray | None = None) -> bool:
        """Feed the iterate ``x`` and the reward gradient estimated there; True when ``B`` was updated.

        The step ``x - x_previous`` is recorded, or ``step`` when given (the step just applied, where ``x`` is
        the point the gradient was estimated at, before it). Each gradient joins the current block; when the
        block is full, its means and the previous block's make a BFGS pair (used if the curvature condition
        holds). A missing gradient breaks the chain: the partial block and the previous block are dropped.
        """
        x = np.asarray(x, dtype=np.float64).copy()
        g = None if gradient is None else np.asarray(gradient, dtype=np.float64).copy()
        if g is not None and (g.shape != x.shape or not np.all(np.isfinite(g))):
            g = None
        if step is not None:
            self.record_step(np.asarray(step, dtype=np.float64))
        elif self._x is not None and self._x.shape == x.shape:
            self.steps.append(float(np.linalg.norm(x - self._x)))
        self._x = x
        if g is None or (self._g_at is not None and self._g_at.shape != x.shape):
            self._block, self._g, self._g_at = [], None, None
            return False
        self._block.append((x, g))
        if len(self._block) < self.curvature_block:
            return False
        x_mean, g_mean = (np.mean(v, axis=0) for v in zip(*self._block))
        self._block = []
        updated = False
        if self._g is not None:
            s = x_mean - self._g_at
            if self.curvature_block > 1 and np.linalg.norm(s) < self.step_tolerance:
                self.curvature_skips += 1  # the block did not move: its gradient difference is noise
            else:
                updated = self._bfgs(s, -(g_mean - self._g))
        self._g, self._g_at = g_mean, x_mean
        return updated

    def _bfgs(self, s: np.ndarray, y: np.ndarray) -> bool:
        sy = float(s @ y)
        if not (sy > 1e-12 * max(1e-300, float(np.linalg.norm(s) * np.linalg.norm(y)))) or sy <= 0.0:
            self.curvature_skips += 1
            return False
        if self.hessian is None or self.hessian.shape != (s.size, s.size):
            self.hessian = (float(y @ y) / sy) * np.eye(s.size)
        b = self.hessian
        bs = b @ s
        sbs = float(s @ bs)
        if sbs <= 0.0:  # cannot happen while B is positive definite; guard against round-off
            self.curvature_skips += 1
            return False
        self.hessian = b - np.outer(bs, bs) / sbs + np.outer(y, y) / sy
        self.hessian = 0.5 * (self.hessian + self.hessian.T)
        self.curvature_updates += 1
        return True

    # ------------------------------------------------------------------ judgement
    @property
    def spectral_radius(self) -> float:
        """Largest |eigenvalue| of the curvature estimate (NaN before the first update)."""
        if self.hessian is None:
            return float("nan")
        return float(np.max(np.abs(np.linalg.eigvalsh(self.hessian))))

    @property
    def contraction_factor(self) -> float:
        """``max |1 - eta lambda_i|``: < 1 means a gradient step ``eta`` contracts on the model (NaN if unknown)."""
        if self.hessian is None:
            return float("nan")
        eig = np.linalg.eigvalsh(self.hessian)
        return float(np.max(np.abs(1.0 - self.learning_rate * eig)))

    def small_steps(self) -> int:
        """How many of the latest steps in a row were below the tolerance."""
        count = 0
        for s in reversed(self.steps):
            if s >= self.step_tolerance:
                break
            count += 1
        return count

    def converged(self, trend: str | None = "stable") -> bool:
        """``patience`` small steps in a row and a flat trend (pass the analysis's trend label)."""
        return self.small_steps() >= self.patience and trend in (None, "stable")

    def iterations_remaining(self) -> float:
        """Estimated iterations until a step is below the tolerance (0 if the last one is; ``inf`` if unknown)."""
        if not self.steps:
            return math.inf
        last = self.steps[-1]
        if last < self.step_tolerance:
            return 0.0
        recent = np.array([s for s in list(self.steps)[-self.window :] if s > 0])
        if recent.size >= 3:
            slope = float(np.polyfit(np.arange(recent.size), np.log(recent), 1)[0])
            if slope < -1e-6:
                return float(math.ceil(math.log(self.step_tolerance / last) / slope))
        if self.hessian is not None and self._g is not None:
            try:
                distance = float(np.linalg.norm(np.linalg.solve(self.hessian, self._g)))
            except np.linalg.LinAlgError:
                return math.inf
            mean_step = float(np.mean(recent)) if recent.size else last
            return float(math.ceil(distance / mean_step)) if mean_step > 0 else math.inf
        return math.inf

    def report(self, trend: str | None = "stable") -> ConvergenceReport:
        remaining = self.iterations_remaining()
        converged = self.converged(trend)
        last = self.steps[-1] if self.steps else float("nan")
        text = (
            f"{'converged' if converged else 'not converged'}: {self.small_steps()}/{self.patience} steps "
            f"< {self.step_tolerance:g} (last {last:.3g}), trend {trend}; ~{remaining:g} iterations left; "
            f"curvature: spectral radius {self.spectral_radius:.3g}, contraction {self.contraction_factor:.3g} "
            f"({self.curvature_updates} BFGS updates, {self.curvature_skips} skipped: s.y <= 0 or a block that did not move)"
        )
        return ConvergenceReport(
            converged, remaining, self.spectral_radius, self.contraction_factor, last,
            self.curvature_updates, self.curvature_skips, text,
        )  # fmt: skip

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        return {
            "hessian": None if self.hessian is None else self.hessian.tolist(),
            "x": None if self._x is None else self._x.tolist(),
            "g": None if self._g is None else self._g.tolist(),
            "g_at": None if self._g_at is None else self._g_at.tolist(),
            "block": [[x.tolist(), g.tolist()] for x, g in self._block],
            "steps": list(self.steps),
            "curvature_updates": self.curvature_updates,
            "curvature_skips": self.curvature_skips,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        arr = lambda v: None if v is None else np.asarray(v, dtype=np.float64)  # noqa: E731
        self.hessian, self._x, self._g = arr(state["hessian"]), arr(state["x"]), arr(state["g"])
        # files saved before the blocks: the last gradient was taken at the last iterate
        self._g_at = arr(state["g_at"]) if "g_at" in state else (None if self._g is None else self._x)
        self._block = [(arr(x), arr(g)) for x, g in state.get("block", [])]
        self.steps = deque(state["steps"], maxlen=max(self.window, self.patience))
        self.curvature_updates = int(state["curvature_updates"])
        self.curvature_skips = int(state["curvature_skips"])
