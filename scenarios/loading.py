"""Read a scenario set: a folder with ``manifest.json`` and audio files (the format of DESIGN.md).

```json
{"name": "my-set", "sample_rate": 16000,
 "clips": [{"id": "c1", "noisy": "audio/c1_noisy.flac", "clean": "audio/c1_clean.flac",
            "tags": {"noise": "babble", "snr_db": 0, "stationary": true}}]}
```

Paths are relative to the folder; any format soundfile reads, at any rate (resampled to the requested
one), multichannel audio is averaged to mono; ``clean`` may be absent. Everything that can be wrong with
a set (the manifest, a file, the audio in it) raises one :class:`~feedback_env.errors.ScenarioError`
that names the set, the clip and the file.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from feedback_env.audio import DEFAULT_RATE, as_audio, check_rate, load_audio, resample
from feedback_env.errors import InvalidAudioError, ScenarioError

BUILTIN = Path(__file__).parent / "builtin"
"""Folder of the built-in set (``python -m scenarios.generate`` writes it)."""

BUILTIN_SETS: dict[str, Path] = {"builtin": BUILTIN}
"""Names :func:`load` accepts instead of a path."""

MANIFEST = "manifest.json"
CLIP_KEYS = ("id", "noisy", "clean", "tags")
_Cache = dict[Path, tuple[np.ndarray, int]]  # resolved path -> (audio at the target rate, the file's rate)


class UnknownClipError(ScenarioError, KeyError):
    """A clip id that is not in the set (a :class:`KeyError` too, for ``dict``-like use)."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


@dataclass(eq=False)
class Clip:
    """One scenario: noisy audio, its clean reference when known, and free-form tags.

    :param noisy: mono float32 ``(n,)`` at ``sample_rate``.
    :param clean: mono float32 ``(n,)``, sample-aligned with ``noisy``, or ``None``.
    :param sample_rate: Hz.
    :param tags: the manifest's tags (``noise``, ``snr_db``, ``split``...).
    :param noisy_path: the file ``noisy`` was read from (for reports).
    :param clean_path: the file ``clean`` was read from, or ``None``.
    """

    id: str
    noisy: np.ndarray = field(repr=False)
    clean: np.ndarray | None = field(repr=False)
    sample_rate: int
    tags: dict[str, Any] = field(default_factory=dict)
    noisy_path: Path | None = None
    clean_path: Path | None = None

    @property
    def split(self) -> str | None:
        """``tags["split"]`` (``"train"``/``"test"`` in the built-in set), or ``None``."""
        return self.tags.get("split")

    @property
    def duration_s(self) -> float:
        return self.noisy.shape[0] / self.sample_rate


@dataclass(eq=False)
class ScenarioSet:
    """The clips of one set, all at ``sample_rate``; indexable by clip id or position."""

    name: str
    root: Path
    sample_rate: int
    clips: list[Clip] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    """Clips that could not be read (only with ``load(..., strict=False)``): id -> the error message."""
    error_tags: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    """The manifest tags of the clips in ``errors``, so that a split or filter keeps only its own."""

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self) -> Iterator[Clip]:
        return iter(self.clips)

    def __contains__(self, clip_id: object) -> bool:
        return any(c.id == clip_id for c in self.clips)

    def __getitem__(self, key: str | int) -> Clip:
        """The clip with id ``key`` (str) or at position ``key`` (int)."""
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            return self.clips[key]
        for clip in self.clips:
            if clip.id == key:
                return clip
        if key in self.errors:
            raise UnknownClipError(f"clip {key!r} of scenario set {self.name!r} could not be read: {self.errors[key]}")
        shown = ", ".join(repr(i) for i in self.ids[:8]) + (", ..." if len(self.clips) > 8 else "")
        raise UnknownClipError(f"scenario set {self.name!r} has no clip {key!r}; its clips are {shown}")

    def __repr__(self) -> str:
        return (
            f"ScenarioSet(name={self.name!r}, root={str(self.root)!r}, sample_rate={self.sample_rate}, "
            f"clips={len(self.clips)})"
        )

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.clips]

    def _subset(self, label: str, clips: list[Clip], errors: dict[str, str]) -> ScenarioSet:
        error_tags = {cid: self.error_tags[cid] for cid in errors if cid in self.error_tags}
        return ScenarioSet(f"{self.name}[{label}]", self.root, self.sample_rate, clips, errors, error_tags)

    def select(self, ids: Sequence[str]) -> ScenarioSet:
        """The clips ``ids``, in that order, each once; an unknown or unreadable id raises
        :class:`UnknownClipError` (with the clip's error when it could not be read)."""
        ids = list(dict.fromkeys(ids))
        return self._subset(",".join(ids), [self[i] for i in ids], {})

    def split(self, name: str) -> ScenarioSet:
        """The clips whose ``tags["split"]`` is ``name``; raises if there are none (a typo, most likely, or
        every clip of that split unreadable: their errors are in the message)."""
        subset = self.filter(split=name)
        if not subset.clips:
            if subset.errors:
                raise ScenarioError(f"scenario set {self.name!r}: no clip with split {name!r} could be read:\n"
                                    + "\n".join(subset.errors.values()))  # fmt: skip
            splits = sorted({str(c.split) for c in self.clips})
            raise ScenarioError(f"scenario set {self.name!r} has no clips with split {name!r}; its splits are {splits}")
        return self._subset(f"split={name}", subset.clips, subset.errors)

    def filter(self, **tags: Any) -> ScenarioSet:
        """The clips whose tags equal all of ``tags`` (e.g. ``filter(noise="babble", stationary=True)``);
        possibly empty."""
        clips = [c for c in self.clips if _has_tags(c.tags, tags)]
        errors = {cid: e for cid, e in self.errors.items() if _has_tags(self.error_tags.get(cid, {}), tags)}
        return self._subset(",".join(f"{k}={v}" for k, v in tags.items()) or "all", clips, errors)


