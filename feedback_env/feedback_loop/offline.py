"""Offline mode: fit a surrogate of the reward on a recorded history and propose parameters from it alone.

:class:`SurrogateModel` is a scikit-learn Gaussian process (constant x anisotropic RBF + white noise,
``normalize_y``) of the reward on the tuned parameters in the unit cube. A chunk's reward depends far
more on the chunk than on the parameters, so each reward is first centred on the mean reward of the
``k`` records with the nearest input features (itself included; a control variate for the input's
difficulty, since the history has no paired comparisons), leaving what the parameters changed.
Proposals maximize a lower confidence bound ``mean - kappa * std``: an offline proposal cannot be
tried before it runs, so it should stay where the data are. The search scores random candidates in
the cube plus perturbations of the best recorded settings, then polishes the best few with L-BFGS-B.
No audio is processed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.optimize import minimize

from feedback_env.feedback_loop.history import ProcessingHistory
from feedback_env.feedback_loop.strategies import Proposal
from feedback_env.parameters import ParameterSpace

if TYPE_CHECKING:  # pragma: no cover
    from feedback_env.feedback_loop.records import FeedbackRecord
    from feedback_env.feedback_loop.system import FeedbackLoopSystem

MIN_RECORDS = 10
"""Usable records (of one reward kind) the surrogate needs before it proposes anything."""


def centred_on_inputs(rewards: np.ndarray, features: np.ndarray, k: int) -> np.ndarray:
    """``rewards`` minus the mean reward of each record's ``k`` nearest neighbours in feature space."""
    from sklearn.neighbors import NearestNeighbors

    k = max(1, min(int(k), rewards.size))
    _, neighbours = NearestNeighbors(n_neighbors=k).fit(features).kneighbors(features)
    return rewards - rewards[neighbours].mean(axis=1)


