"""Safety checks on every parameter update: NaN guard, bounds, trust region, oscillation damping.

Applied by the loop to any strategy's proposal, in the unit cube of the tuned space:

1. NaN guard: a proposal with a non-finite value is rejected (the parameters stay);
2. bounds: values are clipped into the space;
3. trust region: the whole proposed step is scaled so that no coordinate moves more than ``max_step``;
4. oscillation damping: a coordinate whose applied steps changed sign in at least ``flips`` of the
   last ``flips + 1`` updates (each step larger than ``min_move``) has its step multiplied by a damping
   factor, halved at each further flip and recovering by ``x1.25`` per update without one (up to 1).
   Both only ever shrink a step.

Checks 3 and 4 are for strategies that walk (gradient, search); a strategy that switches between whole
settings (a bandit choosing presets, a policy choosing absolute parameters) sets ``step_limits = False``
and gets only 1 and 2: a preset reached halfway, or damped because arms alternate, is no arm at all.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from feedback_env.errors import ParameterError
from feedback_env.parameters import ParameterSpace


@dataclass
class GuardedStep:
    """The outcome of :meth:`StepGuard.apply`: the new unit position and what the checks did."""

    x_new: np.ndarray
    step: np.ndarray
    proposed_step: np.ndarray
    trust_region_scale: float
    damped: tuple[str, ...]
    rejected: str | None


class StepGuard:
    """Turns a proposal into a safe step.

    :param space: the tuned space. :param max_step: largest change of any coordinate per update (unit cube).
    :param flips: sign changes in a row that count as oscillation. :param min_move: smaller steps are ignored.
    """

    def __init__(self, space: ParameterSpace, max_step: float = 0.2, flips: int = 3, min_move: float = 1e-3):
        if not 0.0 < max_step <= 2.0:
            raise ValueError(f"max_step must be in (0, 2] (unit-cube units), got {max_step}")
        self.space, self.max_step, self.flips, self.min_move = space, float(max_step), int(flips), float(min_move)
        self.reset()

    def reset(self) -> None:
        self.damping = np.ones(self.space.dim)
        self._signs: deque[np.ndarray] = deque(maxlen=self.flips + 1)

    def apply(self, x: np.ndarray, proposal: Mapping[str, float], step_limits: bool = True) -> GuardedStep:
        """Check ``proposal`` (physical, tuned names or a subset) against the position ``x`` (unit cube).

        :param step_limits: apply oscillation damping and the trust region (False: NaN guard and bounds only).
        """
        names = self.space.names
        unknown = [n for n in proposal if n not in self.space]
        if unknown:
            raise ParameterError(f"proposal sets {unknown}, which are not tuned; tuned: {', '.join(names)}")
        values = {}
        for n, v in proposal.items():
            try:
                values[n] = float(v)
            except (TypeError, ValueError):
                values[n] = float("nan")
        bad = [n for n, v in values.items() if not np.isfinite(v)]
        current = self.space.from_unit(x)
        if bad:
            zero = np.zeros_like(x)
            return GuardedStep(x.copy(), zero, zero, 1.0, (), f"non-finite value(s) proposed for {', '.join(bad)}")
        target = self.space.to_unit(self.space.clip({**current, **values}), dtype=np.float64)
        proposed = target - x
        if not step_limits:
            return GuardedStep(target, target - x, proposed, 1.0, (), None)
        step = proposed * self.damping
        moving = np.abs(step) > self.min_move
        signs = np.where(moving, np.sign(step), 0.0)
        self._signs.append(signs)
        damped = self._update_damping()
        # the trust region scales the proposal, then damping shrinks single coordinates: neither can undo the
        # other (rescaling after damping gave a damped coordinate its step back and enlarged the rest)
        largest = float(np.max(np.abs(proposed))) if proposed.size else 0.0
        scale = min(1.0, self.max_step / largest) if largest > 0 else 1.0
        step = proposed * scale * self.damping
        x_new = np.clip(x + step, -1.0, 1.0)
        return GuardedStep(x_new, x_new - x, proposed, scale, tuple(names[i] for i in damped), None)

    def _update_damping(self) -> np.ndarray:
        """Halve the damping of oscillating coordinates, let the others recover; returns the damped indices."""
        if len(self._signs) < self.flips + 1:
            return np.zeros(0, dtype=int)
        s = np.array(self._signs)  # (flips + 1, d)
        changes = ((s[1:] * s[:-1]) < 0).sum(axis=0)
        oscillating = changes >= self.flips
        self.damping = np.where(oscillating, self.damping * 0.5, np.minimum(1.0, self.damping * 1.25))
        return np.flatnonzero(oscillating)

    def state_dict(self) -> dict[str, Any]:
        return {"damping": self.damping.tolist(), "signs": [s.tolist() for s in self._signs]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.damping = np.asarray(state["damping"], dtype=np.float64)
        self._signs = deque((np.asarray(s) for s in state["signs"]), maxlen=self.flips + 1)
