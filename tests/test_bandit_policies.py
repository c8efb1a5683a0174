"""Bandit policies: the published updates, seeding, state round trips, clear errors."""

import json

import numpy as np
import pytest

from bandits import (
    EXP3,
    UCB1,
    DiscountedUCB,
    EpsilonGreedy,
    GaussianThompsonSampling,
    InMemoryStateStore,
    LinUCB,
    RewardAdapter,
    SlidingWindowUCB,
    StateStoreError,
    ThompsonSampling,
)
from bandits.regret import BernoulliBandit, LinearContextualBandit, play

K = 4
FACTORIES = {
    "EpsilonGreedy": lambda seed, store=None: EpsilonGreedy(K, 0.1, seed=seed, store=store),
    "UCB1": lambda seed, store=None: UCB1(K, seed=seed, store=store),
    "DiscountedUCB": lambda seed, store=None: DiscountedUCB(K, gamma=0.98, seed=seed, store=store),
    "SlidingWindowUCB": lambda seed, store=None: SlidingWindowUCB(K, window=50, seed=seed, store=store),
    "ThompsonSampling": lambda seed, store=None: ThompsonSampling(K, seed=seed, store=store),
    "GaussianThompsonSampling": lambda seed, store=None: GaussianThompsonSampling(K, sigma=0.5, seed=seed, store=store),
    "EXP3": lambda seed, store=None: EXP3(K, horizon=1000, seed=seed, store=store),
    "LinUCB": lambda seed, store=None: LinUCB(K, 3, alpha=1.0, seed=seed, store=store),
}
CONTEXTUAL = LinearContextualBandit([[0.8, -0.6, 0.0], [0.2, 0.6, 0.0], [0.1, 0.3, 0.5], [0.3, 0.0, 0.0]])
STOCHASTIC = BernoulliBandit([0.3, 0.5, 0.45, 0.7])


def instance_for(name, seed=0, horizon=300):
    problem = CONTEXTUAL if name == "LinUCB" else STOCHASTIC
    return problem.sample(horizon, np.random.default_rng(seed))


@pytest.mark.parametrize("name", FACTORIES)
def test_same_seed_same_choices_and_state_round_trip(name):
    make = FACTORIES[name]
    inst = instance_for(name)
    first, second = make(1), make(1)
    assert np.array_equal(play(first, inst), play(second, inst))

    # stop half-way, save through JSON, restore into a fresh policy: it continues exactly as the original
    head = type(inst)(inst.rewards[:150], inst.expected[:150], None if inst.contexts is None else inst.contexts[:150])
    tail = type(inst)(inst.rewards[150:], inst.expected[150:], None if inst.contexts is None else inst.contexts[150:])
    original = make(7)
    play(original, head)
    restored = make(99)
    restored.load_state_dict(json.loads(json.dumps(original.state_dict())))
    assert np.array_equal(play(original, tail), play(restored, tail))


@pytest.mark.parametrize("name", FACTORIES)
def test_bad_input_is_refused_with_a_clear_error(name):
    policy = FACTORIES[name](0)
    x = np.array([1.0, 0.5, 0.5])
    with pytest.raises(ValueError, match="arm"):
        policy.update(K, 0.5, x)
    with pytest.raises(ValueError, match="finite"):
        policy.update(0, float("nan"), x)
    if policy.unit_rewards:
        with pytest.raises(ValueError, match=r"outside \[0, 1\].*RewardAdapter"):
            policy.update(0, 1.5)
    assert policy.store.read().updates == 0  # nothing half-applied


def test_linucb_needs_a_context_of_its_dimension():
    policy = LinUCB(3, 4)
    with pytest.raises(ValueError, match="context of shape"):
        policy.select()
    with pytest.raises(ValueError, match=r"expected \(4,\)"):
        policy.select(np.ones(3))
    with pytest.raises(ValueError, match="non-finite"):
        policy.select(np.array([1.0, np.inf, 0.0, 0.0]))


def test_linucb_recovers_linear_reward_models():
    rng = np.random.default_rng(0)
    theta = np.array([[0.5, -1.0, 2.0], [1.0, 0.5, -0.5]])
    policy = LinUCB(2, 3, alpha=0.5, ridge=1e-3, seed=0)
    for _ in range(400):
        x = np.append(1.0, rng.normal(size=2))
        arm = policy.select(x)
        policy.update(arm, theta[arm] @ x + 0.01 * rng.normal(), x)
    stats = policy.store.read()
    for arm in range(2):
        estimate = np.linalg.solve(stats["xx"][arm] + 1e-3 * np.eye(3), stats["xr"][arm])
        assert np.allclose(estimate, theta[arm], atol=0.05), (arm, estimate)


def test_thompson_bernoulli_trick_learns_fractional_means():
    """Rewards of exactly 0.3 every time: the Beta posterior mean must go to 0.3 (the seed's update,
    ``alpha += r if r > 0``, sends it to 1)."""
    policy = ThompsonSampling(2, seed=3)
    for _ in range(3000):
        policy.update(0, 0.3)
    belief = policy.describe_arm(0)
    assert belief["pulls"] == 3000
    assert abs(belief["posterior_mean"] - 0.3) < 0.03


def test_thompson_prefers_the_better_fractional_arm():
    policy = ThompsonSampling(2, seed=5)
    rewards = [0.45, 0.55]  # deterministic, fractional: only the Bernoulli draw makes them Beta-compatible
    chosen = []
    for _ in range(3000):
        arm = policy.select()
        policy.update(arm, rewards[arm])
        chosen.append(arm)
    assert np.mean(np.array(chosen[-1000:]) == 1) > 0.8


