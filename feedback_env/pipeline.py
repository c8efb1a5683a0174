"""The enhancement pipeline: streaming, stateful, with continuous parameters set from outside per chunk.

Stages in order (each carries its own state):

1. high-pass: 4th-order Butterworth magnitude, a zero-phase gain on STFT bins;
2. hum removal: narrow notches at the harmonics of the detected mains (its fundamental tracked near 50/60 Hz),
   each fading out while speech near its harmonic outweighs the hum there, time domain;
3. spectral noise reduction: MCRA noise tracking, decision-directed Wiener gain (STFT);
4. 3-band EQ: low shelf, peak, high shelf, zero-phase gains on STFT bins;
5. compressor; 6. output level: loudness leveller and peak limiter (1 ms gain steps).

The high-pass and the notches are linear and time-invariant, so applying the high-pass inside the STFT
that follows the notches is the same as applying it first. All STFT-domain stages share one 32 ms
frame with a 16 ms hop (50 % overlap), at every supported rate.

Output is delayed by :attr:`EnhancementPipeline.latency` samples; ``process`` returns exactly as many
samples as it is given, so chunked processing equals whole-clip processing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from feedback_env.audio import as_audio, check_pipeline_rate
from feedback_env.cache import SharedCache
from feedback_env.parameters import Parameter, ParameterSpace
from feedback_env.stages.dynamics import Dynamics, DynamicsSettings
from feedback_env.stages.hum import HumRemover
from feedback_env.stages.noise_reduction import NoiseReducer, NoiseReductionSettings
from feedback_env.stages.spectral_filters import butterworth_highpass_gain, eq_gain
from feedback_env.stages.stft import StreamingSTFT

MAX_PEAK_FRACTION = 0.45
"""The EQ peak's centre is capped at this fraction of the sample rate: at 8 kHz the top of ``eq_mid_hz``'s range
(4 kHz) is the Nyquist frequency, where a peak filter is undefined (it made the output NaN)."""

PARAMETER_SPACE = ParameterSpace(
    [
        Parameter("highpass_hz", 10.0, 500.0, 70.0, "log", "high-pass cut-off (4th-order Butterworth magnitude on the "
                  "STFT bins, 31 Hz apart: the window's leakage keeps the stop band within a few tens of dB, and "
                  "cut-offs below ~50 Hz act less than their label, 10-20 Hz hardly at all)"),
        Parameter("hum_depth_db", 0.0, 50.0, 30.0, "linear", "attenuation at each detected harmonic of the mains "
                  "fundamental, tracked within 1 Hz of 50 or 60 Hz (0 = off); a fundamental drifting faster than the "
                  "0.5 s blocks it is measured on keeps the high harmonics shallower unless the notches are wider"),
        Parameter("hum_width_hz", 0.5, 10.0, 2.0, "log", "width of the band-pass each notch subtracts (its -3 dB "
                  "width when deep)"),
        Parameter("nr_oversubtraction", 0.5, 8.0, 1.5, "log", "Wiener over-subtraction factor"),
        Parameter("nr_floor_db", -40.0, 0.0, -15.0, "linear", "noise-reduction gain floor (0 = off)"),
        Parameter("nr_noise_window_s", 0.2, 5.0, 1.5, "log", "noise-tracking window: how fast a noise rise is followed"),
        Parameter("nr_smoothing_ms", 10.0, 1000.0, 300.0, "log", "decision-directed a-priori SNR time constant"),
        Parameter("eq_low_db", -12.0, 12.0, 0.0, "linear", "low-shelf gain (200 Hz)"),
        Parameter("eq_mid_db", -12.0, 12.0, 0.0, "linear", "peak gain at eq_mid_hz (Q 1)"),
        Parameter("eq_mid_hz", 300.0, 4000.0, 1500.0, "log", "peak centre frequency (at most 0.45 x the rate)"),
        Parameter("eq_high_db", -12.0, 12.0, 0.0, "linear", "high-shelf gain (4 kHz; 0.4 x the rate below 10 kHz)"),
        Parameter("comp_threshold_db", -60.0, 0.0, -20.0, "linear", "compressor threshold, dBFS peak"),
        Parameter("comp_ratio", 1.0, 20.0, 1.0, "log", "compression ratio (1 = off)"),
        Parameter("comp_attack_ms", 0.5, 100.0, 5.0, "log", "compressor attack time constant"),
        Parameter("comp_release_ms", 10.0, 1000.0, 150.0, "log", "compressor release time constant"),
        Parameter("comp_makeup_db", 0.0, 24.0, 0.0, "linear", "compressor make-up gain (threshold, ratio and make-up changes "
                  "glide in over 20 ms)"),
        Parameter("level_target_lufs", -40.0, -10.0, -23.0, "linear", "loudness target (BS.1770 over the last 5 s of gated audio)"),
        Parameter("level_max_gain_db", 0.0, 30.0, 0.0, "linear", "largest level correction either way (0 = off)"),
        Parameter("limiter_ceiling_db", -12.0, 0.0, -1.0, "linear", "peak ceiling, dBFS"),
    ]
)

TRANSPARENT = {
    "highpass_hz": 10.0,
    "hum_depth_db": 0.0,
    "nr_floor_db": 0.0,
    "eq_low_db": 0.0,
    "eq_mid_db": 0.0,
    "eq_high_db": 0.0,
    "comp_ratio": 1.0,
    "comp_makeup_db": 0.0,
    "level_max_gain_db": 0.0,
    "limiter_ceiling_db": 0.0,
}
"""Overrides that make the pipeline pass audio through unchanged (delayed; DC and a few Hz lose 0.1 dB)."""


def transparent_params(space: ParameterSpace = PARAMETER_SPACE) -> dict[str, float]:
    """Full parameter dict of the transparent setting."""
    return {**space.defaults(), **{k: v for k, v in TRANSPARENT.items() if k in space}}


@dataclass(frozen=True)
class PipelineConfig:
    """Fixed design choices (not tuned per chunk).

    :param frame_ms: STFT frame length.
    :param hop_ms: STFT hop (50 % overlap: as good as 75 % on the built-in set, at half the cost).
    :param sub_block_ms: gain step of the dynamics stages.
    """

    frame_ms: float = 32.0
    hop_ms: float = 16.0
    sub_block_ms: float = 1.0
    highpass_order: int = 4
    low_shelf_hz: float = 200.0
    high_shelf_hz: float = 4000.0
    mid_q: float = 1.0
    hum_max_harmonic_hz: float = 1000.0


class EnhancementPipeline:
    """Streaming enhancement pipeline.

    :param sample_rate: 8000, 16000 or 48000 Hz.
    :param params: initial physical parameters (partial dicts are merged over the defaults).
    :param space: the parameter space (bounds and defaults); :data:`PARAMETER_SPACE` by default.
    :param config: fixed design choices.

    ``process(chunk, params=None)`` takes float samples ``(n,)`` and returns float32 ``(n,)``, the
    enhanced stream delayed by :attr:`latency` samples. ``process_clip`` returns an aligned output.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        params: Mapping[str, float] | None = None,
        space: ParameterSpace = PARAMETER_SPACE,
        config: PipelineConfig | None = None,
    ):
        self.sample_rate = check_pipeline_rate(sample_rate)
        self.space = space
        self.config = config or PipelineConfig()
        n_fft = int(round(self.config.frame_ms / 1000.0 * self.sample_rate))
        self.hop = int(round(self.config.hop_ms / 1000.0 * self.sample_rate))
        self.sub_block = int(round(self.config.sub_block_ms / 1000.0 * self.sample_rate))
        if self.hop % self.sub_block:
            raise ValueError(f"hop ({self.hop}) must be a multiple of the sub-block ({self.sub_block})")
        self.stft = StreamingSTFT(n_fft, self.hop)
        self.freqs = np.fft.rfftfreq(n_fft, 1.0 / self.sample_rate)
        self.hum = HumRemover(self.sample_rate, self.config.hum_max_harmonic_hz)
        self.noise_reduction = NoiseReducer(self.stft.n_bins, self.hop / self.sample_rate, n_fft // self.hop - 1)
        self.dynamics = Dynamics(self.sample_rate, self.sub_block)
        self._static_cache = SharedCache(512)
        self.params: dict[str, float] = space.defaults()
        if params:
            self.set_params(params)
        self.reset()

    @property
    def latency(self) -> int:
        """Samples between input and output: STFT framing, hop alignment, limiter look-ahead."""
        return self.stft.latency + (self.hop - 1) + self.dynamics.latency

    def reset(self) -> None:
        """Clear every stage's state (the parameters stay)."""
        self.stft.reset()
        self.hum.reset()
        self.noise_reduction.reset()
        self.dynamics.reset()
        self._out = np.zeros(self.hop - 1)

    def set_params(self, params: Mapping[str, float]) -> dict[str, float]:
        """Validate and merge physical values (raises ParameterError); returns the full current dict."""
        self.params = {**self.params, **self.space.validate(params)}
        return dict(self.params)

    def _static_gain(self, p: Mapping[str, float]) -> np.ndarray:
        """High-pass times EQ magnitude at the bin frequencies (cached per setting)."""
        key = tuple(round(p[k], 9) for k in ("highpass_hz", "eq_low_db", "eq_mid_db", "eq_mid_hz", "eq_high_db"))
        gain = self._static_cache.get(key)
        if gain is None:
            c = self.config
            gain = butterworth_highpass_gain(self.freqs, p["highpass_hz"], c.highpass_order) * eq_gain(
                self.freqs,
                self.sample_rate,
                low_db=p["eq_low_db"],
                low_hz=c.low_shelf_hz,
                mid_db=p["eq_mid_db"],
                mid_hz=min(p["eq_mid_hz"], MAX_PEAK_FRACTION * self.sample_rate),
                mid_q=c.mid_q,
                high_db=p["eq_high_db"],
                high_hz=min(c.high_shelf_hz, 0.4 * self.sample_rate),
            )
            self._static_cache.put(key, gain)
        return gain

    def process(self, chunk: np.ndarray, params: Mapping[str, float] | None = None) -> np.ndarray:
        """Enhance the next chunk of the stream with ``params`` (merged into the current ones).

        :param chunk: float samples, shape ``(n,)``, finite.
        :return: float32 ``(n,)``: the output stream, ``latency`` samples behind the input.
        """
        x = as_audio(chunk, "chunk", allow_empty=True).astype(np.float64)
        if params:
            self.set_params(params)
        p = self.params
        if x.size == 0:
            return np.zeros(0, dtype=np.float32)
        notched = self.hum.process(x, p["hum_depth_db"], p["hum_width_hz"])
        static = self._static_gain(p)
        nr = NoiseReductionSettings(
            oversubtraction=p["nr_oversubtraction"],
            floor_db=p["nr_floor_db"],
            noise_window_s=p["nr_noise_window_s"],
            smoothing_ms=p["nr_smoothing_ms"],
        )

        def spectral_gain(spectra: np.ndarray) -> np.ndarray:
            power = spectra.real**2 + spectra.imag**2
            return self.noise_reduction.gains(power, nr) * static

        filtered = self.stft.process(notched, spectral_gain)
        shaped = self.dynamics.process(
            filtered,
            DynamicsSettings(
                threshold_db=p["comp_threshold_db"],
                ratio=p["comp_ratio"],
                attack_ms=p["comp_attack_ms"],
                release_ms=p["comp_release_ms"],
                makeup_db=p["comp_makeup_db"],
                target_lufs=p["level_target_lufs"],
                max_gain_db=p["level_max_gain_db"],
                ceiling_db=p["limiter_ceiling_db"],
            ),
        )
        stream = np.concatenate([self._out, shaped])
        self._out = stream[x.size :]
        return stream[: x.size].astype(np.float32)

    def track(self, chunk: np.ndarray, params: Mapping[str, float] | None = None) -> None:
        """Advance the input-side state over ``chunk`` without producing output: hum detection and notches,
        STFT framing and the noise tracker, about half the cost of :meth:`process`. The output side (gains'
        decision-directed state, overlap-add, dynamics, the latency buffer) is left as it was, so the next
        :meth:`process` call's output is not aligned with anything; the one after it is. For warming a copy
        of the pipeline up on past input with other parameters (see ``feedback_loop.replay``)."""
        x = as_audio(chunk, "chunk", allow_empty=True).astype(np.float64)
        if params:
            self.set_params(params)
        p = self.params
        frames = self.stft.frames(self.hum.process(x, p["hum_depth_db"], p["hum_width_hz"]))
        if frames.shape[0]:
            spectra = np.fft.rfft(frames, axis=1)
            self.noise_reduction.noise_estimate(spectra.real**2 + spectra.imag**2, p["nr_noise_window_s"])
        # keep the latency buffer's length in step with the framing (silence stands in for the skipped output)
        self._out = np.concatenate([self._out, np.zeros(frames.shape[0] * self.stft.hop)])[x.size :]

    def process_clip(self, x: np.ndarray, params: Mapping[str, float] | None = None) -> np.ndarray:
        """Reset, enhance a whole clip, and return the output aligned with the input, float32 ``(n,)``."""
        audio = as_audio(x, "clip")
        self.reset()
        padded = np.concatenate([audio, np.zeros(self.latency, dtype=np.float32)])
        return self.process(padded, params)[self.latency :]


def aligned(x: np.ndarray, latency: int) -> np.ndarray:
    """``x`` delayed by ``latency`` samples (zeros in front), same length: the reference for a stream."""
    return np.concatenate([np.zeros(latency, dtype=np.float32), np.asarray(x, dtype=np.float32)])[: len(x)]


__all__ = ["PARAMETER_SPACE", "TRANSPARENT", "EnhancementPipeline", "PipelineConfig", "aligned", "transparent_params"]
