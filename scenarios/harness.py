"""The evaluation engine: every strategy on every clip of a scenario set, for a budget of feedback
iterations from the same start, scored the same way, summarized overall and by tag.

Per clip and strategy: final metrics of the clip rendered with the strategy's last-pass parameter
schedule (intrusive ones when the clip has a clean reference, non-intrusive always), the reward curve,
the loop objective reached (mean reward over the last pass of the clip), the fraction of the oracle's
improvement over the defaults on that objective, the iterations until the moving mean of the reward
(one pass wide; the whole curve when the budget is shorter than one pass, as the objective is then
scored) first reaches 95 % of that improvement (null if never), rollbacks, and time per iteration.
"""

from __future__ import annotations

import numbers
import time
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from multiprocessing import get_context
from typing import Any, Iterable, Sequence

import numpy as np

from feedback_env.errors import ScenarioError
from feedback_env.metrics import METRICS
from scenarios.strategies import ClipContext, last_pass_mean, make_strategy

INTRUSIVE_METRICS = ("si_sdr", "pesq", "stoi", "estoi")
BLIND_METRICS = ("wada_snr", "loudness_lufs", "clipping_ratio")
MIN_ORACLE_ROOM = 0.01
"""Smallest oracle improvement over the defaults, in reward units (0.1 dB of SI-SDR with the default
intrusive reward), that a fraction of it is taken of: below it the fraction is noise over noise."""


def render_schedule(noisy: np.ndarray, schedule: Sequence[dict], chunk: int, sample_rate: int) -> np.ndarray:
    """The clip enhanced chunk by chunk with ``schedule[k]`` on chunk ``k`` (one entry: static), aligned."""
    from feedback_env.pipeline import EnhancementPipeline

    pipe = EnhancementPipeline(sample_rate)
    defaults = pipe.space.defaults()
    pieces = []
    for k, start in enumerate(range(0, noisy.size, chunk)):
        pieces.append(pipe.process(noisy[start : start + chunk], {**defaults, **schedule[min(k, len(schedule) - 1)]}))
    pieces.append(pipe.process(np.zeros(pipe.latency, dtype=np.float32)))
    return np.concatenate(pieces)[pipe.latency : pipe.latency + noisy.size]


def _final_metrics(output: np.ndarray, clip, extra: Iterable[str]) -> dict[str, float]:
    from feedback_env.metrics import compute_metrics

    names = list(BLIND_METRICS) + list(extra)
    metrics = compute_metrics(output, None, clip.sample_rate, names=names)
    if clip.clean is not None:
        metrics.update(compute_metrics(output, clip.clean, clip.sample_rate, names=list(INTRUSIVE_METRICS)))
    return metrics


