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
2 Hz notches at 10 dB), so the bank notches only what it hears: every 0.5 s block (2 Hz resolution)
scores each harmonic (its nearest bin to k times the tracked fundamental, below) against the median of its
spectral neighbourhood; scores are smoothed over blocks; the mains frequency (50 or 60 Hz) is the one
whose harmonics stand out most, and a harmonic is notched while its smoothed score exceeds
``detect_db`` in two successive blocks (hum persists, a held vowel moves on), provided at least three
harmonics do (one lone peak is a voice or a tone).

Mains frequency is not exactly 50 or 60 Hz: grids hold it within about +-0.2 Hz in normal operation and it
wanders slowly.
A notch 2 Hz wide at 30 dB keeps only about 20 dB at 0.1 Hz off its centre, and the k-th harmonic is k
times further off, so notches at exact multiples of 50 Hz lose most of their depth above the first few
harmonics. The bank therefore tracks the fundamental: while hum is notched, every block measures the
frequency of each notched harmonic's peak (parabolic interpolation of the log power on a 4x zero-padded
spectrum, 0.5 Hz bins) within +-1.5 Hz of where the fundamental puts it, and the fundamental becomes
their least-squares fit ``f_k = k f0`` (weights ``k^2 x`` the peak's prominence: a high harmonic pins f0
more finely), kept within ``MAX_OFFSET_HZ`` of the nominal mains. On the first block of a hum the fit is
repeated from its own result (a high harmonic starts too far from k times the nominal to be found at once);
afterwards a fit more than ``MAX_DRIFT_HZ`` from the last is not believed (other lines, such as a fan's
tones, took over as the hum stopped). Notches and block scores follow ``k f0``; the fundamental's drift
over the last blocks is extrapolated one block ahead, to the middle of the block the new notches will
filter. Without hum the fundamental stays where it was last tracked (nominal from a reset), so a stream
that never had hum is processed exactly as by notches at exact multiples.

