"""Action types: how an action becomes the physical parameters of the coming chunk.

One small class per kind of action (as highway-env does), so that a new kind is a new class, not a
branch in ``step``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from gymnasium import spaces

from feedback_env.errors import ParameterError
from feedback_env.parameters import ParameterSpace
from feedback_env.presets import PRESETS, preset_params


def _numeric(action: object, expected: str) -> np.ndarray:
    """``action`` as a numpy array of numbers, or ``ValueError`` saying what was ``expected``."""
    try:
        arr = np.asarray(action)
        numeric = arr.dtype.kind in "iuf"
    except Exception:  # ragged sequences and other objects numpy cannot turn into an array
        numeric = False
    if not numeric:
        raise ValueError(f"action must be {expected}, got {action!r:.80}")
    return arr


def box_action(action: object, dim: int) -> np.ndarray:
    """``action`` as float64 of shape ``(dim,)``; raise ``ValueError`` naming the expected shape.

    Exactly ``dim`` numbers are needed: ``(dim,)`` or, as a batch of one, ``(1, dim)``. A scalar or a
    ``(1,)`` action is never broadcast to every parameter. Non-finite entries raise
    :class:`~feedback_env.errors.ParameterError` (a ``ValueError``).
    """
    arr = _numeric(action, f"numbers, an array of shape ({dim},)")
    if arr.size != dim or sum(n != 1 for n in arr.shape) > 1:
        raise ValueError(f"action must have shape ({dim},), got shape {arr.shape}")
    a = arr.astype(np.float64).reshape(dim)
    if not np.all(np.isfinite(a)):
        raise ParameterError(f"action has non-finite entries: {a.tolist()}")
    return a


class AbsoluteAction:
    """Box(-1, 1, (d,)): the unit-cube position of the tuned parameters for the coming chunk, centred on
    ``center`` and scaled by ``radius``: position = ``clip(center + radius * action, -1, 1)``.

    :param smoothing: ``a`` in [0, 1): the parameters move to ``a * current + (1 - a) * position`` (unit
        cube), a first-order low-pass on the policy's choices; 0 sets them to the position.
    :param center: physical values of the tuned parameters at action 0 (e.g. the best static setting,
        so that a policy learns per-chunk deviations from it); None for the cube's centre.
    :param radius: unit-cube widths reached at ``|action| = 1`` (the cube is 2 wide); with ``center``
        None and ``radius`` 1 an action is the position itself.
    """

    def __init__(
        self,
        space: ParameterSpace,
        tuned: Sequence[str],
        smoothing: float = 0.0,
        center: Mapping[str, float] | None = None,
        radius: float = 1.0,
    ):
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        if not 0.0 < radius <= 2.0:
            raise ValueError(f"radius must be in (0, 2], got {radius}")
        self.space, self.tuned, self.smoothing, self.radius = space, space.subspace(tuned), smoothing, radius
        if center is None:
            self.center = np.zeros(self.tuned.dim)
        else:
            missing = set(self.tuned.names) - set(center)
            if missing:
                raise ValueError(f"action center lacks the tuned parameters {sorted(missing)}")
            self.center = self.tuned.to_unit({n: center[n] for n in self.tuned.names}, dtype=np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, (self.tuned.dim,), dtype=np.float32)

    def reset(self, params: dict[str, float]) -> dict[str, float]:
        return dict(params)

    def _current(self, params: dict[str, float]) -> np.ndarray:
        return self.tuned.to_unit({n: params[n] for n in self.tuned.names})

    def position(self, action: np.ndarray) -> np.ndarray:
        """Unit-cube position (float64, shape (d,)) that ``action`` (shape (d,), in [-1, 1]; clipped) sets,
        before smoothing. Raises ``ValueError`` for any other shape or a non-finite entry."""
        action = np.clip(box_action(action, self.tuned.dim), -1.0, 1.0)
        return np.clip(self.center + self.radius * action, -1.0, 1.0)

    def action_for(self, position: np.ndarray, tol: float = 1e-9) -> np.ndarray:
        """The action (float64, shape (d,)) whose :meth:`position` is ``position`` (unit cube).

        Raises ValueError when ``position`` is out of reach (beyond ``center +- radius`` by more than
        ``tol`` unit-cube widths).
        """
        position = np.asarray(position, dtype=np.float64)
        action = (position - self.center) / self.radius
        out = np.flatnonzero(np.abs(action) > 1.0 + tol / self.radius)
        if out.size:
            names = [self.tuned.names[i] for i in out]
            raise ValueError(
                f"unit-cube position {position[out].round(4).tolist()} of {names} is out of the action's reach "
                f"(center {self.center[out].round(4).tolist()} +- radius {self.radius})"
            )
        return np.clip(action, -1.0, 1.0)

    def apply(self, action: np.ndarray, params: dict[str, float]) -> dict[str, float]:
        target = self.position(action)
        if self.smoothing:
            target = self.smoothing * self._current(params) + (1.0 - self.smoothing) * target
        return {**params, **self.tuned.from_unit(target)}


class DeltaAction(AbsoluteAction):
    """Box(-1, 1, (d,)): a change of the tuned parameters, ``max_step`` unit-cube widths at most per chunk.

    :param max_step: largest change per chunk in unit-cube coordinates (the cube is 2 wide).
    """

    def __init__(self, space: ParameterSpace, tuned: Sequence[str], max_step: float = 0.2):
        super().__init__(space, tuned)
        if not 0.0 < max_step <= 2.0:
            raise ValueError(f"max_step must be in (0, 2], got {max_step}")
        self.max_step = max_step

    def position(self, action: np.ndarray) -> np.ndarray:
        raise TypeError("a delta action moves the parameters from where they are; it sets no fixed position")

    def action_for(self, position: np.ndarray, tol: float = 1e-9) -> np.ndarray:
        raise TypeError("a delta action moves the parameters from where they are; it sets no fixed position")

    def apply(self, action: np.ndarray, params: dict[str, float]) -> dict[str, float]:
        step = self.max_step * np.clip(box_action(action, self.tuned.dim), -1.0, 1.0)
        moved = np.clip(self._current(params) + step, -1.0, 1.0)
        return {**params, **self.tuned.from_unit(moved)}


class PresetAction:
    """Discrete(k): one of the named presets for the coming chunk."""

    def __init__(self, space: ParameterSpace, presets: Sequence[str]):
        if isinstance(presets, (str, bytes)) or not isinstance(presets, Sequence):
            raise ValueError(f"presets must be a list of preset names, got {presets!r:.80}")
        if not presets:
            raise ValueError(f"presets: at least one preset is needed; known: {', '.join(PRESETS)}")
        if unknown := [name for name in presets if name not in PRESETS]:
            raise ValueError(f"presets: unknown preset {unknown[0]!r}; known: {', '.join(PRESETS)}")
        self.space, self.presets = space, tuple(presets)
        self.tuned = space
        self._params = [preset_params(name, space) for name in self.presets]
        self.action_space = spaces.Discrete(len(self.presets))

    def reset(self, params: dict[str, float]) -> dict[str, float]:
        return dict(params)

    def apply(self, action: int | np.integer | np.ndarray, params: dict[str, float]) -> dict[str, float]:
        """The parameters of preset ``action``: one whole number in [0, k), e.g. an int, a numpy integer,
        or a 0-d or ``(1,)`` array (as VecEnvs pass it). Raises ``ValueError`` for anything else."""
        k = len(self.presets)
        arr = _numeric(action, f"a preset index in [0, {k})")
        if arr.size != 1:
            raise ValueError(f"action must be one preset index in [0, {k}), got shape {arr.shape}")
        value = arr.reshape(-1)[0].item()
        if not float(value).is_integer():
            raise ValueError(f"action must be a whole preset index in [0, {k}), got {value}")
        index = int(value)
        if not 0 <= index < k:
            raise ValueError(f"action {index} is not a preset index in [0, {len(self.presets)})")
        return dict(self._params[index])
