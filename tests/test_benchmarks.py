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
    ("feedback_loop.py", ["--adaptation-horizon", "0", "--skip", "latency", "memory", "convergence"],
     ["--adaptation-horizon", "positive"]),
    ("pipeline.py", ["--repeats", "0", "--env-steps", "1"], ["--repeats", "positive"]),
    ("pipeline.py", ["--repeats", "1", "--env-steps", "0"], ["--env-steps", "positive"]),
    ("pipeline_quality.py", ["--budget", "0", "--split", "test"], ["--budget", "positive"]),
    ("schedule_oracle.py", ["--budget", "0", "--run", "no-such-run"], ["--budget", "positive"]),
    ("learning.py", ["--oracle-budget", "0", "--run", "no-such-run"], ["--oracle-budget", "positive"]),
    ("safety.py", ["--duration", "25", "--rates", "0.05,0.1x"], ["--rates", "'0.1x'"]),
    ("safety.py", ["--duration", "25", "--rates", "0"], ["--rates", "0 < rate < 1"]),
    ("safety.py", ["--duration", "25", "--rates", "0.05,1.5"], ["--rates", "1.5"]),
])  # fmt: skip
def test_a_selection_of_nothing_or_a_zero_count_is_an_error_naming_what_exists(script, args, named):
    done = run(script, *args)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert all(n in done.stderr for n in named), done.stderr


def load_script(name: str, monkeypatch):
    """A module of benchmarks/ (with its folder on sys.path, as when it runs as a script)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_adaptation_summary_counts_runs_back_and_gives_no_median_or_maximum_past_the_horizon(monkeypatch):
    summary = load_script("feedback_loop", monkeypatch)._back_summary
    some_late = summary([10, 35, None, 25, 5], horizon=40)
    assert some_late["runs_back_within"] == {"10": 2, "20": 2, "30": 3, "40": 4}
    assert some_late["median"] == 25.0 and some_late["max"] is None  # one run never back
    assert summary([None, None, 15], horizon=20) == {"horizon": 20, "runs": 3, "runs_back_within": {"10": 0, "20": 1},
                                                     "median": None, "max": None}  # fmt: skip
    assert summary([20, 15], horizon=20)["max"] == 20 and summary([20, 15], horizon=20)["median"] == 17.5


def test_split_all_is_every_clip_and_a_split_its_own(builtin, monkeypatch):
    module = load_script("benchmark_args", monkeypatch)
    assert len(module.select_split(builtin, "all")) == len(builtin)
    assert {c.split for c in module.select_split(builtin, "test")} == {"test"}


def test_memory_flatness_after_100k_records_is_null_when_the_run_stops_before(tmp_path):
    done = run("feedback_loop.py", "--skip", "latency", "convergence", "--records", "1500")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert set(result["memory"]["rss_mb"]) == {"start", "1000", "1500"}
    assert result["targets_met"]["rss_flat_100k_to_end"] is None
    assert result["memory"]["peak_rss_mb"] >= max(result["memory"]["rss_mb"].values())  # a peak is never below a sample
    assert "conditions" in result


def test_safety_leaves_no_stream_folder_behind(tmp_path):
    env_tmp = {"TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "safety.py"), "--duration", "25", "--rates", "0.05"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env_tmp})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "conditions" in json.loads(done.stdout)
    assert list(tmp_path.iterdir()) == []


def test_timed_calls_get_distinct_audio_each_never_a_memo_hit(builtin, monkeypatch):
    """The pipeline and metrics memoize on the audio's bytes (at most 16 entries): a benchmark that timed one
    chunk over and over would time cache hits, which a live stream never gets."""
    measurement = load_script("measurement", monkeypatch)
    stream = measurement.second_stream(builtin, 40)
    assert len(stream) == 40 and all(len(x) == 16000 and len(c) == 16000 for x, c in stream)
    assert len({x.tobytes() for x, _ in stream}) == 40 and len({c.tobytes() for _, c in stream}) == 40
    cycled = measurement.second_stream(builtin, 400)  # longer than the set: cycled, never within 16 calls
    assert all(cycled[i][0].tobytes() != cycled[j][0].tobytes() for i in range(400) for j in range(i + 1, min(i + 17, 400)))
    seen = []
    pipeline = load_script("pipeline", monkeypatch)
    median, n = pipeline.median_seconds(seen.append, [x for x, _ in stream[:5]])
    assert n == 4 and median >= 0.0  # the first input warms up, untimed
    assert len({x.tobytes() for x in seen}) == 5


def test_benchmark_json_says_how_it_was_measured():
    done = run("pipeline.py", "--repeats", "2", "--env-steps", "3")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    conditions = result["conditions"]
    assert conditions["threads"]["OMP_NUM_THREADS"] == "1" and conditions["cpu_count"] >= 1
    assert len(conditions["load_average_start"]) == 3 and len(conditions["load_average_end"]) == 3
    assert {"python", "numpy", "scipy", "noisereduce"} <= set(conditions["versions"])
    samples = result["samples"]
    assert samples["pipeline"] == 2 and samples["noisereduce"] == 2 and samples["env_steps"] == 3
    assert samples["metrics"] >= 1 and samples["distinct_chunks"] >= 3
    assert result["env_steps_per_s"] > 0


def test_schedule_segments_sit_around_each_clips_own_change(monkeypatch):
    schedule_oracle = load_script("schedule_oracle", monkeypatch)
    assert schedule_oracle.segments_around(4.0, 0.5) == ((0, 7), (7, 8), (8, 9), (9, 10), (10, None))
    assert schedule_oracle.segments_around(2.0, 0.25) == ((0, 7), (7, 8), (8, 9), (9, 10), (10, None))
    assert schedule_oracle.segments_around(3.0, 0.5) == ((0, 5), (5, 6), (6, 7), (7, 8), (8, None))
    with pytest.raises(ValueError, match="change"):
        schedule_oracle.segments_around(0.5, 0.5)
