"""The benchmark scripts' command lines: a selection of nothing or a count of zero is an error before any
work, and the JSON they print is strict (an undefined figure is null, never NaN)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip


@pytest.mark.parametrize("script, args, named", [  # each with flags that keep the work small should it start
    ("feedback_loop.py", ["--split", "tset", "--skip", "latency", "memory"], ["'tset'", "'train'", "'test'", "'all'"]),
    ("pipeline_quality.py", ["--split", "tset", "--budget", "1"], ["'tset'", "'train'", "'test'", "'all'"]),
    ("bandits.py", ["--sections", "latncy"], ["'latncy'", "'latency'", "'regret'", "'redis'", "'env'"]),
    ("feedback_loop.py", ["--records", "0", "--skip", "latency", "convergence"], ["--records", "positive"]),
    ("feedback_loop.py", ["--repeats", "0", "--update-repeats", "1", "--skip", "memory", "convergence"],
     ["--repeats", "positive"]),
    ("feedback_loop.py", ["--update-repeats", "-3", "--repeats", "1", "--skip", "memory", "convergence"],
     ["--update-repeats", "positive"]),
    ("pipeline.py", ["--repeats", "0", "--env-steps", "1"], ["--repeats", "positive"]),
])  # fmt: skip
def test_a_selection_of_nothing_or_a_zero_count_is_an_error_naming_what_exists(script, args, named):
    done = run(script, *args)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert all(n in done.stderr for n in named), done.stderr


def test_split_all_is_every_clip_and_a_split_its_own(builtin):
    spec = importlib.util.spec_from_file_location("benchmark_args", ROOT / "benchmarks" / "benchmark_args.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert len(module.select_split(builtin, "all")) == len(builtin)
    assert {c.split for c in module.select_split(builtin, "test")} == {"test"}


def test_memory_flatness_after_100k_records_is_null_when_the_run_stops_before(tmp_path):
    done = run("feedback_loop.py", "--skip", "latency", "convergence", "--records", "1500")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert set(result["memory"]["rss_mb"]) == {"start", "1000", "1500"}
    assert result["targets_met"]["rss_flat_100k_to_end"] is None
