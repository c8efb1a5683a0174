"""Behavioural tests of objectives, scalarizations, Pareto tools and the default reward."""

from __future__ import annotations

import numpy as np
import pytest

from feedback_env.errors import MetricError
from feedback_env.metrics import compute_metrics
from feedback_env.objectives import (
    Objective,
    QualityReward,
    chebyshev,
    epsilon_constraint,
    hypervolume_2d,
    pareto_front,
    weighted_sum,
)


# --------------------------------------------------------------------------- Objective
def test_objective_normalizes_so_larger_is_better_and_sanitizes():
    up = Objective("si_sdr", "max", 10.0)
    down = Objective("lsd", "min", 10.0)
    assert up.normalize(12.0) == pytest.approx(1.2)
    assert down.normalize(5.0) == pytest.approx(-0.5)
    assert down.normalize(4.0) > down.normalize(5.0)
    assert up.normalize(float("nan")) == up.normalize(-100.0) == -10.0  # NaN -> worst bound
    assert up.normalize(float("inf")) == -10.0  # any non-finite value is the worst, never the best
    assert down.normalize(float("nan")) == -10.0  # lsd worst = 100 dB
    assert up.normalize(1e9) == 10.0  # clipped to the valid range


def test_objective_validation():
    with pytest.raises(MetricError, match="unknown metric 'sdr'.*si_sdr"):
        Objective("sdr", "max", 10.0)
    with pytest.raises(ValueError, match="direction"):
        Objective("si_sdr", "up", 10.0)
    with pytest.raises(ValueError, match="scale"):
        Objective("si_sdr", "max", 0.0)
    with pytest.raises(ValueError, match="weight"):
        Objective("si_sdr", "max", 10.0, weight=-1.0)
    with pytest.raises(ValueError, match="target"):
        Objective("si_sdr", "max", 10.0, target=float("nan"))


# --------------------------------------------------------------------------- Pareto front
def test_pareto_front_on_a_known_set():
    pts = np.array([[1, 5], [2, 4], [3, 3], [2, 2], [1, 1], [3, 3], [0, 5]], dtype=float)
    assert pareto_front(pts).tolist() == [0, 1, 2]  # the duplicate [3, 3] (5) is kept once; [0, 5] dominated
    assert pareto_front(pts, maximize=False).tolist() == [4, 6]
    assert pareto_front(pts, maximize=[True, False]).tolist() == [2, 3, 4]  # max x, min y
    assert pareto_front(np.zeros((0, 3))).tolist() == []
    assert pareto_front(np.array([[1.0, 2.0, 3.0]])).tolist() == [0]


def test_pareto_front_excludes_exactly_the_dominated_points():
    rng = np.random.default_rng(0)
    pts = rng.integers(0, 6, size=(120, 3)).astype(float)  # many ties and duplicates
    front = set(pareto_front(pts).tolist())

    def dominates(a, b):
        return bool(np.all(a >= b) and np.any(a > b))

    for i, p in enumerate(pts):
        dominated = any(dominates(q, p) for q in pts)
        if i in front:
            assert not dominated
        elif not dominated:  # only a duplicate of a kept point may be left out
            assert any(np.array_equal(p, pts[j]) and j < i for j in front)
    assert len({tuple(pts[i]) for i in front}) == len(front)


def test_pareto_front_rejects_nan_and_bad_shapes():
    with pytest.raises(ValueError, match="NaN"):
        pareto_front(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="shape"):
        pareto_front(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="flag"):
        pareto_front(np.ones((2, 3)), maximize=[True, False])


