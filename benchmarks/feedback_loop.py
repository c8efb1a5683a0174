"""FeedbackLoopSystem: latency, memory and convergence against its peers in one run. Prints JSON.

    python benchmarks/feedback_loop.py [--jobs 2] [--split all] [--records 1000000] [--subset]

* ``collect_feedback`` latency for 1 s chunks at 16 kHz, each call a new chunk (distinct seconds of the
  built-in clips, as a live stream brings them: the metrics memoize on the audio's bytes): metrics given,
  and metrics computed (the reward's cheap set, intrusive with a clean reference and non-intrusive
  without); p50/p99 in ms over ``n`` calls, wall clock (the target's measure) and this thread's CPU time
  (``cpu_p50_ms``/``cpu_p99_ms``: the work itself; the gap to the wall clock is time the thread waited for
  a core, which grows with the machine's load).
* ``update_parameters`` latency per strategy on 0.5 s chunks (and 1 s for ``gradient``, the 1-pair
  ``gradient``, and ``gradient`` on a hum clip, where the notch bank is on); p50/p99 in ms. An update is
  dominated by its 16 evaluations, each re-processing the last two chunks (``replay_warmup=1``); the
  ``_2_workers`` rows score them in two processes (``FeedbackLoopSystem(workers=2)``), on both clips.
* RSS after 10k, 100k and 1M records (``collect_feedback`` on 20 ms chunks, metrics given), in a process
  started for them alone: flat memory thanks to the bounded history. ``peak_rss_mb`` is that process's
  lifetime peak, its imports included (the larger of ``ru_maxrss`` and the samples).
* ``conditions``: the threads in effect, CPU, load average at the start and end, versions.
* Convergence on the built-in set: fraction of the per-clip oracle improvement (the loop's objective,
  ``tests/data/feedback_loop_oracle.json``) after 10, 30 and 100 iterations for ``gradient`` (SPSA),
  ``cma``, ``bayesian`` (Optuna TPE) and ``random``; 16 evaluations (``loop.evaluate``) per update for each:
  ``gradient``'s 16 factorial probes (one Hadamard matrix's rows), the others' 15 candidates and the current
  setting (counted: 144 in 10 iterations, 9 updates, on white_snr+10_f2). ``fraction_at_90``/``_95``: of the
  clips, at the marks.
* ``--subset``: CMA-ES over all 19 parameters against the cached oracle over the default tuned 11: the
  loop's objective and whole-clip SI-SDR (the per-chunk reward rewards a pumping leveller/compressor).
* ``--probe-bias``: what a probe re-processed from the live state sees of a longer noise window
  (0.8 -> 3.0 s on babble_snr+15_m1), after 1, 3 and 7 warm-up chunks, against the objective.
* ``--ablation``: the gradient strategy with 8 two-sided Hadamard probe pairs (``design="hadamard"``, the
  default until the factorial design) and with 8 pairs of random signs (Spall's Rademacher ``D``) instead of
  the factorial probes, with the live parameters on the iterate itself (no averaging), with 1 probe pair,
  without the replay warm-up, scoring one chunk instead of two, and with one scored chunk a 7-chunk
  (3.5 s) warm-up (as quoted in the ``replay_warmup`` docstring) or 16 Hadamard probe
  pairs, on all 19 parameters (32 factorial probes), and with probes of half-width 0.2, 0.15 and 0.1
  (``gradient_c*``; the default is 0.125) and without the step-size decay (``gradient_no_decay``), beside
  the default, on the train clips, for each of ``--ablation-seeds`` (default 0 1 2: one seed's share of
  clips at 90 % swings by several clips); ``--ablation-rows`` picks variants.
* ``--adaptation-seeds``: on the non-stationary clips, the fraction of the new segment's oracle improvement
  30 iterations after the noise changes (40 iterations before it), the default, with two-sided Hadamard
  pairs (``design="hadamard"``), with random-sign pairs (``design="rademacher"``), without the live averaging,
  with one scored chunk per evaluation
  (``replay_scored=1``), without the restart on an input change (``no_restart``) and with probes of half-width
  0.2 and 0.15 (``c0.2``, ``c0.15``), without the step-size decay (``no_decay``: ``min_rate=1``), and a loop
  that starts at the change from the defaults (``fresh_start``: the same search without the first noise), per seed of
  ``--adaptation-seed-list`` (default 0 1 2) and pooled over them (``fraction_at_90``: of the clips, or of the
  pooled runs, back at 90 %); ``--adaptation-rows`` picks configurations. Each run also goes on until it is
  back at 90 %, checked every 5 iterations up to ``--adaptation-horizon`` (default 100): ``iterations_to_90``
  per run, and pooled the runs back within 10, 20, ... iterations and the median and largest count.
* ``--tpe-window``: a long run of the ``bayesian`` strategy (``--tpe-updates`` updates of 15 candidates on
  0.5 s chunks) with its default trial window (``max_trials`` 1,500) and without one: update time (median per
  block of 50 updates) and the trials held at the end.
* ``--curvature``: the convergence analyzer's curvature (spectral radius of its BFGS model) after
  ``--iterations`` on 4 train clips, with secant pairs averaged over 1, 5, 10 and 20 updates and with
  Adam's first moment as the gradient, against a finite-difference Hessian of the clip objective.

Targets (issue 3): collect p99 < 5 ms with metrics given, gradient update p99 < 10 ms, RSS < 300 MB
and flat, best strategy >= 95 % of the oracle within 100 iterations and ahead of Optuna TPE.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchmark_args import SPLITS, positive_int, select_split  # noqa: E402
from measurement import Conditions, second_stream  # noqa: E402

ORACLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "feedback_loop_oracle.json"
MARKS = (10, 30, 100)
STRATEGIES = ("gradient", "cma", "bayesian", "random")


def percentiles(samples: list[float]) -> dict[str, float]:
    a = 1e3 * np.asarray(samples)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "n": int(a.size)}


def rss_mb() -> float:
    """Current resident set size (Linux /proc), MB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def collect_latency(scenario_set, repeats: int) -> dict:
    """p50/p99 of ``collect_feedback`` on ``repeats`` 1 s chunks, each new audio (:func:`measurement.second_stream`:
    the metrics memoize on the audio's bytes, which a live stream never repeats), after one untimed call."""
    from feedback_env.feedback_loop import FeedbackLoopSystem
    from feedback_env.metrics import compute_metrics
    from feedback_env.pipeline import EnhancementPipeline

    stream = second_stream(scenario_set, repeats + 1)
    outputs: dict[int, np.ndarray] = {}  # the enhanced chunks, by the noisy chunk's id (the stream cycles)
    for x, _ in stream:
        if id(x) not in outputs:
            outputs[id(x)] = EnhancementPipeline().process_clip(x)
    out = {}
    for label, intrusive in (("intrusive", True), ("blind", False)):
        loop = FeedbackLoopSystem(seed=0, mode="offline")
        names = loop.rewards[intrusive].metric_names
        given: dict[int, dict] = {}
        for x, c in stream:
            if id(x) not in given:
                given[id(x)] = compute_metrics(outputs[id(x)], c if intrusive else None, 16000, names=names)
        for mode in ("metrics_given", "metrics_computed"):
            times, cpu = [], []
            for x, c in stream:
                metrics = given[id(x)] if mode == "metrics_given" else None
                t0, c0 = time.perf_counter(), time.thread_time()
                loop.collect_feedback(x, outputs[id(x)], metrics=metrics, clean_audio=c if intrusive else None)
                times.append(time.perf_counter() - t0)
                cpu.append(time.thread_time() - c0)
            cpu_ms = percentiles(cpu[1:])
            out[f"{label}_{mode}"] = {**percentiles(times[1:]), "cpu_p50_ms": cpu_ms["p50_ms"], "cpu_p99_ms": cpu_ms["p99_ms"]}
    return out


