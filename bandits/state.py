"""Where a bandit's per-arm statistics live: the store interface and the in-memory default.

A policy keeps everything it learns in named float64 arrays of shape ``(n_arms, *shape)`` (counts,
reward sums, Beta counts, LinUCB's ``A`` and ``b``...) and changes them only through one kind of
atomic :class:`Update`: add ``deltas`` to one arm's rows, optionally after multiplying every array by a
discount (D-UCB), or into a sliding window that subtracts the update that falls out of it (SW-UCB).
Because every change is such an update, a store can apply it in one place atomically (a lock, a Redis
Lua script) and several workers can share one bandit; indices and samples are computed by the client.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np


class StateStoreError(RuntimeError):
    """A store that cannot hold or apply a bandit's statistics (schema mismatch, missing state)."""


class StateStoreUnavailable(StateStoreError):
    """The store cannot be reached; the updates not yet stored are kept (see ``pending``)."""


@dataclass(frozen=True)
class StatsSpec:
    """What a policy stores: its name, hyperparameters, arm count and per-arm array shapes.

    Two workers may share a store only when their specs are equal (same policy, same settings).
    """

    policy: str
    n_arms: int
    shapes: Mapping[str, tuple[int, ...]]
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "policy": self.policy,
                "n_arms": self.n_arms,
                "shapes": {k: list(v) for k, v in self.shapes.items()},
                "params": dict(self.params),
            },
            sort_keys=True,
        )

    def sizes(self) -> dict[str, int]:
        """Number of float64 values per arm of each array."""
        return {name: int(np.prod(shape, dtype=np.int64)) for name, shape in self.shapes.items()}

    def zeros(self) -> dict[str, np.ndarray]:
        return {name: np.zeros((self.n_arms, *shape)) for name, shape in self.shapes.items()}


@dataclass(frozen=True)
class Update:
    """One atomic change of the statistics.

    Applied as: if ``discount`` is set, every array (all arms) is multiplied by it; then
    ``stats[name][arm] += deltas[name]`` for every name; if ``window`` is set, the update is appended to
    a log and, while the log holds more than ``window`` updates, the oldest is removed and its deltas
    subtracted from its arm. The store's update counter rises by one.
    """

    arm: int
    deltas: Mapping[str, np.ndarray | float]
    discount: float | None = None
    window: int | None = None

    def __post_init__(self) -> None:
        if self.discount is not None and self.window is not None:
            raise ValueError("an update is discounted or windowed, not both")


@dataclass
class Stats:
    """A view of the statistics: ``arrays[name]`` of shape ``(n_arms, *shape)`` and the update count."""

    arrays: dict[str, np.ndarray]
    updates: int

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]


class StateStore(ABC):
    """Holds one bandit's statistics. Subclasses apply :class:`Update` atomically."""

    spec: StatsSpec | None = None

    @abstractmethod
    def attach(self, spec: StatsSpec) -> None:
        """Bind to a policy: create zeroed statistics, or check that stored ones have the same spec."""

    @abstractmethod
    def read(self) -> Stats:
        """The current statistics (treat the arrays as read-only)."""

    @abstractmethod
    def apply(self, update: Update) -> None:
        """Apply one update atomically."""

    @abstractmethod
    def dump(self) -> dict[str, Any]:
        """JSON-ready copy: ``{"spec", "arrays", "updates", "window"}``."""

    @abstractmethod
    def restore(self, dump: Mapping[str, Any]) -> None:
        """Replace the statistics with a :meth:`dump` of the same spec."""

    def _check_dump(self, dump: Mapping[str, Any]) -> None:
        if self.spec is None:
            raise StateStoreError("restore: the store is not attached to a policy yet")
        if dump.get("spec") != self.spec.to_json():
            raise StateStoreError(f"restore: saved state is for {dump.get('spec')}, this store holds {self.spec.to_json()}")


def check_deltas(spec: StatsSpec, update: Update) -> dict[str, np.ndarray]:
    """The deltas of ``update`` as float64 arrays of each stat's per-arm shape (raises on a mismatch)."""
    if not 0 <= update.arm < spec.n_arms:
        raise ValueError(f"update: arm {update.arm} not in [0, {spec.n_arms})")
    if set(update.deltas) != set(spec.shapes):
        raise StateStoreError(f"update: deltas for {sorted(update.deltas)}, the spec has {sorted(spec.shapes)}")
    out = {}
    for name, shape in spec.shapes.items():
        d = np.asarray(update.deltas[name], dtype=np.float64)
        if d.shape != shape:
            raise StateStoreError(f"update: delta {name!r} has shape {d.shape}, expected {shape}")
        out[name] = d
    return out


class InMemoryStateStore(StateStore):
    """The default: numpy arrays in this process (one policy, one worker). :meth:`read` returns live arrays."""

    def __init__(self) -> None:
        self.spec = None
        self._arrays: dict[str, np.ndarray] = {}
        self._updates = 0
        self._window: deque[tuple[int, dict[str, np.ndarray]]] = deque()

    def attach(self, spec: StatsSpec) -> None:
        if self.spec is not None and self.spec != spec:
            raise StateStoreError(f"store already holds {self.spec.to_json()}; cannot attach {spec.to_json()}")
        if self.spec is None:
            self.spec, self._arrays = spec, spec.zeros()

    def read(self) -> Stats:
        return Stats(self._arrays, self._updates)

    def apply(self, update: Update) -> None:
        deltas = check_deltas(self.spec, update)
        if update.discount is not None:
            for array in self._arrays.values():
                array *= update.discount
        for name, d in deltas.items():
            self._arrays[name][update.arm] += d
        if update.window is not None:
            self._window.append((update.arm, deltas))
            while len(self._window) > update.window:
                arm, old = self._window.popleft()
                for name, d in old.items():
                    self._arrays[name][arm] -= d
        self._updates += 1

    def dump(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_json(),
            "arrays": {name: a.tolist() for name, a in self._arrays.items()},
            "updates": self._updates,
            "window": [[arm, {n: d.tolist() for n, d in deltas.items()}] for arm, deltas in self._window],
        }

    def restore(self, dump: Mapping[str, Any]) -> None:
        self._check_dump(dump)
        self._arrays = {name: np.array(dump["arrays"][name], dtype=np.float64) for name in self.spec.shapes}
        self._updates = int(dump["updates"])
        self._window = deque(
            (int(arm), {n: np.array(d, dtype=np.float64) for n, d in deltas.items()}) for arm, deltas in dump["window"]
        )
