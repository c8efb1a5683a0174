"""Shared bandit state in a real Redis: atomic updates from several processes, restart, outage.

The tests start Debian's ``redis-server`` themselves on a free loopback port (no persistence) and stop
it after. Without the binary they fail under CI (``CI`` set) and skip elsewhere, saying why.
"""

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

redis = pytest.importorskip("redis")

from redis.backoff import NoBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402

from bandits import (  # noqa: E402
    EXP3,
    UCB1,
    DiscountedUCB,
    LinUCB,
    SlidingWindowUCB,
    StateStoreError,
    StateStoreUnavailable,
    ThompsonSampling,
)
from bandits.redis_server import LocalRedisServer  # noqa: E402
from bandits.redis_store import RedisStateStore  # noqa: E402
from bandits.regret import BernoulliBandit, LinearContextualBandit, play  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def start_server(directory: Path) -> LocalRedisServer:
    """A fresh local redis-server; without the binary: fail under CI (``CI`` set), skip elsewhere."""
    try:
        server = LocalRedisServer(directory)
    except FileNotFoundError as e:
        if os.environ.get("CI"):
            pytest.fail(f"{e}; .ci/run installs it, so these tests must run in CI")
        pytest.skip(f"{e}: the shared-state tests need a real server")
    return server.start()


def impatient_client(server: LocalRedisServer) -> "redis.Redis":
    """Fails within 0.3 s, no retries: outage tests stay fast (retrying is safe, only slower)."""
    return server.client(socket_timeout=0.3, socket_connect_timeout=0.3, retry=Retry(NoBackoff(), 0))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("redis"))
    yield srv
    srv.stop()


@pytest.fixture
def own_server(tmp_path):
    srv = start_server(tmp_path / "redis")
    yield srv
    srv.stop()


WORKER = r"""
import sys
import numpy as np
import redis
from bandits import UCB1, DiscountedUCB, SlidingWindowUCB
from bandits.redis_store import RedisStateStore

port, name, writer, kind = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[6]
n, seed = int(sys.argv[4]), int(sys.argv[5])
make = {
    "ucb1": lambda store: UCB1(3, seed=seed, store=store),
    "ducb": lambda store: DiscountedUCB(3, gamma=0.99, seed=seed, store=store),
    "swucb": lambda store: SlidingWindowUCB(3, window=100, seed=seed, store=store),
}[kind]
store = RedisStateStore(name, redis.Redis(port=port), writer=writer)
policy = make(store)
means = [0.1, 0.2, 0.9]
rng = np.random.default_rng(seed)
print("start", store.writer_sequence(), flush=True)
while store.writer_sequence() < n:
    arm = policy.select()
    policy.update(arm, float(rng.random() < means[arm]))
    print("arm", arm, store.writer_sequence(), flush=True)
"""


def start_worker(server, name, writer, n, seed, kind="ucb1"):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-c", WORKER, str(server.port), name, writer, str(n), str(seed), kind]
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def test_redis_and_memory_stores_give_identical_decisions(server):
    """The Lua script does the in-memory arithmetic in the same order: bit-identical statistics."""
    bern = BernoulliBandit([0.3, 0.6, 0.5]).sample(300, np.random.default_rng(0))
    ctx = LinearContextualBandit([[0.8, -0.6, 0.0], [0.2, 0.6, 0.0], [0.1, 0.3, 0.5]]).sample(200, np.random.default_rng(1))
    makers = {
        "ucb1": (lambda store: UCB1(3, seed=1, store=store), bern),
        "ducb": (lambda store: DiscountedUCB(3, gamma=0.97, seed=1, store=store), bern),
        "swucb": (lambda store: SlidingWindowUCB(3, window=40, seed=1, store=store), bern),
        "ts": (lambda store: ThompsonSampling(3, seed=1, store=store), bern),
        "exp3": (lambda store: EXP3(3, horizon=300, seed=1, store=store), bern),
        "linucb": (lambda store: LinUCB(3, 3, seed=1, store=store), ctx),
    }
    client = server.client()
    for name, (make, instance) in makers.items():
        local, shared = make(None), make(RedisStateStore(f"identical-{name}", client))
        assert np.array_equal(play(local, instance), play(shared, instance)), name
        a, b = local.store.read(), shared.store.read()
        assert a.updates == b.updates == instance.horizon
        for stat in a.arrays:
            assert np.array_equal(a[stat], b[stat]), (name, stat)
        assert local.state_dict()["stats"] == shared.state_dict()["stats"], name


