"""The safety wrapper on long streams: false rollbacks per step under unchanging parameters (against
the stated rate), steps from an injected degradation to its rollback, and the spread of the monitored
signal (the reward) within and between the built-in clips. Prints JSON.

The stated rates hold for serially independent rewards; ``reward_acf_lags_1_3_median`` is the median over
the streams of the reward's sample autocorrelation at lags 1-3 under the fixed parameters (positive values
would make false rollbacks more frequent than stated).

    python benchmarks/safety.py [--duration 120] [--rates 0.01,0.02,0.05]

Targets (issue 6): false rollbacks within the stated rate on stationary streams; injected
degradations rolled back within 10 steps.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402
from scipy.stats import poisson  # noqa: E402

from measurement import Conditions  # noqa: E402

DAMAGES = {  # injected faults: physical overrides of the defaults
    "severe": {"highpass_hz": 500.0, "eq_low_db": 12.0, "eq_high_db": -12.0, "nr_floor_db": -40.0, "nr_oversubtraction": 8.0},
    "over_suppression": {"nr_floor_db": -40.0, "nr_oversubtraction": 8.0},
    "high_pass_300": {"highpass_hz": 300.0},
}
INJECT_AT = 40  # step of the injected fault (0.5 s chunks: 20 s in)
WITHIN = 10  # steps it must be rolled back within


def rates(text: str) -> list[float]:
    """argparse type: comma-separated false-alarm rates (alarms per step), each 0 < rate < 1."""
    out = []
    for item in text.split(","):
        try:
            rate = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated rates, each a number 0 < rate < 1; got {item!r} in {text!r}") from None
        if not 0.0 < rate < 1.0:
            raise argparse.ArgumentTypeError(f"each rate must be 0 < rate < 1 (alarms per step), got {item!r} in {text!r}")
        out.append(rate)
    return out


def stream_run(env_id: str, folder: str, clip: str, rate: float, inject_at: int | None, damage: dict | None = None) -> dict:
    """One episode on ``clip`` with the default parameters (``damage`` overrides from step ``inject_at`` on)."""
    import gymnasium as gym

    from feedback_env.pipeline import PARAMETER_SPACE
    from feedback_env.wrappers import SafetyWrapper

    env = SafetyWrapper(gym.make(env_id, config={"scenarios": folder, "split": None}), false_alarm_rate=rate)
    env.reset(seed=0, options={"clip": clip})
    base = env.unwrapped
    good = PARAMETER_SPACE.to_unit(PARAMETER_SPACE.defaults())
    damage = damage or {}
    bad = PARAMETER_SPACE.to_unit({**PARAMETER_SPACE.defaults(), **damage})
    monitored, alarms, t, truncated, delay, rewards = 0, [], 0, False, None, []
    while not truncated:
        ready = env.detector.ready
        if base.action_type.__class__.__name__ == "DeltaAction":
            if inject_at is not None and t == inject_at:
                base.restore_params({**base.params, **damage})  # the fault: parameters jump to a bad setting
            action = np.zeros_like(good)
        else:
            action = bad if inject_at is not None and t >= inject_at else good
        _, reward, _, truncated, info = env.step(action)
        rewards.append(reward)
        monitored += ready
        if info["rollback"]:
            alarms.append(t)
            if inject_at is not None and t >= inject_at and delay is None:
                delay = t - inject_at + 1
        t += 1
    return {"steps": t, "monitored": monitored, "alarms": alarms, "delay": delay, "reward_acf": autocorrelation(rewards)}


def autocorrelation(values, lags: int = 3) -> list[float]:
    """Sample autocorrelation of ``values`` at lags 1..``lags`` (biased by about -1/n for n values)."""
    d = np.asarray(values, dtype=np.float64) - np.mean(values)
    return [float(d[:-k] @ d[k:] / (d @ d)) for k in range(1, lags + 1)]


def reward_spread() -> dict:
    """Mean and standard deviation of the per-chunk reward within each built-in clip (default parameters)."""
    import gymnasium as gym

    import scenarios
    from feedback_env.pipeline import PARAMETER_SPACE

    env = gym.make("feedback_env/AudioEnhancement-v0", config={"split": None})
    action = PARAMETER_SPACE.to_unit(PARAMETER_SPACE.defaults())
    stats = {}
    for clip in scenarios.load("builtin"):
        env.reset(seed=0, options={"clip": clip.id})
        rewards, truncated = [], False
        while not truncated:
            _, r, _, truncated, _ = env.step(action)
            rewards.append(r)
        stats[clip.id] = (float(np.mean(rewards)), float(np.std(rewards, ddof=1)))
    means, stds = np.array([m for m, _ in stats.values()]), np.array([s for _, s in stats.values()])
    return {
        "within_clip_std": {"min": float(stds.min()), "median": float(np.median(stds)), "max": float(stds.max())},
        "clip_means": {"min": float(means.min()), "max": float(means.max())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds per stationary stream")
    parser.add_argument("--rates", type=rates, default="0.01,0.02,0.05", help="stated false-alarm rates to check")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    conditions = Conditions()
    if args.duration < 0.5 * (INJECT_AT + WITHIN):
        parser.error(f"--duration {args.duration:g} s is too short: the fault comes at step {INJECT_AT} (0.5 s chunks) "
                     f"and needs {WITHIN} steps after it, so at least {0.5 * (INJECT_AT + WITHIN):g} s")  # fmt: skip

    import scenarios
    from scenarios.streams import write_stationary_set

    envs = ("feedback_env/AudioEnhancement-v0", "feedback_env/AudioEnhancementDelta-v0")
    with tempfile.TemporaryDirectory(prefix="streams-") as tmp:
        folder = str(write_stationary_set(tmp, duration_s=args.duration, seed=args.seed))
        clips = [c.id for c in scenarios.load(folder)]
        false_alarms = {}
        for rate in args.rates:
            # fixed parameters give the same rewards in both envs: one env suffices for the false alarms
            runs = [stream_run(envs[0], folder, c, rate, None) for c in clips]
            monitored = sum(r["monitored"] for r in runs)
            alarms = sum(len(r["alarms"]) for r in runs)
            acf = np.array([r["reward_acf"] for r in runs])
            false_alarms[str(rate)] = {
                "reward_acf_lags_1_3_median": np.median(acf, axis=0).tolist(),
                "monitored_steps": monitored,
                "rollbacks": alarms,
                "observed_rate": alarms / monitored,
                "expected_rollbacks": rate * monitored,
                "poisson_p_value_at_least_observed": float(poisson.sf(alarms - 1, rate * monitored)),
            }
        delays = {
            level: {env_id: [stream_run(env_id, folder, c, 0.01, INJECT_AT, damage)["delay"] for c in clips] for env_id in envs}
            for level, damage in DAMAGES.items()
        }
    flat = [d for per_env in delays.values() for ds in per_env.values() for d in ds]
    print(
        json.dumps(
            {
                "streams": {"clips": clips, "duration_s": args.duration, "envs": list(envs)},
                "false_rollbacks": false_alarms,
                "injected_degradation": {"rate": 0.01, "inject_at_step": INJECT_AT, "damage": DAMAGES, "steps_to_rollback": delays},
                "reward_spread_builtin": reward_spread(),
                "targets_met": {
                    "false_rollbacks_within_rate": all(v["poisson_p_value_at_least_observed"] > 0.01 for v in false_alarms.values()),
                    "rolled_back_within_10_steps": all(d is not None and d <= WITHIN for d in flat),
                },
                "conditions": conditions.record(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
