import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
import soundfile as sf
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import feedback_env
from feedback_env.pipeline import PARAMETER_SPACE
from feedback_env.presets import PRESETS, preset_params

IDS = list(feedback_env.ENV_IDS)
CLIP = "white_snr+10_f2"


@pytest.fixture(scope="module")
def odd_set(tmp_path_factory):
    """A scenario set of awkward audio: DC, clipping, near silence, no noise, and no clean reference."""
    root = tmp_path_factory.mktemp("odd")
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    n = 16000
    t = np.arange(n) / n
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    signals = {
        "dc": (tone + 0.5, tone + 0.0),
        "clipped": (np.clip(4 * tone, -1, 1), tone),
        "whisper": (tone * 1e-4 + rng.standard_normal(n) * 1e-5, tone * 1e-4),
        "clean_in": (tone, tone),
        "no_reference": (tone + 0.05 * rng.standard_normal(n), None),
        "pause": (np.concatenate([tone, np.zeros(n)]) + 0.05 * rng.standard_normal(2 * n), np.concatenate([tone, np.zeros(n)])),
    }
    clips = []
    for name, (noisy, clean) in signals.items():
        sf.write(root / "audio" / f"{name}_noisy.wav", noisy.astype(np.float32), n, subtype="FLOAT")
        entry = {"id": name, "noisy": f"audio/{name}_noisy.wav", "tags": {"split": "train"}}
        if clean is not None:
            sf.write(root / "audio" / f"{name}_clean.wav", clean.astype(np.float32), n, subtype="FLOAT")
            entry["clean"] = f"audio/{name}_clean.wav"
        clips.append(entry)
    (root / "manifest.json").write_text(json.dumps({"name": "odd", "sample_rate": n, "clips": clips}))
    return root


def test_registration_is_idempotent():
    feedback_env.register_envs()
    feedback_env.register_envs()
    for env_id in IDS:
        assert env_id in gym.registry
        assert isinstance(gym.registry[env_id].entry_point, str)


@pytest.mark.parametrize("env_id", IDS)
def test_both_checkers_pass_without_warnings(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for mode in ("rgb_array", "ansi"):
            check_env(gym.make(env_id, render_mode=mode).unwrapped)
        sb3_check_env(gym.make(env_id).unwrapped, warn=True)


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_episode(env_id):
    def run(seed):
        env = gym.make(env_id)
        env.action_space.seed(seed)
        obs, info = env.reset(seed=seed)
        trace = [obs]
        for _ in range(5):
            obs, reward, *_ = env.step(env.action_space.sample())
            trace += [obs, np.array([reward])]
        return info["clip"], np.concatenate(trace)

    a, b = run(7), run(7)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


def test_episode_streams_one_clip_to_truncation(builtin):
    env = gym.make("feedback_env/AudioEnhancement-v0")
    obs, info = env.reset(seed=0, options={"clip": CLIP})
    n_chunks = int(np.ceil(builtin[CLIP].noisy.size / 8000))
    for k in range(n_chunks):
        obs, reward, terminated, truncated, info = env.step(PARAMETER_SPACE.to_unit(PARAMETER_SPACE.defaults()))
        assert info["clip"] == CLIP and info["chunk"] == k
        assert set(info["params"]) == set(PARAMETER_SPACE.names)
        assert {"si_sdr", "lsd"} <= set(info["metrics"])
        assert not terminated and truncated == (k == n_chunks - 1)
        assert env.observation_space.contains(obs)


def test_default_parameters_earn_positive_reward_and_damage_earns_negative():
    def episode_return(params):
        env = gym.make("feedback_env/AudioEnhancement-v0")
        env.reset(seed=0, options={"clip": CLIP})
        total, truncated = 0.0, False
        while not truncated:
            _, reward, _, truncated, _ = env.step(PARAMETER_SPACE.to_unit(params))
            total += reward
        return total

    defaults = episode_return(PARAMETER_SPACE.defaults())
    damage = episode_return({**preset_params("bypass"), "highpass_hz": 500.0, "eq_high_db": -12.0, "eq_low_db": 12.0})
    bypass = episode_return(preset_params("bypass"))
    assert defaults > 1.0  # more than 10 dB SI-SDR gained over the episode
    assert damage < -0.5
    assert abs(bypass) < 0.2


def test_delta_env_moves_at_most_max_step():
    env = gym.make("feedback_env/AudioEnhancementDelta-v0", config={"max_step": 0.1})
    env.reset(seed=1)
    start = PARAMETER_SPACE.to_unit(env.unwrapped.params)
    _, _, _, _, info = env.step(np.ones(PARAMETER_SPACE.dim, np.float32))
    moved = PARAMETER_SPACE.to_unit(info["params"]) - start
    assert np.all(moved <= 0.1 + 1e-5) and np.all(moved >= -1e-6)
    for _ in range(30):  # keeps to the bounds however far it is pushed
        *_, truncated, info = env.step(np.ones(PARAMETER_SPACE.dim, np.float32))
        if truncated:
            break
    assert all(info["params"][p.name] <= p.high + 1e-9 for p in PARAMETER_SPACE.parameters)


def test_strategy_env_applies_presets():
    env = gym.make("feedback_env/StrategySelection-v0")
    env.reset(seed=2)
    names = list(PRESETS)
    for index in (0, names.index("strong_denoise")):
        _, _, _, _, info = env.step(index)
        assert info["params"] == pytest.approx(preset_params(names[index]))


def test_tuned_subset_and_fixed_overrides():
    env = gym.make(
        "feedback_env/AudioEnhancement-v0",
        config={"tuned": ["nr_floor_db", "nr_oversubtraction"], "fixed": {"highpass_hz": 120.0}},
    )
    assert env.action_space.shape == (2,)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([-1.0, 1.0], np.float32))
    assert info["params"]["nr_floor_db"] == pytest.approx(-40.0)
    assert info["params"]["nr_oversubtraction"] == pytest.approx(8.0)
    assert info["params"]["highpass_hz"] == pytest.approx(120.0)
    with pytest.raises(ValueError, match="unknown config keys"):
        gym.make("feedback_env/AudioEnhancement-v0", config={"tunned": []})
    with pytest.raises(ValueError, match="empty: it would tune nothing"):  # it tuned all 19
        gym.make("feedback_env/AudioEnhancement-v0", config={"tuned": []})


