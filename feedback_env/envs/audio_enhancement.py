"""The enhancement pipeline as Gymnasium environments: parameters are actions, quality is the reward."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from feedback_env.envs.actions import AbsoluteAction, DeltaAction, PresetAction
from feedback_env.envs.rendering import before_after_image, metrics_line
from feedback_env.errors import MetricError
from feedback_env.features import ChunkFeatures
from feedback_env.metrics import compute_metrics
from feedback_env.objectives import QualityReward
from feedback_env.observation import build_observation, feedback_vector, observation_size
from feedback_env.pipeline import PARAMETER_SPACE, EnhancementPipeline, aligned
from feedback_env.presets import PRESETS


FRESH_NOISE_BANK = 4  # realizations per noise type
FRESH_NOISE_S = 12.0  # length of each, s
FRESH_NOISE_SEED = 20261127  # with the type and realization: apart from the built-in set's ROOT_SEED


@lru_cache(maxsize=None)
def _noise_bank(kind: str, k: int, sample_rate: int) -> np.ndarray:
    """Realization ``k`` of the generator ``kind`` (unit RMS, ``FRESH_NOISE_S`` long), from its own seed:
    none is the noise of a built-in clip. Cached: babble costs ~0.15 s per second of noise."""
    from scenarios.noise import GENERATORS  # imported here: scenarios depends on feedback_env

    rng = np.random.default_rng([FRESH_NOISE_SEED, zlib.crc32(f"fresh:{kind}:{k}".encode())])
    return GENERATORS[kind](int(FRESH_NOISE_S * sample_rate), sample_rate, rng)


def _fresh_noise(noise: np.ndarray, sample_rate: int, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """A new noise in place of ``noise``: a random type of :data:`scenarios.noise.GENERATORS`, one of
    its bank realizations, read circularly from a random offset, at ``noise``'s RMS (the SNR is kept)."""
    from scenarios.noise import GENERATORS

    kinds = sorted(GENERATORS)
    kind = kinds[int(rng.integers(len(kinds)))]
    bank = _noise_bank(kind, int(rng.integers(FRESH_NOISE_BANK)), sample_rate)
    other = bank[(int(rng.integers(bank.size)) + np.arange(noise.size)) % bank.size]
    return kind, other * np.sqrt(float(np.mean(np.square(noise)))) / float(np.sqrt(np.mean(np.square(other))))


@lru_cache(maxsize=8)
def _load_scenarios(name_or_path: str, sample_rate: int):
    import scenarios  # imported here: scenarios depends on feedback_env, not the other way round

    return scenarios.load(name_or_path, sample_rate=sample_rate)


@dataclass
class _ClipStream:
    """One clip cut into chunks, with its time-aligned references and cached features."""

    clip_id: str
    noisy_chunks: list[np.ndarray]
    clean_chunks: list[np.ndarray] | None  # clean, delayed by the pipeline latency
    noisy_refs: list[np.ndarray]  # noisy, delayed by the pipeline latency: the unprocessed output
    features: np.ndarray  # (n_chunks, n_features)
    baseline: dict[int, dict[str, float]]  # unprocessed metrics per chunk, filled lazily


AUGMENT_KEYS = ("snr_shift_db", "splice", "fresh_noise")
"""The keys of ``config["augment"]`` (see :class:`AudioEnhancementEnv`)."""


def check_augment(augment: Mapping[str, Any] | None) -> None:
    """Raise ``ValueError`` naming the key of ``augment`` that is unknown or has a bad value.

    ``snr_shift_db``: a pair ``(lo, hi)`` of finite dB with ``lo <= hi``; ``splice`` and
    ``fresh_noise``: probabilities in [0, 1].
    """
    if augment is None:
        return
    if not isinstance(augment, Mapping):
        raise ValueError(f"augment must be a dict with keys among {list(AUGMENT_KEYS)} or None, got {type(augment).__name__}")
    if unknown := set(augment) - set(AUGMENT_KEYS):
        raise ValueError(f"unknown augment keys {sorted(unknown)}; known: {list(AUGMENT_KEYS)}")
    if "snr_shift_db" in augment:
        value = augment["snr_shift_db"]
        try:
            if isinstance(value, (str, bytes)):
                raise TypeError
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"augment['snr_shift_db'] must be a pair (lo, hi) of numbers in dB, got {value!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"augment['snr_shift_db'] must be finite dB, got {value!r}")
        if lo > hi:
            raise ValueError(f"augment['snr_shift_db'] must be (lo, hi) with lo <= hi, got {tuple(value)!r}")
    for key in ("splice", "fresh_noise"):
        if key in augment:
            value = augment[key]
            try:
                p = float(value)
            except (TypeError, ValueError):
                p = float("nan")
            if isinstance(value, (str, bytes)) or not 0.0 <= p <= 1.0:
                raise ValueError(f"augment[{key!r}] must be a probability in [0, 1], got {value!r}")


