"""Bandit figures, beside MABWiser in the same run. Prints JSON.

    python benchmarks/bandits.py [--quick] [--sections latency regret redis env] [--robustness]

* ``latency_us``: select+update per decision (median of repeated blocks, one thread, 6 arms, LinUCB
  on 8 context dimensions), ours and MABWiser's for the same policy, ``mabwiser_over_ours``; the blocks
  and their sizes (MABWiser's a tenth of ours, at least 10) under ``latency_samples``.
* ``regret_vs_mabwiser``: final pseudo-regret on the same instances and budget (mean, paired std error).
* ``regret``: the guarantees the tests check, as figures.
* ``redis``: shared updates per second through a local redis-server (started here), unpipelined and
  pipelined, one client and 4 processes; raw HINCRBYFLOAT beside it.
* ``env``: ``StrategySelection-v0`` on the built-in test clips (10 passes, 1,040 chunks): every preset
  alone, LinUCB on the observation (5 seeds), the non-contextual policies; ``--robustness`` adds, on the
  train split only, the comparison that chose LinUCB's context and LinUCB on random 10-clip subsets.

Targets (issue 4): at least as fast as MABWiser per decision; >= 10,000 shared updates/s through Redis;
LinUCB beats the best single preset on the test clips.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
# the repository root instead of benchmarks/: this file's name would shadow the bandits package
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bandits import EXP3, LinUCB, RewardAdapter, regret  # noqa: E402
from bandits.nonstationary import DiscountedUCB, SlidingWindowUCB, discount_for, window_for  # noqa: E402
from bandits.regret import regret_curves  # noqa: E402
from bandits.stochastic import UCB1, EpsilonGreedy, GaussianThompsonSampling, ThompsonSampling  # noqa: E402
from benchmarks.measurement import Conditions  # noqa: E402  (the root leads sys.path: see above)

K, DIM = 6, 8
POLICIES = {
    "EpsilonGreedy": lambda s: EpsilonGreedy(K, 0.1, seed=s),
    "UCB1": lambda s: UCB1(K, seed=s),
    "DiscountedUCB": lambda s: DiscountedUCB(K, gamma=0.99, seed=s),
    "SlidingWindowUCB": lambda s: SlidingWindowUCB(K, window=200, seed=s),
    "ThompsonSampling": lambda s: ThompsonSampling(K, seed=s),
    "GaussianThompsonSampling": lambda s: GaussianThompsonSampling(K, sigma=0.5, seed=s),
    "EXP3": lambda s: EXP3(K, horizon=10_000, seed=s),
    "LinUCB": lambda s: LinUCB(K, DIM, alpha=1.0, seed=s),
}
PEERS = ("UCB1", "ThompsonSampling", "EpsilonGreedy", "LinUCB")
SECTIONS = ("latency", "regret", "redis", "env")


def median(values) -> float:
    return float(np.median(values))


def mean_se(x) -> dict:
    x = np.asarray(x, dtype=float)
    return {"mean": float(x.mean()), "stderr": float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else 0.0}


# --------------------------------------------------------------------------- latency
def latency(repeats: int, block: int) -> dict:
    from mabwiser.mab import MAB

    from bandits.peers import mabwiser_policy

    rng = np.random.default_rng(0)
    means = rng.uniform(0.2, 0.8, K)
    out = {}
    for name, make in POLICIES.items():
        policy = make(0)
        steps = block * (repeats + 1)
        contexts = np.concatenate([np.ones((steps, 1)), rng.random((steps, DIM - 1))], axis=1)
        rewards = (rng.random((steps, K)) < means).astype(float)
        ctx = policy.contextual

        def run(start: int) -> float:
            t0 = time.perf_counter()
            for t in range(start, start + block):
                x = contexts[t] if ctx else None
                arm = policy.select(x)
                policy.update(arm, rewards[t, arm], x)
            return (time.perf_counter() - t0) / block

        run(0)  # warm up
        ours = median([run(block * (i + 1)) for i in range(repeats)]) * 1e6
        row = {"ours": ours}
        if name in PEERS:
            mab = MAB(list(range(K)), mabwiser_policy(name), seed=0)
            first = np.arange(K)
            mab.fit(first, rewards[first, first], contexts=contexts[:K] if ctx else None)
            peer_block = max(10, block // 10)  # MABWiser is slower per decision: shorter blocks (latency_samples)

            def run_peer(start: int) -> float:
                t0 = time.perf_counter()
                for t in range(start, start + peer_block):
                    x = contexts[t : t + 1] if ctx else None
                    arm = int(mab.predict(x) if ctx else mab.predict())
                    mab.partial_fit([arm], [rewards[t, arm]], contexts=x)
                return (time.perf_counter() - t0) / peer_block

            run_peer(K)
            theirs = median([run_peer(K + peer_block * (i + 1)) for i in range(repeats)]) * 1e6
            row.update(mabwiser=theirs, mabwiser_over_ours=theirs / ours)
        out[name] = row
    return out


# --------------------------------------------------------------------------- regret
def regret_vs_mabwiser(seeds: int) -> dict:
    from bandits.peers import mabwiser_policy, play_mabwiser

    bern = regret.BernoulliBandit([0.9, 0.6, 0.5])
    ctx = regret.LinearContextualBandit([[0.8, -0.6, 0.0], [0.2, 0.6, 0.0], [0.1, 0.3, 0.5]])
    ours = {
        "UCB1": (lambda s: UCB1(3, seed=s), bern, 2000, seeds),
        "ThompsonSampling": (lambda s: ThompsonSampling(3, seed=s), bern, 2000, seeds),
        "EpsilonGreedy": (lambda s: EpsilonGreedy(3, 0.1, seed=s), bern, 2000, seeds),
        "LinUCB": (lambda s: LinUCB(3, 3, alpha=1.0, seed=s), ctx, 600, max(3, seeds // 3)),
    }
    out = {}
    for name, (make, problem, horizon, n) in ours.items():
        mine, peer = [], []
        for seed in range(n):
            instance = problem.sample(horizon, np.random.default_rng(seed))
            mine.append(regret.pseudo_regret(instance, regret.play(make(seed + 100), instance))[-1])
            peer.append(regret.pseudo_regret(instance, play_mabwiser(mabwiser_policy(name), instance, seed + 100))[-1])
        out[name] = {
            "horizon": horizon,
            "seeds": n,
            "ours": mean_se(mine),
            "mabwiser": mean_se(peer),
            "ours_minus_mabwiser": mean_se(np.array(mine) - np.array(peer)),
        }
    return out


def regret_figures(seeds: int) -> dict:
    out: dict = {}
    means, horizon = [0.9, 0.6, 0.5], 4000
    problem = regret.BernoulliBandit(means)
    ucb = regret_curves(lambda s: UCB1(3, seed=s), problem, horizon, range(seeds))
    ts = regret_curves(lambda s: ThompsonSampling(3, seed=s), problem, horizon, range(seeds))
    checkpoints = [250, 500, 1000, 2000, 4000]
    out["stationary"] = {
        "means": means,
        "seeds": seeds,
        "n": checkpoints,
        "ucb1": [ucb.at(n) for n in checkpoints],
        "ucb1_bound": [float(regret.ucb1_regret_bound(means, n)) for n in checkpoints],
        "thompson": [ts.at(n) for n in checkpoints],
        "lai_robbins_ln_n": [float(regret.lai_robbins_lower_bound(means, n)) for n in checkpoints],
    }
    horizon, breakpoints = 10_000, [2500, 5000, 7500]
    switching = regret.PiecewiseStationaryBandit([[0.9, 0.2], [0.3, 0.6], [0.9, 0.2], [0.3, 0.6]], breakpoints)
    gamma, tau = discount_for(horizon, 3), window_for(horizon, 3)
    few = range(max(3, seeds // 4))
    makers = {
        "UCB1": lambda s: UCB1(2, seed=s),
        "DiscountedUCB": lambda s: DiscountedUCB(2, gamma=gamma, seed=s),
        "SlidingWindowUCB": lambda s: SlidingWindowUCB(2, window=tau, seed=s),
    }
    piecewise = {name: regret_curves(make, switching, horizon, few).at(horizon) for name, make in makers.items()}
    less = {k: 1 - v / piecewise["UCB1"] for k, v in piecewise.items() if k != "UCB1"}
    out["piecewise_stationary"] = {"horizon": horizon, "gamma": gamma, "window": tau, "regret": piecewise}
    out["piecewise_stationary"]["less_than_ucb1"] = less
    adversarial = {}
    for horizon in (1000, 4000, 16000):
        rng = np.random.default_rng(7)
        m = np.where(np.arange(horizon)[:, None] < horizon // 3, [0.6, 0.4], [0.3, 0.7])
        sequence = regret.AdversarialSequence((rng.random(m.shape) < m).astype(float))
        curves = regret_curves(lambda s: EXP3(2, horizon=horizon, seed=s), sequence, horizon, few, kind="hindsight")
        adversarial[horizon] = {"exp3": curves.at(horizon), "bound": regret.exp3_regret_bound(2, horizon)}
    out["adversarial_exp3"] = adversarial
    return out


# --------------------------------------------------------------------------- redis
def _redis_worker(url: str, name: str, writer: str, n: int, batch: int, ready, start) -> None:
    from bandits.redis_store import RedisStateStore

    store = RedisStateStore(name, url=url, writer=writer, batch=batch)
    policy = UCB1(K, store=store)
    ready.put(writer)
    start.wait()  # start together (an Event: a shared "go" queue let a worker take another's "ready")
    for t in range(n):
        policy.update(t % K, 0.5)
    store.flush()


def redis_figures(n: int) -> dict:
    from bandits.redis_server import LocalRedisServer
    from bandits.redis_store import RedisStateStore

    out: dict = {}
    with LocalRedisServer() as server:
        client = server.client()

        def updates_per_s(make, batch: int, count: int) -> float:
            store = RedisStateStore(f"bench-{make.__name__}-{batch}-{time.perf_counter_ns()}", client, batch=batch)
            policy = make(store)
            x = np.ones(DIM) / DIM
            t0 = time.perf_counter()
            for t in range(count):
                policy.update(t % K, 0.5, x)
            store.flush()
            return count / (time.perf_counter() - t0)

        def ucb1(store):
            return UCB1(K, store=store)

        def ducb(store):
            return DiscountedUCB(K, gamma=0.99, store=store)

        def swucb(store):
            return SlidingWindowUCB(K, window=200, store=store)

        def linucb(store):
            return LinUCB(K, DIM, store=store)

        makers = {"UCB1": ucb1, "DiscountedUCB": ducb, "SlidingWindowUCB": swucb, "LinUCB": linucb}
        out["updates_per_s_unpipelined"] = {name: updates_per_s(make, 1, n // 5) for name, make in makers.items()}
        out["updates_per_s_pipelined_batch_100"] = {name: updates_per_s(make, 100, n) for name, make in makers.items()}

        t0 = time.perf_counter()
        for _ in range(n // 5):
            client.hincrbyfloat("raw", "f", 0.5)
        out["raw_hincrbyfloat_per_s_unpipelined"] = (n // 5) / (time.perf_counter() - t0)
        pipe = client.pipeline(transaction=False)
        t0 = time.perf_counter()
        for _ in range(n):
            pipe.hincrbyfloat("raw", "f", 0.5)
        pipe.execute()
        out["raw_hincrbyfloat_per_s_pipelined"] = n / (time.perf_counter() - t0)

        policy = UCB1(K, store=RedisStateStore("bench-select", client))
        for t in range(100):
            policy.update(t % K, 0.5)
        times = []
        for _ in range(500):
            t0 = time.perf_counter()
            policy.select()
            times.append(time.perf_counter() - t0)
        out["select_us_median"] = median(times) * 1e6

        for label, batch, per_worker in (("unpipelined", 1, n // 5), ("pipelined_batch_100", 100, n)):
            ctx = multiprocessing.get_context("spawn")
            ready, start = ctx.Queue(), ctx.Event()
            name = f"bench-shared-{batch}"
            args = [(server.url, name, f"w{i}", per_worker, batch, ready, start) for i in range(4)]
            workers = [ctx.Process(target=_redis_worker, args=a) for a in args]
            for w in workers:
                w.start()
            for _ in workers:
                ready.get(timeout=120)  # raises queue.Empty if a worker died before it was ready
            t0 = time.perf_counter()
            start.set()
            for w in workers:
                w.join(timeout=600)
            wall = time.perf_counter() - t0
            failed = [w.exitcode for w in workers if w.exitcode != 0]
            if failed:
                raise RuntimeError(f"redis benchmark: {len(failed)} worker(s) failed (exit codes {failed})")
            counted = UCB1(K, store=RedisStateStore(name, client)).store.read().updates
            out[f"four_processes_{label}"] = {"updates": counted, "expected": 4 * per_worker, "per_s": counted / wall}
    return out


# --------------------------------------------------------------------------- env
def env_figures(passes: int, linucb_seeds: int, robustness: bool) -> dict:
    import gymnasium as gym

    import feedback_env  # noqa: F401
    from bandits.runner import FixedArm, ObservationContext, chunks_per_pass, run_on_env, split_clips

    env = gym.make("feedback_env/StrategySelection-v0", config={"split": "test"})
    clips = split_clips(env)
    presets = env.unwrapped.config["presets"]
    one_pass = chunks_per_pass(env, clips)
    fixed_logs = [run_on_env(env, FixedArm(a), one_pass, clips=clips) for a in range(len(presets))]
    per_pass = {presets[a]: log.total for a, log in enumerate(fixed_logs)}
    best = max(per_pass, key=per_pass.get)
    rewards = np.stack([log.rewards for log in fixed_logs])
    adapter = RewardAdapter.for_env_reward()
    n = passes * one_pass
    out: dict = {
        "clips": len(clips),
        "chunks_per_pass": one_pass,
        "passes": passes,
        "preset_reward_per_pass": per_pass,
        "best_preset": best,
        "per_chunk_oracle_per_pass": float(rewards.max(axis=0).sum()),
        "reward_range_of_presets": [float(rewards.min()), float(rewards.max())],
        "adapter": repr(adapter),
        "adapter_clipped_fraction": float(np.mean((rewards < adapter.low) | (rewards > adapter.high))),
    }
    context = ObservationContext()
    t0 = time.perf_counter()
    gains, last_pass = [], []
    for seed in range(linucb_seeds):
        log = run_on_env(env, LinUCB(len(presets), context.dim, alpha=1.0, seed=seed), n, context=context, clips=clips)
        gains.append(log.total / (passes * per_pass[best]) - 1.0)
        last_pass.append(float(log.rewards[-one_pass:].sum()))
    out["linucb"] = {
        "context": list(context.features) + ["1"],
        "alpha": 1.0,
        "seeds": linucb_seeds,
        "gain_over_best_preset": gains,
        "gain_median": median(gains),
        "last_pass_reward_median": median(last_pass),
        "steps_per_s": linucb_seeds * n / (time.perf_counter() - t0),
    }
    others = {
        "UCB1": UCB1(len(presets), seed=0),
        "ThompsonSampling": ThompsonSampling(len(presets), seed=0),
        "GaussianThompsonSampling": GaussianThompsonSampling(len(presets), sigma=0.5, seed=0),
        "EpsilonGreedy": EpsilonGreedy(len(presets), 0.1, seed=0),
        "EXP3": EXP3(len(presets), horizon=n, seed=0),
        "DiscountedUCB": DiscountedUCB(len(presets), gamma=0.99, seed=0),
        "SlidingWindowUCB": SlidingWindowUCB(len(presets), window=one_pass, seed=0),
    }
    reference = passes * per_pass[best]
    out["non_contextual_gain_over_best_preset"] = {
        name: run_on_env(env, policy, n, clips=clips).total / reference - 1.0 for name, policy in others.items()
    }
    if robustness:
        out["train_split"] = train_split_checks(passes)
    return out


def train_split_checks(passes: int) -> dict:
    """How LinUCB's context was chosen, and whether the test-clip margin is typical; train split only.

    ``context_choice``: all 19 train clips, 6 passes, 4 seeds: the 7 summary features against all 13,
    at alpha 0.5 and 1. ``subsets``: the test protocol on train clips (from scratch, 6 random 10-clip
    subsets, ``passes`` passes each), the default context at alpha 1 and 0.5.
    """
    import gymnasium as gym

    from bandits.runner import SUMMARY_FEATURES, FixedArm, ObservationContext, chunks_per_pass, run_on_env, split_clips
    from feedback_env.features import ChunkFeatures

    env = gym.make("feedback_env/StrategySelection-v0", config={"split": "train"})
    every = split_clips(env)

    best_of: dict[tuple, float] = {}  # a preset earns the same on every pass: one pass per clip set

    def gain(clips, context, alpha, seed, n_passes):
        one_pass = chunks_per_pass(env, clips)
        if tuple(clips) not in best_of:
            best_of[tuple(clips)] = max(run_on_env(env, FixedArm(a), one_pass, clips=clips).total for a in range(6))
        best = best_of[tuple(clips)]
        policy = LinUCB(6, context.dim, alpha=alpha, seed=seed)
        log = run_on_env(env, policy, n_passes * one_pass, context=context, clips=clips)
        return log.total / (n_passes * best) - 1.0

    contexts = {"summary_7": ObservationContext(SUMMARY_FEATURES), "all_13": ObservationContext(ChunkFeatures(16000).names)}
    choice = {
        f"{name}/alpha_{alpha:g}": mean_se([gain(every, context, alpha, seed, 6) for seed in range(4)])
        for name, context in contexts.items()
        for alpha in (0.5, 1.0)
    }
    picks = [list(np.random.default_rng(100 + k).choice(every, 10, replace=False)) for k in range(6)]
    subsets = {}
    for alpha in (1.0, 0.5):
        gains = [gain(clips, ObservationContext(), alpha, k, passes) for k, clips in enumerate(picks)]
        subsets[f"alpha_{alpha:g}"] = {"gain_over_best_preset": gains, "mean": float(np.mean(gains))}
    return {"context_choice": choice, "subsets": subsets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and seeds")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS, help="a subset (all by default)")
    parser.add_argument("--robustness", action="store_true", help="also the train-split context choice and subsets (slow)")
    args = parser.parse_args()
    conditions = Conditions()
    q, sections = args.quick, set(args.sections)
    result: dict = {"arms": K, "linucb_dim": DIM}
    targets = {}
    started = time.perf_counter()

    def progress(section: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {section} done", file=sys.stderr, flush=True)

    if "latency" in sections:
        repeats, block = (3, 100) if q else (7, 300)
        result["latency_us"] = lat = latency(repeats=repeats, block=block)
        result["latency_samples"] = {"blocks": repeats, "decisions_per_block": block,
                                     "decisions_per_block_mabwiser": max(10, block // 10)}  # fmt: skip
        targets["at_least_as_fast_as_mabwiser"] = all(lat[p]["mabwiser_over_ours"] >= 1.0 for p in PEERS)
        progress("latency")
    if "regret" in sections:
        result["regret_vs_mabwiser"] = regret_vs_mabwiser(seeds=8 if q else 30)
        progress("regret_vs_mabwiser")
        result["regret"] = regret_figures(seeds=8 if q else 20)
        progress("regret")
    if "redis" in sections:
        result["redis"] = redis_figures(n=5000 if q else 20000)
        progress("redis")
    if "env" in sections:
        result["env"] = env_figures(passes=10, linucb_seeds=2 if q else 5, robustness=args.robustness)
        progress("env")
    if "redis" in result:
        pipelined = result["redis"]["updates_per_s_pipelined_batch_100"]
        targets["redis_shared_updates_per_s_ge_10000"] = min(pipelined.values()) >= 10_000
    if "env" in result:
        targets["linucb_beats_best_preset_on_test_clips"] = min(result["env"]["linucb"]["gain_over_best_preset"]) > 0
    result["targets_met"] = targets
    result["conditions"] = conditions.record()
    print(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
