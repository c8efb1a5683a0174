import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from agents.feedback_optimizer import RLFeedbackOptimizer
from agents.prioritized import PrioritizedReplayBuffer

th.set_num_threads(1)
OBS = spaces.Box(-1.0, 1.0, (3,), np.float32)
ACT = spaces.Box(-1.0, 1.0, (1,), np.float32)


def filled_buffer(rewards, alpha=0.6):
    buffer = PrioritizedReplayBuffer(64, OBS, ACT, device="cpu", alpha=alpha)
    for i, r in enumerate(rewards):
        obs = np.full((1, 3), i / len(rewards), np.float32)
        buffer.add(obs, obs, np.zeros((1, 1), np.float32), np.array([r], np.float32), np.array([1.0]), [{}])
    return buffer


def test_sampling_is_proportional_to_priority_and_weights_undo_it():
    np.random.seed(0)
    buffer = filled_buffer([0.0] * 4, alpha=1.0)
    buffer.update_priorities(np.arange(4), np.zeros(4, int), np.array([1.0, 2.0, 3.0, 4.0]) - buffer.epsilon)
    counts = np.zeros(4)
    for _ in range(500):
        counts += np.bincount(buffer.sample(8).indices, minlength=4)
    np.testing.assert_allclose(counts / counts.sum(), [0.1, 0.2, 0.3, 0.4], atol=0.015)
    buffer.beta = 1.0  # full correction: weight * probability is the same for every transition
    batch = buffer.sample(64)
    p = buffer.priorities[batch.indices, 0] / buffer.priorities[:4, 0].sum()
    product = batch.weights.numpy().ravel() * p
    np.testing.assert_allclose(product, product[0], rtol=1e-5)
    assert batch.weights.max() <= 1.0 + 1e-6


def one_step_critic(rewards, weights):
    """Critic parameters after one PrioritizedTD3 step on a fixed batch of two terminal transitions."""
    opt = RLFeedbackOptimizer(OBS, ACT, seed=0, learning_starts=0, target_policy_noise=0.0, policy_delay=10)
    buffer = opt.model.replay_buffer
    for i, r in enumerate(rewards):
        obs = np.full(3, 0.5 * i, np.float32)
        opt.store(obs, np.array([0.3 * i]), r, obs, done=True)
    original = buffer.sample

    def fixed(batch_size, env=None):
        batch = original(batch_size, env)
        return batch._replace(
            indices=np.array([0, 1]), env_indices=np.array([0, 0]),
            observations=th.as_tensor(buffer.observations[:2, 0]), next_observations=th.as_tensor(buffer.next_observations[:2, 0]),
            actions=th.as_tensor(buffer.actions[:2, 0]), rewards=th.as_tensor(buffer.rewards[:2]), dones=th.ones(2, 1),
            weights=th.tensor(weights, dtype=th.float32).reshape(2, 1),
        )

    buffer.sample = fixed
    opt.update_policy(batch_size=2)
    del buffer.sample  # back to the class's prioritized sampling
    return th.cat([p.detach().flatten() for p in opt.model.critic.parameters()]), buffer


def test_importance_weights_enter_the_critic_loss():
    a, _ = one_step_critic([0.0, 0.0], [1.0, 0.0])
    b, _ = one_step_critic([0.0, 100.0], [1.0, 0.0])  # a zero-weight transition cannot move the critic
    c, _ = one_step_critic([0.0, 100.0], [1.0, 1.0])
    assert th.equal(a, b)
    assert not th.allclose(b, c)


def test_priorities_follow_td_errors():
    _, buffer = one_step_critic([0.0, 5.0], [1.0, 1.0])
    # terminal transitions: the TD error is Q - r, so the 5.0 reward has the far larger error
    assert buffer.priorities[1, 0] > 10 * buffer.priorities[0, 0]
    np.random.seed(1)
    picks = np.concatenate([buffer.sample(16).indices for _ in range(20)])
    assert np.mean(picks == 1) > 0.8


def test_online_optimizer_learns_the_best_action():
    # a one-step problem: reward -4 (a - 0.5)^2 whatever the state; TD3 must find a = 0.5
    opt = RLFeedbackOptimizer(3, 1, seed=0, gamma=0.0, learning_starts=0, net_arch=[32, 32])
    rng = np.random.default_rng(0)
    state = np.zeros(3, np.float32)
    before = float(opt.select_action(state, 0.0)[0])
    for _ in range(1200):
        a = opt.select_action(state, exploration_noise=0.5)
        opt.store(state, a, -4.0 * float((a[0] - 0.5) ** 2), state, done=True)
        opt.update_policy(batch_size=32)
        state = rng.uniform(-1, 1, 3).astype(np.float32)
    after = opt.select_action(np.zeros(3, np.float32), 0.0)[0]
    assert abs(after - 0.5) < 0.1 and abs(after - 0.5) < abs(before - 0.5)
    assert opt.q_value(np.zeros(3), [0.5]) > opt.q_value(np.zeros(3), [-0.9])


