"""One registry of named audio-quality metrics, each a plain function on mono float arrays.

Every metric has the signature ``fn(estimate, reference, sample_rate) -> float``: ``estimate`` and
``reference`` are mono float arrays of shape ``(n,)`` with the same length (``reference`` is ignored,
and may be ``None``, for non-intrusive metrics); ``sample_rate`` is in Hz. Every metric returns a
finite float for any finite input, including silence, DC, full-scale clipping and inputs of a few
samples: the value returned in each degenerate case is given in the metric's docstring and its
:class:`MetricSpec` ``doc``. The functions assume validated input; :func:`compute_metrics` validates
once (NaN/Inf, shape, lengths, rate) and is the entry point for everything else in the package.

========================  =====  ======  ====  ==============  ===========================================
name                      intr.  better  unit  valid_range     degenerate cases
========================  =====  ======  ====  ==============  ===========================================
``si_sdr``                yes    higher  dB    [-100, 100]     clamped; silent ref or estimate: see doc
``snr``                   yes    higher  dB    [-100, 100]     clamped; estimate == reference: +100
``seg_snr``               yes    higher  dB    [-10, 35]       per-frame clamp; input < 30 ms: one frame
``lsd``                   yes    lower   dB    [0, 100]        power floor -100 dB; input < 32 ms: 1 frame
``pesq``                  yes    higher  MOS   [1.0, 4.64]     error / silence / < 0.25 s: 1.0
``stoi``, ``estoi``       yes    higher  -     [-1, 1]         < 30 active frames (~0.4 s speech): 0.0
``wada_snr``              no     higher  dB    [-20, 100]      silence, DC, one sample: -20
``loudness_lufs``         no     higher  LUFS  [-70, 30]       silence: -70; input < 0.4 s: one block
``clipping_ratio``        no     lower   -     [0, 1]          silence: 0
========================  =====  ======  ====  ==============  ===========================================

``valid_range`` is a hard bound: every metric returns values inside it for any finite input (only
audio far beyond full scale reaches the +30 LUFS loudness ceiling). ``loudness_lufs`` is a level, not a
quality: "higher is better" only orders it; give it a target rather than maximizing it. ``cheap`` marks
metrics that take well under 1 ms on a 0.5 s chunk at 16 kHz (``benchmarks/pipeline.py`` measures them).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Callable, Iterable, Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import resample_poly

from feedback_env.audio import SILENCE_RMS, as_audio, check_pipeline_rate, check_same_length, silent_energy
from feedback_env.cache import SharedCache
from feedback_env.errors import MetricError

MetricFn = Callable[[np.ndarray, "np.ndarray | None", int], float]

#: SI-SDR and SNR are clamped to this range (dB); +100 means "estimate equals the target".
SDR_CLAMP_DB = 100.0
#: Segmental SNR per-frame clamp (dB), as in Hansen & Pellom 1998 / Hu & Loizou 2008.
SEG_SNR_MIN_DB, SEG_SNR_MAX_DB = -10.0, 35.0
#: LSD power floor (linear, per-sample power units: -100 dB re a full-scale RMS of 1) and cap (dB).
LSD_POWER_FLOOR, LSD_MAX_DB = 1e-10, 100.0
#: PESQ value returned when PESQ cannot score the input (the bottom of the MOS-LQO scale).
PESQ_UNDEFINED = 1.0
PESQ_MAX = 4.64  # the top of the P.862.2 wide-band MOS-LQO mapping (4.644)
#: STOI/ESTOI value returned when there are fewer than 30 non-silent frames (~0.4 s of speech).
STOI_UNDEFINED = 0.0
#: Loudness floor: BS.1770's absolute gate. Silence and anything quieter read this value (LUFS).
LOUDNESS_FLOOR_LUFS, LOUDNESS_CEIL_LUFS = -70.0, 30.0
#: A sample counts as clipped at or above this absolute value (full scale = 1.0).
CLIP_LEVEL = 0.999
#: ... or inside a run of at least this many identical samples at the signal's own peak.
CLIP_RUN = 3

_TINY = 1e-30  # energies below this are treated as zero (float64)


def _f64(x: np.ndarray | None) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _ratio_db(num: float, den: float, clamp: float) -> float:
    """``10 log10(num / den)`` clamped to ``[-clamp, clamp]`` without dividing by zero."""
    lo, hi = 10.0 ** (-clamp / 10.0), 10.0 ** (clamp / 10.0)
    if num <= den * lo:
        return -clamp
    if num >= den * hi:
        return clamp
    return float(10.0 * np.log10(num / den))


# --------------------------------------------------------------------------- intrusive, cheap
def si_sdr(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., ICASSP 2019).

    ``target = (<e, r> / <r, r>) r``, ``SI-SDR = 10 log10(|target|^2 / |e - target|^2)``; no mean
    removal (the paper assumes zero-mean signals; audio chunks are close to it). Clamped to
    [-100, 100] dB. Degenerate: estimate equal to a scaled reference: +100; silent reference
    (RMS < 1e-7) with a silent estimate: +100 (nothing to get wrong), with a non-silent one: -100;
    silent estimate with a non-silent reference: -100 (muting is the worst output, never a gain).
    """
    e, r = _f64(estimate), _f64(reference)
    n = e.size
    rr, ee = float(np.dot(r, r)), float(np.dot(e, e))
    r_silent, e_silent = silent_energy(rr, n), silent_energy(ee, n)
    if r_silent or e_silent:
        return SDR_CLAMP_DB if (r_silent and e_silent) else -SDR_CLAMP_DB
    alpha = float(np.dot(e, r)) / rr
    target = alpha * r
    noise = e - target
    return _ratio_db(float(np.dot(target, target)), float(np.dot(noise, noise)), SDR_CLAMP_DB)


