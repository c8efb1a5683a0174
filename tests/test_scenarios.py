"""Scenario sets: the loader (format, resampling, errors), the built-in set and its generator."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import welch

import scenarios
from feedback_env.errors import ScenarioError
from scenarios import generate, noise, speech

SR = 16000
STATIONARY = {"white", "pink", "brown", "hum50", "hum60", "babble", "fan"}
Q16 = 1.0 / 32768  # one 16-bit step


# ----------------------------------------------------------------------------------------- helpers


def family(clip) -> str:
    return clip.tags["noise"] if clip.tags["stationary"] else "nonstationary"


def write_set(root: Path, clips: list, files: dict | None = None, name: str = "myset") -> Path:
    """A scenario folder: ``files`` maps relative paths to ``(samples, rate[, subtype])`` or raw bytes."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    for rel, content in (files or {}).items():
        if isinstance(content, bytes):
            (root / rel).write_bytes(content)
        else:
            sf.write(root / rel, *content)
    (root / "manifest.json").write_text(json.dumps({"name": name, "sample_rate": SR, "clips": clips}))
    return root


def tone(seconds: float, rate: int, hz: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)


def f0_track(x: np.ndarray, rate: int, frame_s: float = 0.04, hop_s: float = 0.01) -> tuple[np.ndarray, int]:
    """F0 (Hz) of voiced frames by normalized autocorrelation (70-400 Hz, peak > 0.5); and the frame count."""
    n, hop = int(frame_s * rate), int(hop_s * rate)
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = np.sum(frames**2, axis=1)
    loud = frames[energy > energy.max() * 10 ** (-2.5)]
    spec = np.fft.rfft(loud * np.hanning(n), 2 * n, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :n]
    ac /= ac[:, :1]
    lo, hi = int(rate / 400), int(rate / 70)
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    peak = ac[np.arange(len(lag)), lag]
    return rate / lag[peak > 0.5], frames.shape[0]