def test_four_processes_share_one_bandit_without_losing_an_update(server):
    workers = [start_worker(server, "shared-ucb1", f"w{i}", 1000, seed=i) for i in range(4)]
    for proc in workers:
        finish(proc)
    policy = UCB1(3, store=RedisStateStore("shared-ucb1", server.client()))
    stats = policy.store.read()
    assert stats.updates == 4000
    assert stats["count"].sum() == 4000.0
    assert stats["count"].argmax() == 2  # they learnt together which arm pays
    writers = server.client().hgetall("bandit:{shared-ucb1}:writers")
    assert {k.decode(): int(v) for k, v in writers.items()} == {f"w{i}": 1000 for i in range(4)}


def test_discounted_and_windowed_updates_are_atomic_across_processes(server):
    workers = [start_worker(server, "shared-ducb", f"d{i}", 250, seed=i, kind="ducb") for i in range(4)]
    workers += [start_worker(server, "shared-swucb", f"s{i}", 250, seed=i, kind="swucb") for i in range(4)]
    for proc in workers:
        finish(proc)
    ducb = DiscountedUCB(3, gamma=0.99, store=RedisStateStore("shared-ducb", server.client())).store.read()
    # whatever the interleaving, 1000 discount-then-add steps leave sum_k 0.99^k in the counts
    assert ducb.updates == 1000
    assert ducb["count"].sum() == pytest.approx((1 - 0.99**1000) / (1 - 0.99), rel=1e-9)
    sw = SlidingWindowUCB(3, window=100, store=RedisStateStore("shared-swucb", server.client()))
    dump = sw.state_dict()["stats"]
    assert dump["updates"] == 1000 and len(dump["window"]) == 100
    stats = sw.store.read()
    assert stats["count"].sum() == 100.0
    for arm in range(3):  # the sums are exactly those of the 100 updates left in the window
        in_window = [d for a, d in dump["window"] if a == arm]
        assert stats["count"][arm] == len(in_window)
        assert stats["reward_sum"][arm] == sum(d["reward_sum"] for d in in_window)


def test_a_worker_killed_mid_run_resumes_from_the_stored_state(server):
    proc = start_worker(server, "restart", "worker", 1000, seed=3)
    for line in proc.stdout:
        if line.startswith("arm") and int(line.split()[2]) >= 300:
            break
    proc.kill()
    proc.wait()
    stored = int(server.client().hget("bandit:{restart}:writers", "worker"))
    assert 300 <= stored < 1000

    restarted = start_worker(server, "restart", "worker", 1000, seed=4)
    lines = finish(restarted).splitlines()
    assert lines[0] == f"start {stored}"  # it picked up its own sequence number from Redis
    arms = [int(line.split()[1]) for line in lines[1:]]
    assert len(arms) == 1000 - stored
    # it resumed with what was learnt: the best arm at once (a fresh UCB1 would explore all three)
    assert np.mean(np.array(arms[:50]) == 2) >= 0.8
    stats = UCB1(3, store=RedisStateStore("restart", server.client())).store.read()
    assert stats.updates == 1000 and stats["count"].sum() == 1000.0


