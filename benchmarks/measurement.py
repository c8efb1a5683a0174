"""How the benchmark scripts measure: a stream of distinct audio for the timed calls, and the conditions
of the run that every script's JSON records under ``"conditions"`` (imported from the script's own folder).

The pipeline and the metrics memoize pure results keyed by the audio's bytes (a search replays one chunk
many times: ``HumNotch``'s block scores, ``metrics``' LSD reference spectrum, each holding at most 16
entries). A live stream brings new bytes every chunk and never hits them, so a timed call must never see
bytes an earlier call saw: :func:`second_stream` gives distinct seconds of a scenario set, each timed
call its own.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata

import numpy as np

PACKAGES = {"numpy": "numpy", "scipy": "scipy", "torch": "torch", "gymnasium": "gymnasium", "noisereduce": "noisereduce",
            "stable_baselines3": "stable-baselines3", "mabwiser": "mabwiser", "optuna": "optuna", "redis": "redis"}  # fmt: skip
"""``{module: distribution}`` whose versions are recorded, each only when the script has imported it."""

LARGEST_MEMO = 16
"""Entries of the largest byte-keyed memo a timed call goes through (``feedback_env/stages/hum.py``)."""


def second_stream(scenario_set, count: int, seconds: float = 1.0) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """``count`` chunks of ``seconds`` (``(noisy, clean)``, clean None for a clip without one): the consecutive
    chunks of the clips of ``scenario_set`` in order, without any whose noisy or clean samples an earlier
    one has (the built-in clips share their clean voices), cycled when the set has fewer. Raises
    ``ValueError`` when fewer than ``LARGEST_MEMO + 1`` are distinct: a cycle that short would bring bytes
    back into a memo that still holds them."""
    chunks, seen = [], set()
    for clip in scenario_set:
        n = int(round(seconds * clip.sample_rate))
        for i in range(0, len(clip.noisy) - n + 1, n):
            pair = (clip.noisy[i : i + n], None if clip.clean is None else clip.clean[i : i + n])
            keys = {a.tobytes() for a in pair if a is not None}
            if not keys & seen:
                seen |= keys
                chunks.append(pair)
    if len(chunks) <= LARGEST_MEMO:
        raise ValueError(f"{len(chunks)} distinct chunks of {seconds:g} s in the scenario set: at least {LARGEST_MEMO + 1} "
                         "are needed so that no timed call hits a memo of an earlier one")  # fmt: skip
    return [chunks[i % len(chunks)] for i in range(count)]


def _cpu_model() -> str:
    """The CPU's model name: ``platform.processor()``, or on Linux (where that is often empty) /proc/cpuinfo's."""
    if platform.processor():
        return platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return ""


def _threads() -> dict:
    """Threads in effect: ``OMP_NUM_THREADS`` as set, each loaded BLAS/OpenMP pool's size (threadpoolctl, when
    installed) and torch's intra-op threads when torch is loaded."""
    out: dict = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        out["threadpools"] = None
    else:
        out["threadpools"] = [{k: p.get(k) for k in ("internal_api", "num_threads")} for p in threadpool_info()]
    if "torch" in sys.modules:
        out["torch"] = sys.modules["torch"].get_num_threads()
    return out


class Conditions:
    """What a run was measured under. Create it when the script starts (it notes the load average then);
    :meth:`record` at the end gives the JSON block, with the load average again."""

    def __init__(self) -> None:
        self.load_at_start = os.getloadavg()
        self.started = time.perf_counter()

    def record(self) -> dict:
        versions = {"python": platform.python_version()}
        versions.update({d: metadata.version(d) for m, d in PACKAGES.items() if m in sys.modules})
        return {
            "threads": _threads(),
            "cpu_model": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "platform": platform.platform(),
            "load_average_start": list(self.load_at_start),
            "load_average_end": list(os.getloadavg()),
            "wall_seconds": time.perf_counter() - self.started,
            "versions": versions,
        }