# --------------------------------------------------------------------------- hypervolume
def test_hypervolume_2d_known_rectangles():
    assert hypervolume_2d(np.array([[3.0, 2.0]]), [0.0, 0.0]) == pytest.approx(6.0)
    assert hypervolume_2d(np.array([[3.0, 1.0], [1.0, 3.0]]), [0.0, 0.0]) == pytest.approx(5.0)
    stairs = np.array([[1.0, 4.0], [2.0, 3.0], [3.0, 2.0], [4.0, 1.0], [2.0, 2.0]])  # last one dominated
    assert hypervolume_2d(stairs, [0.0, 0.0]) == pytest.approx(4 + 3 + 2 + 1)
    assert hypervolume_2d(np.array([[1.0, 1.0]]), [3.0, 4.0], maximize=False) == pytest.approx(6.0)
    assert hypervolume_2d(np.array([[2.0, 1.0]]), [0.0, 4.0], maximize=[True, False]) == pytest.approx(6.0)
    assert hypervolume_2d(np.array([[-1.0, 5.0], [2.0, 0.0]]), [0.0, 0.0]) == 0.0  # not better than ref
    assert hypervolume_2d(np.zeros((0, 2)), [0.0, 0.0]) == 0.0


def _hv_monte_carlo(points: np.ndarray, ref: np.ndarray, n: int, rng) -> tuple[float, float]:
    hi = points.max(axis=0)
    box = np.prod(hi - ref)
    samples = ref + rng.random((n, 2)) * (hi - ref)
    covered = np.zeros(n, dtype=bool)
    for p in points:
        covered |= np.all(samples <= p, axis=1)
    frac = covered.mean()
    return box * frac, box * np.sqrt(frac * (1 - frac) / n)


def _hv_grid(points: np.ndarray, ref: np.ndarray, k: int = 400) -> float:
    hi = points.max(axis=0)
    xs = ref[0] + (np.arange(k) + 0.5) * (hi[0] - ref[0]) / k
    ys = ref[1] + (np.arange(k) + 0.5) * (hi[1] - ref[1]) / k
    gx, gy = np.meshgrid(xs, ys)
    covered = np.zeros(gx.shape, dtype=bool)
    for p in points:
        covered |= (gx <= p[0]) & (gy <= p[1])
    return covered.mean() * np.prod(hi - ref)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hypervolume_2d_matches_monte_carlo_and_grid(seed):
    rng = np.random.default_rng(seed)
    pts = rng.random((12, 2)) * [4.0, 2.0] + [1.0, 0.5]
    ref = np.array([0.5, 0.0])
    exact = hypervolume_2d(pts, ref)
    estimate, stderr = _hv_monte_carlo(pts, ref, 200_000, rng)
    assert abs(exact - estimate) < 4 * stderr + 1e-9
    assert exact == pytest.approx(_hv_grid(pts, ref), rel=0.02)
    assert exact == pytest.approx(hypervolume_2d(pts[pareto_front(pts)], ref))  # only the front counts


# --------------------------------------------------------------------------- scalarizations
@pytest.mark.parametrize("seed", range(5))
def test_scalarizations_are_monotone_in_each_objective(seed):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=4)
    w = rng.uniform(0.1, 2.0, size=4)
    ideal = u + rng.uniform(0.0, 2.0, size=4)
    eps = u - rng.uniform(0.1, 1.0, size=4)  # feasible
    for i in range(4):
        better = u.copy()
        better[i] += 0.3
        assert weighted_sum(better, w) > weighted_sum(u, w)
        assert chebyshev(better, w, ideal) > chebyshev(u, w, ideal)  # strictly, thanks to rho
        assert epsilon_constraint(better, 0, eps) >= epsilon_constraint(u, 0, eps)
    better = u.copy()
    better[0] += 0.3
    assert epsilon_constraint(better, 0, eps) > epsilon_constraint(u, 0, eps)


def test_chebyshev_is_zero_at_the_ideal_and_negative_elsewhere():
    w, z = np.array([1.0, 2.0]), np.array([1.0, 1.0])
    assert chebyshev(z, w, z) == 0.0
    assert chebyshev([0.5, 1.0], w, z) == pytest.approx(-0.5 - 1e-3 * 0.5)
    assert chebyshev([1.0, 0.5], w, z) == pytest.approx(-1.0 - 1e-3 * 1.0)


