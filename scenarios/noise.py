"""Noise generators for the built-in scenarios: each returns a unit-RMS float64 array ``(n,)``.

| function | what | spectrum |
|---|---|---|
| :func:`white` | Gaussian white noise | flat |
| :func:`pink` | 1/f noise (FFT-shaped), high-passed at 20 Hz (4th order) | -3 dB/oct |
| :func:`brown` | 1/f^2 noise (FFT-shaped), high-passed at 20 Hz (4th order): no DC drift | -6 dB/oct |
| :func:`hum` | mains hum: fundamental + harmonics to ~1 kHz, drifting +-0.1 Hz, broadband floor 25 dB down | lines |
| :func:`babble` | a crowd: >= 6 synthetic talkers (:mod:`scenarios.speech`) at random offsets | speech |
| :func:`fan` | 80-2500 Hz broadband with a resonance, plus blade-pass tones 100-300 Hz with slow wobble | hump + lines |

All randomness comes from the ``numpy.random.Generator`` passed in; :data:`GENERATORS` maps the names
used in scenario tags to ``f(n, sample_rate, rng)``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.signal import butter, iirpeak, sosfilt, tf2sos

from scenarios.speech import random_voice, synthesize

HIGHPASS_HZ = 20.0  # corner of the 4th-order high-pass on pink and brown noise


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x))))
    if rms == 0.0:
        raise ValueError("cannot normalize an all-zero noise")
    return x / rms


def _check_n(n: int) -> int:
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2 samples, got {n!r}")
    return int(n)


def white(n: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian white noise."""
    return _unit_rms(rng.standard_normal(_check_n(n)))


def _power_law(n: int, rng: np.random.Generator, exponent: float, sample_rate: int, highpass_hz: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f**exponent, shaped on FFT bins; a zero-phase 4th-order
    Butterworth magnitude high-pass at ``highpass_hz`` removes DC and sub-audio drift."""
    n = _check_n(n)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sample_rate)
    shape = np.zeros_like(f)
    shape[1:] = f[1:] ** (-exponent / 2.0)
    ratio = f / highpass_hz
    shape *= ratio**4 / np.sqrt(1.0 + ratio**8)
    return _unit_rms(np.fft.irfft(spectrum * shape, n))


def pink(n: int, rng: np.random.Generator, sample_rate: int = 16000, highpass_hz: float = HIGHPASS_HZ) -> np.ndarray:
    """Pink (1/f, -3 dB/oct) noise, high-passed at ``highpass_hz`` (Hz) so infrasound does not dominate."""
    return _power_law(n, rng, 1.0, sample_rate, highpass_hz)


def brown(n: int, rng: np.random.Generator, sample_rate: int = 16000, highpass_hz: float = HIGHPASS_HZ) -> np.ndarray:
    """Brown (1/f^2, -6 dB/oct) noise, high-passed at ``highpass_hz`` (Hz): rumble without DC drift."""
    return _power_law(n, rng, 2.0, sample_rate, highpass_hz)


def hum(
    n: int, sample_rate: int, base_hz: float, rng: np.random.Generator, floor_db: float = -25.0, max_hz: float = 1000.0
) -> np.ndarray:
    """Mains hum: ``base_hz`` (50 or 60) and its harmonics up to ``max_hz``, plus a broadband floor.

    Harmonic amplitudes fall as ``k**-0.7`` with odd harmonics stronger and a random +-3 dB each; the
    fundamental drifts slowly by up to +-0.1 Hz (all harmonics follow, phase-continuously); a pink floor
    ``floor_db`` below the hum keeps the clip from being pure lines.
    """
    n = _check_n(n)
    t = np.arange(n) / sample_rate
    drift = 0.1 * np.sin(2.0 * np.pi * rng.uniform(0.03, 0.15) * t + rng.uniform(0, 2 * np.pi))
    phase = 2.0 * np.pi * np.cumsum(base_hz + drift) / sample_rate
    x = np.zeros(n)
    for k in range(1, int(max_hz // base_hz) + 1):
        amp = k**-0.7 * (1.0 if k % 2 else 0.5) * 10.0 ** (rng.uniform(-3.0, 3.0) / 20.0)
        x += amp * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    x = _unit_rms(x)
    return _unit_rms(x + 10.0 ** (floor_db / 20.0) * pink(n, rng, sample_rate))


def babble(n: int, sample_rate: int, rng: np.random.Generator, talkers: int = 7) -> np.ndarray:
    """A crowd of ``talkers`` (>= 6) random synthetic voices, each at a random offset and level (+-3 dB).

    The voices are drawn with :func:`scenarios.speech.random_voice`, so they differ from the named
    clean speakers of the built-in set.
    """
    n = _check_n(n)
    if talkers < 6:
        raise ValueError(f"babble needs at least 6 talkers, got {talkers}")
    margin = sample_rate  # each voice is 1 s longer than needed and cut at a random offset
    x = np.zeros(n)
    for i in range(talkers):
        voice = random_voice(rng, name=f"babble{i}")
        speech = synthesize(voice, (n + margin) / sample_rate, sample_rate, rng)
        start = int(rng.integers(0, margin))
        part = speech[start : start + n]
        x += 10.0 ** (rng.uniform(-3.0, 3.0) / 20.0) * part / np.sqrt(np.mean(part**2) + 1e-12)
    return _unit_rms(x)


def fan(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Fan noise: broadband noise band-passed 80-2500 Hz with a resonance at 250-700 Hz, plus the
    blade-pass tone (100-300 Hz) and two harmonics, wobbling slowly in pitch (+-1 %) and level."""
    n = _check_n(n)
    nyq = 0.5 * sample_rate
    band = sosfilt(butter(4, [80.0 / nyq, 2500.0 / nyq], btype="bandpass", output="sos"), rng.standard_normal(n + 2048))
    b, a = iirpeak(rng.uniform(250.0, 700.0), 2.0, fs=sample_rate)
    broadband = _unit_rms((band + 1.5 * sosfilt(tf2sos(b, a), band))[2048:])

    t = np.arange(n) / sample_rate
    blade_hz = rng.uniform(100.0, 300.0)
    wobble = 1.0 + 0.01 * np.sin(2.0 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 2 * np.pi))
    phase = 2.0 * np.pi * np.cumsum(blade_hz * wobble) / sample_rate
    level = 1.0 + 0.2 * np.sin(2.0 * np.pi * rng.uniform(0.2, 0.6) * t + rng.uniform(0, 2 * np.pi))
    tones = sum(amp * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k, amp in ((1, 1.0), (2, 0.5), (3, 0.25)))
    return _unit_rms(broadband + 0.6 * _unit_rms(level * tones))


GENERATORS: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
    "white": lambda n, sr, rng: white(n, rng),
    "pink": lambda n, sr, rng: pink(n, rng, sr),
    "brown": lambda n, sr, rng: brown(n, rng, sr),
    "hum50": lambda n, sr, rng: hum(n, sr, 50.0, rng),
    "hum60": lambda n, sr, rng: hum(n, sr, 60.0, rng),
    "babble": babble,
    "fan": fan,
}
"""Noise names used in scenario tags -> ``f(n, sample_rate, rng)``."""