def _has_tags(tags: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether ``tags`` holds every key of ``wanted`` with an equal value."""
    return all(k in tags and tags[k] == v for k, v in wanted.items())


def load(
    name_or_path: str | PathLike[str] = "builtin", sample_rate: int = DEFAULT_RATE, *, strict: bool = True
) -> ScenarioSet:
    """Read a scenario set.

    :param name_or_path: a folder holding ``manifest.json``, the path of a manifest file, or the name of
        a built-in set (``"builtin"``); an existing path wins over a name.
    :param sample_rate: Hz; every clip is resampled to it (the manifest's ``sample_rate`` is a hint only).
    :param strict: with False, a clip whose files cannot be read is left out and its error recorded in
        ``ScenarioSet.errors`` (the rest of the set loads); a malformed manifest still raises.
    :raises ScenarioError: naming the set, the clip and the file, for a malformed manifest, a missing or
        unreadable file, NaN/Inf samples, silent noisy audio or a clean reference of another length.
    """
    try:
        rate = check_rate(sample_rate)
    except InvalidAudioError as exc:
        raise ScenarioError(f"load(): {exc}") from exc
    manifest_path = _manifest_path(name_or_path)
    root = manifest_path.parent
    manifest = _read_manifest(manifest_path)
    name = manifest.get("name", root.name)
    where = f"scenario set {name!r} ({manifest_path})"
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"scenario set at {manifest_path}: 'name' must be a non-empty string, got {name!r}")
    hint = manifest.get("sample_rate")
    if hint is not None and (isinstance(hint, bool) or not isinstance(hint, int) or hint <= 0):
        raise ScenarioError(f"{where}: 'sample_rate' must be a positive integer (Hz), got {hint!r}")
    entries = _check_entries(manifest, where)
    cache: _Cache = {}
    clips, errors, error_tags = [], {}, {}
    for entry in entries:
        try:
            clips.append(_load_clip(entry, root, rate, where, cache))
        except ScenarioError as exc:
            if strict:
                raise
            errors[entry["id"]] = str(exc)
            error_tags[entry["id"]] = dict(entry.get("tags") or {})
    return ScenarioSet(name=name, root=root, sample_rate=rate, clips=clips, errors=errors, error_tags=error_tags)


def _manifest_path(name_or_path: object) -> Path:
    if not isinstance(name_or_path, (str, PathLike)):
        raise ScenarioError(f"load(): expected a folder, a manifest path or a built-in set name, got {name_or_path!r}")
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / MANIFEST).is_file():
            raise ScenarioError(f"scenario folder {path} has no {MANIFEST}")
        return path / MANIFEST
    if path.is_file():
        return path
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_SETS:
        manifest = BUILTIN_SETS[name_or_path] / MANIFEST
        if not manifest.is_file():
            raise ScenarioError(
                f"built-in scenario set {name_or_path!r} is missing ({manifest}); run `python -m scenarios.generate`"
            )
        return manifest
    raise ScenarioError(
        f"no scenario set {str(name_or_path)!r}: not a folder with {MANIFEST}, not a manifest file and not a "
        f"built-in set name ({', '.join(BUILTIN_SETS)})"
    )


def _read_manifest(path: Path) -> dict[str, Any]:
    where = f"scenario set {path.parent.name!r} ({path})"
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is allowed, RFC 8259
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{where}: cannot read the manifest ({type(exc).__name__}: {exc})") from exc
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{where}: the manifest is not valid JSON ({exc})") from exc
    except RecursionError as exc:  # the decoder recurses once per level of [ or {
        raise ScenarioError(f"{where}: the manifest is nested too deep to read ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ScenarioError(f"{where}: the manifest must be a JSON object, got {type(manifest).__name__}")
    return manifest


def _check_entries(manifest: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """Validate the ``clips`` list: its types, required keys and unique ids."""
    if "clips" not in manifest:
        raise ScenarioError(f"{where}: the manifest has no 'clips' list")
    entries = manifest["clips"]
    if not isinstance(entries, list):
        raise ScenarioError(f"{where}: 'clips' must be a list, got {type(entries).__name__}")
    if not entries:
        raise ScenarioError(f"{where}: 'clips' is empty")
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ScenarioError(f"{where}: clip #{i} must be an object, got {type(entry).__name__}")
        clip_id = entry.get("id")
        if not isinstance(clip_id, str) or not clip_id:
            raise ScenarioError(f"{where}: clip #{i} has no 'id' (a non-empty string), got {clip_id!r}")
        label = f"{where}, clip {clip_id!r}"
        if clip_id in seen:
            raise ScenarioError(f"{label}: duplicate id (clips #{seen[clip_id]} and #{i})")
        seen[clip_id] = i
        if not isinstance(entry.get("noisy"), str) or not entry["noisy"]:
            raise ScenarioError(f"{label}: 'noisy' must be the path of an audio file, got {entry.get('noisy')!r}")
        if entry.get("clean") is not None and (not isinstance(entry["clean"], str) or not entry["clean"]):
            raise ScenarioError(f"{label}: 'clean' must be the path of an audio file or absent, got {entry['clean']!r}")
        if entry.get("tags") is not None and not isinstance(entry["tags"], dict):
            raise ScenarioError(f"{label}: 'tags' must be an object, got {type(entry['tags']).__name__}")
        unknown = sorted(set(entry) - set(CLIP_KEYS))
        if unknown:
            warnings.warn(f"{label}: ignoring unknown key(s) {unknown}; a clip has {list(CLIP_KEYS)}", stacklevel=4)
    return entries


def _read_audio(path: Path, rel: str, role: str, rate: int, label: str, cache: _Cache) -> tuple[np.ndarray, int]:
    """``(audio at rate, the file's own rate)``; a file shared by several clips is decoded once."""
    name = f"{role} file {rel!r}"
    try:
        key = path.resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # a path the OS refuses: a NUL, a symlink loop...
        raise ScenarioError(f"{label}: {name}: cannot be opened ({type(exc).__name__}: {exc})") from exc
    if key not in cache:
        try:
            native, file_rate = load_audio(path, None, name=name)
            audio = as_audio(resample(native, file_rate, rate), name, allow_silent=False)
        except InvalidAudioError as exc:
            raise ScenarioError(f"{label}: {exc}") from exc
        peak = float(np.max(np.abs(native)))
        if peak > 1.0:  # float files only: integer PCM reads within [-1, 1]
            warnings.warn(f"{label}: {name}: float audio peaks at {peak:.2f} ({20 * math.log10(peak):+.1f} dBFS), above "
                          "0 dBFS: kept as it is, but the pipeline's limiter (ceiling 0 dBFS, bypass included) will act "
                          "on it; normalise the file", UserWarning, stacklevel=4)  # fmt: skip
        cache[key] = (audio, file_rate)
    audio, file_rate = cache[key]
    return audio.copy(), file_rate


def _load_clip(entry: dict[str, Any], root: Path, rate: int, where: str, cache: _Cache) -> Clip:
    clip_id = entry["id"]
    label = f"{where}, clip {clip_id!r}"
    noisy_path = root / entry["noisy"]
    noisy, noisy_rate = _read_audio(noisy_path, entry["noisy"], "noisy", rate, label, cache)
    clean, clean_path = None, None
    if entry.get("clean") is not None:
        clean_path = root / entry["clean"]
        clean, clean_rate = _read_audio(clean_path, entry["clean"], "clean", rate, label, cache)
        diff = clean.shape[0] - noisy.shape[0]
        if diff and clean_rate != noisy_rate and abs(diff) <= math.ceil(rate / min(clean_rate, noisy_rate)):
            # Two files of one duration at different rates each round it to their own sample grid: they
            # can be up to one sample of the coarser file apart once resampled.
            n = min(clean.shape[0], noisy.shape[0])
            clean, noisy = clean[:n], noisy[:n]
        elif diff:
            raise ScenarioError(
                f"{label}: clean file {entry['clean']!r} and noisy file {entry['noisy']!r} differ in length: "
                f"{clean.shape[0]} vs {noisy.shape[0]} samples at {rate} Hz "
                f"({clean.shape[0] / rate:.3f} s vs {noisy.shape[0] / rate:.3f} s); they must be sample-aligned"
            )
    tags = dict(entry.get("tags") or {})
    return Clip(clip_id, noisy, clean, rate, tags, noisy_path, clean_path)