def test_redis_going_away_loses_nothing_recorded(own_server, tmp_path):
    """Kill the server mid-run: a clear error, the unsent update kept, no decision on stale state;
    after a restart (empty: no persistence) a saved snapshot plus the pending updates give every count."""
    store = RedisStateStore("outage", impatient_client(own_server), writer="w")
    policy = UCB1(3, seed=0, store=store)
    for t in range(10):
        policy.update(t % 3, 0.5)
    snapshot = json.loads(json.dumps(policy.state_dict()))

    own_server.stop()
    with pytest.raises(StateStoreUnavailable, match=r"Redis at redis://.*unreachable.*1 update\(s\) not yet stored"):
        policy.update(1, 1.0)
    with pytest.raises(StateStoreUnavailable, match="2 update"):
        policy.update(2, 1.0)
    with pytest.raises(StateStoreUnavailable):
        policy.select()  # refuses to decide on data it cannot read
    assert len(store.pending) == 2
    saved = tmp_path / "pending.json"
    assert store.save_pending(saved) == 2

    own_server.start()  # same port, but empty: Redis kept nothing
    with pytest.raises(StateStoreError, match="lost its data"):
        store.flush()
    assert len(store.pending) == 2  # still kept

    # recovery in a new process: attach, restore the snapshot, replay the saved pending updates
    fresh = RedisStateStore("outage", own_server.client(), writer="w")
    recovered = UCB1(3, seed=0, store=fresh)
    recovered.load_state_dict(snapshot)
    assert fresh.load_pending(saved) == 2
    fresh.flush()
    stats = recovered.store.read()
    assert stats.updates == 12
    assert stats["count"].tolist() == [4.0, 4.0, 4.0] and stats["reward_sum"].tolist() == [2.0, 2.5, 2.5]
    recovered.update(0, 1.0)  # the writer carries on after its replayed updates, none skipped
    assert recovered.store.read().updates == 13 and fresh.duplicates == 0
    store.close()  # the old store's copies of the two updates count once
    assert store.duplicates == 2 and recovered.store.read().updates == 13


def test_a_paused_redis_counts_every_update_once(own_server):
    """SIGSTOP: the request in flight times out on the client but runs when Redis resumes; it is sent
    again with the same sequence number and counted once."""
    policy = UCB1(3, seed=0, store=RedisStateStore("paused", impatient_client(own_server), writer="w"))
    for t in range(5):
        policy.update(t % 3, 1.0)
    own_server.pause()
    failures = 0
    for t in range(3):
        try:
            policy.update(t % 3, 0.0)
        except StateStoreUnavailable:
            failures += 1
    assert failures == 3 and len(policy.store.pending) == 3
    own_server.resume()
    policy.update(0, 0.0)  # sends the three kept updates, then this one
    stats = policy.store.read()
    assert stats.updates == 9 and stats["count"].sum() == 9.0
    assert policy.store.pending == []
    assert policy.store.duplicates >= 1  # the first timed-out update had run after all, and was skipped


def test_workers_with_different_settings_cannot_share_a_bandit(server):
    UCB1(3, store=RedisStateStore("spec", server.client()))
    with pytest.raises(StateStoreError, match="holds"):
        UCB1(3, c=1.0, store=RedisStateStore("spec", server.client()))
    with pytest.raises(ValueError, match="braces"):
        RedisStateStore("a{b}", server.client())


def window_is_consistent(dump, n_arms, window):
    """Each arm's count and reward sum are those of its entries in the window, and the window has every update."""
    entries = [(arm, d) for arm, d in dump["window"]]
    counts = np.bincount([arm for arm, _ in entries], minlength=n_arms)
    sums = [sum(d["reward_sum"] for a, d in entries if a == arm) for arm in range(n_arms)]
    arrays = dump["arrays"]
    return (
        len(entries) == min(dump["updates"], window)
        and np.array_equal(arrays["count"], counts)
        and np.allclose(arrays["reward_sum"], sums, rtol=0, atol=1e-9)
    )