def test_optimizer_checks_its_inputs(tmp_path):
    opt = RLFeedbackOptimizer(3, 2, seed=0)
    assert opt.update_policy(64) is None  # not enough data yet
    with pytest.raises(ValueError, match="shape"):
        opt.select_action(np.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        opt.store(np.zeros(3), np.zeros(2), float("nan"), np.zeros(3))
    with pytest.raises(TypeError, match="Box or a positive int"):
        RLFeedbackOptimizer("3", 2)
    state = np.linspace(-1, 1, 3).astype(np.float32)
    path = opt.save(tmp_path / "opt.zip", replay_buffer=tmp_path / "buffer.pkl")
    loaded = RLFeedbackOptimizer.load(path, replay_buffer=tmp_path / "buffer.pkl")
    np.testing.assert_array_equal(loaded.select_action(state, 0.0), opt.select_action(state, 0.0))


def test_online_updates_anneal_beta_to_one_over_the_horizon(tmp_path):
    """update_policy moves SB3's training progress by 1/horizon per update, so PER's importance exponent goes
    from beta (0.4) to 1 over ``horizon`` updates, as under ``learn``; a saved and loaded optimizer goes on from there."""
    opt = RLFeedbackOptimizer(3, 1, seed=0, learning_starts=0, horizon=10)
    rng = np.random.default_rng(0)
    for _ in range(8):
        state = rng.uniform(-1, 1, 3).astype(np.float32)
        opt.store(state, rng.uniform(-1, 1, 1), float(rng.normal()), state, done=True)
    buffer = opt.model.replay_buffer
    betas = []
    for _ in range(5):
        opt.update_policy(batch_size=4)
        betas.append(buffer.beta)  # the exponent this update's weights were computed with
    np.testing.assert_allclose(betas, 0.4 + 0.06 * np.arange(5), atol=1e-9)
    opt.save(tmp_path / "opt.zip", replay_buffer=tmp_path / "buffer.pkl")
    loaded = RLFeedbackOptimizer.load(tmp_path / "opt.zip", replay_buffer=tmp_path / "buffer.pkl", horizon=10)
    for _ in range(7):
        loaded.update_policy(batch_size=4)
        betas.append(loaded.model.replay_buffer.beta)
    np.testing.assert_allclose(betas, np.minimum(0.4 + 0.06 * np.arange(12), 1.0), atol=1e-9)
    with pytest.raises(ValueError, match="horizon must be a positive number of updates, got 0"):
        RLFeedbackOptimizer(3, 1, horizon=0)


def test_a_model_trained_with_uniform_replay_learns_on_with_prioritized_replay(tmp_path):
    """train.py trains with SB3's uniform buffer; loaded for online learning (the loop's ``policy`` strategy)
    it kept it, though the optimizer is documented as prioritized. Its transitions now move over."""
    uniform = RLFeedbackOptimizer(3, 1, seed=0, prioritized=False, learning_starts=0)
    rng = np.random.default_rng(0)
    for _ in range(6):
        state = rng.uniform(-1, 1, 3).astype(np.float32)
        uniform.store(state, rng.uniform(-1, 1, 1), float(rng.normal()), state, done=True)
    uniform.save(tmp_path / "opt.zip", replay_buffer=tmp_path / "buffer.pkl")
    loaded = RLFeedbackOptimizer.load(tmp_path / "opt.zip", replay_buffer=tmp_path / "buffer.pkl")
    buffer, before = loaded.model.replay_buffer, uniform.model.replay_buffer
    assert isinstance(buffer, PrioritizedReplayBuffer) and buffer.size() == before.size() == 6
    for field in ("observations", "next_observations", "actions", "rewards", "dones"):
        np.testing.assert_array_equal(getattr(buffer, field)[:6], getattr(before, field)[:6])
    np.testing.assert_array_equal(buffer.priorities[:6], 1.0)  # every old transition at the largest priority
    assert loaded.update_policy(batch_size=4) is not None
    kept = RLFeedbackOptimizer.load(tmp_path / "opt.zip", replay_buffer=tmp_path / "buffer.pkl", prioritized=False)
    assert not isinstance(kept.model.replay_buffer, PrioritizedReplayBuffer)
