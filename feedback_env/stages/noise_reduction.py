"""Spectral noise reduction: MCRA noise tracking, decision-directed a-priori SNR, parametric Wiener gain.

Per STFT bin ``k`` and frame ``t`` (``P = |Y|^2``; the constants are stored as time constants, so any hop works):

* noise PSD ``lambda``: Minima-Controlled Recursive Averaging (I. Cohen and B. Berdugo, "Noise
  estimation by minima controlled recursive averaging for robust speech enhancement", IEEE SPL 2002):
  ``S = a_s S + (1 - a_s) P``; ``S_min`` the minimum of ``S`` over the last ``noise_window_s`` seconds
  (R. Martin's sub-window scheme, 8 sub-windows); speech presence ``p = a_p p + (1 - a_p) [S > delta S_min]``;
  ``lambda = a~ lambda + (1 - a~) P`` with ``a~ = a_d + (1 - a_d) p``. The first 50 ms of a stream
  initialize the estimate with the running minimum of ``S``. A longer window is safer in
  speech but follows a rise of the noise only after about that many seconds.
* a-priori SNR, decision-directed (Y. Ephraim and D. Malah, IEEE TASSP 1984):
  ``xi = a_dd G_prev^2 gamma_prev + (1 - a_dd) max(gamma - 1, 0)``, ``gamma = P / lambda``;
  ``a_dd = exp(-hop / smoothing)``.
* gain: parametric Wiener ``G = max(xi / (xi + beta), G_floor)`` with over-subtraction ``beta``.
  ``G_floor = 1`` (0 dB) makes the stage transparent. (No separate ``xi_min``: with floors of -40 dB
  and above, the gain floor binds before any usual ``xi_min`` would.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

EPS = 1e-12
SUBWINDOWS = 8


def _first_order_recursion(a: np.ndarray, b: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """``y[t] = a[t] y[t-1] + b[t]`` from ``y[-1] = y0`` for all t at once, with 0 < a <= 1 (frames, K).

    ``y[t] = A[t] (y0 + sum_{s<=t} b[s] / A[s])`` with ``A`` the running product of ``a``.
    """
    running = np.cumprod(a, axis=0)
    return running * (y0 + np.cumsum(b / running, axis=0))


@dataclass
class NoiseReductionSettings:
    """Physical settings of one call.

    :param oversubtraction: Wiener over-subtraction factor ``beta`` (> 0; 1 is the plain Wiener gain).
    :param floor_db: gain floor in dB (<= 0; 0 disables the stage).
    :param noise_window_s: minimum-statistics window in seconds: how fast the noise estimate follows a rise.
    :param smoothing_ms: time constant of the decision-directed a-priori SNR in ms.
    """

    oversubtraction: float
    floor_db: float
    noise_window_s: float
    smoothing_ms: float


class NoiseReducer:
    """Stateful MCRA + decision-directed Wiener noise reduction on blocks of STFT frames.

    :param n_bins: number of STFT bins ``K``.
    :param hop_s: STFT hop in seconds.
    :param partial_frames: leading frames of a stream that hold the STFT's zero padding.
    """

    # MCRA constants of Cohen & Berdugo (2002), given there for an 8 ms hop, stored as time constants
    TAU_S = -0.008 / math.log(0.8)  # periodogram smoothing
    TAU_P = -0.008 / math.log(0.2)  # speech-presence smoothing
    TAU_D = -0.008 / math.log(0.95)  # noise update when speech is absent
    DELTA = 5.0  # presence threshold on S / S_min
    RECURSION_BLOCK = 256  # frames per closed-form block (keeps the running products far from underflow)
    WARMUP_S = 0.05  # the first 50 ms (after the padded frames) initialize the noise estimate

    def __init__(self, n_bins: int, hop_s: float, partial_frames: int = 0):
        self.n_bins, self.hop_s, self.partial_frames = n_bins, hop_s, partial_frames
        self.a_s = math.exp(-hop_s / self.TAU_S)
        self.a_p = math.exp(-hop_s / self.TAU_P)
        self.a_d = math.exp(-hop_s / self.TAU_D)
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next frames initialize the noise estimate."""
        self.frames_seen = 0  # counted up to the end of the warm-up
        self._warm_min = np.zeros(self.n_bins)
        self.smoothed = np.zeros(self.n_bins)  # S
        self.minima = np.zeros((SUBWINDOWS, self.n_bins))  # minima of the finished sub-windows
        self.minima_floor = np.zeros(self.n_bins)  # their element-wise minimum
        self.current_min = np.full(self.n_bins, np.inf)  # minimum of the running sub-window
        self.current_count = 0
        self.slot = 0
        self.presence = np.zeros(self.n_bins)  # p
        self.noise_psd = np.zeros(self.n_bins)  # lambda
        self.prev_snr = np.ones(self.n_bins)  # G_prev^2 gamma_prev

    def _warm_up(self, power: np.ndarray) -> np.ndarray:
        """Noise estimate of the stream's first frames: the running minimum of the smoothed periodogram.

        A minimum is safe both ways: in noise it is a few dB low and MCRA raises it within a few hops;
        when speech starts at once it does not take speech for noise. Frames still padded with the
        STFT's leading zeros are skipped. Runs once per stream, over at most ``WARMUP_S``.
        """
        noise = np.empty_like(power)
        for i, frame in enumerate(power):
            if self.frames_seen == self.partial_frames:
                self.smoothed = frame.copy()
                self._warm_min = frame + EPS
            elif self.frames_seen > self.partial_frames:
                self.smoothed = self.a_s * self.smoothed + (1 - self.a_s) * frame
                np.minimum(self._warm_min, self.smoothed + EPS, out=self._warm_min)
            noise[i] = self._warm_min if self.frames_seen >= self.partial_frames else frame + EPS
            self.frames_seen += 1
        self.minima[:] = self._warm_min
        self.minima_floor = self._warm_min.copy()
        self.noise_psd = noise[-1].copy()
        return noise

    def _track_minimum(self, smoothed: np.ndarray, window_frames: int) -> np.ndarray:
        """Running minimum of ``smoothed`` (frames, K) over about ``window_frames`` past frames.

        Martin's scheme: the window is cut into sub-windows; the minimum is that of the finished
        sub-windows and of the running one. Vectorized per sub-window segment of the call.
        """
        sub_len = max(1, round(window_frames / SUBWINDOWS))
        out = np.empty_like(smoothed)
        t = 0
        while t < smoothed.shape[0]:
            n = min(smoothed.shape[0] - t, max(sub_len - self.current_count, 1))
            running = np.minimum.accumulate(smoothed[t : t + n], axis=0)
            np.minimum(running, self.current_min, out=running)
            np.minimum(running, self.minima_floor, out=out[t : t + n])
            self.current_min = running[-1]
            self.current_count += n
            if self.current_count >= sub_len:
                self.minima[self.slot] = self.current_min
                self.slot = (self.slot + 1) % SUBWINDOWS
                self.minima_floor = self.minima.min(axis=0)
                self.current_min = np.full(self.n_bins, np.inf)
                self.current_count = 0
            t += n
        return out

    def noise_estimate(self, power: np.ndarray, noise_window_s: float) -> np.ndarray:
        """Update the MCRA noise PSD with frames ``power`` (frames, K); return lambda per frame."""
        warmup_frames = self.partial_frames + max(1, round(self.WARMUP_S / self.hop_s))
        if self.frames_seen < warmup_frames:
            n = min(warmup_frames - self.frames_seen, power.shape[0])
            first = self._warm_up(power[:n])
            if n == power.shape[0]:
                return first
            return np.concatenate([first, self.noise_estimate(power[n:], noise_window_s)])
        smoothed, _ = lfilter([1 - self.a_s], [1, -self.a_s], power, axis=0, zi=(self.a_s * self.smoothed)[None])
        self.smoothed = smoothed[-1].copy()
        minimum = self._track_minimum(smoothed, round(noise_window_s / self.hop_s))
        indicator = (smoothed > self.DELTA * minimum).astype(np.float64)
        presence, _ = lfilter([1 - self.a_p], [1, -self.a_p], indicator, axis=0, zi=(self.a_p * self.presence)[None])
        self.presence = presence[-1].copy()
        keep = self.a_d + (1 - self.a_d) * presence  # a~ per frame and bin
        update = (1 - keep) * power
        noise = np.empty_like(power)
        previous = self.noise_psd
        for start in range(0, power.shape[0], self.RECURSION_BLOCK):
            block = slice(start, start + self.RECURSION_BLOCK)
            noise[block] = _first_order_recursion(keep[block], update[block], previous)
            previous = noise[block][-1]
        self.noise_psd = previous.copy()
        return noise

    def gains(self, power: np.ndarray, settings: NoiseReductionSettings) -> np.ndarray:
        """Real gains in [floor, 1] for frames ``power`` = |Y|^2, shape (frames, K)."""
        noise = self.noise_estimate(power, settings.noise_window_s)
        floor = 10.0 ** (settings.floor_db / 20.0)
        a_dd = math.exp(-self.hop_s / (settings.smoothing_ms / 1000.0))
        beta = settings.oversubtraction
        gamma = power / (noise + EPS)
        fresh = (1 - a_dd) * np.maximum(gamma - 1.0, 0.0)
        decayed_gamma = a_dd * gamma
        out = np.empty_like(power)
        xi = a_dd * self.prev_snr + fresh[0]
        denom = np.empty(self.n_bins)
        last = power.shape[0] - 1
        for t in range(power.shape[0]):  # in-place ufuncs: this loop is the pipeline's hot spot
            g = out[t]
            np.add(xi, beta, out=denom)
            np.divide(xi, denom, out=g)
            np.maximum(g, floor, out=g)
            if t < last:  # xi of the next frame: a_dd G^2 gamma + (1 - a_dd) max(gamma' - 1, 0)
                np.multiply(g, g, out=xi)
                np.multiply(xi, decayed_gamma[t], out=xi)
                np.add(xi, fresh[t + 1], out=xi)
        prev = out[last] ** 2 * gamma[last]
        self.prev_snr = prev
        return out
