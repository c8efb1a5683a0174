"""Mains-hum removal: narrow notches of finite depth at the hum harmonics that are actually present.

Each notch is ``H = 1 - r H_peak`` with ``H_peak`` scipy's ``iirpeak`` band-pass (unit gain and zero
phase at the centre) and ``r = 1 - g``, so the notch reaches exactly ``g`` (the depth) at the harmonic,
is 1 far from it, and ``g = 1`` (0 dB depth) is the identity. The notches are a cascade, each computed
as ``y = u - r * peak(u)``: the band-pass state does not depend on the depth, and ``r`` moves to a new
depth in a linear ramp of at most ``RAMP_S`` (20 ms), so that a depth change, and notches switched off
(depth 0) and on again, fade instead of stepping: switching the notches of a steady hum straight off
steps the waveform by the hum's amplitude (a click). A notch switched on, or put on a newly detected
harmonic, starts from rest, whose output builds up smoothly; one on a harmonic no longer detected
(hum weak there) leaves at once.

Notches cost speech quality even when narrow (about 2 % of the speech energy below 1 kHz for twenty
2 Hz notches at 10 dB), so the bank notches only what it hears: every 0.5 s block (2 Hz resolution,
so 50 and 60 Hz harmonics fall on exact bins) scores each harmonic's peak against the median of its
spectral neighbourhood; scores are smoothed over blocks; the mains frequency (50 or 60 Hz) is the one
whose harmonics stand out most, and a harmonic is notched while its smoothed score exceeds
``detect_db`` in two successive blocks (hum persists, a held vowel moves on), provided at least three
harmonics do (one lone peak is a voice or a tone).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import iirpeak, lfilter, sosfilt

from feedback_env.cache import SharedCache

CANDIDATES_HZ = (50.0, 60.0)
NEIGHBOUR_BINS = np.array([-6, -5, -4, -3, 3, 4, 5, 6])  # 6-12 Hz either side, clear of the peak


class HumRemover:
    """Stateful, self-detecting notch bank.

    :param sample_rate: Hz.
    :param max_harmonic_hz: highest harmonic considered (mains buzz reaches about 1 kHz).
    :param detect_db: smoothed peak-to-neighbourhood ratio above which a harmonic is notched.
    """

    BLOCK_S = 0.5
    RAMP_S = 0.02  # a notch's residual r moves at most from 0 to 1 in this time
    SCORE_SMOOTHING = 0.6  # weight of the past per block
    MIN_HARMONICS = 3  # mains hum shows at least this many harmonics

    def __init__(self, sample_rate: int, max_harmonic_hz: float = 1000.0, detect_db: float = 6.0):
        self.sample_rate = sample_rate
        self.max_harmonic_hz = min(max_harmonic_hz, 0.45 * sample_rate)
        self.detect_db = detect_db
        self.block = int(round(self.BLOCK_S * sample_rate))
        self._window = np.hanning(self.block)
        resolution = sample_rate / self.block
        self._harmonics = {m: np.arange(1, int(self.max_harmonic_hz // m) + 1) * m for m in CANDIDATES_HZ}
        self._bins = {m: np.round(h / resolution).astype(int) for m, h in self._harmonics.items()}
        self._ramp_step = 1.0 / (self.RAMP_S * sample_rate)  # largest change of r per sample
        self._bank_cache = SharedCache(256)  # band-pass designs: a search asks for a new width each time
        self._score_cache = SharedCache(16)  # block scores: every replay of a chunk analyses the same blocks
        self.reset()

    def reset(self) -> None:
        self.scores_db = {m: np.zeros(h.size) for m, h in self._harmonics.items()}
        self._above = {m: np.zeros(h.size, dtype=bool) for m, h in self._harmonics.items()}
        self.active_hz = np.zeros(0)  # harmonics detected now
        self._analysis = np.zeros(self.block)
        self._filled = 0
        self._notch_hz = np.zeros(0)  # notches in the cascade: the active ones and those fading out
        self._residual = np.zeros(0)  # their r = 1 - g now
        self._zi = np.zeros((0, 2))  # their band-pass states

    @property
    def mains_hz(self) -> float | None:
        """The detected mains frequency, or None while no harmonic is notched."""
        if self.active_hz.size == 0:
            return None
        return min(CANDIDATES_HZ, key=lambda m: np.abs(self.active_hz / m - np.round(self.active_hz / m)).sum())

    def bank(self, harmonics_hz: np.ndarray, width_hz: float) -> np.ndarray:
        """``iirpeak`` band-pass second-order sections at ``harmonics_hz``, shape (len, 6)."""
        key = (tuple(harmonics_hz), round(width_hz, 6))
        sos = self._bank_cache.get(key)
        if sos is None:
            rows = [np.concatenate(iirpeak(f0, f0 / width_hz, fs=self.sample_rate)) for f0 in harmonics_hz]
            sos = self._bank_cache.put(key, np.array(rows).reshape(-1, 6))
        return sos

    def block_scores(self, block: np.ndarray) -> dict[float, np.ndarray]:
        """Peak-to-neighbourhood ratio in dB of each candidate's harmonics in ``block`` (``self.block``
        samples), before smoothing: ``{mains_hz: (harmonics,)}``. Memoized on the block's samples."""
        key = block.tobytes()
        scores = self._score_cache.get(key)
        if scores is None:
            power = np.abs(np.fft.rfft(block * self._window)) ** 2 + 1e-20
            scores = {}
            for mains, bins in self._bins.items():
                neighbours = np.clip(bins[:, None] + NEIGHBOUR_BINS[None, :], 0, power.size - 1)
                scores[mains] = 10.0 * np.log10(power[bins] / np.median(power[neighbours], axis=1))
            self._score_cache.put(key, scores)
        return scores

    def _analyse(self) -> None:
        """Update the harmonic scores from the analysis block and choose the harmonics to notch."""
        s = self.SCORE_SMOOTHING
        for mains, score in self.block_scores(self._analysis).items():
            self.scores_db[mains] = s * self.scores_db[mains] + (1 - s) * score
        mains = max(CANDIDATES_HZ, key=lambda m: np.sort(self.scores_db[m])[-self.MIN_HARMONICS :].sum())
        above = {m: self.scores_db[m] > self.detect_db for m in CANDIDATES_HZ}
        steady = above[mains] & self._above[mains]  # hum persists; a held vowel moves on
        self._above = above
        active = self._harmonics[mains][steady]
        if active.size < self.MIN_HARMONICS:  # a lone peak is a voice or a tone, not mains hum
            active = np.zeros(0)
        self.active_hz = active

    def _notch(self, x: np.ndarray, residual: float, width_hz: float) -> np.ndarray:
        """Run ``x`` through the cascade; each notch's r moves towards ``residual`` (0 when switched off)."""
        # a harmonic no longer heard leaves at once; a new one joins (only while switched on) at full depth,
        # from rest; the others keep their state and r
        present = self.active_hz if residual > 0.0 else self._notch_hz[np.isin(self._notch_hz, self.active_hz)]
        index = {f: k for k, f in enumerate(self._notch_hz)}
        self._residual = np.array([self._residual[index[f]] if f in index else residual for f in present])
        self._zi = np.array([self._zi[index[f]] if f in index else np.zeros(2) for f in present]).reshape(-1, 2)
        self._notch_hz = present
        sos = self.bank(self._notch_hz, width_hz)
        ramp = min(x.size, int(np.ceil(np.max(np.abs(residual - self._residual), initial=0.0) / self._ramp_step)))
        y = np.empty_like(x)
        if ramp:  # one section at a time, r moving sample by sample
            steps = self._ramp_step * np.arange(1, ramp + 1)
            u = x[:ramp].copy()
            for k in range(sos.shape[0]):
                peak, self._zi[k] = lfilter(sos[k, :3], sos[k, 3:], u, zi=self._zi[k])  # lighter than sosfilt per call
                change = residual - self._residual[k]
                trajectory = self._residual[k] + np.sign(change) * np.minimum(steps, abs(change))
                u -= trajectory * peak
                self._residual[k] = residual if steps[-1] >= abs(change) else trajectory[-1]
            y[:ramp] = u
        keep = self._residual > 0.0  # a notch faded out to 0 leaves the cascade
        self._notch_hz, self._residual, self._zi, sos = self._notch_hz[keep], self._residual[keep], self._zi[keep], sos[keep]
        if ramp < x.size and not self._notch_hz.size:
            y[ramp:] = x[ramp:]
        elif ramp < x.size:  # r constant (> 0): all sections at once, as ``(a - r b, a)`` whose state is ``-r`` times the band-pass state
            r = self._residual[:, None]
            combined = np.concatenate([sos[:, 3:] - r * sos[:, :3], sos[:, 3:]], axis=1)
            y[ramp:], state = sosfilt(combined, x[ramp:], zi=-r * self._zi)
            self._zi = -state / r
        return y

    def process(self, x: np.ndarray, depth_db: float, width_hz: float) -> np.ndarray:
        """Notch ``x`` (float64, any length); ``depth_db`` at each notch (0 = off), ``width_hz`` -3 dB width."""
        out = np.empty_like(x)
        residual = 1.0 - 10.0 ** (-depth_db / 20.0)
        pos = 0
        while pos < x.size:
            n = min(x.size - pos, self.block - self._filled)
            segment = x[pos : pos + n]
            if (residual > 0.0 and self.active_hz.size) or self._notch_hz.size:
                out[pos : pos + n] = self._notch(segment, residual, width_hz)
            else:
                out[pos : pos + n] = segment
            self._analysis[self._filled : self._filled + n] = segment
            self._filled += n
            if self._filled == self.block:
                self._analyse()
                self._filled = 0
            pos += n
        return out