def test_discounted_ucb_discounts_counts_and_sums_alike():
    """Constant rewards per arm: the discounted means stay those constants (the seed's sketch decayed
    the values but not the counts, so its means shrank), and the total discounted count is
    ``sum_k gamma^k``."""
    gamma = 0.9
    policy = DiscountedUCB(2, gamma=gamma)
    n = 200
    for t in range(n):
        policy.update(t % 2, 0.8 if t % 2 == 0 else 0.2)
    assert policy.describe_arm(0)["mean"] == pytest.approx(0.8, abs=1e-12)
    assert policy.describe_arm(1)["mean"] == pytest.approx(0.2, abs=1e-12)
    assert policy.store.read()["count"].sum() == pytest.approx((1 - gamma**n) / (1 - gamma), rel=1e-12)


def test_discounted_ucb_returns_to_an_arm_left_alone():
    policy = DiscountedUCB(2, gamma=0.95, seed=0)
    policy.update(1, 0.0)
    for _ in range(300):  # arm 0 pays a lot; arm 1 paid nothing once, long ago
        policy.update(0, 1.0)
    assert policy.describe_arm(1)["bonus"] > 1.0  # its discounted count is tiny: the bonus grew again
    assert policy.select() == 1


def test_sliding_window_forgets_exactly_what_left_the_window():
    policy = SlidingWindowUCB(2, window=10)
    for _ in range(10):
        policy.update(0, 1.0)
    for _ in range(4):
        policy.update(1, 0.5)
    stats = policy.store.read()
    assert stats["count"].tolist() == [6.0, 4.0]
    assert stats["reward_sum"].tolist() == [6.0, 2.0]
    assert stats.updates == 14


def test_exp3_distribution_and_importance_weighted_update():
    policy = EXP3(3, gamma=0.3, seed=0)
    p = policy.probabilities()
    assert p == pytest.approx([1 / 3] * 3) and p.sum() == pytest.approx(1.0)
    arm = policy.select()
    policy.update(arm, 1.0)
    # w_arm *= exp(gamma * x / (p_arm K)) with p_arm = 1/3: log-weight 0.3 * 1 / (1/3 * 3) = 0.3
    assert policy.store.read()["log_weight"][arm] == pytest.approx(0.3)
    assert policy.probabilities().min() >= 0.3 / 3 - 1e-12


def test_epsilon_greedy_decaying_schedule():
    policy = EpsilonGreedy(4, c=5.0, d=0.5)
    assert policy.exploration_rate(10) == 1.0
    assert policy.exploration_rate(1000) == pytest.approx(5 * 4 / (0.25 * 1000))
    with pytest.raises(ValueError, match="both c and d"):
        EpsilonGreedy(4, c=5.0)


def test_a_store_holds_one_policy_spec():
    store = InMemoryStateStore()
    UCB1(3, store=store)
    UCB1(3, store=store)  # same spec: shares the statistics
    with pytest.raises(StateStoreError, match="UCB1"):
        DiscountedUCB(3, store=store)
    with pytest.raises(ValueError, match="state is for"):
        UCB1(3, c=1.0).load_state_dict(UCB1(3).state_dict())


def test_reward_adapter_mapping_is_stated_and_counted():
    adapter = RewardAdapter.for_si_sdr_improvement()
    assert adapter(-15.0) == 0.0 and adapter(25.0) == 1.0 and adapter(5.0) == pytest.approx(0.5)
    assert adapter.inverse(0.5) == pytest.approx(5.0)
    assert adapter.clipped == 0
    assert adapter(40.0) == 1.0 and adapter(-30.0) == 0.0
    assert adapter.clipped == 2 and adapter.calls == 5
    with pytest.raises(ValueError, match="finite"):
        adapter(float("nan"))
    with pytest.raises(ValueError, match="low < high"):
        RewardAdapter(1.0, 1.0)
    assert "env reward" in repr(RewardAdapter.for_env_reward())


def test_exp3_refuses_an_update_that_is_not_for_the_draw_just_made():
    """EXP3's estimate ``x / p_i`` is unbiased only for the arm drawn from ``p``, once per draw: an update
    without a draw, for another arm, or a second one for the same draw was applied silently."""
    policy = EXP3(3, gamma=0.3, seed=0)
    with pytest.raises(ValueError, match="no draw pending"):
        policy.update(0, 1.0)
    arm = policy.select()
    other = (arm + 1) % 3
    with pytest.raises(ValueError, match=f"arm {other}, but the pending draw is arm {arm}"):
        policy.update(other, 1.0)
    restored = EXP3(3, gamma=0.3, seed=0)  # the pending draw survives a save and load
    restored.load_state_dict(json.loads(json.dumps(policy.state_dict())))
    for p in (policy, restored):
        p.update(arm, 1.0)
        with pytest.raises(ValueError, match="no draw pending"):
            p.update(arm, 1.0)
        assert p.store.read().updates == 1
        assert p.store.read()["log_weight"][arm] == pytest.approx(0.3)  # p_arm = 1/3 of the draw


def test_epsilon_greedy_settings_written_differently_are_one_setting():
    """``c=6``, ``c=6.0`` and ``c=np.int64(6)`` are the same schedule: the state of one loads into another
    and is JSON (the spec is compared as JSON text, where ``6`` and ``6.0`` differ)."""
    first = EpsilonGreedy(3, c=6, d=0.5, seed=0)
    first.update(0, 0.5)
    second = EpsilonGreedy(3, c=6.0, d=0.5, seed=0)
    second.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert second.store.read().updates == 1
    numpy_settings = EpsilonGreedy(3, c=np.int64(6), d=np.float32(0.5), seed=0)
    settings = json.loads(json.dumps(numpy_settings.state_dict()))["hyperparameters"]
    assert settings == {"epsilon": 0.1, "c": 6.0, "d": 0.5}
