"""Regret: the bounds as functions, and each policy's guarantee shown on simulated problems.

Seeds: instance seeds are ``range(n)``; ``regret_curves`` builds each policy with ``seed + 1_000_003``.
"""

import math

import numpy as np
import pytest

from bandits import (
    EXP3,
    UCB1,
    DiscountedUCB,
    EpsilonGreedy,
    GaussianThompsonSampling,
    LinUCB,
    SlidingWindowUCB,
    ThompsonSampling,
)
from bandits.nonstationary import discount_for, window_for
from bandits.regret import (
    AdversarialSequence,
    BernoulliBandit,
    LinearContextualBandit,
    PiecewiseStationaryBandit,
    bernoulli_kl,
    exp3_regret_bound,
    hindsight_regret,
    lai_robbins_constant,
    lai_robbins_lower_bound,
    play,
    regret_curves,
    ucb1_regret_bound,
)

MEANS = [0.9, 0.6, 0.5]
HORIZON = 4000
SEEDS = range(16)
CHECKPOINTS = [250, 500, 1000, 2000, 4000]


@pytest.fixture(scope="module")
def stationary_curves():
    problem = BernoulliBandit(MEANS)
    return {
        "ucb1": regret_curves(lambda s: UCB1(3, seed=s), problem, HORIZON, SEEDS),
        "ts": regret_curves(lambda s: ThompsonSampling(3, seed=s), problem, HORIZON, SEEDS),
    }


def test_bound_functions_match_hand_computation():
    assert bernoulli_kl(0.5, 0.5) == 0.0
    assert bernoulli_kl(1.0, 0.5) == pytest.approx(math.log(2))
    assert bernoulli_kl(0.2, 0.4) == pytest.approx(0.2 * math.log(0.5) + 0.8 * math.log(0.8 / 0.6))
    gaps = [0.3, 0.4]
    n = 1000
    expected = 8 * math.log(n) * (1 / 0.3 + 1 / 0.4) + (1 + math.pi**2 / 3) * 0.7
    assert ucb1_regret_bound(MEANS, n) == pytest.approx(expected)
    lr = sum(g / bernoulli_kl(m, 0.9) for g, m in zip(gaps, [0.6, 0.5]))
    assert lai_robbins_constant(MEANS) == pytest.approx(lr)
    assert lai_robbins_lower_bound(MEANS, n) == pytest.approx(lr * math.log(n))
    assert exp3_regret_bound(2, 100) == pytest.approx(2 * math.sqrt(math.e - 1) * math.sqrt(200 * math.log(2)))


def test_ucb1_regret_below_its_bound_and_logarithmic(stationary_curves):
    ucb = stationary_curves["ucb1"]
    means = np.array([ucb.at(n) for n in CHECKPOINTS])
    bounds = np.array([ucb1_regret_bound(MEANS, n) for n in CHECKPOINTS])
    assert np.all(means < bounds), (means, bounds)
    # log growth: each doubling of n adds about the same regret (sqrt(n) would grow the increment
    # 4x over these four doublings, linear growth 16x); and the per-step regret falls
    increments = np.diff(means)
    assert increments[-1] < 1.6 * increments[0], increments
    assert np.all(np.diff(means / CHECKPOINTS) < 0)
    # and it is no better than the Lai-Robbins rate allows (a sanity check of the simulator)
    assert means[-1] > lai_robbins_lower_bound(MEANS, HORIZON) - lai_robbins_lower_bound(MEANS, CHECKPOINTS[0])


def test_thompson_sampling_beats_ucb1_on_the_same_instances(stationary_curves):
    ucb, ts = stationary_curves["ucb1"], stationary_curves["ts"]
    paired = ucb.curves[:, -1] - ts.curves[:, -1]  # same instance per seed
    assert paired.mean() > 3 * paired.std(ddof=1) / math.sqrt(paired.size)
    assert ts.at(HORIZON) < 0.6 * ucb.at(HORIZON)


def test_forgetting_ucb_beats_ucb1_when_the_best_arm_switches():
    """Best arm alternates every 2,500 steps; gamma and tau from Garivier & Moulines' tuning rules."""
    horizon, breakpoints = 10_000, [2500, 5000, 7500]
    problem = PiecewiseStationaryBandit([[0.9, 0.2], [0.3, 0.6], [0.9, 0.2], [0.3, 0.6]], breakpoints)
    gamma, tau = discount_for(horizon, len(breakpoints)), window_for(horizon, len(breakpoints))
    seeds = range(3)
    ucb = regret_curves(lambda s: UCB1(2, seed=s), problem, horizon, seeds).at(horizon)
    ducb = regret_curves(lambda s: DiscountedUCB(2, gamma=gamma, seed=s), problem, horizon, seeds).at(horizon)
    swucb = regret_curves(lambda s: SlidingWindowUCB(2, window=tau, seed=s), problem, horizon, seeds).at(horizon)
    assert ducb <= 0.7 * ucb, (ducb, ucb)
    assert swucb <= 0.7 * ucb, (swucb, ucb)


