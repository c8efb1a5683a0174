import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import train
from agents.callbacks import latest_checkpoints
from agents.factory import load_agent
from agents.prioritized import PrioritizedTD3

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_set(builtin, tmp_path_factory):
    """Two 2-second clips of the built-in set: one to train on, one to test on."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "audio").mkdir()
    clips = []
    for clip_id, split in (("white_snr+10_f2", "train"), ("pink-up12_snr+15_f3", "test")):
        clip = builtin[clip_id]
        start = 0 if split == "train" else 3 * 16000  # the test clip keeps its change at 4 s
        for kind in ("noisy", "clean"):
            sf.write(root / "audio" / f"{clip_id}_{kind}.wav", getattr(clip, kind)[start : start + 32000], 16000, subtype="FLOAT")
        tags = {**clip.tags, "split": split}
        clips.append({"id": clip_id, "noisy": f"audio/{clip_id}_noisy.wav", "clean": f"audio/{clip_id}_clean.wav", "tags": tags})
    (root / "manifest.json").write_text(json.dumps({"name": "tiny", "sample_rate": 16000, "clips": clips}))
    return root


def args(tiny_set, out, timesteps):
    """A small one-agent run (``--members 1``; a later ``--members`` wins)."""
    return [
        "--scenarios", str(tiny_set), "--timesteps", str(timesteps), "--out", str(out), "--seed", "1", "--members", "1",
        "--static-budget", "3", "--checkpoint-freq", "40", "--eval-freq", "40", "--no-progress",
        "--hyper", json.dumps({"learning_starts": 60, "batch_size": 16}),
    ]  # fmt: skip


def test_resume_after_a_killed_run_continues_with_the_replay_buffer(tiny_set, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args(tiny_set, out, 100_000)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while not any(buffer for _, buffer in latest_checkpoints(out / "checkpoints")):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(int(p.name.split("_")[-2]) for p, b in latest_checkpoints(out / "checkpoints") if b is not None)
    assert not (out / "model.zip").exists()

    timesteps = killed_at + 80
    assert train.main([*args(tiny_set, out, timesteps), "--resume"]) == 0
    model = load_agent(out / "model.zip")
    assert model.num_timesteps == timesteps
    last_model, last_buffer = latest_checkpoints(out / "checkpoints")[0]
    resumed = PrioritizedTD3.load(last_model)
    resumed.load_replay_buffer(last_buffer)
    assert resumed.replay_buffer.size() >= timesteps - 40  # the transitions from before the kill are still there

    result = json.loads((out / "evaluation.json").read_text())
    assert set(result["mean"]) == {"bypass", "defaults", "best_static", "policy"}
    assert result["clips"] == ["pink-up12_snr+15_f3"] and result["non_stationary"] == ["pink-up12_snr+15_f3"]
    for scores in result["mean"].values():
        assert set(scores) == {"si_sdr", "pesq", "stoi"} and all(np.isfinite(v) for v in scores.values())
    config = json.loads((out / "model.config.json").read_text())
    assert config["env_id"] == "feedback_env/AudioEnhancement-v0" and config["env_config"]["tuned"] == json.loads((out / "run.json").read_text())["tuned"]
    assert list((out / "tb").glob("td3_*/events.out.tfevents.*"))
    assert (out / "eval" / "evaluations.npz").exists()


@pytest.mark.parametrize("extra, message", [
    (["--tuned", "loudness"], "unknown parameter 'loudness'"),
    (["--hyper", '{"gama": 0.9}'], "unknown td3 hyperparameters"),
    (["--hyper", "gamma=0.9"], "--hyper is not valid JSON"),
    (["--smoothing", "1.5"], "smoothing must be in"),
    (["--feature-context", "1"], "feature context must be in"),
    (["--scenarios", "/no/such/set"], "no scenario set '/no/such/set'"),
    (["--timesteps", "0"], "timesteps and n_envs must be positive"),
    (["--augment", '{"splcie": 0.5}'], "unknown augment keys ['splcie']"),
    (["--ensemble", "-1"], "ensemble must be a number of checkpoints >= 0"),
    (["--algo", "sac", "--ensemble", "2"], "0 unless the algorithm is td3; got 2 for sac"),
    (["--members", "0"], "members must be >= 1"),
    (["--env", "feedback_env/AudioEnhancementDelta-v0", "--residual", "0.3"], "act on the absolute env's actions"),
    (["--env", "feedback_env/AudioEnhancementDelta-v0", "--smoothing", "0.5"], "act on the absolute env's actions"),
    (["--algo", "sac", "--members", "2"], "1 unless the algorithm is td3; got 2 for sac"),
])  # fmt: skip
def test_bad_flags_fail_clearly(tiny_set, tmp_path, capsys, extra, message):
    """A bad flag ends the run before anything is built: exit status 2 and one line naming what was wrong."""
    assert train.main([*args(tiny_set, tmp_path / "run", 10), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not (tmp_path / "run").exists()


def test_resume_of_a_folder_without_a_run_is_an_error_not_a_new_run(tiny_set, tmp_path, capsys):
    """A mistyped --out with --resume used to start a full default run there."""
    assert train.main(["--resume", "--out", str(tmp_path / "no_such_run"), "--scenarios", str(tiny_set), "--no-progress"]) == 2
    assert "no run in" in capsys.readouterr().err and not (tmp_path / "no_such_run").exists()


def test_a_td3_run_saves_the_mean_action_of_its_last_checkpoints_and_its_final_model(tiny_set, tmp_path):
    from agents.ensemble import EnsembleTD3Policy, member_predictor

    stale = tmp_path / "checkpoints" / "model_400_steps.zip"  # an earlier run's, newer than any of this one's
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"not this run's")
    assert train.main([*args(tiny_set, tmp_path, 160), "--ensemble", "2"]) == 0
    assert not stale.exists()
    checkpoints = [path for path, _ in latest_checkpoints(tmp_path / "checkpoints")]
    assert [p.name for p in checkpoints] == [f"model_{k}_steps.zip" for k in (160, 120, 80, 40)]
    model = load_agent(tmp_path / "model.zip")
    assert isinstance(model.policy, EnsembleTD3Policy) and model.policy.n_members == 3
    obs = np.random.default_rng(0).uniform(-1, 1, (8, *model.observation_space.shape)).astype(np.float32)
    members = [PrioritizedTD3.load(p).predict(obs, deterministic=True)[0] for p in checkpoints[1::-1]] + [member_predictor(model, -1)(obs)]
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], np.mean(members, axis=0), atol=1e-6)
    assert np.abs(members[-1] - members[-2]).max() > 1e-4  # the final model is the weight average, not the last checkpoint

    assert train.main([*args(tiny_set, tmp_path / "early", 160), "--ensemble", "4"]) == 0  # the second half's only: 80, 120, 160
    assert load_agent(tmp_path / "early" / "model.zip").policy.n_members == 4
    assert train.main([*args(tiny_set, tmp_path / "single", 80), "--ensemble", "0"]) == 0
    assert type(load_agent(tmp_path / "single" / "model.zip").policy).__name__ == "TD3Policy"
    assert train.main([*args(tiny_set, tmp_path / "none", 30), "--ensemble", "4"]) == 0  # no checkpoint yet (every 40 steps)
    assert type(load_agent(tmp_path / "none" / "model.zip").policy).__name__ == "TD3Policy"
    assert train.main([*args(tiny_set, tmp_path / "sac", 80), "--algo", "sac"]) == 0  # sac keeps its own model
    assert json.loads((tmp_path / "sac" / "run.json").read_text())["ensemble"] == 0


def test_a_td3_run_of_two_members_acts_with_the_mean_action_of_both_and_resumes_the_unfinished_one(tiny_set, tmp_path):
    assert train.main([*args(tiny_set, tmp_path, 80), "--members", "2", "--ensemble", "1"]) == 0
    assert json.loads((tmp_path / "run.json").read_text())["members"] == 2
    assert [json.loads((tmp_path / f"member_{k}" / "run.json").read_text())["seed"] for k in (0, 1)] == [1, 1001]
    members = [load_agent(tmp_path / f"member_{k}" / "model.zip") for k in (0, 1)]
    model = load_agent(tmp_path / "model.zip")
    assert model.policy.n_members == 4 and [m.policy.n_members for m in members] == [2, 2]  # checkpoint 80 + final model each
    assert json.loads((tmp_path / "model.config.json").read_text())["member_seeds"] == [1, 1001]
    obs = np.random.default_rng(0).uniform(-1, 1, (8, *model.observation_space.shape)).astype(np.float32)
    a0, a1 = (m.predict(obs, deterministic=True)[0] for m in members)
    assert np.abs(a0 - a1).max() > 1e-3  # two seeds, two policies
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], (a0 + a1) / 2, atol=1e-6)

    finished = (tmp_path / "member_0" / "model.zip").stat().st_mtime_ns
    (tmp_path / "member_1" / "model.zip").unlink()  # member 1 killed after its last checkpoint
    assert train.main([*args(tiny_set, tmp_path, 80), "--members", "2", "--resume"]) == 0  # the same command, resumed
    assert (tmp_path / "member_0" / "model.zip").stat().st_mtime_ns == finished  # a finished member is taken as it is
    assert load_agent(tmp_path / "model.zip").policy.n_members == 4
    assert set(json.loads((tmp_path / "evaluation.json").read_text())["mean"]) == {"bypass", "defaults", "best_static", "policy"}


def test_resume_without_timesteps_keeps_the_runs_own_and_leaves_finished_members_alone(tiny_set, tmp_path, monkeypatch):
    """``train.py --resume --out DIR`` trains to the run's own step count, not to the flag's default (40,000)."""
    import agents.training

    assert train.main([*args(tiny_set, tmp_path, 40), "--members", "2", "--ensemble", "0"]) == 0
    finished = [(tmp_path / f"member_{k}" / "model.zip").stat().st_mtime_ns for k in (0, 1)]
    real_run = agents.training.run

    def run(config, resume, progress_bar):
        assert config.timesteps == 40, f"the resumed run trains to {config.timesteps} steps"  # fail at once, not after them
        return real_run(config, resume, progress_bar)

    monkeypatch.setattr(agents.training, "run", run)
    assert train.main(["--resume", "--out", str(tmp_path), "--no-progress"]) == 0
    assert [(tmp_path / f"member_{k}" / "model.zip").stat().st_mtime_ns for k in (0, 1)] == finished  # taken as they are
    assert json.loads((tmp_path / "run.json").read_text())["timesteps"] == 40
    assert json.loads((tmp_path / "model.config.json").read_text())["timesteps"] == 40


def test_a_resumed_run_draws_new_episodes_and_a_second_resume_at_the_same_step_repeats_it(tiny_set, tmp_path, monkeypatch):
    """Resumed at step N, a run seeds its envs and generators from (seed, N): the episodes after the resume
    are not a replay of the run's first ones, and resuming at N twice gives the same episodes and weights."""
    import shutil

    import torch

    from agents.training import RunConfig
    from agents.training import train as train_run
    from feedback_env.envs.audio_enhancement import AudioEnhancementEnv

    episodes = []
    original = AudioEnhancementEnv.reset

    def reset(self, *, seed=None, options=None):
        obs, info = original(self, seed=seed, options=options)
        episodes.append(info["clip"])  # the clip variant drawn: shift, splice, new noise
        return obs, info

    monkeypatch.setattr(AudioEnhancementEnv, "reset", reset)

    def config(out, steps):
        return RunConfig(scenarios=str(tiny_set), timesteps=steps, seed=1, out=str(out), members=1, ensemble=0, average_from=None,
                         checkpoint_freq=40, eval_freq=10**6, hyperparameters={"learning_starts": 20, "batch_size": 16})  # fmt: skip

    train_run(config(tmp_path / "a", 40), progress_bar=False)  # 'killed' after its checkpoint at step 40
    first, resumed = list(episodes), []
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    models = []
    for run in ("a", "b"):
        episodes.clear()
        models.append(train_run(config(tmp_path / run, 80), resume=True, progress_bar=False))
        assert models[-1].num_timesteps == 80
        resumed.append(list(episodes))
    n = min(len(first), len(resumed[0]))
    assert n >= 3 and resumed[0][:n] != first[:n], f"the resumed run replays the first episodes: {resumed[0][:n]}"
    assert resumed[0] == resumed[1]
    weights = [torch.cat([p.detach().flatten() for p in m.policy.parameters()]) for m in models]
    assert torch.equal(weights[0], weights[1])


