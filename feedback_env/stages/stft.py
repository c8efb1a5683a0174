"""Streaming short-time Fourier analysis and overlap-add synthesis.

Analysis and synthesis use the same square-root periodic Hann window (hop at most half a frame), normalized so
that an identity gain reconstructs the input exactly (up to float rounding). The stream is delayed by
``n_fft - hop`` samples: a frame is complete only when its last sample has arrived.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SpectralGain = Callable[[np.ndarray], np.ndarray]
"""Maps the spectra of a block of frames, complex ``(frames, bins)``, to real gains of the same shape."""


class StreamingSTFT:
    """Frame the stream, apply a spectral gain per frame, overlap-add; emits whole hops only.

    :param n_fft: frame length in samples (also the FFT size).
    :param hop: hop in samples; ``n_fft`` must be a multiple of it.
    """

    def __init__(self, n_fft: int, hop: int):
        if n_fft % hop:
            raise ValueError(f"n_fft ({n_fft}) must be a multiple of hop ({hop})")
        self.n_fft, self.hop = n_fft, hop
        periodic_hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
        window = np.sqrt(periodic_hann)
        # overlap-added window products are constant (= n_fft / (2 hop)); fold 1/that into synthesis
        self.analysis = window
        self.synthesis = window / (n_fft / (2 * hop))
        self.n_bins = n_fft // 2 + 1
        self.reset()

    @property
    def latency(self) -> int:
        """Delay in samples between a sample going in and its processed version coming out."""
        return self.n_fft - self.hop

    def reset(self) -> None:
        self._input = np.zeros(self.n_fft - self.hop)  # the last n_fft - hop samples already framed
        self._pending = np.zeros(0)  # arrived samples not yet part of a complete frame
        self._overlap = np.zeros(self.n_fft - self.hop)  # tail of the overlap-add sum

    def frames(self, x: np.ndarray) -> np.ndarray:
        """Feed samples; return the newly complete frames, windowed, shape ``(frames, n_fft)``."""
        new = np.concatenate([self._pending, np.asarray(x, dtype=np.float64)])
        n_frames = new.size // self.hop
        used = n_frames * self.hop
        self._pending = new[used:]
        if n_frames == 0:
            return np.zeros((0, self.n_fft))
        stream = np.concatenate([self._input, new[:used]])
        self._input = stream[used:]
        return sliding_window_view(stream, self.n_fft)[:: self.hop] * self.analysis

    def overlap_add(self, frames: np.ndarray) -> np.ndarray:
        """Synthesis-window and overlap-add time frames ``(frames, n_fft)``; returns ``frames * hop`` samples."""
        n_frames = frames.shape[0]
        hop, overlap = self.hop, self.n_fft // self.hop
        # out as hop-sized blocks: frame f adds its j-th hop-block to block f + j
        blocks = np.zeros((n_frames + overlap - 1, hop))
        blocks[: overlap - 1] = self._overlap.reshape(overlap - 1, hop)
        windowed = (frames * self.synthesis).reshape(n_frames, overlap, hop)
        for j in range(overlap):
            blocks[j : j + n_frames] += windowed[:, j]
        self._overlap = blocks[n_frames:].reshape(-1).copy()
        return blocks[:n_frames].reshape(-1)

    def process(self, x: np.ndarray, gain: SpectralGain) -> np.ndarray:
        """Analyse, apply ``gain`` to the spectra, resynthesize; returns a multiple of ``hop`` samples."""
        frames = self.frames(x)
        if frames.shape[0] == 0:
            return np.zeros(0)
        spectra = np.fft.rfft(frames, axis=1)
        spectra *= gain(spectra)
        return self.overlap_add(np.fft.irfft(spectra, n=self.n_fft, axis=1))
