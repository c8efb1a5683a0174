"""A bandit's statistics in Redis, shared by workers and machines (redis-py).

Layout, for a store named ``NAME`` (the braces keep every key in one Redis Cluster slot):

* ``bandit:{NAME}:stats``: a hash. ``meta`` = the policy's :class:`~bandits.state.StatsSpec` as JSON;
  ``updates`` = number of updates applied (integer); ``arm:ARM`` = that arm's statistics, flattened
  and concatenated in the spec's order, as little-endian float64 (``numpy.frombuffer(value, "<f8")``).
* ``bandit:{NAME}:writers``: a hash, writer id -> sequence number of its last applied update.
* ``bandit:{NAME}:window``: a list, the sliding window of windowed updates, oldest first; each entry is
  the arm (one float64) followed by that update's deltas (as an ``arm:ARM`` field).

The hash also holds ``discount`` and ``window`` (from the spec) and, for discounted statistics,
``stamp:ARM``: the update count the arm's row is as of (the discount is applied lazily, see
:mod:`bandits.state`). Every :class:`~bandits.state.Update` is applied by one Lua script, atomically:
catch the arm up on the discount, add the deltas, push to the window and subtract what falls out,
count. Lua numbers are IEEE doubles, ``^`` is C's ``pow``, and the script does the same operations in
the same order as :class:`~bandits.state.InMemoryStateStore`: either store gives bit-identical
statistics.

Each update carries ``(writer, seq)``; the script skips a sequence number it has already applied, so
an update sent again after a timeout (which Redis may or may not have executed) counts once.

When Redis cannot be reached, :class:`~bandits.state.StateStoreUnavailable` is raised and the updates
not yet stored stay in :attr:`RedisStateStore.pending`: they are sent first on the next call that
reaches Redis (or written out with :meth:`save_pending` and queued again with :meth:`load_pending`).
A worker recovering from an outage in a new process does, in this order: attach (build the policy),
``load_state_dict`` of a snapshot if Redis lost its data, :meth:`load_pending`, then new updates.
Nothing recorded is dropped, and the policy does not decide on stale data silently: ``read`` raises too.
Updates still buffered (``batch`` > 1) are sent by ``flush``/``close``, when the store is garbage
collected and at interpreter exit; a send that fails then only warns (``RuntimeWarning``).
"""

from __future__ import annotations

import json
import uuid
import warnings
import weakref
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import redis

from bandits.state import (
    StateStore,
    StateStoreError,
    StateStoreUnavailable,
    Stats,
    StatsSpec,
    Update,
    check_deltas,
    discounted_view,
)

