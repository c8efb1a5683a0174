"""Audio in, checked: load with soundfile, downmix to mono, resample with ``resample_poly``, validate.

Every function here returns mono float32 arrays of shape ``(n,)`` and raises
:class:`~feedback_env.errors.InvalidAudioError` naming what is wrong.
"""

from __future__ import annotations

import re
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from feedback_env.errors import InvalidAudioError

SUPPORTED_RATES = (8000, 16000, 48000)
DEFAULT_RATE = 16000
SILENCE_RMS = 1e-7  # below this RMS (about -140 dBFS) audio counts as all-zero


def as_audio(
    x: object,
    name: str = "audio",
    *,
    allow_silent: bool = True,
    allow_empty: bool = False,
) -> np.ndarray:
    """Validate a mono signal and return it as float32 ``(n,)``.

    :param x: float samples in about [-1, 1], shape ``(n,)``; a column ``(n, 1)`` is accepted.
        Integer PCM and bool arrays are rejected (int16 PCM: pass ``x / 32768``).
    :param name: what to call it in error messages.
    :param allow_silent: accept all-zero audio (a pipeline input may be silent; a reference may not).
    :param allow_empty: accept ``n == 0``.
    """
    try:
        arr = np.asarray(x)
    except Exception as exc:  # objects numpy cannot turn into an array
        raise InvalidAudioError(f"{name}: cannot be read as an array ({exc})") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InvalidAudioError(f"{name}: expected numeric samples, got dtype {arr.dtype}")
    if arr.dtype == bool:
        raise InvalidAudioError(
            f"{name}: bool samples (dtype bool) are not audio; convert to float in [-1, 1] first"
        )
    if np.issubdtype(arr.dtype, np.integer):
        # PCM read as float would be up to 2**(bits-1) times full scale
        bits = 8 * arr.dtype.itemsize
        hint = (
            f"x / {2 ** (bits - 1)}"
            if np.issubdtype(arr.dtype, np.signedinteger)
            else f"(x - {2 ** (bits - 1)}) / {2 ** (bits - 1)}"
        )
        raise InvalidAudioError(
            f"{name}: integer PCM samples (dtype {arr.dtype}); convert to float in [-1, 1] first, e.g. {hint}"
        )
    if np.iscomplexobj(arr):
        raise InvalidAudioError(f"{name}: expected real samples, got complex dtype {arr.dtype}")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InvalidAudioError(
            f"{name}: expected mono audio of shape (n,), got shape {arr.shape} "
            "(downmix multichannel audio first, e.g. with feedback_env.audio.to_mono)"
        )
    if arr.size == 0 and not allow_empty:
        raise InvalidAudioError(f"{name}: is empty (0 samples)")
    out = arr.astype(np.float32, copy=False)
    finite = np.isfinite(out)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        kinds = "NaN" if np.isnan(out[bad[0]]) else "Inf"
        raise InvalidAudioError(
            f"{name}: {bad.size} non-finite sample(s) ({kinds} at index {int(bad[0])} first)"
        )
    if not allow_silent and out.size and is_silent(out):
        raise InvalidAudioError(f"{name}: is silent (all-zero); a signal is needed here")
    return out


def silent_energy(energy: float, n: int) -> bool:
    """All-zero by the package's definition, from the energy ``sum(x^2)`` of ``n`` samples: RMS at most
    :data:`SILENCE_RMS` (for callers that have the energy already, as the metrics do)."""
    return energy <= n * SILENCE_RMS**2


def is_silent(x: np.ndarray) -> bool:
    """True when ``x`` ``(n,)`` is all-zero by the package's definition (:func:`silent_energy`)."""
    x64 = np.asarray(x, dtype=np.float64).reshape(-1)
    return silent_energy(float(np.dot(x64, x64)), x64.size)


def check_rate(sample_rate: object, name: str = "sample_rate") -> int:
    """Return a positive integer sample rate or raise."""
    if sample_rate is None:
        raise InvalidAudioError(f"{name}: not given; pass the rate of the audio in Hz")
    try:
        rate = int(sample_rate)
    except (TypeError, ValueError):
        raise InvalidAudioError(f"{name}: expected an integer rate in Hz, got {sample_rate!r}") from None
    if rate != sample_rate or rate <= 0:
        raise InvalidAudioError(f"{name}: expected a positive integer rate in Hz, got {sample_rate!r}")
    return rate


def check_pipeline_rate(sample_rate: object) -> int:
    """A rate the pipeline and PESQ-aware metrics support: 8, 16 or 48 kHz."""
    rate = check_rate(sample_rate)
    if rate not in SUPPORTED_RATES:
        raise InvalidAudioError(f"sample_rate {rate} Hz is not supported; use one of {SUPPORTED_RATES}")
    return rate