def test_epsilon_constraint_penalizes_violations():
    eps = np.array([-np.inf, 0.5, 0.2])
    feasible = epsilon_constraint([-3.0, 0.6, 0.3], 0, eps, lower=-5.0)
    assert feasible == -3.0
    small = epsilon_constraint([2.0, 0.4, 0.3], 0, eps, lower=-5.0)
    large = epsilon_constraint([2.0, 0.0, 0.0], 0, eps, lower=-5.0)
    assert small == pytest.approx(-5.0 - 0.1)
    assert large == pytest.approx(-5.0 - 0.7)
    assert large < small < feasible  # below every feasible value, and less violation ranks higher
    with pytest.raises(ValueError, match="primary"):
        epsilon_constraint([1.0, 2.0], 2, [0.0, 0.0])


# --------------------------------------------------------------------------- QualityReward
SCALARIZATION_KWARGS = {
    "weighted_sum": {},
    "chebyshev": {},
    "epsilon_constraint": {"primary": "si_sdr", "eps": {"lsd": 20.0}},
}


@pytest.mark.parametrize("name", list(SCALARIZATION_KWARGS))
def test_quality_reward_zero_when_equal_positive_when_better(name):
    reward = QualityReward(QualityReward.default().objectives, name, **SCALARIZATION_KWARGS[name])
    base = {"si_sdr": 5.0, "lsd": 12.0}
    assert reward(base, base) == 0.0
    assert reward({"si_sdr": 9.0, "lsd": 10.0}, base) > 0
    assert reward({"si_sdr": 1.0, "lsd": 14.0}, base) < 0
    assert reward({"si_sdr": 9.0, "lsd": 12.0}, base) > 0  # better in one, equal in the other


def test_quality_reward_default_formula_by_hand():
    reward = QualityReward.default()
    assert reward.metric_names == ("si_sdr", "lsd")
    # (12 - 7) / 10 + 0.2 * (10 - 8) / 10
    assert reward({"si_sdr": 12.0, "lsd": 8.0}, {"si_sdr": 7.0, "lsd": 10.0}) == pytest.approx(0.54)
    assert reward.normalized_improvements({"si_sdr": 12.0, "lsd": 8.0}, {"si_sdr": 7.0, "lsd": 10.0}) == (
        pytest.approx([0.5, 0.2])
    )
    assert reward({"si_sdr": 12.0, "lsd": 8.0}) == pytest.approx(1.2 - 0.2 * 0.8)  # absolute values


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), None, "x"])
@pytest.mark.parametrize("name", list(SCALARIZATION_KWARGS))
def test_quality_reward_always_finite_and_clipped(bad, name):
    reward = QualityReward(QualityReward.default().objectives, name, **SCALARIZATION_KWARGS[name])
    good = {"si_sdr": 8.0, "lsd": 6.0}
    for processed, unprocessed in (
        ({"si_sdr": bad, "lsd": 6.0}, good),
        (good, {"si_sdr": bad, "lsd": bad}),
        ({"si_sdr": bad, "lsd": bad}, None),
        ({"si_sdr": 1e300, "lsd": -1e300}, {"si_sdr": -1e300, "lsd": 1e300}),
    ):
        value = reward(processed, unprocessed)
        assert np.isfinite(value) and -reward.clip <= value <= reward.clip
    assert reward({"si_sdr": bad, "lsd": 6.0}, good) < 0  # a broken metric never looks like a gain


def test_quality_reward_defaults_and_options():
    assert QualityReward.default(intrusive=False).metric_names == ("wada_snr", "clipping_ratio")
    assert not QualityReward.default(intrusive=False).intrusive
    assert QualityReward.default(perceptual=True).metric_names == ("si_sdr", "lsd", "pesq", "stoi")
    with pytest.raises(ValueError, match="intrusive"):
        QualityReward.default(intrusive=False, perceptual=True)
    non_intrusive = QualityReward.default(intrusive=False)
    # 1 % more clipped samples cost as much as 10 dB of estimated SNR
    assert non_intrusive({"wada_snr": 20.0, "clipping_ratio": 0.01}, {"wada_snr": 10.0, "clipping_ratio": 0.0}) == (
        pytest.approx(0.0)
    )
    with pytest.raises(MetricError, match="lsd"):
        QualityReward.default()({"si_sdr": 1.0}, None)
    with pytest.raises(ValueError, match="scalarization"):
        QualityReward(QualityReward.default().objectives, "pareto")
    with pytest.raises(MetricError, match="pesq"):
        QualityReward(QualityReward.default().objectives, "epsilon_constraint", primary="pesq")
    with pytest.raises(ValueError, match="at least one"):
        QualityReward([])