def update_latency(clip, hum_clip, repeats: int) -> dict:
    """Per strategy on ``clip``; ``gradient`` also on 1 s chunks, with 1 pair, and on ``hum_clip`` (notches on),
    and with its probes scored in 2 processes (``workers=2``) on both clips."""
    from feedback_env.feedback_loop import FeedbackLoopSystem
    from feedback_env.feedback_loop.objective import chunk_stream

    out = {}
    rows = [(s, 8000, {}, clip, "", 1) for s in STRATEGIES]
    rows += [("gradient", 16000, {}, clip, "", 1), ("gradient", 8000, {"pairs": 1}, clip, "_1_pair", 1),
             ("gradient", 8000, {}, hum_clip, "_hum", 1), ("gradient", 8000, {}, clip, "_2_workers", 2),
             ("gradient", 8000, {}, hum_clip, "_hum_2_workers", 2)]  # fmt: skip
    for name, chunk, options, source, suffix, workers in rows:
        with FeedbackLoopSystem(seed=0, mode="offline", strategy_options={name: options}, workers=workers) as loop:
            times = []
            for x, c in chunk_stream(source.noisy, source.clean, chunk, repeats + 1):
                loop.step(x, c)
                t0 = time.perf_counter()
                loop.update_parameters(name)
                times.append(time.perf_counter() - t0)
        out[f"{name}_{chunk / 16000:g}s{suffix}"] = percentiles(times[1:])  # the first: the workers starting
    return out


