import copy
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.signal import butter, hilbert, sosfilt, sosfreqz

from conftest import si_sdr_db
from feedback_env.cache import SharedCache
from feedback_env.errors import InvalidAudioError, ParameterError
from feedback_env.metrics import loudness_lufs
from feedback_env.pipeline import PARAMETER_SPACE, EnhancementPipeline, transparent_params
from feedback_env.stages.hum import HumRemover
from feedback_env.stages.spectral_filters import _rbj_biquad, eq_gain
from feedback_env.audio import resample
from scenarios.speech import VOICES, synthesize

MILD = {
    "highpass_hz": 60.0,
    "hum_depth_db": 20.0,
    "hum_width_hz": 1.0,
    "nr_oversubtraction": 1.0,
    "nr_floor_db": -10.0,
    "eq_mid_db": 1.0,
}
"""Filters and noise reduction at mild settings. Not the compressor or leveller: SI-SDR rightly counts
their gain changes as distortion (ratio 1.5 above -10 dBFS scores about 21 dB on this speech)."""


def clip_by(builtin, noise):
    return next(c for c in builtin if c.tags["noise"] == noise)


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_transparent_setting_passes_audio_through(builtin, rate):
    clip = clip_by(builtin, "babble")
    x = resample(clip.noisy, 16000, rate)
    out = EnhancementPipeline(rate).process_clip(x, transparent_params())
    assert si_sdr_db(out, x) > 50.0


def test_chunked_stream_equals_whole_clip(builtin):
    clip = clip_by(builtin, "hum50")
    pipe = EnhancementPipeline()
    whole = pipe.process_clip(clip.noisy)
    pipe.reset()
    padded = np.concatenate([clip.noisy, np.zeros(pipe.latency, np.float32)])
    sizes, out, i = [8000, 333, 4096, 1, 7919], [], 0
    while i < padded.size:
        n = sizes[len(out) % len(sizes)]
        out.append(pipe.process(padded[i : i + n]))
        i += n
    streamed = np.concatenate(out)[pipe.latency :]
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed[8000:], whole[8000:], atol=1e-4)


def test_mild_settings_keep_clean_speech(builtin):
    utterances = {clip.tags["utterance"]: clip.clean for clip in builtin}
    for name, clean in utterances.items():
        out = EnhancementPipeline(params=MILD).process_clip(clean)
        assert si_sdr_db(out, clean) > 25.0, name


def test_highpass_costs_no_phase(builtin):
    """A causal 150 Hz Butterworth scores about -9 dB SI-SDR on clean speech; ours must not."""
    clean = builtin[0].clean
    causal = sosfilt(butter(4, 150, "highpass", fs=16000, output="sos"), clean)
    params = {**transparent_params(), "highpass_hz": 150.0}
    ours = EnhancementPipeline(params=params).process_clip(clean)
    assert si_sdr_db(causal, clean) < 5.0
    assert si_sdr_db(ours, clean) > 15.0


@pytest.mark.parametrize("noise, mains", [("hum50", 50.0), ("hum60", 60.0)])
def test_hum_is_detected_and_notched(builtin, noise, mains):
    clip = clip_by(builtin, noise)
    hum = clip.noisy - clip.clean
    params = {**transparent_params(), "hum_depth_db": 40.0, "hum_width_hz": 2.0}
    pipe = EnhancementPipeline(params=params)
    out = pipe.process_clip(clip.noisy)
    assert pipe.hum.mains_hz == mains
    spectrum = lambda x: np.abs(np.fft.rfft(x[16000:], 48000)) ** 2  # noqa: E731
    bins = (np.arange(1, 4) * mains * 48000 / 16000 / 3).astype(int)  # 1/3 Hz bins
    before, after = spectrum(clip.noisy)[bins].sum(), spectrum(out)[bins].sum()
    assert 10 * np.log10(before / after) > 20.0
    assert si_sdr_db(out, clip.clean) > si_sdr_db(clip.noisy, clip.clean) + 3.0
    del hum


