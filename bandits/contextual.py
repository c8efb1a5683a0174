"""LinUCB with disjoint linear models (Li, Chu, Langford & Schapire, "A Contextual-Bandit Approach to
Personalized News Article Recommendation", WWW 2010, Algorithm 1)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bandits.policy import Policy
from bandits.state import StateStore, Stats, Update


class LinUCB(Policy):
    """Disjoint LinUCB: one ridge regression of the reward on the context per arm.

    Per arm ``a``: ``A_a = lambda I + sum x x^T``, ``b_a = sum r x``, ``theta_a = A_a^-1 b_a``; play the
    arm maximizing ``theta_a^T x + alpha sqrt(x^T A_a^-1 x)``. With ``alpha = 1 + sqrt(ln(2/delta)/2)``
    the bonus is a ``1 - delta`` confidence width of the prediction (the paper's Eq. 4; ``lambda = 1``
    there). Rewards may be any finite numbers; the context is a finite vector of length ``dim``
    (include a constant 1 for an intercept). The store keeps ``sum x x^T``, ``sum r x`` and pull counts.

    :param dim: context length ``d``. :param alpha: exploration width (>= 0).
    :param ridge: ``lambda`` > 0, the ridge penalty (prior precision).
    """

    contextual = True

    def __init__(
        self,
        n_arms: int,
        dim: int,
        alpha: float = 1.0,
        *,
        ridge: float = 1.0,
        seed: int | None = None,
        store: StateStore | None = None,
    ):
        if int(dim) != dim or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if not ridge > 0:
            raise ValueError(f"ridge must be > 0, got {ridge}")
        self.dim, self.alpha, self.ridge = int(dim), float(alpha), float(ridge)
        super().__init__(n_arms, seed=seed, store=store)

    @staticmethod
    def alpha_for(delta: float) -> float:
        """The paper's ``alpha = 1 + sqrt(ln(2 / delta) / 2)`` for confidence ``1 - delta``."""
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        return 1.0 + math.sqrt(math.log(2.0 / delta) / 2.0)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"xx": (self.dim, self.dim), "xr": (self.dim,), "count": ()}

    def hyperparameters(self) -> dict[str, Any]:
        return {"dim": self.dim, "alpha": self.alpha, "ridge": self.ridge}

    def _predictions(self, stats: Stats, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-arm ``theta_a^T x`` and ``sqrt(x^T A_a^-1 x)``, each ``(K,)``."""
        a = stats["xx"] + self.ridge * np.eye(self.dim)
        rhs = np.stack([stats["xr"], np.broadcast_to(x, stats["xr"].shape)], axis=-1)  # (K, d, 2)
        solved = np.linalg.solve(a, rhs)
        predicted = solved[:, :, 0] @ x
        width = np.sqrt(np.maximum(solved[:, :, 1] @ x, 0.0))
        return predicted, width

    def _choose(self, stats: Stats, context: np.ndarray | None) -> int:
        predicted, width = self._predictions(stats, context)
        return self._argmax(predicted + self.alpha * width)

    def _update_for(self, arm: int, reward: float, context: np.ndarray | None) -> Update:
        return Update(arm, {"xx": np.outer(context, context), "xr": reward * context, "count": 1.0})

    def describe_arm(self, arm: int, context: np.ndarray | None = None) -> dict[str, float]:
        stats = self.store.read()
        out = {"pulls": float(stats["count"][arm])}
        if context is not None:
            predicted, width = self._predictions(stats, self._check_context(context))
            out.update(predicted=float(predicted[arm]), bonus=float(self.alpha * width[arm]))
            out["index"] = out["predicted"] + out["bonus"]
        return out

    def _check_context(self, context: np.ndarray | None) -> np.ndarray:
        if context is None:
            raise ValueError(f"{self.name}: a context of shape ({self.dim},) is required")
        x = np.asarray(context, dtype=np.float64).reshape(-1)
        if x.shape != (self.dim,):
            raise ValueError(f"{self.name}: context has shape {np.shape(context)}, expected ({self.dim},)")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{self.name}: context has non-finite entries at {np.flatnonzero(~np.isfinite(x)).tolist()}")
        return x
