"""Where a bandit's per-arm statistics live: the store interface and the in-memory default.

A policy keeps everything it learns in named float64 arrays of shape ``(n_arms, *shape)`` (counts,
reward sums, Beta counts, LinUCB's ``A`` and ``b``...) and changes them only through one kind of
atomic :class:`Update`: add ``deltas`` to one arm's rows. Forgetting is a property of the statistics,
declared in the :class:`StatsSpec`:

* ``discount`` gamma (D-UCB): every update first multiplies every arm's statistics by gamma. Stores
  apply this lazily: each arm remembers the update count at which it was last brought up to date and
  is multiplied by ``gamma^k`` when next touched or read, so an update costs O(1) in the arm count.
* ``window`` tau (SW-UCB): the last tau updates are logged; when one falls out, its deltas are
  subtracted from its arm.

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
    """What a policy stores: its name, settings, arm count, per-arm array shapes and how they forget.

    Two workers may share a store only when their specs are equal (same policy, same settings).

    :param discount: gamma in (0, 1]: every update first multiplies all statistics by it.
    :param window: tau >= 1: only the last tau updates count. At most one of the two.
    """

    policy: str
    n_arms: int
    shapes: Mapping[str, tuple[int, ...]]
    params: Mapping[str, Any] = field(default_factory=dict)
    discount: float | None = None
    window: int | None = None

    def __post_init__(self) -> None:
        if self.discount is not None and self.window is not None:
            raise ValueError("statistics are discounted or windowed, not both")
        if self.discount is not None and not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")
        if self.window is not None and (int(self.window) != self.window or self.window < 1):
            raise ValueError(f"window must be a positive integer, got {self.window!r}")

    def to_json(self) -> str:
        return json.dumps(
            {
                "policy": self.policy,
                "n_arms": self.n_arms,
                "shapes": {k: list(v) for k, v in self.shapes.items()},
                "params": dict(self.params),
                "discount": self.discount,
                "window": self.window,
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
    """One atomic change: ``stats[name][arm] += deltas[name]`` for every statistic (after the spec's
    discount; into its window); the store's update counter rises by one."""

    arm: int
    deltas: Mapping[str, np.ndarray | float]


def catch_up(discount: float, elapsed: int) -> float:
    """``discount ** elapsed`` with C ``pow`` (as Lua's ``^`` computes it: both stores agree to the bit)."""
    return float(discount) ** int(elapsed)


def discounted_view(
    arrays: Mapping[str, np.ndarray], stamps: np.ndarray, updates: int, discount: float
) -> dict[str, np.ndarray]:
    """The statistics now: arm ``a``'s lazily stored rows times ``discount ** (updates - stamps[a])``."""
    factors = np.array([catch_up(discount, updates - int(s)) for s in stamps])
    return {name: a * factors.reshape((-1,) + (1,) * (a.ndim - 1)) for name, a in arrays.items()}


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
        """JSON-ready copy of the stored form: ``{"spec", "arrays", "stamps", "updates", "window"}``
        (``stamps``: per arm, the update count its discounted rows are as of)."""

    @abstractmethod
    def restore(self, dump: Mapping[str, Any]) -> None:
        """Replace the statistics with a :meth:`dump` of the same spec (``StateStoreError`` for a windowed
        dump whose statistics are not the sums of its window's deltas)."""

    def _check_dump(self, dump: Mapping[str, Any]) -> None:
        if self.spec is None:
            raise StateStoreError("restore: the store is not attached to a policy yet")
        if dump.get("spec") != self.spec.to_json():
            raise StateStoreError(f"restore: saved state is for {dump.get('spec')}, this store holds {self.spec.to_json()}")
        if self.spec.window is not None:
            _check_window(self.spec, dump)


def _check_window(spec: StatsSpec, dump: Mapping[str, Any]) -> None:
    """Raise unless a windowed dump's statistics are the sums of its window's deltas: loaded, a mismatch
    would stay in the sums for good (a dump not taken as one snapshot)."""
    window, updates = dump["window"], int(dump["updates"])
    if len(window) != min(updates, spec.window):
        raise StateStoreError(f"restore: the window holds {len(window)} updates; {updates} updates with window "
                              f"{spec.window} leave {min(updates, spec.window)} (not one snapshot?)")
    for name in spec.shapes:
        stored = np.asarray(dump["arrays"][name], dtype=np.float64)
        summed = np.zeros_like(stored)
        for arm, deltas in window:
            summed[int(arm)] += np.asarray(deltas[name], dtype=np.float64)
        for arm in range(spec.n_arms):
            if not np.allclose(stored[arm], summed[arm], rtol=1e-9, atol=1e-9):
                raise StateStoreError(f"restore: arm {arm}'s {name} is {stored[arm].tolist()} but its window entries "
                                      f"sum to {summed[arm].tolist()} (not one snapshot?); refused: loaded, the "
                                      "difference would stay in the sums for good")


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
    """The default: numpy arrays in this process (one policy, one worker).

    :meth:`read` returns the live arrays (a fresh view for discounted statistics): treat them as read-only.
    """

    def __init__(self) -> None:
        self.spec = None
        self._arrays: dict[str, np.ndarray] = {}
        self._stamps = np.zeros(0, dtype=np.int64)
        self._updates = 0
        self._window: deque[tuple[int, dict[str, np.ndarray]]] = deque()

    def attach(self, spec: StatsSpec) -> None:
        if self.spec is not None and self.spec != spec:
            raise StateStoreError(f"store already holds {self.spec.to_json()}; cannot attach {spec.to_json()}")
        if self.spec is None:
            self.spec, self._arrays = spec, spec.zeros()
            self._stamps = np.zeros(spec.n_arms, dtype=np.int64)

    def read(self) -> Stats:
        if self.spec.discount is not None:
            return Stats(discounted_view(self._arrays, self._stamps, self._updates, self.spec.discount), self._updates)
        return Stats(self._arrays, self._updates)

    def apply(self, update: Update) -> None:
        deltas = check_deltas(self.spec, update)
        t, arm = self._updates + 1, update.arm
        if self.spec.discount is not None:
            factor = catch_up(self.spec.discount, t - int(self._stamps[arm]))
            for array in self._arrays.values():
                array[arm] *= factor
            self._stamps[arm] = t
        for name, d in deltas.items():
            self._arrays[name][arm] += d
        if self.spec.window is not None:
            self._window.append((arm, deltas))
            while len(self._window) > self.spec.window:
                old_arm, old = self._window.popleft()
                for name, d in old.items():
                    self._arrays[name][old_arm] -= d
        self._updates = t

    def dump(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_json(),
            "arrays": {name: a.tolist() for name, a in self._arrays.items()},
            "stamps": self._stamps.tolist(),
            "updates": self._updates,
            "window": [[arm, {n: d.tolist() for n, d in deltas.items()}] for arm, deltas in self._window],
        }

    def restore(self, dump: Mapping[str, Any]) -> None:
        self._check_dump(dump)
        self._arrays = {name: np.array(dump["arrays"][name], dtype=np.float64) for name in self.spec.shapes}
        self._stamps = np.array(dump["stamps"], dtype=np.int64)
        self._updates = int(dump["updates"])
        self._window = deque(
            (int(arm), {n: np.array(d, dtype=np.float64) for n, d in deltas.items()}) for arm, deltas in dump["window"]
        )