_APPLY = r"""
-- KEYS: stats hash, writers hash, window list
-- ARGV[1]: one header per update, ';'-separated, applied in order: 'writer|seq|arm|size'
--          (size: float64 values per arm); ARGV[2]: their deltas one after another (each `size`
--          little-endian float64, the arm's statistics in spec order). Returns {applied, skipped}.
local stats, writers, window = KEYS[1], KEYS[2], KEYS[3]
local conf = redis.call('HMGET', stats, 'meta', 'discount', 'window')
if not conf[1] then
  return redis.error_reply('NOSTATE ' .. stats .. ' has no bandit state (never attached, or Redis lost its data)')
end
local discount, window_size = tonumber(conf[2]), tonumber(conf[3])

local function unpack_row(fmt, size, blob, pos)
  local v = {struct.unpack(fmt, blob, pos)}
  v[size + 1] = nil  -- struct.unpack also returns the next position
  return v
end

local function apply_one(header, blobs, at)
  local writer, seq, arm, size = string.match(header, '^([^|]+)|(%d+)|(%d+)|(%d+)$')
  seq, size = tonumber(seq), tonumber(size)
  local next_at = at + 8 * size
  local last = redis.call('HGET', writers, writer)
  if last and seq <= tonumber(last) then return 0, next_at end
  local fmt = '<' .. string.rep('d', size)
  local deltas = string.sub(blobs, at, next_at - 1)
  local row = redis.call('HMGET', stats, 'updates', 'arm:' .. arm, 'stamp:' .. arm)
  local t = tonumber(row[1]) + 1
  local v = unpack_row(fmt, size, row[2], 1)
  if discount > 0 then  -- lazy: catch this arm up on the discounts since it was last touched
    local f = discount ^ (t - tonumber(row[3]))
    for i = 1, size do v[i] = v[i] * f end
    redis.call('HSET', stats, 'stamp:' .. arm, t)
  end
  local d = unpack_row(fmt, size, deltas, 1)
  for i = 1, size do v[i] = v[i] + d[i] end
  redis.call('HSET', stats, 'arm:' .. arm, struct.pack(fmt, unpack(v, 1, size)))
  if window_size > 0 then
    redis.call('RPUSH', window, struct.pack('<d', tonumber(arm)) .. deltas)
    while redis.call('LLEN', window) > window_size do
      local old = redis.call('LPOP', window)
      local old_arm, pos = struct.unpack('<d', old)
      local field = 'arm:' .. string.format('%d', old_arm)
      local w = unpack_row(fmt, size, redis.call('HGET', stats, field), 1)
      local od = unpack_row(fmt, size, old, pos)
      for i = 1, size do w[i] = w[i] - od[i] end
      redis.call('HSET', stats, field, struct.pack(fmt, unpack(w, 1, size)))
    end
  end
  redis.call('HSET', stats, 'updates', t)
  redis.call('HSET', writers, writer, seq)
  return 1, next_at
end

local applied, skipped, at = 0, 0, 1
for header in string.gmatch(ARGV[1], '[^;]+') do
  local ok
  ok, at = apply_one(header, ARGV[2], at)
  if ok == 1 then applied = applied + 1 else skipped = skipped + 1 end
end
return {applied, skipped}
"""

_ATTACH = r"""
local meta = redis.call('HGET', KEYS[1], 'meta')
if meta then return meta end
redis.call('HSET', KEYS[1], 'meta', ARGV[1], 'updates', 0)
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return ARGV[1]
"""