def test_a_windowed_snapshot_taken_while_another_worker_writes_is_one_snapshot(server):
    """state_dict() of a shared SW-UCB read the stats hash and the window in two calls: an update landing
    in between gave a window that did not match the sums (2/3 of snapshots under a busy writer), and
    loading it corrupted the sums for good. The snapshot is one transaction; restore refuses a mixed one."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-c", WORKER, str(server.port), "snapshot", "busy", "1000000", "0", "swucb"]
    writer = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    client = server.client()
    mine = SlidingWindowUCB(3, window=100, store=RedisStateStore("snapshot", client))
    try:
        while int(client.hget("bandit:{snapshot}:writers", "busy") or 0) < 200:  # the window is full and churning
            assert writer.poll() is None, writer.stderr.read()
        dumps = [mine.state_dict()["stats"] for _ in range(200)]
        assert writer.poll() is None  # it was writing all along
    finally:
        writer.kill()
        writer.wait()
    assert dumps[-1]["updates"] > dumps[0]["updates"]
    assert all(window_is_consistent(d, 3, 100) for d in dumps)

    mixed = json.loads(json.dumps(dumps[-1]))
    mine.store.restore(mixed)
    mixed["window"][0][0] = (mixed["window"][0][0] + 1) % 3  # one entry on another arm than in the sums
    with pytest.raises(StateStoreError, match=r"arm \d's count is .* but its window entries sum to"):
        mine.store.restore(mixed)
    assert window_is_consistent(mine.store.dump(), 3, 100)  # the refused dump left the state as it was


def test_updates_buffered_by_batch_are_stored_when_the_worker_ends(server, own_server):
    """With ``batch`` > 1 a worker that recorded 15 updates and exited normally left 10 in Redis: the last 5
    waited in the buffer and nothing flushed it. They are stored at exit, and by ``close()`` / ``with``;
    a store dropped with updates it cannot send warns."""
    child = (
        "import sys\nfrom bandits import UCB1\nfrom bandits.redis_store import RedisStateStore\n"
        "policy = UCB1(3, store=RedisStateStore('batch-exit', url=sys.argv[1], batch=10))\n"
        "for t in range(15):\n    policy.update(t % 3, 0.5)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", child, server.url], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert UCB1(3, store=RedisStateStore("batch-exit", server.client())).store.read().updates == 15

    with RedisStateStore("batch-with", server.client(), batch=10) as store:
        policy = UCB1(3, store=store)
        for t in range(5):
            policy.update(t % 3, 0.5)
        assert len(store.pending) == 5
    assert store.pending == []
    assert UCB1(3, store=RedisStateStore("batch-with", server.client())).store.read().updates == 5

    policy = UCB1(3, store=RedisStateStore("batch-lost", impatient_client(own_server), batch=10))
    policy.update(0, 0.5)
    own_server.stop()
    with pytest.warns(RuntimeWarning, match="'batch-lost' dropped .* with 1 update"):
        del policy
        gc.collect()


def test_writer_sequence_numbers_are_never_reissued(server, tmp_path):
    """Redis skips an update whose sequence number it has applied. Re-attaching after Redis lost the bandit
    restarted the numbers at 0 while 4 and 5 were pending (4 of 6 updates skipped), and loading saved
    pending updates after a new one had taken number 4 skipped that one: both silently lost updates."""
    client = server.client()
    store = RedisStateStore("reattach", client, writer="w")
    policy = UCB1(3, seed=0, store=store)
    for t in range(3):
        policy.update(t % 3, 0.5)
    store.delete()  # Redis lost the bandit (a restart without persistence)
    for _ in range(2):
        with pytest.raises(StateStoreError, match="lost its data"):
            policy.update(0, 1.0)
    store.attach(store.spec)  # re-create it in place; the two pending updates go first
    for _ in range(4):
        policy.update(1, 0.0)
    assert store.read().updates == 6 and store.duplicates == 0

    first = RedisStateStore("seq-restart", client, writer="host1", batch=10)
    before = UCB1(3, seed=0, store=first)
    for t in range(5):
        before.update(t % 3, 0.5)
        if t == 2:
            first.flush()  # 1..3 stored, 4 and 5 still buffered when the worker dies
    saved = tmp_path / "pending.json"
    assert first.save_pending(saved) == 2
    first.pending.clear()  # the process is gone: only the file has them
    again = RedisStateStore("seq-restart", client, writer="host1")
    after = UCB1(3, seed=0, store=again)
    after.update(0, 1.0)  # takes number 4 before the saved updates are loaded
    with pytest.raises(StateStoreError, match=r"'host1' have sequence numbers \[4\], already issued.*load_pending"):
        again.load_pending(saved)
    assert again.pending == [] and again.read().updates == 4  # nothing queued