def tpe_window(clip, updates: int, block: int = 50) -> dict:
    """The ``bayesian`` strategy over ``updates`` updates, bounded (default ``max_trials``) and unbounded."""
    from feedback_env.feedback_loop import FeedbackLoopSystem
    from feedback_env.feedback_loop.objective import chunk_stream

    out = {}
    for label, options in (("window_1500", {}), ("unbounded", {"max_trials": 10**9})):
        loop = FeedbackLoopSystem(seed=0, mode="offline", strategy_options={"bayesian": options})
        times = []
        for x, c in chunk_stream(clip.noisy, clip.clean, 8000, updates):
            loop.step(x, c)
            t0 = time.perf_counter()
            loop.update_parameters("bayesian")
            times.append(time.perf_counter() - t0)
        blocks = [times[i : i + block] for i in range(0, len(times), block)]
        out[label] = {
            "median_update_ms_per_block": [round(1e3 * float(np.median(b)), 1) for b in blocks],
            "trials_held": len(loop.strategy("bayesian").study.get_trials(deepcopy=False)),
        }
    return {"updates": updates, "block": block, **out}


def memory(records: int) -> dict:
    """RSS of a loop after 1k, 10k, 100k and ``records`` ``collect_feedback`` calls (20 ms chunks, metrics
    given), in the process that calls it; ``peak_rss_mb``: that process's lifetime peak, the larger of
    ``getrusage`` ``ru_maxrss`` (the kernel's high-water mark, which lags the samples) and the samples."""
    from feedback_env.feedback_loop import FeedbackLoopSystem

    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(320)).astype(np.float32)
    y = (0.5 * x).astype(np.float32)
    loop = FeedbackLoopSystem(seed=0, mode="offline")
    marks = {m for m in (1_000, 10_000, 100_000, records) if m <= records}
    rss = {"start": rss_mb()}
    t0 = time.perf_counter()
    for i in range(1, records + 1):
        loop.collect_feedback(x, y, metrics={"wada_snr": 10.0, "clipping_ratio": 0.0})
        if i in marks:
            rss[str(i)] = rss_mb()
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    return {
        "records": records,
        "history_kept": len(loop.history),
        "rss_mb": rss,
        "peak_rss_mb": max(max_rss, *rss.values()),
        "peak_rss_of": "lifetime peak of a process started for the records alone (its imports included): "
                       "max of getrusage ru_maxrss and the rss_mb samples",
        "seconds": time.perf_counter() - t0,
    }