def check_same_length(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("clean", "noisy")) -> None:
    """Raise if two aligned signals differ in length."""
    if a.shape[0] != b.shape[0]:
        raise InvalidAudioError(
            f"{names[0]} and {names[1]} differ in length: {a.shape[0]} vs {b.shape[0]} samples"
        )


def to_mono(x: np.ndarray) -> np.ndarray:
    """Downmix ``(n, channels)`` (soundfile's layout) to ``(n,)`` by averaging the channels."""
    arr = np.asarray(x)
    if arr.ndim == 1:
        return arr
    if arr.ndim == 2:
        return arr.mean(axis=1)
    raise InvalidAudioError(f"expected (n,) or (n, channels) audio, got shape {arr.shape}")


def resample(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``) from one integer rate to another."""
    from_rate, to_rate = check_rate(from_rate, "from_rate"), check_rate(to_rate, "to_rate")
    if from_rate == to_rate:
        return np.asarray(x, dtype=np.float32)
    ratio = Fraction(to_rate, from_rate)
    y = resample_poly(np.asarray(x, dtype=np.float64), ratio.numerator, ratio.denominator)
    return y.astype(np.float32)


def load_audio(path: str | Path, sample_rate: int | None = DEFAULT_RATE, *, name: str | None = None) -> tuple[np.ndarray, int]:
    """Read any file soundfile reads; return mono float32 ``(n,)`` at ``sample_rate`` and that rate.

    :param sample_rate: target rate in Hz; ``None`` keeps the file's own rate.
    :param name: what to call the file in errors (defaults to its path).
    """
    label = name or str(path)
    p = Path(path)
    if not p.is_file():
        raise InvalidAudioError(f"{label}: no such file ({p})")
    try:
        with sf.SoundFile(str(p)) as f:
            file_rate, log = f.samplerate, f.extra_info
            data = f.read(dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise InvalidAudioError(f"{label}: unreadable audio ({type(exc).__name__}: {exc})") from exc
    # libsndfile reads what is there of a file cut short; its log keeps the audio bytes the header announced
    cut = re.search(r"^(?:data|SSND)\s*:\s*(\d+) \(should be (\d+)\)", log, re.MULTILINE)
    if cut and data.shape[0] and int(cut[2]) < int(cut[1]):
        announced = int(cut[1]) * data.shape[0] // int(cut[2])
        warnings.warn(f"{label}: truncated: read {data.shape[0]} of {announced} frames its header announces "
                      f"({data.shape[0] / file_rate:.3g} of {announced / file_rate:.3g} s)", UserWarning, stacklevel=2)  # fmt: skip
    mono = to_mono(data)
    if data.shape[1] > 1:
        loudest, downmix = max(rms_db(data[:, c]) for c in range(data.shape[1])), rms_db(mono)
        cancel = f"{label}: its {data.shape[1]} channels cancel in the mono downmix"
        if downmix == -200.0 and loudest > -200.0:
            raise InvalidAudioError(f"{cancel} (all-zero; anti-phase channels?): downmix or pick a channel yourself")
        if loudest - downmix > 20.0:
            warnings.warn(f"{cancel}: {loudest - downmix:.0f} dB below the loudest channel (anti-phase or M/S "
                          "channels?); kept as averaged", UserWarning, stacklevel=2)  # fmt: skip
    rate = file_rate if sample_rate is None else check_rate(sample_rate)
    mono = resample(mono, file_rate, rate)
    return as_audio(mono, label), rate


def save_audio(path: str | Path, x: np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write mono audio with soundfile (format from the suffix; FLAC is 16-bit PCM by default)."""
    audio = as_audio(x, str(path), allow_empty=False)
    sf.write(str(path), audio, check_rate(sample_rate), subtype=subtype)


def rms_db(x: np.ndarray) -> float:
    """RMS level in dBFS (-200 for all-zero input)."""
    ms = float(np.mean(np.square(np.asarray(x, dtype=np.float64)))) if np.size(x) else 0.0
    return 10.0 * np.log10(ms) if ms > 1e-20 else -200.0


def chunks(x: np.ndarray, chunk_size: int) -> list[np.ndarray]:
    """Split into consecutive chunks of ``chunk_size`` samples (the last may be shorter)."""
    if chunk_size <= 0:
        raise InvalidAudioError(f"chunk_size must be positive, got {chunk_size}")
    return [x[i : i + chunk_size] for i in range(0, len(x), chunk_size)]
