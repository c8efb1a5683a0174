"""Known-good checkpoints and the degradation test behind ``should_rollback``.

The reward stream is watched by :class:`~feedback_env.safety.DegradationDetector` (one-sided CUSUM
with a stated false-alarm rate per record), whose baseline is the rewards observed while the
checkpoint's quality was established: the threshold adapts to the observed noise of the quality
signal through that baseline's spread.

Checkpoints: the first ``min_samples`` usable records establish the first checkpoint (the parameters
running when the baseline is complete) and its baseline; after an alarm that was not the parameters'
fault (:meth:`CheckpointMonitor.rebaseline`), the next ``min_samples`` records form a fresh baseline. Later, the current parameters become the new checkpoint after
``interval`` records without an alarm, with the CUSUM statistic below half its threshold and the recent
mean reward not below the baseline mean by more than half a baseline standard deviation (the trend is
not degrading); the baseline becomes the latest ``baseline_size`` rewards.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from feedback_env.safety import MIN_REWARD_SIGMA, DegradationDetector


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
                self._since = 0
            return False
        if not self.alarm and d.update(reward):
            self.alarm = True
            self.alarms += 1
        if not self.alarm and self._since >= self.interval and self._healthy():
            self.accept(params)
        return self.alarm

    def _healthy(self) -> bool:
        d = self.detector
        recent = list(self._recent)[-self.interval :]
        return d.statistic < 0.5 * d.threshold and float(np.mean(recent)) >= d.mean - 0.5 * d.sigma

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

        The checkpoint is kept; the next ``min_samples`` rewards become the baseline (no alarm before).
        """
        self.detector.reset()
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
            "baseline": list(self.detector._baseline),
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
