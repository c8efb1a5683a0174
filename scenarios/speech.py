"""A source-filter speech synthesizer: the built-in scenarios' stand-in for recorded speech.

Klatt-style, in three steps, all driven by control tracks on a 5 ms frame grid:

1. **Plan.** An utterance is sentences of words of syllables ``[onset] vowel [coda]`` at the voice's
   syllable rate (about 4 per second). Consonants are fricatives (s, sh, f; z and v voiced), plosives
   (a silent closure, a 10 ms burst, aspiration when voiceless), nasals, approximants and /h/. A quarter
   of the words are followed by gaps (~40-100 ms), sentences of 3-7 words by pauses (~200-450 ms); with
   the lead-in, the tail and plosive closures, about 22-30 % of an utterance is true digital silence.
2. **Source.** A Rosenberg glottal pulse train (opening and closing phase, closed phase) differentiated
   for lip radiation (about -6 dB/oct overall), built 4x oversampled from an F0 contour: declination
   over each sentence, pitch accents on stressed syllables, a final fall (or a question rise), jitter
   and shimmer. Aspiration noise is gated by the glottal open phase (breathiness) and by /h/.
3. **Filter.** Six cascaded formant resonators (F1-F6, bandwidths 90-1200 Hz) whose F1-F4 move
   between vowel targets and consonant loci (Peterson & Barney vowel averages, scaled by the voice's
   vocal-tract length), updated every 5 ms with the filter state carried across (``sosfilt`` with
   ``zi``). Frication is band-passed noise (2.2-7.6 kHz for s/sh, broad and weak for f, place-dependent
   bursts) added in parallel.

Everything random comes from the ``numpy.random.Generator`` passed in: the same seed gives the same
samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, resample_poly, sosfilt

FRAME_S = 0.005  # control-track frame, s
OVERSAMPLE = 4  # the glottal source is built at 4x the output rate, then decimated (less aliasing)


@dataclass(frozen=True)
class Voice:
    """A speaker.

    :param name: short id used in tags (``"m1"``, ``"f2"``...).
    :param f0_hz: mean speaking pitch, Hz (adult male ~85-155, female ~165-255).
    :param pitch_span: height of pitch accents in log-F0 (0.3: up to +35 % F0 on a stressed syllable).
    :param formant_scale: vocal-tract length factor applied to formants (1.0 adult male, ~1.15-1.2 female).
    :param syllable_rate: syllables per second (3.5 slow .. 5.5 fast).
    :param open_quotient: open fraction of the glottal cycle (0.45 pressed .. 0.75 breathy).
    :param breathiness: aspiration noise in the open phase, relative to voicing.
    :param jitter: random F0 perturbation (0.01 = 1 %).
    :param shimmer: random amplitude perturbation (0.05 = 5 %).
    """

    name: str
    f0_hz: float
    pitch_span: float = 0.25
    formant_scale: float = 1.0
    syllable_rate: float = 4.0
    open_quotient: float = 0.6
    breathiness: float = 0.04
    jitter: float = 0.01
    shimmer: float = 0.05


# The named speakers of the built-in set (clean speech). Babble uses random voices instead.
VOICES: dict[str, Voice] = {
    v.name: v
    for v in (
        Voice("m1", 108.0, 0.30, 1.00, 4.0, 0.55, 0.03, 0.010, 0.05),
        Voice("m2", 128.0, 0.35, 1.04, 4.7, 0.50, 0.02, 0.008, 0.04),
        Voice("m3", 98.0, 0.40, 0.95, 3.6, 0.60, 0.05, 0.012, 0.06),
        Voice("f1", 205.0, 0.35, 1.17, 4.2, 0.65, 0.06, 0.008, 0.04),
        Voice("f2", 216.0, 0.32, 1.21, 4.8, 0.62, 0.05, 0.007, 0.04),
        Voice("f3", 182.0, 0.32, 1.13, 3.8, 0.70, 0.08, 0.010, 0.05),
    )
}

# Vowel targets F1-F4 in Hz for an adult male (Peterson & Barney 1952 averages; F4 approximate).
VOWELS: dict[str, tuple[float, float, float, float]] = {
    "i": (270, 2290, 3010, 3700),
    "I": (390, 1990, 2550, 3600),
    "e": (530, 1840, 2480, 3550),
    "ae": (660, 1720, 2410, 3500),
    "a": (730, 1090, 2440, 3450),
    "o": (570, 840, 2410, 3350),
    "U": (440, 1020, 2240, 3350),
    "u": (300, 870, 2240, 3350),
    "V": (640, 1190, 2390, 3400),
    "3": (490, 1350, 1690, 3350),
}
# How often each vowel is drawn: stressed syllables use all, unstressed ones mostly central vowels.
VOWEL_WEIGHTS = {"i": 3, "I": 3, "e": 3, "ae": 2, "a": 2, "o": 2, "U": 1, "u": 2, "V": 2, "3": 1}
REDUCED_VOWEL_WEIGHTS = {"I": 3, "V": 4, "3": 2, "e": 1, "U": 1, "i": 1}
BANDWIDTHS_HZ = np.array([90.0, 110.0, 130.0, 180.0])  # B1-B4 of vowels
# F5 and F6 (male, scaled like the others) and their bandwidths: fixed, they keep energy above 4 kHz in
# voiced speech (the role of Klatt's "higher-pole correction"). Resonators above 0.45 fs are skipped.
HIGH_FORMANTS_HZ = np.array([4300.0, 5800.0])
HIGH_BANDWIDTHS_HZ = np.array([300.0, 1200.0])

# Frication noise bands (Hz, male; scaled by formant_scale and capped below Nyquist) and their level
# relative to the voiced vowel level.
FRICATION_BANDS: dict[str, tuple[float, float, float]] = {
    "s": (3800.0, 7600.0, 0.28),
    "sh": (2200.0, 5200.0, 0.4),
    "f": (1200.0, 7600.0, 0.1),
    "burst_p": (400.0, 2500.0, 0.30),
    "burst_t": (2800.0, 7400.0, 0.32),
    "burst_k": (1300.0, 3600.0, 0.38),
}


@dataclass(frozen=True)
class Consonant:
    """A consonant class: how it is rendered and where its formants point (F1-F4 loci, Hz, male)."""

    kind: str  # "fricative" | "plosive" | "nasal" | "approximant" | "h"
    loci: tuple[float, float, float, float] | None  # None: take the neighbouring vowel's formants
    band: str | None = None  # frication or burst band
    voiced: bool = False


CONSONANTS: dict[str, Consonant] = {
    "s": Consonant("fricative", (320, 1700, 2600, 3600), "s"),
    "z": Consonant("fricative", (300, 1700, 2600, 3600), "s", voiced=True),
    "sh": Consonant("fricative", (320, 1900, 2500, 3500), "sh"),
    "f": Consonant("fricative", (330, 1000, 2300, 3400), "f"),
    "v": Consonant("fricative", (300, 1000, 2300, 3400), "f", voiced=True),
    "h": Consonant("h", None),
    "p": Consonant("plosive", (300, 900, 2200, 3400), "burst_p"),
    "b": Consonant("plosive", (280, 900, 2200, 3400), "burst_p", voiced=True),
    "t": Consonant("plosive", (320, 1750, 2600, 3600), "burst_t"),
    "d": Consonant("plosive", (300, 1750, 2600, 3600), "burst_t", voiced=True),
    "k": Consonant("plosive", (320, 1900, 2400, 3500), "burst_k"),
    "g": Consonant("plosive", (300, 1900, 2400, 3500), "burst_k", voiced=True),
    "m": Consonant("nasal", (260, 1000, 2200, 3300), voiced=True),
    "n": Consonant("nasal", (260, 1600, 2500, 3400), voiced=True),
    "l": Consonant("approximant", (360, 1100, 2700, 3500), voiced=True),
    "r": Consonant("approximant", (340, 1200, 1600, 3300), voiced=True),
    "w": Consonant("approximant", (300, 700, 2200, 3300), voiced=True),
    "j": Consonant("approximant", (280, 2200, 2900, 3600), voiced=True),
}
ONSET_WEIGHTS = {"s": 6, "z": 2, "sh": 2, "f": 3, "v": 2, "h": 3, "p": 3, "b": 3, "t": 6, "d": 4,
                 "k": 4, "g": 2, "m": 4, "n": 4, "l": 4, "r": 4, "w": 3, "j": 1}
CODA_WEIGHTS = {"s": 5, "z": 3, "sh": 1, "f": 1, "t": 5, "d": 3, "k": 3, "p": 1, "m": 3, "n": 6,
                "l": 3, "r": 2}


@dataclass
class _Segment:
    kind: str  # "pause" | "vowel" | consonant name
    frames: int
    vowel: str | None = None  # vowel segments: which vowel; consonants: the syllable's vowel
    stressed: bool = False
    amp: float = 1.0


def random_voice(rng: np.random.Generator, name: str = "random") -> Voice:
    """A random adult voice (male or female, 50/50): for babble talkers, never one of :data:`VOICES`."""
    female = bool(rng.random() < 0.5)
    return Voice(
        name=name,
        f0_hz=float(rng.uniform(170.0, 240.0) if female else rng.uniform(88.0, 145.0)),
        pitch_span=float(rng.uniform(0.2, 0.4)),
        formant_scale=float(rng.uniform(1.1, 1.24) if female else rng.uniform(0.93, 1.07)),
        syllable_rate=float(rng.uniform(3.6, 5.4)),
        open_quotient=float(rng.uniform(0.5, 0.72)),
        breathiness=float(rng.uniform(0.02, 0.08)),
        jitter=float(rng.uniform(0.005, 0.015)),
        shimmer=float(rng.uniform(0.03, 0.07)),
    )


def synthesize(voice: Voice, duration_s: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Synthesize ``duration_s`` seconds of speech-like audio; float64 ``(n,)`` with peak 1.0.

    Pauses (lead-in, word gaps, sentence pauses, tail) are exact zeros.

    :param voice: the speaker.
    :param duration_s: length, s (at least 1 s).
    :param sample_rate: Hz (at least 16 kHz for full fricative bands; lower rates cap them at 0.47 fs).
    :param rng: the only source of randomness.
    """
    if duration_s < 1.0:
        raise ValueError(f"duration_s must be at least 1 s, got {duration_s}")
    n = int(round(duration_s * sample_rate))
    hop = int(round(FRAME_S * sample_rate))
    n_frames = -(-n // hop)
    segments = _plan(voice, n_frames, rng)
    tracks = _render_tracks(voice, segments, n_frames, rng)
    x = _synthesize_tracks(voice, tracks, n, hop, sample_rate, rng)
    peak = float(np.max(np.abs(x)))
    return x / peak if peak > 0 else x


# --------------------------------------------------------------------------------------- planning


def _frames(seconds: float) -> int:
    return max(1, int(round(seconds / FRAME_S)))


def _weighted_choice(rng: np.random.Generator, weights: dict[str, int]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _syllable(voice: Voice, rng: np.random.Generator, stressed: bool) -> list[_Segment]:
    """``[onset] vowel [coda]`` with durations from the voice's syllable rate."""
    tempo = 4.0 / voice.syllable_rate  # > 1 for slow speakers
    vowel = _weighted_choice(rng, VOWEL_WEIGHTS if stressed else REDUCED_VOWEL_WEIGHTS)
    amp = float(rng.uniform(0.8, 1.0) if stressed else rng.uniform(0.45, 0.75))
    segs: list[_Segment] = []
    if rng.random() < 0.8:
        segs.append(_consonant(_weighted_choice(rng, ONSET_WEIGHTS), vowel, tempo, rng, amp))
    vowel_s = tempo * float(rng.uniform(0.10, 0.16)) * (1.35 if stressed else 1.0)
    segs.append(_Segment("vowel", _frames(vowel_s), vowel, stressed, amp))
    if rng.random() < 0.35:
        segs.append(_consonant(_weighted_choice(rng, CODA_WEIGHTS), vowel, tempo, rng, amp))
    return segs


def _consonant(name: str, vowel: str, tempo: float, rng: np.random.Generator, amp: float) -> _Segment:
    kind = CONSONANTS[name].kind
    seconds = {
        "fricative": rng.uniform(0.07, 0.12),
        "plosive": rng.uniform(0.06, 0.09),  # closure + burst + aspiration, split when rendered
        "nasal": rng.uniform(0.05, 0.08),
        "approximant": rng.uniform(0.04, 0.07),
        "h": rng.uniform(0.05, 0.08),
    }[kind]
    return _Segment(name, _frames(tempo * float(seconds)), vowel, False, amp)


def _plan(voice: Voice, n_frames: int, rng: np.random.Generator) -> list[list[_Segment]]:
    """Sentences (lists of segments, pauses included) filling exactly ``n_frames``.

    Words are drawn until speech fills ``1 - silence`` of the frames (``silence`` drawn from 19-25 %);
    the remaining frames are shared by the lead-in, the tail, the sentence pauses and gaps after a
    quarter of the words, in proportion to randomly drawn nominal lengths. Plosive closures and
    consonant gaps add about 5 % of silence on top.
    """
    silence = float(rng.uniform(0.19, 0.25))
    speech_budget = int((1.0 - silence) * n_frames)
    words: list[list[_Segment]] = []
    used, misses = 0, 0
    while misses < 30:  # near the end, keep drawing until a word fits the little time that is left
        n_syl = int(rng.choice([1, 2, 3], p=[0.45, 0.38, 0.17]))
        stress_at = int(rng.integers(n_syl))
        word = [seg for s in range(n_syl) for seg in _syllable(voice, rng, s == stress_at)]
        size = sum(seg.frames for seg in word)
        if used + size > speech_budget:
            misses += 1 if words else 0
            continue
        words.append(word)
        used += size

    # Sentence boundaries every 3-7 words; nominal pause lengths (s) at every boundary.
    ends: set[int] = set()
    k = 0
    while k < len(words):
        k += int(rng.integers(3, 8))
        ends.add(min(k, len(words)) - 1)
    lead = float(rng.uniform(0.08, 0.22))
    after = [
        float(rng.uniform(0.1, 0.3)) if w == len(words) - 1
        else float(rng.uniform(0.2, 0.45)) if w in ends
        else float(rng.uniform(0.04, 0.1)) if rng.random() < 0.25
        else 0.0
        for w in range(len(words))
    ]
    nominal = np.array([lead] + after) / FRAME_S
    pause_frames = np.floor(nominal * (n_frames - used) / nominal.sum()).astype(int)
    pause_frames[-1] += n_frames - used - int(pause_frames.sum())  # the remainder goes to the tail

    sentences: list[list[_Segment]] = [[_Segment("pause", int(pause_frames[0]))]]
    sentence: list[_Segment] = []
    for w, word in enumerate(words):
        sentence.extend(word)
        if pause_frames[w + 1] > 0:
            sentence.append(_Segment("pause", int(pause_frames[w + 1])))
        if w in ends:
            sentences.append(sentence)
            sentence = []
    return sentences


# --------------------------------------------------------------------------------------- tracks


@dataclass
class _Tracks:
    f0: np.ndarray  # (n_frames,) Hz
    av: np.ndarray  # voicing amplitude
    ah: np.ndarray  # aspiration amplitude (through the formant cascade)
    af: dict[str, np.ndarray]  # frication amplitude per band
    formants: np.ndarray  # (n_frames, n_resonators) Hz
    bandwidths: np.ndarray  # (n_frames, n_resonators) Hz
    active: np.ndarray  # (n_frames,) bool: not a pause


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Hann-window moving average along axis 0 (edges held): finite support keeps pauses exact zeros."""
    if width <= 1:
        return x
    w = np.hanning(width + 2)[1:-1]
    w /= w.sum()
    pad = width // 2
    xp = np.pad(x, [(pad, width - 1 - pad)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    if x.ndim == 1:
        return np.convolve(xp, w, mode="valid")
    return np.stack([np.convolve(xp[:, k], w, mode="valid") for k in range(x.shape[1])], axis=1)


def _render_tracks(voice: Voice, sentences: list[list[_Segment]], n_frames: int, rng: np.random.Generator) -> _Tracks:
    scale = voice.formant_scale
    av = np.zeros(n_frames)
    ah = np.zeros(n_frames)
    af = {band: np.zeros(n_frames) for band in FRICATION_BANDS}
    targets = np.full((n_frames, 4), np.nan)
    bw = np.tile(np.concatenate([BANDWIDTHS_HZ, HIGH_BANDWIDTHS_HZ]), (n_frames, 1))
    active = np.zeros(n_frames, dtype=bool)
    log_f0 = np.zeros(n_frames)  # relative to the voice's mean, natural log
    stressed_centres: list[int] = []
    sentence_spans: list[tuple[int, int]] = []

    t = 0
    for sentence in sentences:
        start = t
        for seg in sentence:
            a, b = t, min(t + seg.frames, n_frames)
            t += seg.frames
            if seg.kind == "pause" or a >= n_frames:
                continue
            active[a:b] = True
            vowel_f = np.array(VOWELS[seg.vowel], dtype=float) * scale * rng.uniform(0.96, 1.04, 4)
            if seg.kind == "vowel":
                k = b - a
                # A rounded syllabic envelope that peaks early: deep dips between syllables (~4 Hz).
                x = (np.arange(k) + 0.5) / k
                av[a:b] = seg.amp * np.sin(np.pi * x) ** 0.6 * (1.0 - 0.25 * x)
                targets[a:b] = vowel_f
                if seg.stressed:
                    stressed_centres.append((a + b) // 2)
                continue
            cons = CONSONANTS[seg.kind]
            if cons.loci is None:  # /h/: the vocal tract is already shaped for the vowel
                targets[a:b] = vowel_f
            else:  # towards the consonant's place of articulation, coloured by the vowel
                targets[a:b] = 0.6 * np.array(cons.loci, dtype=float) * scale + 0.4 * vowel_f
            if cons.kind == "fricative":
                af[cons.band][a:b] = seg.amp
                if cons.voiced:
                    av[a:b] = 0.12 * seg.amp
            elif cons.kind == "plosive":
                k = b - a
                closure = max(1, int(0.55 * k))
                burst_end = min(k, closure + 2)
                active[a : a + closure] = False  # the closure is silent
                af[cons.band][a + closure : a + burst_end] = seg.amp
                if not cons.voiced:
                    ah[a + burst_end : b] = 0.3 * seg.amp
                else:
                    av[a + burst_end : b] = 0.3 * seg.amp
            elif cons.kind == "nasal":
                av[a:b] = 0.18 * seg.amp
                bw[a:b, 0] = 160.0
            elif cons.kind == "approximant":
                av[a:b] = 0.3 * seg.amp
            else:  # h
                ah[a:b] = 0.4 * seg.amp
        end = min(t, n_frames)
        if any(seg.kind != "pause" for seg in sentence):
            sentence_spans.append((start, end))

    # F0: declination over each sentence, accents on stressed syllables, a final fall or rise.
    frames_idx = np.arange(n_frames)
    for start, end in sentence_spans:
        span = max(1, end - start)
        x = (frames_idx[start:end] - start) / span
        base = rng.normal(0.0, 0.04)
        log_f0[start:end] = base + 0.16 - 0.32 * x
        tail = np.clip((x - 0.85) / 0.15, 0.0, 1.0)
        log_f0[start:end] += (0.28 if rng.random() < 0.2 else -0.1) * tail
    sigma = 0.07 / FRAME_S
    for c in stressed_centres:
        height = voice.pitch_span * rng.uniform(0.4, 1.0)
        log_f0 += height * np.exp(-0.5 * ((frames_idx - c) / sigma) ** 2)
    # Centre the contour on the voice's pitch (median over speech), smooth it, and hold it through
    # pauses so the glottal phase keeps running smoothly.
    if active.any():
        log_f0 -= np.median(log_f0[active])
    f0 = voice.f0_hz * np.exp(_smooth(log_f0, _frames(0.05)))

    # Formants: hold targets through pauses, then smooth (coarticulation, ~45 ms).
    valid = np.flatnonzero(~np.isnan(targets[:, 0]))
    if valid.size == 0:
        targets[:] = np.array(VOWELS["V"]) * scale
    else:
        for k in range(4):
            targets[:, k] = np.interp(frames_idx, valid, targets[valid, k])
    formants = np.empty((n_frames, 4 + HIGH_FORMANTS_HZ.size))
    formants[:, :4] = _smooth(targets, _frames(0.045))
    formants[:, 4:] = HIGH_FORMANTS_HZ * scale
    return _Tracks(
        f0=f0,
        av=_smooth(av, 3),
        ah=_smooth(ah, 3),
        af={band: _smooth(v, 3) for band, v in af.items()},
        formants=formants,
        bandwidths=_smooth(bw, 3),
        active=active,
    )


# --------------------------------------------------------------------------------------- signal


def _rosenberg(phase: np.ndarray, open_quotient: float) -> np.ndarray:
    """Rosenberg glottal flow over one cycle; ``phase`` in [0, 1). Opening 3/4, closing 1/4 of the open phase."""
    tp = open_quotient * 0.75
    tn = open_quotient - tp
    g = np.zeros_like(phase)
    rising = phase < tp
    g[rising] = 0.5 * (1.0 - np.cos(np.pi * phase[rising] / tp))
    falling = (phase >= tp) & (phase < open_quotient)
    g[falling] = np.cos(0.5 * np.pi * (phase[falling] - tp) / tn)
    return g


def _frame_to_samples(track: np.ndarray, n: int, hop: int) -> np.ndarray:
    centres = (np.arange(track.shape[0]) + 0.5) * hop
    return np.interp(np.arange(n), centres, track)


def _resonator_sos(freq: np.ndarray, bw: np.ndarray, sample_rate: int) -> np.ndarray:
    """Unity-DC-gain two-pole resonators (Klatt), one SOS row per (frame, formant); a formant above
    0.45 fs becomes a pass-through section."""
    r = np.exp(-np.pi * bw / sample_rate)
    a1 = -2.0 * r * np.cos(2.0 * np.pi * freq / sample_rate)
    a2 = r * r
    skip = freq > 0.45 * sample_rate
    a1, a2 = np.where(skip, 0.0, a1), np.where(skip, 0.0, a2)
    sos = np.zeros(freq.shape + (6,))
    sos[..., 0] = 1.0 + a1 + a2
    sos[..., 3] = 1.0
    sos[..., 4] = a1
    sos[..., 5] = a2
    return sos


def _band_noise(n: int, lo: float, hi: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    nyq = 0.5 * sample_rate
    hi = min(hi, 0.95 * nyq)
    lo = min(lo, 0.5 * hi)
    sos = butter(4, [lo / nyq, hi / nyq], btype="bandpass", output="sos")
    x = sosfilt(sos, rng.standard_normal(n + 512))[512:]
    return x / np.sqrt(np.mean(x * x))


def _synthesize_tracks(
    voice: Voice, tr: _Tracks, n: int, hop: int, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    n_frames = tr.f0.shape[0]
    # Glottal source, 4x oversampled: phase-accumulated F0 with jitter, Rosenberg flow, its derivative.
    n_os = n * OVERSAMPLE
    jitter = 1.0 + voice.jitter * rng.standard_normal(n_frames)
    f0_os = _frame_to_samples(tr.f0 * jitter, n_os, hop * OVERSAMPLE)
    phase = np.cumsum(f0_os / (sample_rate * OVERSAMPLE)) + rng.random()
    flow = _rosenberg(np.mod(phase, 1.0), voice.open_quotient)
    dflow = np.diff(flow, prepend=0.0) * OVERSAMPLE
    source = resample_poly(dflow, 1, OVERSAMPLE)[:n]
    open_phase = flow[::OVERSAMPLE][:n]
    voiced_ref = np.sqrt(np.mean(source**2)) + 1e-12
    source /= voiced_ref

    shimmer = 1.0 + voice.shimmer * rng.standard_normal(n_frames)
    av = _frame_to_samples(tr.av * shimmer, n, hop)
    ah = _frame_to_samples(tr.ah, n, hop)
    noise = rng.standard_normal(n)
    excitation = av * source + noise * (ah * 1.2 + voice.breathiness * av * (0.3 + open_phase))

    # Formant cascade, coefficients updated per 5 ms frame, state carried across frames.
    sos = _resonator_sos(tr.formants, tr.bandwidths, sample_rate)
    y = np.empty(n)
    zi = np.zeros((sos.shape[1], 2))
    for f in range(n_frames):
        a, b = f * hop, min((f + 1) * hop, n)
        if a >= n:
            break
        y[a:b], zi = sosfilt(sos[f], excitation[a:b], zi=zi)

    # Frication in parallel, scaled relative to the level of the voiced parts.
    strong = av > 0.5 * av.max() if av.max() > 0 else np.ones(n, bool)
    vowel_rms = float(np.sqrt(np.mean(y[strong] ** 2))) if strong.any() else 1.0
    scale = voice.formant_scale
    for band, (lo, hi, level) in FRICATION_BANDS.items():
        env = _frame_to_samples(tr.af[band], n, hop)
        if env.max() <= 0:
            continue
        y += vowel_rms * level * env * _band_noise(n, lo * scale, hi * scale, sample_rate, rng)

    # No sub-audio content (a real microphone chain high-passes it), then pauses back to exact zeros
    # after letting the resonators ring out for 15 ms.
    y = sosfilt(butter(2, 60.0 / (0.5 * sample_rate), btype="highpass", output="sos"), y)
    keep = tr.active.astype(float)
    for _ in range(_frames(0.015)):
        keep = np.maximum(keep, np.concatenate([[0.0], keep[:-1]]))
    gate = np.clip(2.0 * (_frame_to_samples(keep, n, hop) - 0.5), 0.0, 1.0)  # ~5 ms ramps
    return y * gate
