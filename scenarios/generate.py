"""Generate the built-in scenario set, deterministically: ``python -m scenarios.generate [--out DIR]``.

Writes ``manifest.json`` and ``audio/*.flac`` (16 kHz, 16-bit PCM FLAC) into ``scenarios/builtin`` (or
``--out``). Every signal comes from a ``numpy`` generator seeded by :data:`ROOT_SEED` and the name of
what it makes (``"speech:m1a"``, ``"noise:<clip id>"``), so running it twice gives identical samples,
and :func:`make_clip` rebuilds any one clip in memory.

**The plan** (:data:`UTTERANCES`, :data:`SPECS`): 10 clean utterances by 6 synthetic speakers
(:mod:`scenarios.speech`; train speakers m1, m2, f1, f2, test speakers m3, f3: the splits share no
voice), 29 clips (19 train, 10 test). Stationary clips are 4 s of one noise type (white, pink, brown,
hum50, hum60, babble, fan; :mod:`scenarios.noise`); non-stationary clips are 8 s whose noise changes at
4 s, either its type (``"pink->babble"``: 50 ms equal-power crossfade) or its level (``"white+12dB"``:
a 50 ms ramp). SNRs are -5, 0, 5, 10, 15 or 20 dB; every noise type, and the non-stationary family,
appears in both splits.

**Mixing**: ``noisy = clean + noise`` sample for sample. The noise is scaled so that
``10 log10(sum(clean**2) / sum(noise**2))`` equals the clip's ``snr_db`` over the whole clip (pauses
included: speech power is averaged over the whole clean signal), except for level-step clips, where
the tag is the SNR of the first 4 s (the second half is ``step_db`` lower/higher in noise). Several clips
share one clean file, so the level is set per clean utterance: one gain for the utterance and all the
clips that use it, such that the loudest of those noisy clips peaks at 0.9 (-0.9 dBFS) and none clips.
``clean`` is therefore exactly the speech inside ``noisy``, up to 16-bit quantization (half a step,
1/65536, in each file).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from feedback_env.audio import save_audio
from feedback_env.errors import ScenarioError
from scenarios.loading import BUILTIN
from scenarios.noise import GENERATORS
from scenarios.speech import VOICES, synthesize

ROOT_SEED = 20261126
SAMPLE_RATE = 16000  # Hz, the rate of every file written
CHANGE_S = 4.0  # where non-stationary noise changes, s
CROSSFADE_S = 0.05  # length of the type crossfade / level ramp, s
PEAK = 0.9  # sample peak of the loudest noisy clip of each clean utterance

_CHANGE = re.compile(r"^(?P<a>[a-z0-9]+)(?:->(?P<b>[a-z0-9]+)|(?P<step>[+-]\d+)dB)?$")


@dataclass(frozen=True)
class Utterance:
    """A clean utterance: ``speaker`` is a key of :data:`scenarios.speech.VOICES`; ``duration_s`` in s."""

    id: str
    speaker: str
    duration_s: float


@dataclass(frozen=True)
class ClipSpec:
    """One noisy clip of the plan.

    :param noise: a noise name of :data:`scenarios.noise.GENERATORS` (``"pink"``), a type change at
        :data:`CHANGE_S` (``"pink->babble"``) or a level step there (``"white+12dB"``, ``"babble-10dB"``).
    :param snr_db: SNR of the whole clip (of the first part for level steps), dB.
    :param utterance: key of :data:`UTTERANCES`.
    :param split: ``"train"`` or ``"test"``.
    """

    noise: str
    snr_db: int
    utterance: str
    split: str

    def _parts(self) -> tuple[str, str | None, int | None]:
        m = _CHANGE.match(self.noise)
        if m is None or m["a"] not in GENERATORS or (m["b"] is not None and m["b"] not in GENERATORS):
            raise ValueError(
                f"noise {self.noise!r}: expected one of {sorted(GENERATORS)}, 'a->b' or 'a+NdB' with those names"
            )
        return m["a"], m["b"], None if m["step"] is None else int(m["step"])

    @property
    def change(self) -> str | None:
        """``None`` (stationary), ``"type"`` or ``"level"``."""
        _, second, step = self._parts()
        return "type" if second is not None else "level" if step is not None else None

    @property
    def stationary(self) -> bool:
        return self.change is None

    @property
    def id(self) -> str:
        first, second, step = self._parts()
        slug = first
        if second is not None:
            slug = f"{first}-to-{second}"
        elif step is not None:
            slug = f"{first}-{'up' if step > 0 else 'down'}{abs(step)}"
        return f"{slug}_snr{self.snr_db:+d}_{UTTERANCES[self.utterance].speaker}"

    def tags(self) -> dict[str, Any]:
        """The manifest tags of this clip."""
        _, _, step = self._parts()
        tags: dict[str, Any] = {
            "noise": self.noise,
            "snr_db": self.snr_db,
            "stationary": self.stationary,
            "split": self.split,
            "speaker": UTTERANCES[self.utterance].speaker,
            "utterance": self.utterance,
        }
        if not self.stationary:
            tags.update(change_s=CHANGE_S, change=self.change)
        if step is not None:
            tags["step_db"] = step
        return tags


UTTERANCES: dict[str, Utterance] = {
    u.id: u
    for u in (
        # train speakers
        Utterance("m1a", "m1", 4.0),
        Utterance("f1a", "f1", 4.0),
        Utterance("m2a", "m2", 4.0),
        Utterance("f2a", "f2", 4.0),
        Utterance("m1b", "m1", 8.0),
        Utterance("f2b", "f2", 8.0),
        # test speakers
        Utterance("m3a", "m3", 4.0),
        Utterance("f3a", "f3", 4.0),
        Utterance("m3b", "m3", 8.0),
        Utterance("f3b", "f3", 8.0),
    )
}

SPECS: tuple[ClipSpec, ...] = (
    # train, stationary (4 s)
    ClipSpec("white", -5, "m1a", "train"),
    ClipSpec("white", 10, "f2a", "train"),
    ClipSpec("pink", 0, "f1a", "train"),
    ClipSpec("pink", 15, "m2a", "train"),
    ClipSpec("brown", -5, "m2a", "train"),
    ClipSpec("brown", 5, "f1a", "train"),
    ClipSpec("hum50", 5, "m1a", "train"),
    ClipSpec("hum50", 20, "f2a", "train"),
    ClipSpec("hum60", 0, "m2a", "train"),
    ClipSpec("hum60", 10, "f1a", "train"),
    ClipSpec("babble", 0, "f2a", "train"),
    ClipSpec("babble", 15, "m1a", "train"),
    ClipSpec("fan", -5, "f1a", "train"),
    ClipSpec("fan", 20, "m2a", "train"),
    # train, non-stationary (8 s, change at 4 s)
    ClipSpec("pink->babble", 5, "m1b", "train"),
    ClipSpec("white+12dB", 10, "f2b", "train"),
    ClipSpec("fan->white", 0, "m1b", "train"),
    ClipSpec("hum50->pink", 15, "f2b", "train"),
    ClipSpec("babble-10dB", -5, "m1b", "train"),
    # test, stationary (4 s)
    ClipSpec("white", 5, "f3a", "test"),
    ClipSpec("pink", 20, "m3a", "test"),
    ClipSpec("brown", 0, "f3a", "test"),
    ClipSpec("hum50", 15, "m3a", "test"),
    ClipSpec("hum60", -5, "f3a", "test"),
    ClipSpec("babble", 5, "m3a", "test"),
    ClipSpec("fan", 10, "f3a", "test"),
    # test, non-stationary (8 s, change at 4 s)
    ClipSpec("babble->pink", 0, "m3b", "test"),
    ClipSpec("pink+12dB", 15, "f3b", "test"),
    ClipSpec("hum60->fan", 10, "m3b", "test"),
)


def check_plan(specs: Sequence[ClipSpec] = SPECS) -> None:
    """Raise ``ValueError`` on duplicate ids, unknown utterances/speakers/noises or bad splits."""
    seen: set[str] = set()
    for spec in specs:
        if spec.utterance not in UTTERANCES:
            raise ValueError(f"clip spec {spec}: unknown utterance {spec.utterance!r}")
        if UTTERANCES[spec.utterance].speaker not in VOICES:
            raise ValueError(f"utterance {spec.utterance!r}: unknown speaker")
        if spec.split not in ("train", "test"):
            raise ValueError(f"clip spec {spec}: split must be 'train' or 'test'")
        if not spec.stationary and UTTERANCES[spec.utterance].duration_s <= CHANGE_S + CROSSFADE_S:
            raise ValueError(f"clip spec {spec}: a non-stationary clip needs an utterance longer than {CHANGE_S} s")
        if spec.id in seen:
            raise ValueError(f"duplicate clip id {spec.id!r}")
        seen.add(spec.id)


def rng_for(key: str) -> np.random.Generator:
    """The generator for one named signal: seeded by :data:`ROOT_SEED` and a CRC-32 of ``key``."""
    return np.random.default_rng([ROOT_SEED, zlib.crc32(key.encode("utf-8"))])


def _frozen(x: np.ndarray) -> np.ndarray:
    x.setflags(write=False)  # cached: nobody may change it in place
    return x


@lru_cache(maxsize=None)
def clean_speech(utterance_id: str) -> np.ndarray:
    """The utterance as synthesized (peak 1.0, before the group gain); read-only float64."""
    u = UTTERANCES[utterance_id]
    return _frozen(synthesize(VOICES[u.speaker], u.duration_s, SAMPLE_RATE, rng_for(f"speech:{u.id}")))


def noise_signal(spec: ClipSpec, n: int) -> np.ndarray:
    """The clip's noise before SNR scaling: unit-RMS noise(s), crossfaded or level-stepped at CHANGE_S."""
    first, second, step = spec._parts()
    rng = rng_for(f"noise:{spec.id}")
    a = GENERATORS[first](n, SAMPLE_RATE, rng)
    if spec.stationary:
        return a
    t = (np.arange(n) / SAMPLE_RATE - CHANGE_S) / CROSSFADE_S + 0.5
    ramp = np.clip(t, 0.0, 1.0)  # 0 before the change, 1 after, linear over CROSSFADE_S
    if second is not None:
        b = GENERATORS[second](n, SAMPLE_RATE, rng)
        theta = 0.5 * np.pi * ramp  # equal-power crossfade of two independent noises
        return np.cos(theta) * a + np.sin(theta) * b
    return a * 10.0 ** (step * ramp / 20.0)


