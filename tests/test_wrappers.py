import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from scipy.stats import poisson
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import feedback_env  # noqa: F401  (registers the ids)
from feedback_env.pipeline import PARAMETER_SPACE
from feedback_env.wrappers import SafetyWrapper

ABSOLUTE, DELTA = "feedback_env/AudioEnhancement-v0", "feedback_env/AudioEnhancementDelta-v0"
DEFAULT = PARAMETER_SPACE.to_unit(PARAMETER_SPACE.defaults())
DAMAGE = {"highpass_hz": 300.0, "nr_floor_db": -40.0, "nr_oversubtraction": 8.0}


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    from scenarios.streams import write_stationary_set

    return str(write_stationary_set(tmp_path_factory.mktemp("streams"), ("white", "pink", "fan"), duration_s=40.0))


def wrapped(env_id, streams, **kwargs):
    return SafetyWrapper(gym.make(env_id, config={"scenarios": streams, "split": None}), **kwargs)


def test_absolute_env_substitutes_known_good_action_within_10_steps_of_a_degradation(streams):
    env = wrapped(ABSOLUTE, streams)
    env.reset(seed=0, options={"clip": "pink_stream_1"})
    bad = PARAMETER_SPACE.to_unit({**PARAMETER_SPACE.defaults(), **DAMAGE})
    for _ in range(20):
        *_, info = env.step(DEFAULT)
        assert not info["rollback"] and info["cost"] >= 0.0
    known_good = dict(env.known_good)
    assert known_good == pytest.approx(PARAMETER_SPACE.defaults())
    for step in range(1, 11):
        _, reward, _, _, info = env.step(bad)
        if info["rollback"]:
            break
    assert info["rollback"] and info["rollbacks"] == 1, f"no rollback within 10 steps of the degradation (last: {info})"
    assert info["cost"] > 0.0 and "CUSUM" in info["safety"]
    _, recovered, _, _, info = env.step(bad)  # the agent insists; the wrapper holds the known-good setting
    assert info["substituted"] and info["params"] == pytest.approx(known_good)
    np.testing.assert_allclose(info["applied_action"], PARAMETER_SPACE.to_unit(known_good), atol=1e-6)
    assert recovered > reward


def test_delta_env_restores_known_good_parameters_when_the_agent_drifts_into_damage(streams):
    env = wrapped(DELTA, streams)
    obs, _ = env.reset(seed=0, options={"clip": "white_stream_0"})
    zero = np.zeros(PARAMETER_SPACE.dim, np.float32)
    for _ in range(20):
        env.step(zero)
    push = zero.copy()
    push[PARAMETER_SPACE.names.index("highpass_hz")] = 1.0  # +0.2 unit per step: 70 Hz -> 500 Hz in 5 steps
    trace = []
    for _ in range(10):
        obs, reward, _, _, info = env.step(push)
        trace.append((reward, info["params"]["highpass_hz"]))
        if info["rollback"]:
            break
    assert info["rollback"], f"no rollback within 10 steps of the drift: {trace}"
    restored = env.unwrapped.params["highpass_hz"]
    assert restored < trace[-1][1]
    assert restored == pytest.approx(env.known_good["highpass_hz"])
    unit = PARAMETER_SPACE.to_unit(env.unwrapped.params)
    np.testing.assert_allclose(obs[13 : 13 + PARAMETER_SPACE.dim], unit, atol=1e-6)  # the observation shows them
    for _ in range(env.hold_steps):  # the agent insists; the wrapper holds the known-good setting
        _, recovered, _, _, info = env.step(push)
        assert info["substituted"] and info["params"]["highpass_hz"] == pytest.approx(restored)
        np.testing.assert_array_equal(info["applied_action"], zero)
        assert recovered > trace[-1][0]
    *_, info = env.step(push)  # then the agent's changes run again
    assert not info["substituted"] and info["params"]["highpass_hz"] > restored


def episode_alarms(env, action, **reset) -> tuple[int, int]:
    """One episode of ``action``: (steps at which the test could alarm, rollbacks)."""
    env.reset(**reset)
    monitored = alarms = 0
    truncated = False
    while not truncated:
        ready = env.detector.ready
        *_, truncated, info = env.step(action)
        monitored += ready
        alarms += info["rollback"]
    return monitored, alarms


