"""A bounded memo for pure results (filter designs, spectral scores), shared by every copy of its owner.

A replay deep-copies the pipeline once per scored candidate (``feedback_loop.replay.snapshot``); copying a
cache that a search has filled with hundreds of notch designs made each copy about 20 times dearer. The
entries depend only on their key, never on the owner's state, so copies may share one cache.
"""

from __future__ import annotations

from typing import Any, Hashable


class SharedCache:
    """``key -> value`` memo holding at most ``max_entries`` (cleared when full); ``copy.deepcopy`` of an
    object that holds one shares it rather than copying it. Store only values nobody mutates."""

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
