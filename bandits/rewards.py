"""Map a quality measure (SI-SDR improvement in dB, the env reward) into [0, 1] for the policies whose
guarantees need bounded rewards (UCB1, D-UCB, SW-UCB, Beta Thompson sampling, EXP3)."""

from __future__ import annotations

import math


class RewardAdapter:
    """``u = clip((q - low) / (high - low), 0, 1)``: affine, then clipped.

    Affine inside ``[low, high]``, so the order of expected rewards (which arm is best, and by what
    fraction of the range) is kept for qualities that stay in the range; outside it the value
    saturates and :attr:`clipped` counts how often, so a range that is too narrow shows up.

    :param low: quality mapped to 0 (and everything below). :param high: quality mapped to 1.
    :param unit: the quality's unit, for messages.
    """

    def __init__(self, low: float, high: float, unit: str = ""):
        if not (math.isfinite(low) and math.isfinite(high) and high > low):
            raise ValueError(f"RewardAdapter needs finite low < high, got low={low}, high={high}")
        self.low, self.high, self.unit = float(low), float(high), unit
        self.clipped = 0
        self.calls = 0

    @classmethod
    def for_si_sdr_improvement(cls, low_db: float = -15.0, high_db: float = 25.0) -> "RewardAdapter":
        """SI-SDR improvement in dB: -15 dB -> 0, +25 dB -> 1 (0.025 per dB)."""
        return cls(low_db, high_db, "dB SI-SDR improvement")

    @classmethod
    def for_env_reward(cls) -> "RewardAdapter":
        """The envs' default reward (SI-SDR improvement / 10 dB + 0.2 x LSD improvement / 10 dB):
        -1.5 -> 0, +2.5 -> 1. Per-chunk rewards of the six presets on the built-in test clips span
        [-1.21, 2.22] (``benchmarks/bandits.py --sections env``'s ``reward_range_of_presets``)."""
        return cls(-1.5, 2.5, "env reward")

    @classmethod
    def for_blind_reward(cls) -> "RewardAdapter":
        """The loop's default blind reward (WADA-SNR improvement / 10 dB - clipping-ratio increase / 1 %):
        -1 -> 0, +10 -> 1. The top is the reward's own clip (``QualityReward.clip``), so the best presets
        never saturate; below -1 (10 dB of estimated SNR lost, or 1 % more clipped samples) they do."""
        return cls(-1.0, 10.0, "blind reward")

    def __call__(self, quality: float) -> float:
        q = float(quality)
        if not math.isfinite(q):
            raise ValueError(f"RewardAdapter: quality is {q}; a finite value is needed")
        self.calls += 1
        u = (q - self.low) / (self.high - self.low)
        if u < 0.0 or u > 1.0:
            self.clipped += 1
            return min(max(u, 0.0), 1.0)
        return u

    def inverse(self, u: float) -> float:
        """The quality that maps to ``u`` in [0, 1]."""
        if not 0.0 <= u <= 1.0:
            raise ValueError(f"RewardAdapter.inverse: u={u} is outside [0, 1]")
        return self.low + u * (self.high - self.low)

    def __repr__(self) -> str:
        return f"RewardAdapter([{self.low:g}, {self.high:g}] {self.unit} -> [0, 1])"
