"""What the trained policy is worth: the TD3 policy of a ``python train.py`` run against the best static
setting (CMA on the train clips) and the per-clip oracle (CMA per test clip), on the test clips it never
saw. Whole-clip SI-SDR, PESQ and STOI of aligned outputs. Prints JSON.

    python train.py                                   # the default run, into runs/td3
    python benchmarks/learning.py [--run runs/td3] [--oracle-budget 300]

Targets (issue 6), on the test clips: the policy beats the best static setting on mean SI-SDR without
losing mean PESQ; it closes at least half of the SI-SDR gap between that static setting and the
per-clip oracle; it beats the static setting by at least 1 dB mean SI-SDR on the non-stationary clips.
The oracle is the better of CMA over the run's tuned parameters and CMA over all 19, per clip.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def per_clip_oracle(clips, tuned: list[str], budget: int, seed: int) -> dict[str, dict]:
    """Best static setting per clip: CMA over ``tuned`` and over all parameters, the better of the two."""
    from agents.evaluation import clip_scores
    from feedback_env.oracle import clip_objective, cma_search
    from feedback_env.pipeline import PARAMETER_SPACE, EnhancementPipeline

    out = {}
    for clip in clips:
        objective = clip_objective(clip.noisy, clip.clean, clip.sample_rate)
        results = [cma_search(objective, space, budget=budget, seed=seed) for space in (PARAMETER_SPACE.subspace(tuned), PARAMETER_SPACE)]
        best = max(results, key=lambda r: r.score)
        params = {**PARAMETER_SPACE.defaults(), **best.params}
        out[clip.id] = clip_scores(EnhancementPipeline(params=params).process_clip(clip.noisy), clip.clean, clip.sample_rate)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/td3", help="output folder of a train.py run")
    parser.add_argument("--oracle-budget", type=int, default=300, help="CMA evaluations per clip and space")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    import scenarios
    from agents.evaluation import mean_scores
    from agents.factory import load_agent
    from agents.training import RunConfig, evaluate_run, split_ids

    run_dir = Path(args.run)
    if not (run_dir / "model.zip").exists():
        raise SystemExit(f"no trained model in {run_dir}: run `python train.py --out {run_dir}` first")
    config = RunConfig.load(run_dir / "run.json")
    result = evaluate_run(config, load_agent(run_dir / "model.zip"))  # recomputed: the figures come from this run
    scenario_set = scenarios.load(config.scenarios)
    test = [scenario_set[i] for i in split_ids(scenario_set, "test")]
    oracle = per_clip_oracle(test, config.tuned, args.oracle_budget, args.seed)
    per_clip = {**result["per_clip"], "oracle": oracle}
    ns = result["non_stationary"]
    mean = {k: mean_scores(v) for k, v in per_clip.items()}
    mean_ns = {k: mean_scores(v, ns) for k, v in per_clip.items()} if ns else {}
    static, policy, best = mean["best_static"], mean["policy"], mean["oracle"]
    gap = best["si_sdr"] - static["si_sdr"]
    closed = (policy["si_sdr"] - static["si_sdr"]) / gap if gap > 0 else float("nan")
    ns_gain = mean_ns["policy"]["si_sdr"] - mean_ns["best_static"]["si_sdr"] if ns else float("nan")
    evaluation = json.loads((run_dir / "evaluation.json").read_text()) if (run_dir / "evaluation.json").exists() else {}
    print(
        json.dumps(
            {
                "run": str(run_dir),
                "config": {k: v for k, v in vars(config).items()},
                "train_wall_seconds": evaluation.get("wall_seconds"),
                "load_average_now": os.getloadavg(),
                "clips": result["clips"],
                "non_stationary": ns,
                "mean": mean,
                "mean_non_stationary": mean_ns,
                "policy_minus_static": {m: policy[m] - static[m] for m in policy},
                "oracle_minus_static_si_sdr": gap,
                "gap_closed": closed,
                "non_stationary_policy_minus_static_si_sdr": ns_gain,
                "targets_met": {
                    "beats_static_si_sdr": policy["si_sdr"] > static["si_sdr"],
                    "pesq_not_lost": policy["pesq"] >= static["pesq"],
                    "closes_half_the_gap": bool(closed >= 0.5),
                    "non_stationary_plus_1db": bool(ns_gain >= 1.0),
                },
                "per_clip_si_sdr": {k: {c: v[c]["si_sdr"] for c in result["clips"]} for k, v in per_clip.items()},
                "static_params": result["static"]["params"],
                "median_policy_params": {
                    name: float(np.median([p[name] for s in result["schedules"].values() for p in s])) for name in config.tuned
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
