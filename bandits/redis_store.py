"""A bandit's statistics in Redis, shared by workers and machines (redis-py).

Layout, for a store named ``NAME`` (the braces keep every key in one Redis Cluster slot):

* ``bandit:{NAME}:stats``: a hash. ``meta`` = the policy's :class:`~bandits.state.StatsSpec` as JSON;
  ``updates`` = number of updates applied (integer); ``STAT:ARM`` = that arm's statistic as
  little-endian float64 values (``numpy.frombuffer(value, "<f8")``).
* ``bandit:{NAME}:writers``: a hash, writer id -> sequence number of its last applied update.
* ``bandit:{NAME}:window``: a list, the sliding window of windowed updates (oldest first).

Every :class:`~bandits.state.Update` is applied by one Lua script, atomically: discount every array,
add the deltas, push to the window and subtract what falls out, count. Lua numbers are IEEE doubles
and the script does the same operations in the same order as :class:`InMemoryStateStore`, so a
bandit gives bit-identical statistics in either store.

Each update carries ``(writer, seq)``; the script skips a sequence number it has already applied, so
an update sent again after a timeout (which Redis may or may not have executed) counts once.

When Redis cannot be reached, :class:`~bandits.state.StateStoreUnavailable` is raised and the updates
not yet stored stay in :attr:`RedisStateStore.pending`: they are sent first on the next call that
reaches Redis (or written out with :meth:`save_pending` and queued again with :meth:`load_pending`).
Nothing recorded is dropped, and the policy does not decide on stale data silently: ``read`` raises too.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import redis

from bandits.state import StateStore, StateStoreError, StateStoreUnavailable, Stats, StatsSpec, Update, check_deltas

_APPLY = r"""
-- KEYS: stats hash, writers hash, window list
-- ARGV[1]: 'writer|seq|discount|window|arm|n_arms|name:size;name:size...' (discount, window: 0 = none)
-- ARGV[2]: the deltas, every statistic's float64 values (little-endian) in layout order
local stats, writers, window = KEYS[1], KEYS[2], KEYS[3]
local writer, seq, discount, window_size, arm, n_arms, layout =
  string.match(ARGV[1], '^([^|]+)|([^|]+)|([^|]+)|([^|]+)|([^|]+)|([^|]+)|(.+)$')
