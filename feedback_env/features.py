"""Features of a noisy chunk, computed before it is processed: what an agent hears coming.

All features are normalized to roughly [-1, 1] and clipped there. Cheap: one FFT and frame energies.
"""

from __future__ import annotations

import numpy as np

FRAME_S = 0.016
HUM_CANDIDATES_HZ = (50.0, 60.0)
HUM_MAX_HZ = 1000.0
FLOOR_DB = -120.0


def _db(power: np.ndarray | float) -> np.ndarray:
    return np.maximum(10.0 * np.log10(np.maximum(power, 1e-12)), FLOOR_DB)


class ChunkFeatures:
    """Extracts :attr:`names` from each chunk; keeps the previous noise floor to report its change.

    :param sample_rate: Hz.
    :param n_bands: log-spaced bands from 62.5 Hz to Nyquist for the band-energy profile.
    :param context: 0, or the per-chunk decay in (0, 1) of an exponential average of the normalized
        features, appended after them (``avg_*`` names): what the recent seconds sounded like, steadier
        than one chunk.
    """

    def __init__(self, sample_rate: int, n_bands: int = 6, context: float = 0.0):
        if not 0.0 <= context < 1.0:
            raise ValueError(f"feature context must be in [0, 1), got {context}")
        self.context = float(context)
        self.sample_rate = sample_rate
        self.frame = int(round(FRAME_S * sample_rate))
        edges = np.geomspace(62.5, sample_rate / 2, n_bands + 1)
        self.band_edges = np.concatenate([[0.0], edges[1:]])
        self.names: tuple[str, ...] = (
            tuple(f"band_{i}_db_rel" for i in range(n_bands))
            + ("level_dbfs", "noise_floor_dbfs", "snr_estimate_db", "noise_floor_change_db")
            + ("hum_score_db", "spectral_flatness", "clipping_ratio")
        )
        if self.context:
            self.names += tuple(f"avg_{name}" for name in self.names)
        self.reset()

    @property
    def dim(self) -> int:
        return len(self.names)

    def reset(self) -> None:
        self._previous_floor: float | None = None
        self._average: np.ndarray | None = None

    def raw(self, chunk: np.ndarray) -> dict[str, float]:
        """Physical feature values (dB, ratios) of ``chunk`` (n,), before normalization."""
        x = np.asarray(chunk, dtype=np.float64)
        n_frames = max(1, x.size // self.frame)
        frames = np.zeros((n_frames, self.frame))
        usable = min(x.size, n_frames * self.frame)
        frames.reshape(-1)[:usable] = x[:usable]
        frame_db = _db(np.mean(frames**2, axis=1))
        floor_db = float(np.percentile(frame_db, 10))
        peak_db = float(np.percentile(frame_db, 90))
        change = 0.0 if self._previous_floor is None else floor_db - self._previous_floor
        self._previous_floor = floor_db

        # 1 Hz resolution (zero-padded to one second) puts 50 and 60 Hz harmonics on exact bins
        n_fft = max(self.sample_rate, x.size)
        power = np.abs(np.fft.rfft(x, n_fft)) ** 2 + 1e-20
        freqs = np.fft.rfftfreq(n_fft, 1.0 / self.sample_rate)
        total = power.sum()
        band_idx = np.digitize(freqs, self.band_edges[1:-1])
        bands = np.bincount(band_idx, weights=power, minlength=len(self.band_edges) - 1)
        hum = max(self._hum_score(power, freqs[1], m) for m in HUM_CANDIDATES_HZ)
        flatness = float(np.exp(np.mean(np.log(power[1:]))) / np.mean(power[1:]))
        values = {f"band_{i}_db_rel": float(v) for i, v in enumerate(_db(bands / total))}
        values.update(
            level_dbfs=float(_db(np.mean(x**2)) if x.size else FLOOR_DB),
            noise_floor_dbfs=floor_db,
            snr_estimate_db=peak_db - floor_db,
            noise_floor_change_db=change,
            hum_score_db=hum,
            spectral_flatness=flatness,
            clipping_ratio=float(np.mean(np.abs(x) >= 0.999)) if x.size else 0.0,
        )
        return values

    @staticmethod
    def _hum_score(power: np.ndarray, resolution: float, mains_hz: float) -> float:
        """Mean dB ratio of the harmonic peaks to their neighbourhood (6-12 Hz away)."""
        harmonics = np.arange(1, int(HUM_MAX_HZ // mains_hz) + 1) * mains_hz
        bins = np.round(harmonics / resolution).astype(int)
        offsets = np.round(np.array([-12, -9, -6, 6, 9, 12]) / resolution).astype(int)
        neighbours = np.clip(bins[:, None] + offsets[None, :], 0, power.size - 1)
        ratio = power[bins] / np.median(power[neighbours], axis=1)
        return float(np.mean(10.0 * np.log10(ratio)))

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        """Normalized features, float32 ``(dim,)`` in [-1, 1]."""
        v = self.raw(chunk)
        scaled = [v[f"band_{i}_db_rel"] / 30.0 + 1.0 for i in range(len(self.band_edges) - 1)]
        scaled += [
            (v["level_dbfs"] + 40.0) / 40.0,
            (v["noise_floor_dbfs"] + 60.0) / 60.0,
            v["snr_estimate_db"] / 20.0 - 1.0,
            v["noise_floor_change_db"] / 20.0,
            v["hum_score_db"] / 15.0,
            2.0 * v["spectral_flatness"] - 1.0,
            2.0 * min(1.0, 100.0 * v["clipping_ratio"]) - 1.0,
        ]
        now = np.clip(np.array(scaled, dtype=np.float32), -1.0, 1.0)
        if not self.context:
            return now
        a = self.context
        self._average = now if self._average is None else (a * self._average + (1.0 - a) * now).astype(np.float32)
        return np.concatenate([now, self._average])