def switching_sequence(horizon: int, seed: int = 7) -> AdversarialSequence:
    """Arm 0 pays more for the first third, arm 1 (the best in hindsight) after: fools follow-the-leader."""
    rng = np.random.default_rng(seed)
    means = np.where(np.arange(horizon)[:, None] < horizon // 3, [0.6, 0.4], [0.3, 0.7])
    return AdversarialSequence((rng.random(means.shape) < means).astype(float))


def test_exp3_regret_is_sublinear_against_adversarial_sequences():
    horizons = [1000, 4000, 16000]
    regrets = []
    for horizon in horizons:
        sequence = switching_sequence(horizon)
        curves = regret_curves(lambda s: EXP3(2, horizon=horizon, seed=s), sequence, horizon, range(3), kind="hindsight")
        regrets.append(curves.at(horizon))
        assert regrets[-1] <= exp3_regret_bound(2, horizon)
    # 16x the horizon: linear regret would grow 16x, sqrt(T) 4x; allow up to T^0.75 (8x)
    assert regrets[-1] < 8 * regrets[0], regrets
    assert regrets[-1] / horizons[-1] < regrets[0] / horizons[0]

    # a sequence built against UCB1 drives it to linear regret; EXP3 keeps its guarantee there
    horizon = 4000
    sequence = AdversarialSequence.against(UCB1(2, seed=11), horizon)
    instance = sequence.sample(horizon, np.random.default_rng(0))
    assert hindsight_regret(instance, play(UCB1(2, seed=11), instance))[-1] >= horizon / 2
    exp3 = regret_curves(lambda s: EXP3(2, horizon=horizon, seed=s), sequence, horizon, range(3), kind="hindsight")
    assert exp3.at(horizon) <= exp3_regret_bound(2, horizon)


def test_linucb_beats_every_non_contextual_policy_on_a_contextual_problem():
    """Every arm averages 0.5 over contexts, but each is best somewhere: only context tells them apart."""
    problem = LinearContextualBandit([[0.8, -0.6, 0.0], [0.2, 0.6, 0.0], [0.1, 0.3, 0.5]])
    horizon, seeds = 2000, range(3)
    others = {
        "EpsilonGreedy": lambda s: EpsilonGreedy(3, 0.1, seed=s),
        "UCB1": lambda s: UCB1(3, seed=s),
        "ThompsonSampling": lambda s: ThompsonSampling(3, seed=s),
        "GaussianThompsonSampling": lambda s: GaussianThompsonSampling(3, sigma=0.5, seed=s),
        "EXP3": lambda s: EXP3(3, horizon=horizon, seed=s),
        "DiscountedUCB": lambda s: DiscountedUCB(3, gamma=0.99, seed=s),
        "SlidingWindowUCB": lambda s: SlidingWindowUCB(3, window=200, seed=s),
    }
    linucb = regret_curves(lambda s: LinUCB(3, 3, alpha=1.0, seed=s), problem, horizon, seeds).at(horizon)
    for name, make in others.items():
        regret = regret_curves(make, problem, horizon, seeds).at(horizon)
        assert linucb < 0.5 * regret, (name, linucb, regret)


@pytest.mark.parametrize("kind", ["UCB1", "ThompsonSampling", "EpsilonGreedy"])
def test_regret_no_worse_than_mabwiser_on_the_same_instances(kind):
    """Same Bernoulli instances (seeds 0-3), same 1,000 steps; paired difference within noise."""
    pytest.importorskip("mabwiser")
    from bandits.peers import mabwiser_policy, play_mabwiser
    from bandits.regret import pseudo_regret

    ours = {
        "UCB1": lambda s: UCB1(3, seed=s),
        "ThompsonSampling": lambda s: ThompsonSampling(3, seed=s),
        "EpsilonGreedy": lambda s: EpsilonGreedy(3, 0.1, seed=s),
    }[kind]
    problem, horizon = BernoulliBandit(MEANS), 1000
    diffs = []
    for seed in range(4):
        instance = problem.sample(horizon, np.random.default_rng(seed))
        mine = pseudo_regret(instance, play(ours(seed + 100), instance))[-1]
        peer = pseudo_regret(instance, play_mabwiser(mabwiser_policy(kind), instance, seed + 100))[-1]
        diffs.append(mine - peer)
    diffs = np.array(diffs)
    assert diffs.mean() <= 3 * diffs.std(ddof=1) / 2 + 1.0, diffs
