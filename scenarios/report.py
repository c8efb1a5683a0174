"""Outputs of the evaluation harness: a terminal table (rich), JSON, CSV and PNG figures.

The JSON follows DESIGN.md: ``{"strategies": {NAME: {"clips": {ID: {"final": {metric: value},
"curve": [reward per iteration], "iterations_to_95": int | null, ...}}, "mean": {metric: value}, ...}}}``
with extra keys (rollbacks, timing, means by tag, unreadable clips) beside the fixed ones. Strict JSON:
a failed iteration's reward is null in ``curve``, and ``iterations_to_95`` / ``median_iterations_to_95``
are null when 95 % of the oracle was not reached within the budget (the table prints ``>budget``).
"""

from __future__ import annotations

import csv
import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from scenarios.harness import MIN_ORACLE_ROOM, _measured

TABLE_METRICS = ("si_sdr", "pesq", "stoi", "estoi", "wada_snr")
PLOT_LABELS = {"si_sdr": "SI-SDR", "wada_snr": "WADA-SNR"}  # the metrics the figures compare clips by


def _finite_or_null(value: Any, where: str, found: list[str]) -> Any:
    """``value`` with every NaN or infinite float replaced by None; ``found`` gets where each was
    (``result.strategies.spsa.mean.si_sdr = nan``)."""
    if isinstance(value, dict):
        return {k: _finite_or_null(v, f"{where}.{k}", found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v, f"{where}[{i}]", found) for i, v in enumerate(value)]
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        found.append(f"{where} = {value}")
        return None
    return value


def write_json(result: dict[str, Any], path: str | Path) -> None:
    """Strict JSON (no ``NaN`` or ``Infinity``). The harness writes null where a value does not exist (a
    failed iteration, a median never reached); any other non-finite value is written as null too, with a
    warning naming it, so that a long run's results are never lost to one bad number."""
    found: list[str] = []
    clean = _finite_or_null(result, "result", found)
    if found:
        warnings.warn(f"{path}: non-finite values written as null: {', '.join(found[:5])}"
                      + (f" and {len(found) - 5} more" if len(found) > 5 else ""), stacklevel=2)  # fmt: skip
    Path(path).write_text(json.dumps(clean, indent=2, default=float, allow_nan=False))


def write_csv(result: dict[str, Any], path: str | Path) -> None:
    """One row per strategy and clip: final metrics (an empty cell where a metric is undefined, e.g. STOI of
    a clip with too little speech: the JSON means leave those out too), iterations to 95 % of the oracle,
    rollbacks, timing, error, the loop objective reached and its fraction of the oracle's improvement."""
    metrics = sorted({m for s in result["strategies"].values() for c in s["clips"].values() for m in c["final"]})
    columns = (("iterations_to_95", None), ("rollbacks", 0), ("ms_per_iteration", ""), ("error", ""),
               ("objective", None), ("fraction_of_oracle", None))  # fmt: skip
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["strategy", "clip", *metrics, *(k for k, _ in columns)])
        for name, strategy in result["strategies"].items():
            for clip_id, clip in strategy["clips"].items():
                measured = [_measured(m, [clip["final"].get(m)]) for m in metrics]
                writer.writerow([name, clip_id, *(v[0] if v else "" for v in measured)]
                                + [clip.get(k, d) for k, d in columns])  # fmt: skip