_RESTORE = r"""
redis.call('DEL', KEYS[1], KEYS[3])
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""

_CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError)

#: Updates sent in one script call (one round trip) when several are buffered.
UPDATES_PER_CALL = 500

#: Numbers per arm the Lua script unpacks in one call (Lua 5.1's stack limit is 8,000): LinUCB up to 82 dims.
MAX_DOUBLES_PER_ARM = 7000


def _concat(parts: list) -> bytes:
    """Little-endian float64 bytes of the flattened parts, one after another."""
    return np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1) for p in parts]).astype("<f8").tobytes()


def _send_chunk(apply: Any, keys: list[str], pending: list[list[Any]]) -> int:
    """Apply the oldest :data:`UPDATES_PER_CALL` of ``pending`` in one script call and remove them from it;
    returns how many Redis skipped as resends. On an error nothing is removed."""
    chunk = pending[:UPDATES_PER_CALL]
    headers, blobs = ";".join(u[0] for u in chunk), b"".join(u[1] for u in chunk)
    _, skipped = apply(keys=keys, args=[headers, blobs])
    del pending[: len(chunk)]
    return int(skipped)


def _store_left_over(apply: Any, keys: list[str], pending: list[list[Any]], name: str) -> None:
    """Finalizer of a store (garbage collection, interpreter exit): send what is still buffered, or warn."""
    try:
        while pending:
            _send_chunk(apply, keys, pending)
    except (redis.RedisError, OSError) as e:
        warnings.warn(f"RedisStateStore {name!r} dropped (garbage collection or exit) with {len(pending)} update(s) "
                      f"it could not store ({type(e).__name__}: {e}); close() or save_pending() before", RuntimeWarning)


class RedisStateStore(StateStore):
    """Statistics of one bandit in Redis; updates applied by a Lua script, indices computed here.

    :param name: the shared bandit's name; workers with the same name (and policy spec) share it.
    :param client: a ``redis.Redis`` (``decode_responses=False``); its timeouts and retry policy apply
        (retries are safe: a resent update counts once). Or give ``url``.
    :param url: e.g. ``redis://127.0.0.1:6379/0``, used when ``client`` is None (2 s timeouts and
        redis-py's default retries).
    :param writer: this worker's id; a restarted worker that reuses its id resumes its sequence
        numbers (and a duplicate resend is ignored). Default: a random UUID. A store never issues a
        number twice: re-attaching keeps its count, and :meth:`load_pending` refuses saved updates of
        this writer whose numbers it has already issued to new ones.
    :param batch: updates buffered before they are sent in one script call (1 = every update is stored
        before ``update`` returns). ``read`` (so every ``select``), ``flush`` and ``close`` send the buffer;
        so does the store's finalizer (garbage collection, normal interpreter exit; not ``os._exit`` or a
        kill). Batching pays when rewards arrive in bursts (delayed or logged feedback); end such a worker
        with ``close()`` or ``with RedisStateStore(...) as store:`` to see a failed send as an error.
    """

    def __init__(
        self,
        name: str,
        client: redis.Redis | None = None,
        *,
        url: str = "redis://127.0.0.1:6379/0",
        writer: str | None = None,
        batch: int = 1,
    ):
        if not name or any(c in name for c in "{}"):
            raise ValueError(f"store name must be non-empty without braces, got {name!r}")
        if writer is not None and (not writer or "|" in writer or ";" in writer):
            raise ValueError(f"writer id must be non-empty without '|' or ';', got {writer!r}")
        if int(batch) != batch or batch < 1:
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        self.name, self.batch = name, int(batch)
        if client is None:
            client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.client = client
        self.where = self._describe_client()
        base = f"bandit:{{{name}}}"
        self.keys = [f"{base}:stats", f"{base}:writers", f"{base}:window"]
        self.writer = writer or uuid.uuid4().hex
        self.spec: StatsSpec | None = None
        self.pending: list[list[Any]] = []  # script arguments of updates not yet stored, oldest first
        self.duplicates = 0  # resent updates Redis had already applied (and skipped)
        self._apply = self.client.register_script(_APPLY)
        self._attach = self.client.register_script(_ATTACH)
        self._restore = self.client.register_script(_RESTORE)
        self._seq = 0
        self._first_issued: int | None = None  # the first sequence number this store gave an update
        self._finalizer = weakref.finalize(self, _store_left_over, self._apply, self.keys, self.pending, name)

    def _describe_client(self) -> str:
        kw = self.client.connection_pool.connection_kwargs
        return f"redis://{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"

    def _unavailable(self, action: str, error: Exception) -> StateStoreUnavailable:
        return StateStoreUnavailable(
            f"Redis at {self.where} unreachable while {action} bandit {self.name!r} ({type(error).__name__}: {error}); "
            f"{len(self.pending)} update(s) not yet stored are kept in .pending and sent on the next call "
            "that reaches Redis (or save_pending(path))"
        )

    # ------------------------------------------------------------------ StateStore
    def attach(self, spec: StatsSpec) -> None:
        size = sum(spec.sizes().values())
        if size > MAX_DOUBLES_PER_ARM:
            raise StateStoreError(f"{spec.policy} keeps {size} numbers per arm; Redis store limit: {MAX_DOUBLES_PER_ARM}")
        fields = {f"arm:{a}": np.zeros(size, "<f8").tobytes() for a in range(spec.n_arms)}
        fields.update({f"stamp:{a}": 0 for a in range(spec.n_arms) if spec.discount is not None})
        fields.update(discount=repr(spec.discount or 0.0), window=spec.window or 0)
        args = [spec.to_json()] + [x for kv in fields.items() for x in kv]
        try:
            stored = self._attach(keys=self.keys, args=args)
            last = self.client.hget(self.keys[1], self.writer)
        except _CONNECTION_ERRORS as e:
            raise self._unavailable("attaching to", e) from e
        stored = stored.decode() if isinstance(stored, bytes) else stored
        if stored != spec.to_json():
            holds = f"Redis bandit {self.name!r} at {self.where} holds {stored}"
            raise StateStoreError(f"{holds}; this policy: {spec.to_json()}")
        self.spec = spec
        self._size = size
        self._seq = max(self._seq, int(last or 0))  # after Redis lost the data, pending updates keep theirs

    def _fetch(self, with_window: bool = False) -> tuple[dict[bytes, bytes], np.ndarray, list[bytes]]:
        """Send the pending updates, then read the stats hash, its arm rows ``(n_arms, size)`` and the window
        (hash and window in one MULTI/EXEC: one snapshot, whatever other workers write)."""
        self.flush()
        try:
            if with_window:
                pipe = self.client.pipeline(transaction=True)
                raw, window = pipe.hgetall(self.keys[0]).lrange(self.keys[2], 0, -1).execute()
            else:
                raw, window = self.client.hgetall(self.keys[0]), []
        except _CONNECTION_ERRORS as e:
            raise self._unavailable("reading", e) from e
        if b"meta" not in raw:
            raise StateStoreError(f"Redis at {self.where} has no state for bandit {self.name!r} (Redis lost its data?)")
        rows = np.stack([np.frombuffer(raw[f"arm:{a}".encode()], "<f8") for a in range(self.spec.n_arms)])
        return raw, rows, window

    def read(self) -> Stats:
        raw, rows, _ = self._fetch()
        arrays, updates = self._split(rows), int(raw[b"updates"])
        if self.spec.discount is not None:
            arrays = discounted_view(arrays, self._stamps(raw), updates, self.spec.discount)
        return Stats(arrays, updates)

    def _stamps(self, raw: Mapping[bytes, bytes]) -> np.ndarray:
        if self.spec.discount is None:
            return np.zeros(self.spec.n_arms, dtype=np.int64)
        return np.array([int(raw[f"stamp:{a}".encode()]) for a in range(self.spec.n_arms)], dtype=np.int64)

    def _split(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """``(n, size)`` concatenated statistics -> ``{name: (n, *shape)}``."""
        arrays, pos = {}, 0
        for name, shape in self.spec.shapes.items():
            size = int(np.prod(shape, dtype=np.int64))
            arrays[name] = rows[:, pos : pos + size].reshape((rows.shape[0], *shape))
            pos += size
        return arrays

    def apply(self, update: Update) -> None:
        deltas = check_deltas(self.spec, update)
        self._seq += 1
        if self._first_issued is None:
            self._first_issued = self._seq
        blob = _concat(list(deltas.values()))
        head = f"{self.writer}|{self._seq}|{int(update.arm)}|{self._size}"
        self.pending.append([head, blob])
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        """Send the buffered updates (one script call per :data:`UPDATES_PER_CALL`); on failure the
        ones not yet stored stay in :attr:`pending`."""
        while self.pending:
            try:
                self.duplicates += _send_chunk(self._apply, self.keys, self.pending)
            except _CONNECTION_ERRORS as e:
                raise self._unavailable("storing updates of", e) from e
            except redis.ResponseError as e:
                # nothing of this call was applied (the state check comes before any write)
                refused = f"Redis at {self.where} refused updates of bandit {self.name!r}: {e}"
                raise StateStoreError(f"{refused}; {len(self.pending)} kept in .pending") from e

    def close(self) -> None:
        """Store the buffered updates (:meth:`flush`: raises if Redis cannot take them). The client stays
        open: it may be shared."""
        self.flush()

    def __enter__(self) -> "RedisStateStore":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def dump(self) -> dict[str, Any]:
        raw, rows, window = self._fetch(with_window=True)
        entries = []
        for blob in window:
            values = np.frombuffer(blob, "<f8")
            deltas = self._split(values[None, 1:])
            entries.append([int(values[0]), {name: d[0].tolist() for name, d in deltas.items()}])
        return {
            "spec": self.spec.to_json(),
            "arrays": {name: a.tolist() for name, a in self._split(rows).items()},
            "stamps": self._stamps(raw).tolist(),
            "updates": int(raw[b"updates"]),
            "window": entries,
        }

    def restore(self, dump: Mapping[str, Any]) -> None:
        """Overwrite the shared statistics (and window) with ``dump``. Writer sequence numbers stay, and
        :attr:`pending` updates stay queued: they are applied on top of the restored state."""
        self._check_dump(dump)
        spec = self.spec
        fields: list[Any] = ["meta", spec.to_json(), "updates", int(dump["updates"])]
        fields += ["discount", repr(spec.discount or 0.0), "window", spec.window or 0]
        for a in range(spec.n_arms):
            fields += [f"arm:{a}", _concat([dump["arrays"][name][a] for name in spec.shapes])]
            if spec.discount is not None:
                fields += [f"stamp:{a}", int(dump["stamps"][a])]
        blobs = [_concat([[float(arm)]] + [deltas[n] for n in self.spec.shapes]) for arm, deltas in dump["window"]]
        try:
            pipe = self.client.pipeline(transaction=True)
            self._restore(keys=self.keys, args=fields, client=pipe)
            if blobs:
                pipe.rpush(self.keys[2], *blobs)
            pipe.execute()
        except _CONNECTION_ERRORS as e:
            raise self._unavailable("restoring", e) from e

    # ------------------------------------------------------------------ outages and inspection
    def save_pending(self, path: str | Path) -> int:
        """Write the updates not yet stored to ``path`` (JSON); returns how many."""
        rows = [[a.hex() if isinstance(a, bytes) else a for a in args] for args in self.pending]
        Path(path).write_text(json.dumps({"store": self.name, "writer": self.writer, "pending": rows}))
        return len(rows)

    def load_pending(self, path: str | Path) -> int:
        """Queue the updates saved by :meth:`save_pending` (same store) ahead of this store's own. Call it
        before this store records updates: saved ones of this writer whose sequence numbers it has issued
        since would be skipped by Redis as resends, so they are refused (``StateStoreError``)."""
        saved = json.loads(Path(path).read_text())
        if saved.get("store") != self.name:
            raise StateStoreError(f"{path}: pending updates are for bandit {saved.get('store')!r}, not {self.name!r}")
        rows = [[head, bytes.fromhex(blob)] for head, blob in saved["pending"]]
        mine = [int(head.split("|")[1]) for head, _ in rows if head.split("|")[0] == self.writer]
        issued = [] if self._first_issued is None else [s for s in mine if self._first_issued <= s <= self._seq]
        if issued:
            raise StateStoreError(
                f"{path}: saved updates of writer {self.writer!r} have sequence numbers {issued}, already issued "
                f"by this store to new updates ({self._first_issued}..{self._seq}): Redis would skip one of each "
                "pair; call load_pending before recording new updates (attach, restore, load_pending, update)"
            )
        self._seq = max([self._seq, *mine])  # later updates of this writer must not reuse those numbers
        self.pending[:0] = rows
        return len(rows)

    def writer_sequence(self) -> int:
        """Sequence number of this writer's last update handed to the store (stored or pending)."""
        return self._seq

    def delete(self) -> None:
        """Remove this bandit's keys from Redis."""
        try:
            self.client.delete(*self.keys)
        except _CONNECTION_ERRORS as e:
            raise self._unavailable("deleting", e) from e