def check_extra_metrics(names: Sequence[str], sample_rate: int) -> None:
    """Fail before any work when an extra metric is unknown, intrusive or needs an optional extra that is
    not installed: each is computed once, as :func:`_final_metrics` will, on 0.1 s of silence."""
    from feedback_env.metrics import compute_metrics

    if names:
        compute_metrics(np.zeros(sample_rate // 10), None, sample_rate, names=list(names))


def iterations_to_reach(curve: Sequence[float | None], target: float, window: int,
                        unscored: Iterable[int] = ()) -> int | None:  # fmt: skip
    """First iteration (1-based) where the mean of the last ``window`` rewards reaches ``target``.

    Iterations in ``unscored`` (1-based: chunks the loop does not score, too short or with a silent clean
    reference) are left out of the mean; a window with nothing else does not reach. Any other iteration
    without a reward (NaN or None) failed, and a window holding it never counts. A curve shorter than
    ``window`` (a budget shorter than one pass) is averaged over all of it, as
    :func:`~scenarios.strategies.last_pass_mean` scores it.
    """
    c = np.array([np.nan if r is None else r for r in curve], dtype=float)
    if c.size == 0:
        return None
    skip = np.zeros(c.size, dtype=bool)
    skip[[i - 1 for i in unscored if 1 <= i <= c.size]] = True
    c[~skip & ~np.isfinite(c)] = -np.inf  # a failure
    window = min(window, c.size)
    kernel = np.ones(window)
    counted = np.convolve(~skip, kernel, mode="valid")
    total = np.convolve(np.where(skip, 0.0, c), kernel, mode="valid")
    moving = np.where(counted > 0, total / np.maximum(counted, 1), np.nan)
    hits = np.flatnonzero(moving >= target)
    return int(hits[0] + window) if hits.size else None


def clip_context(clip, chunk_s: float) -> ClipContext:
    """The pieces every strategy on ``clip`` shares: chunking and the loop's objective."""
    from feedback_env.feedback_loop.objective import StreamObjective

    chunk = int(round(chunk_s * clip.sample_rate))
    return ClipContext(clip, chunk, StreamObjective(clip.noisy, clip.clean, clip.sample_rate, chunk_s))


def _error_entry(message: str) -> dict:
    return {"final": {}, "curve": [], "iterations_to_95": None, "error": message}


def _context_or_error(clip, chunk_s: float) -> tuple[ClipContext | None, str | None]:
    """:func:`clip_context`, or why ``clip`` cannot be scored (too short, a silent clean reference), naming it:
    an error for each strategy on that clip, not the end of the run."""
    try:
        return clip_context(clip, chunk_s), None
    except ValueError as exc:
        return None, f"clip {clip.id!r}: {exc}"


def evaluate_strategy(clip, name: str, budget: int, seed: int, context: ClipContext, extra_metrics: Sequence[str]):
    """One strategy on one clip: ``(clip entry, (noisy, output, rate))``; a failure gives an entry with
    ``error`` and no output, and never raises."""
    started = time.perf_counter()
    try:
        run = make_strategy(name).run(clip, budget, seed, context)
        output = run.final_output if run.final_output is not None else render_schedule(
            clip.noisy, run.schedule, context.chunk, clip.sample_rate)  # fmt: skip
        entry = {
            "final": _final_metrics(output, clip, extra_metrics),
            "curve": [float(r) if np.isfinite(r) else None for r in run.curve],  # null: a failed iteration
            "objective": run.objective,
            "rollbacks": run.rollbacks,
            "ms_per_iteration": None if run.seconds_per_iteration is None else 1e3 * run.seconds_per_iteration,
            "chunks_per_pass": context.n_chunks,
            "unscored_iterations": [i + 1 for i in run.unscored],  # 1-based, as iterations_to_95
            "iterations_to_95": None,
            "fraction_of_oracle": None,
            **({"final_params": run.schedule[0]} if len(run.schedule) == 1 else {}),
            **run.extra,
            "wall_seconds": time.perf_counter() - started,  # the run, its rendering and its final metrics
        }
        return entry, (clip.noisy, output, clip.sample_rate)
    except Exception as exc:  # one failing strategy must not lose the others' results
        return _error_entry(f"{type(exc).__name__}: {exc}"), None


def add_oracle_fractions(entries: dict[str, dict], context: ClipContext, budget: int) -> None:
    """With an ``oracle`` entry: each run's fraction of the oracle's improvement over the defaults, and
    the iterations until it reached 95 % of it (in place)."""
    oracle = entries.get("oracle", {})
    if oracle.get("objective") is None:
        return
    # the reference point of "fraction of the oracle": the defaults, measured like every run (last
    # pass of the budget); the ``defaults`` strategy's own run when it was evaluated
    defaults_objective = entries.get("defaults", {}).get("objective")
    if defaults_objective is None:
        defaults_objective = last_pass_mean(context.objective.cycled({}, budget), context.n_chunks)
    room = oracle["objective"] - defaults_objective
    for entry in entries.values():
        if "error" in entry:
            continue
        entry["defaults_objective"] = defaults_objective
        entry["oracle_room"] = room
        if room >= MIN_ORACLE_ROOM and entry["objective"] is not None:
            entry["fraction_of_oracle"] = (entry["objective"] - defaults_objective) / room
            entry["iterations_to_95"] = iterations_to_reach(entry["curve"], defaults_objective + 0.95 * room,
                                                            context.n_chunks, entry.get("unscored_iterations", ()))  # fmt: skip


def evaluate_clip(clip, names: Sequence[str], budget: int, seed: int, chunk_s: float, extra_metrics: Sequence[str]):
    """All strategies on one clip: ``({strategy: clip entry}, {strategy: (noisy, output, rate)})``."""
    context, error = _context_or_error(clip, chunk_s)
    if error is not None:
        return {name: _error_entry(error) for name in names}, {}
    entries, outputs = {}, {}
    for name in names:
        entries[name], output = evaluate_strategy(clip, name, budget, seed, context, extra_metrics)
        if output is not None:
            outputs[name] = output
    add_oracle_fractions(entries, context, budget)
    return entries, outputs


def _load(source: str, sample_rate: int):
    import scenarios

    return scenarios.load(source, sample_rate=sample_rate, strict=False)


# Worker processes only: each gets several tasks of one run and reads the set once. They are started from
# the forkserver by each run's own pool, so their cache never outlives the run (the parent reads afresh).
_load_in_worker = lru_cache(maxsize=2)(_load)


def _evaluate_by_id(source: str, sample_rate: int, clip_id: str, name: str, budget: int, seed: int, chunk_s: float,
                    extra_metrics: Sequence[str]):  # fmt: skip
    clip = _load_in_worker(source, sample_rate)[clip_id]
    context, error = _context_or_error(clip, chunk_s)
    if error is not None:
        return _error_entry(error), None
    return evaluate_strategy(clip, name, budget, seed, context, extra_metrics)


def _measured(metric: str, values: Iterable[float | None]) -> list[float]:
    """The values that are measurements of ``metric``: not missing, finite, not its undefined value (STOI 0
    of a clip with too little speech, SI-SDR -100 of one with a silent reference...)."""
    v = np.array([np.nan if x is None else x for x in values], dtype=np.float64)
    spec = METRICS.get(metric)
    return v[spec.defined(v) if spec else np.isfinite(v)].tolist()


def _mean(metric: str, values: Iterable[float | None]) -> float | None:
    v = _measured(metric, values)
    return float(np.mean(v)) if v else None


def _tag_key(value: Any) -> str:
    """The group of a tag value: equal numbers share one (10, 10.0 and 10.00 -> "10"; 0 and -0.0 -> "0");
    booleans and every other value keep their ``str``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    number = float(value)
    return str(int(number)) if number.is_integer() else str(number)


def _groups_by_tag(tags: dict[str, dict]) -> dict[str, dict[str, list[str]]]:
    """``{tag: {value: [clip ids]}}`` for every tag (free-form, DESIGN.md) with a scalar value (a string,
    number, boolean or null; lists and objects are not grouped), values keyed by :func:`_tag_key`."""
    groups: dict[str, dict[str, list[str]]] = {}
    for cid, clip_tags in tags.items():
        for tag, value in clip_tags.items():
            if value is None or isinstance(value, (str, bool, np.bool_, numbers.Real)):
                groups.setdefault(tag, {}).setdefault(_tag_key(value), []).append(cid)
    return groups


def _median_reached(reached: Sequence[int | None]) -> float | None:
    """Median iterations to 95 % over clips; a clip that never reached counts as beyond the budget, so the
    median is None both without an oracle (no clips) and when half or more of the clips never reached."""
    if not reached:
        return None
    median = float(np.median([np.inf if r is None else r for r in reached]))
    return median if np.isfinite(median) else None


def summarize(entries: dict[str, dict[str, dict]], tags: dict[str, dict]) -> dict[str, dict]:
    """Per strategy: means over clips, means by tag, median fraction of the oracle, rollbacks, timing.

    ``median_iterations_to_95`` is null when half or more of the clips never reached 95 % of the oracle
    within the budget (and without an oracle in the run); ``median_fraction_of_oracle`` tells the two apart.
    """
    out = {}
    for name, clips in entries.items():
        good = {cid: c for cid, c in clips.items() if "error" not in c}
        metrics = sorted({m for c in good.values() for m in c["final"]})
        by_tag: dict[str, dict] = {}
        n_by_tag: dict[str, dict] = {}
        for tag, groups in _groups_by_tag({cid: tags.get(cid, {}) for cid in good}).items():
            by_tag[tag] = {
                value: {m: _mean(m, (good[c]["final"].get(m) for c in ids)) for m in metrics} for value, ids in groups.items()
            }
            n_by_tag[tag] = {value: len(ids) for value, ids in groups.items()}
        measured = {m: _measured(m, (c["final"].get(m) for c in good.values())) for m in metrics}
        fractions = [c["fraction_of_oracle"] for c in good.values() if c.get("fraction_of_oracle") is not None]
        reached = [c["iterations_to_95"] for c in good.values() if c.get("fraction_of_oracle") is not None]
        timing = [c["ms_per_iteration"] for c in good.values() if c.get("ms_per_iteration") is not None]
        out[name] = {
            "clips": clips,
            "mean": {m: float(np.mean(v)) if v else None for m, v in measured.items()},
            # clips each mean is over: intrusive metrics only where a clean reference is, undefined values left out
            "mean_n": {m: len(v) for m, v in measured.items()},
            "mean_by_tag": by_tag,
            "n_by_tag": n_by_tag,  # clips in each group of mean_by_tag
            "median_fraction_of_oracle": float(np.median(fractions)) if fractions else None,
            # clips where the oracle beat the defaults by less than MIN_ORACLE_ROOM: no fraction, not in the median
            "no_fraction_of_oracle": sorted(cid for cid, c in good.items() if c.get("oracle_room", np.inf) < MIN_ORACLE_ROOM),
            "median_iterations_to_95": _median_reached(reached),
            "rollbacks": int(sum(c.get("rollbacks", 0) for c in good.values())),
            "ms_per_iteration": float(np.median(timing)) if timing else None,
            "wall_seconds": float(sum(c.get("wall_seconds", 0.0) for c in clips.values())),
            "errors": {cid: c["error"] for cid, c in clips.items() if "error" in c},
        }
    return out


def _best_adaptive(strategies: dict[str, dict], adaptive: Sequence[str]) -> str | None:
    """The adaptive strategy with the highest median fraction of the oracle (with an oracle in the run),
    else the highest mean final SI-SDR (else WADA-SNR, for sets without clean references): one criterion
    for all, the first that any of them has (one without it ranks last), never a fraction against dB."""
    criteria = (lambda s: s["median_fraction_of_oracle"], lambda s: s["mean"].get("si_sdr"), lambda s: s["mean"].get("wada_snr"))
    for value in criteria:
        if any(value(strategies[name]) is not None for name in adaptive):
            return max(adaptive, key=lambda name: -np.inf if value(strategies[name]) is None else float(value(strategies[name])))
    return adaptive[0] if adaptive else None


def run_evaluation(
    source: str,
    names: Sequence[str],
    budget: int,
    seed: int = 0,
    jobs: int = 1,
    chunk_s: float = 0.5,
    sample_rate: int = 16000,
    extra_metrics: Sequence[str] = (),
    progress: bool = True,
    keep_outputs: bool = False,
    split: str | None = None,
    clip_ids: Sequence[str] | None = None,
) -> tuple[dict[str, Any], dict[tuple[str, str], tuple]]:
    """Evaluate ``names`` on every readable clip of ``source`` (a folder or a built-in set name).

    :param split: only the clips of this split (tag ``split``), e.g. ``"test"``.
    :param clip_ids: only these clips.

    :returns: the result (the JSON of DESIGN.md plus extras) and, with ``keep_outputs``, the audio
        ``{(strategy, clip): (noisy, enhanced, sample_rate)}`` for figures.
    """
    from tqdm import tqdm

    made = {name: make_strategy(name) for name in names}  # unknown names fail before any work
    check_extra_metrics(extra_metrics, sample_rate)
    started = time.perf_counter()
    scenario_set = _load(str(source), sample_rate)
    if len(scenario_set) == 0:  # a manifest lists at least one clip: each one's error says why
        raise ScenarioError(f"no clip of {source!r} could be read:\n" + "\n".join(scenario_set.errors.values()))
    if split is not None:
        scenario_set = scenario_set.split(split)
    if clip_ids:
        scenario_set = scenario_set.select(clip_ids)
    per_clip: dict[str, tuple] = {}
    if jobs <= 1:
        bar = tqdm(total=len(scenario_set), desc="clips", disable=not progress)
        for clip in scenario_set:
            per_clip[clip.id] = evaluate_clip(clip, names, budget, seed, chunk_s, extra_metrics)
            bar.update()
    else:
        # one task per clip and strategy, the dearest strategies first, so that no process is left with a
        # long run while the other idles at the end
        order = sorted(names, key=lambda n: -made[n].relative_cost)
        tasks = [(clip.id, name) for name in order for clip in scenario_set]
        runs: dict[tuple[str, str], tuple] = {}
        bar = tqdm(total=len(tasks), desc="runs (clip x strategy)", disable=not progress)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("forkserver")) as pool:
            futures = {task: pool.submit(_evaluate_by_id, str(source), sample_rate, *task, budget, seed, chunk_s,
                                         list(extra_metrics)) for task in tasks}  # fmt: skip
            for task, future in futures.items():
                runs[task] = future.result()
                bar.update()
        for clip in scenario_set:
            entries = {name: runs[clip.id, name][0] for name in names}
            if entries.get("oracle", {}).get("objective") is not None:  # the oracle ran: the clip can be scored
                add_oracle_fractions(entries, clip_context(clip, chunk_s), budget)
            per_clip[clip.id] = entries, {n: runs[clip.id, n][1] for n in names if runs[clip.id, n][1] is not None}
    bar.close()
    entries = {name: {cid: per_clip[cid][0][name] for cid in scenario_set.ids} for name in names}
    tags = {clip.id: clip.tags for clip in scenario_set}
    for name in names:
        for cid, entry in entries[name].items():
            entry["tags"] = tags[cid]
    strategies = summarize(entries, tags)
    best = _best_adaptive(strategies, [n for n in names if made[n].adaptive and strategies[n]["mean"]])
    input_metrics = {clip.id: _final_metrics(clip.noisy, clip, ()) for clip in scenario_set}
    result = {
        "scenarios": scenario_set.name,
        "clips": len(scenario_set),
        "sample_rate": scenario_set.sample_rate,
        "pesq_mode": "narrow-band (P.862.1)" if scenario_set.sample_rate == 8000 else "wide-band (P.862.2)",
        "budget": budget,
        "seed": seed,
        "chunk_s": chunk_s,
        "strategies": strategies,
        "input": {"clips": input_metrics, "mean": {m: _mean(m, (v.get(m) for v in input_metrics.values()))
                                                   for m in INTRUSIVE_METRICS + BLIND_METRICS}},  # fmt: skip
        "best_adaptive": best,
        "unreadable_clips": dict(scenario_set.errors),
        "seconds": time.perf_counter() - started,
    }
    outputs = {(n, cid): per_clip[cid][1][n] for cid in per_clip for n in per_clip[cid][1]} if keep_outputs else {}
    return result, outputs