def print_table(result: dict[str, Any]) -> None:
    """Means per strategy, with the fraction of the oracle's improvement (median over clips); under it, the
    clips each strategy failed on (its means are over the others: a ``clips`` column says n/N) and the
    unreadable clips."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    total = result["clips"]
    rate = f", {result['sample_rate']} Hz, PESQ {result['pesq_mode']}" if "sample_rate" in result else ""
    table = Table(title=f"{result['scenarios']}: {total} clips{rate}, budget {result['budget']} iterations")
    table.add_column("strategy")
    failures = any(s.get("errors") for s in result["strategies"].values())
    if failures:
        table.add_column("clips", justify="right")
    shown = [m for m in TABLE_METRICS if any(m in s["mean"] for s in result["strategies"].values())]
    for metric in shown:
        table.add_column(metric, justify="right")
    for column in ("of oracle", "iters to 95%", "rollbacks", "ms/iter", "s, all clips"):
        table.add_column(column, justify="right")
    for name, s in result["strategies"].items():
        cells = [f"{total - len(s.get('errors', {}))}/{total}"] if failures else []
        cells += ["-" if s["mean"].get(m) is None else f"{s['mean'][m]:.2f}" for m in shown]  # None: no defined value
        share = s.get("median_fraction_of_oracle")
        reached = s.get("median_iterations_to_95")
        cells += [
            "-" if share is None else f"{100 * share:.0f}%",
            ("-" if share is None else f">{result['budget']}") if reached is None else f"{reached:.0f}",
            str(s.get("rollbacks", 0)),
            "-" if s.get("ms_per_iteration") is None else f"{s['ms_per_iteration']:.1f}",
            f"{s.get('wall_seconds', 0.0):.0f}",
        ]
        table.add_row(name, *cells)
    console = Console(width=None if sys.stdout.isatty() else 150)  # pipes and logs: no cropped columns
    console.print(table)
    others = sum(s.get("wall_seconds", 0.0) for name, s in result["strategies"].items() if name != "oracle")
    console.print(f"compute of the strategies other than the oracle: {others:.0f} s in one process "
                  f"(the run took {result['seconds']:.0f} s wall)")  # fmt: skip
    for name, s in result["strategies"].items():
        errors = s.get("errors", {})
        if errors:
            clip_id, error = next(iter(errors.items()))
            console.print(f"[red]{escape(name)} failed on {len(errors)} of {total} clips[/red] (the first, "
                          f"{escape(clip_id)}: {escape(error)})")  # fmt: skip
    for clip_id, error in result.get("unreadable_clips", {}).items():
        console.print(f"[red]unreadable clip {escape(clip_id)}[/red]: {escape(error)}")
    fewer_by: dict[str, list[str]] = {}  # one line per distinct shortfall, naming the strategies it applies to
    for name, s in result["strategies"].items():
        ran = total - len(s.get("errors", {}))
        fewer = sorted((m, n) for m, n in s.get("mean_n", {}).items() if m in shown and n < ran)
        if fewer:
            fewer_by.setdefault(f"{', '.join(f'{m} {n}' for m, n in fewer)} of {ran}", []).append(name)
    for shortfall, names in fewer_by.items():
        console.print(f"{escape(', '.join(names))}: means over fewer clips (a clean reference, a defined value): "
                      f"{escape(shortfall)}")  # fmt: skip
    without = sorted({c for s in result["strategies"].values() for c in s.get("no_fraction_of_oracle", [])})
    if without:
        console.print(f"'of oracle' leaves out {len(without)} clips where the oracle beats the defaults by less than "
                      f"{MIN_ORACLE_ROOM} reward units: {escape(', '.join(without))}")  # fmt: skip


def every_run_failed(result: dict[str, Any]) -> bool:
    """True when no strategy produced a result on any clip."""
    return all(len(s.get("errors", {})) == len(s["clips"]) for s in result["strategies"].values())


def file_name_part(text: str, max_chars: int = 50) -> str:
    """``text`` usable inside a file name on any OS: path separators, control characters and ``<>:"|?*``
    become ``_`` (other characters, non-ASCII ones included, stay); at most ``max_chars`` characters (50:
    200 bytes of UTF-8 at most, within the 255 of common file systems with a prefix)."""
    return re.sub(r'[\x00-\x1f\x7f/\\<>:"|?*]', "_", text)[:max_chars]


def _save(fig, ax, path: Path) -> Path:
    """Legend, layout, PNG at 120 dpi; closes the figure."""
    import matplotlib.pyplot as plt

    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _colour(k: int) -> tuple[float, ...]:
    """Distinct colours for up to 20 strategies (tab20: the strong shades first, then the light ones)."""
    import matplotlib

    return matplotlib.colormaps["tab20"].colors[(2 * k) % 20 if k < 10 else (2 * k + 1) % 20]


def _trailing_mean(x: np.ndarray, width: int) -> np.ndarray:
    """Mean of the last ``width`` values at each position (fewer at the start); NaN values are skipped."""
    x = np.asarray(x, dtype=float)
    valid = np.isfinite(x)
    sums = np.concatenate([[0.0], np.cumsum(np.where(valid, x, 0.0))])
    counts = np.concatenate([[0], np.cumsum(valid)])
    start = np.maximum(np.arange(1, x.size + 1) - max(1, width), 0)
    n = counts[1:] - counts[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[1:] - sums[start]) / np.maximum(n, 1), np.nan)


def write_plots(result: dict[str, Any], outputs: dict[tuple[str, str], tuple], folder: str | Path) -> list[Path]:
    """PNG figures: quality over iterations, SI-SDR by noise type, spectrograms of the worst and best clip
    (by SI-SDR; by WADA-SNR when no clip has a clean reference).

    :param outputs: ``(strategy, clip) -> (noisy, enhanced, sample_rate)`` for the spectrograms.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from feedback_env.envs.rendering import before_after_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []

    # paired with the defaults: every strategy plays the same chunk at the same iteration, so the
    # difference removes the chunk-to-chunk difficulty; smoothed over one pass of each clip
    fig, ax = plt.subplots(figsize=(9, 5))
    reference = result["strategies"].get("defaults", {}).get("clips", {})
    for k, (name, strategy) in enumerate(result["strategies"].items()):
        series = []
        for clip_id, c in strategy["clips"].items():
            curve = np.asarray(c.get("curve") or [], dtype=float)
            base = np.asarray(reference.get(clip_id, {}).get("curve") or np.zeros(curve.size), dtype=float)
            if curve.size and base.size == curve.size:
                series.append(_trailing_mean(curve - base, int(c.get("chunks_per_pass", 8))))
        if series:
            length = min(x.size for x in series)
            ax.plot(np.arange(1, length + 1), np.nanmean([x[:length] for x in series], axis=0), label=name,
                    color=_colour(k))  # fmt: skip
    ax.set_xlabel("feedback iteration")
    ax.set_ylabel("reward minus the defaults' on the same chunk" if reference else "reward")
    ax.set_title("Quality over iterations, mean over clips (moving mean over one pass of each clip)")
    written.append(_save(fig, ax, folder / "quality_over_iterations.png"))

    # SI-SDR when some clip has a clean reference, else WADA-SNR (as the best adaptive strategy is chosen)
    finals = [c["final"] for s in result["strategies"].values() for c in s["clips"].values()]
    metric = "si_sdr" if any("si_sdr" in f for f in finals) else "wada_snr"
    shown = PLOT_LABELS[metric]
    by_tag = {name: s.get("mean_by_tag", {}).get("noise", {}) for name, s in result["strategies"].items()}
    noises = sorted({n for groups in by_tag.values() for n in groups})
    if noises:
        fig, ax = plt.subplots(figsize=(min(14, max(8, 0.25 * len(noises) * len(by_tag))), 5))
        width = 0.8 / max(1, len(by_tag))
        for k, (name, groups) in enumerate(by_tag.items()):
            values = [groups.get(n, {}).get(metric) for n in noises]
            values = [np.nan if v is None else v for v in values]  # no clean reference in that group: no SI-SDR
            ax.bar(np.arange(len(noises)) + k * width, values, width, label=name, color=_colour(k))
        ax.set_xticks(np.arange(len(noises)) + 0.4 - width / 2, noises, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"final {shown} (dB)")
        ax.set_title(f"Final {shown} by noise type")
        written.append(_save(fig, ax, folder / f"{metric}_by_noise.png"))

    best = result.get("best_adaptive")
    if best and best in result["strategies"]:
        scored = {cid: c["final"].get(metric) for cid, c in result["strategies"][best]["clips"].items()}
        scored = {cid: v for cid, v in scored.items() if v is not None and (best, cid) in outputs}
        if scored:
            for label, clip_id in (("worst", min(scored, key=scored.get)), ("best", max(scored, key=scored.get))):
                noisy, enhanced, rate = outputs[(best, clip_id)]
                before = result.get("input", {}).get("clips", {}).get(clip_id, {}).get(metric)
                fig, ax = plt.subplots(figsize=(8, 5))
                ax.imshow(before_after_image(noisy, enhanced, rate, height=192), aspect="auto",
                          extent=(0, noisy.size / rate, 0, 2))  # fmt: skip
                noisy_label = "noisy" if before is None else f"noisy ({shown} {before:.1f} dB)"
                ax.set_yticks([0.5, 1.5], [f"{best} ({shown} {scored[clip_id]:.1f} dB)", noisy_label])
                ax.set_xlabel("time (s); each half: 0 Hz at its bottom to Nyquist at its top")
                ax.set_title(f"{label} clip for {best}: {clip_id}")
                fig.tight_layout()
                written.append(folder / f"spectrogram_{label}_{file_name_part(clip_id)}.png")
                fig.savefig(written[-1], dpi=110)
                plt.close(fig)
    return written
