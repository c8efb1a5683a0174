from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch as th

import feedback_env  # noqa: F401  (registers the ids)
from agents.factory import save_agent
from agents.feedback_optimizer import RLFeedbackOptimizer
from agents.strategy import PolicyStrategy
from feedback_env.features import ChunkFeatures
from feedback_env.metrics import compute_metrics
from feedback_env.objectives import QualityReward
from feedback_env.observation import build_observation, feedback_vector
from feedback_env.pipeline import PARAMETER_SPACE, EnhancementPipeline, aligned

th.set_num_threads(1)
CLIP = "pink_snr+0_f1"
TUNED = ["highpass_hz", "nr_oversubtraction", "nr_floor_db", "nr_noise_window_s"]
ENVS = {"absolute": "feedback_env/AudioEnhancement-v0", "delta": "feedback_env/AudioEnhancementDelta-v0"}


class FakeLoop:
    """The loop services a strategy uses, built from the env's pieces: streams one clip chunk by chunk."""

    def __init__(self, clip, tuned, chunk=8000):
        self.space = PARAMETER_SPACE.subspace(tuned)
        self.parameters = PARAMETER_SPACE.defaults()
        self.pipeline = EnhancementPipeline(clip.sample_rate)
        self.reward_fn = QualityReward.default()
        cut = lambda x: [x[i : i + chunk] for i in range(0, len(x), chunk)]  # noqa: E731
        self.chunks = cut(clip.noisy)
        features = ChunkFeatures(clip.sample_rate)
        self.features = [features(c) for c in self.chunks]
        self.clean = cut(aligned(clip.clean, self.pipeline.latency))
        self.unprocessed = cut(aligned(clip.noisy, self.pipeline.latency))
        self.feedback = feedback_vector(None, None, None, 0.0, 2)
        self.t, self.last_record = 0, None

    def observation(self):
        t = min(self.t, len(self.features) - 1)  # after the last chunk, as the env does
        return build_observation(self.features[t], self.space, self.parameters, self.feedback)

    def evaluate(self, params):
        raise AssertionError("the policy strategy must not call loop.evaluate")

    def run(self, strategy, steps):
        proposals = []
        for _ in range(steps):
            proposal = strategy.propose(self)
            self.parameters = {**self.parameters, **proposal.params}
            out = self.pipeline.process(self.chunks[self.t], self.parameters)
            names = list(self.reward_fn.metric_names)
            metrics = compute_metrics(out, self.clean[self.t], 16000, names=names)
            baseline = compute_metrics(self.unprocessed[self.t], self.clean[self.t], 16000, names=names)
            reward = self.reward_fn(metrics, baseline)
            self.feedback = feedback_vector(self.reward_fn, metrics, baseline, reward, 2)
            record = SimpleNamespace(reward=reward, metrics=metrics, features=self.features[self.t], params=self.parameters)
            self.t += 1
            self.last_record = record
            strategy.observe(self, record)
            proposals.append(proposal)
        return proposals


def env_params(env_id, optimizer, steps, **config):
    env = gym.make(env_id, config={"tuned": TUNED, **config})
    obs, _ = env.reset(seed=0, options={"clip": CLIP})
    out = []
    for _ in range(steps):
        obs, _, _, _, info = env.step(optimizer.select_action(obs, 0.0))
        out.append(info["params"])
    return out


@pytest.mark.parametrize("mode", ["absolute", "delta"])
def test_proposals_are_what_the_policy_does_in_its_env(builtin, mode):
    env = gym.make(ENVS[mode], config={"tuned": TUNED})
    optimizer = RLFeedbackOptimizer(env.observation_space, env.action_space, seed=1)
    strategy = PolicyStrategy(optimizer, TUNED, mode=mode)
    proposals = FakeLoop(builtin[CLIP], TUNED).run(strategy, 5)
    expected = env_params(ENVS[mode], optimizer, 5)
    for proposal, params in zip(proposals, expected):
        assert proposal.params == pytest.approx({name: params[name] for name in TUNED})
        assert "TD3 policy" in proposal.explanation and "critic value" in proposal.explanation
        assert np.isfinite(proposal.estimate["q_value"])
    assert any(name in proposals[0].explanation for name in TUNED)


def test_learning_strategy_stores_transitions_and_updates_the_policy(builtin):
    env = gym.make(ENVS["absolute"], config={"tuned": TUNED})
    optimizer = RLFeedbackOptimizer(env.observation_space, env.action_space, seed=0, learning_starts=0)
    strategy = PolicyStrategy(optimizer, TUNED, learn=True, exploration_noise=0.3, batch_size=4)
    probe = FakeLoop(builtin[CLIP], TUNED).observation()
    before = optimizer.select_action(probe, 0.0)
    FakeLoop(builtin[CLIP], TUNED).run(strategy, 8)
    assert optimizer.model.replay_buffer.size() == 8 and optimizer.updates == 5
    assert not np.allclose(optimizer.select_action(probe, 0.0), before)


def test_from_model_reads_the_env_of_the_saved_policy(builtin, tmp_path):
    env = gym.make(ENVS["delta"], config={"tuned": TUNED, "max_step": 0.1})
    optimizer = RLFeedbackOptimizer(env.observation_space, env.action_space, seed=2)
    path = save_agent(optimizer.model, tmp_path / "policy.zip", env_id=ENVS["delta"], env_config={"tuned": TUNED, "max_step": 0.1})
    strategy = PolicyStrategy.from_model(path)
    assert strategy.mode == "delta" and strategy.action.max_step == 0.1
    proposal = FakeLoop(builtin[CLIP], TUNED).run(strategy, 1)[0]
    expected = env_params(ENVS["delta"], optimizer, 1, max_step=0.1)[0]
    assert proposal.params == pytest.approx({name: expected[name] for name in TUNED})
    loop = FakeLoop(builtin[CLIP], TUNED[:2])  # observes fewer parameters than the policy was trained on
    with pytest.raises(ValueError, match="the policy was trained to set"):
        strategy.propose(loop)


def test_from_model_follows_a_centred_action_space(builtin, tmp_path):
    center = {"highpass_hz": 100.0, "nr_oversubtraction": 1.2, "nr_floor_db": -25.0, "nr_noise_window_s": 0.6}
    env_config = {"tuned": TUNED, "action_center": center, "action_radius": 0.3, "smoothing": 0.3}
    env = gym.make(ENVS["absolute"], config=env_config)
    optimizer = RLFeedbackOptimizer(env.observation_space, env.action_space, seed=3)
    path = save_agent(optimizer.model, tmp_path / "policy.zip", env_id=ENVS["absolute"], env_config=env_config)
    strategy = PolicyStrategy.from_model(path)
    assert strategy.action.radius == 0.3
    proposals = FakeLoop(builtin[CLIP], TUNED).run(strategy, 3)
    expected = env_params(ENVS["absolute"], optimizer, 3, **{k: v for k, v in env_config.items() if k != "tuned"})
    for proposal, params in zip(proposals, expected):
        assert proposal.params == pytest.approx({name: params[name] for name in TUNED})
