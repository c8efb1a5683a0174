"""The env features issue 6 added: training-time augmentation and ``restore_params`` (for rollbacks)."""

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
