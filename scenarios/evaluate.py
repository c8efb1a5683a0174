"""``python -m scenarios.evaluate PATH|builtin --strategy NAME [--strategy NAME ...] --budget N --json OUT.json``

Runs each strategy on every clip of a scenario set for ``N`` feedback iterations from the same start,
prints a table, and writes JSON (the format of DESIGN.md), a CSV beside it, and with ``--plots DIR``
PNG figures. Strategy names: bypass, defaults, spsa, cma, ucb, thompson, td3:MODEL.zip, noisereduce,
optuna, random, oracle (the upper bound: CMA-ES with >= 1,000 evaluations per clip). A loop strategy takes
options of its update strategy as ``NAME:key=value,...`` (``--strategy spsa --strategy spsa:perturbation=0.15``
compares two probe sizes in one run).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from feedback_env.feedback_loop.objective import MIN_SCORED_S  # noqa: E402
from scenarios.strategies import STRATEGY_NAMES  # noqa: E402

MIN_CHUNK_S = MIN_SCORED_S  # s: every strategy is scored by chunk, and a shorter chunk is never scored


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scenarios.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", help="a scenario folder (manifest.json) or a built-in set name ('builtin')")
    parser.add_argument("--strategy", action="append", dest="strategies", metavar="NAME",
                        help=f"repeatable; one of {', '.join(STRATEGY_NAMES)}, td3:MODEL.zip, or NAME:key=value,... "
                             "(options of spsa/cma/optuna/random/ucb/thompson's update strategy; default: all but oracle)")  # fmt: skip
    parser.add_argument("--budget", type=int, default=100, help="feedback iterations (chunks) per clip")
    parser.add_argument("--json", type=Path, required=True, help="where to write the results (a CSV is written beside it)")
    parser.add_argument("--plots", type=Path, help="folder for PNG figures")
    parser.add_argument("--split", help="only the clips of this split (e.g. test)")
    parser.add_argument("--clip", action="append", dest="clips", metavar="ID", help="only this clip (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="clips evaluated in parallel processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-s", type=float, default=0.5, help=f"chunk length, seconds (at least min_scored_s = {MIN_CHUNK_S:g})")
    parser.add_argument("--sample-rate", type=int, default=16000, help="Hz: 8000, 16000 or 48000")
    parser.add_argument("--dnsmos", action="store_true", help="add DNSMOS (optional extra 'dnsmos'; seconds per clip)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.budget < 1:
        parser.error(f"--budget must be at least 1, got {args.budget}")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.json.suffix.lower() == ".csv":
        parser.error(f"--json {args.json}: the CSV is written beside the JSON with the suffix .csv, so this would "
                     "overwrite the JSON; give a .json path")
    if not (math.isfinite(args.chunk_s) and args.chunk_s >= MIN_CHUNK_S):
        parser.error(f"--chunk-s must be a finite number of seconds, at least min_scored_s = {MIN_CHUNK_S:g} "
                     f"(shorter chunks are never scored), got {args.chunk_s}")
    args.strategies = args.strategies or [n for n in STRATEGY_NAMES if n != "oracle"]
    return args


def prepare_outputs(args: argparse.Namespace) -> None:
    """Create the folders of ``--json`` and ``--plots`` before the run, so that a bad path fails now.

    :raises OSError: naming the option and the path.
    """
    for path in (args.json, args.json.with_suffix(".csv")):
        if path.is_dir():
            raise IsADirectoryError(f"--json {args.json}: {path} is a folder, not a file")
    for option, folder in (("--json", args.json.parent), ("--plots", args.plots)):
        if folder is None:
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(f"{option}: cannot make the folder {folder} ({type(exc).__name__}: {exc})") from exc
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"{option}: the folder {folder} is not writable")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from feedback_env.errors import FeedbackEnvError
    from scenarios import harness
    from scenarios.report import every_run_failed, print_table, write_csv, write_json, write_plots

    try:
        prepare_outputs(args)
        result, outputs = harness.run_evaluation(
            str(args.scenarios),
            args.strategies,
            args.budget,
            seed=args.seed,
            jobs=args.jobs,
            chunk_s=args.chunk_s,
            sample_rate=args.sample_rate,
            extra_metrics=["dnsmos"] if args.dnsmos else [],
            progress=not args.no_progress,
            keep_outputs=args.plots is not None,
            split=args.split,
            clip_ids=args.clips,
        )
    except (FeedbackEnvError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        write_json(result, args.json)
        write_csv(result, args.json.with_suffix(".csv"))
        print_table(result)
        if args.plots:
            for path in write_plots(result, outputs, args.plots):
                print(f"wrote {path}")
    except OSError as exc:
        print(f"error: cannot write the results ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    print(f"wrote {args.json} and {args.json.with_suffix('.csv')} in {result['seconds']:.0f} s")
    if every_run_failed(result):
        print("error: every run failed (their errors are above and in the JSON)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