def snr(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """Plain SNR in dB: ``10 log10(|r|^2 / |r - e|^2)`` (not scale-invariant).

    Clamped to [-100, 100] dB: an estimate identical to the reference (silence included) gives +100;
    a silent reference with a different estimate gives -100. A silent estimate scores 0 dB (the error
    is the reference itself): unlike SI-SDR, plain SNR (and ``seg_snr``) rewards muting very noisy
    input, so do not maximize them alone.
    """
    e, r = _f64(estimate), _f64(reference)
    d = r - e
    dd = float(np.dot(d, d))
    if dd <= _TINY:
        return SDR_CLAMP_DB
    return _ratio_db(float(np.dot(r, r)), dd, SDR_CLAMP_DB)


def _frames(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    """``(n_frames, length)`` view of full frames; a signal shorter than one frame is zero-padded to one."""
    if x.size < length:
        return np.pad(x, (0, length - x.size))[None, :]
    return sliding_window_view(x, length)[::hop]


def seg_snr(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """Segmental SNR in dB, as in Hu & Loizou (2008) ``comp_snr.m`` (after Quackenbush et al. 1988).

    30 ms Hann frames (``0.5 (1 - cos(2 pi k / (L + 1)))``, k = 1..L), hop L/4; per frame
    ``10 log10(|r|^2 / (|r - e|^2 + eps) + eps)`` with eps = 2.2e-16, clamped to [-10, 35] dB, then
    averaged over frames. Silent reference frames therefore count as -10 dB (no VAD), exact frames as
    +35. Input shorter than one frame is scored as one zero-padded frame.
    """
    e, r = _f64(estimate), _f64(reference)
    length = max(1, int(round(0.030 * sample_rate)))
    hop = max(1, length // 4)
    window = 0.5 * (1.0 - np.cos(2.0 * np.pi * np.arange(1, length + 1) / (length + 1)))
    rf = _frames(r, length, hop) * window
    df = (_frames(r - e, length, hop)) * window
    signal = np.einsum("ij,ij->i", rf, rf)
    noise = np.einsum("ij,ij->i", df, df)
    eps = np.finfo(np.float64).eps
    per_frame = 10.0 * np.log10(signal / (noise + eps) + eps)
    return float(np.mean(np.clip(per_frame, SEG_SNR_MIN_DB, SEG_SNR_MAX_DB)))


@lru_cache(maxsize=8)
def _lsd_setup(sample_rate: int) -> tuple[int, int, np.ndarray]:
    length = max(2, int(round(0.032 * sample_rate)))  # 512 at 16 kHz, 256 at 8 kHz, 1536 at 48 kHz
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)  # periodic Hann
    return length, length // 2, window / np.sqrt(np.sum(window**2))


def _log_power_db(x: np.ndarray, sample_rate: int) -> np.ndarray:
    length, hop, window = _lsd_setup(sample_rate)
    spec = np.fft.rfft(_frames(x, length, hop) * window, axis=1)
    power = spec.real**2 + spec.imag**2  # per-sample power units: white noise of variance s2 reads ~s2
    return 10.0 * np.log10(np.maximum(power, LSD_POWER_FLOOR))


_REFERENCE_SPECTRA = SharedCache(8)  # a search scores many candidates against one or two reference chunks
_MEMOIZED_SAMPLES = 2**16  # longer references (whole clips) are not kept: at most ~8 MB in the memo


def _reference_log_power_db(reference: np.ndarray, sample_rate: int) -> np.ndarray:
    """:func:`_log_power_db` memoized on the samples of chunk-length references (hashing them costs a fifth
    of the spectrum)."""
    if reference.size > _MEMOIZED_SAMPLES:
        return _log_power_db(reference, sample_rate)
    key = (reference.tobytes(), sample_rate)
    spectrum = _REFERENCE_SPECTRA.get(key)
    if spectrum is None:
        spectrum = _log_power_db(reference, sample_rate)
        spectrum.flags.writeable = False  # every later call with these samples gets this array
        _REFERENCE_SPECTRA.put(key, spectrum)
    return spectrum


def lsd(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """Log-spectral distance in dB (lower is better): mean over frames of the RMS over frequency of
    ``10 log10 P_ref(t, f) - 10 log10 P_est(t, f)``.

    32 ms periodic-Hann frames, 50 % overlap (full frames only), every rfft bin; powers normalized by the window energy
    and floored at 1e-10 (-100 dB re full scale), so silence against silence is 0 and silence against
    full scale is large but finite; capped at 100 dB. Input shorter than one frame is one
    zero-padded frame. Not level-invariant: a 6 dB gain reads 6 dB. Where the reference has (near)
    digital silence the floor dominates, so on noisy speech LSD mostly measures residual noise in
    pauses: it improves with any suppression, over-suppression included.
    """
    diff = _reference_log_power_db(_f64(reference), sample_rate) - _log_power_db(_f64(estimate), sample_rate)
    per_frame = np.sqrt(np.mean(diff**2, axis=1))
    return float(min(np.mean(per_frame), LSD_MAX_DB))


# --------------------------------------------------------------------------- intrusive, perceptual
def pesq(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """PESQ MOS-LQO (ITU-T P.862.2 wide-band at 16 kHz, P.862.1 narrow-band at 8 kHz) via ``pesq``.

    Other rates are resampled to 16 kHz (``resample_poly``) and scored wide-band. Never raises:
    no utterance in the reference, a silent estimate, input under 0.25 s or any other PESQ error
    gives 1.0, the bottom of the MOS-LQO scale. Results are clipped to [1.0, 4.64].
    """
    from pesq import PesqError
    from pesq import pesq as _pesq

    e, r = _f64(estimate), _f64(reference)
    if sample_rate == 8000:
        mode, rate = "nb", 8000
    else:
        mode, rate = "wb", 16000
        if sample_rate != 16000:
            ratio = Fraction(16000, int(sample_rate))
            e = resample_poly(e, ratio.numerator, ratio.denominator)
            r = resample_poly(r, ratio.numerator, ratio.denominator)
    if r.size < rate // 4 or silent_energy(float(np.dot(r, r)), r.size):
        return PESQ_UNDEFINED
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(_pesq(rate, r, e, mode, on_error=PesqError.RETURN_VALUES))
    except Exception:  # pesq raises ValueError on NaN internals even with RETURN_VALUES
        return PESQ_UNDEFINED
    if not np.isfinite(value) or value < 0:  # RETURN_VALUES gives negative error codes
        return PESQ_UNDEFINED
    return float(min(max(value, PESQ_UNDEFINED), PESQ_MAX))


_STOI_MIN_SAMPLES_10K = 29 * 128 + 256  # 30 frames of 256 samples, hop 128, at pystoi's 10 kHz


def _stoi(estimate: np.ndarray, reference: np.ndarray, sample_rate: int, extended: bool) -> float:
    from pystoi import stoi as _pystoi

    e, r = _f64(estimate), _f64(reference)
    if r.size * 10000 < _STOI_MIN_SAMPLES_10K * sample_rate or silent_energy(float(np.dot(r, r)), r.size):
        return STOI_UNDEFINED
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with np.errstate(all="ignore"):
                value = float(_pystoi(r, e, int(sample_rate), extended=extended))
    except Exception:  # pystoi fails on odd shapes after its own silent-frame removal
        return STOI_UNDEFINED
    if any("Not enough STFT frames" in str(w.message) for w in caught) or not np.isfinite(value):
        return STOI_UNDEFINED
    return float(min(max(value, -1.0), 1.0))


def stoi(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """STOI (Taal et al. 2011) via ``pystoi`` (which resamples to 10 kHz itself), roughly in [0, 1].

    STOI needs 30 non-silent 25.6 ms frames (about 0.4 s of speech within 40 dB of the loudest frame);
    with fewer, or a silent reference, it is undefined and this returns 0.0 (pystoi's warning is
    silenced). 0.0 is never mistaken for a good score, and since the frames kept depend only on the
    reference, a processed and an unprocessed chunk compared with one reference are undefined together.
    """
    return _stoi(estimate, reference, sample_rate, extended=False)


def estoi(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """Extended STOI (Jensen & Taal 2016) via ``pystoi``; same degenerate cases and value as :func:`stoi`."""
    return _stoi(estimate, reference, sample_rate, extended=True)


# --------------------------------------------------------------------------- non-intrusive
# G_z = log(E|z|) - E[log|z|] of speech (Gamma-distributed amplitude, shape alpha = 0.4) in Gaussian
# noise, tabulated against SNR = -20, -19, ..., 100 dB. From Kim & Stern's WADA-SNR reference
# implementation (file "Alpha0.400000.txt" of their MATLAB/C code), as hard-coded in the widely copied
# Python port of it (found verbatim in many public repositories). The table was sampled, hence the
# small non-monotonic wiggle at -17 dB. Sanity check (tests): the ends match the closed forms
# 0.4094 (pure Gaussian noise: (gamma_E + ln 2) / 2 + ln sqrt(2 / pi)) and 1.6451 (pure Gamma
# amplitude: ln(0.4) - digamma(0.4)) to within 0.013.
_WADA_DB = np.arange(-20.0, 101.0)
_WADA_G = np.array([
    0.40974774, 0.40986926, 0.40998566, 0.40969089, 0.40986186, 0.40999006,
    0.41027138, 0.41052627, 0.41101024, 0.41143264, 0.41231718, 0.41337272,
    0.41526426, 0.4178192, 0.42077252, 0.42452799, 0.42918886, 0.43510373,
    0.44234195, 0.45161485, 0.46221153, 0.47491647, 0.48883809, 0.50509236,
    0.52353709, 0.54372088, 0.56532427, 0.58847532, 0.61346212, 0.63954496,
    0.66750818, 0.69583724, 0.72454762, 0.75414799, 0.78323148, 0.81240985,
    0.84219775, 0.87166406, 0.90030504, 0.92880418, 0.95655449, 0.9835349,
    1.01047155, 1.0362095, 1.06136425, 1.08579312, 1.1094819, 1.13277995,
    1.15472826, 1.17627308, 1.19703503, 1.21671694, 1.23535898, 1.25364313,
    1.27103891, 1.28718029, 1.30302865, 1.31839527, 1.33294817, 1.34700935,
    1.3605727, 1.37345513, 1.38577122, 1.39733504, 1.40856397, 1.41959619,
    1.42983624, 1.43958467, 1.44902176, 1.45804831, 1.46669568, 1.47486938,
    1.48269965, 1.49034339, 1.49748214, 1.50435106, 1.51076426, 1.51698915,
    1.5229097, 1.528578, 1.53389835, 1.5391211, 1.5439065, 1.54858517,
    1.55310776, 1.55744391, 1.56164927, 1.56566348, 1.56938671, 1.57307767,
    1.57654764, 1.57980083, 1.58304129, 1.58602496, 1.58880681, 1.59162477,
    1.5941969, 1.59693155, 1.599446, 1.60185011, 1.60408668, 1.60627134,
    1.60826199, 1.61004547, 1.61192472, 1.61369656, 1.61534074, 1.61688905,
    1.61838916, 1.61985374, 1.62135878, 1.62268119, 1.62390423, 1.62513143,
    1.62632463, 1.6274027, 1.62842767, 1.62945532, 1.6303307, 1.63128026,
    1.63204102,
])  # fmt: skip
WADA_MIN_DB, WADA_MAX_DB = float(_WADA_DB[0]), float(_WADA_DB[-1])


def wada_g(x: np.ndarray) -> float:
    """The WADA statistic ``G_z = log(mean |z|) - mean(log |z|)`` of a peak-normalized signal."""
    z = _f64(x)
    z = z - z.mean()
    peak = float(np.max(np.abs(z))) if z.size else 0.0
    if peak < SILENCE_RMS:
        return 0.0
    a = np.maximum(np.abs(z) / peak, 1e-10)
    return float(np.log(max(1e-10, float(a.mean()))) - np.mean(np.log(a)))


def wada_snr(estimate: np.ndarray, reference: np.ndarray | None, sample_rate: int) -> float:
    """Blind SNR estimate in dB by waveform amplitude distribution analysis (Kim & Stern, Interspeech 2008).

    Speech amplitude is modelled as Gamma-distributed (shape 0.4) and noise as Gaussian; the statistic
    ``G_z`` (see :func:`wada_g`, on the mean-removed, peak-normalized signal, |z| floored at 1e-10) is
    mapped to SNR by linear interpolation in the published table (-20..100 dB, 1 dB steps); outside the
    table the end value. Scale-invariant. Degenerate: silence, DC or a single sample give -20 dB (the
    table's floor: "no speech found"). Meant for speech; music or tones read arbitrary values.
    Not a quality measure on its own: it reads the amplitude distribution, so suppressing or muting the
    pauses raises it however much the speech is damaged (heavy noise reduction and a 500 Hz high-pass on
    white_snr+5_f3: 18 -> 46 dB while SI-SDR falls 12.4 -> 4.2 dB), and 0.5 s of digital silence added
    to a clip raises it by tens of dB (``tests/test_metrics.py::test_wada_snr_rewards_suppressed_pauses``).
    """
    g = wada_g(estimate)
    if g <= _WADA_G[0]:
        return WADA_MIN_DB
    if g >= _WADA_G[-1]:
        return WADA_MAX_DB
    i = int(np.argmax(_WADA_G >= g))  # first entry at or above g (>= 1 here)
    g0, g1 = _WADA_G[i - 1], _WADA_G[i]
    return float(_WADA_DB[i - 1] + (g - g0) / (g1 - g0) * (_WADA_DB[i] - _WADA_DB[i - 1]))


@lru_cache(maxsize=8)
def _meter(sample_rate: int):
    import pyloudnorm

    return pyloudnorm.Meter(sample_rate)


def loudness_lufs(estimate: np.ndarray, reference: np.ndarray | None, sample_rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4, K-weighting, gated) via ``pyloudnorm``.

    A 0 dBFS-peak 997 Hz sine reads -3.05 LUFS at 48 kHz, -3.08 at 16 kHz and -3.19 at 8 kHz (BS.1770's
    -3.01 is for 48 kHz within 0.1 LU; pyloudnorm's K-weighting designed at lower rates drifts). Input
    shorter than the 0.4 s gating block is measured as one block of its own length (the K-weighted mean
    square, still gated at -70 LUFS). Silence, and any level below the absolute gate, reads -70.0 LUFS;
    the result is clamped to [-70, 30] LUFS.
    """
    import pyloudnorm

    x = _f64(estimate)
    meter = _meter(int(sample_rate))
    if x.size < meter.block_size * sample_rate:
        meter = pyloudnorm.Meter(int(sample_rate), block_size=x.size / sample_rate * (1.0 - 1e-9))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            value = float(meter.integrated_loudness(x))
    if not np.isfinite(value):
        return LOUDNESS_FLOOR_LUFS if not value > 0 else LOUDNESS_CEIL_LUFS
    return float(min(max(value, LOUDNESS_FLOOR_LUFS), LOUDNESS_CEIL_LUFS))


def clipping_ratio(estimate: np.ndarray, reference: np.ndarray | None, sample_rate: int) -> float:
    """Fraction of clipped samples, in [0, 1] (lower is better).

    A sample is clipped when ``|x| >= 0.999`` (full-scale clipping), or when it lies in a run of at
    least 3 consecutive identical samples whose magnitude is the signal's own peak (hard clipping
    below full scale, e.g. a limiter or a gain stage pinned at 0.5). Silence (peak RMS below 1e-7)
    gives 0. A constant non-zero signal (DC) or a square wave is indistinguishable from a signal
    pinned at a rail and reads 1.0.
    """
    x = _f64(estimate)
    a = np.abs(x)
    clipped = a >= CLIP_LEVEL
    peak = float(a.max())
    if peak >= SILENCE_RMS and x.size >= CLIP_RUN:
        at_peak = a >= peak
        pair = at_peak[:-1] & at_peak[1:] & (x[:-1] == x[1:])  # x[i], x[i+1] identical and at the peak
        start = pair[:-1] & pair[1:]  # x[i..i+2] identical at the peak (CLIP_RUN == 3)
        in_run = np.zeros(x.size, dtype=bool)
        for k in range(CLIP_RUN):
            in_run[k : k + start.size] |= start
        clipped |= in_run
    return float(np.mean(clipped))


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class MetricSpec:
    """A named metric and what a caller needs to know to use it.

    :param name: registry key.
    :param fn: ``fn(estimate (n,), reference (n,) | None, sample_rate Hz) -> float``.
    :param intrusive: needs a clean reference.
    :param higher_is_better: the direction of quality.
    :param unit: ``"dB"``, ``"MOS"``, ``"LUFS"`` or ``""`` (dimensionless).
    :param cheap: well under 1 ms on a 0.5 s 16 kHz chunk: fit for every RL step.
    :param valid_range: ``(lo, hi)``: the values the function returns (see the module table).
    :param doc: one line: what it is and its degenerate-case values.
    :param optional: needs an optional extra and is computed only when named.
    :param undefined: the values it returns where it is undefined or degenerate (no speech, a silent
        reference, unscorable input): kept in records, where a reward pairs them with the unprocessed
        chunk's, but not measurements: summaries and means leave them out (see :meth:`defined`) and count
        them (``undefined``, ``mean_n``). SI-SDR -100 also marks a muted estimate, a real worst: counted so,
        such an output shows in those counts instead of in the mean.
    """

    name: str
    fn: MetricFn
    intrusive: bool
    higher_is_better: bool
    unit: str
    cheap: bool
    valid_range: tuple[float, float]
    doc: str
    optional: bool = False
    undefined: tuple[float, ...] = ()

    def defined(self, values) -> np.ndarray:
        """Bool mask of ``values`` that are measurements: finite and not one of :attr:`undefined`."""
        v = np.asarray(values, dtype=np.float64)
        return np.isfinite(v) & ~np.isin(v, self.undefined)

    @property
    def worst(self) -> float:
        """The worst value in ``valid_range``."""
        return self.valid_range[0] if self.higher_is_better else self.valid_range[1]

    @property
    def best(self) -> float:
        """The best value in ``valid_range``."""
        return self.valid_range[1] if self.higher_is_better else self.valid_range[0]


def _spec(
    fn: MetricFn,
    intrusive: bool,
    higher: bool,
    unit: str,
    cheap: bool,
    rng: tuple[float, float],
    doc: str,
    optional: bool = False,
    undefined: tuple[float, ...] = (),
) -> MetricSpec:
    return MetricSpec(fn.__name__, fn, intrusive, higher, unit, cheap, (float(rng[0]), float(rng[1])), doc, optional, undefined)


def dnsmos(estimate: np.ndarray, reference: np.ndarray | None, sample_rate: int) -> float:
    """DNSMOS P.835 overall MOS (Reddy et al., ICASSP 2022) via the ``speechmos`` package's ONNX models.

    Non-intrusive, 16 kHz (other rates are resampled); clips shorter than the model's 9 s window are
    tiled by speechmos. Samples are clipped to [-1, 1] (speechmos refuses others); the result is
    clipped to [1, 5]. Slow (seconds per clip): for reports, not for RL steps. Needs the optional
    extra: ``pip install -e ".[dnsmos]"`` in the project's folder, as README says (speechmos imports librosa,
    onnxruntime and requests without declaring them).
    """
    try:
        from speechmos import dnsmos as _dnsmos
    except ImportError as exc:
        raise MetricError(
            f"dnsmos needs the optional extra: pip install -e \".[dnsmos]\" in the project's folder, with its .venv "
            f"active ({type(exc).__name__}: {exc})"
        ) from exc
    x = _f64(estimate)
    if sample_rate != 16000:
        x = resample_poly(x, 16000, sample_rate)
    if x.size == 0 or not np.any(x):
        return 1.0
    score = _dnsmos.run(np.clip(x, -1.0, 1.0).astype(np.float32), sr=16000)["ovrl_mos"]
    return float(np.clip(score, 1.0, 5.0)) if np.isfinite(score) else 1.0


# Measured on a 0.5 s 16 kHz chunk of noisy speech-like audio, one thread: si_sdr 0.03 ms,
# snr 0.015, seg_snr 0.22, lsd 0.34, wada_snr 0.08, loudness_lufs 0.33, clipping_ratio 0.025 (cheap);
# stoi 3.5, estoi 3.8, pesq ~47 (about 40 ms of it fixed per call, whatever the length).
METRICS: dict[str, MetricSpec] = {
    s.name: s
    for s in (
        _spec(si_sdr, True, True, "dB", True, (-SDR_CLAMP_DB, SDR_CLAMP_DB),
              "scale-invariant SDR (Le Roux 2019), clamped to +-100 dB; muted estimate -100",
              undefined=(-SDR_CLAMP_DB, SDR_CLAMP_DB)),
        _spec(snr, True, True, "dB", True, (-SDR_CLAMP_DB, SDR_CLAMP_DB),
              "plain SNR of estimate vs reference, clamped to +-100 dB; identical +100",
              undefined=(-SDR_CLAMP_DB, SDR_CLAMP_DB)),
        _spec(seg_snr, True, True, "dB", True, (SEG_SNR_MIN_DB, SEG_SNR_MAX_DB),
              "segmental SNR, 30 ms Hann frames, hop 7.5 ms, per frame clamped to [-10, 35] dB"),
        _spec(lsd, True, False, "dB", True, (0.0, LSD_MAX_DB),
              "log-spectral distance, 32 ms frames, power floor -100 dB; identical 0"),
        _spec(pesq, True, True, "MOS", False, (PESQ_UNDEFINED, PESQ_MAX),
              "PESQ MOS-LQO, WB at 16/48 kHz, NB at 8 kHz; unscorable (silence, < 0.25 s) 1.0",
              undefined=(PESQ_UNDEFINED,)),
        _spec(stoi, True, True, "", False, (-1.0, 1.0),
              "STOI (pystoi); < 30 active frames (~0.4 s speech) or silent reference 0.0", undefined=(STOI_UNDEFINED,)),
        _spec(estoi, True, True, "", False, (-1.0, 1.0),
              "extended STOI (pystoi); < 30 active frames or silent reference 0.0", undefined=(STOI_UNDEFINED,)),
        _spec(wada_snr, False, True, "dB", True, (WADA_MIN_DB, WADA_MAX_DB),
              "blind SNR by WADA (Kim & Stern 2008), -20..100 dB; silence/DC -20"),
        _spec(loudness_lufs, False, True, "LUFS", True, (LOUDNESS_FLOOR_LUFS, LOUDNESS_CEIL_LUFS),
              "BS.1770 integrated loudness (pyloudnorm), a level not a quality; silence -70; < 0.4 s one block"),
        _spec(clipping_ratio, False, False, "", True, (0.0, 1.0),
              "fraction of samples at |x| >= 0.999 or in runs of >= 3 identical peak samples"),
        _spec(dnsmos, False, True, "MOS", False, (1.0, 5.0),
              "DNSMOS P.835 overall MOS (speechmos ONNX models, 16 kHz; optional extra 'dnsmos')", optional=True),
    )
}  # fmt: skip


def _check_names(names: Iterable[str]) -> list[str]:
    if isinstance(names, str):
        names = [names]
    names = list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise MetricError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    return names


def compute_metrics(
    estimate: np.ndarray,
    reference: np.ndarray | None = None,
    sample_rate: int = 16000,
    names: Iterable[str] | None = None,
) -> dict[str, float]:
    """Validate once and compute the named metrics; every value is a finite float.

    :param estimate: processed audio, mono ``(n,)`` (a column ``(n, 1)`` is accepted).
    :param reference: clean audio of the same length, or ``None`` (then only non-intrusive metrics).
    :param sample_rate: Hz; 8000, 16000 or 48000.
    :param names: metric names; ``None`` = every metric that applies (intrusive ones only with a
        reference; optional ones such as ``dnsmos`` only when named), in registry order.
    :raises InvalidAudioError: NaN/Inf, wrong shape, empty, different lengths or an unsupported rate,
        naming ``estimate`` or ``reference``.
    :raises MetricError: an unknown name, or an intrusive metric asked for without a reference.
    """
    if names is None:
        selected = [n for n, s in METRICS.items() if (reference is not None or not s.intrusive) and not s.optional]
    else:
        selected = _check_names(names)
        missing_ref = [n for n in selected if METRICS[n].intrusive and reference is None]
        if missing_ref:
            raise MetricError(f"metric(s) {missing_ref} are intrusive and need a reference; none was given")
    rate = check_pipeline_rate(sample_rate)
    est32 = as_audio(estimate, "estimate")
    est = np.asarray(estimate, dtype=np.float64).reshape(est32.shape)
    ref = None
    if reference is not None:
        ref32 = as_audio(reference, "reference")
        check_same_length(est32, ref32, ("estimate", "reference"))
        ref = np.asarray(reference, dtype=np.float64).reshape(ref32.shape)
    out: dict[str, float] = {}
    for name in selected:
        value = float(METRICS[name].fn(est, ref, rate))
        if not np.isfinite(value):  # a bug in a metric; keep the promise and say so loudly in tests
            raise MetricError(f"metric {name} returned {value} (a bug: metrics must be finite)")
        out[name] = value
    return out


def improvement(processed: Mapping[str, float], unprocessed: Mapping[str, float]) -> dict[str, float]:
    """Per-metric improvement, signed so that positive means better (units of each metric).

    ``processed - unprocessed`` for higher-is-better metrics, ``unprocessed - processed`` otherwise;
    only for the names present in both dicts (in the order of ``processed``).

    :raises MetricError: a name not in :data:`METRICS`.
    """
    names = _check_names([n for n in processed if n in unprocessed])
    out = {}
    for n in names:
        delta = float(processed[n]) - float(unprocessed[n])
        out[n] = delta if METRICS[n].higher_is_better else -delta
    return out