def snr_region(spec: ClipSpec, n: int) -> slice:
    """Where ``snr_db`` holds: the whole clip, or the part before the change for level steps."""
    return slice(0, int(round(CHANGE_S * SAMPLE_RATE))) if spec.change == "level" else slice(0, n)


def scale_to_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float, region: slice = slice(None)) -> np.ndarray:
    """``noise`` scaled so that ``10 log10(mean(clean**2) / mean(noise**2)) == snr_db`` over ``region``."""
    speech_power = float(np.mean(np.square(clean[region])))
    noise_power = float(np.mean(np.square(noise[region])))
    return noise * np.sqrt(speech_power / (noise_power * 10.0 ** (snr_db / 10.0)))


@lru_cache(maxsize=None)
def _raw_mix(spec: ClipSpec) -> tuple[np.ndarray, np.ndarray]:
    """``(clean, noise)`` at the synthesizer's level, noise scaled to the SNR; read-only."""
    clean = clean_speech(spec.utterance)
    noise = scale_to_snr(clean, noise_signal(spec, clean.shape[0]), spec.snr_db, snr_region(spec, clean.shape[0]))
    return clean, _frozen(noise)


def group_gain(utterance_id: str, specs: Sequence[ClipSpec] = SPECS) -> float:
    """The gain shared by an utterance and its noisy clips: the loudest of those clips peaks at :data:`PEAK`."""
    peaks = [float(np.max(np.abs(np.add(*_raw_mix(s))))) for s in specs if s.utterance == utterance_id]
    if not peaks:
        raise ValueError(f"utterance {utterance_id!r} is used by no clip")
    return PEAK / max(peaks)


