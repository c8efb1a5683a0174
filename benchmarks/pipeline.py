"""Pipeline speed, metric costs and env throughput, beside noisereduce in the same run. Prints JSON.

    python benchmarks/pipeline.py [--repeats 30]

Figures: median over repeats, one thread (OMP_NUM_THREADS=1 is set before numpy loads).
Targets (issue 2): real-time factor >= 200 at 16 kHz, at least as fast as noisereduce, env >= 200 steps/s.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from benchmark_args import positive_int  # noqa: E402


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm up caches and imports
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return float(np.median(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=30)
    parser.add_argument("--env-steps", type=int, default=600)
    args = parser.parse_args()

    import gymnasium as gym
    import noisereduce

    import feedback_env  # noqa: F401  (registers the envs)
    import scenarios
    from feedback_env.audio import resample
    from feedback_env.errors import MetricError
    from feedback_env.metrics import METRICS
    from feedback_env.pipeline import EnhancementPipeline

    clip = scenarios.load("builtin")["white_snr+10_f2"]
    second = clip.noisy[16000:32000]
    reference = clip.clean[16000:32000]
    result: dict = {"chunk_s": 1.0, "repeats": args.repeats}

    pipeline_s = {}
    for rate in (8000, 16000, 48000):
        x = resample(second, 16000, rate)
        pipe = EnhancementPipeline(rate)
        pipe.process(x)  # past the warm-up of the noise estimate
        pipeline_s[rate] = median_seconds(lambda: pipe.process(x), args.repeats)
    result["pipeline_ms_per_s"] = {str(r): 1e3 * s for r, s in pipeline_s.items()}
    result["pipeline_realtime_factor"] = {str(r): 1.0 / s for r, s in pipeline_s.items()}

    nr_s = median_seconds(lambda: noisereduce.reduce_noise(y=second, sr=16000), args.repeats)
    result["noisereduce_ms_per_s"] = 1e3 * nr_s
    result["pipeline_speed_vs_noisereduce"] = nr_s / pipeline_s[16000]

    result["metric_ms_per_s"] = {}
    for name, spec in METRICS.items():
        try:
            spec.fn(second, reference, 16000)
        except MetricError as exc:  # an optional extra (dnsmos) that is not installed
            if not spec.optional:
                raise
            result["metric_ms_per_s"][name] = f"skipped: {exc}"
            continue
        result["metric_ms_per_s"][name] = 1e3 * median_seconds(
            lambda spec=spec: spec.fn(second, reference, 16000), max(5, args.repeats // 3)
        )

    env = gym.make("feedback_env/AudioEnhancement-v0")
    env.reset(seed=0)
    env.action_space.seed(0)
    steps, t0 = 0, time.perf_counter()
    while steps < args.env_steps:
        *_, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if truncated:
            env.reset()
    result["env_steps_per_s"] = steps / (time.perf_counter() - t0)
    result["env_chunk_s"] = env.unwrapped.config["chunk_s"]
    result["targets_met"] = {
        "realtime_factor_16k_ge_200": result["pipeline_realtime_factor"]["16000"] >= 200,
        "faster_than_noisereduce": result["pipeline_speed_vs_noisereduce"] >= 1.0,
        "env_steps_per_s_ge_200": result["env_steps_per_s"] >= 200,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
