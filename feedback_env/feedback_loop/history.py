"""The loop's bounded processing history: a column-wise ring buffer of :class:`FeedbackRecord`.

Memory is fixed by ``capacity`` (columns are preallocated numpy arrays; a metric column is added the
first time a metric name appears), so the loop runs for any number of chunks in flat memory; the
oldest records are overwritten. ``total`` counts every record ever appended.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from feedback_env.feedback_loop.records import FeedbackRecord
from feedback_env.feedback_loop.storage import LoopFileError


def _number(value: Any, field: str) -> float:
    """``value`` as a float, or a :class:`ValueError` naming ``field``."""
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field} must be a number, got {value!r}") from exc


class ProcessingHistory:
    """The last ``capacity`` records, column-wise.

    :param capacity: records kept (older ones are dropped).
    :param param_names: the full parameter names, in order (columns of :meth:`param_matrix`).
    :param feature_names: names of the normalized input features (columns of :meth:`feature_matrix`).
    """

    def __init__(self, capacity: int, param_names: Sequence[str], feature_names: Sequence[str]):
        if int(capacity) < 1:
            raise ValueError(f"history capacity must be at least 1, got {capacity}")
        self.capacity = int(capacity)
        self.param_names = tuple(param_names)
        self.feature_names = tuple(feature_names)
        self._param_col = {n: i for i, n in enumerate(self.param_names)}
        cap = self.capacity
        self._index = np.zeros(cap, dtype=np.int64)
        self._time = np.zeros(cap)
        self._reward = np.full(cap, np.nan)
        self._ok = np.zeros(cap, dtype=bool)
        self._intrusive = np.zeros(cap, dtype=bool)
        self._params = np.zeros((cap, len(self.param_names)))
        self._features = np.zeros((cap, len(self.feature_names)), dtype=np.float32)
        self._metrics: dict[str, np.ndarray] = {}
        self._baseline: dict[str, np.ndarray] = {}
        self._errors: dict[int, str] = {}  # slot -> message, failures only
        self.total = 0

    # ------------------------------------------------------------------ writing
    def __len__(self) -> int:
        return min(self.total, self.capacity)

    def _column(self, table: dict[str, np.ndarray], name: str) -> np.ndarray:
        if name not in table:
            table[name] = np.full(self.capacity, np.nan)
        return table[name]

    def append(self, record: FeedbackRecord) -> None:
        """Store ``record`` (its ``index`` is kept as given), overwriting the oldest when full.

        Everything is checked and converted before anything is written: a bad record raises
        :class:`ValueError` and leaves the history as it was."""
        index = int(record.index)
        where = f"record {index}: "
        when = _number(record.time, where + "time")
        reward = np.nan if record.reward is None else _number(record.reward, where + "reward")
        row = np.full(len(self.param_names), np.nan)
        for name, value in record.params.items():
            if name not in self._param_col:
                raise ValueError(f"{where}unknown parameter {name!r} (known: {', '.join(self.param_names)})")
            row[self._param_col[name]] = _number(value, f"{where}params[{name!r}]")
        features = np.asarray(record.features, dtype=np.float32)
        if features.shape != (len(self.feature_names),):
            raise ValueError(f"{where}features of shape {features.shape}, expected ({len(self.feature_names)},)")
        columns = []
        for table, label in ((self._metrics, "metrics"), (self._baseline, "baseline")):
            values = getattr(record, label).items()
            columns.append((table, {n: _number(v, f"{where}{label}[{n!r}]") for n, v in values}))
        slot = self.total % self.capacity
        self._index[slot] = index
        self._time[slot] = when
        self._reward[slot] = reward
        self._ok[slot] = bool(record.ok)
        self._intrusive[slot] = bool(record.intrusive)
        self._params[slot] = row
        self._features[slot] = features
        for table, values in columns:
            for column in table.values():
                column[slot] = np.nan
            for name, value in values.items():
                self._column(table, name)[slot] = value
        if record.error is not None:
            self._errors[slot] = str(record.error)
        else:
            self._errors.pop(slot, None)
        self.total += 1

    # ------------------------------------------------------------------ reading
    def slots(self, last: int | None = None) -> np.ndarray:
        """Buffer positions of the last ``last`` records (all kept ones if None), oldest first."""
        n = len(self) if last is None else max(0, min(int(last), len(self)))
        return np.arange(self.total - n, self.total) % self.capacity

    def record(self, slot: int) -> FeedbackRecord:
        """The record stored at buffer position ``slot``."""
        metrics = {k: float(v[slot]) for k, v in self._metrics.items() if not np.isnan(v[slot])}
        baseline = {k: float(v[slot]) for k, v in self._baseline.items() if not np.isnan(v[slot])}
        reward = float(self._reward[slot])
        return FeedbackRecord(
            index=int(self._index[slot]),
            time=float(self._time[slot]),
            params={n: float(v) for n, v in zip(self.param_names, self._params[slot]) if not np.isnan(v)},
            metrics=metrics,
            baseline=baseline,
            reward=None if np.isnan(reward) else reward,
            features=self._features[slot].copy(),
            intrusive=bool(self._intrusive[slot]),
            ok=bool(self._ok[slot]),
            error=self._errors.get(int(slot)),
        )

    def records(self, last: int | None = None) -> list[FeedbackRecord]:
        """The last ``last`` records as objects, oldest first."""
        return [self.record(int(s)) for s in self.slots(last)]

    def __iter__(self):
        return iter(self.records())

    def ok(self, last: int | None = None) -> np.ndarray:
        return self._ok[self.slots(last)]

    def intrusive(self, last: int | None = None) -> np.ndarray:
        """Whether each of the last ``last`` records was scored against a clean reference."""
        return self._intrusive[self.slots(last)]

    def rewards(self, last: int | None = None) -> np.ndarray:
        """Rewards of the last ``last`` records (NaN for failures), oldest first."""
        return self._reward[self.slots(last)]

    def indices(self, last: int | None = None) -> np.ndarray:
        return self._index[self.slots(last)]

    def param_matrix(self, last: int | None = None, names: Iterable[str] | None = None) -> np.ndarray:
        """Physical parameters ``(n, len(names))`` (all parameter names by default)."""
        cols = [self._param_col[n] for n in (names or self.param_names)]
        return self._params[self.slots(last)][:, cols]

    def feature_matrix(self, last: int | None = None) -> np.ndarray:
        """Normalized input features ``(n, n_features)``."""
        return self._features[self.slots(last)]

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(self._metrics)

    def metric(self, name: str, last: int | None = None, baseline: bool = False) -> np.ndarray:
        """One metric's values (NaN where absent) of the last ``last`` records."""
        table = self._baseline if baseline else self._metrics
        if name not in table:
            return np.full(len(self.slots(last)), np.nan)
        return table[name][self.slots(last)]

    def errors(self, last: int | None = None) -> list[tuple[int, str]]:
        """``(index, message)`` of the failed records among the last ``last``."""
        return [(int(self._index[s]), self._errors[int(s)]) for s in self.slots(last) if int(s) in self._errors]

    def to_dataframe(self, last: int | None = None):
        """A :class:`pandas.DataFrame`, one row per record, oldest first.

        Columns: ``index``, ``time``, ``ok``, ``error``, ``intrusive``, ``reward``, then
        ``params.<name>``, ``metrics.<name>``, ``baseline.<name>`` and ``features.<name>``.
        """
        import pandas as pd

        s = self.slots(last)
        columns: dict[str, Any] = {
            "index": self._index[s],
            "time": self._time[s],
            "ok": self._ok[s],
            "error": [self._errors.get(int(i)) for i in s],
            "intrusive": self._intrusive[s],
            "reward": self._reward[s],
        }
        columns.update({f"params.{n}": self._params[s, i] for i, n in enumerate(self.param_names)})
        columns.update({f"metrics.{n}": v[s] for n, v in self._metrics.items()})
        columns.update({f"baseline.{n}": v[s] for n, v in self._baseline.items()})
        columns.update({f"features.{n}": self._features[s, i] for i, n in enumerate(self.feature_names)})
        return pd.DataFrame(columns)

    # ------------------------------------------------------------------ persistence
    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The kept records, oldest first, as arrays plus JSON metadata (for :mod:`storage`)."""
        s = self.slots()
        arrays = {
            "history.index": self._index[s],
            "history.time": self._time[s],
            "history.reward": self._reward[s],
            "history.ok": self._ok[s],
            "history.intrusive": self._intrusive[s],
            "history.params": self._params[s],
            "history.features": self._features[s],
        }
        arrays.update({f"history.metrics.{n}": v[s] for n, v in self._metrics.items()})
        arrays.update({f"history.baseline.{n}": v[s] for n, v in self._baseline.items()})
        errors = {str(k): self._errors[int(slot)] for k, slot in enumerate(s) if int(slot) in self._errors}
        meta = {
            "capacity": self.capacity,
            "total": self.total,
            "param_names": list(self.param_names),
            "feature_names": list(self.feature_names),
            "metric_names": list(self._metrics),
            "baseline_names": list(self._baseline),
            "errors": errors,
        }
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], source: str = "file") -> "ProcessingHistory":
        """Rebuild a history from :meth:`to_arrays` output; :class:`LoopFileError` if inconsistent."""
        try:
            history = cls(int(meta["capacity"]), meta["param_names"], meta["feature_names"])
            n = int(arrays["history.index"].shape[0])
            total = int(meta["total"])
            if n > history.capacity or total < n:
                raise ValueError(f"{n} records for capacity {history.capacity} and total {total}")
            expected = {
                "history.params": (n, len(history.param_names)),
                "history.features": (n, len(history.feature_names)),
            }
            for key in ("history.time", "history.reward", "history.ok", "history.intrusive"):
                expected[key] = (n,)
            for prefix, names in (("metrics", meta["metric_names"]), ("baseline", meta["baseline_names"])):
                for name in names:
                    expected[f"history.{prefix}.{name}"] = (n,)
            for key, shape in expected.items():
                if arrays[key].shape != shape:
                    raise ValueError(f"{key} has shape {arrays[key].shape}, expected {shape}")
            slots = np.arange(total - n, total) % history.capacity
            history._index[slots] = arrays["history.index"]
            history._time[slots] = arrays["history.time"]
            history._reward[slots] = arrays["history.reward"]
            history._ok[slots] = arrays["history.ok"]
            history._intrusive[slots] = arrays["history.intrusive"]
            history._params[slots] = arrays["history.params"]
            history._features[slots] = arrays["history.features"]
            for name in meta["metric_names"]:
                history._column(history._metrics, name)[slots] = arrays[f"history.metrics.{name}"]
            for name in meta["baseline_names"]:
                history._column(history._baseline, name)[slots] = arrays[f"history.baseline.{name}"]
            history._errors = {int(slots[int(k)]): str(v) for k, v in meta["errors"].items()}
            history.total = total
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise LoopFileError(f"{source}: history is inconsistent ({type(exc).__name__}: {exc})") from exc
        return history
