"""Train an SB3 agent (TD3 by default) on the enhancement env and evaluate it on the test clips.

    python train.py [--algo td3|sac|ppo] [--env ID] [--scenarios PATH|builtin] [--timesteps N]
                    [--seed N] [--n-envs N] [--out DIR] [--resume] [--safety/--no-safety]

Writes under --out: TensorBoard logs (tb/), checkpoints with the replay buffer (checkpoints/), the
evaluations on the test clips during training (eval/), the policy (model.zip; for TD3 the mean action of
the last --ensemble checkpoints and the final model, agents.ensemble) with its config (model.config.json),
the run's settings (run.json) and the final evaluation (evaluation.json). A fresh run (no --resume)
deletes the checkpoints an earlier run left under --out. A TD3 run trains --members agents (default 2, from
seeds --seed and --seed + 1000, one process per core), each a run of its own under --out/member_K (its
tb/, checkpoints/, eval/, model.zip and run.json); the top-level model.zip acts with the mean action of
all. Ends with a table on the test clips: bypass, default parameters, the best static parameters (CMA on
the train clips) and the trained policy, each with whole-clip SI-SDR, PESQ and STOI.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from dataclasses import fields  # noqa: E402
from pathlib import Path  # noqa: E402


def _float_or_none(value: str) -> float | None:
    return None if value.lower() == "none" else float(value)


def build_parser() -> argparse.ArgumentParser:
    from agents.training import RunConfig

    defaults = RunConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", choices=["td3", "sac", "ppo"], default=defaults.algo)
    p.add_argument("--env", dest="env_id", default=defaults.env_id, help="environment id (absolute or delta env)")
    p.add_argument("--scenarios", default=defaults.scenarios, help="scenario folder or built-in set name")
    p.add_argument("--timesteps", type=int, default=None,
                   help=f"env steps (chunks) per member (default {defaults.timesteps}); with --resume, the run's own unless given")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--n-envs", type=int, default=defaults.n_envs, help="parallel envs (SubprocVecEnv when > 1); "
                   "TD3/SAC then take a gradient step per N env steps: --hyper '{\"gradient_steps\": N}' keeps the count")
    p.add_argument("--out", default=defaults.out, help="output folder")
    p.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoint under --out, with the run's own settings (other values: an error)")
    p.add_argument("--safety", action=argparse.BooleanOptionalAction, default=defaults.safety, help="train under the SafetyWrapper")
    p.add_argument("--tuned", default=",".join(defaults.tuned), help="comma-separated parameters the agent sets, or 'all'")
    p.add_argument("--smoothing", type=float, default=defaults.smoothing, help="absolute env: action low-pass a in [0, 1)")
    p.add_argument("--augment", default=json.dumps(defaults.augment), help="training clip variants as JSON, or 'none'")
    p.add_argument("--average-from", type=_float_or_none, default=defaults.average_from,
                   help="average the actor's weights over the run after this fraction, or 'none'")
    p.add_argument("--residual", type=_float_or_none, default=defaults.residual,
                   help="absolute env: actions as offsets of at most this many unit-cube widths around the best static setting, or 'none'")
    p.add_argument("--feature-context", type=float, default=defaults.feature_context,
                   help="per-chunk decay of the running mean of the features the policy hears beside the coming chunk's, 0 = none")
    p.add_argument("--ensemble", type=int, default=None,
                   help=f"td3: act with the mean action of the last N checkpoints and the final model (default {defaults.ensemble}), 0 = the final model alone")
    p.add_argument("--members", type=int, default=None,
                   help=f"td3: train N agents from seeds SEED, SEED+1000, ... side by side and act with their mean action (default {defaults.members}), 1 = one agent")
    p.add_argument("--static-budget", type=int, default=defaults.static_budget, help="CMA evaluations for the best static setting")
    p.add_argument("--checkpoint-freq", type=int, default=defaults.checkpoint_freq)
    p.add_argument("--eval-freq", type=int, default=defaults.eval_freq)
    p.add_argument("--hyper", default="{}", help='JSON of hyperparameter overrides, e.g. \'{"gamma": 0.9}\'')
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def given_flags(argv: list[str] | None) -> set[str]:
    """The destinations of the flags on the command line (argparse leaves a preset attribute alone when its
    flag is absent, so the ones still holding the marker were not given)."""
    parser, absent = build_parser(), object()
    marked = argparse.Namespace(**{dest: absent for dest in vars(parser.parse_args([]))})
    return {k for k, v in vars(parser.parse_args(argv, namespace=marked)).items() if v is not absent}


def conflicts_with_run(config, previous, given: set[str]) -> list[str]:
    """The flags given with ``--resume`` that ask for another value than the run's own (``--timesteps`` may
    extend a run; ``--out`` names it), as ``--flag VALUE (its own VALUE)``."""
    field_of = {"hyper": "hyperparameters"}
    flag_of = {"env_id": "--env"}
    out = []
    for dest in sorted(given - {"timesteps", "out", "resume", "no_progress"}):
        field = field_of.get(dest, dest)
        mine, theirs = getattr(config, field), getattr(previous, field)
        if mine != theirs:
            flag = flag_of.get(dest, "--" + dest.replace("_", "-"))
            out.append(f"{flag} {mine} (its own {theirs!r})")
    return out


def _json_flag(flag: str, text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{flag} is not valid JSON ({exc}): {text!r}") from exc


def config_from_args(args: argparse.Namespace):
    from agents.training import RunConfig
    from feedback_env.pipeline import PARAMETER_SPACE

    tuned = list(PARAMETER_SPACE.names) if args.tuned == "all" else [t for t in args.tuned.split(",") if t]
    augment = None if args.augment.lower() in ("none", "null", "") else _json_flag("--augment", args.augment)
    given = {k: v for k, v in vars(args).items() if not (k == "timesteps" and v is None)}  # None: RunConfig's default
    values = {**given, "tuned": tuned, "hyperparameters": _json_flag("--hyper", args.hyper), "augment": augment}
    return RunConfig(**{f.name: values[f.name] for f in fields(RunConfig) if f.name in values})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)
    import scenarios
    from agents.training import RunConfig, check_splits, run
    from feedback_env.errors import FeedbackEnvError

    try:
        config = config_from_args(args)
        # a missing or malformed set, or one without train clips, fails here, not after the model is built
        warning = check_splits(scenarios.load(config.scenarios))
    except (FeedbackEnvError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    saved = Path(config.out) / "run.json"
    if args.resume and not saved.exists():  # every run writes run.json before its first step
        print(f"error: --resume: no run in {config.out} (no run.json); check --out, or start a run without --resume",
              file=sys.stderr)
        return 2
    if args.resume:
        previous = RunConfig.load(saved)
        conflicts = conflicts_with_run(config, previous, given_flags(argv))
        if conflicts:
            print(f"error: --resume continues the run in {config.out} with its own settings (run.json); these flags "
                  f"ask for others: {'; '.join(conflicts)}. Drop them, or start a new run in another --out.",
                  file=sys.stderr)  # fmt: skip
            return 2
        if args.timesteps is not None:  # a given --timesteps may extend a resumed run; the rest is the run's own
            previous.timesteps = args.timesteps
        previous.out = config.out  # the folder holding run.json is the run's, wherever it started (moved, copied)
        config = previous
    _warn_if_too_short(config)
    run(config, resume=args.resume, progress_bar=not args.no_progress)
    return 0


def _warn_if_too_short(config) -> None:
    """Say so when the run ends before the algorithm's first gradient step (its policy stays the random start)."""
    from agents.factory import agent_config

    starts = agent_config(config.algo, **config.hyperparameters).get("learning_starts")
    if starts is not None and config.timesteps <= starts:
        print(f"warning: --timesteps {config.timesteps} is not above {config.algo}'s learning_starts ({starts}): no "
              "gradient step will be taken, and the 'policy' row is the untrained initial policy", file=sys.stderr)
    if config.safety and config.algo == "ppo":
        print("warning: PPO learns from the actions it sampled (its log-probabilities are theirs), also where --safety "
              "substituted or limited them; TD3 and SAC learn from the actions that ran", file=sys.stderr)


if __name__ == "__main__":  # the guard SubprocVecEnv's forkserver workers need
    sys.exit(main())
