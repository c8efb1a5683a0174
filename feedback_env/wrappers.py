"""Wrappers for the enhancement environments: the safety wrapper that rolls parameters back.

:class:`SafetyWrapper` keeps the last known-good parameters and a quality baseline, watches the reward
with the one-sided CUSUM test of :class:`~feedback_env.safety.DegradationDetector`, and rolls back when
quality has dropped. The monitored signal is the reward itself: it is already the improvement of the
enhanced chunk over the unprocessed one, so most of what the audio content does to the metrics (speech
against pauses, loud against quiet) cancels in it. Measured with the default parameters on the built-in
clips, its standard deviation within a clip is 0.08-0.67 (median 0.26; the hum clips the widest) while clip
means range over 0.10-1.63 (``benchmarks/safety.py``'s ``reward_spread_builtin``): a baseline is only meaningful within one stream, so by default
it starts afresh with each episode (each clip).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from feedback_env.envs.actions import AbsoluteAction, DeltaAction
from feedback_env.safety import MIN_REWARD_SIGMA, DegradationDetector, ReferenceLevel

SAME_SETTING = 1e-6
"""Unit-cube widths within which two settings count as the same (above float64 round-trip error)."""

TREND_WINDOW = 16
"""Latest rewards (steps) that, besides a setting's own, must not be below the reference for it to become known-good:
an agent walking into damage by steps each too small to tell from noise is caught by their mean."""


class SafetyWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """
    Rolls the parameters back to the last known-good ones when the reward drops below its baseline.

    Each step's ``(reward, params)`` waits ``confirm_steps`` steps; if no alarm came meanwhile, the reward
    joins the detector's baseline (the latest ``baseline_size``) and the parameters become the known-good
    ones, provided the test could alarm by then (``min_samples`` confirmed rewards): a setting confirmed
    during the warm-up was never judged, so until then the known-good parameters stay those the episode
    (or the wrapper) started with; a rollback needs episodes longer than ``min_samples + confirm_steps``
    chunks. So a setting is trusted only after it has run ``confirm_steps`` chunks without a detected drop,
    and rewards of a degradation caught within that delay never enter the baseline. Nor does a setting
    become known-good when its reward with the ``confirm_steps`` after it, or the latest ``TREND_WINDOW``
    (16) rewards, are below the reference level (one-sided z-tests at 5 %; an equally good setting is
    refused 7-9 % of the time, independent rewards). The reference
    (:class:`~feedback_env.safety.ReferenceLevel`) is the episode's first ``baseline_size`` confirmed
    rewards and then only rises, so an agent walking into damage by steps too small to tell from noise is
    rolled back to a setting near the reference, not to one as damaged as its own: at 0.02 sd per step the
    known-good setting ends 1.0 sd below the start instead of 4.1 sd (medians of
    ``test_a_rollback_undoes_a_gradual_degradation_caused_by_the_agent``). Rewards produced by
    the known-good setting itself (the same tuned parameters, within ``1e-6`` unit-cube widths) join the
    baseline whether or not an alarm came: such an alarm is false by construction (the rollback changes
    nothing), and dropping those rewards would drop exactly the low ones, so that the baseline's mean
    would drift up and its spread shrink, and the test would alarm ever more often (2-3x the stated rate
    on i.i.d. rewards). The test may alarm once ``min_samples`` rewards are confirmed; while the setting
    stays put on a stationary stream it alarms at ``false_alarm_rate`` per step (CUSUM threshold from
    Siegmund's approximation, corrected for the baseline's estimation error: :mod:`feedback_env.safety`).
    While the agent moves every step (in training) it alarms more often: the pending rewards of other
    settings, dropped on an alarm, are the low ones that raised the CUSUM, so the baseline is censored
    upwards: with i.i.d. N(0, 1) rewards and a new random setting each step, 1.8x the stated 0.05
    (``test_false_rollbacks_while_the_agent_moves_every_step_stay_under_twice_the_stated_rate``) and 1.5x
    a stated 0.01. Keeping them would let a caught degradation into the baseline, and whether an alarm was
    false cannot be told from those rewards, so this stands.
    An alarm after the setting changed is blamed on the change, and its rewards are left out.

    On an alarm: with the delta env the known-good parameters are restored at once (the observation
    returned shows them) and held for the next ``hold_steps`` chunks (the agent's changes are replaced by
    none); with the absolute env the action that sets the known-good parameters (mapped back through the
    env's action centre and radius) replaces the agent's for the next ``hold_steps`` chunks. The test then
    restarts (the baseline is kept) and the pending, unconfirmed steps of other settings are dropped. Whenever the action that ran is not the
    agent's (substituted, or limited by ``max_change``), ``info["applied_action"]`` holds it, so that a
    learner can credit the reward to it (:class:`agents.prioritized.PrioritizedTD3` does).

    When the input gets harder (noise rising mid-clip), every setting's reward falls, the known-good one's too, and
    the reference would refuse every later setting. So the known-good setting's own rewards judge the input: its
    first ``hold_steps`` rewards after each rollback (the held chunks), pooled over the rollbacks since the last
    promotion, are tested against the reference less ``min_shift`` sds (one-sided z-test at 5 %; the margin because a known-good setting may itself sit
    about 1 sd below the reference). If they are below it, the input got harder: the baseline and the reference restart
    as at the episode's start (no rollback before ``min_samples`` confirmed rewards), the known-good parameters are
    kept, and ``input_changes`` counts it. Input 3 sd harder from step 200 of 400, an agent making small random moves
    (absolute env): a setting that ran after the change becomes known-good 9 steps after it (before: never), and the
    mean ``cost`` over the last 100 steps is 0.42 sd (before: 3.0; 0.40 is its level on i.i.d. rewards), medians of
    ``test_after_the_input_gets_harder_new_settings_become_known_good_again``; the figures above are unchanged. A drop
    under about ``min_shift`` sds is not told from a slightly damaged known-good setting. The delta env's hold is
    what lets an agent that moves every step show it: with changes of up to 0.05 each step, a setting from after the
    change is known-good 9.5 steps after it, with 4.5 rollbacks and a cost of 0.42 sd (medians of
    ``test_with_the_delta_env_an_agent_that_moves_every_step_still_shows_a_harder_input``); without the hold the
    known-good setting never ran after a restore, and the wrapper rolled back every 1.4 steps to the episode's end
    (cost 3.0 sd). The hold also brings the delta env's false rollbacks while the agent moves every step to the
    absolute env's: 1.85x a stated 0.05 on i.i.d. rewards, 2.68x without the hold
    (``test_false_rollbacks_while_the_agent_moves_every_step_stay_under_twice_the_stated_rate``).

    ``info`` gains ``rollback`` (bool: rolled back at this step), ``rollbacks`` (count since the
    wrapper was made), ``cost`` (quality lost against the reference level: ``max(0, reference mean -
    reward)``, in reward units, 0 before the test is ready; safety-gymnasium's convention; the reference
    follows quality down only when the input got harder, so ``cost`` counts a gradual loss in full: at 0.02 sd
    per step its mean over the last 100 steps is within 0.1 sd of the true loss, where the former
    baseline-relative cost understated it by 2.7 sd), ``substituted`` (the known-good
    action ran instead of the agent's) and, on a rollback, ``safety`` (why, in words).

    :param env: an ``AudioEnhancement-v0`` or ``AudioEnhancementDelta-v0`` env (possibly wrapped).
    :param false_alarm_rate: rollbacks per step on a stationary stream of independent rewards while the
        setting stays put (autocorrelated rewards raise it several-fold: :mod:`feedback_env.safety`).
    :param min_shift: smallest drop to catch quickly, in baseline standard deviations.
    :param min_samples: confirmed rewards needed before the test may alarm.
    :param confirm_steps: chunks a setting must run without an alarm to become known-good.
    :param hold_steps: chunks the known-good setting is held after a rollback (absolute env: its action substituted;
        delta env: no change instead of the agent's); its rewards then judge whether the input got harder.
    :param max_change: optional limit on the change of each tuned parameter per step, in unit-cube
        widths (the cube is 2 wide); None for no limit. With the absolute env the position the action
        sets is clipped; ValueError if no action within the env's action radius keeps to the limit.
    :param reset_on_episode: start the baseline, the reference and the known-good parameters afresh at each reset.
    :param baseline_size: how many confirmed rewards form the baseline.
    :param min_sigma: floor of the baseline's spread, reward units; drops under ``min_shift / 2`` times it never
        roll back (default 0.025: half the feedback loop's smallest trend, 0.25 dB of SI-SDR in the default reward).
    """

    def __init__(
        self,
        env: gym.Env,
        false_alarm_rate: float = 0.01,
        min_shift: float = 1.5,
        min_samples: int = 6,
        confirm_steps: int = 2,
        hold_steps: int = 2,
        max_change: float | None = None,
        reset_on_episode: bool = True,
        baseline_size: int = 64,
        min_sigma: float = MIN_REWARD_SIGMA,
    ):
        gym.utils.RecordConstructorArgs.__init__(  # so that env.spec re-makes it (gym.make(env.spec), check_env)
            self, false_alarm_rate=false_alarm_rate, min_shift=min_shift, min_samples=min_samples,
            confirm_steps=confirm_steps, hold_steps=hold_steps, max_change=max_change,
            reset_on_episode=reset_on_episode, baseline_size=baseline_size, min_sigma=min_sigma,
        )  # fmt: skip
        gym.Wrapper.__init__(self, env)
        base = env.unwrapped
        if not hasattr(base, "action_type") or not hasattr(base, "restore_params"):
            raise TypeError(f"SafetyWrapper needs an AudioEnhancement env, got {type(base).__name__}")
        if not isinstance(base.action_type, AbsoluteAction):  # clipping, limiting and restoring act on positions
            raise TypeError(
                f"SafetyWrapper needs an env whose actions set continuous parameters (AudioEnhancement-v0 or "
                f"AudioEnhancementDelta-v0), got {type(base.action_type).__name__} actions (StrategySelection-v0 "
                f"picks presets)"
            )
        if confirm_steps < 0 or hold_steps < 1:
            raise ValueError(f"need confirm_steps >= 0 and hold_steps >= 1, got {confirm_steps}, {hold_steps}")
        if max_change is not None and not 0.0 < max_change <= 2.0:
            raise ValueError(f"max_change must be in (0, 2] unit-cube widths or None, got {max_change}")
        self.detector = DegradationDetector(
            false_alarm_rate=false_alarm_rate, min_shift=min_shift, min_samples=min_samples, baseline_size=baseline_size,
            min_sigma=min_sigma,
        )
        self.confirm_steps, self.hold_steps, self.max_change = confirm_steps, hold_steps, max_change
        self.reset_on_episode = reset_on_episode
        self.is_delta = isinstance(base.action_type, DeltaAction)
        self.tuned = base.action_type.tuned
        self.rollbacks = 0
        self.reference = ReferenceLevel(baseline_size, alpha=0.05, min_sigma=min_sigma)
        self.known_good: dict[str, float] | None = None
        self._pending: deque[tuple[float, dict[str, float]]] = deque()
        self._hold = 0
        self.input_changes = 0  # restarts of the baseline and the reference: the known-good setting fell short
        self._known_good_runs: deque[float] = deque(maxlen=baseline_size)  # its rewards after rollbacks since the last promotion
        self._collecting = 0  # of them still to collect after the last rollback

    def _unit(self, params: dict[str, float]) -> np.ndarray:
        """Unit-cube position (float64, shape (d,)) of the tuned parameters in ``params``."""
        return self.tuned.to_unit({n: params[n] for n in self.tuned.names}, dtype=np.float64)

    def _is_known_good(self, params: dict[str, float]) -> bool:
        """True when ``params`` is the known-good setting (tuned parameters within ``SAME_SETTING`` widths)."""
        return bool(np.max(np.abs(self._unit(params) - self._unit(self.known_good))) <= SAME_SETTING)

    def _reaches_reference(self, confirmed_reward: float) -> bool:
        """False when the confirmed reward with the pending ones after it, or the latest ``TREND_WINDOW`` rewards, are
        below the reference (one-sided z-tests at 5 %): the setting is not known-good, quality may be drifting down."""
        later = [r for r, _ in self._pending]
        latest = (self.detector.baseline + later)[-TREND_WINDOW:]  # the baseline ends with the confirmed reward
        return not self.reference.below([confirmed_reward, *later]) and not self.reference.below(latest)

    def _judge_the_input(self, reward: float, params: dict[str, float]) -> bool:
        """Collect the known-good setting's first ``hold_steps`` rewards after a rollback; True when, with those of
        earlier rollbacks, they are below the reference less ``min_shift`` sds: the input got harder, and the baseline
        and the reference restart (as at the episode's start; the known-good parameters are kept)."""
        if self._collecting == 0 or not self._is_known_good(params):
            return False
        self._known_good_runs.append(reward)
        self._collecting -= 1
        if self._collecting > 0 or not self.reference.below(self._known_good_runs, margin=self.detector.min_shift):
            return False
        self.input_changes += 1
        self.detector.reset(keep_baseline=False)
        self.reference.clear()
        self._known_good_runs.clear()
        return True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if self.reset_on_episode or self.known_good is None:
            self.detector.reset(keep_baseline=False)
            self.reference.clear()
            self.known_good = dict(self.env.unwrapped.params)
        self._pending.clear()
        self._hold = 0
        self._known_good_runs.clear()
        self._collecting = 0
        return obs, {**info, "rollback": False, "rollbacks": self.rollbacks, "cost": 0.0, "substituted": False}

    def _limit(self, action: np.ndarray) -> np.ndarray:
        """Clip ``action`` so that no tuned parameter moves more than ``max_change`` this step.

        Absolute env: the clip is on the position the action sets (the env's own map, with its action
        centre and radius), and the clipped position is mapped back to an action.
        """
        action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        if self.max_change is None:
            return action
        action_type = self.env.unwrapped.action_type
        if self.is_delta:
            bound = self.max_change / action_type.max_step
            return np.clip(action, -bound, bound).astype(np.float32)
        current, wanted = self._unit(self.env.unwrapped.params), action_type.position(action)
        position = np.clip(wanted, current - self.max_change, current + self.max_change)
        if np.array_equal(position, wanted):
            return action  # within the limit: the agent's own action, bit for bit
        try:
            return action_type.action_for(position).astype(np.float32)
        except ValueError as err:
            raise ValueError(f"no action keeps every tuned parameter within max_change={self.max_change}: {err}") from err

    def step(self, action):
        proposed = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        substituted = self._hold > 0
        if substituted:  # restoring first makes any action low-pass exact
            self._hold -= 1
            self.env.unwrapped.restore_params(self.known_good)
            if self.is_delta:
                action = np.zeros_like(proposed)  # no change: the known-good setting runs
            else:
                try:  # the action that sets the known-good position through the env's own map (centre, radius)
                    action = self.env.unwrapped.action_type.action_for(self._unit(self.known_good))
                except ValueError as err:
                    raise ValueError(f"no action restores the known-good parameters: {err}") from err
        else:
            action = self._limit(proposed)
        obs, reward, terminated, truncated, info = self.env.step(action)
        rollback, cost = False, 0.0
        extra: dict[str, Any] = {}
        if info.get("scored", True):  # a chunk the reward cannot score (a pause) is neither judged nor learnt from
            detector = self.detector
            judged = detector.ready  # this step's test could alarm
            cost = max(0.0, self.reference.mean - reward) if judged else 0.0
            if self._judge_the_input(float(reward), info["params"]):
                judged = False  # a fresh baseline: no alarm, nor known-good setting, until it has min_samples rewards
            rollback = detector.update(reward)
            if rollback:
                self.rollbacks += 1
                extra["safety"] = f"rolled back to the known-good parameters: {detector.explain()}"
                detector.reset(keep_baseline=True)
                # rewards of the known-good setting stay (a value-independent rule, so the baseline is not censored)
                ran = [*self._pending, (float(reward), dict(info["params"]))]
                self._pending = deque(item for item in ran if self._is_known_good(item[1]))
                if self.is_delta:
                    obs = self.env.unwrapped.restore_params(self.known_good)
                self._hold = self.hold_steps
                if self._collecting == 0:
                    self._collecting = self.hold_steps
            else:
                self._pending.append((float(reward), dict(info["params"])))
                while len(self._pending) > self.confirm_steps:
                    confirmed_reward, confirmed_params = self._pending.popleft()
                    detector.add_baseline(confirmed_reward)
                    self.reference.add(confirmed_reward, detector.baseline)
                    if judged and self._reaches_reference(confirmed_reward):  # confirmed before the test was ready: never judged
                        self.known_good = confirmed_params  # it reaches the reference: the input is judged afresh
                        self._known_good_runs.clear()
                        self._collecting = 0
                if detector.ready and not self.reference.samples:  # the first baseline is the first reference
                    self.reference.start(detector.baseline)
        if not np.array_equal(action, proposed):
            extra["applied_action"] = np.asarray(action, dtype=np.float32)
        info = {**info, **extra, "rollback": rollback, "rollbacks": self.rollbacks, "cost": float(cost), "substituted": substituted}
        return obs, reward, terminated, truncated, info
