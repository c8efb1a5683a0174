"""Dynamics and output level: compressor, loudness leveller and peak limiter, as one gain per sub-block.

Each computes a gain per sub-block of 1 ms, vectorized over a call (running maxima, ``lfilter``); the
product is applied as a piecewise-linear ramp between sub-block boundaries. The ramp of a sub-block ends
at the gain of the next one, so the stage looks one sub-block ahead (its latency).

* :class:`Compressor` (D. Giannoulis, M. Massberg and J. D. Reiss, "Digital dynamic range compressor
  design - a tutorial and analysis", JAES 2012): peak level per sub-block in dBFS; a decoupled detector,
  a peak hold whose release falls 8.69 dB per release time (exponential in amplitude) followed by a
  one-pole attack smoother; a soft-knee static curve (knee 6 dB) with threshold, ratio and make-up gain,
  whose changes glide in over 20 ms.
* :class:`LoudnessLeveller`: ITU-R BS.1770 integrated loudness (K-weighting from pyloudnorm; 400 ms
  blocks every 100 ms; absolute gate -70 LUFS, relative gate 10 LU below the ungated level) of the last
  5 s of gated audio, so that pauses do not pull the level up; after 5 gated blocks, gain
  ``clip(target - loudness, +-max_gain)``, slewed at most 0.5 dB per 100 ms and ramped across the next
  100 ms. ``max_gain = 0`` switches it off: it then measures nothing and starts afresh when switched on.
* Peak limiter (in :class:`Dynamics`): gain ``min(1, ceiling / peak)`` per sub-block after the other two,
  instantaneous attack, 50 ms release. A ramp never exceeds the gain of the sub-block it spans, so the
  output never exceeds the ceiling.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import pyloudnorm
from scipy.signal import lfilter, sosfilt

DB_PER_TIME_CONSTANT = 20.0 / math.log(10.0)  # 8.69 dB: an exponential decay by e
FLOOR_DB = -200.0


@dataclass
class DynamicsSettings:
    """Physical settings of one call (units in the names)."""

    threshold_db: float
    ratio: float
    attack_ms: float
    release_ms: float
    makeup_db: float
    target_lufs: float
    max_gain_db: float
    ceiling_db: float


def _db(x: np.ndarray) -> np.ndarray:
    return np.maximum(20.0 * np.log10(np.maximum(x, 1e-10)), FLOOR_DB)


def _peak_hold(level_db: np.ndarray, previous: float, fall_db: float) -> np.ndarray:
    """``y[k] = max(level[k], y[k-1] - fall)`` for all k at once, from ``y[-1] = previous``."""
    ramp = fall_db * np.arange(level_db.size)
    held = np.maximum.accumulate(np.maximum(level_db + ramp, previous - fall_db))
    return held - ramp


def soft_knee_gain_db(level_db: np.ndarray, threshold_db: float, ratio: float, knee_db: float = 6.0) -> np.ndarray:
    """Gain in dB (<= 0) of the soft-knee compressor curve at detected ``level_db``."""
    over = level_db - threshold_db
    slope = 1.0 / ratio - 1.0
    gain = np.where(2 * over > knee_db, slope * over, 0.0)
    in_knee = np.abs(2 * over) <= knee_db
    return np.where(in_knee, slope * (over + knee_db / 2) ** 2 / (2 * knee_db), gain)


class Compressor:
    """Feed-forward compressor gain per sub-block. :param step_s: sub-block duration in seconds.

    A change of threshold, ratio or make-up between calls glides in: the gain starts from what the old
    settings gave and moves linearly to the new curve's over ``GLIDE_S`` (a step within one sub-block clicks).
    Attack and release act on the detector, whose state carries over, so their changes need no glide.
    """

    GLIDE_S = 0.02

    def __init__(self, step_s: float):
        self.step_s = step_s
        self._glide_subs = max(1, int(round(self.GLIDE_S / step_s)))
        self.reset()

    def reset(self) -> None:
        self.detector_db = FLOOR_DB  # peak-hold state
        self.smoothed_db = FLOOR_DB  # attack-smoother state
        self._curve: tuple[float, float, float] | None = None  # threshold, ratio, make-up of the last call
        self._offset_db = 0.0  # what the gain still differs from the curve's at the next sub-block ...
        self._offset_step_db = 0.0  # ... shrinking by this much per sub-block

    @staticmethod
    def _curve_db(level_db: np.ndarray, curve: tuple[float, float, float]) -> np.ndarray:
        threshold_db, ratio, makeup_db = curve
        return soft_knee_gain_db(level_db, threshold_db, ratio) + makeup_db

    def gain_db(self, peak_db: np.ndarray, s: DynamicsSettings) -> np.ndarray:
        fall = DB_PER_TIME_CONSTANT * self.step_s / (s.release_ms / 1000.0)
        held = _peak_hold(peak_db, self.detector_db, fall)
        self.detector_db = float(held[-1])
        a = math.exp(-self.step_s / (s.attack_ms / 1000.0))
        level, _ = lfilter([1 - a], [1, -a], held, zi=[a * self.smoothed_db])
        self.smoothed_db = float(level[-1])
        curve = (s.threshold_db, s.ratio, s.makeup_db)
        gain = self._curve_db(level, curve)
        if self._curve is not None and curve != self._curve:  # glide from where the old curve had the gain
            self._offset_db += float(self._curve_db(level[:1], self._curve)[0] - gain[0])
            self._offset_step_db = abs(self._offset_db) / self._glide_subs
        self._curve = curve
        if self._offset_db:
            left = np.maximum(abs(self._offset_db) - self._offset_step_db * np.arange(gain.size + 1), 0.0)
            gain = gain + math.copysign(1.0, self._offset_db) * left[:-1]
            self._offset_db = math.copysign(float(left[-1]), self._offset_db)
        return gain


class LoudnessLeveller:
    """Slow loudness normalization towards a target, measured and gated as ITU-R BS.1770 measures.

    BS.1770's blocks: 400 ms of K-weighted mean square, one every 100 ms (75 % overlap). The estimate is
    BS.1770's integrated loudness of the last ``WINDOW_BLOCKS`` gated blocks (5 s of gated audio): the
    mean energy of the blocks above the absolute gate (-70 LUFS) and above the relative gate, 10 LU
    below a *reference*: an exponential average (time constant ``REFERENCE_TAU_S``, from the first block)
    of the energy of all blocks above the absolute gate. The relative gate follows the ungated
    level, not the estimate, so a loud burst or a louder talker cannot lock the estimate up (blocks
    quieter than it would never be admitted again); the window forgets them after 5 s of gated audio,
    while a pause too short for the reference to fall 10 LU below the talker leaves the estimate alone.
    A block counts at most ``OUTLIER_LU`` above the level it joins (the reference, or the window's
    loudness), so that a short transient (a door, a knock on the microphone) moves neither by more than a
    few LU: its peaks are the limiter's business. A louder talker still takes over within a window.

    :param sample_rate: Hz.
    :param sub_block: samples per sub-block; a hop is a whole number of them (about 100 ms).
    """

    HOP_S = 0.1
    HOPS_PER_BLOCK = 4  # 400 ms blocks
    WINDOW_BLOCKS = 50
    REFERENCE_TAU_S = 3.0
    ABSOLUTE_GATE_LUFS = -70.0
    RELATIVE_GATE_LU = 10.0
    OUTLIER_LU = 10.0  # a block counts at most this far above the level it is averaged into
    SLEW_DB = 0.5  # per hop
    WARM_UP_BLOCKS = 5  # gated blocks heard before the gain may move

    def __init__(self, sample_rate: int, sub_block: int):
        meter = pyloudnorm.Meter(sample_rate)
        # pyloudnorm designs BS.1770's two K-weighting biquads for any rate; it keeps them in _filters
        self._sos = np.array([np.concatenate([f.b, f.a]) for f in meter._filters.values()])
        self.subs_per_hop = max(1, int(round(self.HOP_S * sample_rate / sub_block)))
        self._forget = 1.0 - math.exp(-self.subs_per_hop * sub_block / sample_rate / self.REFERENCE_TAU_S)
        self.reset()

    def reset(self) -> None:
        self._zi = np.zeros((self._sos.shape[0], 2))
        self._energy = 0.0  # K-weighted mean-square sum of the running hop
        self._filled = 0  # sub-blocks in the running hop
        self._hops = np.zeros(0)  # mean squares of the last HOPS_PER_BLOCK hops
        self.reference_ms: float | None = None  # running mean square of the blocks above the absolute gate
        self._gated = deque(maxlen=self.WINDOW_BLOCKS)  # mean squares of the last blocks above both gates
        self._gain_from = 0.0  # the running hop ramps from this gain (dB) ...
        self._gain_to = 0.0  # ... to this one

    @staticmethod
    def _lufs(mean_square: float) -> float:
        return -0.691 + 10.0 * math.log10(mean_square + 1e-20)

    @property
    def estimate_ms(self) -> float | None:
        """Mean K-weighted mean square of the window (None before the first gated block)."""
        return sum(self._gated) / len(self._gated) if self._gated else None

    @property
    def loudness_lufs(self) -> float | None:
        """The gated loudness of the window, LUFS (None before the first gated block)."""
        return None if self.estimate_ms is None else self._lufs(self.estimate_ms)

    def _capped(self, block_ms: float, level_ms: float | None) -> float:
        """``block_ms`` counted at most ``OUTLIER_LU`` above ``level_ms`` (a mean square)."""
        return block_ms if level_ms is None else min(block_ms, level_ms * 10.0 ** (self.OUTLIER_LU / 10.0))

    def _end_hop(self, s: DynamicsSettings) -> None:
        self._hops = np.append(self._hops, self._energy / self.subs_per_hop)[-self.HOPS_PER_BLOCK :]
        self._energy, self._filled = 0.0, 0
        if self._hops.size == self.HOPS_PER_BLOCK:
            block = float(self._hops.mean())
            if self._lufs(block) > self.ABSOLUTE_GATE_LUFS:
                previous = block if self.reference_ms is None else self.reference_ms
                self.reference_ms = previous + self._forget * (self._capped(block, self.reference_ms) - previous)
                if self._lufs(block) > self._lufs(self.reference_ms) - self.RELATIVE_GATE_LU:
                    self._gated.append(self._capped(block, self.estimate_ms))
        warm = len(self._gated) >= self.WARM_UP_BLOCKS  # the window (50) never shrinks
        wanted = s.target_lufs - self.loudness_lufs if warm else 0.0
        wanted = min(max(wanted, -s.max_gain_db), s.max_gain_db)
        self._gain_from = self._gain_to
        self._gain_to += min(max(wanted - self._gain_to, -self.SLEW_DB), self.SLEW_DB)

    def gain_db(self, blocks: np.ndarray, pre_gain_db: np.ndarray, s: DynamicsSettings) -> np.ndarray:
        """Gain in dB per sub-block of ``blocks`` (sub-blocks, samples), measured after ``pre_gain_db``.

        Switched off (``max_gain_db`` 0) it measures nothing and forgets what it had measured, so it starts
        afresh when switched on (a fifth of a 0.5 s chunk's processing went to measuring for an off leveller).
        """
        if s.max_gain_db <= 0.0:
            self.reset()
            return np.zeros(blocks.shape[0])
        weighted, self._zi = sosfilt(self._sos, blocks.reshape(-1), zi=self._zi)
        mean_square = np.mean(weighted.reshape(blocks.shape) ** 2, axis=1) * 10.0 ** (pre_gain_db / 10.0)
        gains = np.empty(mean_square.size)
        k = 0
        while k < mean_square.size:  # one pass per 100 ms hop touched by this call
            n = min(mean_square.size - k, self.subs_per_hop - self._filled)
            position = (self._filled + np.arange(n)) / self.subs_per_hop
            gains[k : k + n] = self._gain_from + (self._gain_to - self._gain_from) * position
            self._energy += float(mean_square[k : k + n].sum())
            self._filled += n
            if self._filled == self.subs_per_hop:
                self._end_hop(s)
            k += n
        return np.clip(gains, -s.max_gain_db, s.max_gain_db)


class Dynamics:
    """Compressor, leveller and limiter; ``process`` keeps the length and delays by ``sub_block`` samples.

    :param sample_rate: Hz.
    :param sub_block: samples per gain step (1 ms); inputs must be multiples of it.
    """

    LIMITER_RELEASE_S = 0.05

    def __init__(self, sample_rate: int, sub_block: int):
        self.sample_rate, self.sub_block = sample_rate, sub_block
        self.compressor = Compressor(sub_block / sample_rate)
        self.leveller = LoudnessLeveller(sample_rate, sub_block)
        self._ramp = np.arange(sub_block) / sub_block
        self.reset()

    def reset(self) -> None:
        self.compressor.reset()
        self.leveller.reset()
        self.limiter_att_db = 0.0
        self._held = np.zeros(self.sub_block)  # the look-ahead sub-block
        self._held_gain = 1.0
        self._held_knot = 1.0

    @property
    def latency(self) -> int:
        return self.sub_block

    def process(self, x: np.ndarray, s: DynamicsSettings) -> np.ndarray:
        """Apply the gains to ``x`` (float64, a multiple of ``sub_block`` samples); same length out."""
        if x.size == 0:
            return x
        blocks = x.reshape(-1, self.sub_block)
        peak_db = _db(np.max(np.abs(blocks), axis=1))
        gain_db = self.compressor.gain_db(peak_db, s)
        gain_db = gain_db + self.leveller.gain_db(blocks, gain_db, s)
        # limiter: attenuation needed for the ceiling, released at a constant dB rate
        needed = np.maximum(peak_db + gain_db - s.ceiling_db, 0.0)
        fall = DB_PER_TIME_CONSTANT * (self.sub_block / self.sample_rate) / self.LIMITER_RELEASE_S
        attenuation = _peak_hold(needed, self.limiter_att_db, fall)
        self.limiter_att_db = float(attenuation[-1])
        gains = 10.0 ** ((gain_db - attenuation) / 20.0)
        # ramps: sub-block k goes from knot[k] to knot[k+1], knot[k] = min(gain[k-1], gain[k])
        sequence = np.concatenate([[self._held_gain], gains])
        knots = np.concatenate([[self._held_knot], np.minimum(sequence[:-1], sequence[1:])])
        starts, ends = knots[:-1], knots[1:]
        ramps = starts[:, None] + (ends - starts)[:, None] * self._ramp[None, :]
        emitted = np.concatenate([self._held[None, :], blocks[:-1]]) * ramps
        self._held, self._held_gain, self._held_knot = blocks[-1].copy(), float(gains[-1]), float(knots[-1])
        return emitted.reshape(-1)
