"""A bounded memo for pure results (filter designs, spectral scores), shared by every copy of its owner.

A search scores many candidates on one chunk: each is a deep copy of the pipeline (``feedback_loop.replay``)
re-processing the same input against the same reference. What only depends on those (a notch design, a
block's hum scores, the reference's spectrum) is computed once and memoized. A replay's copy of the
pipeline shares the memo rather than copying it: copying a cache that a search had filled with hundreds
of notch designs made each copy many times dearer (``benchmarks/feedback_loop.py``'s ``gradient_0.5s_hum``
row times the updates it slowed).
"""

from __future__ import annotations

from typing import Any, Hashable


class SharedCache:
    """``key -> value`` memo holding at most ``max_entries`` (cleared when full); ``copy.deepcopy`` of an
    object that holds one shares it rather than copying it. Every caller gets the same value: store only
    values nobody mutates (mark arrays read-only where their consumers allow it; scipy's ``sosfilt`` wants
    a writable ``sos``)."""

    def __init__(self, max_entries: int):
        self.max_entries = int(max_entries)
        self._entries: dict[Hashable, Any] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Any:
        """The stored value, or None."""
        return self._entries.get(key)

    def put(self, key: Hashable, value: Any) -> Any:
        """Store ``value`` under ``key`` (clearing the cache first when it is full); returns ``value``."""
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = value
        return value

    def __deepcopy__(self, memo: dict) -> "SharedCache":
        return self