def test_false_rollbacks_on_stationary_streams_within_the_stated_rate(streams):
    rate = 0.05  # high enough that a few hundred steps can tell it from twice that rate
    counts = [episode_alarms(wrapped(ABSOLUTE, streams, false_alarm_rate=rate), DEFAULT, seed=0, options={"clip": clip})
              for clip in ("white_stream_0", "pink_stream_1", "fan_stream_2")]  # fmt: skip
    monitored, alarms = np.sum(counts, axis=0)
    assert monitored >= 200
    # one-sided: at most the 99th percentile of the stated rate's count (2x the rate fails this)
    assert alarms <= poisson.ppf(0.99, rate * monitored), f"{alarms} false rollbacks in {monitored} steps at a stated {rate}"


def test_max_change_limits_each_step(streams):
    for env_id, action in ((ABSOLUTE, np.ones(PARAMETER_SPACE.dim, np.float32)), (DELTA, np.ones(PARAMETER_SPACE.dim, np.float32))):
        env = wrapped(env_id, streams, max_change=0.05)
        env.reset(seed=0, options={"clip": "white_stream_0"})
        before = PARAMETER_SPACE.to_unit(env.unwrapped.params)
        *_, info = env.step(action)
        moved = PARAMETER_SPACE.to_unit(info["params"]) - before
        assert np.all(np.abs(moved) <= 0.05 + 1e-5) and np.any(moved > 0.04)


def test_rejects_bad_settings_and_other_envs():
    with pytest.raises(ValueError, match="max_change"):
        SafetyWrapper(gym.make(ABSOLUTE), max_change=3.0)
    with pytest.raises(TypeError, match="AudioEnhancement env"):
        SafetyWrapper(gym.make("Pendulum-v1"))
    with pytest.raises(TypeError, match="continuous parameters.*StrategySelection"):  # presets: no position to clip
        SafetyWrapper(gym.make("feedback_env/StrategySelection-v0"))


def _make_safe_env():
    return SafetyWrapper(gym.make(f"feedback_env:{DELTA}"))


def test_info_keys_under_vec_envs():
    for vec_cls in (DummyVecEnv, SubprocVecEnv):
        venv = vec_cls([_make_safe_env])
        venv.seed(0)
        venv.reset()
        for _ in range(3):
            _, rewards, _, infos = venv.step(np.stack([venv.action_space.sample()]))
            assert {"rollback", "rollbacks", "cost", "substituted"} <= set(infos[0]) and np.isfinite(rewards).all()
        venv.close()


class _IidRewardEnv(gym.Env):
    """Stub AudioEnhancement env: rewards i.i.d. N(0, 1) whatever the parameters (a stationary stream)."""

    def __init__(self, length: int, rng: np.random.Generator):
        from feedback_env.envs.actions import AbsoluteAction

        self.action_type = AbsoluteAction(PARAMETER_SPACE, ["highpass_hz"])
        self.action_space = self.action_type.action_space
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.length, self.rng = length, rng

    def reset(self, *, seed=None, options=None):
        self.t, self.params = 0, PARAMETER_SPACE.defaults()
        return np.zeros(1, np.float32), {"params": dict(self.params)}

    def restore_params(self, params):
        self.params = {**self.params, **params}
        return np.zeros(1, np.float32)

    def step(self, action):
        self.params = self.action_type.apply(action, self.params)
        self.t += 1
        return np.zeros(1, np.float32), float(self.rng.normal()), False, self.t >= self.length, {"params": dict(self.params)}


@pytest.mark.parametrize("rate", [0.02, 0.05])
def test_false_rollbacks_on_iid_rewards_within_the_stated_rate(rate):
    # 100 episodes of 200 steps under one setting: the baseline must not be censored by the alarms
    # (dropping the alarmed rewards made it 2.2x the stated rate at 0.02 and 2.5x at 0.05; now 1.05x, 1.00x)
    env = SafetyWrapper(_IidRewardEnv(200, np.random.default_rng(0)), false_alarm_rate=rate)
    monitored, alarms = np.sum([episode_alarms(env, np.zeros(1, np.float32)) for _ in range(100)], axis=0)
    assert monitored >= 15_000
    assert alarms <= poisson.ppf(0.99, rate * monitored), f"{alarms} false rollbacks in {monitored} steps at a stated {rate}"


RESIDUAL_TUNED = list(DAMAGE)  # highpass_hz, nr_floor_db, nr_oversubtraction