def memory_alone(records: int) -> dict:
    """:func:`memory` in a process of its own, so that its peak is that of the records, not the latency runs'."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(memory, (records,))


def converge(job: tuple) -> tuple[int, str, str, dict]:
    """One configuration on one clip: fractions of the oracle improvement at the marks."""
    clip_id, label, strategy, options, loop_kwargs, iterations, seed = job
    import scenarios
    from feedback_env.feedback_loop import FeedbackLoopSystem
    from feedback_env.feedback_loop.objective import chunk_stream
    from feedback_env.feedback_loop.oracle_cache import load_cache, objective_for

    clip = scenarios.load("builtin")[clip_id]
    entry = load_cache(ORACLE)["entries"][clip_id]
    objective = objective_for(clip)
    loop = FeedbackLoopSystem(seed=seed, strategy=strategy, strategy_options={strategy: options}, **loop_kwargs)
    fractions, rewards, t0 = {}, [], time.perf_counter()
    for i, (x, c) in enumerate(chunk_stream(clip.noisy, clip.clean, objective.chunk, iterations), start=1):
        rewards.append(loop.step(x, c).reward)
        if i in MARKS:
            fractions[str(i)] = (objective(loop.parameters) - entry["defaults"]) / (entry["oracle"] - entry["defaults"])
    seconds = time.perf_counter() - t0
    return seed, clip_id, label, {
        "fraction": fractions,
        "evaluations_per_iteration": loop.evaluations / iterations,
        "ms_per_iteration": 1e3 * seconds / iterations,
        "rollbacks": len(loop.rollbacks),
        "oracle_improvement": entry["oracle"] - entry["defaults"],
    }


ADAPTATION_MARK = 30  # the target: back at 90 % of the new optimum within this many iterations
ADAPTATION_CHECK = 5  # iterations between the checks of how far the loop is back
FRESH_START = "fresh_start"  # the adaptation row whose loop starts at the change, from the defaults


def adapt(job: tuple) -> tuple[str, str, int, float, int | None]:
    """Fraction of the new segment's oracle improvement ``ADAPTATION_MARK`` iterations after the change of a
    non-stationary clip (40 iterations on the first noise before it; none for ``FRESH_START``), for one loop
    configuration and seed; and the first check (every ``ADAPTATION_CHECK`` iterations, up to ``horizon``) at which
    that fraction is at least 0.9 (None: not within the horizon)."""
    clip_id, label, loop_kwargs, seed, horizon = job
    import scenarios
    from feedback_env.feedback_loop import FeedbackLoopSystem
    from feedback_env.feedback_loop.objective import chunk_stream
    from feedback_env.feedback_loop.oracle_cache import entry_key, load_cache, objective_for

    clip = scenarios.load("builtin")[clip_id]
    change = float(clip.tags["change_s"])
    cut = int(change * clip.sample_rate)
    objective = objective_for(clip, (change, clip.duration_s))
    entry = load_cache(ORACLE)["entries"][entry_key(clip_id, (change, clip.duration_s))]
    loop = FeedbackLoopSystem(seed=seed, **loop_kwargs)
    for x, c in chunk_stream(clip.noisy[:cut], clip.clean[:cut], objective.chunk, 0 if label == FRESH_START else 40):
        loop.step(x, c)
    at_mark, back_at = None, None
    for i, (x, c) in enumerate(chunk_stream(clip.noisy[cut:], clip.clean[cut:], objective.chunk,
                                            max(horizon, ADAPTATION_MARK)), start=1):  # fmt: skip
        loop.step(x, c)
        check = back_at is None and i <= horizon and i % ADAPTATION_CHECK == 0
        if not (check or i == ADAPTATION_MARK):
            continue
        fraction = (objective(loop.parameters) - entry["defaults"]) / (entry["oracle"] - entry["defaults"])
        at_mark = fraction if i == ADAPTATION_MARK else at_mark
        back_at = i if check and fraction >= 0.9 else back_at
        if at_mark is not None and (back_at is not None or i >= horizon):
            break
    return clip_id, label, seed, at_mark, back_at


ADAPTATION_CONFIGS = {
    "default": {},
    "hadamard": {"strategy_options": {"gradient": {"design": "hadamard"}}},
    "rademacher": {"strategy_options": {"gradient": {"design": "rademacher"}}},
    "no_average": {"strategy_options": {"gradient": {"average": 0.0}}},
    "replay_scored_1": {"replay_scored": 1},
    "no_restart": {"strategy_options": {"gradient": {"restart_on_input_change": False}}},
    "c0.2": {"strategy_options": {"gradient": {"perturbation": 0.2}}},
    "c0.15": {"strategy_options": {"gradient": {"perturbation": 0.15}}},
    "no_decay": {"strategy_options": {"gradient": {"min_rate": 1.0}}},
    FRESH_START: {},
}


def adaptation_seeds(clips: list[str], configs=ADAPTATION_CONFIGS, seeds=(0, 1, 2), jobs: int = 1,
                     horizon: int = 100) -> dict:
    """``adapt`` over clips, loop configurations and seeds: per configuration the fractions at
    ``ADAPTATION_MARK`` (median, minimum, share at 90 %) and the iterations until back at 90 % (``horizon``)."""
    import multiprocessing

    work = [(c, label, kwargs, s, horizon) for label, kwargs in configs.items() for s in seeds for c in clips]
    with multiprocessing.get_context("spawn").Pool(max(1, jobs)) as pool:
        rows = pool.map(adapt, work)
    out = {}
    for label in configs:
        for s in seeds:
            mine = [(c, v, b) for c, ll, ss, v, b in rows if ll == label and ss == s]
            f = {c: v for c, v, _ in mine}
            out[f"{label}_seed_{s}"] = {"median": float(np.median(list(f.values()))), "min": float(min(f.values())),
                                        "mean": float(np.mean(list(f.values()))),
                                        "fraction_at_90": float(np.mean([v >= 0.9 for v in f.values()])), "per_clip": f,
                                        "iterations_to_90": {c: b for c, _, b in mine}}  # fmt: skip
        pooled = [v for c, ll, ss, v, _ in rows if ll == label]
        back = [b for c, ll, ss, v, b in rows if ll == label]
        out[f"{label}_pooled"] = {"median": float(np.median(pooled)), "mean": float(np.mean(pooled)), "min": float(min(pooled)),
                                  "fraction_at_90": float(np.mean([v >= 0.9 for v in pooled])), "runs": len(pooled),
                                  "iterations_to_90": _back_summary(back, horizon)}  # fmt: skip
    return out


def _back_summary(back: list[int | None], horizon: int) -> dict:
    """How many runs were back at 90 % within 10, 20, ... iterations, and the median and largest iterations
    until back (None: more than half of the runs, or any run, were not back within ``horizon``)."""
    until = sorted(math.inf if b is None else b for b in back)
    median = float(np.median(until))
    return {"horizon": horizon, "runs": len(back),
            "runs_back_within": {str(m): sum(b <= m for b in until) for m in range(10, horizon + 1, 10)},
            "median": median if math.isfinite(median) else None,
            "max": until[-1] if math.isfinite(until[-1]) else None}  # fmt: skip


ABLATION = {  # label: (strategy options, loop options), against the default gradient configuration
    "gradient_hadamard": ({"design": "hadamard"}, {}),
    "gradient_rademacher": ({"design": "rademacher"}, {}),
    "gradient_no_average": ({"average": 0.0}, {}),
    "gradient_1_pair": ({"pairs": 1}, {}),
    "gradient_no_replay_warmup": ({}, {"replay_warmup": 0}),
    "gradient_replay_warmup_7_scored_1": ({}, {"replay_warmup": 7, "replay_scored": 1}),
    "gradient_replay_scored_1": ({}, {"replay_scored": 1}),
    "gradient_16_pairs_scored_1": ({"pairs": 16}, {"replay_scored": 1}),
    "gradient_all_19": ({}, {"tuned": None}),
    "gradient_c0.2": ({"perturbation": 0.2}, {}),
    "gradient_c0.15": ({"perturbation": 0.15}, {}),
    "gradient_c0.1": ({"perturbation": 0.1}, {}),
    "gradient_no_decay": ({"min_rate": 1.0}, {}),
}


def summarize(rows: dict, iterations: int) -> dict:
    f = {m: np.array([r["fraction"][str(m)] for r in rows.values()]) for m in MARKS if m <= iterations}
    return {
        "median_fraction": {str(m): float(np.median(v)) for m, v in f.items()},
        "mean_fraction": {str(m): float(np.mean(v)) for m, v in f.items()},
        "fraction_at_90": {str(m): float(np.mean(v >= 0.9)) for m, v in f.items()},
        "fraction_at_95": {str(m): float(np.mean(v >= 0.95)) for m, v in f.items()},
        "evaluations_per_iteration": float(np.mean([r["evaluations_per_iteration"] for r in rows.values()])),
        "ms_per_iteration": float(np.median([r["ms_per_iteration"] for r in rows.values()])),
        "rollbacks": int(sum(r["rollbacks"] for r in rows.values())),
    }


def run_table(configs: dict, clips: list[str], iterations: int, seed: int, jobs: int) -> dict:
    """``{label: {clip: row}}`` for configurations ``{label: (strategy, options, loop_kwargs)}``."""
    return run_tables(configs, clips, iterations, [seed], jobs)[seed]


def run_tables(configs: dict, clips: list[str], iterations: int, seeds: list[int], jobs: int) -> dict:
    """``{seed: {label: {clip: row}}}``: :func:`run_table` for each seed, all in one pool."""
    import multiprocessing

    work = [(cid, label, s, o, k, iterations, seed) for seed in seeds for cid in clips
            for label, (s, o, k) in configs.items()]  # fmt: skip
    tables: dict = {seed: {label: {} for label in configs} for seed in seeds}
    with multiprocessing.get_context("spawn").Pool(max(1, jobs)) as pool:
        for seed, cid, label, row in pool.imap_unordered(converge, work):
            tables[seed][label][cid] = row
    return tables


def subset_check(clip_ids: list[str], budget: int) -> dict:
    """Why the loop does not tune all 19 parameters: CMA-ES over all 19 against the cached oracle over the
    default tuned ones, on the loop's objective and on whole-clip SI-SDR (static setting, rendered once)."""
    import scenarios
    from feedback_env.feedback_loop.oracle_cache import load_cache, objective_for
    from feedback_env.oracle import cma_search, clip_objective
    from feedback_env.pipeline import PARAMETER_SPACE

    entries = load_cache(ORACLE)["entries"]
    scenario_set = scenarios.load("builtin")
    rows = {}
    for cid in clip_ids:
        clip, e = scenario_set[cid], entries[cid]
        full = cma_search(objective_for(clip), PARAMETER_SPACE, budget, seed=0)
        si_sdr = clip_objective(clip.noisy, clip.clean, clip.sample_rate)
        rows[cid] = {
            "objective": {"defaults": e["defaults"], "tuned_oracle": e["oracle"], "all_19": full.score},
            "si_sdr_db": {"defaults": si_sdr({}), "tuned_oracle": si_sdr(e["params"]), "all_19": si_sdr(full.params)},
        }
    mean = {part: {k: float(np.mean([r[part][k] for r in rows.values()])) for k in ("defaults", "tuned_oracle", "all_19")}
            for part in ("objective", "si_sdr_db")}  # fmt: skip
    return {"budget": budget, "mean": mean, "per_clip": rows}


