"""Named continuous parameters with physical units, and their map to the agents' unit cube [-1, 1]^d.

Agents only ever see the unit cube (as SB3 advises for continuous actions); physical values (Hz, dB,
ratio, ms) appear in ``info``, logs and reports. ``log`` parameters (frequencies, ratios, times) are
mapped linearly in their logarithm, so that a step in the cube is a constant *factor*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator, Literal, Mapping

import numpy as np

from feedback_env.errors import ParameterError

Scale = Literal["linear", "log"]


def _number(name: str, value: object) -> float:
    """``value`` as a float; a real number or a one-element numeric array, never a string or None."""
    if isinstance(value, (str, bytes)) or value is None:
        raise ParameterError(f"parameter {name!r}: expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"parameter {name!r}: expected a number, got {value!r:.80}") from None


def _mapping(params: object) -> Mapping:
    if not isinstance(params, Mapping):
        raise ParameterError(
            f"parameters must be a mapping of name to physical value, got {type(params).__name__}"
        )
    return params


@dataclass(frozen=True)
class Parameter:
    """One continuous parameter.

    :param name: identifier with its unit as suffix (``highpass_hz``, ``nr_floor_db``).
    :param low: lower bound, physical units.
    :param high: upper bound, physical units (> low).
    :param default: value used when nothing else is set; within [low, high].
    :param scale: ``"linear"`` or ``"log"`` (then low > 0).
    :param doc: one line saying what it does.
    """

    name: str
    low: float
    high: float
    default: float
    scale: Scale = "linear"
    doc: str = ""

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise ParameterError(f"parameter {self.name!r}: high ({self.high}) must exceed low ({self.low})")
        if self.scale not in ("linear", "log"):
            raise ParameterError(f"parameter {self.name!r}: scale must be 'linear' or 'log', got {self.scale!r}")
        if self.scale == "log" and self.low <= 0:
            raise ParameterError(f"parameter {self.name!r}: a log scale needs low > 0, got {self.low}")
        if not self.low <= self.default <= self.high:
            raise ParameterError(
                f"parameter {self.name!r}: default {self.default} outside [{self.low}, {self.high}]"
            )

    def to_unit(self, value: float) -> float:
        """Physical value -> position in [-1, 1]."""
        if self.scale == "log":
            lo, hi, v = math.log(self.low), math.log(self.high), math.log(value)
        else:
            lo, hi, v = self.low, self.high, value
        return 2.0 * (v - lo) / (hi - lo) - 1.0

    def from_unit(self, u: float) -> float:
        """Position in [-1, 1] (clipped) -> physical value."""
        t = (min(max(float(u), -1.0), 1.0) + 1.0) / 2.0
        if self.scale == "log":
            return float(math.exp(math.log(self.low) + t * (math.log(self.high) - math.log(self.low))))
        return float(self.low + t * (self.high - self.low))


class ParameterSpace:
    """An ordered set of :class:`Parameter`; the one parameter space shared by envs, loop and harness.

    ``to_unit(params) -> np.ndarray`` of shape ``(d,)`` float32 in [-1, 1]; ``from_unit(x) -> dict``
    of physical values. ``subspace(names)`` gives the space an agent tunes while the rest stay fixed.
    """

    def __init__(self, parameters: Iterable[Parameter]):
        self.parameters: tuple[Parameter, ...] = tuple(parameters)
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise ParameterError(f"duplicate parameter names in {names}")
        if not names:
            raise ParameterError("a parameter space needs at least one parameter")
        self._by_name = {p.name: p for p in self.parameters}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def dim(self) -> int:
        return len(self.parameters)

    def __len__(self) -> int:
        return self.dim

    def __getitem__(self, name: str) -> Parameter:
        try:
            return self._by_name[name]
        except KeyError:
            raise ParameterError(f"unknown parameter {name!r}; known: {', '.join(self.names)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        """The names, in order (as ``in`` takes names, like a mapping; :attr:`parameters` holds the objects)."""
        return iter(self.names)

    def __repr__(self) -> str:
        return f"ParameterSpace({', '.join(self.names)})"

    def defaults(self) -> dict[str, float]:
        """The default physical values."""
        return {p.name: p.default for p in self.parameters}

    def validate(self, params: Mapping[str, float], *, complete: bool = False) -> dict[str, float]:
        """Check names, finiteness and bounds; return a float dict. Raises :class:`ParameterError`.

        :param complete: require every parameter of the space to be present.
        """
        out: dict[str, float] = {}
        for name, value in _mapping(params).items():
            p = self[name]
            v = _number(name, value)
            if not math.isfinite(v):
                raise ParameterError(f"parameter {name!r} is {v}; a finite value is needed")
            tol = 1e-9 * max(1.0, abs(p.high - p.low))
            if v < p.low - tol or v > p.high + tol:
                raise ParameterError(f"parameter {name!r} = {v} is outside [{p.low}, {p.high}]")
            out[name] = min(max(v, p.low), p.high)
        if complete:
            missing = [n for n in self.names if n not in out]
            if missing:
                raise ParameterError(f"missing parameters: {', '.join(missing)}")
        return out

    def to_unit(self, params: Mapping[str, float], dtype: type = np.float32) -> np.ndarray:
        """Physical dict (every name of the space) -> array of shape (d,) in [-1, 1].

        :param dtype: float32 for observations and actions; float64 where positions are stored and
            mapped back (float32 would move a setting by ~1e-7 relative at every round trip).
        """
        checked = self.validate(params)
        missing = [n for n in self.names if n not in checked]
        if missing:
            raise ParameterError(f"missing parameters: {', '.join(missing)}")
        return np.array([p.to_unit(checked[p.name]) for p in self.parameters], dtype=dtype)

    def from_unit(self, x: np.ndarray | Iterable[float]) -> dict[str, float]:
        """Array of shape (d,) in [-1, 1] (values outside are clipped) -> physical dict."""
        arr = np.asarray(x, dtype=np.float64).reshape(-1)
        if arr.shape != (self.dim,):
            raise ParameterError(f"expected a unit vector of shape ({self.dim},), got {np.shape(x)}")
        if not np.all(np.isfinite(arr)):
            raise ParameterError(f"unit vector has non-finite entries: {arr.tolist()}")
        return {p.name: p.from_unit(u) for p, u in zip(self.parameters, arr)}

    def clip(self, params: Mapping[str, float]) -> dict[str, float]:
        """Clip each known value into its bounds (NaN raises)."""
        out = {}
        for name, value in _mapping(params).items():
            p = self[name]
            v = _number(name, value)
            if math.isnan(v):
                raise ParameterError(f"parameter {name!r} is NaN")
            out[name] = min(max(v, p.low), p.high)
        return out

    def subspace(self, names: Iterable[str]) -> "ParameterSpace":
        """The space of just these parameters, in the order given."""
        if isinstance(names, str):  # it would iterate letters ("unknown parameter 'n'")
            raise ValueError(f"parameter names must be a list of names, got the string {names!r}")
        return ParameterSpace(self[n] for n in names)

    def with_defaults(self, overrides: Mapping[str, float]) -> "ParameterSpace":
        """The same space with some defaults changed (checked against the bounds)."""
        self.validate(overrides)
        return ParameterSpace(
            Parameter(p.name, p.low, p.high, float(overrides.get(p.name, p.default)), p.scale, p.doc)
            for p in self.parameters
        )

    def describe(self) -> list[dict]:
        """Rows of name, bounds, default, scale and doc, for tables and reports."""
        return [
            {"name": p.name, "low": p.low, "high": p.high, "default": p.default, "scale": p.scale, "doc": p.doc}
            for p in self.parameters
        ]
