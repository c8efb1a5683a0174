import numpy as np
import pytest
import soundfile as sf

from feedback_env.audio import as_audio, check_same_length, load_audio, resample
from feedback_env.errors import InvalidAudioError


@pytest.mark.parametrize(
    "x, message",
    [
        (np.array([0.1, np.nan, 0.2]), "NaN at index 1"),
        (np.array([0.1, np.inf]), "Inf at index 1"),
        (np.zeros((10, 2)), r"shape \(10, 2\)"),
        (np.zeros(0), "empty"),
        (np.array([1 + 1j]), "complex"),
        (np.array(["a"]), "numeric"),
    ],
)
def test_bad_samples_are_named(x, message):
    with pytest.raises(InvalidAudioError, match=message):
        as_audio(x, "chunk")


def test_silence_rejected_only_where_a_signal_is_needed():
    assert as_audio(np.zeros(100), allow_silent=True).dtype == np.float32
    with pytest.raises(InvalidAudioError, match="reference: is silent"):
        as_audio(np.zeros(100), "reference", allow_silent=False)


def test_length_mismatch_is_named():
    with pytest.raises(InvalidAudioError, match="differ in length: 3 vs 4"):
        check_same_length(np.zeros(3), np.zeros(4))


def test_load_downmixes_and_resamples(tmp_path):
    sr = 44100
    t = np.arange(sr) / sr
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "s.wav", np.stack([left, left], axis=1), sr)
    x, rate = load_audio(tmp_path / "s.wav", 16000)
    assert rate == 16000 and x.shape == (16000,) and x.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz bins over one second


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(InvalidAudioError, match="no such file"):
        load_audio(tmp_path / "missing.flac")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    with pytest.raises(InvalidAudioError, match="junk.wav: unreadable audio"):
        load_audio(junk)


def test_resample_rates():
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    assert resample(x, 16000, 8000).shape == (8000,)
    assert resample(x, 16000, 48000).shape == (48000,)
    with pytest.raises(InvalidAudioError, match="from_rate"):
        resample(x, 0, 16000)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint8, np.bool_])
def test_integer_and_bool_pcm_is_rejected_with_its_dtype(dtype):
    """int16 PCM read as float would be ~32768 times full scale; it must be converted first."""
    pcm = (np.sin(np.arange(800) / 5.0) * 100).astype(dtype)
    with pytest.raises(InvalidAudioError, match=rf"chunk: .*dtype {np.dtype(dtype)}.*convert to float in \[-1, 1\]"):
        as_audio(pcm, "chunk")
    if dtype is np.int16:
        with pytest.raises(InvalidAudioError, match="x / 32768"):
            as_audio(pcm, "chunk")


def test_integer_pcm_is_rejected_by_the_pipeline_metrics_and_loop_without_touching_state():
    from feedback_env import FeedbackLoopSystem
    from feedback_env.metrics import compute_metrics
    from feedback_env.pipeline import EnhancementPipeline

    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(8000)).astype(np.float32)
    pcm = (x * 32767).astype(np.int16)
    with pytest.raises(InvalidAudioError, match="int16"):
        EnhancementPipeline().process(pcm)
    with pytest.raises(InvalidAudioError, match="reference: .*int16"):
        compute_metrics(x, pcm, 16000, ["si_sdr"])
    loop = FeedbackLoopSystem(seed=0)
    loop.step(x, x)
    n, params = loop.history.total, loop.parameters
    with pytest.raises(InvalidAudioError, match="noisy_chunk: .*int16"):
        loop.step(pcm, x)
    assert loop.history.total == n and loop.parameters == params


def test_stereo_channels_that_cancel_in_the_downmix_are_named(tmp_path):
    """Guards review S#6d: anti-phase channels averaged to silence and the error said only "is silent"; a
    partly cancelling pair (a miswired balanced input, M/S) lost its speech without a word."""
    t = np.arange(8000) / 8000
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "anti.wav", np.stack([left, -left], axis=1), 8000, subtype="FLOAT")
    with pytest.raises(InvalidAudioError, match=r"anti.wav: its 2 channels cancel in the mono downmix"):
        load_audio(tmp_path / "anti.wav", None)
    sf.write(tmp_path / "nearly.wav", np.stack([left, -0.98 * left], axis=1), 8000, subtype="FLOAT")
    with pytest.warns(UserWarning, match=r"nearly.wav: its 2 channels cancel in the mono downmix: .* dB below"):
        x, _ = load_audio(tmp_path / "nearly.wav", None)
    assert np.max(np.abs(x)) == pytest.approx(0.005, rel=0.01)  # kept as read


def test_a_truncated_file_loads_what_is_there_with_a_warning(tmp_path):
    """Guards review S#6f: a WAV cut short loaded silently shorter than its header says; without a clean
    reference nothing else would notice."""
    sf.write(tmp_path / "full.wav", 0.5 * np.sin(np.arange(24000) / 5), 16000)
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 3])
    with pytest.warns(UserWarning, match=r"cut.wav: truncated: read \d+ of 24000 frames"):
        x, _ = load_audio(tmp_path / "cut.wav", None)
    assert 0 < x.size < 24000
