"""The env features issue 6 added: training-time augmentation, ``restore_params`` (for rollbacks), centred
actions and averaged features (``feature_context``)."""

import gymnasium as gym
import numpy as np
import pytest

import feedback_env  # noqa: F401  (registers the ids)
from feedback_env.pipeline import PARAMETER_SPACE

ENV = "feedback_env/AudioEnhancement-v0"
DEFAULT = PARAMETER_SPACE.to_unit(PARAMETER_SPACE.defaults())


def episode(config, seed):
    env = gym.make(ENV, config=config)
    _, info = env.reset(seed=seed)
    baseline, truncated = [], False
    while not truncated:
        _, _, _, truncated, step_info = env.step(DEFAULT)
        baseline.append(step_info["baseline_metrics"]["si_sdr"])
    return info["clip"], np.array(baseline)


def test_snr_shift_rescales_the_noise_of_the_drawn_clip():
    clip = "white_snr+10_f2"
    _, original = episode({"clips": [clip]}, 0)
    name, shifted = episode({"clips": [clip], "augment": {"snr_shift_db": (-10.0, -10.0)}}, 0)
    assert name == f"{clip}-10.0dB"
    assert np.median(original - shifted) == pytest.approx(10.0, abs=1.0)  # unprocessed SI-SDR follows the SNR


def test_splicing_appends_a_second_clip_and_seeds_repeat():
    config = {"augment": {"snr_shift_db": (-5.0, 5.0), "splice": 1.0}}
    name, baseline = episode(config, 3)
    first, second = name.split("+", 1)
    n_chunks = {4: 8, 8: 16}
    lengths = [n_chunks[8 if "-to-" in part or "-up" in part or "-down" in part else 4] for part in (first, second)]
    assert len(baseline) == sum(lengths)
    again, baseline_again = episode(config, 3)
    assert again == name
    np.testing.assert_array_equal(baseline, baseline_again)


def test_fresh_noise_replaces_the_noise_at_the_same_level_and_seeds_repeat():
    clip = "white_snr+10_f2"
    _, original = episode({"clips": [clip]}, 0)
    config = {"clips": [clip], "augment": {"fresh_noise": 1.0}}
    names = {episode(config, seed)[0] for seed in range(6)}
    assert all(n.startswith(f"{clip}[") and n.endswith("]+0.0dB") for n in names) and len(names) >= 3, names
    name, fresh = episode(config, 1)
    assert episode(config, 1)[0] == name
    np.testing.assert_array_equal(fresh, episode(config, 1)[1])  # seeded: the same noise again
    assert not np.allclose(fresh, original)  # another noise ...
    assert abs(np.mean(fresh) - np.mean(original)) < 3.0, (name, fresh, original)  # ... at the clip's level (dB)


def test_an_unknown_augment_key_is_named():
    with pytest.raises(ValueError, match="unknown augment keys \\['splcie'\\]"):
        gym.make(ENV, config={"augment": {"splcie": 1.0}})


@pytest.mark.parametrize(
    "augment, message",
    [
        ({"snr_shift_db": (5.0, -5.0)}, r"augment\['snr_shift_db'\].*lo <= hi.*\(5.0, -5.0\)"),
        ({"snr_shift_db": 3}, r"augment\['snr_shift_db'\].*\(lo, hi\).*got 3"),
        ({"snr_shift_db": (0.0, float("inf"))}, r"augment\['snr_shift_db'\].*finite"),
        ({"snr_shift_db": ("a", "b")}, r"augment\['snr_shift_db'\]"),
        ({"snr_shift_db": "12"}, r"augment\['snr_shift_db'\].*got '12'"),
        ({"splice": 2}, r"augment\['splice'\].*probability in \[0, 1\].*got 2"),
        ({"fresh_noise": -0.1}, r"augment\['fresh_noise'\].*probability in \[0, 1\].*got -0.1"),
        ({"fresh_noise": float("nan")}, r"augment\['fresh_noise'\].*got nan"),
        ({"splice": "half"}, r"augment\['splice'\].*got 'half'"),
        ([("splice", 0.5)], r"augment must be a dict.*got list"),
    ],
)
def test_bad_augment_values_are_named(augment, message):
    """Checked when the env is made, not at the first reset (a reversed range was numpy's 'high - low < 0')."""
    with pytest.raises(ValueError, match=message):
        gym.make(ENV, config={"augment": augment})


def test_good_augment_values_pass():
    for augment in ({}, {"snr_shift_db": [-10, 10], "splice": 0, "fresh_noise": 1}, {"snr_shift_db": (3.0, 3.0)}):
        gym.make(ENV, config={"augment": augment}).reset(seed=0)


def test_explicit_clips_are_never_augmented():
    env = gym.make(ENV, config={"augment": {"snr_shift_db": (-10.0, 10.0), "splice": 1.0}})
    _, info = env.reset(seed=0, options={"clip": "pink_snr+0_f1"})
    assert info["clip"] == "pink_snr+0_f1"


def test_restore_params_sets_the_parameters_the_next_chunk_uses():
    env = gym.make("feedback_env/AudioEnhancementDelta-v0")
    env.reset(seed=0)
    env.step(np.ones(PARAMETER_SPACE.dim, np.float32))
    obs = env.unwrapped.restore_params(PARAMETER_SPACE.defaults())
    np.testing.assert_allclose(obs[13 : 13 + PARAMETER_SPACE.dim], DEFAULT, atol=1e-6)
    _, _, _, _, info = env.step(np.zeros(PARAMETER_SPACE.dim, np.float32))
    assert info["params"] == pytest.approx(PARAMETER_SPACE.defaults())
    with pytest.raises(Exception, match="outside"):
        env.unwrapped.restore_params({"highpass_hz": 5000.0})


