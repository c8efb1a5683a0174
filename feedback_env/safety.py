"""Detecting that quality has degraded: a one-sided CUSUM test against a known-good baseline.

Used by :class:`~feedback_env.wrappers.SafetyWrapper` and the feedback loop's ``should_rollback``.

The quality stream ``q_t`` (e.g. the reward) is standardized with the mean and the spread measured
while the known-good parameters ran (``z_t = (mu - q_t) / sigma``, so that a *drop* is positive) and fed
to Page's CUSUM ``S_t = max(0, S_{t-1} + z_t - k)``, which alarms when ``S_t > h``. The reference ``k``
is half the smallest drop worth detecting (in sigmas). The threshold ``h`` is chosen so that on a
stationary stream of serially independent samples the average run length between false alarms is
``1 / false_alarm_rate`` steps (positively autocorrelated samples alarm more often: the rate holds for
independent ones only; the chunk rewards of the stationary streams at a fixed setting are not positively
autocorrelated, lags 1-3 +0.02 / -0.09 / -0.04: ``benchmarks/safety.py``'s ``reward_acf_lags_1_3_median``), by Siegmund's approximation (D. Siegmund, *Sequential Analysis*, 1985, eq. for the
ARL of a one-sided CUSUM of unit-variance normal increments):

    ARL(mu) = (exp(-2 mu b) + 2 mu b - 1) / (2 mu^2),  b = h + 1.166,  mu = E[z] - k.

``mu`` and ``sigma`` are estimated from the baseline samples (so the test adapts to how noisy the
quality signal is); ``h`` accounts for the estimation error of a small baseline (see
:func:`cusum_threshold`), and at least ``min_samples`` baseline samples are needed before any alarm.

A small rate with a small baseline pays in delay: for large h the averaged rate falls only like 1/h, so
h grows about like 1/rate (:func:`cusum_threshold` with k = 0.75: with 8 baseline samples h = 82 at
1e-4, 777 at 1e-5 and 77,288 at 1e-7; with 6, 202 at 1e-4; with 64, 15 at 1e-7), and a drop of d sigmas takes about h / (d - k)
steps to catch until the baseline grows. A rate no threshold reaches (above the rate at h = 0, about
0.4, or needing h above ``THRESHOLD_LIMIT``) is refused when the detector is made.
"""

from __future__ import annotations

import math
from functools import lru_cache
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq
from scipy.stats import chi2, norm


THRESHOLD_LIMIT = 1e9
"""Largest CUSUM threshold searched, in baseline standard deviations; a rate that needs more is refused."""


def cusum_arl(threshold: float | np.ndarray, drift: float | np.ndarray) -> np.ndarray:
    """Siegmund's average run length of a one-sided CUSUM with increments N(drift, 1), threshold h."""
    b = np.asarray(threshold, dtype=np.float64) + 1.166
    mu = np.asarray(drift, dtype=np.float64)
    safe = np.where(np.abs(mu) < 1e-9, 1e-9, mu)
    with np.errstate(over="ignore"):
        arl = (np.exp(-2 * safe * b) + 2 * safe * b - 1) / (2 * safe * safe)
    return np.where(np.abs(mu) < 1e-9, b * b, arl)