def test_render_modes():
    env = gym.make("feedback_env/AudioEnhancement-v0", render_mode="rgb_array")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    image = env.render()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.shape[0] > 100
    for _ in range(3):  # frames keep one shape through the episode, as video recorders need
        env.step(env.action_space.sample())
        assert env.render().shape == image.shape
    env = gym.make("feedback_env/AudioEnhancement-v0", render_mode="ansi")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    line = env.render()
    assert "reward" in line and "si_sdr" in line


def test_vec_envs():
    # "module:id" makes each SubprocVecEnv worker import the package (and so register the ids) first
    make = lambda: gym.make("feedback_env:feedback_env/AudioEnhancementDelta-v0")  # noqa: E731
    for vec_cls in (DummyVecEnv, SubprocVecEnv):
        venv = vec_cls([make, make])
        venv.seed(0)
        venv.reset()
        for _ in range(3):
            obs, rewards, dones, infos = venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
            assert obs.shape == (2, venv.observation_space.shape[0]) and np.all(np.isfinite(rewards))
        venv.close()


def test_scenarios_option_and_clip_without_reference(odd_set):
    env = gym.make("feedback_env/AudioEnhancement-v0")
    env.reset(seed=0, options={"scenarios": str(odd_set), "clip": "no_reference"})
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert "wada_snr" in info["metrics"] and "si_sdr" not in info["metrics"]
    assert np.isfinite(reward)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    clip=st.sampled_from(["dc", "clipped", "whisper", "clean_in", "no_reference"]),
    actions=st.lists(st.lists(st.sampled_from([-1.0, -0.5, 0.0, 0.7, 1.0]), min_size=19, max_size=19), min_size=2, max_size=2),
    env_id=st.sampled_from(IDS[:2]),
)
def test_reward_is_finite_for_any_action_and_audio(odd_set, clip, actions, env_id):
    env = gym.make(env_id, config={"scenarios": str(odd_set)})
    env.reset(seed=0, options={"clip": clip})
    for action in actions:
        obs, reward, _, truncated, info = env.step(np.array(action, np.float32))
        assert np.isfinite(reward) and np.all(np.isfinite(obs))
        assert all(np.isfinite(v) for v in info["metrics"].values())
        if truncated:
            break


def _episode_state(env):
    return (env._scenario_name, env._stream.clip_id, env._t, dict(env.params), env.pipeline.params,
            env._last.copy(), env.np_random.bit_generator.state)


