"""The ``bandit`` update strategy of the feedback loop: each proposal is one preset, chosen by a bandit.

Registered as ``bandit`` in :mod:`feedback_env.feedback_loop.strategies`: ``propose(loop)`` returns a
:class:`~feedback_env.feedback_loop.strategies.Proposal` (``estimate`` holds the arm and the policy's
belief about it); ``observe(loop, record)`` reads ``record.reward``, ``record.params`` and
``record.intrusive`` (True when absent). From the loop it uses ``loop.space`` (the parameter space) and
``loop.observation()`` (the observation layout shared with the envs; only for contextual policies).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from bandits.adversarial import EXP3
from bandits.contextual import LinUCB
from bandits.nonstationary import DiscountedUCB, SlidingWindowUCB
from bandits.policy import Policy
from bandits.rewards import RewardAdapter
from bandits.runner import ObservationContext
from bandits.stochastic import UCB1, EpsilonGreedy, GaussianThompsonSampling, ThompsonSampling
from feedback_env.feedback_loop.strategies import Proposal
from feedback_env.presets import PRESETS, preset_params

#: Policies by name, with the settings used on the feedback loop: ``(n_arms, context_dim, seed) -> Policy``.
POLICY_NAMES: dict[str, Callable[[int, int, int | None], Policy]] = {
    "linucb": lambda k, d, s: LinUCB(k, d, alpha=1.0, seed=s),
    "ucb1": lambda k, d, s: UCB1(k, seed=s),
    "thompson": lambda k, d, s: ThompsonSampling(k, seed=s),
    "gaussian_thompson": lambda k, d, s: GaussianThompsonSampling(k, sigma=0.5, seed=s),
    "epsilon_greedy": lambda k, d, s: EpsilonGreedy(k, 0.1, seed=s),
    "discounted_ucb": lambda k, d, s: DiscountedUCB(k, gamma=0.99, seed=s),
    "sliding_window_ucb": lambda k, d, s: SlidingWindowUCB(k, window=200, seed=s),
    "exp3": lambda k, d, s: EXP3(k, horizon=1_000, seed=s),
}


def _close(a: float, b: float) -> bool:
    """Equal up to the rounding of a unit-cube round trip (float64)."""
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


class BanditStrategy:
    """Strategy selection for the feedback loop: the arms are named presets, each cut to the loop's tuned parameters
    (``loop.space``; with the default tuned set, a preset's compressor, leveller and limiter settings do not run,
    and the explanation names those it leaves out).

    :param policy: a bandit over ``len(presets)`` arms, or its name in :data:`POLICY_NAMES`; default
        :class:`LinUCB` (alpha 1) on :class:`ObservationContext` (the measured winner on
        ``StrategySelection-v0``).
    :param presets: preset names of :mod:`feedback_env.presets`; default all six, in that order.
    :param context: builds the context from ``loop.observation()`` for contextual policies.
    :param adapter: maps the reward of a record scored with a clean reference (``record.intrusive``) into
        [0, 1] for policies with ``unit_rewards`` (default :meth:`RewardAdapter.for_env_reward`: the loop's
        intrusive reward is the env's reward).
    :param blind_adapter: the same for records scored without one (default
        :meth:`RewardAdapter.for_blind_reward`). Proposals say how many rewards each adapter clipped.
    """

    name = "bandit"
    step_limits = False  # a preset is applied whole, never halfway (see feedback_env.feedback_loop.guards)

    def __init__(
        self,
        policy: Policy | str | None = None,
        presets: Sequence[str] | None = None,
        *,
        context: ObservationContext | None = None,
        adapter: RewardAdapter | None = None,
        blind_adapter: RewardAdapter | None = None,
        seed: int | None = 0,
    ):
        self.presets = tuple(presets) if presets is not None else tuple(PRESETS)
        unknown = [p for p in self.presets if p not in PRESETS]
        if unknown or not self.presets:
            raise ValueError(f"unknown presets {unknown}; known: {', '.join(PRESETS)}")
        self.context = context or ObservationContext()
        if policy is None or isinstance(policy, str):
            name = policy or "linucb"
            if name not in POLICY_NAMES:
                raise ValueError(f"unknown bandit policy {name!r}; known: {', '.join(POLICY_NAMES)}")
            policy = POLICY_NAMES[name](len(self.presets), self.context.dim, seed)
        self.policy = policy
        if self.policy.n_arms != len(self.presets):
            raise ValueError(f"{self.policy.name} has {self.policy.n_arms} arms for {len(self.presets)} presets")
        self.adapter = adapter or RewardAdapter.for_env_reward()
        self.blind_adapter = blind_adapter or RewardAdapter.for_blind_reward()
        self.ignored = 0  # records that matched no preset (e.g. after a rollback) or had no context
        self._pending: tuple[int, np.ndarray | None] | None = None

    def _arm_params(self, loop: Any) -> list[dict[str, float]]:
        return [preset_params(name, loop.space) for name in self.presets]

    def propose(self, loop: Any) -> Proposal:
        """Choose a preset (with the loop's observation as context for contextual policies)."""
        x = self.context(loop.observation()) if self.policy.contextual else None
        arm = self.policy.select(x)
        self._pending = (arm, x)
        belief = self.policy.describe_arm(arm, x)
        scale = f"; rewards mapped by {self._mapping()}" if self.policy.unit_rewards else ""
        numbers = ", ".join(f"{k} {v:.3g}" for k, v in belief.items())
        chose = f"{self.policy.name} chose preset {self.presets[arm]!r} (arm {arm} of {len(self.presets)})"
        chose += self._left_out(loop, self.presets[arm])
        explanation = f"{chose}: {numbers}{scale}"
        return Proposal(self._arm_params(loop)[arm], explanation, {"arm": float(arm), **belief})

    @staticmethod
    def _left_out(loop: Any, preset: str) -> str:
        """The preset's settings the loop does not tune and does not already have (they do not run), in words."""
        current = getattr(loop, "parameters", {})
        unrun = [f"{k} {v:g}" for k, v in PRESETS[preset].items()
                 if k not in loop.space and not (k in current and _close(current[k], v))]  # fmt: skip
        return f" without its {', '.join(unrun)} (not tuned by the loop)" if unrun else ""

    def observe(self, loop: Any, record: Any) -> None:
        """Credit ``record.reward`` to the preset whose parameters ``record.params`` are.

        A record whose parameters are no preset of this strategy (another strategy's, or a rollback)
        teaches nothing and is counted in :attr:`ignored`; so is one for a contextual policy when the
        context of its choice is unknown (it was not this strategy's last proposal), and, for a policy
        that takes one update per choice (EXP3's importance weights), any record but the first of the
        preset just proposed (with ``update_every`` > 1 one choice makes several records).
        """
        arm = self._arm_of(loop, record.params)
        if arm is None:
            self.ignored += 1
            return
        pending = self._pending
        chosen = pending is not None and pending[0] == arm
        if (self.policy.contextual or self.policy.one_update_per_choice) and not chosen:
            self.ignored += 1
            return
        x = pending[1] if chosen else None
        reward = float(record.reward)
        adapter = self.adapter if getattr(record, "intrusive", True) else self.blind_adapter
        self.policy.update(arm, adapter(reward) if self.policy.unit_rewards else reward, x)
        self._pending = None

    def _mapping(self) -> str:
        """The adapters that mapped rewards (the intrusive one before any), each with its clipped count."""
        used = [a for a in (self.adapter, self.blind_adapter) if a.calls] or [self.adapter]
        return "; ".join(f"{a} ({a.clipped} of {a.calls} clipped)" for a in used)

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state (saved by ``FeedbackLoopSystem.save``): the policy's statistics and random state,
        the pending choice and its context, the ignored count."""
        pending = None
        if self._pending is not None:
            arm, x = self._pending
            pending = [arm, None if x is None else x.tolist()]
        return {"policy": self.policy.state_dict(), "pending": pending, "ignored": self.ignored}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output of a strategy with the same policy and presets."""
        self.policy.load_state_dict(state["policy"])
        pending = state.get("pending")
        if pending is not None:
            pending = (int(pending[0]), None if pending[1] is None else np.asarray(pending[1], dtype=np.float64))
        self._pending = pending
        self.ignored = int(state.get("ignored", 0))

    def _arm_of(self, loop: Any, params: Mapping[str, float]) -> int | None:
        candidates = self._arm_params(loop)
        order = list(range(len(candidates)))
        if self._pending is not None:  # the arm just proposed first, when presets coincide
            order.remove(self._pending[0])
            order.insert(0, self._pending[0])
        for arm in order:
            preset = candidates[arm]
            # on the preset's own keys: records carry every parameter, a preset only the tuned ones
            if all(k in params and _close(params[k], v) for k, v in preset.items()):
                return arm
        return None