def residual_position(params):
    """Unit-cube position (float64) of the residual env's tuned parameters in ``params``."""
    return PARAMETER_SPACE.subspace(RESIDUAL_TUNED).to_unit({n: params[n] for n in RESIDUAL_TUNED}, dtype=np.float64)


def residual(streams, **kwargs):
    """The absolute env as ``train.py --residual 1.5`` builds it: action = offset from the defaults, radius 1.5."""
    center = {n: PARAMETER_SPACE[n].default for n in RESIDUAL_TUNED}
    config = {"scenarios": streams, "split": None, "tuned": RESIDUAL_TUNED, "fixed": center, "action_center": center, "action_radius": 1.5}
    return SafetyWrapper(gym.make(ABSOLUTE, config=config), **kwargs)


def test_residual_action_rollback_restores_the_known_good_parameters(streams):
    env = residual(streams)
    env.reset(seed=0, options={"clip": "pink_stream_1"})
    space, action_type = PARAMETER_SPACE.subspace(RESIDUAL_TUNED), env.unwrapped.action_type
    good = np.array([0.1, 0.1, -0.1], np.float32)  # off the centre, so that the substitute is not the zero action
    for _ in range(20):
        *_, info = env.step(good)
        assert not info["rollback"]
    known_good = dict(env.known_good)
    bad = np.clip((space.to_unit(DAMAGE) - action_type.center) / 1.5, -1.0, 1.0).astype(np.float32)
    for _ in range(10):
        *_, info = env.step(bad)
        if info["rollback"]:
            break
    assert info["rollback"], f"no rollback within 10 steps of the degradation (last: {info})"
    *_, info = env.step(bad)  # the substitute runs the known-good parameters themselves
    assert info["substituted"] and info["params"] == pytest.approx(known_good, rel=1e-6)
    ran = action_type.center + 1.5 * info["applied_action"].astype(np.float64)  # the position of the recorded action
    np.testing.assert_allclose(ran, residual_position(known_good), atol=1e-6)


def test_residual_action_max_change_limits_each_step(streams):
    env = residual(streams, max_change=0.05)
    env.reset(seed=0, options={"clip": "white_stream_0"})
    action_type = env.unwrapped.action_type
    zero, ones = np.zeros(3, np.float32), np.ones(3, np.float32)
    for action, moves in ((zero, False), (ones, True), (ones, True), (-ones, True), (zero, True)):
        before = residual_position(env.unwrapped.params)
        *_, info = env.step(action)
        after = residual_position(info["params"])
        assert np.all(np.abs(after - before) <= 0.05 + 1e-5), f"moved {after - before} with max_change 0.05"
        assert np.any(np.abs(after - before) > 0.04) == moves, f"moved {after - before} for action {action}"
        recorded = info.get("applied_action", action).astype(np.float64)
        np.testing.assert_allclose(np.clip(action_type.center + 1.5 * recorded, -1, 1), after, atol=1e-5)


def test_max_change_out_of_the_action_radius_fails_clearly(streams):
    # the episode starts at the defaults (70 Hz), 0.79 unit widths below what the actions reach (400 Hz +- 0.1)
    config = {"scenarios": streams, "split": None, "tuned": ["highpass_hz"], "action_center": {"highpass_hz": 400.0}, "action_radius": 0.1}
    env = SafetyWrapper(gym.make(ABSOLUTE, config=config), max_change=0.05)
    env.reset(seed=0, options={"clip": "white_stream_0"})
    with pytest.raises(ValueError, match="max_change=0.05.*highpass_hz.*out of the action's reach"):
        env.step(np.zeros(1, np.float32))


def test_a_setting_tried_before_the_test_can_alarm_never_becomes_known_good(streams):
    """During the warm-up (fewer than min_samples confirmed rewards) no alarm is possible, so a setting
    confirmed then was never judged: the known-good parameters stay those the episode started with."""
    env = wrapped(ABSOLUTE, streams)
    env.reset(seed=0, options={"clip": "pink_stream_1"})
    start = dict(env.known_good)
    bad = PARAMETER_SPACE.to_unit({**PARAMETER_SPACE.defaults(), **DAMAGE})
    for _ in range(6):  # min_samples 6: the test is not ready before 6 confirmed rewards
        env.step(bad)
    assert env.known_good == pytest.approx(start)
    for _ in range(6):
        env.step(DEFAULT)
    assert env.known_good == pytest.approx(PARAMETER_SPACE.defaults())  # judged once the test is ready