def probe_bias(clip_id: str = "babble_snr+15_m1", name: str = "nr_noise_window_s", low: float = 0.8,
               high: float = 3.0, warmups: tuple[int, ...] = (1, 3, 7)) -> dict:
    """``J(high) - J(low)`` on the loop's objective against the same difference as ``loop.evaluate``
    measures it (the last chunk re-processed from the live state after ``w`` warm-up chunks), over the
    second and third passes of the cycled clip at the defaults: mean and standard deviation."""
    import scenarios
    from feedback_env.feedback_loop import FeedbackLoopSystem
    from feedback_env.feedback_loop.objective import chunk_stream
    from feedback_env.feedback_loop.oracle_cache import objective_for

    clip = scenarios.load("builtin")[clip_id]
    objective = objective_for(clip)
    out = {"clip": clip_id, "parameter": name, "low": low, "high": high,
           "objective_difference": objective({name: high}) - objective({name: low}), "replayed": {}}  # fmt: skip
    for w in warmups:
        loop = FeedbackLoopSystem(seed=0, update_every=10**9, replay_warmup=w)  # parameters stay at the defaults
        diffs = []
        for i, (x, c) in enumerate(chunk_stream(clip.noisy, clip.clean, len(objective.noisy_chunks[0]), 3 * len(objective))):
            loop.step(x, c)
            if i >= len(objective):
                diffs.append(loop.evaluate({name: high}) - loop.evaluate({name: low}))
        out["replayed"][str(w)] = {"mean": float(np.mean(diffs)), "std": float(np.std(diffs))}
    return out


