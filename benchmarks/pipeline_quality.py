"""Quality of the pipeline on the built-in set: noisy input, defaults, the best static setting per clip
(CMA-ES on whole-clip SI-SDR), and noisereduce with its defaults, in one run. Prints JSON.

    python benchmarks/pipeline_quality.py [--budget 300] [--split test]

Targets (issue 2): defaults raise mean SI-SDR over the noisy input; the per-clip best beats
noisereduce by >= 4 dB mean SI-SDR and >= 0.3 mean PESQ-WB.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402

from benchmark_args import SPLITS, positive_int, select_split  # noqa: E402
from measurement import Conditions  # noqa: E402

METRICS = ["si_sdr", "pesq", "stoi", "estoi"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=positive_int, default=300, help="CMA evaluations per clip")
    parser.add_argument("--split", default="all", choices=SPLITS, help="clips to measure (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    conditions = Conditions()

    import noisereduce
    from tqdm import tqdm

    import scenarios
    from feedback_env.metrics import compute_metrics
    from feedback_env.oracle import clip_objective, cma_search
    from feedback_env.pipeline import EnhancementPipeline

    scenario_set = scenarios.load("builtin")
    clips = select_split(scenario_set, args.split)
    rows = {}
    for clip in tqdm(list(clips), desc="clips"):
        search = cma_search(clip_objective(clip.noisy, clip.clean), budget=args.budget, seed=args.seed)
        outputs = {
            "noisy": clip.noisy,
            "defaults": EnhancementPipeline().process_clip(clip.noisy),
            "noisereduce": noisereduce.reduce_noise(y=clip.noisy, sr=clip.sample_rate).astype(np.float32),
            "per_clip_best": EnhancementPipeline(params=search.params).process_clip(clip.noisy),
        }
        rows[clip.id] = {
            "tags": clip.tags,
            **{k: compute_metrics(y, clip.clean, clip.sample_rate, names=METRICS) for k, y in outputs.items()},
        }
    systems = ["noisy", "defaults", "noisereduce", "per_clip_best"]
    mean = {s: {m: float(np.mean([r[s][m] for r in rows.values()])) for m in METRICS} for s in systems}
    gap = {m: mean["per_clip_best"][m] - mean["noisereduce"][m] for m in METRICS}
    print(
        json.dumps(
            {
                "budget": args.budget,
                "clips": len(rows),
                "mean": mean,
                "per_clip_best_minus_noisereduce": gap,
                "targets_met": {
                    "defaults_raise_si_sdr": mean["defaults"]["si_sdr"] > mean["noisy"]["si_sdr"],
                    "si_sdr_gap_ge_4db": gap["si_sdr"] >= 4.0,
                    "pesq_gap_ge_0.3": gap["pesq"] >= 0.3,
                },
                "per_clip": rows,
                "conditions": conditions.record(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
