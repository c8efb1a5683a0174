import gymnasium as gym
import numpy as np
import pytest
import torch as th

import feedback_env  # noqa: F401  (registers the ids)
from agents.ensemble import EnsembleTD3Policy, checkpoint_ensemble, member_predictor, seed_ensemble
from agents.factory import load_agent, make_agent, save_agent
from agents.feedback_optimizer import RLFeedbackOptimizer
from agents.prioritized import PrioritizedTD3
from agents.strategy import policy_loop_options
from agents.training import DENOISING
from feedback_env import FeedbackLoopSystem
from feedback_env.feedback_loop.objective import chunk_stream

th.set_num_threads(1)
ENV = "feedback_env/AudioEnhancement-v0"


@pytest.fixture(scope="module")
def env():
    return gym.make(ENV, config={"tuned": list(DENOISING)})


def observations(env, n=16):
    return np.random.default_rng(0).uniform(-1, 1, (n, *env.observation_space.shape)).astype(np.float32)


def snapshots(env, tmp_path, seeds=(1, 2)):
    """Checkpoint files of differently initialised TD3 models (distinct actors) and their actions."""
    paths, actions = [], []
    for seed in seeds:
        model = make_agent("td3", env, seed=seed)
        paths.append(tmp_path / f"model_{seed}_steps.zip")
        model.save(paths[-1])
        actions.append(model.predict(observations(env), deterministic=True)[0])
    return paths, actions


def test_the_ensemble_acts_with_the_mean_action_of_its_members_and_saves_and_loads_as_one_model(env, builtin, tmp_path):
    paths, actions = snapshots(env, tmp_path)
    model = make_agent("td3", env, seed=0, learning_starts=20, batch_size=16)
    obs = observations(env)
    own = model.predict(obs, deterministic=True)[0]
    q_before = model.critic.q1_forward(th.as_tensor(obs), th.as_tensor(own)).detach().numpy()
    assert np.abs(actions[0] - own).max() > 0.05  # the members differ, so the mean is a different action
    checkpoint_ensemble(model, paths)
    assert isinstance(model.policy, EnsembleTD3Policy) and model.policy.n_members == 3 and model.actor is model.policy.actor
    mean = np.mean([*actions, own], axis=0)
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], mean, atol=1e-6)
    np.testing.assert_allclose(member_predictor(model, -1)(obs), own, atol=1e-6)
    np.testing.assert_allclose(model.critic.q1_forward(th.as_tensor(obs), th.as_tensor(own)).detach().numpy(), q_before, atol=1e-6)

    loaded = load_agent(save_agent(model, tmp_path / "ensemble.zip", env_id=ENV, env_config={"tuned": list(DENOISING)}))
    assert isinstance(loaded, PrioritizedTD3) and isinstance(loaded.policy, EnsembleTD3Policy)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    optimizer = RLFeedbackOptimizer.load(tmp_path / "ensemble.zip")  # the loop's policy strategy acts with it too
    np.testing.assert_allclose(optimizer.select_action(obs[0], 0.0), mean[0], atol=1e-6)
    loop = FeedbackLoopSystem(seed=0, **policy_loop_options(tmp_path / "ensemble.zip"))  # as the harness's td3:MODEL
    for noisy, clean in chunk_stream(builtin["pink_snr+0_f1"].noisy, builtin["pink_snr+0_f1"].clean, 8000, 3):
        loop.step(noisy, clean)
    action = loaded.predict(loop.observation(), deterministic=True)[0]
    update = loop.update_parameters("policy")
    expected = loop.space.from_unit(np.asarray(action, dtype=np.float64))
    assert all(np.isclose(update.new_params[k], v, rtol=1e-5) for k, v in expected.items())
    assert update.explanation.startswith("mean action of 3 TD3 actors")

    loaded.set_env(env)  # and it still learns: TD3's updates reach every member
    before = [p.detach().clone() for p in loaded.actor.parameters()]
    loaded.learn(60)
    assert loaded._n_updates > 0
    assert all(not th.equal(b, p) for b, p in zip(before, loaded.actor.parameters()) if p.dim() == 2)


def test_an_ensemble_needs_a_standard_td3_model(env, tmp_path):
    paths, _ = snapshots(env, tmp_path, seeds=(1,))
    with pytest.raises(TypeError, match="standard TD3Policy"):
        checkpoint_ensemble(make_agent("sac", env), paths)
    twice = checkpoint_ensemble(make_agent("td3", env), paths)
    with pytest.raises(TypeError, match="EnsembleTD3Policy"):
        checkpoint_ensemble(twice, paths)
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleTD3Policy(env.observation_space, env.action_space, lambda _: 1e-3, n_members=0)


def test_a_seed_ensemble_acts_with_the_mean_action_of_every_actor_of_its_runs(env, tmp_path):
    paths, actions = snapshots(env, tmp_path)
    first = checkpoint_ensemble(make_agent("td3", env, seed=3), paths)  # a run with a checkpoint ensemble: 3 actors
    second = make_agent("td3", env, seed=4)  # a run without: 1 actor
    obs = observations(env)
    own = [first.predict(obs, deterministic=True)[0], second.predict(obs, deterministic=True)[0]]
    critic = first.critic.q1_forward(th.as_tensor(obs), th.as_tensor(own[0])).detach().numpy()
    model = seed_ensemble([first, second])
    assert model is first and model.policy.n_members == 4
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], (3 * own[0] + own[1]) / 4, atol=1e-6)
    np.testing.assert_allclose(model.critic.q1_forward(th.as_tensor(obs), th.as_tensor(own[0])).detach().numpy(), critic, atol=1e-6)
    with pytest.raises(TypeError, match="one or more TD3 models"):
        seed_ensemble([make_agent("sac", env)])
    with pytest.raises(TypeError, match="one or more TD3 models"):
        seed_ensemble([])