@pytest.mark.parametrize("env_id", IDS)
def test_a_failed_reset_changes_nothing(env_id):
    """A bad options["scenarios"], clip or params, or options that are not a mapping, raise before
    anything is replaced: the episode goes on where it was, and the next plain reset works."""
    from feedback_env.errors import ParameterError, ScenarioError

    env = gym.make(env_id).unwrapped
    env.reset(seed=0, options={"clip": CLIP})
    for _ in range(3):
        env.step(env.action_space.sample())
    before = _episode_state(env)
    bad = [
        ({"scenarios": "/nonexistent"}, ScenarioError, "/nonexistent"),
        ({"clip": "pink_snr+0_f1", "params": {"highpass_hz": 1}}, ParameterError, "highpass_hz"),
        ({"params": {"highpass_hz": 1}}, ParameterError, "highpass_hz"),
        ({"clip": "nope"}, ScenarioError, "nope"),
        (["clip"], TypeError, "options must be a mapping"),
    ]
    for options, error, message in bad:
        with pytest.raises(error, match=message):
            env.reset(seed=1, options=options)
        after = _episode_state(env)
        assert after[:5] == before[:5] and np.array_equal(after[5], before[5]) and after[6] == before[6], options
    info = env.step(env.action_space.sample())[4]
    assert info["clip"] == CLIP and info["chunk"] == 3
    assert env.reset(seed=0)[1]["chunk"] == 0 and env._scenario_name == "builtin"


@pytest.mark.parametrize("env_id", IDS[:2])
def test_box_actions_of_the_wrong_shape_or_type_are_named(env_id):
    """A Box action has exactly d entries: a scalar or a (1,) action is not broadcast to every parameter."""
    env = gym.make(env_id).unwrapped
    env.reset(seed=0, options={"clip": CLIP})
    d = env.action_space.shape[0]
    before = dict(env.params)
    for action in (0.5, np.array([0.9]), np.zeros(3), np.zeros(d + 1), np.zeros((2, d))):
        shape = str(np.shape(action)).replace("(", r"\(").replace(")", r"\)")
        with pytest.raises(ValueError, match=rf"action must have shape \({d},\), got shape {shape}"):
            env.step(action)
    with pytest.raises(ValueError, match="action must be numbers"):
        env.step("x")
    with pytest.raises(ValueError, match="action has non-finite entries"):
        env.step(np.full(d, np.nan, np.float32))
    assert env.params == before and env._t == 0
    for action in (np.zeros(d, np.float32), np.zeros((1, d)), [0.0] * d):  # SB3's (d,) float32, and the like
        env.step(action)
    assert env._t == 3


def test_strategy_actions_must_be_one_whole_preset_index():
    """2.7, True, [1, 5] or "1" are not preset indices; numpy ints, 0-d and (1,) int arrays (VecEnvs) are."""
    env = gym.make(IDS[2]).unwrapped
    env.reset(seed=0, options={"clip": CLIP})
    bad = [
        (2.7, "got 2.7"),
        (np.nan, "got nan"),
        (True, "got True"),
        ("1", "got '1'"),
        ([1, 5], r"got shape \(2,\)"),
        (7, r"action 7 is not a preset index in \[0, 6\)"),
        (-1, r"action -1 is not a preset index in \[0, 6\)"),
    ]
    for action, message in bad:
        with pytest.raises(ValueError, match=message):
            env.step(action)
    assert env._t == 0
    names = list(PRESETS)
    for index, action in enumerate((1, np.int64(2), np.array(3), np.array([4], np.int32), np.float32(5.0)), start=1):
        assert env.step(action)[4]["params"] == pytest.approx(preset_params(names[index]))
    assert env._t == 5


@pytest.mark.parametrize("env_id", IDS)
def test_step_after_the_episode_ended_says_to_reset(env_id):
    env = gym.make(env_id, config={"chunk_s": 4.0}).unwrapped  # the clips are 6 s: 2 chunks
    env.reset(seed=0, options={"clip": CLIP})
    truncated = False
    while not truncated:
        truncated = env.step(env.action_space.sample())[3]
    params = dict(env.params)
    with pytest.raises(RuntimeError, match=r"episode is over .*call reset\(\)"):
        env.step(env.action_space.sample())
    assert env.params == params
    env.reset(seed=0)
    env.step(env.action_space.sample())


@pytest.mark.parametrize(
    "env_id, config, message",
    [
        (IDS[0], {"chunk_s": float("nan")}, "chunk_s must be a positive number of seconds, got nan"),
        (IDS[0], {"chunk_s": 0.0}, "chunk_s must be a positive number of seconds, got 0.0"),
        (IDS[0], {"chunk_s": "0.5"}, "chunk_s must be a positive number of seconds, got '0.5'"),
        (IDS[2], {"presets": []}, "presets: at least one preset is needed"),
        (IDS[2], {"presets": ["gentle", "nope"]}, "presets: unknown preset 'nope'; known: bypass"),
        (IDS[2], {"presets": "gentle"}, "presets must be a list of preset names"),
        (IDS[0], {"max_step": 0.1}, "config key 'max_step' is not used by AudioEnhancementEnv"),
        (IDS[0], {"presets": ["gentle"]}, "config key 'presets' is not used by AudioEnhancementEnv"),
        (IDS[1], {"smoothing": 0.9}, "config key 'smoothing' is not used by AudioEnhancementDeltaEnv"),
        (IDS[1], {"action_center": {"highpass_hz": 100.0}}, "config key 'action_center' is not used"),
        (IDS[1], {"action_radius": 0.1}, "config key 'action_radius' is not used"),
        (IDS[2], {"tuned": ["highpass_hz"]}, "config key 'tuned' is not used by StrategySelectionEnv"),
        (IDS[2], {"smoothing": 0.5}, "config key 'smoothing' is not used by StrategySelectionEnv"),
    ],
)
def test_bad_or_unused_config_values_name_the_key(env_id, config, message):
    """A key the env ignores is an error unless it has its default value (shared config builders pass those)."""
    with pytest.raises(ValueError, match=message):
        gym.make(env_id, config=config)