CURVATURE_CLIPS = ("white_snr+10_f2", "pink_snr+0_f1", "babble_snr+0_f2", "hum60_snr+0_m2")


def curvature_check(clip_id: str, iterations: int = 100, seed: int = 0, blocks: tuple[int, ...] = (1, 5, 10, 20),
                    h: float = 0.1) -> dict:
    """Spectral radius of the convergence analyzer's BFGS model after ``iterations`` of ``gradient`` on a
    train clip, for secant pairs averaged over ``blocks`` updates and for Adam's first moment as the
    gradient (what the loop fed before stop 19), all from the same run, against the largest |eigenvalue| of
    a central finite-difference Hessian (step ``h``, unit cube) of the clip objective's loss at the end. An
    analyzer without a secant pair yet (blocks of 20 in fewer than 40 updates) has radius and ratio None."""
    import scenarios
    from feedback_env.feedback_loop import FeedbackLoopSystem
    from feedback_env.feedback_loop.convergence import ConvergenceAnalyzer
    from feedback_env.feedback_loop.objective import chunk_stream
    from feedback_env.feedback_loop.oracle_cache import objective_for

    clip = scenarios.load("builtin")[clip_id]
    loop = FeedbackLoopSystem(seed=seed)
    fed = {f"block_{b}": ConvergenceAnalyzer(loop.learning_rate, curvature_block=b) for b in blocks}
    fed["adam_moment"] = ConvergenceAnalyzer(loop.learning_rate)
    own = loop.convergence.update

    def fan_out(x, gradient, step=None):
        strategy = loop.strategies["gradient"]
        for label, analyzer in fed.items():
            moment = strategy.m / (1.0 - strategy.beta1**strategy.k)
            analyzer.update(x, moment if label == "adam_moment" else gradient, step=step)
        return own(x, gradient, step=step)

    loop.convergence.update = fan_out
    for x, c in chunk_stream(clip.noisy, clip.clean, 8000, iterations):
        loop.step(x, c)
    objective = objective_for(clip)
    x0 = np.clip(loop.space.to_unit({n: loop.parameters[n] for n in loop.space.names}, dtype=np.float64), h - 1, 1 - h)
    loss = lambda u: -objective(loop.space.from_unit(u))  # noqa: E731
    d, step = x0.size, np.eye(x0.size) * h
    hessian = np.zeros((d, d))
    for i in range(d):
        for j in range(i, d):
            corners = [loss(x0 + si * step[i] + sj * step[j]) for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
            hessian[i, j] = hessian[j, i] = (corners[0] - corners[1] - corners[2] + corners[3]) / (4 * h * h)
    truth = float(np.max(np.abs(np.linalg.eigvalsh(hessian))))
    radius = {label: None if a.hessian is None else a.spectral_radius for label, a in fed.items()}
    return {"finite_difference_radius": truth, "fed": {
        label: {"radius": radius[label], "ratio": None if radius[label] is None else radius[label] / truth,
                "updates": a.curvature_updates, "skips": a.curvature_skips} for label, a in fed.items()}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="all", choices=SPLITS, help="clips for the convergence table")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--repeats", type=positive_int, default=2000, help="collect_feedback calls per latency figure")
    parser.add_argument("--update-repeats", type=positive_int, default=200)
    parser.add_argument("--records", type=positive_int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subset", action="store_true", help="also run the all-19-parameter check (slow)")
    parser.add_argument("--ablation", action="store_true", help="also run gradient variants on the train clips")
    parser.add_argument("--ablation-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ablation-rows", nargs="*", default=list(ABLATION), choices=list(ABLATION),
                        help="variants beside the default (all by default)")
    parser.add_argument("--subset-budget", type=int, default=400)
    parser.add_argument("--probe-bias", action="store_true", help="also measure the probes' slow-parameter bias")
    parser.add_argument("--adaptation-seeds", action="store_true",
                        help="also adaptation after a noise change, for the configurations of --adaptation-rows "
                             "(all by default) on the seeds of --adaptation-seed-list")
    parser.add_argument("--adaptation-seed-list", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--adaptation-rows", nargs="*", default=list(ADAPTATION_CONFIGS), choices=list(ADAPTATION_CONFIGS))
    parser.add_argument("--adaptation-horizon", type=positive_int, default=100,
                        help="iterations after the change within which to find when each run is back at 90 %%")
    parser.add_argument("--curvature", action="store_true",
                        help="also the BFGS curvature against a finite-difference Hessian on 4 train clips")
    parser.add_argument("--tpe-window", action="store_true", help="also time a long TPE run, bounded and not")
    parser.add_argument("--tpe-updates", type=int, default=400)
    parser.add_argument("--skip", nargs="*", default=[], choices=["latency", "memory", "convergence"])
    args = parser.parse_args()
    conditions = Conditions()
    if args.iterations < MARKS[0]:
        parser.error(f"--iterations must be at least {MARKS[0]} (the first mark of the convergence table)")

    import scenarios

    scenario_set = scenarios.load("builtin")
    clip = scenario_set["white_snr+10_f2"]
    result: dict = {"sample_rate": 16000}
    if "latency" not in args.skip:
        result["collect_feedback_1s"] = collect_latency(scenario_set, args.repeats)
        result["collect_feedback_distinct_chunks"] = len({id(x) for x, _ in second_stream(scenario_set, args.repeats + 1)})
        result["update_parameters"] = update_latency(clip, scenario_set["hum50_snr+15_m3"], args.update_repeats)
    if "memory" not in args.skip:
        result["memory"] = memory_alone(args.records)
    clips = [c.id for c in select_split(scenario_set, args.split)]
    if "convergence" not in args.skip:
        table = run_table({s: (s, {}, {}) for s in STRATEGIES}, clips, args.iterations, args.seed, args.jobs)
        summary = {s: summarize(rows, args.iterations) for s, rows in table.items()}
        last = str(max(m for m in MARKS if m <= args.iterations))
        best = max(summary, key=lambda s: summary[s]["median_fraction"][last])
        result["convergence"] = {"clips": len(clips), "iterations": args.iterations, "summary": summary,
                                 "best": best, "per_clip": table}  # fmt: skip
    if args.ablation:
        train = [c.id for c in scenario_set.split("train")]
        configs = {"gradient_default": ("gradient", {}, {})}
        configs.update({label: ("gradient", o, k) for label, (o, k) in ABLATION.items() if label in args.ablation_rows})
        tables = run_tables(configs, train, args.iterations, args.ablation_seeds, args.jobs)
        result["ablation"] = {
            "clips": "train",
            "summary": {f"{label}_seed_{seed}": summarize(rows, args.iterations)
                        for seed, table in tables.items() for label, rows in table.items()},
            "per_clip": {f"{label}_seed_{seed}": {cid: r["fraction"] for cid, r in rows.items()}
                         for seed, table in tables.items() for label, rows in table.items()},
        }  # fmt: skip
    if args.subset:
        result["subset"] = subset_check([c.id for c in scenario_set.split("train")], args.subset_budget)
    if args.probe_bias:
        result["probe_bias"] = probe_bias()
    if args.adaptation_seeds:
        changing = [c.id for c in scenario_set if c.tags.get("stationary") is False]
        configs = {label: ADAPTATION_CONFIGS[label] for label in args.adaptation_rows}
        result["adaptation_seeds"] = adaptation_seeds(changing, configs, args.adaptation_seed_list, args.jobs,
                                                       args.adaptation_horizon)
    if args.tpe_window:
        result["tpe_window"] = tpe_window(clip, args.tpe_updates)
    if args.curvature:
        result["curvature"] = {cid: curvature_check(cid, args.iterations, args.seed) for cid in CURVATURE_CLIPS}
    targets = {}
    if "collect_feedback_1s" in result:
        targets["collect_p99_under_5ms_metrics_given"] = (
            result["collect_feedback_1s"]["intrusive_metrics_given"]["p99_ms"] < 5.0
        )
        targets["gradient_update_p99_under_10ms"] = result["update_parameters"]["gradient_0.5s"]["p99_ms"] < 10.0
    if "memory" in result:
        rss = result["memory"]["rss_mb"]
        targets["rss_under_300mb"] = max(rss.values()) < 300.0
        # null when the run ends at or before 100k records: there is nothing after them to be flat
        targets["rss_flat_100k_to_end"] = (rss[str(args.records)] - rss["100000"] < 10.0) if args.records > 100_000 else None
    if "convergence" in result:
        s = result["convergence"]["summary"]
        best = result["convergence"]["best"]
        last = str(max(m for m in MARKS if m <= args.iterations))
        targets["best_at_95pct_within_100"] = s[best]["median_fraction"][last] >= 0.95
        targets["best_ahead_of_tpe"] = s[best]["median_fraction"][last] > s["bayesian"]["median_fraction"][last]
    result["targets_met"] = targets
    result["conditions"] = conditions.record()
    print(json.dumps(result, indent=1, allow_nan=False))


if __name__ == "__main__":
    main()