seq, discount, window_size = tonumber(seq), tonumber(discount), tonumber(window_size)
arm, n_arms = tonumber(arm), tonumber(n_arms)
local last = redis.call('HGET', writers, writer)
if last and seq <= tonumber(last) then return 0 end
local names, sizes = {}, {}
for name, size in string.gmatch(layout, '([^:;]+):(%d+)') do
  names[#names + 1], sizes[#sizes + 1] = name, tonumber(size)
end

local function fields_of(a)
  local f = {}
  for s = 1, #names do f[s] = names[s] .. ':' .. a end
  return f
end
-- rows[s][i]: the arm's statistics; deltas are read from `blob` at `pos`; sign is +1 or -1
local function add_blob(rows, blob, pos, sign)
  for s = 1, #names do
    local row = rows[s]
    for i = 1, sizes[s] do
      local d
      d, pos = struct.unpack('<d', blob, pos)
      row[i] = row[i] + sign * d
    end
  end
  return pos
end
local function load(a)
  local blobs = redis.call('HMGET', stats, unpack(fields_of(a)))
  local rows = {}
  for s = 1, #names do
    if not blobs[s] then
      error('NOSTATE ' .. stats .. ' has no statistic ' .. names[s] .. ':' .. a .. ' (never attached, or Redis lost its data)')
    end
    local row, pos = {}, 1
    for i = 1, sizes[s] do row[i], pos = struct.unpack('<d', blobs[s], pos) end
    rows[s] = row
  end
  return rows
end
local function store(a, rows)
  local args, f = {}, fields_of(a)
  for s = 1, #names do
    local parts = {}
    for i = 1, sizes[s] do parts[i] = struct.pack('<d', rows[s][i]) end
    args[2 * s - 1], args[2 * s] = f[s], table.concat(parts)
  end
  redis.call('HSET', stats, unpack(args))
end

if discount > 0 then
  for a = 0, n_arms - 1 do
    if a ~= arm then
      local rows = load(a)
      for s = 1, #names do for i = 1, sizes[s] do rows[s][i] = rows[s][i] * discount end end
      store(a, rows)
    end
  end
end
local rows = load(arm)
if discount > 0 then
  for s = 1, #names do for i = 1, sizes[s] do rows[s][i] = rows[s][i] * discount end end
end
add_blob(rows, ARGV[2], 1, 1)
store(arm, rows)
if window_size > 0 then
  redis.call('RPUSH', window, struct.pack('<d', arm) .. ARGV[2])
  while redis.call('LLEN', window) > window_size do
    local old = redis.call('LPOP', window)
    local old_arm, pos = struct.unpack('<d', old, 1)
    local old_rows = load(old_arm)
    add_blob(old_rows, old, pos, -1)
    store(old_arm, old_rows)
  end
end
redis.call('HINCRBY', stats, 'updates', 1)
redis.call('HSET', writers, writer, seq)
return 1
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


class RedisStateStore(StateStore):
    """Statistics of one bandit in Redis; updates applied by a Lua script, indices computed here.

    :param name: the shared bandit's name; workers with the same name (and policy spec) share it.
    :param client: a ``redis.Redis`` (``decode_responses=False``); its timeouts and retry policy apply
        (retries are safe: a resent update counts once). Or give ``url``.
    :param url: e.g. ``redis://127.0.0.1:6379/0``, used when ``client`` is None (2 s timeouts and
        redis-py's default retries).
    :param writer: this worker's id; a restarted worker that reuses its id resumes its sequence
        numbers (and a duplicate resend is ignored). Default: a random UUID.
    :param batch: updates buffered before they are sent in one pipeline (1 = every update is stored
        before ``update`` returns). ``read`` and ``flush`` send the buffer first.
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
        if writer is not None and (not writer or "|" in writer):
            raise ValueError(f"writer id must be non-empty without '|', got {writer!r}")
        if int(batch) != batch or batch < 1:
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        self.name, self.batch = name, int(batch)
        self.client = client if client is not None else redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
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
        zero = {f"{n}:{a}": np.zeros(size, "<f8").tobytes() for n, size in spec.sizes().items() for a in range(spec.n_arms)}
        args = [spec.to_json()] + [x for kv in zero.items() for x in kv]
        try:
            stored = self._attach(keys=self.keys, args=args)
            last = self.client.hget(self.keys[1], self.writer)
        except _CONNECTION_ERRORS as e:
            raise self._unavailable("attaching to", e) from e
        stored = stored.decode() if isinstance(stored, bytes) else stored
        if stored != spec.to_json():
            raise StateStoreError(f"Redis bandit {self.name!r} at {self.where} holds {stored}; this policy is {spec.to_json()}")
        self.spec = spec
        self._layout = ";".join(f"{n}:{size}" for n, size in spec.sizes().items())
        self._seq = int(last or 0)

    def read(self) -> Stats:
        self.flush()
        try:
            raw = self.client.hgetall(self.keys[0])
        except _CONNECTION_ERRORS as e:
            raise self._unavailable("reading", e) from e
        if b"meta" not in raw:
            raise StateStoreError(f"Redis at {self.where} has no state for bandit {self.name!r} (Redis lost its data?)")
        arrays = {}
        for name, shape in self.spec.shapes.items():
            rows = [np.frombuffer(raw[f"{name}:{a}".encode()], "<f8").reshape(shape) for a in range(self.spec.n_arms)]
            arrays[name] = np.stack(rows)
        return Stats(arrays, int(raw[b"updates"]))

    def apply(self, update: Update) -> None:
        deltas = check_deltas(self.spec, update)
        self._seq += 1
        blob = b"".join(np.ascontiguousarray(d, "<f8").tobytes() for d in deltas.values())
        discount = repr(float(update.discount)) if update.discount is not None else "0"
        head = f"{self.writer}|{self._seq}|{discount}|{int(update.window or 0)}|{int(update.arm)}|{self.spec.n_arms}|{self._layout}"
        self.pending.append([head, blob])
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        """Send the buffered updates in one pipeline; on failure they stay in :attr:`pending`."""
        if not self.pending:
            return
        try:
            if len(self.pending) == 1:
                try:
                    results = [self._apply(keys=self.keys, args=self.pending[0])]
                except redis.ResponseError as e:
                    results = [e]
            else:
                if not self.client.script_exists(self._apply.sha)[0]:
                    self._apply.sha = self.client.script_load(_APPLY)
                pipe = self.client.pipeline(transaction=False)
                for args in self.pending:
                    pipe.execute_command("EVALSHA", self._apply.sha, 3, *self.keys, *args)
                results = pipe.execute(raise_on_error=False)
        except _CONNECTION_ERRORS as e:
            raise self._unavailable("storing updates of", e) from e
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            # applied ones are recorded under their sequence numbers, so a resend skips them
            raise StateStoreError(f"Redis at {self.where} refused updates of bandit {self.name!r}: {failed[0]}; {len(self.pending)} kept in .pending")
        self.duplicates += sum(1 for r in results if r == 0)
        self.pending.clear()

    def dump(self) -> dict[str, Any]:
        stats = self.read()
        try:
            window = self.client.lrange(self.keys[2], 0, -1)
        except _CONNECTION_ERRORS as e:
            raise self._unavailable("reading", e) from e
        sizes = self.spec.sizes()
        entries = []
        for blob in window:
            values = np.frombuffer(blob, "<f8")
            arm, pos, deltas = int(values[0]), 1, {}
            for name, shape in self.spec.shapes.items():
                deltas[name] = values[pos : pos + sizes[name]].reshape(shape).tolist()
                pos += sizes[name]
            entries.append([arm, deltas])
        return {
            "spec": self.spec.to_json(),
            "arrays": {name: a.tolist() for name, a in stats.arrays.items()},
            "updates": stats.updates,
            "window": entries,
        }

    def restore(self, dump: Mapping[str, Any]) -> None:
        """Overwrite the shared statistics (and window) with ``dump``. Writer sequence numbers stay, and
        :attr:`pending` updates stay queued: they are applied on top of the restored state."""
        self._check_dump(dump)
        fields: list[Any] = ["meta", self.spec.to_json(), "updates", int(dump["updates"])]
        for name in self.spec.shapes:
            for a, row in enumerate(dump["arrays"][name]):
                fields += [f"{name}:{a}", np.asarray(row, "<f8").tobytes()]
        blobs = [
            np.concatenate([[float(arm)]] + [np.asarray(deltas[n], "<f8").reshape(-1) for n in self.spec.shapes]).astype("<f8").tobytes()
            for arm, deltas in dump["window"]
        ]
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
        """Queue the updates saved by :meth:`save_pending` (same store) ahead of this store's own."""
        saved = json.loads(Path(path).read_text())
        if saved.get("store") != self.name:
            raise StateStoreError(f"{path}: pending updates are for bandit {saved.get('store')!r}, not {self.name!r}")
        rows = [[head, bytes.fromhex(blob)] for head, blob in saved["pending"]]
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