def make_clip(spec: ClipSpec, specs: Sequence[ClipSpec] = SPECS) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild one clip in memory: ``(noisy, clean)`` float64 at the level written to the files.

    :param specs: the plan ``spec`` belongs to (the gain is shared by clips with the same utterance).
    """
    group = list(specs) if spec in specs else [*specs, spec]
    gain = group_gain(spec.utterance, group)
    clean, noise = _raw_mix(spec)
    return gain * (clean + noise), gain * clean


def clean_file(utterance_id: str) -> str:
    return f"audio/clean_{utterance_id}.flac"


def noisy_file(spec: ClipSpec) -> str:
    return f"audio/{spec.id}.flac"


def generate(out: str | Path = BUILTIN, specs: Sequence[ClipSpec] = SPECS, name: str = "builtin") -> dict[str, Any]:
    """Write the set into ``out`` (``manifest.json`` + ``audio/``) and return the manifest.

    Audio files under ``out/audio`` listed by the previous ``manifest.json`` of this set (same ``name``)
    and not by the new one are removed; no other file is touched.

    :raises ScenarioError: before writing anything, when ``out`` holds a ``manifest.json`` that is not
        this set's (another ``name``, or unreadable): a folder of someone's own recordings, most likely.
    """
    check_plan(specs)
    out = Path(out)
    manifest_path = out / "manifest.json"
    previous = _own_audio(out, _previous_clips(manifest_path, name))
    (out / "audio").mkdir(parents=True, exist_ok=True)

    clips = []
    written_clean: set[str] = set()
    for spec in specs:
        noisy, clean = make_clip(spec, specs)
        if spec.utterance not in written_clean:
            save_audio(out / clean_file(spec.utterance), clean, SAMPLE_RATE, subtype="PCM_16")
            written_clean.add(spec.utterance)
        save_audio(out / noisy_file(spec), noisy, SAMPLE_RATE, subtype="PCM_16")
        clips.append(
            {"id": spec.id, "noisy": noisy_file(spec), "clean": clean_file(spec.utterance), "tags": spec.tags()}
        )
    manifest = {"name": name, "sample_rate": SAMPLE_RATE, "clips": clips}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    for stale in previous - _own_audio(out, clips):
        stale.unlink(missing_ok=True)
    return manifest


def _previous_clips(manifest_path: Path, name: str) -> list:
    """The clip entries of the manifest :func:`generate` wrote before in this folder (none if there is no
    manifest); raises if the manifest there is not the one of set ``name``."""
    if not manifest_path.exists():
        return []
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        found = manifest.get("name")
        clips = manifest.get("clips")
    except (OSError, ValueError, AttributeError) as exc:
        found, clips = f"unreadable ({type(exc).__name__}: {exc})", None
    if found != name:
        raise ScenarioError(
            f"{manifest_path} is the manifest of set {found!r}, not {name!r}: generating there would overwrite "
            f"it and its audio; choose another output folder (--out) or remove that one"
        )
    return clips if isinstance(clips, list) else []


def _own_audio(out: Path, clips: list) -> set[Path]:
    """The resolved paths of the audio files ``clips`` list that lie inside ``out/audio``."""
    audio = (out / "audio").resolve()
    owned = set()
    for rel in (c.get(k) for c in clips if isinstance(c, dict) for k in ("noisy", "clean")):
        try:
            path = (out / rel).resolve() if isinstance(rel, str) else None
        except (OSError, ValueError):  # a path the OS refuses (embedded NUL...) is no file of ours
            continue
        if path is not None and path.is_relative_to(audio) and path != audio:
            owned.add(path)
    return owned


def folder_size_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenarios.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=BUILTIN, help=f"output folder (default: {BUILTIN})")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        manifest = generate(args.out)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # --out is a file, or a folder that cannot be made or written
        print(f"error: cannot write the set to {args.out} ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    print(f"{'id':32s} {'noise':14s} {'snr':>4s} {'split':5s} {'len':>5s}")
    for clip in manifest["clips"]:
        t = clip["tags"]
        n = UTTERANCES[t["utterance"]].duration_s
        print(f"{clip['id']:32s} {t['noise']:14s} {t['snr_db']:+4d} {t['split']:5s} {n:4.1f}s")
    size = folder_size_bytes(args.out)
    print(f"{len(manifest['clips'])} clips in {args.out}: {size / 1e6:.2f} MB, generated in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