def _baseline_error_grid(n: int, points: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Quantile grid of the baseline's estimation errors: mean error (in sigmas) and sigma ratio."""
    q = (np.arange(points) + 0.5) / points
    mean_error = norm.ppf(q) / math.sqrt(n)
    sigma_ratio = np.sqrt(chi2.ppf(q, n - 1) / (n - 1))
    e, r = np.meshgrid(mean_error, sigma_ratio)
    return e.ravel(), r.ravel()


@lru_cache(maxsize=1024)  # a pure function of its arguments; every detector asks for each baseline size
def cusum_threshold(false_alarm_rate: float, reference: float, baseline_samples: int | None = None) -> float:
    """Threshold h for a stated false-alarm rate (alarms per step) of a CUSUM with reference k.

    With ``baseline_samples = n`` the mean and standard deviation are estimates from n samples; their
    errors (normal mean, chi-distributed sigma) shift and scale the increments for a whole run, so h is
    set for the false-alarm rate averaged over those errors, not for the best case.
    """
    if not 0.0 < false_alarm_rate < 1.0:
        raise ValueError(f"false_alarm_rate must be in (0, 1), got {false_alarm_rate}")
    if baseline_samples is None:
        rate = lambda h: 1.0 / float(cusum_arl(h, -reference))  # noqa: E731
    else:
        if baseline_samples < 2:
            raise ValueError(f"baseline_samples must be at least 2, got {baseline_samples}")
        error, ratio = _baseline_error_grid(baseline_samples)
        # increments (eps - u) / s - k with u ~ N(0, 1): unit variance after scaling by s
        rate = lambda h: float(np.mean(1.0 / cusum_arl(h * ratio, error - reference * ratio)))  # noqa: E731
    setting = f"a baseline of {baseline_samples} samples" if baseline_samples else "a known baseline"
    if rate(0.0) <= false_alarm_rate:  # h = 0 alarms most often: no threshold reaches a higher rate
        raise ValueError(
            f"false_alarm_rate={false_alarm_rate:g} is out of reach of a CUSUM with reference {reference:g} and {setting}: "
            f"the largest feasible rate is {rate(0.0):.3g} (threshold 0)"
        )
    # the averaged rate falls only like 1/h for large h (baselines whose error makes the CUSUM drift upwards),
    # so the root may lie far out: grow the bracket geometrically until it holds the root
    low, high = 0.0, 16.0
    while rate(high) > false_alarm_rate:
        if high >= THRESHOLD_LIMIT:
            raise ValueError(
                f"false_alarm_rate={false_alarm_rate:g} is out of reach of a CUSUM with reference {reference:g} and "
                f"{setting}: it needs a threshold above {THRESHOLD_LIMIT:g} sds; the smallest feasible rate is "
                f"{rate(THRESHOLD_LIMIT):.3g}"
            )
        low, high = high, min(8.0 * high, THRESHOLD_LIMIT)
    return brentq(lambda h: rate(h) - false_alarm_rate, low, high)


MIN_REWARD_SIGMA = 0.025
"""Floor of a reward baseline's spread, reward units: half the smallest change the analysis calls a trend
(``min_change`` 0.05, 0.5 dB of SI-SDR in the default reward), so that a near-constant baseline (a looped
chunk, metrics rounded to 0.1 dB) does not make a negligible dip a degradation."""


@dataclass
class DegradationDetector:
    """One-sided CUSUM for drops of a quality signal below its known-good level.

    :param false_alarm_rate: alarms per step on a stationary stream (1 / in-control run length).
    :param min_shift: smallest drop to detect quickly, in baseline standard deviations (k = min_shift / 2).
    :param min_samples: baseline samples needed before the detector may alarm.
    :param baseline_size: how many of the latest known-good samples form the baseline.
    :param min_sigma: floor of the baseline spread, in the signal's units.
    """

    false_alarm_rate: float = 1e-3
    min_shift: float = 1.5
    min_samples: int = 8
    baseline_size: int = 64
    min_sigma: float = 1e-3
    _baseline: list[float] = field(default_factory=list, repr=False)
    statistic: float = 0.0

    def __post_init__(self) -> None:
        if self.min_samples < 2:
            raise ValueError(f"min_samples must be at least 2, got {self.min_samples}")
        if self.baseline_size < self.min_samples:
            raise ValueError(
                f"baseline_size={self.baseline_size} is below min_samples={self.min_samples}: the test could never alarm"
            )
        if not self.min_sigma > 0.0:
            raise ValueError(f"min_sigma must be positive (the signal's units), got {self.min_sigma}")
        if not self.min_shift > 0.0:
            raise ValueError(f"min_shift must be positive (baseline standard deviations), got {self.min_shift}")
        self.reference = self.min_shift / 2.0
        self._thresholds: dict[int, float] = {}
        try:  # every baseline size now, so that a rate out of reach fails here and not mid-stream
            for n in range(self.min_samples, self.baseline_size + 1):
                self._thresholds[n] = cusum_threshold(self.false_alarm_rate, self.reference, n)
        except ValueError as err:
            raise ValueError(
                f"no rollback test with false_alarm_rate={self.false_alarm_rate:g}, min_samples={self.min_samples}, "
                f"baseline_size={self.baseline_size}, min_shift={self.min_shift:g}: {err}"
            ) from None

    @property
    def threshold(self) -> float:
        """h for the current baseline size (larger while the baseline is small and uncertain)."""
        n = max(len(self._baseline), self.min_samples)
        if n not in self._thresholds:
            self._thresholds[n] = cusum_threshold(self.false_alarm_rate, self.reference, n)
        return self._thresholds[n]

    @property
    def ready(self) -> bool:
        return len(self._baseline) >= self.min_samples

    @property
    def mean(self) -> float:
        return float(np.mean(self._baseline)) if self._baseline else float("nan")

    @property
    def baseline(self) -> list[float]:
        """The baseline samples (a copy), oldest first."""
        return list(self._baseline)

    @property
    def sigma(self) -> float:
        """Standard deviation of the baseline (ddof 1), floored at ``min_sigma``."""
        if len(self._baseline) < 2:
            return float("nan")
        return max(float(np.std(self._baseline, ddof=1)), self.min_sigma)

    def add_baseline(self, value: float) -> None:
        """Record a sample taken while the known-good parameters ran (non-finite values are skipped)."""
        if math.isfinite(value):
            self._baseline.append(float(value))
            del self._baseline[: -self.baseline_size]

    def reset(self, keep_baseline: bool = False) -> None:
        """Start the test afresh (after a rollback or a new checkpoint)."""
        self.statistic = 0.0
        if not keep_baseline:
            self._baseline.clear()

    def update(self, value: float) -> bool:
        """Feed one quality sample under the current parameters; True when a drop is detected."""
        if not self.ready or not math.isfinite(value):
            return False
        z = (self.mean - value) / self.sigma
        self.statistic = max(0.0, self.statistic + z - self.reference)
        return self.statistic > self.threshold

    def explain(self) -> str:
        return (
            f"CUSUM {self.statistic:.2f} vs threshold {self.threshold:.2f} "
            f"(baseline {self.mean:.3f} +- {self.sigma:.3f} over {len(self._baseline)} samples, "
            f"false-alarm rate {self.false_alarm_rate:g}/step, shift {self.min_shift} sigma)"
        )


@lru_cache(maxsize=64)
def _critical_z(alpha: float) -> float:
    return float(norm.isf(alpha))


def mean_below(sample, reference, alpha: float, min_sigma: float, margin: float = 0.0) -> bool:
    """One-sided z-test: True when the mean of ``sample`` is below that of ``reference``, less ``margin`` of its
    standard deviations, at level ``alpha``.

    The spread is the reference's (ddof 1, floored at ``min_sigma``, the values' units); for independent normal values
    drawn alike it says True with probability ``alpha`` (margin 0). False when the reference has fewer than 2 values.
    """
    if len(reference) < 2 or not len(sample):
        return False
    sigma = max(float(np.std(reference, ddof=1)), min_sigma)
    gap = float(np.mean(sample)) - float(np.mean(reference)) + margin * sigma
    z = gap / (sigma * math.sqrt(1.0 / len(sample) + 1.0 / len(reference)))
    return z < -_critical_z(alpha)


@dataclass
class ReferenceLevel:
    """The known-good quality level that a setting must reach to become known-good; it never follows quality down.

    It is the first ``size`` rewards after :meth:`start` (the first baseline), whatever their setting, and is then
    replaced by the latest ``size`` rewards only when it is significantly below them, tested once per ``size`` rewards
    (:meth:`add`): a gradual degradation, each step too small to tell from noise, cannot pull it down, and noise
    seldom pushes it up. Only :meth:`clear` (the input got harder, or a new episode) lowers it.

    :meth:`below` tests a candidate's rewards against it (:func:`mean_below`): a candidate as good as the reference is
    called below with probability ``alpha`` (independent normal rewards).

    :param size: samples in the reference.
    :param alpha: level of both one-sided tests.
    :param min_sigma: floor of the spread, in the signal's units.
    """

    size: int = 64
    alpha: float = 0.05
    min_sigma: float = 1e-3
    samples: list[float] = field(default_factory=list)
    _added: int = field(default=0, repr=False)  # rewards added since the reference was full or last tested

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples)) if self.samples else float("nan")

    def start(self, samples) -> None:
        """A fresh reference from ``samples`` (the first baseline)."""
        self.samples = [float(v) for v in samples][-self.size :]
        self._added = 0

    def clear(self) -> None:
        self.start([])

    def below(self, rewards, margin: float = 0.0) -> bool:
        """True when the mean of ``rewards`` is significantly (level ``alpha``) below the reference's, less ``margin`` sds."""
        return mean_below(rewards, self.samples, self.alpha, self.min_sigma, margin)

    def add(self, reward: float, latest) -> None:
        """A new ``reward``: it joins the reference until that is full; then every ``size`` rewards the latest ``size``
        of ``latest`` (the newest last, ``reward`` included) replace the reference when it is significantly below them."""
        if not self.samples:
            return  # not started
        if len(self.samples) < self.size:
            self.samples.append(float(reward))
            return
        self._added += 1
        if self._added >= self.size and len(latest) >= self.size:
            self._added = 0
            latest = [float(v) for v in latest][-self.size :]
            if mean_below(self.samples, latest, self.alpha, self.min_sigma):
                self.samples = latest