def test_the_wrapped_env_can_be_made_again_from_its_spec_and_passes_the_checker():
    """Gymnasium records a wrapper's arguments in ``env.spec`` when it is a ``RecordConstructorArgs``:
    ``gym.make(env.spec)`` and Gymnasium's ``check_env`` (which re-makes the env from its spec) failed on it."""
    from gymnasium.utils.env_checker import check_env

    env = SafetyWrapper(gym.make(DELTA), min_samples=4, max_change=0.5)
    again = gym.make(env.spec)
    assert isinstance(again, SafetyWrapper) and again.max_change == 0.5 and again.detector.min_samples == 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns that any wrapped env is not the raw one
        check_env(env, skip_render_check=True)


@pytest.mark.parametrize("rate", [1e-5, 1e-7])
def test_a_small_false_alarm_rate_judges_steps_instead_of_raising(rate):
    from feedback_env.safety import cusum_threshold

    # review T#1: below 4e-5 (at min_samples 6) the threshold search's bracket [0, 500] held no root, and
    # every judged step raised scipy's "f(a) and f(b) must have different signs"
    env = SafetyWrapper(_IidRewardEnv(40, np.random.default_rng(0)), false_alarm_rate=rate)
    monitored, alarms = episode_alarms(env, np.zeros(1, np.float32))
    assert monitored >= 30 and alarms == 0
    assert math.isfinite(env.detector.threshold)
    assert cusum_threshold(rate, 0.75, env.detector.min_samples) > 500.0  # beyond the old bracket: paid in delay


def test_an_impossible_rollback_test_is_refused_when_the_wrapper_is_made():
    with pytest.raises(ValueError, match=r"false_alarm_rate=0\.6.*min_samples=6.*largest feasible"):
        SafetyWrapper(_IidRewardEnv(40, np.random.default_rng(0)), false_alarm_rate=0.6)
    with pytest.raises(ValueError, match=r"baseline_size=4.*min_samples=6"):
        SafetyWrapper(_IidRewardEnv(40, np.random.default_rng(0)), baseline_size=4)


def test_the_rollback_threshold_is_unchanged_where_the_old_search_found_it():
    """Where the former search over [0, 500] found a root its thresholds (and so the measured rates) stand."""
    from feedback_env.safety import cusum_threshold

    old = {(1e-2, 6): 5.261454688005593, (2e-2, 6): 3.4247421803752, (1e-3, 8): 13.974430831494036,
           (1e-4, 16): 14.397568066794028, (1e-3, 64): 4.0557672058335354, (1e-2, None): 2.0159969822381263}  # fmt: skip
    for (rate, n), h in old.items():
        assert cusum_threshold(rate, 0.75, n) == pytest.approx(h, rel=1e-9), (rate, n)


class _ScriptedRewardEnv(_IidRewardEnv):
    """Stub AudioEnhancement env whose rewards are given in advance (one per step)."""

    def __init__(self, rewards):
        super().__init__(len(rewards), np.random.default_rng(0))
        self.rewards = list(rewards)

    def step(self, action):
        obs, _, terminated, truncated, info = super().step(action)
        return obs, float(self.rewards[self.t - 1]), terminated, truncated, info


@pytest.mark.parametrize(("drop", "rolls_back"), [(0.005, False), (0.2, True)])
def test_a_rollback_needs_a_drop_of_a_meaningful_size_in_reward_units(drop, rolls_back):
    # review T#7: with a constant baseline the spread was floored at 1e-3 reward units (0.01 dB of SI-SDR),
    # so that a 0.005 dip rolled back after 4 steps
    env = SafetyWrapper(_ScriptedRewardEnv([1.0] * 20 + [1.0 - drop] * 60))
    monitored, alarms = episode_alarms(env, np.zeros(1, np.float32))
    assert monitored >= 60 and (alarms > 0) == rolls_back, f"{alarms} rollbacks after a drop of {drop}"


class _DamagingEnv(_IidRewardEnv):
    """Stub AudioEnhancement env: reward N(0, 1) minus 1 sd per 0.01 unit-cube widths the high-pass is moved from its start."""

    def quality(self, params: dict[str, float]) -> float:
        unit = lambda p: PARAMETER_SPACE.subspace(["highpass_hz"]).to_unit({"highpass_hz": p["highpass_hz"]})[0]  # noqa: E731
        return -100.0 * abs(unit(params) - unit(PARAMETER_SPACE.defaults()))

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward + self.quality(self.params), terminated, truncated, info