def _same(a: Any, b: Any) -> bool:
    """``a == b`` for config values (lists, dicts, None, numbers), False where it is not a plain bool."""
    try:
        return bool(a == b)
    except Exception:  # e.g. an array compared with None
        return False


class AudioEnhancementEnv(gym.Env):
    """
    ## Description
    One episode streams one recorded clip (noisy audio, usually with its clean reference) through the
    :class:`~feedback_env.pipeline.EnhancementPipeline`, chunk by chunk (0.5 s by default). Before each
    chunk the agent hears features of the coming noisy chunk and sets the pipeline's parameters for it;
    the reward says how much the enhanced chunk improved on the unprocessed one.

    ## Action Space
    ``Box(-1, 1, (d,), float32)``: the tuned parameters (``config["tuned"]``, all 19 by default) in the
    unit cube of :data:`~feedback_env.pipeline.PARAMETER_SPACE`: -1 is each parameter's lower bound, +1
    its upper bound, log-scaled for frequencies, times and ratios. Untuned parameters keep their defaults
    (or ``config["fixed"]``). Physical values (Hz, dB, ms) are reported in ``info["params"]``.
    With ``config["action_center"]`` (physical values of the tuned parameters) and
    ``config["action_radius"]`` r the action is an offset: the position is ``clip(center + r * action,
    -1, 1)`` in the unit cube (a residual action space around, e.g., the best static setting).

    ## Observation Space
    ``Box(-1, 1, (13 + d + m + 1,), float32)``, every entry normalized and clipped to [-1, 1]: 13 features,
    the d tuned parameters, the reward's m objectives (2 by default, so 35 entries with all 19
    parameters tuned) and the last reward. With
    ``config["feature_context"]`` a in (0, 1), the 13 features are followed by 13 more, their running mean
    over the episode's chunks (``mean = a * mean + (1 - a) * features``), and the rest shifts by 13:

    | index      | entry                                                                             |
    |------------|-----------------------------------------------------------------------------------|
    | 0-5        | band energies of the coming chunk relative to its total: ``dB / 30 + 1``           |
    | 6          | level, ``(dBFS + 40) / 40``                                                       |
    | 7          | noise-floor estimate (10th percentile of 16 ms frame energies), ``(dBFS + 60) / 60`` |
    | 8          | estimated SNR (90th minus 10th percentile), ``dB / 20 - 1``                       |
    | 9          | change of the noise floor since the previous chunk, ``dB / 20``                   |
    | 10         | hum score (50/60 Hz harmonic peaks over their neighbourhood), ``dB / 15``         |
    | 11         | spectral flatness, ``2 f - 1``                                                    |
    | 12         | clipping ratio, ``2 min(1, 100 r) - 1``                                           |
    | 13..13+d-1 | current tuned parameters in the unit cube                                         |
    | then m + 1 | last step: each objective's normalized improvement, then the last reward / 2      |

    ## Rewards
    ``QualityReward`` (see :mod:`feedback_env.objectives`): by default the weighted improvement of the
    enhanced chunk over the unprocessed chunk on cheap intrusive metrics, both compared with the clean
    reference delayed by the pipeline latency (SI-SDR in units of 10 dB plus a log-spectral-distance
    term); for clips without a clean reference, the non-intrusive default. Always finite. A chunk whose
    clean reference is silent (a speech pause) cannot be scored (SI-SDR is -100 processed or not, and the
    LSD term alone would pay for any suppression): it pays 0, with ``info["scored"] = False``.

    ## Starting State
    The pipeline is reset (filter states, noise estimate) and its parameters set to the defaults
    (``config["fixed"]`` merged in). The clip is ``options["clip"]`` or drawn with ``self.np_random``
    from ``config["split"]`` of the scenario set; ``options["scenarios"]`` switches the set.
    With ``config["augment"] = {"snr_shift_db": (lo, hi), "splice": p, "fresh_noise": q}`` (training
    only; any key may be left out; for sets whose noisy audio is clean + noise, like the built-in one) a
    drawn clip's noise is rescaled by an SNR shift drawn from [lo, hi] dB and, with probability p, a
    second clip of the split (shifted too) is appended, so that the noise, its level and the voice
    change mid-episode. With probability q per part, the part's noise is first replaced, at the same
    RMS, by a new noise of a random type of :data:`scenarios.noise.GENERATORS` (a bank of 4 realizations
    per type, 12 s each, seeded apart from every built-in clip): the voices stay the split's, the noises
    are new (domain randomization). ``info["clip"]`` then names the parts, new noises and shifts
    (``"a-3.1dB+b[fan]+7.0dB"``). Clips chosen by ``options["clip"]`` are never augmented.
    :meth:`restore_params` sets the current parameters between steps (rollbacks).

    ## Episode End
    ``truncated=True`` after the clip's last chunk; never ``terminated``.

    ## Arguments
    ``gym.make("feedback_env/AudioEnhancement-v0", config={...}, render_mode=None)``; see
    :meth:`default_config` for every key and its default. A key only another of the three envs uses
    (here ``max_step`` and ``presets``; see ``unused_config_keys``) raises ``ValueError`` unless it has
    its default value. ``render_mode="rgb_array"`` returns the
    spectrogram of the last ``RENDER_S`` (4 s) of the unprocessed episode above that of the enhanced one
    (silence before the episode's start; one frame shape throughout); ``"ansi"`` a line.

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": ["rgb_array", "ansi"], "render_fps": 2}
    RENDER_S = 4.0
    unused_config_keys: tuple[str, ...] = ("max_step", "presets")
    """Keys of :meth:`default_config` this env ignores: giving one a non-default value is an error."""

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """Every knob and its default; user config is merged over this."""
        return {
            "scenarios": "builtin",  # folder path or built-in set name
            "split": "train",  # clips whose tags.split matches; None for all
            "clips": None,  # explicit clip ids (overrides split)
            "sample_rate": 16000,  # Hz: 8000, 16000 or 48000
            "chunk_s": 0.5,  # chunk length in seconds
            "tuned": None,  # parameter names the action sets; None = all
            "fixed": {},  # physical overrides of the defaults
            "reward": None,  # a QualityReward; None = the default for each clip's references
            "perceptual": False,  # add PESQ and STOI to the default reward (slow)
            "max_step": 0.2,  # delta env: unit-cube step per chunk at |action| = 1
            "smoothing": 0.0,  # absolute env: params = a * current + (1 - a) * position (unit cube), a in [0, 1)
            "action_center": None,  # absolute env: physical tuned params at action 0; None = the cube's centre
            "action_radius": 1.0,  # absolute env: unit-cube widths at |action| = 1: position = center + radius * action
            "presets": list(PRESETS),  # strategy env: the arms
            "feature_context": 0.0,  # ChunkFeatures(context=...): per-chunk decay of averaged features appended, 0 = none
            "augment": None,  # training variants of drawn clips (noisy = clean + noise): see the class docstring
        }

    def __init__(self, config: dict[str, Any] | None = None, render_mode: str | None = None, **kwargs: Any):
        unknown = set(config or {}).union(kwargs) - set(self.default_config())
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(self.default_config())}")
        self.config = {**self.default_config(), **(config or {}), **kwargs}
        defaults = self.default_config()
        for key in self.unused_config_keys:
            if key in self.config and not _same(self.config[key], defaults[key]):
                raise ValueError(
                    f"config key {key!r} is not used by {type(self).__name__} (got {self.config[key]!r:.80}); "
                    "leave it out or use the env it applies to"
                )
        check_augment(self.config["augment"])
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} not in {self.metadata['render_modes']}")
        self.render_mode = render_mode
        c = self.config
        self.sample_rate = int(c["sample_rate"])
        self.param_space = PARAMETER_SPACE
        self.pipeline = EnhancementPipeline(self.sample_rate)
        chunk_s = c["chunk_s"]
        if isinstance(chunk_s, (str, bytes, bool)) or not isinstance(chunk_s, (int, float, np.number)) or not (
            math.isfinite(chunk_s) and chunk_s > 0
        ):
            raise ValueError(f"chunk_s must be a positive number of seconds, got {chunk_s!r}")
        self.chunk_size = int(round(chunk_s * self.sample_rate))
        if self.chunk_size <= 0:
            raise ValueError(f"chunk_s must be at least one sample (1 / {self.sample_rate} s), got {chunk_s!r}")
        self.start_params = {**self.param_space.defaults(), **self.param_space.validate(c["fixed"])}
        if c["tuned"] is not None and not len(c["tuned"]):
            raise ValueError('config["tuned"] is empty: it would tune nothing (None tunes all the parameters)')
        tuned = list(c["tuned"]) if c["tuned"] is not None else list(self.param_space.names)
        self.action_type = self._make_action_type(tuned)
        self.action_space = self.action_type.action_space
        self.features = ChunkFeatures(self.sample_rate, context=c["feature_context"])
        self._rewards = {
            True: c["reward"] or QualityReward.default(intrusive=True, perceptual=c["perceptual"]),
            False: c["reward"] or QualityReward.default(intrusive=False),
        }
        self._n_objectives = max(len(r.objectives) for r in self._rewards.values())
        obs_dim = observation_size(self.features, self.action_type.tuned, self._n_objectives)
        self.observation_space = spaces.Box(-1.0, 1.0, (obs_dim,), dtype=np.float32)
        self._scenario_name = str(c["scenarios"])
        self._streams: dict[tuple[str, str], _ClipStream] = {}
        self._stream: _ClipStream | None = None
        self._episode_in: list[np.ndarray] = []  # for render(): unprocessed and enhanced chunks so far
        self._episode_out: list[np.ndarray] = []
        self._last_info: dict[str, Any] = {}

    def _make_action_type(self, tuned: list[str]):
        c = self.config
        return AbsoluteAction(self.param_space, tuned, c["smoothing"], c["action_center"], c["action_radius"])

    # ----------------------------------------------------------------- data
    def _clip_ids(self, scenario_set) -> list[str]:
        c = self.config
        if c["clips"]:
            return list(c["clips"])
        ids = [clip.id for clip in scenario_set if c["split"] is None or clip.tags.get("split") == c["split"]]
        if not ids:
            raise ValueError(f"scenario set {scenario_set.name!r} has no clips with split {c['split']!r}")
        return ids

    def _make_stream(self, clip_id: str, noisy: np.ndarray, clean: np.ndarray | None) -> _ClipStream:
        n = self.chunk_size
        latency = self.pipeline.latency
        cut = lambda x: [x[i : i + n] for i in range(0, len(x), n)]  # noqa: E731
        noisy_chunks = cut(noisy)
        self.features.reset()
        feats = np.stack([self.features(chunk) for chunk in noisy_chunks])
        clean_chunks = None if clean is None else cut(aligned(clean, latency))
        return _ClipStream(clip_id, noisy_chunks, clean_chunks, cut(aligned(noisy, latency)), feats, {})

    def _stream_for(self, scenario_name: str, scenario_set, clip_id: str) -> _ClipStream:
        key = (scenario_name, clip_id)
        if key not in self._streams:
            clip = scenario_set[clip_id]
            self._streams[key] = self._make_stream(clip.id, clip.noisy, clip.clean)
        return self._streams[key]

    def _augmented_stream(self, scenario_set, clip_id: str, ids: list[str]) -> _ClipStream:
        """A training variant of ``clip_id`` (``config["augment"]``): its noise rescaled by a random
        SNR shift and, with probability ``splice``, a second clip of the split appended (the noise,
        its level and the voice change at the junction, as in the non-stationary clips)."""
        augment, rng = self.config["augment"], self.np_random
        parts = [clip_id]
        if rng.random() < augment.get("splice", 0.0) and len(ids) > 1:
            parts.append(ids[int(rng.integers(len(ids)))])
        low, high = augment.get("snr_shift_db", (0.0, 0.0))
        noisy, clean, names = [], [], []
        for part in parts:
            clip = scenario_set[part]
            shift = float(rng.uniform(low, high))
            if clip.clean is None:  # no reference: the noise cannot be separated, so no rescaling
                noisy.append(clip.noisy)
                shift = 0.0
            else:
                noise = clip.noisy - clip.clean
                if augment.get("fresh_noise") and rng.random() < augment["fresh_noise"]:
                    kind, noise = _fresh_noise(noise, clip.sample_rate, rng)
                    part = f"{part}[{kind}]"
                noisy.append(clip.clean + noise * 10.0 ** (-shift / 20.0))
                clean.append(clip.clean)
            names.append(f"{part}{shift:+.1f}dB")
        x = np.concatenate(noisy).astype(np.float32)
        ref = np.concatenate(clean).astype(np.float32) if len(clean) == len(parts) else None
        peak = max(1.0, float(np.max(np.abs(x))) / 0.99)  # a louder noise must not clip
        return self._make_stream("+".join(names), x / peak, None if ref is None else ref / peak)

    # ----------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode. Every option is checked (the scenario set loaded, the clip looked up, the
        parameters validated) before anything is replaced: a failed reset leaves the env as it was.

        :param options: ``{"scenarios": name or path, "clip": id, "params": {name: physical value}}``,
            each optional.
        """
        options = {} if options is None else options
        if not isinstance(options, Mapping):
            raise TypeError(f"options must be a mapping (dict), got {type(options).__name__}")
        scenario_name = str(options.get("scenarios", self._scenario_name))
        scenario_set = _load_scenarios(scenario_name, self.sample_rate)
        extra = self.param_space.validate(options["params"]) if "params" in options else {}
        if "clip" in options:
            clip_id = str(options["clip"])
            scenario_set[clip_id]  # raises a clear error for an unknown id
            ids = None
        else:
            ids = self._clip_ids(scenario_set)
        if self._rewards[False].intrusive:  # config["reward"] serves every clip, and it needs a clean reference
            lacking = [i for i in ([clip_id] if ids is None else ids) if scenario_set[i].clean is None]
            if lacking:
                raise MetricError(f"clip(s) {lacking} have no clean reference, and config['reward'] "
                                  f"({', '.join(self._rewards[False].metric_names)}) needs one: use clips with references "
                                  "(config['split'] / config['clips']) or a non-intrusive reward")  # fmt: skip
        super().reset(seed=seed)
        if ids is None:
            stream = self._stream_for(scenario_name, scenario_set, clip_id)
        else:
            clip_id = ids[int(self.np_random.integers(len(ids)))]
            augmented = self.config["augment"] is not None
            stream = (
                self._augmented_stream(scenario_set, clip_id, ids)
                if augmented
                else self._stream_for(scenario_name, scenario_set, clip_id)
            )
            clip_id = stream.clip_id
        self._scenario_name, self._stream, self._t = scenario_name, stream, 0
        self.pipeline.reset()
        self.params = {**self.action_type.reset(dict(self.start_params)), **extra}
        self.pipeline.set_params(self.params)
        self._last = feedback_vector(None, None, None, 0.0, self._n_objectives)
        self._episode_in, self._episode_out, self._last_info = [], [], {}
        return self._observation(), {"clip": clip_id, "chunk": 0, "params": dict(self.params), "metrics": {}}

    def _observation(self) -> np.ndarray:
        s = self._stream
        t = min(self._t, len(s.noisy_chunks) - 1)
        return build_observation(s.features[t], self.action_type.tuned, self.params, self._last)

    def restore_params(self, params: dict[str, float]) -> np.ndarray:
        """Set the current parameters (physical, merged over the current ones; e.g. a rollback) and
        return the observation of the coming chunk, which shows them."""
        if self._stream is None:
            raise RuntimeError("call reset() before restore_params()")
        self.params = {**self.params, **self.param_space.validate(params)}
        self.pipeline.set_params(self.params)
        return self._observation()

    def _reward_for(self) -> QualityReward:
        return self._rewards[self._stream.clean_chunks is not None]

    def _metrics(self, output: np.ndarray, t: int, reward: QualityReward) -> tuple[dict, dict]:
        s = self._stream
        reference = None if s.clean_chunks is None else s.clean_chunks[t]
        names = list(reward.metric_names)
        processed = compute_metrics(output, reference, self.sample_rate, names=names)
        if t not in s.baseline:
            s.baseline[t] = compute_metrics(s.noisy_refs[t], reference, self.sample_rate, names=names)
        return processed, s.baseline[t]

    def step(self, action):
        if self._stream is None:
            raise RuntimeError("call reset() before step()")
        s, t = self._stream, self._t
        if t >= len(s.noisy_chunks):
            raise RuntimeError(
                f"the episode is over (truncated after chunk {t - 1} of clip {s.clip_id!r}); call reset()"
            )
        self.params = self.action_type.apply(action, self.params)
        output = self.pipeline.process(s.noisy_chunks[t], self.params)
        reward_fn = self._reward_for()
        processed, baseline = self._metrics(output, t, reward_fn)
        scored = reward_fn.can_score(None if s.clean_chunks is None else s.clean_chunks[t])
        if scored:
            reward = float(reward_fn(processed, baseline))
            if not np.isfinite(reward):  # QualityReward is finite by construction; keep the promise regardless
                reward = -reward_fn.clip
            self._last = feedback_vector(reward_fn, processed, baseline, reward, self._n_objectives)
        else:  # nothing to learn: no reward and no feedback (as after a reset)
            reward = 0.0
            self._last = feedback_vector(None, None, None, 0.0, self._n_objectives)
        self._t += 1
        truncated = self._t >= len(s.noisy_chunks)
        if self.render_mode is not None:
            self._episode_in.append(s.noisy_refs[t])
            self._episode_out.append(output)
        info = {
            "clip": s.clip_id,
            "chunk": t,
            "params": dict(self.params),
            "metrics": processed,
            "baseline_metrics": baseline,
            "scored": scored,
        }
        self._last_info = {**info, "reward": reward, "n_chunks": len(s.noisy_chunks)}
        return self._observation(), reward, False, truncated, info

    def render(self):
        if self.render_mode == "rgb_array":
            window = int(round(self.RENDER_S * self.sample_rate))  # a fixed width: video recorders need one frame shape

            def last(chunks: list[np.ndarray]) -> np.ndarray:
                return np.concatenate([np.zeros(window, np.float32), *chunks])[-window:]

            return before_after_image(last(self._episode_in), last(self._episode_out), self.sample_rate)
        if self.render_mode == "ansi":
            i = self._last_info
            if not i:
                return f"clip {self._stream.clip_id if self._stream else '-'}: no step yet"
            return metrics_line(i["clip"], i["chunk"] + 1, i["n_chunks"], i["reward"], i["metrics"], i["baseline_metrics"])
        return None


