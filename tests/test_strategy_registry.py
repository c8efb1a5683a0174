"""The bandit and TD3 strategies of the other packages, run through the real FeedbackLoopSystem registry."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th

import feedback_env  # noqa: F401  (registers the ids)
from agents.factory import save_agent
from agents.feedback_optimizer import RLFeedbackOptimizer
from feedback_env import FeedbackLoopSystem
from feedback_env.feedback_loop import available_strategies
from feedback_env.presets import PRESETS, preset_params
from feedback_env.feedback_loop.objective import chunk_stream

th.set_num_threads(1)
CHUNK = 8000  # 0.5 s at 16 kHz


def stream(loop, clip, n):
    return [loop.step(noisy, clean) for noisy, clean in chunk_stream(clip.noisy, clip.clean, CHUNK, n)]


def test_bandit_and_policy_are_registered():
    names = available_strategies()
    assert "bandit" in names and "policy" in names


def test_bandit_strategy_runs_presets_through_the_loop(builtin):
    clip = builtin["pink_snr+20_m3"]
    loop = FeedbackLoopSystem(seed=0, tuned=None, strategy="bandit", strategy_options={"bandit": {"policy": "ucb1"}})
    records = stream(loop, clip, 14)
    strategy = loop.strategy("bandit")
    assert strategy.policy.name == "UCB1"
    presets = [preset_params(name) for name in PRESETS]
    # every record after the first update ran one of the presets, unchanged by the trust region
    ran = [r.params for r in records[1:]]
    assert all(any(all(np.isclose(p[k], v, rtol=1e-9, atol=0) for k, v in preset.items()) for preset in presets) for p in ran)
    # UCB1 plays each of the six arms once first, and every usable record taught it something
    assert len({tuple(sorted(p.items())) for p in ran[:6]}) == 6
    pulls = sum(strategy.policy.describe_arm(arm)["pulls"] for arm in range(len(presets)))
    assert strategy.ignored <= 1 and pulls >= len(ran) - 1
    assert loop.updates[-1].strategy == "bandit" and "UCB1 chose preset" in loop.updates[-1].explanation


def test_bandit_strategy_rejects_an_unknown_policy(builtin):
    loop = FeedbackLoopSystem(seed=0, tuned=None, strategy="bandit", strategy_options={"bandit": {"policy": "ucb9"}})
    with pytest.raises(ValueError, match="ucb9"):
        stream(loop, builtin["pink_snr+20_m3"], 3)


@pytest.mark.parametrize("feature_context", [0.0, 0.8])
def test_policy_strategy_sets_the_parameters_its_env_would(builtin, tmp_path, feature_context):
    from agents.strategy import policy_loop_options

    env_config = {"tuned": ["highpass_hz", "nr_oversubtraction", "nr_floor_db", "nr_noise_window_s"], "feature_context": feature_context}
    env = gym.make("feedback_env/AudioEnhancement-v0", config=env_config)
    optimizer = RLFeedbackOptimizer(env.observation_space, env.action_space, seed=3)
    path = save_agent(optimizer.model, tmp_path / "policy.zip", env_id="feedback_env/AudioEnhancement-v0", env_config=env_config)
    loop = FeedbackLoopSystem(seed=0, **policy_loop_options(path))  # the tuned parameters and features of its env
    assert list(loop.space.names) == env_config["tuned"] and loop.observation().shape == env.observation_space.shape
    records = stream(loop, builtin["pink_snr+0_f1"], 4)
    obs = loop.observation()
    action = optimizer.select_action(obs, 0.0)
    expected = loop.space.from_unit(np.asarray(action, dtype=np.float64))
    update = loop.update_parameters("policy")
    assert all(np.isclose(update.new_params[k], v, rtol=1e-5) for k, v in expected.items())
    assert "TD3 policy" in update.explanation and len(records) == 4


def test_a_learning_policy_is_saved_with_the_loop(builtin, tmp_path):
    """What a policy learnt online (weights, optimizers, replay buffer with priorities, progress, the proposal
    awaiting its outcome) is saved with the loop and comes back on load (before: load() rebuilt the policy from
    its model file, without a word, and everything learnt online was gone)."""
    from agents.strategy import policy_loop_options

    env_config = {"tuned": ["highpass_hz", "nr_oversubtraction", "nr_floor_db", "nr_noise_window_s"]}
    env = gym.make("feedback_env/AudioEnhancement-v0", config=env_config)
    optimizer = RLFeedbackOptimizer(env.observation_space, env.action_space, seed=3, learning_starts=0)
    path = save_agent(optimizer.model, tmp_path / "policy.zip", env_id="feedback_env/AudioEnhancement-v0",
                      env_config=env_config)  # fmt: skip
    options = policy_loop_options(path)
    options["strategy_options"]["policy"].update(learn=True, batch_size=4)
    loop = FeedbackLoopSystem(seed=0, **options)
    stream(loop, builtin["pink_snr+0_f1"], 10)
    learnt = loop.strategy("policy").optimizer
    assert learnt.updates > 0
    loop.update_parameters()  # a proposal whose outcome the next chunk will tell
    loop.save(tmp_path / "loop.npz")
    restored = FeedbackLoopSystem.load(tmp_path / "loop.npz").strategy("policy")
    again = restored.optimizer
    obs = loop.observation()
    np.testing.assert_array_equal(again.select_action(obs, 0.0), learnt.select_action(obs, 0.0))
    for a, b in zip(learnt.model.critic.optimizer.state_dict()["state"].values(),
                    again.model.critic.optimizer.state_dict()["state"].values()):  # fmt: skip
        np.testing.assert_array_equal(a["exp_avg"].numpy(), b["exp_avg"].numpy())
    buffers = learnt.model.replay_buffer, again.model.replay_buffer
    assert buffers[1].size() == buffers[0].size() == 9 and buffers[1].pos == buffers[0].pos
    np.testing.assert_array_equal(buffers[1].priorities, buffers[0].priorities)
    np.testing.assert_array_equal(buffers[1].observations, buffers[0].observations)
    assert (again.updates, again.model._n_updates) == (learnt.updates, learnt.model._n_updates)
    assert again.model._current_progress_remaining == learnt.model._current_progress_remaining
    np.testing.assert_array_equal(restored._pending[1], loop.strategy("policy")._pending[1])


def test_the_harness_warns_when_a_policy_runs_at_another_chunk_length(builtin, tmp_path):
    """A policy's features (their per-chunk context) and what it learnt are per chunk: run by the harness at another
    ``--chunk-s`` than it was trained at, it says so (before: no word)."""
    import warnings

    from scenarios.harness import clip_context
    from scenarios.strategies import make_strategy

    env_config = {"tuned": ["highpass_hz", "nr_oversubtraction", "nr_floor_db", "nr_noise_window_s"], "chunk_s": 0.5}
    env = gym.make("feedback_env/AudioEnhancement-v0", config={"tuned": env_config["tuned"]})
    optimizer = RLFeedbackOptimizer(env.observation_space, env.action_space, seed=3)
    path = save_agent(optimizer.model, tmp_path / "policy.zip", env_id="feedback_env/AudioEnhancement-v0",
                      env_config=env_config)  # fmt: skip
    strategy, clip = make_strategy(f"td3:{path}"), builtin["pink_snr+0_f1"]
    with pytest.warns(UserWarning, match=r"trained on 0.5 s chunks, run on 0.25 s"):
        strategy.run(clip, 2, 0, clip_context(clip, 0.25))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        strategy.run(clip, 2, 0, clip_context(clip, 0.5))


def test_a_policy_run_at_another_sample_rate_than_it_was_trained_at_says_so(builtin, tmp_path):
    """The features' band edges scale with the rate: a policy trained at 16 kHz hears other bands at 8 kHz. The loop
    (and so the harness's td3:) says so; a model saved without its rate (before it was recorded) is run silently."""
    import warnings

    import scenarios
    from agents.strategy import policy_loop_options
    from feedback_env.pipeline import EnhancementPipeline
    from scenarios.harness import clip_context
    from scenarios.strategies import make_strategy

    tuned = ["highpass_hz", "nr_oversubtraction", "nr_floor_db", "nr_noise_window_s"]
    env = gym.make("feedback_env/AudioEnhancement-v0", config={"tuned": tuned})
    optimizer = RLFeedbackOptimizer(env.observation_space, env.action_space, seed=3)
    paths = {}
    for name, extra in (("rated", {"sample_rate": 16000}), ("old", {})):
        paths[name] = save_agent(optimizer.model, tmp_path / f"{name}.zip", env_id="feedback_env/AudioEnhancement-v0",
                                 env_config={"tuned": tuned, "chunk_s": 0.5, **extra})  # fmt: skip
    loop = FeedbackLoopSystem(pipeline=EnhancementPipeline(8000), **policy_loop_options(paths["rated"]))
    with pytest.warns(UserWarning, match=r"trained at 16000 Hz, run at 8000 Hz"):
        loop.strategy("policy")
    clip = scenarios.load("builtin", sample_rate=8000)["pink_snr+0_f1"]
    with pytest.warns(UserWarning, match=r"trained at 16000 Hz, run at 8000 Hz"):
        make_strategy(f"td3:{paths['rated']}").run(clip, 2, 0, clip_context(clip, 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FeedbackLoopSystem(pipeline=EnhancementPipeline(8000), **policy_loop_options(paths["old"])).strategy("policy")
        FeedbackLoopSystem(**policy_loop_options(paths["rated"])).strategy("policy")


def test_policy_strategy_needs_a_model():
    loop = FeedbackLoopSystem(seed=0, strategy="policy")
    with pytest.raises(ValueError, match="needs a trained model"):
        loop.strategy("policy")


def test_a_failed_import_of_the_builtins_is_not_remembered(monkeypatch):
    """An ImportError while registering the built-ins propagates, and the next call registers them: the
    registry was marked done before the import, so every later call said 'unknown strategy'."""
    import sys

    from feedback_env.feedback_loop import strategies

    monkeypatch.setattr(strategies, "_BUILTINS_DONE", False)  # a fresh registry (both restored after the test)
    monkeypatch.setattr(strategies, "_REGISTRY", {})
    with monkeypatch.context() as broken:
        broken.setitem(sys.modules, "feedback_env.feedback_loop.optimizers", None)  # the import fails
        broken.delattr(feedback_env.feedback_loop, "optimizers", raising=False)  # (not found on the package either)
        with pytest.raises(ImportError):
            available_strategies()
    assert {"gradient", "cma", "bayesian", "random"} <= set(available_strategies())  # the cause is gone


@pytest.mark.parametrize("algo", ["sac", "ppo"])
def test_a_policy_of_another_algorithm_is_refused_before_any_work(tmp_path, algo):
    """The ``policy`` strategy (and the harness's ``td3:MODEL.zip``) acts through TD3's optimizer: a SAC or PPO
    model from ``train.py --algo`` failed on every clip after the set was loaded, with a TypeError; it is refused
    at once, naming the algorithm."""
    from agents.factory import make_agent
    from agents.strategy import policy_loop_options
    from scenarios.strategies import make_strategy

    env = gym.make("feedback_env/AudioEnhancement-v0", config={"tuned": ["highpass_hz", "nr_floor_db"]})
    path = save_agent(make_agent(algo, env, seed=0), tmp_path / f"{algo}.zip", env_id="feedback_env/AudioEnhancement-v0",
                      env_config={"tuned": ["highpass_hz", "nr_floor_db"]})  # fmt: skip
    for call in (lambda: policy_loop_options(path), lambda: make_strategy(f"td3:{path}")):
        with pytest.raises(ValueError, match=f"{algo.upper()} model"):
            call()