def test_a_rollback_undoes_a_gradual_degradation_caused_by_the_agent():
    """Review T#2: every confirmed step became known-good and ``cost`` was measured against the latest 64 confirmed
    rewards, so that for an agent walking into damage at 0.02 sd per step the known-good setting followed it down and
    ``cost`` understated the true loss (medians of the figures below: -4.1, -4.2 and -2.7 sd; now -1.0, -1.5 and -0.0)."""
    unit = lambda p: PARAMETER_SPACE.subspace(["highpass_hz"]).to_unit({"highpass_hz": p["highpass_hz"]})  # noqa: E731
    known_good, ends, cost_errors = [], [], []
    for seed in range(20):  # 400-step episodes; from step 50 the agent walks 0.02 sd per step from where it is
        env = SafetyWrapper(_DamagingEnv(400, np.random.default_rng(seed)))
        env.reset(seed=seed)
        base, position, costs, losses = env.unwrapped, unit(PARAMETER_SPACE.defaults()), [], []
        for t in range(400):
            *_, info = env.step(base.action_type.action_for(position + (0.0002 if t >= 50 else 0.0)))
            position = unit(info["params"])
            costs.append(info["cost"])
            losses.append(-base.quality(info["params"]))  # the true quality lost since the episode began, sds
        known_good.append(base.quality(env.known_good))
        ends.append(-losses[-1])
        cost_errors.append(np.mean(costs[-100:]) - np.mean(losses[-100:]))
    figures = (f"known-good {np.median(known_good):+.2f} sd, running setting {np.median(ends):+.2f} sd at the end; the cost "
               f"over the last 100 steps minus the true loss {np.median(cost_errors):+.2f} sd (medians)")
    assert np.median(known_good) >= -1.5 and np.median(ends) >= -2.0, figures
    assert np.median(cost_errors) >= -0.5, figures


@pytest.mark.parametrize("delta", [False, True])
def test_false_rollbacks_while_the_agent_moves_every_step_stay_under_twice_the_stated_rate(delta):
    """Review T#5: with a new setting each step (as in training) the pending rewards of other settings, dropped on an
    alarm, are the low ones, so the baseline is censored upwards: 1.8x the stated 0.05 in the absolute env, 1.85x in
    the delta env (2.68x there before it held the known-good setting after a restore; the docstring says so)."""
    rate, actions = 0.05, np.random.default_rng(1)
    monitored = alarms = 0
    for episode in range(30):
        if delta:  # a new stream per episode, as measured for the docstring
            env = SafetyWrapper(_HarderInputEnv(300, np.random.default_rng(episode), drop=0.0, delta=True), false_alarm_rate=rate)
        elif episode == 0:
            env = SafetyWrapper(_IidRewardEnv(300, np.random.default_rng(0)), false_alarm_rate=rate)
        env.reset()
        for _ in range(300):
            ready = env.detector.ready
            *_, info = env.step(actions.uniform(-0.05, 0.05, 1).astype(np.float32) if delta else
                                actions.uniform(-0.5, 0.5, 1).astype(np.float32))  # fmt: skip
            monitored, alarms = monitored + ready, alarms + info["rollback"]
    assert alarms <= poisson.ppf(0.99, 2 * rate * monitored), f"{alarms} false rollbacks in {monitored} steps ({alarms / monitored / rate:.2f}x)"
    expected = 1.85 if delta else 1.8
    assert alarms / monitored / rate == pytest.approx(expected, abs=0.15), alarms / monitored / rate  # as the docstring states


class _HarderInputEnv(_IidRewardEnv):
    """Stub env: rewards i.i.d. N(0, 1) whatever the parameters, minus ``drop`` from step ``at`` on (the input got harder:
    every setting's reward falls alike); ``delta`` gives it delta actions."""

    def __init__(self, length: int, rng: np.random.Generator, drop: float = 3.0, at: int = 200, delta: bool = False):
        super().__init__(length, rng)
        if delta:
            from feedback_env.envs.actions import DeltaAction

            self.action_type = DeltaAction(PARAMETER_SPACE, ["highpass_hz"])
        self.drop, self.at = drop, at

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward - (self.drop if self.t > self.at else 0.0), terminated, truncated, info