class AudioEnhancementDeltaEnv(AudioEnhancementEnv):
    """
    The feedback loop proper: as :class:`AudioEnhancementEnv`, but the action is a *change* of the
    tuned parameters: ``Box(-1, 1, (d,))`` scaled by ``config["max_step"]`` (unit-cube widths per chunk,
    0.2 by default), added to the current position and clipped to the cube. The observation's
    parameter entries show where the loop stands. Episodes start from the defaults (or
    ``options["params"]``).
    """

    unused_config_keys = ("smoothing", "action_center", "action_radius", "presets")

    def _make_action_type(self, tuned: list[str]):
        return DeltaAction(self.param_space, tuned, self.config["max_step"])


class StrategySelectionEnv(AudioEnhancementEnv):
    """
    Strategy selection for bandits and discrete agents: as :class:`AudioEnhancementEnv`, but the action
    is ``Discrete(k)``, one of the named presets of :mod:`feedback_env.presets` (``config["presets"]``:
    bypass, gentle, strong_denoise, hum_removal, fast_tracking, voice_focus by default), applied to the
    coming chunk. The observation's parameter entries show the preset last applied, over all parameters.
    """

    unused_config_keys = ("tuned", "smoothing", "action_center", "action_radius", "max_step")

    def _make_action_type(self, tuned: list[str]):
        return PresetAction(self.param_space, self.config["presets"])
