"""Several objectives at once: normalized objectives, scalarizations, Pareto tools and the default reward.

An :class:`Objective` names a metric of :data:`feedback_env.metrics.METRICS`, a direction and a scale,
and maps a metric value to a dimensionless ``u`` where larger is always better. Scalarizations turn a
vector ``u`` of shape ``(m,)`` into one number (larger is better); :func:`pareto_front` and
:func:`hypervolume_2d` compare settings without choosing weights. :class:`QualityReward` is the reward
of the environments and the feedback loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from feedback_env.audio import is_silent
from feedback_env.errors import MetricError
from feedback_env.metrics import METRICS, MetricSpec

#: Augmentation weight of the augmented Tchebycheff scalarization (keeps it strictly monotone).
CHEBYSHEV_RHO = 1e-3


@dataclass(frozen=True)
class Objective:
    """One objective: a registry metric, normalized so that larger is better.

    ``u = sign * value / scale`` with ``sign = +1`` for ``"max"`` and ``-1`` for ``"min"``; before that,
    a non-finite value becomes the metric's worst bound and values are clipped to its ``valid_range``.

    :param metric: a name in :data:`~feedback_env.metrics.METRICS`.
    :param direction: ``"max"`` or ``"min"`` (normally the metric's own ``higher_is_better``).
    :param scale: a meaningful change, in the metric's unit (e.g. 10 dB): one unit of ``u``.
    :param weight: non-negative weight in the scalarization.
    :param target: optional value in the metric's unit that counts as good enough: the ideal point of
        the Chebyshev scalarization and the bound of an epsilon constraint.
    """

    metric: str
    direction: str
    scale: float
    weight: float = 1.0
    target: float | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise MetricError(f"objective: unknown metric {self.metric!r}; known: {sorted(METRICS)}")
        if self.direction not in ("max", "min"):
            raise ValueError(f"objective {self.metric}: direction must be 'max' or 'min', got {self.direction!r}")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"objective {self.metric}: scale must be a positive number, got {self.scale!r}")
        if not (np.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"objective {self.metric}: weight must be a non-negative number, got {self.weight!r}")
        if self.target is not None and not np.isfinite(self.target):
            raise ValueError(f"objective {self.metric}: target must be finite or None, got {self.target!r}")

    @property
    def spec(self) -> MetricSpec:
        return METRICS[self.metric]

    @property
    def sign(self) -> float:
        """+1 for ``"max"``, -1 for ``"min"``."""
        return 1.0 if self.direction == "max" else -1.0

    @property
    def worst(self) -> float:
        """The worst value of the metric's ``valid_range`` in this direction (metric unit)."""
        lo, hi = self.spec.valid_range
        return lo if self.direction == "max" else hi

    @property
    def best(self) -> float:
        """The best value of the metric's ``valid_range`` in this direction (metric unit)."""
        lo, hi = self.spec.valid_range
        return hi if self.direction == "max" else lo

    def sanitize(self, value: float) -> float:
        """Non-finite (or non-numeric) -> :attr:`worst`; otherwise clipped to ``valid_range``."""
        try:
            v = float(value)
        except (TypeError, ValueError):
            return self.worst
        if not np.isfinite(v):
            return self.worst
        lo, hi = self.spec.valid_range
        return min(max(v, lo), hi)

    def normalize(self, value: float) -> float:
        """``u = sign * sanitize(value) / scale`` (dimensionless, larger is better)."""
        return self.sign * self.sanitize(value) / self.scale


# --------------------------------------------------------------------------- scalarizations
def _vec(x: Sequence[float] | np.ndarray, name: str, m: int | None = None) -> np.ndarray:
    """``x`` as float64 ``(m,)``; NaN is an error (``eps`` may hold -inf: no constraint), so are negative weights."""
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if m is not None and a.size != m:
        raise ValueError(f"{name}: expected {m} values, got {a.size}")
    if np.isnan(a).any() or (name != "eps" and not np.isfinite(a).all()):
        raise ValueError(f"{name}: values must be {'numbers or -inf' if name == 'eps' else 'finite'}, got {a.tolist()}")
    if name == "weights" and (a < 0).any():
        raise ValueError(f"weights must be >= 0, got {a.tolist()}")
    return a


def weighted_sum(u: Sequence[float] | np.ndarray, weights: Sequence[float] | np.ndarray) -> float:
    """``sum_i w_i u_i``. :param u: normalized objective values ``(m,)``. :param weights: ``(m,)``, >= 0."""
    uu = _vec(u, "u")
    return float(np.dot(_vec(weights, "weights", uu.size), uu))


def chebyshev(
    u: Sequence[float] | np.ndarray,
    weights: Sequence[float] | np.ndarray,
    ideal: Sequence[float] | np.ndarray,
    rho: float = CHEBYSHEV_RHO,
) -> float:
    """Augmented Tchebycheff, negated so that larger is better.

    ``-max_i w_i (ideal_i - u_i) - rho * sum_i w_i (ideal_i - u_i)``: 0 at the ideal point, negative
    away from it. Strictly increasing in every ``u_i`` with ``w_i > 0`` (thanks to ``rho > 0``), and
    every Pareto-optimal point maximizes it for some weights, unlike a weighted sum on a non-convex front.

    :param u: normalized values ``(m,)``. :param weights: ``(m,)``, >= 0.
    :param ideal: aspiration point in ``u`` units ``(m,)``. :param rho: augmentation weight, small.
    """
    uu = _vec(u, "u")
    w, z = _vec(weights, "weights", uu.size), _vec(ideal, "ideal", uu.size)
    gap = w * (z - uu)
    return float(-np.max(gap) - rho * np.sum(gap)) if uu.size else 0.0


def epsilon_constraint(
    u: Sequence[float] | np.ndarray,
    primary: int,
    eps: Sequence[float] | np.ndarray,
    lower: float = -10.0,
) -> float:
    """The primary objective subject to ``u_j >= eps_j`` for every other ``j``.

    Feasible: ``u[primary]``. Infeasible: ``lower - sum_j max(0, eps_j - u_j)``: below every feasible
    value whose primary is at least ``lower`` (pass a lower bound of ``u[primary]``), and the smaller the
    total violation the larger, so the penalty still points toward feasibility.

    :param u: normalized values ``(m,)``. :param primary: index of the objective to maximize.
    :param eps: bounds in ``u`` units ``(m,)``; ``-inf`` for no constraint; ``eps[primary]`` is ignored.
    :param lower: a lower bound of ``u[primary]`` over feasible points.
    """
    uu = _vec(u, "u")
    e = _vec(eps, "eps", uu.size)
    if not 0 <= int(primary) < uu.size:
        raise ValueError(f"primary: index {primary} out of range for {uu.size} objectives")
    others = np.arange(uu.size) != int(primary)
    with np.errstate(invalid="ignore"):
        shortfall = np.where(others & np.isfinite(e), e - uu, 0.0)
    violation = float(np.sum(np.maximum(shortfall, 0.0)))
    return float(uu[int(primary)]) if violation <= 0.0 else float(lower) - violation


SCALARIZATIONS = ("weighted_sum", "chebyshev", "epsilon_constraint")


# --------------------------------------------------------------------------- Pareto tools
def _signs(maximize: bool | Sequence[bool], m: int) -> np.ndarray:
    if isinstance(maximize, (bool, np.bool_)):
        return np.full(m, 1.0 if maximize else -1.0)
    flags = list(maximize)
    if len(flags) != m:
        raise ValueError(f"maximize: expected one flag per objective ({m}), got {len(flags)}")
    return np.array([1.0 if f else -1.0 for f in flags])


def _points(points: np.ndarray, m: int | None = None) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or (m is not None and p.shape[1] != m):
        want = f"(n, {m})" if m is not None else "(n, m)"
        raise ValueError(f"points: expected shape {want}, got {p.shape}")
    if np.isnan(p).any():
        raise ValueError(f"points: {int(np.isnan(p).any(axis=1).sum())} row(s) contain NaN")
    return p


def pareto_front(points: np.ndarray, maximize: bool | Sequence[bool] = True) -> np.ndarray:
    """Indices (ascending) of the non-dominated rows of ``points`` ``(n, m)``.

    Row ``a`` dominates ``b`` when it is at least as good in every column and strictly better in one.
    Identical non-dominated rows are kept once (the first). Vectorized, ``O(n^2 m)`` time in blocks
    of bounded memory: fine up to a few thousand points.

    :param maximize: one flag for all columns, or one per column (``False`` = minimize).
    :raises ValueError: wrong shape or NaN (``inf`` is allowed).
    """
    p = _points(points)
    n, m = p.shape
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    q = p * _signs(maximize, m)  # now every column is maximized
    dominated = np.zeros(n, dtype=bool)
    block = max(1, int(4_000_000 // max(1, n * m)))
    for start in range(0, n, block):
        cand = q[start : start + block]  # (b, m): is any row of q dominating these?
        ge = (q[:, None, :] >= cand[None, :, :]).all(axis=2)
        gt = (q[:, None, :] > cand[None, :, :]).any(axis=2)
        dominated[start : start + block] = (ge & gt).any(axis=0)
    front = np.flatnonzero(~dominated)
    _, first = np.unique(q[front], axis=0, return_index=True)
    return np.sort(front[first])


def hypervolume_2d(
    points: np.ndarray, reference: Sequence[float] | np.ndarray, maximize: bool | Sequence[bool] = True
) -> float:
    """Exact area dominated by ``points`` ``(n, 2)`` and bounded by ``reference`` ``(2,)`` (sort and sweep).

    With ``maximize=True`` the reference is the worst corner (below and left of the points); points
    not strictly better than it in both coordinates add nothing. ``O(n log n)``.

    :raises ValueError: wrong shapes or non-finite values.
    """
    p = _points(points, 2)
    r = _vec(reference, "reference", 2)
    if not (np.isfinite(p).all() and np.isfinite(r).all()):
        raise ValueError("hypervolume_2d: points and reference must be finite")
    s = -_signs(maximize, 2)  # to minimization
    p, r = p * s, r * s
    p = p[(p[:, 0] < r[0]) & (p[:, 1] < r[1])]
    if p.size == 0:
        return 0.0
    p = p[np.lexsort((p[:, 1], p[:, 0]))]  # by x, then y
    area, y_best = 0.0, r[1]
    for x, y in p:
        if y < y_best:
            area += (r[0] - x) * (y_best - y)
            y_best = y
    return float(area)


# --------------------------------------------------------------------------- the reward
class QualityReward:
    """The reward: how much a processed chunk improves on the unprocessed one, over several objectives.

    For objectives ``i = 1..m`` (metric ``m_i``, direction sign ``s_i``, scale ``c_i``, weight ``w_i``):

    * ``u_i(x) = s_i * clip(m_i(x), valid_range_i) / c_i``, dimensionless, larger is better; a NaN or
      infinite metric value is replaced by the metric's worst bound first.
    * ``R = clip(S(u(processed)) - S(u(unprocessed)), -clip, +clip)``, or ``clip(S(u(processed)))``
      when ``unprocessed`` is ``None``; ``S`` is the scalarization. With ``"weighted_sum"`` (default)
      ``R = sum_i w_i (u_i(processed) - u_i(unprocessed))``: the weighted normalized improvement. Equal
      metrics give 0; a processed chunk better in every objective gives ``R > 0`` (every ``S`` here is
      strictly increasing in each weighted objective).
    * ``"chebyshev"``: ``S`` is :func:`chebyshev` with the ideal point at each objective's ``target``
      (else the best end of its valid range), or ``ideal`` given here in metric units.
    * ``"epsilon_constraint"``: ``S`` is :func:`epsilon_constraint` on ``primary`` (name or index,
      default the first objective) with bounds ``eps`` in metric units (default: each other
      objective's ``target``; none = unconstrained) and ``lower`` = the primary's normalized worst bound
      unless given. Infeasible points then score ``lower - violation``; when ``lower`` is at or below
      ``-clip`` (SI-SDR: -100 dB / 10 = -10) they all clip to ``-clip`` and a change of feasibility
      saturates the reward: pass a tighter ``lower`` or a wider ``clip`` to keep them apart.

    Default (:meth:`default`), intrusive: ``R = (dSI-SDR / 10 dB) + 0.2 (-dLSD / 10 dB)``; with
    ``perceptual=True`` plus ``0.5 dPESQ / 1 MOS + 0.5 dSTOI / 0.1``. Non-intrusive:
    ``R = dWADA-SNR / 10 dB + (-d clipping_ratio / 0.01)``. ``R`` is clipped to [-10, 10].

    :param objectives: the objectives (at least one).
    :param scalarization: ``"weighted_sum"``, ``"chebyshev"`` or ``"epsilon_constraint"``.
    :param ideal: chebyshev: ``{metric: value}`` in metric units, overriding targets.
    :param primary: epsilon_constraint: the objective maximized (metric name or index).
    :param eps: epsilon_constraint: ``{metric: bound}`` in metric units, overriding targets.
    :param rho: chebyshev augmentation weight.
    :param lower: epsilon_constraint: a lower bound of the primary's ``u`` (default: its worst bound).
    :param clip: the reward is clipped to ``[-clip, clip]``.
    """

    def __init__(
        self,
        objectives: Sequence[Objective],
        scalarization: str = "weighted_sum",
        *,
        ideal: Mapping[str, float] | None = None,
        primary: str | int | None = None,
        eps: Mapping[str, float] | None = None,
        rho: float = CHEBYSHEV_RHO,
        lower: float | None = None,
        clip: float = 10.0,
    ) -> None:
        self.objectives: tuple[Objective, ...] = tuple(objectives)
        if not self.objectives:
            raise ValueError("QualityReward needs at least one objective")
        bad = [o for o in self.objectives if not isinstance(o, Objective)]
        if bad:
            raise TypeError(f"objectives must be Objective instances, got {bad!r}")
        if scalarization not in SCALARIZATIONS:
            raise ValueError(f"unknown scalarization {scalarization!r}; known: {SCALARIZATIONS}")
        if not (np.isfinite(clip) and clip > 0):
            raise ValueError(f"clip must be a positive number, got {clip!r}")
        if not (np.isfinite(rho) and rho >= 0):
            raise ValueError(f"rho must be a non-negative number, got {rho!r}")
        if lower is not None and not np.isfinite(lower):
            raise ValueError(f"lower must be a finite number or None, got {lower!r}")
        for label, given in (("ideal", ideal), ("eps", eps)):
            bad = {k: v for k, v in (given or {}).items() if not np.isfinite(v)}
            if bad:
                raise ValueError(f"{label}: values must be finite (in metric units), got {bad}")
        self.scalarization = scalarization
        self.clip = float(clip)
        self.rho = float(rho)
        self.weights = np.array([o.weight for o in self.objectives])
        names = [o.metric for o in self.objectives]
        for label, given in (("ideal", ideal), ("eps", eps)):
            unknown = sorted(set(given or {}) - set(names))
            if unknown:
                raise MetricError(f"{label}: {unknown} are not objectives here; objectives: {names}")
        ideal = dict(ideal or {})
        self.ideal = np.array(
            [o.normalize(ideal.get(o.metric, o.target if o.target is not None else o.best)) for o in self.objectives]
        )
        if primary is None:
            self.primary = 0
        elif isinstance(primary, str):
            if primary not in names:
                raise MetricError(f"primary: {primary!r} is not an objective here; objectives: {names}")
            self.primary = names.index(primary)
        else:
            if not 0 <= int(primary) < len(names):
                raise ValueError(f"primary: index {primary} out of range for {len(names)} objectives")
            self.primary = int(primary)
        eps = dict(eps or {})
        bounds = []
        for o in self.objectives:
            b = eps.get(o.metric, o.target)
            bounds.append(-np.inf if b is None else o.normalize(b))
        self.eps = np.array(bounds)
        p = self.objectives[self.primary]
        self.lower = p.normalize(p.worst) if lower is None else float(lower)

    # ------------------------------------------------------------------ construction
    @classmethod
    def default(cls, intrusive: bool = True, perceptual: bool = False) -> "QualityReward":
        """The default reward; cheap metrics only unless ``perceptual``.

        Intrusive: SI-SDR (max, 10 dB, weight 1) + LSD (min, 10 dB, weight 0.2). SI-SDR dominates and is
        what penalizes over-suppression and phase damage (a 400 Hz high-pass with heavy noise reduction
        loses ~6 dB); LSD adds a signal where SI-SDR is blind (chunks whose reference is silent score
        -100 dB processed or not) but on its own rewards aggressive suppression, hence its small weight.
        ``perceptual=True`` adds PESQ (max, 1 MOS, 0.5) and STOI (max, 0.1, 0.5): ~50x slower per step.
        Non-intrusive: WADA-SNR (max, 10 dB, 1.0) + clipping ratio (min, 0.01, 1.0): 1 % clipped
        samples cost as much as 10 dB of estimated SNR. A known weakness: WADA-SNR rises when pauses are
        suppressed, whatever that does to the speech (see :func:`~feedback_env.metrics.wada_snr`), so a
        search on this reward alone (clips without a clean reference) drifts towards over-suppression.
        """
        if intrusive:
            objectives = [Objective("si_sdr", "max", 10.0, 1.0), Objective("lsd", "min", 10.0, 0.2)]
            if perceptual:
                objectives += [Objective("pesq", "max", 1.0, 0.5), Objective("stoi", "max", 0.1, 0.5)]
            return cls(objectives)
        if perceptual:
            raise ValueError("perceptual metrics (PESQ, STOI) are intrusive: use intrusive=True")
        return cls([Objective("wada_snr", "max", 10.0, 1.0), Objective("clipping_ratio", "min", 0.01, 1.0)])

    # ------------------------------------------------------------------ properties
    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metrics that must be computed for this reward (unique, in objective order)."""
        return tuple(dict.fromkeys(o.metric for o in self.objectives))

    @property
    def intrusive(self) -> bool:
        """True when some objective needs a clean reference."""
        return any(o.spec.intrusive for o in self.objectives)

    def can_score(self, reference: np.ndarray | None) -> bool:
        """False when this reward is intrusive and the chunk's clean ``reference`` ``(n,)`` is missing or silent.

        A silent reference (a speech pause) leaves every intrusive metric undefined, SI-SDR -100 processed
        or not, and what is left of the reward (LSD) rewards any suppression: a loop that learned from such
        chunks drifted to the strongest suppression during a pause. The loop and its objective record these
        chunks without scoring them.
        """
        return not self.intrusive or (reference is not None and not is_silent(reference))

    # ------------------------------------------------------------------ evaluation
    def normalized(self, metrics: Mapping[str, float]) -> np.ndarray:
        """``u`` ``(m,)`` of one metrics dict. :raises MetricError: a needed metric is missing."""
        missing = [n for n in self.metric_names if n not in metrics]
        if missing:
            raise MetricError(f"reward needs metric(s) {missing}; got {sorted(metrics)}")
        return np.array([o.normalize(metrics[o.metric]) for o in self.objectives])

    def normalized_improvements(
        self, processed: Mapping[str, float], unprocessed: Mapping[str, float] | None = None
    ) -> np.ndarray:
        """``u(processed) - u(unprocessed)`` ``(m,)`` (or ``u(processed)``): positive = better."""
        u = self.normalized(processed)
        return u if unprocessed is None else u - self.normalized(unprocessed)

    def scalarize(self, u: Sequence[float] | np.ndarray) -> float:
        """``S(u)`` with this reward's scalarization and settings."""
        if self.scalarization == "weighted_sum":
            return weighted_sum(u, self.weights)
        if self.scalarization == "chebyshev":
            return chebyshev(u, self.weights, self.ideal, self.rho)
        return epsilon_constraint(u, self.primary, self.eps, self.lower)

    def __call__(self, processed: Mapping[str, float], unprocessed: Mapping[str, float] | None = None) -> float:
        """The reward ``R`` (see the class docstring): finite, in ``[-clip, clip]``."""
        value = self.scalarize(self.normalized(processed))
        if unprocessed is not None:
            value -= self.scalarize(self.normalized(unprocessed))
        if not np.isfinite(value):  # cannot happen with finite bounds; keep the promise anyway
            return -self.clip
        return float(min(max(value, -self.clip), self.clip))

    def explain(self, processed: Mapping[str, float], unprocessed: Mapping[str, float] | None = None) -> dict:
        """Per-objective values and normalized improvements and the reward, for logs and reports."""
        d = self.normalized_improvements(processed, unprocessed)
        return {
            "reward": self(processed, unprocessed),
            "scalarization": self.scalarization,
            "objectives": [
                {
                    "metric": o.metric,
                    "direction": o.direction,
                    "value": float(processed[o.metric]),
                    "baseline": None if unprocessed is None else float(unprocessed[o.metric]),
                    "normalized_improvement": float(d[i]),
                    "weight": o.weight,
                }
                for i, o in enumerate(self.objectives)
            ],
        }

    def __repr__(self) -> str:
        terms = ", ".join(f"{o.metric}({o.direction}, /{o.scale:g}, w={o.weight:g})" for o in self.objectives)
        return f"QualityReward({self.scalarization}: {terms}; clip={self.clip:g})"
