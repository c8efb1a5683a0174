"""Long stationary streams: one voice talking for minutes in noise of constant type and level.

The built-in clips are 4-8 s; measuring a detector's false-alarm rate per step needs hundreds of steps
under unchanging conditions. :func:`write_stationary_set` writes such a set in the scenario format
(manifest + FLAC), built from the same speech synthesizer and noise generators as the built-in set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from scenarios import noise as noises
from scenarios.generate import _own_audio, _previous_clips, scale_to_snr
from scenarios.speech import random_voice, synthesize

SAMPLE_RATE = 16000
SET_NAME = "stationary-streams"
_NOISES = {
    "white": lambda n, rng: noises.white(n, rng),
    "pink": lambda n, rng: noises.pink(n, rng, SAMPLE_RATE),
    "brown": lambda n, rng: noises.brown(n, rng, SAMPLE_RATE),
    "fan": lambda n, rng: noises.fan(n, SAMPLE_RATE, rng),
}


def write_stationary_set(
    folder: str | Path,
    noise_types: Sequence[str] = ("white", "pink", "brown", "fan"),
    duration_s: float = 60.0,
    snr_db: float = 5.0,
    seed: int = 0,
) -> Path:
    """Write one clip per noise type (a random voice, ``duration_s`` s, ``snr_db`` dB) to ``folder``.

    :return: the folder, loadable with ``scenarios.load``; clips are tagged ``stationary: true``.
    :raises ScenarioError: before writing anything, when ``folder`` holds another set's ``manifest.json``
        (as :func:`scenarios.generate.generate`); audio files its previous manifest listed and this one does
        not (a noise type dropped) are removed, no other file.
    """
    unknown = set(noise_types) - set(_NOISES)
    if unknown:
        raise ValueError(f"unknown noise types {sorted(unknown)}; known: {sorted(_NOISES)}")
    root = Path(folder)
    previous = _own_audio(root, _previous_clips(root / "manifest.json", SET_NAME))
    (root / "audio").mkdir(parents=True, exist_ok=True)
    clips = []
    for i, kind in enumerate(noise_types):
        rng = np.random.default_rng([seed, i])
        clean = 0.3 * synthesize(random_voice(rng), duration_s, SAMPLE_RATE, rng)
        noisy = clean + scale_to_snr(clean, _NOISES[kind](clean.size, rng), snr_db)
        peak = max(1.0, float(np.max(np.abs(noisy))) / 0.95)
        clip_id = f"{kind}_stream_{i}"
        for name, audio in (("noisy", noisy), ("clean", clean)):
            sf.write(root / "audio" / f"{clip_id}_{name}.flac", (audio / peak).astype(np.float32), SAMPLE_RATE, subtype="PCM_24")
        clips.append(
            {
                "id": clip_id,
                "noisy": f"audio/{clip_id}_noisy.flac",
                "clean": f"audio/{clip_id}_clean.flac",
                "tags": {"noise": kind, "snr_db": snr_db, "stationary": True, "split": "test"},
            }
        )
    (root / "manifest.json").write_text(json.dumps({"name": SET_NAME, "sample_rate": SAMPLE_RATE, "clips": clips}, indent=2))
    for stale in previous - _own_audio(root, clips):
        stale.unlink(missing_ok=True)
    return root
