"""Known-good checkpoints and the degradation test behind ``should_rollback``.

The reward stream is watched by :class:`~feedback_env.safety.DegradationDetector` (one-sided CUSUM
with a stated false-alarm rate per record), whose baseline is the rewards observed while the
checkpoint's quality was established: the threshold adapts to the observed noise of the quality
signal through that baseline's spread.

Checkpoints: the first ``min_samples`` usable records establish the first checkpoint (the parameters
running when the baseline is complete), its baseline and the reference level
(:class:`~feedback_env.safety.ReferenceLevel`); after an alarm that was not the parameters' fault
(:meth:`CheckpointMonitor.rebaseline`), the next ``min_samples`` records form a fresh baseline and reference.
Later, the current parameters become the new checkpoint after ``interval`` records without an alarm, with
the CUSUM statistic below half its threshold and the last ``interval`` rewards not below the reference
(one-sided z-test at 5 %: an equally good candidate is refused 5 % of the time, for independent records);
the baseline becomes the latest ``baseline_size`` rewards. The reference grows with every reward to
``baseline_size`` and then only rises (when the latest rewards are significantly above it), so a gradual
degradation caused by the parameters, each interval too small to tell from noise, stops moving the
checkpoint once it is significant, and a rollback undoes it. With reward = N(0, 1) minus the damage a
strategy walks into at 0.02 sd per record (``test_a_rollback_undoes_a_gradual_degradation_caused_by_the_parameters``),
the checkpoint ends 1.1 sd below where the walk began and the running setting 1.4 sd (medians; the former
rule, the recent mean within half an sd of the latest rewards, let them sink 3.8 and 3.9 sd).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from feedback_env.safety import MIN_REWARD_SIGMA, DegradationDetector, ReferenceLevel


class CheckpointMonitor:
    """CUSUM alarm on the reward stream against the last known-good checkpoint.

    :param false_alarm_rate: alarms per record on a stationary stream of independent records (positively
        autocorrelated rewards alarm more often: :mod:`feedback_env.safety`).
    :param min_shift: smallest drop detected quickly, in baseline standard deviations.
    :param min_samples: records before the first checkpoint (and before any alarm).
    :param baseline_size: rewards in a checkpoint's baseline.
    :param interval: records between checkpoint candidates.
    :param min_sigma: floor of the baseline's spread, reward units: the smallest drop that can roll back is
        ``min_shift / 2`` times it (0.025, half the analysis' ``min_change``: 0.25 dB of SI-SDR in the default
        reward; without it a constant baseline made a 0.005 dip roll back).
    """

    def __init__(
        self,
        false_alarm_rate: float = 1e-3,
        min_shift: float = 1.5,
        min_samples: int = 8,
        baseline_size: int = 64,
        interval: int = 16,
        min_sigma: float = MIN_REWARD_SIGMA,
    ):
        if interval < 1:
            raise ValueError(f"checkpoint interval must be at least 1, got {interval}")
        self.detector = DegradationDetector(
            false_alarm_rate=false_alarm_rate, min_shift=min_shift, min_samples=min_samples, baseline_size=baseline_size,
            min_sigma=min_sigma,
        )
        self.interval = int(interval)
        self.reference = ReferenceLevel(baseline_size, alpha=0.05, min_sigma=min_sigma)
        self.checkpoint: dict[str, float] | None = None
        self.alarm = False
        self.alarms = 0
        self._recent: deque[float] = deque(maxlen=baseline_size)
        self._since = 0

    @property
    def min_samples(self) -> int:
        return self.detector.min_samples

    @property
    def threshold(self) -> float:
        """The CUSUM alarm level in reward units (threshold h times the baseline spread)."""
        return self.detector.threshold * self.detector.sigma if self.detector.ready else float("nan")

    def observe(self, reward: float, params: dict[str, float]) -> bool:
        """Feed one usable reward obtained with ``params``; True when the test has alarmed (sticky)."""
        self._recent.append(float(reward))
        self._since += 1
        d = self.detector
        if not d.ready:  # the first baseline, or a fresh one after the input changed
            d.add_baseline(reward)
            if d.ready:
                self.checkpoint = dict(params) if self.checkpoint is None else self.checkpoint
                self.reference.start(d.baseline)
                self._since = 0
            return False
        self.reference.add(reward, self._recent)
        if not self.alarm and d.update(reward):
            self.alarm = True
            self.alarms += 1
        if not self.alarm and self._since >= self.interval and self._healthy():
            self.accept(params)
        return self.alarm

    def _healthy(self) -> bool:
        d = self.detector
        return d.statistic < 0.5 * d.threshold and not self.reference.below(list(self._recent)[-self.interval :])

    def accept(self, params: dict[str, float]) -> None:
        """Make ``params`` the checkpoint, with the recent rewards as its baseline."""
        self.checkpoint = dict(params)
        self.detector.reset()
        for value in self._recent:
            self.detector.add_baseline(value)
        self._since = 0
        self.alarm = False

    def rebaseline(self) -> None:
        """The drop was not the parameters' fault (the input changed): measure a fresh baseline.

        The checkpoint is kept; the next ``min_samples`` rewards become the baseline and the reference (no alarm before).
        """
        self.detector.reset()
        self.reference.clear()
        self._recent.clear()
        self._since = 0
        self.alarm = False

    def after_rollback(self) -> None:
        """The checkpoint runs again: keep its baseline, restart the test and the checkpoint clock."""
        self.detector.reset(keep_baseline=True)
        self._recent.clear()
        self._since = 0
        self.alarm = False

    def explain(self) -> str:
        return self.detector.explain() if self.detector.ready else "no baseline yet"

    def state_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "alarm": self.alarm,
            "alarms": self.alarms,
            "recent": list(self._recent),
            "since": self._since,
            "baseline": self.detector.baseline,
            "reference": list(self.reference.samples),
            "statistic": self.detector.statistic,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.checkpoint = None if state["checkpoint"] is None else dict(state["checkpoint"])
        self.alarm, self.alarms = bool(state["alarm"]), int(state["alarms"])
        self._recent = deque(state["recent"], maxlen=self._recent.maxlen)
        self._since = int(state["since"])
        self.detector.reset()
        for value in state["baseline"]:
            self.detector.add_baseline(value)
        self.detector.statistic = float(state["statistic"])
        self.reference.start(state.get("reference", state["baseline"]))  # files saved before the reference: the baseline