CENTER = {"highpass_hz": 120.0, "nr_oversubtraction": 1.0, "nr_floor_db": -30.0}


def test_centred_actions_are_offsets_around_the_center_within_the_radius():
    tuned = list(CENTER)
    space = PARAMETER_SPACE.subspace(tuned)
    env = gym.make(ENV, config={"tuned": tuned, "action_center": CENTER, "action_radius": 0.25, "fixed": CENTER})
    _, info = env.reset(seed=0)
    assert info["params"] == pytest.approx({**PARAMETER_SPACE.defaults(), **CENTER})  # episodes start at the center
    center = space.to_unit(CENTER, dtype=np.float64)
    _, _, _, _, info = env.step(np.zeros(3, np.float32))
    assert {n: info["params"][n] for n in tuned} == pytest.approx(CENTER)
    _, _, _, _, info = env.step(np.array([1.0, -1.0, 0.5], np.float32))
    moved = space.to_unit({n: info["params"][n] for n in tuned}, dtype=np.float64)
    np.testing.assert_allclose(moved, np.clip(center + 0.25 * np.array([1.0, -1.0, 0.5]), -1, 1), atol=1e-9)


def test_centred_env_passes_both_checkers_and_repeats_with_a_seed():
    import warnings

    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    config = {"tuned": list(CENTER), "action_center": CENTER, "action_radius": 0.5, "smoothing": 0.3}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(ENV, config=config).unwrapped)
        sb3_check_env(gym.make(ENV, config=config).unwrapped, warn=True)

    def trace(seed):
        env = gym.make(ENV, config=config)
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for _ in range(4):
            obs, reward, *_ = env.step(env.action_space.sample())
            out += [obs, np.array([reward], np.float32)]
        return np.concatenate(out)

    np.testing.assert_array_equal(trace(3), trace(3))


def test_bad_action_center_or_radius_fails_clearly():
    with pytest.raises(ValueError, match="lacks the tuned parameters"):
        gym.make(ENV, config={"tuned": list(CENTER), "action_center": {"highpass_hz": 100.0}})
    with pytest.raises(ValueError, match="radius"):
        gym.make(ENV, config={"tuned": list(CENTER), "action_center": CENTER, "action_radius": 0.0})
    with pytest.raises(Exception, match="outside"):
        gym.make(ENV, config={"tuned": list(CENTER), "action_center": {**CENTER, "nr_floor_db": 10.0}})


def test_feature_context_appends_the_running_mean_of_the_features(builtin):
    from feedback_env.features import ChunkFeatures

    clip = builtin["pink-to-babble_snr+5_m1"]
    plain, averaged = ChunkFeatures(16000), ChunkFeatures(16000, context=0.8)
    assert averaged.names == plain.names + tuple(f"avg_{name}" for name in plain.names) and averaged.dim == 2 * plain.dim
    mean = None
    for start in range(0, 6 * 8000, 8000):
        now, both = plain(clip.noisy[start : start + 8000]), averaged(clip.noisy[start : start + 8000])
        mean = now if mean is None else 0.8 * mean + 0.2 * now
        assert np.array_equal(both[: plain.dim], now) and np.allclose(both[plain.dim :], mean, atol=1e-6)
    assert not np.allclose(mean, now, atol=0.05)  # the average lags what the last chunk shows
    averaged.reset()
    restarted = averaged(clip.noisy[:8000])
    assert np.array_equal(restarted[plain.dim :], restarted[: plain.dim])
    with pytest.raises(ValueError, match="feature context"):
        ChunkFeatures(16000, context=1.0)


def test_env_with_feature_context_passes_both_checkers_and_shows_the_average():
    import warnings

    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(ENV, config={"split": "train", "feature_context": 0.8})
    plain = gym.make(ENV, config={"split": "train"})
    assert env.observation_space.shape[0] == plain.observation_space.shape[0] + 13
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped, warn=True)
    obs, _ = env.reset(seed=0, options={"clip": "pink-to-babble_snr+5_m1"})
    assert np.array_equal(obs[:13], obs[13:26])  # one chunk heard: the average is that chunk
    for _ in range(4):
        obs, *_ = env.step(env.action_space.sample())
    assert not np.array_equal(obs[:13], obs[13:26])


def test_centred_action_map_inverts_and_names_positions_out_of_reach():
    from feedback_env.envs.actions import AbsoluteAction, DeltaAction

    action_type = AbsoluteAction(PARAMETER_SPACE, list(CENTER), center=CENTER, radius=0.25)
    action = np.array([0.3, -1.0, 0.7])
    np.testing.assert_allclose(action_type.action_for(action_type.position(action)), action, atol=1e-12)
    far = action_type.position(np.zeros(3)) + np.array([0.0, 0.3, 0.0])  # 0.3 unit widths from the centre
    with pytest.raises(ValueError, match=f"{list(CENTER)[1]}.*out of the action's reach"):
        action_type.action_for(far)
    with pytest.raises(TypeError, match="delta action"):
        DeltaAction(PARAMETER_SPACE, list(CENTER)).action_for(far)
