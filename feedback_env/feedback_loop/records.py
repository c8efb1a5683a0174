"""What the feedback loop writes down: one record per collected chunk, one per update, one per rollback."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class FeedbackRecord:
    """One collected chunk.

    :param index: sequence number since the loop started (survives the bounded history and save/load).
    :param time: wall-clock time of collection, Unix seconds.
    :param params: the full physical parameters the output was made with.
    :param metrics: metrics of the output (given or computed), metric units.
    :param baseline: the same metrics of the unprocessed input: what the reward compares against.
    :param reward: the :class:`~feedback_env.objectives.QualityReward` of the output over the input;
        ``None`` for a failure.
    :param features: normalized :class:`~feedback_env.features.ChunkFeatures` of the input, float32 ``(13,)``, or
        ``(26,)`` with the loop's ``feature_context`` (the averaged features appended; every train.py policy's loop).
    :param intrusive: the reward used a clean reference.
    :param ok: usable for learning; ``False`` when a metric was NaN or missing, or when the reward cannot
        score the chunk (an intrusive reward and a silent clean reference: a pause; metrics still recorded).
    :param error: why the record failed or was not scored (``None`` when ``ok``).
    """

    index: int
    time: float
    params: dict[str, float]
    metrics: dict[str, float]
    baseline: dict[str, float]
    reward: float | None
    features: np.ndarray = field(repr=False)
    intrusive: bool = False
    ok: bool = True
    error: str | None = None


@dataclass
class UpdateRecord:
    """One parameter update, explained.

    :param iteration: records collected when the update was made.
    :param strategy: the strategy's registry name.
    :param old_params: tuned parameters before, physical units.
    :param new_params: tuned parameters after (what the pipeline now runs), physical units.
    :param step: applied change of the tuned parameters in the unit cube, ``{name: delta}``.
    :param proposed_step: the strategy's change before the safety checks, same units.
    :param explanation: which objective, what estimate, how confident, in words and numbers.
    :param estimate: the strategy's numbers (e.g. ``expected_gain``, ``gradient_norm``, ``confidence``).
    :param trust_region_scale: factor the step was scaled by to respect the trust region (1 = not limited).
    :param damped: parameters whose step was shrunk because they oscillated.
    :param rejected: why the proposal was refused and the parameters left unchanged, else ``None``.
    """

    iteration: int
    strategy: str
    old_params: dict[str, float]
    new_params: dict[str, float]
    step: dict[str, float]
    proposed_step: dict[str, float]
    explanation: str
    estimate: dict[str, float] = field(default_factory=dict)
    trust_region_scale: float = 1.0
    damped: tuple[str, ...] = ()
    rejected: str | None = None

    @property
    def step_norm(self) -> float:
        """Euclidean norm of the applied unit-cube step."""
        return float(np.linalg.norm(list(self.step.values()))) if self.step else 0.0

    def changes(self) -> dict[str, tuple[float, float]]:
        """``{name: (old, new)}`` of the parameters that moved, physical units."""
        return {n: (self.old_params[n], v) for n, v in self.new_params.items() if v != self.old_params.get(n)}

    def __str__(self) -> str:
        if self.rejected:
            return f"[{self.strategy} #{self.iteration}] rejected: {self.rejected}"
        moved = sorted(self.step, key=lambda n: -abs(self.step[n]))[:3]
        parts = [f"{n} {self.old_params[n]:.4g} -> {self.new_params[n]:.4g}" for n in moved if self.step[n] != 0.0]
        limits = []
        if self.trust_region_scale < 1.0:
            limits.append(f"trust region x{self.trust_region_scale:.2f}")
        if self.damped:
            limits.append(f"damped {', '.join(self.damped)}")
        tail = f" ({'; '.join(limits)})" if limits else ""
        return f"[{self.strategy} #{self.iteration}] {'; '.join(parts) or 'no change'}{tail}. {self.explanation}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "strategy": self.strategy,
            "old_params": dict(self.old_params),
            "new_params": dict(self.new_params),
            "step": dict(self.step),
            "proposed_step": dict(self.proposed_step),
            "explanation": self.explanation,
            "estimate": dict(self.estimate),
            "trust_region_scale": self.trust_region_scale,
            "damped": list(self.damped),
            "rejected": self.rejected,
        }


@dataclass
class RollbackEvent:
    """A rollback: when, from which parameters to which, and the test that called for it."""

    iteration: int
    from_params: dict[str, float]
    to_params: dict[str, float]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "from_params": dict(self.from_params),
            "to_params": dict(self.to_params),
            "reason": self.reason,
        }