def _state_and_parent(pid: int) -> tuple[str, int]:
    """A process's state letter and parent pid, from /proc (OSError once it is gone)."""
    state, ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:2]
    return state, int(ppid)


def _member_processes(parent: int) -> list[int]:
    """Live processes that ``parent`` spawned as members (multiprocessing's spawn_main), from /proc."""
    found = []
    for folder in Path("/proc").glob("[0-9]*"):
        try:
            state, ppid = _state_and_parent(int(folder.name))
            spawned = b"spawn_main" in (folder / "cmdline").read_bytes()
        except OSError:
            continue
        if ppid == parent and state != "Z" and spawned:
            found.append(int(folder.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return _state_and_parent(pid)[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="members follow their parent's death on Linux only")
def test_killing_a_run_of_two_members_stops_both_and_resume_continues_them(tiny_set, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args(tiny_set, out, 100_000), "--members", "2"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    saved = lambda k: [b for _, b in latest_checkpoints(out / f"member_{k}" / "checkpoints") if b is not None]  # noqa: E731
    while not (saved(0) and saved(1)):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint of both members within 2 minutes"
        time.sleep(0.2)
    members = _member_processes(proc.pid)
    assert len(members) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in members):  # they do not train on beside the resumed run
        assert time.monotonic() < deadline, "member processes outlived the killed run"
        time.sleep(0.2)

    killed_at = max(int(p.name.split("_")[-2]) for k in (0, 1) for p, b in latest_checkpoints(out / f"member_{k}" / "checkpoints") if b)
    assert train.main([*args(tiny_set, out, killed_at + 40), "--members", "2", "--resume"]) == 0
    model = load_agent(out / "model.zip")
    assert model.num_timesteps == killed_at + 40 and json.loads((out / "model.config.json").read_text())["member_seeds"] == [1, 1001]


def test_a_failing_member_is_named_and_the_others_are_kept_for_resume(tiny_set, tmp_path):
    (tmp_path / "member_1").write_text("a file where member 1's folder should be")
    with pytest.raises(RuntimeError, match=r"member_1 \(seed 1001, exit code 1\).*rerun with --resume"):
        train.main([*args(tiny_set, tmp_path, 40), "--members", "2", "--ensemble", "0"])
    assert (tmp_path / "member_0" / "model.zip").exists()  # the other member finished and is kept


def test_residual_config_round_trips_and_centres_the_env_on_the_static_setting(tmp_path):
    from agents.training import RunConfig
    from feedback_env.pipeline import PARAMETER_SPACE

    config = RunConfig(out=str(tmp_path), residual=0.4, timesteps=10)
    config.save(tmp_path / "run.json")
    assert RunConfig.load(tmp_path / "run.json") == config
    static = {**PARAMETER_SPACE.defaults(), "highpass_hz": 90.0, "nr_floor_db": -28.0}
    key = {"scenarios": config.scenarios, "tuned": config.tuned, "budget": config.static_budget, "seed": config.seed}
    (tmp_path / "static.json").write_text(json.dumps({"key": key, "params": static}))  # as static_baseline caches it
    for training in (True, False):
        env_config = config.env_config("train", training=training)
        assert env_config["action_center"] == env_config["fixed"] == {n: static[n] for n in config.tuned}
        assert env_config["action_radius"] == 0.4 and ("smoothing" in env_config) != training
    assert "action_center" not in RunConfig(out=str(tmp_path), residual=None).env_config(None)


def test_feature_context_reaches_both_envs_and_older_runs_load_without_it(tmp_path):
    from agents.training import RunConfig

    config = RunConfig(out=str(tmp_path))
    assert config.env_config("train", training=True)["feature_context"] == config.env_config(None)["feature_context"] == 0.8
    assert "feature_context" not in RunConfig(out=str(tmp_path), feature_context=0.0).env_config(None)
    saved = json.loads(json.dumps(config.__dict__))
    del saved["feature_context"]  # a run.json written before the option existed
    (tmp_path / "run.json").write_text(json.dumps(saved))
    assert RunConfig.load(tmp_path / "run.json").feature_context == 0.0


def test_the_saved_env_config_records_the_sample_rate_trained_at(tmp_path):
    """Band edges of the features scale with the rate, so a policy's users need the rate it heard (review V#5)."""
    from agents.training import RunConfig

    config = RunConfig(out=str(tmp_path))
    assert config.env_config(None)["sample_rate"] == config.env_config("train", training=True)["sample_rate"] == 16000


def test_a_residual_run_saves_a_policy_centred_on_its_static_setting(tiny_set, tmp_path):
    from agents.strategy import PolicyStrategy

    assert train.main([*args(tiny_set, tmp_path, 80), "--residual", "0.5"]) == 0
    static = json.loads((tmp_path / "static.json").read_text())["params"]
    env_config = json.loads((tmp_path / "model.config.json").read_text())["env_config"]
    assert env_config["action_center"] == {n: static[n] for n in env_config["tuned"]} and env_config["action_radius"] == 0.5
    strategy = PolicyStrategy.from_model(tmp_path / "model.zip")
    np.testing.assert_allclose(strategy.action.center, strategy.action.tuned.to_unit(env_config["action_center"], dtype=np.float64))
    assert np.isfinite(json.loads((tmp_path / "evaluation.json").read_text())["mean"]["policy"]["si_sdr"])


def test_a_feature_context_run_saves_it_and_the_harness_observes_what_the_policy_was_trained_on(tiny_set, tmp_path):
    from scenarios.harness import run_evaluation

    assert train.main([*args(tiny_set, tmp_path, 80), "--feature-context", "0.7"]) == 0
    assert json.loads((tmp_path / "model.config.json").read_text())["env_config"]["feature_context"] == 0.7
    name = f"td3:{tmp_path / 'model.zip'}"
    result, _ = run_evaluation(str(tiny_set), [name], 4, progress=False)
    entry = result["strategies"][name]["clips"]["white_snr+10_f2"]
    assert "error" not in entry, entry.get("error")
    assert len(entry["curve"]) == 4 and np.all(np.isfinite(entry["curve"]))


def test_resume_refuses_flags_that_differ_from_the_runs_own(tiny_set, tmp_path, monkeypatch, capsys):
    """A resumed run keeps its own settings, so a flag given with ``--resume`` that asks for another value is an
    error naming it (it was silently ignored); the same values again, as in a re-run of the same command, pass."""
    import agents.training
    from agents.training import RunConfig

    train_args = [*args(tiny_set, tmp_path, 40), "--algo", "td3"]
    RunConfig(**{**vars(train.config_from_args(train.parse_args(train_args))).copy()}).save(tmp_path / "run.json")
    started = []
    monkeypatch.setattr(agents.training, "run", lambda config, resume, progress_bar: started.append(config))

    assert train.main([*train_args, "--resume", "--seed", "5", "--algo", "sac"]) == 2
    error = capsys.readouterr().err
    assert "--seed 5" in error and "its own 1" in error and "--algo sac" in error and "its own 'td3'" in error
    assert "--members" not in error and not started

    assert train.main([*train_args, "--resume", "--timesteps", "80"]) == 0  # --timesteps may extend the run
    assert train.main(["--resume", "--out", str(tmp_path), "--no-progress"]) == 0  # nothing given: the run's own
    assert [c.timesteps for c in started] == [80, 40] and all(c.seed == 1 and c.algo == "td3" for c in started)


def test_resume_continues_in_the_out_folder_given_even_when_the_run_was_moved(tiny_set, tmp_path, monkeypatch):
    """run.json keeps the ``--out`` the run started with; a resume wrote there instead of the folder it was asked
    to resume (a moved or copied run, or a relative path from another directory): it trained the original or
    started a new run elsewhere. The folder given is the run's folder."""
    import agents.training
    from agents.training import RunConfig

    moved = tmp_path / "moved"
    moved.mkdir()
    config = train.config_from_args(train.parse_args(args(tiny_set, tmp_path / "original", 40)))
    config.save(moved / "run.json")
    started = []
    monkeypatch.setattr(agents.training, "run", lambda config, resume, progress_bar: started.append(config))
    assert train.main(["--resume", "--out", str(moved), "--no-progress"]) == 0
    assert started[0].out == str(moved) and started[0].member(1).out == str(moved / "member_1")
    assert RunConfig.load(moved / "run.json").seed == started[0].seed == 1


@pytest.mark.parametrize("env_id", ["feedback_env/StrategySelection-v0", "feedback_env/AudioEnhancment-v0"])
def test_an_env_the_trainer_cannot_use_is_a_clear_error_before_any_work(tiny_set, tmp_path, capsys, env_id):
    """The preset env (discrete actions, no tuned parameters) or a typo failed deep in training with a message
    about a 'tuned' key the user never gave, or a gymnasium traceback; now an error naming the ids it takes."""
    assert train.main([*args(tiny_set, tmp_path, 40), "--env", env_id]) == 2
    error = capsys.readouterr().err
    assert env_id in error and "feedback_env/AudioEnhancementDelta-v0" in error
    assert not (tmp_path / "run.json").exists()


def test_a_run_too_short_to_learn_says_so(tiny_set, tmp_path, monkeypatch, capsys):
    """With --timesteps at or below the algorithm's learning_starts no gradient step is taken and the "policy" row
    is the random initial actor; the run says so up front (it was silent: TD3 and SAC gave identical tables)."""
    import agents.training

    monkeypatch.setattr(agents.training, "run", lambda config, resume, progress_bar: None)
    assert train.main(args(tiny_set, tmp_path / "short", 60)) == 0  # learning_starts 60 in args()
    assert "learning_starts (60)" in capsys.readouterr().err
    assert train.main(args(tiny_set, tmp_path / "long", 61)) == 0
    assert "learning_starts" not in capsys.readouterr().err
    assert train.main([*args(tiny_set, tmp_path / "ppo", 40), "--algo", "ppo", "--hyper", "{}"]) == 0  # PPO has none
    assert "learning_starts" not in capsys.readouterr().err
    assert train.main([*args(tiny_set, tmp_path / "ppo", 40), "--algo", "ppo", "--hyper", "{}", "--safety"]) == 0
    assert "PPO learns from the actions it sampled" in capsys.readouterr().err


@pytest.mark.parametrize("splits, fails", [(("test", "test"), True), (("train", "train"), False)])
def test_a_set_without_train_or_test_clips_is_said_before_any_work(tiny_set, tmp_path, monkeypatch, capsys, splits, fails):
    """A set with no clip tagged ``split: train`` is an error before anything is built (it was a traceback at
    the first reset); one without ``test`` clips trains, but says that its evaluation scores the training clips."""
    import agents.training

    monkeypatch.setattr(agents.training, "run", lambda config, resume, progress_bar: None)
    root = tmp_path / "set"
    shutil.copytree(tiny_set, root)
    manifest = json.loads((root / "manifest.json").read_text())
    for clip, split in zip(manifest["clips"], splits):
        clip["tags"]["split"] = split
    (root / "manifest.json").write_text(json.dumps(manifest))
    status = train.main(args(root, tmp_path / "run", 30))
    err = capsys.readouterr().err
    if fails:
        assert status == 2 and "no clips tagged split 'train'" in err and not (tmp_path / "run").exists()
    else:
        assert status == 0 and "no clips tagged split 'test'" in err and "scores the training clips" in err


def test_resuming_a_finished_run_leaves_its_policy_alone(tiny_set, tmp_path, capsys):
    """A finished one-agent run resumed (by habit, or to redo its table) kept nothing to train but re-saved its raw
    last checkpoint as the policy, dropping the weight averaging and the checkpoint ensemble (and the test
    SI-SDR it had). It now keeps the saved policy, also when the resume asks for fewer steps than the run took (a killed
    run may be resumed with fewer steps than it planned, as long as some are left)."""
    assert train.main(args(tiny_set, tmp_path, 80)) == 0
    saved = (tmp_path / "model.zip").read_bytes()
    for timesteps in (80, 40):
        assert train.main([*args(tiny_set, tmp_path, timesteps), "--resume"]) == 0
        assert (tmp_path / "model.zip").read_bytes() == saved and "already finished" in capsys.readouterr().out


def test_the_help_says_timesteps_are_per_member():
    """Each member takes --timesteps steps (RunConfig, README); the help said "in total" (review V#6a)."""
    help_text = " ".join(train.build_parser().format_help().split())
    assert "env steps (chunks) per member" in help_text and "in total" not in help_text
