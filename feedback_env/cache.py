"""A bounded memo for pure results (filter designs, spectral scores), shared by every copy of its owner.

A search scores many candidates on one chunk: each is a deep copy of the pipeline (``feedback_loop.replay``)
re-processing the same input against the same reference. What only depends on those (a notch design, a
block's hum scores, the reference's spectrum) is computed once and memoized. A replay's copy of the
pipeline shares the memo rather than copying it: copying a cache that a search had filled with hundreds
of notch designs made each copy many times dearer (``benchmarks/feedback_loop.py``'s ``gradient_0.5s_hum``
row times the updates it slowed).

Pickled (a replay sent to a parallel evaluation's worker, ``feedback_loop.parallel``), a cache travels as its
name, without its entries: unpickled in the process that made it, it is that cache; in another, it is the one
cache of that name kept there (empty at first), so the worker's copies share and warm one memo as well.
"""

from __future__ import annotations

import itertools
import os
import weakref
from collections import OrderedDict
from typing import Any, Hashable

_NUMBERS = itertools.count()
_BY_NAME: "weakref.WeakValueDictionary[str, SharedCache]" = weakref.WeakValueDictionary()  # this process's caches
_ADOPTED: "OrderedDict[str, SharedCache]" = OrderedDict()  # caches met only through pickles, kept alive here
MAX_ADOPTED = 64  # of those, the most kept (the oldest go first): a worker meets the caches of a few pipelines


class SharedCache:
    """``key -> value`` memo holding at most ``max_entries`` (cleared when full); ``copy.deepcopy`` of an
    object that holds one shares it rather than copying it, and a pickle carries only its ``name`` (see the
    module docstring). Every caller gets the same value: store only values nobody mutates (mark arrays
    read-only where their consumers allow it; scipy's ``sosfilt`` wants a writable ``sos``)."""

    def __init__(self, max_entries: int, name: str | None = None):
        self.max_entries = int(max_entries)
        self.name = f"{os.getpid()}:{next(_NUMBERS)}" if name is None else name  # unique among processes alive
        self._entries: dict[Hashable, Any] = {}
        _BY_NAME[self.name] = self

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

    def __reduce__(self) -> tuple:
        return _cache_named, (self.name, self.max_entries)


def _cache_named(name: str, max_entries: int) -> SharedCache:
    """This process's cache called ``name``: the one it made, or one adopted (empty) for a name from elsewhere."""
    cache = _BY_NAME.get(name)
    if cache is None:
        cache = SharedCache(max_entries, name)
        _ADOPTED[name] = cache
        while len(_ADOPTED) > MAX_ADOPTED:
            _ADOPTED.popitem(last=False)
    return cache