def test_quality_reward_chebyshev_uses_targets_and_epsilon_uses_bounds():
    objectives = [Objective("si_sdr", "max", 10.0, target=20.0), Objective("stoi", "max", 0.1, target=0.9)]
    cheb = QualityReward(objectives, "chebyshev")
    assert cheb({"si_sdr": 20.0, "stoi": 0.9}) == 0.0  # at the targets
    assert cheb({"si_sdr": 10.0, "stoi": 0.9}) < 0.0
    eps = QualityReward(objectives, "epsilon_constraint")  # maximize si_sdr with stoi >= its target 0.9
    assert eps({"si_sdr": 10.0, "stoi": 0.95}) == pytest.approx(1.0)
    assert eps({"si_sdr": 30.0, "stoi": 0.85}) < eps({"si_sdr": -50.0, "stoi": 0.95})
    # the penalty starts below si_sdr's worst (-100 dB -> -10): only a wider clip keeps infeasible points apart
    assert eps({"si_sdr": 30.0, "stoi": 0.89}) == eps({"si_sdr": 30.0, "stoi": 0.5}) == -eps.clip
    wide = QualityReward(objectives, "epsilon_constraint", clip=100.0)
    assert wide({"si_sdr": 30.0, "stoi": 0.89}) == pytest.approx(-10.1)
    assert wide({"si_sdr": 30.0, "stoi": 0.89}) > wide({"si_sdr": 30.0, "stoi": 0.5})
    tight = QualityReward(objectives, "epsilon_constraint", lower=-3.0)  # if si_sdr never drops below -30 dB
    assert tight({"si_sdr": 30.0, "stoi": 0.89}) == pytest.approx(-3.1)


def test_quality_reward_on_real_metrics_prefers_less_noise():
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    clean = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    noise = 0.1 * rng.standard_normal(t.size)
    reward = QualityReward.default()
    names = reward.metric_names
    noisy = compute_metrics(clean + noise, clean, 16000, names=names)
    better = compute_metrics(clean + 0.3 * noise, clean, 16000, names=names)
    assert reward(better, noisy) > 0 > reward(noisy, better)
    assert reward(noisy, noisy) == 0.0
    explained = reward.explain(better, noisy)
    assert explained["reward"] == reward(better, noisy)
    assert [o["metric"] for o in explained["objectives"]] == ["si_sdr", "lsd"]


def test_nan_settings_are_errors_naming_them():
    """A NaN rho made every reward -10, a NaN eps disabled its constraint, a NaN ideal became the worst value."""
    objectives = [Objective("si_sdr", "max", 10.0, 1.0), Objective("lsd", "min", 10.0, 0.2)]
    for kwargs, name in (({"rho": float("nan")}, "rho"), ({"eps": {"lsd": float("nan")}}, "eps"),
                         ({"ideal": {"si_sdr": float("nan")}}, "ideal"), ({"lower": float("nan")}, "lower")):  # fmt: skip
        with pytest.raises(ValueError, match=name):
            QualityReward(objectives, "chebyshev", **kwargs)
    with pytest.raises(ValueError, match="u: values must be finite"):
        weighted_sum([1.0, float("nan")], [1.0, 1.0])
    with pytest.raises(ValueError, match="weights must be >= 0"):
        chebyshev([1.0, 0.0], [1.0, -1.0], [1.0, 1.0])
    assert epsilon_constraint([1.0, 0.5], 0, [-np.inf, 0.0]) == 1.0  # -inf: no constraint, still allowed