def harder_input_episodes(delta: bool, move, episodes: int = 20):
    """400-step episodes whose input gets 3 sd harder after step 200, ``move(action_type, rng)`` giving the agent's action.
    Per episode: steps after the change until a setting that ran after it became known-good (400 if none did), rollbacks after the
    change, mean ``cost`` over the last 100 steps."""
    delays, rollbacks, costs = [], [], []
    for seed in range(episodes):
        env = SafetyWrapper(_HarderInputEnv(400, np.random.default_rng(seed), delta=delta))
        env.reset(seed=seed)
        agent, delay, rolled, cost = np.random.default_rng(1000 + seed), 400, 0, []
        for t in range(400):
            before = env.known_good
            *_, info = env.step(move(env.unwrapped.action_type, agent))
            cost.append(info["cost"])
            rolled += t >= 200 and info["rollback"]
            if delay == 400 and t >= 200 + env.confirm_steps and env.known_good != before:  # its reward came after the change
                delay = t - 200
        delays.append(delay)
        rollbacks.append(rolled)
        costs.append(np.mean(cost[-100:]))
    return np.array(delays), np.array(rollbacks), np.array(costs)


def test_after_the_input_gets_harder_new_settings_become_known_good_again():
    """An input 3 sd harder from step 200 (every setting's reward falls) made every later setting fall short of the
    reference, so none became known-good again within the episode and ``cost`` read the whole drop as quality lost
    (an agent making small random moves, absolute env: never in 20 of 20 episodes, cost 3.0 sd over the last 100
    steps). The known-good setting's own rewards after a rollback now tell the input change and the reference restarts:
    9 steps, 0.42 sd (0.40 on i.i.d. rewards)."""
    start = PARAMETER_SPACE.subspace(["highpass_hz"]).to_unit({"highpass_hz": PARAMETER_SPACE.defaults()["highpass_hz"]})
    move = lambda actions, rng: actions.action_for(start + rng.uniform(-0.01, 0.01, 1)).astype(np.float32)  # noqa: E731
    delays, rollbacks, costs = harder_input_episodes(False, move)
    figures = (f"a setting from after the change known-good after {np.median(delays):.0f} steps (never in {np.sum(delays == 400)}"
               f" of 20), {np.median(rollbacks):.0f} rollbacks after it, cost over the last 100 steps {np.median(costs):.2f} sd "
               f"(0.40 with i.i.d. N(0, 1) rewards) (medians)")
    assert np.sum(delays == 400) == 0 and np.median(delays) <= 30, figures
    assert np.median(costs) <= 0.6, figures


def test_after_the_input_gets_harder_the_cost_of_the_known_good_setting_returns_to_its_level():
    """The agent keeps the known-good setting (delta env, no change): after the input gets 3 sd harder its cost
    over the last 100 steps was 3.0 sd, all of it the input's; now 0.41 sd, its level on i.i.d. rewards (0.40)."""
    delays, rollbacks, costs = harder_input_episodes(True, lambda actions, rng: np.zeros(1, np.float32))
    assert np.median(costs) <= 0.6, f"cost over the last 100 steps {np.median(costs):.2f} sd, {np.median(rollbacks):.0f} rollbacks"


def test_with_the_delta_env_an_agent_that_moves_every_step_still_shows_a_harder_input():
    """After a restore the delta env holds the known-good setting for ``hold_steps`` chunks (the agent's changes are
    ignored, as the absolute env substitutes its action), so its own rewards tell a harder input even from an agent
    that moves every step. Without the hold it never ran after a restore: the change was never told, and the wrapper
    rolled back every 1.4 steps on average to the episode's end (144 of 200 steps, cost 3.0 sd)."""
    move = lambda actions, rng: rng.uniform(-0.05, 0.05, 1).astype(np.float32)  # noqa: E731
    delays, rollbacks, costs = harder_input_episodes(True, move, episodes=10)
    figures = (f"a setting from after the change known-good after {np.median(delays):.0f} steps (never in {np.sum(delays == 400)}"
               f" of 10), {np.median(rollbacks):.0f} rollbacks after it, cost over the last 100 steps {np.median(costs):.2f} sd (medians)")
    assert np.sum(delays == 400) == 0 and np.median(delays) <= 30, figures
    assert np.median(rollbacks) <= 20 and np.median(costs) <= 0.6, figures
