"""Per-clip oracles of the feedback loop's objective, computed once and kept in a JSON file.

The oracle of a clip (or of a segment of it) is the best static setting of the parameters the loop
tunes by default (:data:`~feedback_env.feedback_loop.system.DEFAULT_TUNED`; the others at their
defaults) found by CMA-ES (:func:`feedback_env.oracle.oracle_search`: from the defaults, once per initial step
size in :data:`~feedback_env.oracle.ORACLE_SIGMAS`, IPOP restarts, the best kept) on
:class:`~feedback_env.feedback_loop.objective.StreamObjective`, the objective the loop optimizes.
Computing one takes ~2 minutes per clip, too slow for a test suite, hence the cache::

    python -m feedback_env.feedback_loop.oracle_cache --out tests/data/feedback_loop_oracle.json --jobs 2

The file records the objective, budget, seed and search settings; each entry holds the defaults'
score, the oracle's score and parameters, and the evaluations spent. Entries: every clip of the set,
the post-change half of every non-stationary clip (``<id>@<start>-<end>``, for adaptation), and one
short excerpt (``check:...``) cheap enough to recompute in a test. Tests re-score every cached setting
and recompute the check entry, so the cache cannot silently disagree with the code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from feedback_env.feedback_loop.objective import StreamObjective
from feedback_env.oracle import ORACLE_SIGMAS, oracle_search
from feedback_env.feedback_loop.system import DEFAULT_TUNED
from feedback_env.pipeline import PARAMETER_SPACE

SPACE = PARAMETER_SPACE.subspace(DEFAULT_TUNED)

SETTINGS = {"budget": 1200, "restarts": 2, "sigma0": list(ORACLE_SIGMAS), "seed": 0, "chunk_s": 0.5, "sample_rate": 16000}
CHECK_CLIP, CHECK_SEGMENT, CHECK_BUDGET = "brown_snr-5_m2", (0.0, 1.0), 300

OBJECTIVE = (
    "StreamObjective: mean of QualityReward.default(intrusive=True) over the chunks of the second pass of the "
    "clip (or segment) cycled through a reset EnhancementPipeline (first pass unscored), references delayed by "
    "the pipeline latency as FeedbackLoopSystem.step delays them; searched over the loop's default tuned parameters"
)


def entry_key(clip_id: str, segment: tuple[float, float] | None = None) -> str:
    return clip_id if segment is None else f"{clip_id}@{segment[0]:g}-{segment[1]:g}"


def objective_for(clip, segment: tuple[float, float] | None = None, chunk_s: float = 0.5) -> StreamObjective:
    """The loop's objective on ``clip`` (a :class:`scenarios.Clip`), or on ``segment`` (seconds) of it."""
    noisy, clean = clip.noisy, clip.clean
    if segment is not None:
        start, end = (int(round(t * clip.sample_rate)) for t in segment)
        noisy, clean = noisy[start:end], None if clean is None else clean[start:end]
    return StreamObjective(noisy, clean, clip.sample_rate, chunk_s)


def oracle_entry(clip, segment=None, budget=None, seed=None, restarts=None, sigma0=None, chunk_s=None) -> dict[str, Any]:
    """Run the oracle search for ``clip`` (or a segment); returns a cache entry."""
    s = {**SETTINGS, **{k: v for k, v in dict(budget=budget, seed=seed, restarts=restarts, sigma0=sigma0,
                                               chunk_s=chunk_s).items() if v is not None}}  # fmt: skip
    objective = objective_for(clip, segment, s["chunk_s"])
    started = time.perf_counter()
    result = oracle_search(objective, SPACE, s["budget"], s["seed"], s["restarts"], s["sigma0"])
    return {
        "clip": clip.id,
        "segment": None if segment is None else list(segment),
        "tags": clip.tags,
        "defaults": objective({}),
        "oracle": result.score,
        "params": result.params,
        "evaluations": result.evaluations,
        "budget": s["budget"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def targets(scenario_set) -> list[tuple[str, tuple[float, float] | None, int | None]]:
    """``(clip id, segment, budget)`` of every entry: all clips, post-change halves, the check excerpt."""
    out: list[tuple[str, tuple[float, float] | None, int | None]] = [(c.id, None, None) for c in scenario_set]
    for clip in scenario_set:
        if clip.tags.get("stationary") is False:
            change = float(clip.tags.get("change_s", clip.duration_s / 2))
            out.append((clip.id, (change, clip.duration_s), None))
    out.append((CHECK_CLIP, CHECK_SEGMENT, CHECK_BUDGET))
    return out


def _run(job: tuple[str, str, tuple[float, float] | None, int | None, dict]) -> tuple[str, dict]:
    import scenarios

    name, clip_id, segment, budget, settings = job
    clip = scenarios.load(name, sample_rate=settings["sample_rate"])[clip_id]
    key = entry_key(clip_id, segment)
    if budget is not None:
        key = f"check:{key}"
    return key, oracle_entry(clip, segment, budget, settings["seed"], settings["restarts"], settings["sigma0"],
                             settings["chunk_s"])  # fmt: skip


def load_cache(path: str | Path) -> dict[str, Any]:
    """Read a cache file; :raises ValueError: it was made with other settings than this code's."""
    data = json.loads(Path(path).read_text())
    if data.get("objective") != OBJECTIVE:
        raise ValueError(f"{path}: oracle cache made for another objective: {data.get('objective')!r}")
    return data


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description="Compute the per-clip oracles of the feedback loop's objective.")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--scenarios", default="builtin")
    parser.add_argument("--budget", type=int, default=SETTINGS["budget"], help="CMA-ES evaluations per run (one run per step size)")
    parser.add_argument("--seed", type=int, default=SETTINGS["seed"])
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--only", nargs="*", help="entry keys to compute (default: all)")
    args = parser.parse_args(argv)

    import multiprocessing

    import scenarios
    from tqdm import tqdm

    settings = {**SETTINGS, "budget": args.budget, "seed": args.seed}
    jobs = [
        (args.scenarios, cid, seg, budget, settings)
        for cid, seg, budget in targets(scenarios.load(args.scenarios, sample_rate=settings["sample_rate"]))
    ]
    if args.only:
        jobs = [j for j in jobs if entry_key(j[1], j[2]) in args.only or f"check:{entry_key(j[1], j[2])}" in args.only]
    entries: dict[str, Any] = {}
    with multiprocessing.get_context("spawn").Pool(max(1, args.jobs)) as pool:
        for key, entry in tqdm(pool.imap_unordered(_run, jobs), total=len(jobs), desc="oracles"):
            entries[key] = entry
    data = {
        "objective": OBJECTIVE,
        "settings": {**settings, "space": list(SPACE.names), "search": "feedback_env.oracle.oracle_search"},
        "scenarios": args.scenarios,
        "command": "python -m feedback_env.feedback_loop.oracle_cache " + " ".join(argv),
        "entries": dict(sorted(entries.items())),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps({"written": str(out), "entries": len(entries)}))


if __name__ == "__main__":
    main()