A notch also costs the speech near its harmonic: a component ``d`` Hz off a notch of width ``w`` is
shifted in phase and leaves the notch's band-pass ringing after it, an error of ``1 / (1 + (2d / w)^2)`` of
its power, which a strong vowel harmonic a few hertz from a weak hum line makes far larger than the hum
removed. So each detected harmonic's notch is weighed every block: what it would take (the padded power
within ``LINE_REACH_HZ`` weighted by that response) against its least over the last ``LINE_HISTORY``
blocks, the steady hum; the excess is other sound. A notch gives way (fades out in ``RAMP_S``) for the next
block when that sound exceeds ``SPEECH_TO_HUM`` times the hum it would remove (corrected for the share of a
line's windowed power a narrow notch counts): the next block is where it acts, and speech near a harmonic
in one block has often moved on by the next, where the hum has not (the ratio was chosen on the built-in hum
clips' objective at the default parameters: lower ratios give up notches that low-SNR clips needed).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import iirpeak, lfilter, sosfilt

from feedback_env.cache import SharedCache

CANDIDATES_HZ = (50.0, 60.0)
NEIGHBOUR_BINS = np.array([-6, -5, -4, -3, 3, 4, 5, 6])  # 6-12 Hz either side, clear of the peak


class HumRemover:
    """Stateful, self-detecting notch bank that tracks the mains fundamental.

    :param sample_rate: Hz.
    :param max_harmonic_hz: highest harmonic considered (mains buzz reaches about 1 kHz).
    :param detect_db: smoothed peak-to-neighbourhood ratio above which a harmonic is notched.
    """

    BLOCK_S = 0.5
    RAMP_S = 0.02  # a notch's residual r moves at most from 0 to 1 in this time
    SCORE_SMOOTHING = 0.6  # weight of the past per block
    MIN_HARMONICS = 3  # mains hum shows at least this many harmonics
    PAD = 4  # zero-padding of the block for measuring peak frequencies (0.5 Hz bins)
    SEARCH_HZ = 1.5  # a harmonic's peak is looked for this far either side of k * f0
    MAX_OFFSET_HZ = 1.0  # the fundamental stays this close to the nominal 50 or 60 Hz
    MAX_PROMINENCE = 1e3  # a peak's weight in the fit saturates at 30 dB over its neighbourhood
    DRIFT_SMOOTHING = 0.5  # weight of the past in the fundamental's drift per block
    ACQUIRE_PASSES = 4  # refits on the first block of a hum
    MAX_DRIFT_HZ = 0.1  # largest change of a locked fundamental per block (0.2 Hz/s, well above a grid's wander)
    LINE_HISTORY = 3  # blocks over which a harmonic's hum level is the least its notch would take (a sound held longer counts as hum)
    LINE_REACH_HZ = 25.0  # spectrum either side of a harmonic that a notch's take is summed over
    SPEECH_TO_HUM = 4.0  # a notch gives way when the sound near its harmonic exceeds the hum there by this power ratio

    def __init__(self, sample_rate: int, max_harmonic_hz: float = 1000.0, detect_db: float = 6.0):
        self.sample_rate = sample_rate
        self.max_harmonic_hz = min(max_harmonic_hz, 0.45 * sample_rate)
        self.detect_db = detect_db
        self.block = int(round(self.BLOCK_S * sample_rate))
        self._window = np.hanning(self.block)
        self._resolution = sample_rate / self.block
        self._orders = {m: np.arange(1, int(self.max_harmonic_hz // m) + 1) for m in CANDIDATES_HZ}  # harmonic numbers
        self._ramp_step = 1.0 / (self.RAMP_S * sample_rate)  # largest change of r per sample
        self._padded_step = sample_rate / (self.PAD * self.block)
        self._line_reach = int(np.ceil(self.LINE_REACH_HZ / self._padded_step))  # padded bins
        self._kernel = (np.abs(np.fft.rfft(self._window, self.PAD * self.block)) ** 2)[: self._line_reach + 1]  # a line's spread
        self._bank_cache = SharedCache(256)  # band-pass designs and line shares: a search asks for a new width each time
        self._score_cache = SharedCache(16)  # block scores: every replay of a chunk analyses the same blocks
        self._peak_cache = SharedCache(16)  # padded block spectra, likewise
        self._analysis_cache = SharedCache(16)  # what analysing a block from a state leads to, likewise
        self.reset()

    # what :meth:`_analyse_block` changes; a function of the blocks analysed since the reset (not of the notch settings)
    ANALYSIS_STATE = ("scores_db", "_above", "fundamental", "_drift", "_mains", "active_orders", "_line_history")

    def reset(self) -> None:
        self._lineage = 0  # the blocks analysed since the reset, hashed: copies with equal lineage analyse alike
        self.scores_db = {m: np.zeros(k.size) for m, k in self._orders.items()}
        self._above = {m: np.zeros(k.size, dtype=bool) for m, k in self._orders.items()}
        self.fundamental = {m: m for m in CANDIDATES_HZ}  # tracked f0 per candidate, Hz
        self._drift = {m: 0.0 for m in CANDIDATES_HZ}  # its smoothed change per block, Hz
        self._mains: float | None = None
        self.active_orders = np.zeros(0, dtype=int)  # harmonic numbers detected now
        self.notched_orders = np.zeros(0, dtype=int)  # those of them notched in the last block (hum dominates there)
        self._line_history: list[tuple[np.ndarray, np.ndarray]] = []  # (first bin, power excerpt) per order, per block
        self._analysis = np.zeros(self.block)
        self._filled = 0
        self._notch_orders = np.zeros(0, dtype=int)  # notches in the cascade: the notched ones and those fading out
        self._residual = np.zeros(0)  # their r = 1 - g now
        self._zi = np.zeros((0, 2))  # their band-pass states

    @property
    def mains_hz(self) -> float | None:
        """The detected nominal mains frequency (50 or 60), or None while no harmonic is detected."""
        return self._mains if self.active_orders.size else None

    @property
    def active_hz(self) -> np.ndarray:
        """Centre frequencies of the harmonics detected now, Hz (:attr:`notched_orders` says which are notched)."""
        return self.active_orders * self._centre() if self.active_orders.size else np.zeros(0)

    def _centre(self) -> float:
        """The fundamental the notches sit on: the tracked one, extrapolated one block ahead (it was measured
        on a block centred half a block before the notches start, and they filter the next block)."""
        m = self._mains
        return 0.0 if m is None else float(np.clip(self.fundamental[m] + self._drift[m], m - self.MAX_OFFSET_HZ, m + self.MAX_OFFSET_HZ))

    def bank(self, harmonics_hz: np.ndarray, width_hz: float) -> np.ndarray:
        """``iirpeak`` band-pass second-order sections at ``harmonics_hz``, shape (len, 6)."""
        key = (tuple(harmonics_hz), round(width_hz, 6))
        sos = self._bank_cache.get(key)
        if sos is None:
            rows = [np.concatenate(iirpeak(f0, f0 / width_hz, fs=self.sample_rate)) for f0 in harmonics_hz]
            sos = self._bank_cache.put(key, np.array(rows).reshape(-1, 6))
        return sos

    def block_scores(self, block: np.ndarray) -> dict[float, np.ndarray]:
        """Peak-to-neighbourhood ratio in dB of each candidate's harmonics ``k f0`` (f0 as tracked) in
        ``block`` (``self.block`` samples), before smoothing: ``{mains_hz: (harmonics,)}``. Memoized."""
        key = (block.tobytes(), tuple(self.fundamental.values()))
        scores = self._score_cache.get(key)
        if scores is None:
            power = np.abs(np.fft.rfft(block * self._window)) ** 2 + 1e-20
            scores = {}
            for mains, orders in self._orders.items():
                bins = np.round(orders * self.fundamental[mains] / self._resolution).astype(int)
                neighbours = np.clip(bins[:, None] + NEIGHBOUR_BINS[None, :], 0, power.size - 1)
                scores[mains] = 10.0 * np.log10(power[bins] / np.median(power[neighbours], axis=1))
            self._score_cache.put(key, scores)
        return scores

    def padded_log_power(self, block: np.ndarray) -> np.ndarray:
        """Log power spectrum of ``block`` (``self.block`` samples, Hann window) zero-padded ``PAD`` times:
        bins ``sample_rate / (PAD * block)`` apart (0.5 Hz). Memoized; read-only."""
        key = block.tobytes()
        log_power = self._peak_cache.get(key)
        if log_power is None:
            spectrum = np.fft.rfft(block * self._window, self.PAD * self.block)
            log_power = np.log(spectrum.real**2 + spectrum.imag**2 + 1e-30)
            log_power.flags.writeable = False  # shared by every replay's copy
            self._peak_cache.put(key, log_power)
        return log_power

    def peak_frequencies(self, block: np.ndarray, expected_hz: np.ndarray) -> np.ndarray:
        """Frequency (Hz) of the spectral peak of ``block`` within ``SEARCH_HZ`` of each of ``expected_hz``:
        the largest bin of the zero-padded power there, refined by a parabola through the log power of it
        and its two neighbours."""
        log_power = self.padded_log_power(block)
        step = self._padded_step
        reach = int(np.ceil(self.SEARCH_HZ / step))
        centres = np.round(expected_hz / step).astype(int)
        window = np.clip(centres[:, None] + np.arange(-reach, reach + 1)[None, :], 1, log_power.size - 2)
        top = window[np.arange(window.shape[0]), np.argmax(log_power[window], axis=1)]
        left, mid, right = log_power[top - 1], log_power[top], log_power[top + 1]
        curvature = left - 2.0 * mid + right
        offset = np.where(curvature < 0.0, 0.5 * (left - right) / np.where(curvature < 0.0, curvature, -1.0), 0.0)
        return (top + np.clip(offset, -0.5, 0.5)) * step

    def _line_excerpt(self, harmonics_hz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The analysis block's padded power within ``LINE_REACH_HZ`` of each of ``harmonics_hz``: the first
        bin of each excerpt, shape (harmonics,), and the power, shape (harmonics, bins)."""
        log_power = self.padded_log_power(self._analysis)
        first = np.round(harmonics_hz / self._padded_step).astype(int) - self._line_reach
        index = np.clip(first[:, None] + np.arange(2 * self._line_reach + 1)[None, :], 0, log_power.size - 1)
        return first, np.exp(log_power[index])

    @staticmethod
    def _response(offset_hz: np.ndarray, width_hz: float) -> np.ndarray:
        """Power response of a notch's band-pass ``offset_hz`` from its centre: ``1 / (1 + (2 offset / width)^2)``."""
        return 1.0 / (1.0 + (2.0 * offset_hz / width_hz) ** 2)

    def _take(self, first: np.ndarray, power: np.ndarray, harmonics_hz: np.ndarray, width_hz: float) -> np.ndarray:
        """What a notch of ``width_hz`` at each of ``harmonics_hz`` takes from an excerpt: the power weighted
        by its band-pass's :meth:`_response`, shape (harmonics,)."""
        offset = (first[:, None] + np.arange(power.shape[1])[None, :]) * self._padded_step - harmonics_hz[:, None]
        return np.sum(power * self._response(offset, width_hz), axis=1)

    def _line_share(self, width_hz: float) -> float:
        """The fraction of a steady line's windowed power that :meth:`_take` counts for a notch centred on it
        (the Hann window spreads a line over about 3 Hz, more than a narrow notch takes)."""
        key = ("share", round(width_hz, 6))
        share = self._bank_cache.get(key)
        if share is None:
            offset = np.arange(-self._kernel.size + 1, self._kernel.size) * self._padded_step
            kernel = np.concatenate([self._kernel[:0:-1], self._kernel])
            share = self._bank_cache.put(key, float(np.sum(kernel * self._response(offset, width_hz)) / np.sum(kernel)))
        return share

    def _hum_dominated(self, width_hz: float) -> np.ndarray:
        """Which detected harmonics to notch at ``width_hz``, judged on the last block analysed: those where the
        other sound a notch would take is at most ``SPEECH_TO_HUM`` times the hum. A harmonic's hum is the least
        its notch would have taken over the last ``LINE_HISTORY`` blocks (hum is steady, speech comes and goes);
        what the notch takes above that is speech or other sound near the harmonic, which it would distort."""
        orders = self.active_orders
        if not self._line_history:
            return np.ones(orders.size, dtype=bool)
        position = np.searchsorted(self._orders[self._mains], orders)
        harmonics_hz = orders * self._centre()
        takes = np.array([self._take(first[position], power[position], harmonics_hz, width_hz)
                          for first, power in self._line_history])  # fmt: skip
        hum = takes.min(axis=0)
        speech_to_hum = (takes[-1] / np.maximum(hum, 1e-30) - 1.0) * self._line_share(width_hz)
        return speech_to_hum <= self.SPEECH_TO_HUM

    def _fit(self, mains: float, orders: np.ndarray, weight: np.ndarray, f0: float) -> float | None:
        """The fundamental fitted to the peaks found near ``orders * f0`` in the analysis block, or None when
        fewer than ``MIN_HARMONICS`` peaks agree."""
        measured = self.peak_frequencies(self._analysis, orders * f0) / orders  # each harmonic's say on f0
        keep = np.abs(measured - np.median(measured)) <= 0.1  # a voice's harmonic beside a weak hum line points elsewhere
        if keep.sum() < self.MIN_HARMONICS:
            return None
        fitted = np.sum(weight[keep] * measured[keep]) / np.sum(weight[keep])
        return float(np.clip(fitted, mains - self.MAX_OFFSET_HZ, mains + self.MAX_OFFSET_HZ))

    def _track(self, mains: float, orders: np.ndarray, prominence_db: np.ndarray) -> None:
        """Refit the fundamental of ``mains`` to the measured peaks of its notched harmonics ``orders``: from
        the last fit when locked on, and again from each new fit while acquiring (a high harmonic starts
        too far from where the nominal fundamental puts it to be found at once)."""
        weight = orders**2 * np.minimum(10.0 ** (prominence_db / 10.0), self.MAX_PROMINENCE)
        f0 = self.fundamental[mains]
        locked = self._mains == mains and self.active_orders.size > 0
        fitted = self._fit(mains, orders, weight, f0)
        for _ in range(0 if locked else self.ACQUIRE_PASSES):
            again = None if fitted is None else self._fit(mains, orders, weight, fitted)
            if again is None or abs(again - fitted) < 1e-4:
                break
            fitted = again
        if fitted is None or (locked and abs(fitted - f0) > self.MAX_DRIFT_HZ):  # mains cannot jump: other lines
            return
        if locked:  # the change is drift
            d = self.DRIFT_SMOOTHING
            self._drift[mains] = d * self._drift[mains] + (1.0 - d) * (fitted - f0)
        else:  # the change is where the fundamental was all along
            self._drift[mains] = 0.0
        self.fundamental[mains] = fitted

    def _analyse(self) -> None:
        """:meth:`_analyse_block`, memoized on the lineage and the block: a search's replays of a chunk all
        analyse its blocks from the same state, whatever their notch settings."""
        key = (self._lineage, self._analysis.tobytes())
        state = self._analysis_cache.get(key)
        if state is None:
            self._analyse_block()
            state = self._analysis_cache.put(key, {name: _shallow(getattr(self, name)) for name in self.ANALYSIS_STATE})
        else:
            if self._mains is not None and state["_mains"] != self._mains:
                self._drop_notches()
            for name, value in state.items():  # the arrays are replaced, never changed in place: shared safely
                setattr(self, name, _shallow(value))
        self._lineage = hash(key)

    def _drop_notches(self) -> None:
        """Notches of the other mains leave at once."""
        self._notch_orders = np.zeros(0, dtype=int)
        self._residual, self._zi = np.zeros(0), np.zeros((0, 2))

    def _analyse_block(self) -> None:
        """Update the harmonic scores from the analysis block, choose the harmonics to notch and track the
        fundamental of the mains chosen."""
        s = self.SCORE_SMOOTHING
        block_scores = self.block_scores(self._analysis)
        for mains, score in block_scores.items():
            self.scores_db[mains] = s * self.scores_db[mains] + (1 - s) * score
        mains = max(CANDIDATES_HZ, key=lambda m: np.sort(self.scores_db[m])[-self.MIN_HARMONICS :].sum())
        above = {m: self.scores_db[m] > self.detect_db for m in CANDIDATES_HZ}
        steady = above[mains] & self._above[mains]  # hum persists; a held vowel moves on
        self._above = above
        active = self._orders[mains][steady]
        if active.size < self.MIN_HARMONICS:  # a lone peak is a voice or a tone, not mains hum
            active = np.zeros(0, dtype=int)
        else:
            self._track(mains, active, block_scores[mains][steady])
        if self._mains is not None and mains != self._mains:
            self._drop_notches()
            self._line_history = []
        self._mains = mains
        self.active_orders = active
        if active.size:  # what each harmonic's notch would take is judged against the last blocks
            self._line_history = [*self._line_history, self._line_excerpt(self._orders[mains] * self._centre())][-self.LINE_HISTORY :]
        else:
            self._line_history = []

    def _notch(self, x: np.ndarray, residual: float, width_hz: float) -> np.ndarray:
        """Run ``x`` through the cascade; each notch's r moves towards ``residual`` where hum dominates its
        harmonic, towards 0 elsewhere and when switched off."""
        # a harmonic no longer heard leaves at once; a new one joins (only while switched on) at full depth,
        # from rest; the others keep their state and r (their centres follow the fundamental), and one whose
        # harmonic speech now dominates fades out
        on = self.active_orders[self._hum_dominated(width_hz)] if residual > 0.0 else np.zeros(0, dtype=int)
        self.notched_orders = on
        present = np.union1d(on, self._notch_orders[np.isin(self._notch_orders, self.active_orders)])
        target = np.where(np.isin(present, on), residual, 0.0)
        index = {k: i for i, k in enumerate(self._notch_orders)}
        self._residual = np.array([self._residual[index[k]] if k in index else residual for k in present])
        self._zi = np.array([self._zi[index[k]] if k in index else np.zeros(2) for k in present]).reshape(-1, 2)
        self._notch_orders = present
        sos = self.bank(np.round(self._notch_orders * self._centre(), 6), width_hz)
        ramp = min(x.size, int(np.ceil(np.max(np.abs(target - self._residual), initial=0.0) / self._ramp_step)))
        y = np.empty_like(x)
        if ramp:  # one section at a time, r moving sample by sample
            steps = self._ramp_step * np.arange(1, ramp + 1)
            u = x[:ramp].copy()
            for k in range(sos.shape[0]):
                peak, self._zi[k] = lfilter(sos[k, :3], sos[k, 3:], u, zi=self._zi[k])  # lighter than sosfilt per call
                change = target[k] - self._residual[k]
                trajectory = self._residual[k] + np.sign(change) * np.minimum(steps, abs(change))
                u -= trajectory * peak
                self._residual[k] = target[k] if steps[-1] >= abs(change) else trajectory[-1]
            y[:ramp] = u
        keep = self._residual > 0.0  # a notch faded out to 0 leaves the cascade
        self._notch_orders, self._residual, self._zi, sos = self._notch_orders[keep], self._residual[keep], self._zi[keep], sos[keep]
        if ramp < x.size and not self._notch_orders.size:
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
            if (residual > 0.0 and self.active_orders.size) or self._notch_orders.size:
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


def _shallow(value):
    """A dict copied one level deep (its arrays and floats shared), anything else as it is."""
    return dict(value) if isinstance(value, dict) else value
