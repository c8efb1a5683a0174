"""Performance analysis of a window of the history: trend, best parameters, summaries, errors, patterns.

* Trend: Mann-Kendall test (Kendall's tau of the reward against time, ``scipy.stats.kendalltau``) for
  significance, Theil-Sen slope (``scipy.stats.theilslopes``) for size. ``improving``/``degrading``
  needs ``p < alpha`` *and* a change over the window of at least ``min_change`` reward units (0.05 =
  0.5 dB of SI-SDR in the default reward), so that a long window does not call a negligible drift a trend.
  The p-value assumes independent records: positively autocorrelated rewards are called a trend more often.
* Error analysis: failed records, and the worst records (bottom decile of reward) with the input
  features on which they differ from the rest (Mann-Whitney U test).
* Success patterns: parameter ranges over-represented among the top quintile (hypergeometric test).
  Both are many tests per analysis (13 features; 4 ranges of each tuned parameter), so their p-values
  are adjusted by Benjamini-Hochberg (``scipy.stats.false_discovery_control``) before the 0.05 cut:
  a reported finding is a false discovery at most 5 % of the time, and with no effect at all an
  analysis reports anything at most 5 % of the time (measured by the null test in
  ``tests/test_feedback_loop_system.py``: patterns in 6 and shared conditions in 9 of 200 such analyses;
  uncorrected, 148 and 106). That is for independent records; autocorrelated rewards and features, as in
  a loop whose parameters walk, raise both.
* Correlations: Spearman's rho between each varying parameter and the reward and each metric. Its p-values
  assume independent records: when the parameters walk and the rewards are autocorrelated, as in a loop,
  they come out far too small.
* Pareto front: the non-dominated records over the reward's objectives (normalized improvements).

Records scored with a clean reference and without are scored by different rewards (the intrusive and the
blind one, on different scales), so everything but the counts and the per-metric summaries uses the usable
records scored like the latest one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from scipy import stats

from feedback_env.feedback_loop.history import ProcessingHistory
from feedback_env.objectives import QualityReward, pareto_front
from feedback_env.parameters import ParameterSpace

TRENDS = ("improving", "stable", "degrading")


@dataclass
class Trend:
    """Direction of the reward over the window.

    :param label: ``"improving"``, ``"stable"`` or ``"degrading"``.
    :param slope: Theil-Sen slope, reward units per record.
    :param change: ``slope * (n - 1)``: the change across the window, reward units.
    :param tau: Kendall's tau of reward against time.
    :param p_value: two-sided Mann-Kendall p-value (1.0 with fewer than 3 samples).
    :param n: samples used.
    """

    label: str
    slope: float
    change: float
    tau: float
    p_value: float
    n: int

    def __str__(self) -> str:
        return (
            f"{self.label} (Theil-Sen slope {self.slope:+.4f}/record, change {self.change:+.3f} over {self.n} "
            f"records; Mann-Kendall tau {self.tau:+.2f}, p={self.p_value:.3g})"
        )


@dataclass
class PerformanceAnalysis:
    """What :meth:`FeedbackLoopSystem.analyze_performance` returns.

    :param window: records asked for; ``n_records`` found, ``n_ok`` usable, ``n_failures`` failed.
    :param trend: the label, ``"improving"``/``"stable"``/``"degrading"`` (see :attr:`trend_test`).
    :param trend_test: the test behind the label (slope, change, tau, p-value).
    :param best_params: tuned parameters of the best setting in the window, physical units: the highest lower
        95 % bound of its mean reward (``mean - z s / sqrt(count)``, s the pooled within-setting sd, z Bonferroni
        over the settings), so that one lucky record does not beat a setting measured many times; with
        continuously changing parameters, the best record.
    :param best_reward: its mean reward; ``best_count`` its records.
    :param metric_summaries: ``{metric: {mean, std, min, p10, median, p90, max, n, undefined, improvement}}``
        over the ``n`` measured values; ``undefined`` counts the values the metric returns where it is
        undefined (:attr:`~feedback_env.metrics.MetricSpec.undefined`: SI-SDR -100 of a chunk with a silent
        reference, STOI 0 with too little speech...), left out
        (``improvement``: mean improvement over the unprocessed input, metric units, positive = better).
    :param error_analysis: ``failures`` (index, message), ``worst`` records, and ``shared_conditions``
        of the worst (features that differ from the rest, with the test's p-value).
    :param success_patterns: parameter ranges over-represented among the top records.
    :param correlations: ``{param: {"reward"|metric: rho}}``, Spearman; ``correlation_p_values`` alike
        (valid for independent records only: autocorrelation makes them far too small, see the module docstring).
    :param pareto_front: the non-dominated records over the objectives.
    """

    window: int
    n_records: int
    n_ok: int
    n_failures: int
    trend: str
    trend_test: Trend
    mean_reward: float
    best_params: dict[str, float] | None
    best_reward: float | None
    best_count: int
    metric_summaries: dict[str, dict[str, float]]
    error_analysis: dict[str, Any]
    success_patterns: list[dict[str, Any]]
    correlations: dict[str, dict[str, float]]
    correlation_p_values: dict[str, dict[str, float]]
    pareto_front: list[dict[str, Any]]
    objectives: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        """A few lines for logs."""
        lines = [
            f"{self.n_records} records ({self.n_failures} failed), mean reward {self.mean_reward:+.3f}",
            f"trend: {self.trend_test}",
        ]
        if self.best_params is not None:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in self.best_params.items())
            lines.append(f"best ({self.best_count} record(s), reward {self.best_reward:+.3f}): {shown}")
        for cond in self.error_analysis.get("shared_conditions", [])[:3]:
            lines.append(
                f"worst chunks: {cond['feature']} {cond['worst_median']:+.2f} vs {cond['others_median']:+.2f} "
                f"elsewhere (p={cond['p_value']:.2g})"
            )
        for pattern in self.success_patterns[:3]:
            lines.append(
                f"top chunks: {pattern['param']} in [{pattern['low']:.4g}, {pattern['high']:.4g}] "
                f"x{pattern['lift']:.1f} over-represented (p={pattern['p_value']:.2g})"
            )
        return "\n".join(lines)


def trend_test(values: np.ndarray, alpha: float = 0.05, min_change: float = 0.05) -> Trend:
    """Classify the trend of ``values`` (in time order, finite) as improving, stable or degrading."""
    y = np.asarray(values, dtype=np.float64)
    n = y.size
    if n < 3 or np.ptp(y) == 0.0:
        return Trend("stable", 0.0, 0.0, 0.0, 1.0, n)
    t = np.arange(n)
    tau, p = stats.kendalltau(t, y)
    slope = float(stats.theilslopes(y, t)[0])
    change = slope * (n - 1)
    label = "stable"
    if p < alpha and abs(change) >= min_change:
        label = "improving" if change > 0 else "degrading"
    return Trend(label, slope, float(change), float(tau), float(p), n)


def _summaries(history: ProcessingHistory, window: int, ok: np.ndarray) -> dict[str, dict[str, float]]:
    from feedback_env.metrics import METRICS

    out = {}
    for name in history.metric_names:
        spec = METRICS.get(name)
        values = history.metric(name, window)[ok]
        measured = spec.defined(values) if spec else np.isfinite(values)  # undefined values are no measurements
        v = values[measured]
        if v.size == 0:
            continue
        row = {
            "mean": float(v.mean()),
            "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()),
            "p10": float(np.percentile(v, 10)),
            "median": float(np.median(v)),
            "p90": float(np.percentile(v, 90)),
            "max": float(v.max()),
            "n": int(v.size),
            "undefined": int(np.isfinite(values).sum() - v.size),  # e.g. SI-SDR of a chunk with a silent reference
        }
        base = history.metric(name, window, baseline=True)[ok]
        if spec:
            paired = measured & spec.defined(base)
            if paired.any():
                delta = values[paired] - base[paired]
                row["improvement"] = float(delta.mean() if spec.higher_is_better else -delta.mean())
        out[name] = row
    return out


def _best(params: np.ndarray, rewards: np.ndarray, names: tuple[str, ...]) -> tuple[dict | None, float | None, int]:
    if rewards.size == 0:
        return None, None, 0
    keys, inverse, counts = np.unique(np.round(params, 9), axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    means = np.bincount(inverse, weights=rewards) / counts
    # simultaneous (Bonferroni) lower 95 % bounds of the settings' means, with the pooled within-setting sd;
    # with no repeated setting all counts are 1 and this is the best record
    spread = rewards - means[inverse]
    within = float(np.sqrt(spread @ spread / (rewards.size - keys.shape[0]))) if rewards.size > keys.shape[0] else 0.0
    z = float(stats.norm.ppf(1.0 - 0.05 / keys.shape[0]))
    best = int(np.argmax(means - z * within / np.sqrt(counts)))
    return dict(zip(names, map(float, keys[best]))), float(means[best]), int(counts[best])


def _error_analysis(history, window, ok, rewards, feature_names) -> dict[str, Any]:
    failures = history.errors(window)
    out: dict[str, Any] = {"failures": failures, "worst": [], "shared_conditions": []}
    good = np.flatnonzero(ok)
    if good.size < 6:
        return out
    k = max(3, int(round(0.1 * good.size)))
    order = good[np.argsort(rewards[good])]
    worst, rest = order[:k], order[k:]
    index = history.indices(window)
    out["worst"] = [{"index": int(index[i]), "reward": float(rewards[i])} for i in worst]
    feats = history.feature_matrix(window).astype(np.float64)
    tested = []
    for j, name in enumerate(feature_names):
        a, b = feats[worst, j], feats[rest, j]
        if np.ptp(np.concatenate([a, b])) == 0.0:
            continue
        p = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
        tested.append({"feature": name, "worst_median": float(np.median(a)), "others_median": float(np.median(b)), "p_value": p})
    out["shared_conditions"] = _discoveries(tested)
    return out


def _discoveries(tested: list[dict], alpha: float = 0.05) -> list[dict]:
    """The findings of ``tested`` (dicts with a ``p_value``) whose Benjamini-Hochberg adjusted p-value
    (added as ``p_adjusted``) is below ``alpha``, most significant first."""
    if not tested:
        return []
    adjusted = stats.false_discovery_control([t["p_value"] for t in tested], method="bh")
    found = [{**t, "p_adjusted": float(q)} for t, q in zip(tested, adjusted) if q < alpha]
    return sorted(found, key=lambda t: t["p_value"])


def _success_patterns(unit: np.ndarray, physical: np.ndarray, rewards: np.ndarray, names, bins: int = 4) -> list[dict]:
    n = rewards.size
    if n < 10:
        return []
    k = max(3, int(round(0.2 * n)))
    top = np.zeros(n, dtype=bool)
    top[np.argsort(rewards)[-k:]] = True
    tested = []
    for j, name in enumerate(names):
        u = unit[:, j]
        if np.ptp(u) < 1e-6:
            continue
        edges = np.linspace(u.min(), u.max(), bins + 1)
        which = np.clip(np.digitize(u, edges[1:-1]), 0, bins - 1)
        for b in range(bins):
            inside = which == b
            n_in, k_in = int(inside.sum()), int((inside & top).sum())
            if n_in == 0 or k_in == 0:
                continue
            lift = (k_in / k) / (n_in / n)
            p = float(stats.hypergeom.sf(k_in - 1, n, k, n_in))  # P(at least k_in top records in the bin)
            values = physical[inside, j]
            tested.append(
                {"param": name, "low": float(values.min()), "high": float(values.max()), "lift": float(lift),
                 "top_share": k_in / k, "all_share": n_in / n, "p_value": p}
            )
    return [t for t in _discoveries(tested) if t["lift"] > 1.0]


def _correlations(history, window, ok, rewards, physical, names) -> tuple[dict, dict]:
    columns = {"reward": rewards}
    for metric in history.metric_names:
        columns[metric] = history.metric(metric, window)[ok]
    rho: dict[str, dict[str, float]] = {}
    pvals: dict[str, dict[str, float]] = {}
    for j, name in enumerate(names):
        x = physical[:, j]
        if x.size < 3 or np.ptp(x) == 0.0:
            continue
        for target, y in columns.items():
            keep = np.isfinite(y)
            if keep.sum() < 3 or np.ptp(y[keep]) == 0.0 or np.ptp(x[keep]) == 0.0:  # constant: rho undefined
                continue
            r, p = stats.spearmanr(x[keep], y[keep])
            rho.setdefault(name, {})[target] = float(r)
            pvals.setdefault(name, {})[target] = float(p)
    return rho, pvals


def _pareto(history, window, ok, reward_fn: QualityReward, names) -> list[dict]:
    slots = history.slots(window)
    rows, points = [], []
    for i in np.flatnonzero(ok):
        rec = history.record(int(slots[i]))
        try:
            points.append(reward_fn.normalized_improvements(rec.metrics, rec.baseline or None))
        except Exception:  # a record without the objectives' metrics (e.g. given metrics only)
            continue
        rows.append(rec)
    if not rows:
        return []
    front = pareto_front(np.array(points))
    return [
        {
            "index": rows[i].index,
            "reward": rows[i].reward,
            "params": {n: rows[i].params[n] for n in names},
            "improvements": dict(zip((o.metric for o in reward_fn.objectives), map(float, points[i]))),
        }
        for i in front
    ]


def analyze(
    history: ProcessingHistory,
    window: int,
    tuned: ParameterSpace,
    rewards: Mapping[bool, QualityReward],
    alpha: float = 0.05,
    min_change: float = 0.05,
) -> PerformanceAnalysis:
    """Analyse the last ``window`` records of ``history`` (see the module docstring).

    :param tuned: the tuned parameter space (best parameters, patterns and correlations are over it).
    :param rewards: the reward functions by ``intrusive`` flag (for the Pareto front's objectives).
    """
    if int(window) != window or int(window) < 1:
        raise ValueError(f"window must be a whole number of records, at least 1, got {window}")
    window = int(window)
    reward_all = history.rewards(window)
    usable = history.ok(window) & np.isfinite(reward_all)
    intrusive = bool(history.intrusive(1)[0]) if len(history) else True
    ok = usable & (history.intrusive(window) == intrusive)  # scored by the same reward as the latest record
    names = tuned.names
    physical_all = history.param_matrix(window, names)
    r = reward_all[ok]
    physical = physical_all[ok]
    unit = np.array([tuned.to_unit(dict(zip(names, row))) for row in physical]) if r.size else np.zeros((0, len(names)))
    best, best_reward, best_count = _best(physical, r, names)
    trend = trend_test(r, alpha, min_change)
    rho, pvals = _correlations(history, window, ok, r, physical, names)
    reward_fn = rewards[intrusive]
    return PerformanceAnalysis(
        window=window,
        n_records=int(reward_all.size),
        n_ok=int(usable.sum()),
        n_failures=int((~history.ok(window)).sum()),
        trend=trend.label,
        trend_test=trend,
        mean_reward=float(r.mean()) if r.size else float("nan"),
        best_params=best,
        best_reward=best_reward,
        best_count=best_count,
        metric_summaries=_summaries(history, window, usable),
        error_analysis=_error_analysis(history, window, ok, reward_all, history.feature_names),
        success_patterns=_success_patterns(unit, physical, r, names),
        correlations=rho,
        correlation_p_values=pvals,
        pareto_front=_pareto(history, window, ok, reward_fn, names),
        objectives=tuple(o.metric for o in reward_fn.objectives),
    )
