"""Before/after spectrogram images (``rgb_array``) and one-line metric summaries (``ansi``)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

RANGE_DB = 80.0


def spectrogram_db(x: np.ndarray, sample_rate: int, n_fft: int = 512) -> np.ndarray:
    """Magnitude spectrogram in dB relative to full scale, shape (bins, frames), 75 % overlap."""
    hop = n_fft // 4
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 / (np.hanning(n_fft).sum() / 2) ** 2
    return (10.0 * np.log10(power + 1e-12)).T


def _colormap(values: np.ndarray) -> np.ndarray:
    """Map [0, 1] to RGB uint8 with matplotlib's 'magma' lookup table."""
    from matplotlib import colormaps

    lut = (colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return lut[np.clip((values * 255).astype(int), 0, 255)]


def before_after_image(before: np.ndarray, after: np.ndarray, sample_rate: int, height: int = 128) -> np.ndarray:
    """Spectrogram of ``before`` above that of ``after`` (low frequencies at the bottom), uint8 (H, W, 3)."""
    panels = []
    for x in (before, after):
        s = spectrogram_db(np.asarray(x, dtype=np.float64), sample_rate)
        rows = np.linspace(0, s.shape[0] - 1, height).astype(int)
        s = s[rows][::-1]
        panels.append(_colormap(np.clip((s + RANGE_DB) / RANGE_DB, 0.0, 1.0)))
    width = max(p.shape[1] for p in panels)
    panels = [np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0))) for p in panels]
    separator = np.full((2, width, 3), 255, dtype=np.uint8)
    return np.concatenate([panels[0], separator, panels[1]], axis=0)


def metrics_line(clip: str, chunk: int, n_chunks: int, reward: float, metrics: Mapping[str, float], baseline: Mapping[str, float]) -> str:
    """``clip c1 chunk 3/8 reward +0.42 | si_sdr 12.30 (+3.10) | ...``"""
    parts = [f"clip {clip} chunk {chunk}/{n_chunks} reward {reward:+.3f}"]
    for name, value in metrics.items():
        delta = value - baseline[name] if name in baseline else float("nan")
        parts.append(f"{name} {value:.2f} ({delta:+.2f})")
    return " | ".join(parts)