class SurrogateModel:
    """GP surrogate of the input-centred reward as a function of the tuned parameters.

    :param space: the tuned space (inputs are its unit cube).
    :param neighbours: ``k`` of the input-difficulty baseline (None: a tenth of the records, at least 5;
        0: no centring).
    :param max_points: most recent usable records used (GP fitting is cubic in this).
    :param seed: for the optimizer restarts and candidate draws.
    """

    def __init__(self, space: ParameterSpace, neighbours: int | None = None, max_points: int = 400, seed: int = 0):
        if neighbours is not None and (int(neighbours) < 0 or int(neighbours) == 1):
            raise ValueError(f"offline: neighbours must be None, 0 (no centring) or at least 2, got {neighbours} "
                             "(1 centres every reward on itself)")  # fmt: skip
        if int(max_points) < MIN_RECORDS:
            raise ValueError(f"offline: max_points must be at least {MIN_RECORDS} (the surrogate's minimum), got {max_points}")
        self.space, self.neighbours, self.max_points, self.seed = space, neighbours, int(max_points), seed
        self.gp = None
        self.n_points = 0

    def usable(self, history: ProcessingHistory) -> np.ndarray:
        """Mask of the records to fit: usable ones scored like the latest usable one (intrusive and blind rewards
        are different functions, with different offsets), the last ``max_points`` of them."""
        ok = history.ok() & np.isfinite(history.rewards())
        if ok.any():
            intrusive = history.intrusive()
            ok &= intrusive == intrusive[ok][-1]
        ok[np.flatnonzero(ok)[: -self.max_points]] = False
        return ok

    def fit(self, history: ProcessingHistory) -> "SurrogateModel":
        """Fit on the :meth:`usable` records of ``history``. :raises ValueError: fewer than 10 of them."""
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        ok = self.usable(history)
        rewards = history.rewards()[ok]
        if rewards.size < MIN_RECORDS:
            raise ValueError(f"the offline surrogate needs at least {MIN_RECORDS} usable records of one reward kind, "
                             f"the history has {rewards.size}")  # fmt: skip
        physical = history.param_matrix(names=self.space.names)[ok]
        unit = np.array([self.space.to_unit(dict(zip(self.space.names, row))) for row in physical], dtype=np.float64)
        features = history.feature_matrix()[ok].astype(np.float64)
        k = max(5, rewards.size // 10) if self.neighbours is None else self.neighbours
        target = centred_on_inputs(rewards, features, k) if k else rewards
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(np.ones(self.space.dim), (1e-2, 1e3)) + WhiteKernel(
            0.1, (1e-6, 1e1)
        )
        self.gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2, random_state=self.seed)
        self.gp.fit(unit, target)
        self.n_points = int(rewards.size)
        self._best_seen = unit[np.argsort(target)[-5:]]
        return self

    def predict(self, unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted gain over the input baseline (mean, standard deviation) at unit positions ``(n, d)``."""
        if self.gp is None:
            raise RuntimeError("fit() the surrogate first")
        return self.gp.predict(np.atleast_2d(np.asarray(unit, dtype=np.float64)), return_std=True)

    def propose(self, kappa: float = 1.0, candidates: int = 2000) -> tuple[np.ndarray, float, float]:
        """``(unit position, predicted mean, predicted std)`` maximizing ``mean - kappa * std``."""
        rng = np.random.default_rng(self.seed)
        d = self.space.dim
        local = np.clip(self._best_seen[rng.integers(len(self._best_seen), size=candidates // 4)]
                        + rng.normal(0.0, 0.1, (candidates // 4, d)), -1.0, 1.0)  # fmt: skip
        pool = np.vstack([rng.uniform(-1.0, 1.0, (candidates, d)), local, self._best_seen])

        def score(u: np.ndarray) -> np.ndarray:
            mean, std = self.predict(u)
            return mean - kappa * std

        values = score(pool)
        best_x, best_v = pool[int(np.argmax(values))], float(np.max(values))
        for start in pool[np.argsort(values)[-3:]]:
            result = minimize(lambda u: -float(score(u[None])[0]), start, method="L-BFGS-B", bounds=[(-1.0, 1.0)] * d)
            if -result.fun > best_v:
                best_x, best_v = np.clip(result.x, -1.0, 1.0), float(-result.fun)
        mean, std = self.predict(best_x[None])
        return best_x, float(mean[0]), float(std[0])


class OfflineStrategy:
    """``offline``: parameters from a surrogate fitted on the loop's history; no audio is touched.

    :param kappa: confidence-bound weight (0 = the predicted mean alone).
    :param neighbours: ``k`` of the input-difficulty baseline (see :class:`SurrogateModel`).
    """

    name = "offline"

    def __init__(self, loop: "FeedbackLoopSystem", kappa: float = 1.0, neighbours: int | None = None, max_points: int = 400):
        self.kappa = float(kappa)
        self.model = SurrogateModel(loop.space, neighbours, max_points, seed=int(loop.rng.integers(0, 2**31 - 1)))

    def propose(self, loop: "FeedbackLoopSystem") -> Proposal:
        """The surrogate's proposal; no change (saying so) while the history holds too few usable records."""
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        usable = int(self.model.usable(loop.history).sum())
        if usable < MIN_RECORDS:
            return Proposal(
                {n: loop.parameters[n] for n in loop.space.names},
                f"offline GP surrogate waits for {MIN_RECORDS} usable records of one reward kind "
                f"({usable} so far): no change",
                {"expected_gain": 0.0, "confidence": 0.0, "records": float(usable)},
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # length scales at a bound: that input does not matter
            self.model.fit(loop.history)
            params = loop.parameters
            x_now = loop.space.to_unit({n: params[n] for n in loop.space.names})
            now_mean, now_std = self.model.predict(x_now[None])
            x, mean, std = self.model.propose(kappa=self.kappa)
        gain = float(mean - now_mean[0])
        explanation = (
            f"offline GP surrogate of {loop.reward_description} on {self.model.n_points} recorded chunks "
            f"(rewards centred on inputs alike; kernel {self.model.gp.kernel_}): predicted gain {gain:+.3f} "
            f"over the current parameters (+- {std:.3f} at the proposal; lower confidence bound, kappa {self.kappa:g})"
        )
        return Proposal(
            loop.space.from_unit(x),
            explanation,
            {"expected_gain": gain, "predicted_std": std, "confidence": float(1.0 / (1.0 + std / max(1e-9, abs(gain)))),
             "records": float(self.model.n_points)},
        )  # fmt: skip

    def observe(self, loop: "FeedbackLoopSystem", record: "FeedbackRecord") -> None:
        """The surrogate is refitted from the history at each proposal."""

    def state_dict(self) -> dict[str, Any]:
        """The seed of its fits and draws (the rest is refitted from the history)."""
        return {"seed": self.model.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.seed = int(state["seed"])