def test_unused_config_keys_at_their_defaults_are_accepted():
    gym.make(IDS[1], config={"smoothing": 0.0, "action_center": None, "action_radius": 1.0, "presets": list(PRESETS)})
    gym.make(IDS[2], config={"tuned": None, "max_step": 0.2})


@pytest.mark.parametrize("config", [{}, {"tuned": ["highpass_hz", "nr_floor_db"]}, {"feature_context": 0.8}])
def test_observation_size_is_the_documented_13_plus_d_plus_m_plus_1(config):
    """The class docstring's ``Box(-1, 1, (13 + d + m + 1,))``: d tuned parameters, m objectives (2 by
    default), the last reward; 13 more with ``feature_context``."""
    env = gym.make(IDS[0], config=config).unwrapped
    assert "(13 + d + m + 1,)" in type(env).__doc__ and "| then m + 1 " in type(env).__doc__
    d, m = env.action_space.shape[0], env._n_objectives
    context = 13 if config.get("feature_context") else 0
    assert env.observation_space.shape == (13 + context + d + m + 1,)


def test_render_before_reset_shows_an_empty_episode():
    """The unwrapped env (gym.make's OrderEnforcing would refuse the call) renders no step yet."""
    from feedback_env.envs.audio_enhancement import AudioEnhancementEnv

    image = AudioEnhancementEnv(render_mode="rgb_array").render()
    assert image.dtype == np.uint8 and image.ndim == 3
    assert AudioEnhancementEnv(render_mode="ansi").render() == "clip -: no step yet"
    assert AudioEnhancementEnv().render() is None


def test_a_chunk_the_reward_cannot_score_pays_nothing_and_is_not_judged(odd_set):
    """In a pause the clean reference is silent: SI-SDR is -100 processed or not, and LSD alone would pay for any
    suppression (a policy would learn to over-suppress pauses). The env pays 0 there and says so in
    ``info["scored"]``; the SafetyWrapper neither learns from nor judges those steps."""
    from feedback_env.wrappers import SafetyWrapper

    env = SafetyWrapper(gym.make("feedback_env/AudioEnhancement-v0", config={"scenarios": str(odd_set)}), min_samples=2,
                        confirm_steps=1)  # fmt: skip
    env.reset(seed=0, options={"clip": "pause"})
    steps = [env.step(np.full(19, 0.8, dtype=np.float32)) for _ in range(4)]  # strong noise reduction
    assert [info["scored"] for *_, info in steps] == [True, True, False, False]
    assert [r for _, r, *_ in steps[2:]] == [0.0, 0.0] and steps[0][1] != 0.0
    assert all(info["cost"] == 0.0 and not info["rollback"] for *_, info in steps[2:])
    assert np.isfinite(steps[3][4]["metrics"]["lsd"])  # still measured
    assert len(env.detector._baseline) + len(env._pending) == 2  # only the scored steps reached the test


def test_a_reward_that_needs_a_reference_is_refused_at_reset_on_clips_without_one(odd_set):
    """One ``config["reward"]`` serves every clip; an intrusive one cannot score a clip without a clean reference.
    That surfaced as a MetricError at the first step of such a clip, minutes into a training run (clips are drawn
    at random); it is now an error at reset, naming the clips, and clips with a reference still work."""
    from feedback_env.errors import MetricError
    from feedback_env.objectives import QualityReward

    config = {"scenarios": str(odd_set), "reward": QualityReward.default()}
    with pytest.raises(MetricError, match=r"no_reference.*no clean reference"):
        gym.make("feedback_env/AudioEnhancement-v0", config=config).reset(seed=0)
    env = gym.make("feedback_env/AudioEnhancement-v0", config=config)  # (gymnasium's checker trips after a failed reset)
    env.reset(seed=0, options={"clip": "clean_in"})
    assert np.isfinite(env.step(env.action_space.sample())[1])