def speech_measures(x: np.ndarray, rate: int) -> dict[str, float]:
    f0, n_frames = f0_track(x, rate)
    short = x[: len(x) // (rate // 50) * (rate // 50)].reshape(-1, rate // 50)  # 20 ms frames
    level_db = 10 * np.log10(np.mean(short**2, axis=1) + 1e-20)
    f, p = welch(x, rate, nperseg=1024)
    band = p[(f >= 100) & (f <= 7000)]
    return {
        "voiced": f0.size / n_frames,
        "f0_variation": (np.percentile(f0, 90) - np.percentile(f0, 10)) / np.median(f0) if f0.size > 10 else 0.0,
        "f0_median": float(np.median(f0)) if f0.size else 0.0,
        "pauses": float(np.mean(level_db < level_db.max() - 30)),
        "flatness": float(np.exp(np.mean(np.log(band + 1e-30))) / np.mean(band)),
        "max_bin_share": float(p.max() / p.sum()),
    }


def is_speech_like(m: dict[str, float]) -> bool:
    return (
        m["voiced"] >= 0.3
        and m["f0_variation"] >= 0.2
        and 0.15 <= m["pauses"] <= 0.40
        and 0.005 <= m["flatness"] <= 0.3
        and m["max_bin_share"] < 0.2
    )


# ----------------------------------------------------------------------------------------- built-in set


def test_builtin_set_shape_and_tags(builtin):
    assert builtin.name == "builtin" and builtin.sample_rate == SR and len(builtin) >= 24
    for clip in builtin:
        assert clip.noisy.dtype == np.float32 and clip.noisy.ndim == 1
        assert clip.clean is not None and clip.clean.dtype == np.float32
        assert clip.clean.shape == clip.noisy.shape
        assert np.isfinite(clip.noisy).all() and np.abs(clip.noisy).max() <= 0.91
        t = clip.tags
        assert {"noise", "snr_db", "stationary", "split", "speaker"} <= set(t)
        assert t["snr_db"] in (-5, 0, 5, 10, 15, 20) and isinstance(t["stationary"], bool)
        assert t["split"] in ("train", "test") and clip.split == t["split"]
        if t["stationary"]:
            assert t["noise"] in STATIONARY and clip.duration_s == 4.0
        else:
            assert t["change_s"] == 4.0 and t["change"] in ("type", "level") and clip.duration_s == 8.0
        assert clip.noisy_path.is_file() and clip.clean_path.is_file()


def test_builtin_splits_cover_every_noise_family(builtin):
    train, test = builtin.split("train"), builtin.split("test")
    assert len(train) + len(test) == len(builtin)
    assert 0.55 <= len(train) / len(builtin) <= 0.75
    for family_name in STATIONARY | {"nonstationary"}:
        assert any(family(c) == family_name for c in train), family_name
        assert any(family(c) == family_name for c in test), family_name
    assert {c.tags["change"] for c in builtin if not c.tags["stationary"]} == {"type", "level"}
    assert {c.tags["snr_db"] for c in test} == {-5, 0, 5, 10, 15, 20}
    # The splits share no speaker.
    assert not {c.tags["speaker"] for c in train} & {c.tags["speaker"] for c in test}


def test_scenario_set_access(builtin):
    first = builtin[0]
    assert builtin[first.id] is first and first.id in builtin and builtin.ids[0] == first.id
    assert [c.id for c in builtin] == builtin.ids
    with pytest.raises(ScenarioError, match="no clip 'nope'") as info:
        builtin["nope"]
    assert isinstance(info.value, KeyError)
    pink = builtin.filter(noise="pink", stationary=True)
    assert len(pink) >= 2 and all(c.tags["noise"] == "pink" for c in pink)
    assert len(builtin.filter(noise="no such noise")) == 0
    with pytest.raises(ScenarioError, match="no clips with split 'tset'"):
        builtin.split("tset")
    assert "clips=" in repr(builtin) and "noisy=" not in repr(first)


def test_builtin_snr_matches_tags(builtin):
    for clip in builtin:
        noise_part = clip.noisy.astype(np.float64) - clip.clean
        region = slice(0, 4 * SR) if clip.tags.get("change") == "level" else slice(None)
        snr = 10 * np.log10(np.sum(clip.clean[region].astype(np.float64) ** 2) / np.sum(noise_part[region] ** 2))
        assert abs(snr - clip.tags["snr_db"]) < 0.5, (clip.id, snr)


def test_builtin_level_steps_and_type_changes_happen_at_4s(builtin):
    for clip in builtin.filter(stationary=False):
        noise_part = clip.noisy.astype(np.float64) - clip.clean
        before, after = noise_part[SR : 4 * SR - SR // 10], noise_part[4 * SR + SR // 10 : 7 * SR]
        step = 10 * np.log10(np.mean(after**2) / np.mean(before**2))
        if clip.tags["change"] == "level":
            assert abs(step - clip.tags["step_db"]) < 1.0, (clip.id, step)
        else:  # the spectrum changes: mean log-spectral distance over 100 Hz-7 kHz
            f, p_before = welch(before, SR, nperseg=1024)
            _, p_after = welch(after, SR, nperseg=1024)
            band = (f >= 100) & (f <= 7000)
            distance_db = np.mean(np.abs(10 * np.log10(p_after[band] / p_before[band])))
            assert distance_db > 3.0, (clip.id, distance_db)


def test_builtin_folder_is_small():
    size = sum(p.stat().st_size for p in scenarios.BUILTIN.rglob("*") if p.is_file())
    assert size <= 5_000_000, f"{size / 1e6:.2f} MB"


def test_builtin_clean_speech_is_speech_like(builtin):
    seen = set()
    for clip in builtin:
        if clip.clean_path in seen:
            continue
        seen.add(clip.clean_path)
        m = speech_measures(clip.clean.astype(np.float64), SR)
        assert is_speech_like(m), (clip.clean_path.name, m)
        assert 80 <= m["f0_median"] <= 260, (clip.clean_path.name, m)
    assert len(seen) >= 6
    # The measures reject what is not speech.
    assert not is_speech_like(speech_measures(tone(4.0, SR, 200.0), SR))
    assert not is_speech_like(speech_measures(np.random.default_rng(0).standard_normal(4 * SR), SR))


def test_manifest_matches_the_plan():
    generate.check_plan()
    manifest = json.loads((scenarios.BUILTIN / "manifest.json").read_text())
    assert set(manifest) == {"name", "sample_rate", "clips"}
    expected = [
        {"id": s.id, "noisy": generate.noisy_file(s), "clean": generate.clean_file(s.utterance), "tags": s.tags()}
        for s in generate.SPECS
    ]
    assert manifest["clips"] == json.loads(json.dumps(expected))


@pytest.mark.parametrize("clip_id", ["white_snr+5_f3", "white-up12_snr+10_f2"])
def test_generator_rebuilds_shipped_clip(builtin, clip_id):
    spec = next(s for s in generate.SPECS if s.id == clip_id)
    noisy, clean = generate.make_clip(spec)
    clip = builtin[clip_id]
    assert np.max(np.abs(noisy - clip.noisy)) <= Q16 + 1e-7
    assert np.max(np.abs(clean - clip.clean)) <= Q16 + 1e-7


# ----------------------------------------------------------------------------------------- generators


def test_speech_synthesizer_is_deterministic_with_true_pauses():
    voice = speech.VOICES["f1"]
    a = speech.synthesize(voice, 2.0, SR, np.random.default_rng(5))
    b = speech.synthesize(voice, 2.0, SR, np.random.default_rng(5))
    c = speech.synthesize(speech.VOICES["m3"], 2.0, SR, np.random.default_rng(5))
    assert a.shape == (2 * SR,) and np.array_equal(a, b) and not np.allclose(a[: c.size], c)
    assert np.max(np.abs(a)) == pytest.approx(1.0)
    assert 0.15 <= np.mean(a == 0.0) <= 0.40  # exact digital silence in pauses


def test_noise_generators_unit_rms_and_spectra():
    rng = np.random.default_rng
    n = 4 * SR
    for name, make in noise.GENERATORS.items():
        if name == "babble":
            continue  # below, once
        x = make(n, SR, rng(1))
        assert x.shape == (n,) and np.sqrt(np.mean(x**2)) == pytest.approx(1.0)
        assert np.array_equal(x, make(n, SR, rng(1))), name

    def band_db(x, lo, hi):
        f, p = welch(x, SR, nperseg=8192, detrend=False)
        return 10 * np.log10(p[(f >= lo) & (f < hi)].mean())

    # Octave slopes: white flat, pink -3 dB/oct, brown -6 dB/oct (measured 500 Hz -> 4 kHz).
    for make, slope in ((noise.white, 0.0), (noise.pink, -3.0), (noise.brown, -6.0)):
        x = make(n, rng(2))
        measured = (band_db(x, 3500, 4500) - band_db(x, 437, 562)) / 3
        assert abs(measured - slope) < 0.7, (make.__name__, measured)
        if slope < 0:  # no DC drift: the 20 Hz high-pass
            power, f = np.abs(np.fft.rfft(x)) ** 2, np.fft.rfftfreq(n, 1 / SR)
            assert abs(np.mean(x)) < 1e-9 and power[f < 5].mean() < 1e-3 * power[(f > 40) & (f < 60)].mean()
    for base in (50.0, 60.0):
        h = noise.hum(n, SR, base, rng(3))
        line, between = band_db(h, base - 2, base + 2), band_db(h, base * 1.4, base * 1.6)
        assert line > between + 20 and band_db(h, 3 * base - 2, 3 * base + 2) > between + 15
        assert band_db(h, 2000, 6000) > -80  # a broadband floor, not only lines
    f = noise.fan(n, SR, rng(4))
    assert band_db(f, 100, 2000) > band_db(f, 5000, 7500) + 20
    b = noise.babble(n, SR, rng(5))
    assert np.sqrt(np.mean(b**2)) == pytest.approx(1.0) and np.mean(b == 0) < 0.01  # a crowd never pauses


def test_scale_to_snr():
    rng = np.random.default_rng(0)
    clean, noise_ = rng.standard_normal(1000), 3.0 * rng.standard_normal(1000)
    scaled = generate.scale_to_snr(clean, noise_, 7.0)
    assert 10 * np.log10(np.sum(clean**2) / np.sum(scaled**2)) == pytest.approx(7.0)


# ----------------------------------------------------------------------------------------- loading folders


def test_load_stereo_44k_wav_and_16bit_flac(tmp_path):
    left, right = tone(0.5, 44100, 300.0, 0.6), tone(0.5, 44100, 300.0, 0.2)
    root = write_set(
        tmp_path / "set",
        [{"id": "c1", "noisy": "audio/n.wav", "clean": "audio/c.flac", "tags": {"noise": "x"}}],
        {
            "audio/n.wav": (np.stack([left, right], axis=1), 44100),
            "audio/c.flac": (tone(0.5, SR, 300.0, 0.4), SR, "PCM_16"),
        },
    )
    for where in (root, root / "manifest.json", str(root)):
        s = scenarios.load(where)
        clip = s["c1"]
        assert s.name == "myset" and clip.sample_rate == SR and clip.tags == {"noise": "x"}
        assert clip.noisy.dtype == np.float32 and clip.noisy.shape == clip.clean.shape == (SR // 2,)
        mid = slice(1000, 7000)  # away from the resampler's edges
        assert np.max(np.abs(clip.noisy[mid] - clip.clean[mid])) < 1e-3  # (0.6 + 0.2) / 2 == 0.4
        assert clip.noisy_path == root / "audio/n.wav" and clip.split is None


def test_load_clip_without_clean_and_other_rates(tmp_path):
    root = write_set(
        tmp_path / "set",
        [
            {"id": "a", "noisy": "audio/a.flac"},
            {"id": "b", "noisy": "audio/b.wav", "clean": "audio/b.wav", "tags": {"split": "test"}},
        ],
        {"audio/a.flac": (tone(1.0, 48000), 48000), "audio/b.wav": (tone(1.0, 8000, 200.0), 8000)},
    )
    for rate in (8000, 16000, 48000):
        s = scenarios.load(root, sample_rate=rate)
        assert s.sample_rate == rate and s["a"].clean is None and s["a"].clean_path is None
        assert s["a"].noisy.shape == s["b"].noisy.shape == s["b"].clean.shape == (rate,)
        assert s.split("test").ids == ["b"]


def test_rates_that_round_apart_are_trimmed_and_unknown_keys_warn(tmp_path):
    # 22051 samples at 44.1 kHz resample to 8001 at 16 kHz: one sample of rounding, not a mismatch.
    root = write_set(
        tmp_path / "set",
        [{"id": "c1", "noisy": "audio/n.wav", "clean": "audio/c.wav", "claen": "typo"}],
        {"audio/n.wav": (tone(22051 / 44100, 44100), 44100), "audio/c.wav": (tone(0.5, SR), SR)},
    )
    with pytest.warns(UserWarning, match="'claen'"):
        clip = scenarios.load(root)["c1"]
    assert clip.noisy.shape == clip.clean.shape == (SR // 2,)


def test_float_audio_above_0_dbfs_is_kept_and_warned_about(tmp_path):
    """Guards review S#5: a float file peaking above 0 dBFS loaded without a word, and then the pipeline's
    limiter (ceiling 0 dBFS, even in bypass) changed it. It is kept as it is, with a warning naming the file
    and its peak; a file within 0 dBFS gives none."""
    root = write_set(tmp_path / "set", [{"id": "hot", "noisy": "audio/hot.wav", "clean": "audio/c.wav"}],
                     {"audio/hot.wav": (tone(0.5, SR, amp=1.5), SR, "FLOAT"), "audio/c.wav": (tone(0.5, SR), SR, "FLOAT")})  # fmt: skip
    with pytest.warns(UserWarning, match=r"noisy file 'audio/hot.wav'.*peaks at 1.50 \(\+3.5 dBFS\)") as caught:
        clip = scenarios.load(root)["hot"]
    assert len(caught) == 1 and np.max(np.abs(clip.noisy)) == pytest.approx(1.5, abs=1e-3)


@pytest.mark.parametrize("noisy_rate, clean_rate", [(8000, 44100), (8000, 48000), (48000, 8000), (22050, 48000), (8000, 16000)])
def test_one_duration_at_different_rates_loads_at_every_target_rate(tmp_path, noisy_rate, clean_rate):
    """1.0001 s at each file's own rate (floor-rounded, as most writers do) is one duration: the resampled
    lengths may differ by up to one sample of the coarser file; both are trimmed to the shorter."""
    seconds = 1.0001
    root = write_set(
        tmp_path / "set",
        [{"id": "c1", "noisy": "audio/n.wav", "clean": "audio/c.wav"},
         {"id": "short", "noisy": "audio/n.wav", "clean": "audio/short.wav"}],
        {"audio/n.wav": (tone(seconds, noisy_rate), noisy_rate, "FLOAT"),
         "audio/c.wav": (tone(seconds, clean_rate), clean_rate, "FLOAT"),
         "audio/short.wav": (tone(0.99, clean_rate), clean_rate, "FLOAT")},
    )  # fmt: skip
    for rate in (8000, 16000, 48000):
        s = scenarios.load(root, sample_rate=rate, strict=False)
        clip = s["c1"]
        n = min(-(-int(seconds * r) * rate // r) for r in (noisy_rate, clean_rate))  # resample_poly: ceil
        assert clip.noisy.shape == clip.clean.shape == (n,), (rate, clip.noisy.shape, clip.clean.shape)
        mid = slice(rate // 10, n - rate // 10)  # away from the resamplers' edges
        assert np.max(np.abs(clip.noisy[mid] - clip.clean[mid])) < 2e-3
        assert "differ in length" in s.errors["short"]  # 10 ms apart is a real mismatch


def test_builtin_loads_at_8k(builtin):
    s = scenarios.load("builtin", sample_rate=8000)
    assert len(s) == len(builtin)
    assert all(c.noisy.shape == c.clean.shape == (len(b.noisy) // 2,) for c, b in zip(s, builtin))


def _good_files():
    return {"audio/n.wav": (tone(0.5, SR), SR), "audio/c.wav": (tone(0.5, SR), SR)}


@pytest.mark.parametrize(
    "case, clips, files, expected",
    [
        ("not json", None, {}, ["myset", "manifest.json", "not valid JSON"]),
        ("no clips", {"name": "myset"}, {}, ["myset", "manifest.json", "no 'clips'"]),
        ("no noisy", [{"id": "c7", "clean": "audio/c.wav"}], _good_files(), ["c7", "manifest.json", "'noisy'"]),
        ("no id", [{"noisy": "audio/n.wav"}], _good_files(), ["clip #0", "manifest.json", "'id'"]),
        ("bad tags", [{"id": "c7", "noisy": "audio/n.wav", "tags": [1]}], _good_files(), ["c7", "'tags'"]),
        (
            "duplicate ids",
            [{"id": "c7", "noisy": "audio/n.wav"}, {"id": "c7", "noisy": "audio/n.wav"}],
            _good_files(),
            ["c7", "duplicate id", "manifest.json"],
        ),
        ("missing file", [{"id": "c7", "noisy": "audio/missing.wav"}], {}, ["c7", "missing.wav", "no such file"]),
        (
            "unreadable file",
            [{"id": "c7", "noisy": "audio/garbage.wav"}],
            {"audio/garbage.wav": b"this is not a RIFF file at all" * 20},
            ["c7", "garbage.wav", "unreadable"],
        ),
        (
            "length mismatch",
            [{"id": "c7", "noisy": "audio/n.wav", "clean": "audio/short.wav"}],
            {"audio/n.wav": (tone(0.5, SR), SR), "audio/short.wav": (tone(0.4, SR), SR)},
            ["c7", "short.wav", "n.wav", "differ in length"],
        ),
        (
            "nan",
            [{"id": "c7", "noisy": "audio/nan.wav"}],
            {"audio/nan.wav": (np.where(np.arange(SR) == 100, np.nan, tone(1.0, SR)).astype(np.float32), SR, "FLOAT")},
            ["c7", "nan.wav", "NaN"],
        ),
        (
            "silent",
            [{"id": "c7", "noisy": "audio/zero.wav"}],
            {"audio/zero.wav": (np.zeros(SR), SR)},
            ["c7", "zero.wav", "silent"],
        ),
        (
            "silent clean",
            [{"id": "c7", "noisy": "audio/n.wav", "clean": "audio/zero.wav"}],
            {"audio/n.wav": (tone(1.0, SR), SR), "audio/zero.wav": (np.zeros(SR), SR)},
            ["c7", "zero.wav", "silent"],
        ),
    ],
)
def test_bad_sets_raise_one_clear_error(tmp_path, case, clips, files, expected):
    root = write_set(tmp_path / "myset", [], files)
    if case == "not json":
        (root / "manifest.json").write_text('{"name": "myset", "clips": [')
    elif isinstance(clips, dict):
        (root / "manifest.json").write_text(json.dumps(clips))
    else:
        write_set(root, clips, name="myset")
    with pytest.raises(ScenarioError) as info:
        scenarios.load(root)
    message = str(info.value)
    for part in expected:
        assert part in message, (case, message)
    if case in ("missing file", "unreadable file", "nan", "silent", "not json"):
        assert info.value.__cause__ is not None  # chained, not swallowed


def test_unknown_set_name_and_empty_folder(tmp_path):
    with pytest.raises(ScenarioError, match="no scenario set 'no-such-set'.*builtin"):
        scenarios.load("no-such-set")
    with pytest.raises(ScenarioError, match="has no manifest.json"):
        scenarios.load(tmp_path)


# ----------------------------------------------------------------------------------------- the generator's folder


def test_generate_removes_only_its_own_stale_files_inside_out_audio(tmp_path):
    """Regenerating deletes the audio its previous manifest listed and the new one does not, inside
    ``out/audio`` only; a manifest of another set in ``out`` (a user's recordings) makes it refuse."""
    out, elsewhere = tmp_path / "gen", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "shared.flac").write_bytes(b"not ours")
    generate.generate(out, specs=generate.SPECS[:2], name="test")
    manifest = json.loads((out / "manifest.json").read_text())
    dropped = out / generate.noisy_file(generate.SPECS[1])
    manifest["clips"][0]["clean"] = "../elsewhere/shared.flac"  # a path leaving out/audio
    (out / "manifest.json").write_text(json.dumps(manifest))
    generate.generate(out, specs=generate.SPECS[:1], name="test")
    assert not dropped.exists()  # its own stale file, removed
    assert (elsewhere / "shared.flac").read_bytes() == b"not ours"

    mine = tmp_path / "my_recordings"
    write_set(mine, [{"id": "r1", "noisy": "audio/r1.flac"}], {"audio/r1.flac": (tone(0.1, SR), SR)}, name="mine")
    before = (mine / "manifest.json").read_text()
    with pytest.raises(ScenarioError, match=r"my_recordings.*'mine'.*not 'test'"):
        generate.generate(mine, specs=generate.SPECS[:1], name="test")
    assert (mine / "audio" / "r1.flac").exists() and (mine / "manifest.json").read_text() == before
    assert sorted(p.name for p in (mine / "audio").iterdir()) == ["r1.flac"]  # nothing written either


def test_selections_keep_their_own_unreadable_clips_and_name_their_errors(tmp_path):
    root = write_set(
        tmp_path / "set",
        [{"id": "a", "noisy": "audio/n.wav", "tags": {"split": "train"}},
         {"id": "b", "noisy": "audio/garbage.wav", "tags": {"split": "test"}},
         {"id": "d", "noisy": "audio/n.wav", "tags": {"split": "test"}},
         {"id": "e", "noisy": "audio/missing.wav", "tags": {"split": "dev"}}],
        {"audio/n.wav": (tone(0.5, SR), SR), "audio/garbage.wav": b"not audio" * 20},
    )  # fmt: skip
    s = scenarios.load(root, strict=False)
    assert set(s.errors) == {"b", "e"}
    assert s.select(["a", "d", "a"]).ids == ["a", "d"]  # a repeated id is one clip
    assert s.select(["a"]).errors == {}
    assert set(s.split("test").errors) == {"b"} and s.split("train").errors == {}
    assert set(s.filter(split="test").errors) == {"b"}
    with pytest.raises(ScenarioError, match=r"'b'.*garbage\.wav.*unreadable") as info:
        s.select(["b"])  # in the manifest but unreadable: its error, not "no clip"
    assert isinstance(info.value, KeyError)
    with pytest.raises(ScenarioError, match=r"(?s)split 'dev'.*missing\.wav.*no such file"):
        s.split("dev")  # every clip of it unreadable


def test_generate_with_an_out_path_that_is_a_file_says_so_in_one_line(tmp_path, capsys):
    """Guards review S#6b: ``--out`` naming a file (or a folder that cannot be made) raised a traceback; it is
    one error line naming the path, exit code 2."""
    path = tmp_path / "a_file"
    path.write_text("x")
    assert generate.main(["--out", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and str(path) in err


def test_stationary_streams_refuse_another_sets_folder_and_remove_their_own_stale_files(tmp_path):
    """Guards review S#6a: ``write_stationary_set`` overwrote any ``manifest.json`` (a user's own set) and left
    the audio of noise types a rerun dropped. It keeps generate's rules: refuse another set's folder, remove
    its own stale files."""
    from scenarios.streams import write_stationary_set

    mine = write_set(tmp_path / "mine", [{"id": "r1", "noisy": "audio/r1.flac"}], {"audio/r1.flac": (tone(0.1, SR), SR)},
                     name="my-recordings")  # fmt: skip
    before = (mine / "manifest.json").read_text()
    with pytest.raises(ScenarioError, match=r"'my-recordings', not 'stationary-streams'"):
        write_stationary_set(mine, ("white",), duration_s=1.0)
    assert (mine / "manifest.json").read_text() == before and sorted(p.name for p in (mine / "audio").iterdir()) == ["r1.flac"]
    out = write_stationary_set(tmp_path / "streams", ("white", "pink"), duration_s=1.0)
    write_stationary_set(out, ("white",), duration_s=1.0)
    assert sorted(p.name for p in (out / "audio").iterdir()) == ["white_stream_0_clean.flac", "white_stream_0_noisy.flac"]


def test_a_manifest_with_a_bom_loads_and_a_path_the_os_refuses_names_its_clip(tmp_path):
    root = write_set(tmp_path / "set", [], {"audio/n.wav": (tone(0.5, SR), SR)})
    clips = [{"id": "good", "noisy": "audio/n.wav"}, {"id": "nul", "noisy": "audio/n\u0000.wav"}]
    (root / "manifest.json").write_bytes(b"\xef\xbb\xbf" + json.dumps({"name": "bom", "clips": clips}).encode())
    s = scenarios.load(root, strict=False)  # a UTF-8 BOM (Windows editors) is allowed by RFC 8259
    assert s.name == "bom" and s.ids == ["good"] and "'nul'" in s.errors["nul"] and "noisy file" in s.errors["nul"]
    with pytest.raises(ScenarioError, match=r"clip 'nul'.*noisy file.*null byte"):
        scenarios.load(root)
    (root / "audio" / "loop_a.wav").symlink_to("loop_b.wav")
    (root / "audio" / "loop_b.wav").symlink_to("loop_a.wav")
    write_set(root, [{"id": "loop", "noisy": "audio/loop_a.wav"}])
    with pytest.raises(ScenarioError, match=r"clip 'loop'.*noisy file 'audio/loop_a.wav'"):
        scenarios.load(root)


def test_a_manifest_nested_too_deep_is_a_clear_error(tmp_path):
    root = write_set(tmp_path / "set", [])
    deep = '{"clips": [{"id": "c", "noisy": "n.wav", "tags": {"a": ' + "[" * 5000 + "]" * 5000 + "}}]}"
    (root / "manifest.json").write_text(deep)
    with pytest.raises(ScenarioError, match=r"manifest\.json.*nested too deep to read"):
        scenarios.load(root)