def _hum_removed_db(hum: np.ndarray, sr: int = 16000) -> tuple[float, HumRemover]:
    """Hum power taken out by the notch bank (30 dB deep, 2 Hz wide) after its first 2 s, in dB."""
    bank = HumRemover(sr)
    out = np.concatenate([bank.process(hum[i : i + 8000], 30.0, 2.0) for i in range(0, hum.size, 8000)])
    return 10 * np.log10(np.sum(hum[2 * sr :] ** 2) / np.sum(out[2 * sr :] ** 2)), bank


@pytest.mark.parametrize("fundamental", [50.2, 49.6, 60.3])
def test_hum_off_the_nominal_mains_frequency_is_notched_as_deeply_as_on_it(fundamental):
    """Mains is never exactly 50 or 60 Hz; notches at exact multiples lose their depth k times faster at the
    k-th harmonic (at 50.2 Hz the 20th sits 4 Hz off). The bank tracks the fundamental instead."""
    t = np.arange(8 * 16000) / 16000
    lines = sum(0.1 * k**-0.7 * np.sin(2 * np.pi * fundamental * k * t + k) for k in range(1, int(1000 // fundamental) + 1))
    lines = lines + 1e-3 * np.random.default_rng(1).standard_normal(t.size)
    nominal, _ = _hum_removed_db(sum(0.1 * k**-0.7 * np.sin(2 * np.pi * 50.0 * k * t + k) for k in range(1, 21)))
    removed, bank = _hum_removed_db(lines)
    assert bank.mains_hz == round(fundamental / 10) * 10 and bank.fundamental[bank.mains_hz] == pytest.approx(fundamental, abs=0.01)
    assert removed > 25.0 and removed > nominal - 4.0, (removed, nominal)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("mains", [50.0, 60.0])
def test_drifting_hum_is_followed(seed, mains):
    """The generator's hum drifts by up to 0.1 Hz (0.05 Hz per block at most), which notches at exact multiples
    of 50/60 Hz follow less and less up the harmonics; a tracked and extrapolated fundamental takes more than
    17 dB off it at 30 dB depth (its pink floor, 25 dB down, is not hum the notches could take)."""
    from scenarios.noise import hum

    removed, bank = _hum_removed_db(0.1 * hum(8 * 16000, 16000, mains, np.random.default_rng(seed)))
    assert bank.mains_hz == mains and removed > 17.0, removed


@pytest.mark.parametrize("offset_hz", [-5.0, 0.0, 4.0])
def test_a_notch_gives_way_to_a_strong_sound_at_its_harmonic(offset_hz):
    """A held vowel's strong harmonic near a notched hum harmonic: the notch would distort it (its phase near
    the notch, and the band-pass ringing after it) far more than the weak hum line is worth. The bank lets
    that notch fade out for the block after one in which the sound dominates it, and keeps the others; once
    the sound has gone, the notch comes back. (Without the gate the error at the tone is far above -25 dB.)"""
    sr = 16000
    t = np.arange(6 * sr) / sr
    hum = sum(0.02 * k**-0.7 * np.sin(2 * np.pi * 50 * k * t + k) for k in range(1, 21))
    hum = hum + 1e-4 * np.random.default_rng(2).standard_normal(t.size)
    tone = np.where((t >= 2.0) & (t < 3.0), 0.3 * np.sin(2 * np.pi * (650.0 + offset_hz) * t), 0.0)  # 2 blocks
    bank = HumRemover(sr)
    out, notched = [], []
    for i in range(0, t.size, 8000):
        out.append(bank.process((hum + tone)[i : i + 8000], 30.0, 2.0))
        notched.append(set(bank.notched_orders.tolist()))
    error = np.concatenate(out) - (hum + tone)  # what the bank took: hum lines, and any damage to the tone
    second = slice(int(2.5 * sr), 3 * sr)  # the tone's second block, the first judged with it present
    at_tone = lambda x: np.abs(np.sum(x[second] * np.hanning(sr // 2) * np.exp(-2j * np.pi * (650.0 + offset_hz) * t[second])))  # noqa: E731
    assert 20 * np.log10(at_tone(error) / at_tone(tone)) < -25.0
    assert 13 not in notched[5] and set(range(1, 13)) <= notched[5]  # the notches in the tone's second block
    assert 13 in notched[-1]  # the sound has gone: the harmonic is notched again


@pytest.mark.parametrize("schedule", ["off 1 s", "off 1.25 s", "30 and 10 dB by turns"])
def test_hum_depth_changes_make_no_clicks(schedule):
    """Switching the notches off and on again, or changing their depth, chunk by chunk on steady hum: the
    output above 2 kHz (far from the notches) stays at the level of the noise there, no step, no click."""
    sr, chunk = 16000, 4000
    t = np.arange(8 * sr) / sr
    x = sum(0.2 / k * np.sin(2 * np.pi * 50 * k * t + 1.3 * k) for k in range(1, 6))
    x = (x + 0.001 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
    off = {"off 1 s": (3 * sr, 4 * sr), "off 1.25 s": (3 * sr, 3 * sr + 5 * chunk)}.get(schedule)
    if off:
        depth = lambda i: 0.0 if off[0] <= i < off[1] else 30.0  # noqa: E731
    else:
        depth = lambda i: 10.0 if i >= 3 * sr and (i // chunk) % 2 else 30.0  # noqa: E731
    pipe = EnhancementPipeline(sr, params={**transparent_params(), "hum_width_hz": 2.0})
    out = np.concatenate([pipe.process(x[i : i + chunk], {"hum_depth_db": depth(i)}) for i in range(0, t.size, chunk)])
    high = sosfilt(butter(8, 2000, "high", fs=sr, output="sos"), out[pipe.latency :])
    steady_rms = np.sqrt(np.mean(high[2 * sr : 3 * sr] ** 2))
    worst = max(np.max(np.abs(high[c : c + 320])) for c in range(3 * sr, t.size - pipe.latency, chunk))
    assert 20 * np.log10(worst / steady_rms) < 16.0  # Gaussian noise peaks ~4 rms (12 dB) in 320 samples


def test_memoized_hum_scores_change_nothing(builtin, monkeypatch):
    """The second pass over a clip takes every block's hum scores from the memo the first pass filled."""
    clip = clip_by(builtin, "hum50")  # 4 s: 8 blocks, the memo keeps 16
    pipe = EnhancementPipeline(params={**transparent_params(), "hum_depth_db": 40.0})
    memo = pipe.hum._score_cache
    analysed = []
    store = memo.put
    monkeypatch.setattr(memo, "put", lambda key, value: analysed.append(key) or store(key, value))
    cold = pipe.process_clip(clip.noisy)
    assert len(analysed) >= clip.duration_s / HumRemover.BLOCK_S
    analysed.clear()
    warm = pipe.process_clip(clip.noisy)
    assert not analysed, f"{len(analysed)} block(s) analysed again"
    assert pipe.hum.mains_hz == 50.0 and np.array_equal(cold, warm)


def test_copies_take_the_hum_analysis_from_the_memo(builtin, monkeypatch):
    """Copies of a pipeline (a search's replays) analyse the same blocks from the same state, whatever their
    notch settings: the first does the analysis (mains, detected harmonics, fundamental, line history), the
    others and the original take it from the memo, and the output is what analysing every block gives (the
    mains changing half-way too: the other mains' notches leave)."""
    block = HumRemover(16000).block
    stream = np.concatenate([builtin[clip].noisy[: 4 * block] for clip in ("hum60_snr+0_m2", "hum50_snr+5_m1")])
    live, fresh = (EnhancementPipeline(params={"hum_depth_db": 30.0}) for _ in range(2))
    monkeypatch.setattr(fresh.hum._analysis_cache, "get", lambda key: None)  # analyses every block itself
    analysed = {"memoized": 0, "fresh": 0}
    analyse = HumRemover._analyse_block

    def counted(self):
        analysed["fresh" if self is fresh.hum else "memoized"] += 1
        analyse(self)

    monkeypatch.setattr(HumRemover, "_analyse_block", counted)
    mains = []
    for start in range(0, stream.size, block):
        x = stream[start : start + block]
        for depth, width in [(10.0, 1.0), (45.0, 6.0)]:
            copy.deepcopy(live).process(x, {"hum_depth_db": depth, "hum_width_hz": width})
        assert np.array_equal(live.process(x), fresh.process(x))
        assert np.array_equal(live.hum.notched_orders, fresh.hum.notched_orders)
        mains.append(live.hum.mains_hz)
    assert analysed == {"memoized": 8, "fresh": 8}
    assert mains[1:4] == [60.0] * 3 and mains[-1] == 50.0, mains
    assert live.hum.fundamental == fresh.hum.fundamental and live.hum.active_orders.size >= 3


def test_shared_cache_is_bounded_and_shared_by_copies():
    cache = SharedCache(3)
    for key in range(3):
        cache.put(key, np.full(2, key))
    assert len(cache) == 3 and cache.get(1)[0] == 1 and cache.get(9) is None
    cache.put(3, np.zeros(2))  # full: cleared first
    assert len(cache) == 1 and cache.get(0) is None
    holder = {"cache": cache, "state": np.zeros(2)}
    twin = copy.deepcopy(holder)
    assert twin["cache"] is cache and twin["state"] is not holder["state"]


def test_shared_cache_travels_by_name():
    """Pickled (to a parallel evaluation's worker), a cache travels as its name: back in this process it is the
    same cache; a name this process never made unpickles as one empty cache kept under that name, so every
    copy unpickled there shares it."""
    cache = SharedCache(3)
    cache.put("design", np.ones(4))
    assert pickle.loads(pickle.dumps(cache)) is cache
    assert len(pickle.dumps(cache)) < 200  # the entries stay behind
    pipe = EnhancementPipeline()
    twin = pickle.loads(pickle.dumps(pipe))
    assert twin._static_cache is pipe._static_cache and twin.hum._bank_cache is pipe.hum._bank_cache
    assert twin.hum._zi is not pipe.hum._zi
    rebuild, (_, *rest) = cache.__reduce__()
    adopted = rebuild("another process's cache", *rest)  # what a worker meets: a name it never made
    assert adopted is not cache and len(adopted) == 0 and adopted.max_entries == 3
    assert rebuild("another process's cache", *rest) is adopted


def test_no_hum_no_notches(builtin):
    pipe = EnhancementPipeline()
    pipe.process_clip(builtin[0].clean)
    assert pipe.hum.mains_hz is None and pipe.hum.fundamental == {50.0: 50.0, 60.0: 60.0}


def test_noise_reduction_improves_white_noise(builtin):
    clip = clip_by(builtin, "white")
    out = EnhancementPipeline().process_clip(clip.noisy)
    assert si_sdr_db(out, clip.clean) > si_sdr_db(clip.noisy, clip.clean) + 3.0


def test_noise_window_sets_tracking_speed():
    """After a +12 dB noise step, a short window follows within a second; a long one lags."""
    rng = np.random.default_rng(1)
    sr = 16000
    noise = rng.standard_normal(6 * sr) * 0.01
    noise[3 * sr :] *= 4.0
    lags = {}
    for window in (0.4, 4.0):
        pipe = EnhancementPipeline(params={"nr_noise_window_s": window})
        levels = []
        for chunk in np.split(noise.astype(np.float32), 60):
            pipe.process(chunk)
            levels.append(10 * np.log10(pipe.noise_reduction.noise_psd[10:200].mean()))
        caught_up = np.array(levels[30:]) > levels[29] + 12.0 - 3.0  # within 3 dB of the new level
        lags[window] = int(np.argmax(caught_up)) if caught_up.any() else len(caught_up)
    assert lags[0.4] <= 10  # within 1 s (chunks of 0.1 s)
    assert lags[4.0] >= 25  # not before 2.5 s


def test_track_advances_the_input_side_like_process(builtin):
    """track() leaves the noise tracker, hum detector, framing and latency buffer's length where process()
    would; after one processed chunk the outputs agree with a pipeline that processed everything."""
    clip = builtin["hum50_snr+5_m1"]
    chunks = np.split(clip.noisy[: 8 * 4000], 8)
    params = {"nr_noise_window_s": 0.8, "hum_depth_db": 40.0}
    full, fast, reference = (EnhancementPipeline(params=params) for _ in range(3))
    outputs = [full.process(c) for c in chunks]
    for c in chunks[:5]:
        fast.track(c)
        reference.process(c)
    np.testing.assert_array_equal(fast.noise_reduction.noise_psd, reference.noise_reduction.noise_psd)
    np.testing.assert_array_equal(fast.hum.active_hz, reference.hum.active_hz)
    assert fast.hum.active_hz.size > 0 and fast._out.size == reference._out.size
    np.testing.assert_array_equal(fast.stft._pending, reference.stft._pending)
    fast.process(chunks[5])  # re-fills the output side
    for c, expected in zip(chunks[6:], outputs[6:]):
        np.testing.assert_allclose(fast.process(c), expected, atol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_eq_gain_matches_scipy_sosfreqz(seed):
    """The hand-evaluated EQ response is scipy's sosfreqz of the same cookbook sections."""
    rng = np.random.default_rng(seed)
    freqs = np.fft.rfftfreq(512, 1 / 16000)
    low, mid, high = rng.uniform(-12, 12, 3)
    mid_hz = float(rng.uniform(300, 4000))
    sos = np.stack([_rbj_biquad("low_shelf", 200.0, low, 2**-0.5, 16000), _rbj_biquad("peak", mid_hz, mid, 1.0, 16000),
                    _rbj_biquad("high_shelf", 4000.0, high, 2**-0.5, 16000)])  # fmt: skip
    expected = np.abs(sosfreqz(sos, worN=freqs, fs=16000)[1])
    got = eq_gain(freqs, 16000, low_db=low, low_hz=200.0, mid_db=mid, mid_hz=mid_hz, mid_q=1.0, high_db=high, high_hz=4000.0)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_eq_low_shelf_raises_low_band():
    x = np.random.default_rng(2).standard_normal(32000).astype(np.float32) * 0.05
    params = {**transparent_params(), "eq_low_db": 6.0}
    out = EnhancementPipeline(params=params).process_clip(x)
    band = lambda y: np.sum(np.abs(np.fft.rfft(y))[80 * 2 : 120 * 2] ** 2)  # 80-120 Hz  # noqa: E731
    assert 10 * np.log10(band(out) / band(x)) == pytest.approx(6.0, abs=1.0)


def test_compressor_follows_static_curve():
    sr = 16000
    t = np.arange(2 * sr) / sr
    sine = (10 ** (-8 / 20) * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    params = {**transparent_params(), "comp_threshold_db": -20.0, "comp_ratio": 4.0, "comp_attack_ms": 1.0}
    out = EnhancementPipeline(params=params).process_clip(sine)
    peak_db = 20 * np.log10(np.max(np.abs(out[sr:])))
    assert peak_db == pytest.approx(-20 + 12 / 4, abs=0.7)


@pytest.mark.parametrize("change", [{"comp_makeup_db": 12.0}, {"comp_ratio": 8.0}, {"comp_threshold_db": -40.0}])
def test_compressor_setting_changes_glide_in(change):
    """A new make-up gain, ratio or threshold from one chunk to the next (an agent's action) glides in over
    ``Compressor.GLIDE_S`` (20 ms) instead of stepping the gain within one 1 ms sub-block, which clicks: on a
    steady tone the output's envelope moves by at most 1 dB in any millisecond, and reaches the new level."""
    sr, chunk = 16000, 4000
    t = np.arange(6 * sr) / sr
    x = (0.1 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    before = {**transparent_params(), "comp_ratio": 2.0, "comp_threshold_db": -30.0, "comp_attack_ms": 5.0}
    pipe = EnhancementPipeline(sr, params=before)
    out = np.concatenate([pipe.process(x[i : i + chunk], change if i >= 3 * sr else {}) for i in range(0, t.size, chunk)])
    envelope_db = 20 * np.log10(np.abs(hilbert(out[pipe.latency :]))[sr : 5 * sr])  # away from the edges
    steepest = np.max(np.abs(envelope_db[16:] - envelope_db[:-16]))  # over 1 ms
    expected = EnhancementPipeline(sr, params={**before, **change}).process_clip(x)[pipe.latency :]
    assert steepest < 1.0, steepest
    assert 20 * np.log10(np.max(np.abs(out[-sr:])) / np.max(np.abs(expected[-sr:]))) == pytest.approx(0.0, abs=0.05)


LEVELLED = {**transparent_params(), "level_max_gain_db": 30.0, "level_target_lufs": -23.0}
"""The leveller alone, free to move the level 30 dB either way towards -23 LUFS."""


def speech_at(seconds: float, lufs: float, seed: int) -> np.ndarray:
    """Synthetic speech of one of the built-in voices at ``lufs`` BS.1770 integrated loudness."""
    voice = list(VOICES.values())[seed % len(VOICES)]
    x = synthesize(voice, seconds, 16000, np.random.default_rng(seed))
    return (x * 10 ** ((lufs - loudness_lufs(x, None, 16000)) / 20)).astype(np.float32)


def lufs_between(y: np.ndarray, start_s: float, end_s: float) -> float:
    return loudness_lufs(y[int(start_s * 16000) : int(end_s * 16000)], None, 16000)


def test_leveller_reaches_its_target_on_speech():
    out = EnhancementPipeline(params=LEVELLED).process_clip(speech_at(30.0, -35.0, seed=1))
    assert lufs_between(out, 10.0, 30.0) == pytest.approx(-23.0, abs=0.5)


def test_leveller_recovers_after_a_loud_burst():
    """A 0.6 s knock 30 dB above the talker must not hold the talker under the target for long."""
    x = speech_at(30.0, -30.0, seed=2)
    x[80000:89600] *= 10 ** (30 / 20)
    out = EnhancementPipeline(params=LEVELLED).process_clip(x)
    assert lufs_between(out, 12.0, 30.0) == pytest.approx(-23.0, abs=1.0)


@pytest.mark.parametrize("before, after", [(-20.0, -35.0), (-35.0, -20.0)])
def test_leveller_follows_a_change_of_talker(before, after):
    x = np.concatenate([speech_at(15.0, before, seed=3), speech_at(25.0, after, seed=4)])
    out = EnhancementPipeline(params=LEVELLED).process_clip(x)
    # the first talker's own loudness rises 3 LU from one 5 s window to the next; a 5 s window lags it
    assert lufs_between(out, 5.0, 15.0) == pytest.approx(-23.0, abs=1.5)
    assert lufs_between(out, 25.0, 40.0) == pytest.approx(-23.0, abs=1.0)  # 10-25 s after the change


def test_leveller_holds_its_gain_through_a_pause():
    """Pauses (here 4 s of noise 25 dB under the speech) do not pull the level up."""
    rng = np.random.default_rng(5)
    noise = rng.standard_normal(4 * 16000).astype(np.float32)
    noise *= 10 ** ((-60.0 - loudness_lufs(noise, None, 16000)) / 20)
    x = np.concatenate([speech_at(12.0, -35.0, seed=6), noise, speech_at(4.0, -35.0, seed=7)])
    out = EnhancementPipeline(params=LEVELLED).process_clip(x)
    gain_db = lambda a, b: lufs_between(out, a, b) - lufs_between(x, a, b)  # noqa: E731
    assert gain_db(12.0, 16.0) < gain_db(8.0, 12.0) + 1.0


def test_a_switched_off_leveller_starts_afresh_when_switched_on():
    """Off, the leveller measures nothing: switched on after 10 s of a loud talker, its output is that of a
    leveller that never heard it (and so on target as fast)."""
    loud, quiet = speech_at(10.0, -15.0, seed=3), speech_at(15.0, -35.0, seed=4)
    switched = EnhancementPipeline(params={**LEVELLED, "level_max_gain_db": 0.0})
    switched.process(loud)
    switched.set_params(LEVELLED)
    fresh = EnhancementPipeline(params=LEVELLED)
    fresh.process(np.zeros_like(loud))  # the other stages' states matter: silence leaves them as the talker's would not
    after, never = switched.process(quiet), fresh.process(quiet)
    gain = lambda y, a, b: lufs_between(y, a, b) - lufs_between(quiet, a, b)  # noqa: E731
    assert gain(after, 5.0, 15.0) == pytest.approx(gain(never, 5.0, 15.0), abs=0.2)
    assert lufs_between(after, 5.0, 15.0) == pytest.approx(-23.0, abs=1.0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    unit=st.lists(st.floats(-1, 1), min_size=PARAMETER_SPACE.dim, max_size=PARAMETER_SPACE.dim),
    kind=st.sampled_from(["silence", "dc", "clipped", "noise", "impulse", "tiny"]),
    n=st.integers(1, 6000),
)
def test_any_parameters_any_audio_stay_finite_and_under_the_ceiling(unit, kind, n):
    rng = np.random.default_rng(n)
    x = {
        "silence": np.zeros(n),
        "dc": np.full(n, 0.9),
        "clipped": np.clip(rng.standard_normal(n) * 3, -1, 1),
        "noise": rng.standard_normal(n) * 0.1,
        "impulse": np.eye(1, n, n // 2).ravel(),
        "tiny": rng.standard_normal(n) * 1e-30,
    }[kind].astype(np.float32)
    params = PARAMETER_SPACE.from_unit(np.array(unit))
    pipe = EnhancementPipeline(params=params)
    out = np.concatenate([pipe.process(x), pipe.process(x)])
    assert out.shape == (2 * n,) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    assert np.max(np.abs(out)) <= 10 ** (params["limiter_ceiling_db"] / 20) + 1e-6


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_every_parameter_at_either_bound_stays_finite_at_every_rate(rate):
    """At 8 kHz the top of eq_mid_hz's range (4000 Hz) is the Nyquist frequency: the peak filter was 0/0 there,
    the output NaN, and it stayed NaN (the stages' states held it); an agent's action of +1 lands there."""
    x = (0.1 * np.random.default_rng(0).standard_normal(rate // 2)).astype(np.float32)
    for i, name in enumerate(PARAMETER_SPACE.names):
        for end in (-1.0, 1.0):
            unit = PARAMETER_SPACE.to_unit(PARAMETER_SPACE.defaults())
            unit[i] = end
            params = {**PARAMETER_SPACE.from_unit(unit), "eq_mid_db": 6.0 if name != "eq_mid_db" else 12.0 * end}
            pipe = EnhancementPipeline(rate, params)
            out = np.concatenate([pipe.process(x), pipe.process(x)])
            assert np.all(np.isfinite(out)), (name, end)


def test_bad_input_names_the_problem_and_keeps_state(builtin):
    pipe = EnhancementPipeline()
    good = builtin[0].noisy[:8000]
    pipe.process(good)
    before = pipe.params.copy()
    with pytest.raises(InvalidAudioError, match="NaN"):
        pipe.process(np.array([0.0, np.nan], np.float32))
    with pytest.raises(ParameterError, match="nr_floor_db"):
        pipe.process(good, {"nr_floor_db": 5.0})
    assert pipe.params == before
    with pytest.raises(InvalidAudioError, match="not supported"):
        EnhancementPipeline(44100)
